"""Building blocks: conv-BN-activation, re-parameterisable conv, residual bottleneck, CSP block, SPPF."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,  # Clip(0, 6) in ONNX: fused into the conv in float and removed by int8 ranges
    "lrelu": partial(nn.LeakyReLU, 0.1),
    "hardswish": nn.Hardswish,
}


def set_activation(model: nn.Module, name: str) -> nn.Module:
    """Replace every activation module in ``model`` (any of :data:`ACTIVATIONS`) with ``name``."""
    kinds = (nn.SiLU, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish)
    target = type(ACTIVATIONS[name]())
    for m in list(model.modules()):
        for child_name, child in m.named_children():
            if isinstance(child, kinds) and type(child) is not target:  # an in-place SiLU stays as built
                setattr(m, child_name, ACTIVATIONS[name]())
    return model


def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel and bias of a bias-free convolution followed by ``bn`` (eval statistics) as one convolution."""
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm + SiLU; padding keeps the size at stride 1; ``g`` groups."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, act: bool = True, g: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, groups=g, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the BatchNorm into the convolution (export: no BatchNorm in the graph)."""
        if isinstance(self.bn, nn.BatchNorm2d):
            c = self.conv
            fused = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, groups=c.groups)
            weight, bias = _fold_bn(c.weight, self.bn)
            fused.weight.copy_(weight)
            fused.bias.copy_(bias)
            self.conv, self.bn = fused, nn.Identity()


class RepConv(nn.Module):
    """RepVGG: while training, a 3x3 and a 1x1 convolution (each with BatchNorm) and, where shapes
    allow, a BatchNorm identity, summed; :meth:`fuse` turns the three into one 3x3 convolution with bias,
    so the exported graph is a plain conv-activation chain."""

    def __init__(self, c_in: int, c_out: int, s: int = 1) -> None:
        super().__init__()
        self.c3 = Conv(c_in, c_out, 3, s, act=False)
        self.c1 = Conv(c_in, c_out, 1, s, act=False)
        self.id = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03) if c_in == c_out and s == 1 else None
        self.fused: nn.Conv2d | None = None
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        y = self.c3(x) + self.c1(x)
        return self.act(y + self.id(x) if self.id is not None else y)

    @torch.no_grad()
    def fuse(self) -> None:
        if self.fused is not None:
            return
        w3, b3 = _fold_bn(self.c3.conv.weight, self.c3.bn)
        w1, b1 = _fold_bn(self.c1.conv.weight, self.c1.bn)
        w, b = w3 + nn.functional.pad(w1, [1, 1, 1, 1]), b3 + b1
        if self.id is not None:
            c = w.shape[0]
            eye = torch.zeros_like(w)
            eye[torch.arange(c), torch.arange(c), 1, 1] = 1.0
            wi, bi = _fold_bn(eye, self.id)
            w, b = w + wi, b + bi
        conv = self.c3.conv
        self.fused = nn.Conv2d(conv.in_channels, conv.out_channels, 3, conv.stride, 1, bias=True)
        self.fused.weight.copy_(w)
        self.fused.bias.copy_(b)
        del self.c3, self.c1, self.id


def rep_stage(c_in: int, c_out: int, n: int) -> nn.Sequential:
    """A plain stage: a stride-2 RepConv then ``n`` RepConvs."""
    return nn.Sequential(RepConv(c_in, c_out, 2), *(RepConv(c_out, c_out) for _ in range(n)))


def separable(c_in: int, c_out: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1: most of a 3x3 conv's reach at a fraction of its cost."""
    return nn.Sequential(Conv(c_in, c_in, 3, g=c_in), Conv(c_in, c_out, 1))


class Bottleneck(nn.Module):
    """Two 3x3 convs with an optional residual connection."""

    def __init__(self, c: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = Conv(c, c, 3)
        self.cv2 = Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class CSPBlock(nn.Module):
    """Cross-stage partial block: split the projected input in two, run ``n`` bottlenecks on one half
    and concatenate every intermediate output (rich gradient flow at low cost), then project."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        self.c = c_out // 2
        self.cv1 = Conv(c_in, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c_out, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).split((self.c, self.c), 1))  # static sizes: one ONNX Split, no shape arithmetic
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools give 5/9/13 receptive fields."""

    def __init__(self, c_in: int, c_out: int, k: int = 5) -> None:
        super().__init__()
        c = c_in // 2
        self.cv1 = Conv(c_in, c, 1)
        self.cv2 = Conv(4 * c, c_out, 1)
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, 1))
