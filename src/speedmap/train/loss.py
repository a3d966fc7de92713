"""Detection loss: BCE on soft task-aligned class targets, CIoU and distribution focal loss on boxes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from speedmap.models.detector import Detector
from speedmap.models.head import dist_to_xyxy, make_anchors
from speedmap.train.assigner import TaskAlignedAssigner
from speedmap.train.boxops import box_ciou_pairs


class DetectionLoss:
    """``loss(raw, shapes, targets)`` with ``targets`` rows ``(image index, class, x1, y1, x2, y2)``
    in input pixels. Returns the total (scaled by batch size) and the detached components."""

    def __init__(self, model: Detector, box: float = 7.5, cls: float = 0.5, dfl: float = 1.5) -> None:
        self.nc, self.reg_max, self.strides = model.num_classes, model.reg_max, model.strides
        self.w_box, self.w_cls, self.w_dfl = box, cls, dfl
        self.assigner = TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0)

    def __call__(
        self, raw: torch.Tensor, shapes: list[tuple[int, int]], targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = raw.shape[0]
        dist, logits = raw.float().split((4 * self.reg_max, self.nc), -1)
        points, strides = make_anchors(shapes, self.strides, raw.device, torch.float32)
        bins = torch.arange(self.reg_max, device=raw.device, dtype=torch.float32)
        ltrb = dist.view(b, -1, 4, self.reg_max).softmax(-1) @ bins  # grid units
        pd_boxes = dist_to_xyxy(points, ltrb)  # grid units

        gt_labels, gt_boxes, gt_mask = self._pad(targets, b, raw.device)
        _, t_boxes, t_scores, fg = self.assigner(
            logits.detach().sigmoid(), (pd_boxes.detach() * strides), points * strides, gt_labels, gt_boxes, gt_mask
        )
        score_sum = t_scores.sum().clamp(min=1.0)
        loss_cls = F.binary_cross_entropy_with_logits(logits, t_scores, reduction="sum") / score_sum

        loss_box = torch.zeros((), device=raw.device)
        loss_dfl = torch.zeros((), device=raw.device)
        if fg.any():
            weight = t_scores.sum(-1)[fg]
            t_grid = t_boxes / strides  # grid units
            ciou = box_ciou_pairs(pd_boxes[fg], t_grid[fg])
            loss_box = ((1.0 - ciou) * weight).sum() / score_sum
            pts = points.expand(b, -1, -1)[fg]
            t_ltrb = torch.cat((pts - t_grid[fg][:, :2], t_grid[fg][:, 2:] - pts), -1).clamp(0, self.reg_max - 1.01)
            loss_dfl = (
                self._dfl(dist[fg].view(-1, self.reg_max), t_ltrb.view(-1)).view(-1, 4).mean(-1) * weight
            ).sum() / score_sum
        parts = torch.stack((loss_box * self.w_box, loss_cls * self.w_cls, loss_dfl * self.w_dfl))
        return parts.sum() * b, parts.detach()

    @staticmethod
    def _dfl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Distribution focal loss: cross-entropy to the two bins around the continuous target."""
        left = target.long()
        w_left = left + 1 - target
        return F.cross_entropy(logits, left, reduction="none") * w_left + F.cross_entropy(
            logits, left + 1, reduction="none"
        ) * (1 - w_left)

    def _pad(self, targets: torch.Tensor, b: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        counts = torch.bincount(targets[:, 0].long(), minlength=b) if len(targets) else torch.zeros(b, dtype=torch.long)
        m = int(counts.max()) if len(targets) else 0
        labels = torch.zeros(b, m, dtype=torch.long, device=device)
        boxes = torch.zeros(b, m, 4, device=device)
        mask = torch.zeros(b, m, dtype=torch.bool, device=device)
        if m:
            idx = targets[:, 0].long()
            order = torch.argsort(idx, stable=True)
            idx = idx[order]
            starts = torch.cumsum(counts, 0) - counts
            slot = torch.arange(len(idx), device=device) - starts.to(device)[idx]
            labels[idx, slot] = targets[order, 1].long()
            boxes[idx, slot] = targets[order, 2:6].float()
            mask[idx, slot] = True
        return labels, boxes, mask
