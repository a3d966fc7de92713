"""Decoupled, anchor-free head: per level a box branch predicting distances to the four sides as
distributions over ``reg_max`` bins (distribution focal loss) and a class branch."""

from __future__ import annotations

import math

import torch
from torch import nn

from speedmap.models.blocks import Conv, separable

STRIDES = (8, 16, 32)


def make_anchors(
    shapes: list[tuple[int, int]], strides: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres in grid units ``(N, 2)`` and each cell's stride ``(N, 1)`` for all levels."""
    points, stride_list = [], []
    for (h, w), s in zip(shapes, strides, strict=True):
        # built in float32 (an fp16 Range is not valid ONNX), cast at the end
        sy = torch.arange(h, device=device, dtype=torch.float32) + 0.5
        sx = torch.arange(w, device=device, dtype=torch.float32) + 0.5
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((xx, yy), -1).view(-1, 2))
        stride_list.append(torch.full((h * w, 1), s, device=device, dtype=torch.float32))
    return torch.cat(points).to(dtype), torch.cat(stride_list).to(dtype)


def dist_to_xyxy(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    return torch.cat((points - ltrb[..., :2], points + ltrb[..., 2:]), -1)


class Head(nn.Module):
    def __init__(
        self,
        num_classes: int,
        ch: tuple[int, ...],
        reg_max: int = 16,
        box: str = "dense",
        strides: tuple[int, ...] = STRIDES,
    ) -> None:
        super().__init__()
        if len(ch) != len(strides):
            raise ValueError(f"the head has {len(ch)} input levels but {len(strides)} strides")
        self.nc, self.reg_max, self.strides = num_classes, reg_max, strides
        self.no = 4 * reg_max + num_classes
        c_box = max(16, ch[0] // 4, 4 * reg_max)
        c_cls = max(ch[0], min(num_classes, 100))
        # the box branch: dense 3x3 convolutions, or depthwise-separable ones like the class branch ("separable")
        if box == "separable":
            self.box = nn.ModuleList(
                nn.Sequential(separable(c, c_box), separable(c_box, c_box), nn.Conv2d(c_box, 4 * reg_max, 1))
                for c in ch
            )
        else:
            self.box = nn.ModuleList(
                nn.Sequential(Conv(c, c_box, 3), Conv(c_box, c_box, 3), nn.Conv2d(c_box, 4 * reg_max, 1)) for c in ch
            )
        # the class branch is depthwise-separable: classifying needs less spatial precision than boxes
        self.cls = nn.ModuleList(
            nn.Sequential(separable(c, c_cls), separable(c_cls, c_cls), nn.Conv2d(c_cls, num_classes, 1)) for c in ch
        )
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)
        self.fixed_anchors: tuple[list[tuple[int, int]], torch.Tensor, torch.Tensor] | None = None

    def fix_anchors(self, imgsz: int) -> None:
        """Precompute the cell grid for one input size (export: the grid becomes graph constants)."""
        shapes = [(imgsz // s, imgsz // s) for s in self.strides]
        self.fixed_anchors = (shapes, *make_anchors(shapes, self.strides, torch.device("cpu"), torch.float32))

    def init_bias(self, imgsz: int = 640) -> None:
        """Class prior: about 5 objects per image spread over all cells, so early training is not
        swamped by the loss of confident background; box logits start flat."""
        for box, cls, s in zip(self.box, self.cls, self.strides, strict=True):
            nn.init.constant_(box[-1].bias, 1.0)
            nn.init.constant_(cls[-1].bias, math.log(5 / self.nc / (imgsz / s) ** 2))

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Raw outputs ``(B, N, 4*reg_max + nc)`` over all cells and the grid shapes."""
        out, shapes = [], []
        for x, box, cls in zip(feats, self.box, self.cls, strict=True):
            out.append(torch.cat((box(x), cls(x)), 1).flatten(2))
            shapes.append((int(x.shape[2]), int(x.shape[3])))
        return torch.cat(out, 2).permute(0, 2, 1), shapes

    def decode(self, raw: torch.Tensor, shapes: list[tuple[int, int]]) -> torch.Tensor:
        """``(B, N, 4 + nc)``: boxes ``xyxy`` in input pixels and class probabilities."""
        if self.fixed_anchors is not None and self.fixed_anchors[0] == shapes:
            points, strides = (t.to(raw.device, raw.dtype) for t in self.fixed_anchors[1:])
        else:
            points, strides = make_anchors(shapes, self.strides, raw.device, raw.dtype)
        dist, logits = raw.split((4 * self.reg_max, self.nc), -1)
        # expected bin as multiply-and-sum: as a MatMul with a vector, ONNX Runtime ran a 0.5 ms
        # matrix-vector product, 12% of a ReLU Fast in int8 (BENCHMARKS.md, issue 17)
        ltrb = (dist.unflatten(-1, (4, self.reg_max)).softmax(-1) * self.bins.to(raw.dtype)).sum(-1)
        boxes = dist_to_xyxy(points, ltrb) * strides
        return torch.cat((boxes, logits.sigmoid()), -1)
