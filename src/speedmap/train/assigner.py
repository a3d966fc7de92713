"""Task-aligned label assignment (TOOD): each ground-truth box takes the ``topk`` cells inside it
whose predictions best combine classification score and box overlap,
``align = score**alpha * iou**beta``; a cell claimed by several boxes goes to the one it overlaps most.
"""

from __future__ import annotations

import torch

from speedmap.train.boxops import box_iou_pairs


class TaskAlignedAssigner:
    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9) -> None:
        self.topk, self.alpha, self.beta, self.eps = topk, alpha, beta, eps

    @torch.no_grad()
    def __call__(
        self,
        pd_scores: torch.Tensor,  # (B, N, C) probabilities
        pd_boxes: torch.Tensor,  # (B, N, 4) xyxy, pixels
        points: torch.Tensor,  # (N, 2) cell centres, pixels
        gt_labels: torch.Tensor,  # (B, M) long
        gt_boxes: torch.Tensor,  # (B, M, 4) xyxy, pixels
        gt_mask: torch.Tensor,  # (B, M) bool, False for padding
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns target labels ``(B, N)``, boxes ``(B, N, 4)``, soft scores ``(B, N, C)`` and the
        foreground mask ``(B, N)``."""
        b, n, c = pd_scores.shape
        m = gt_boxes.shape[1]
        if m == 0:
            dev = pd_scores.device
            labels = torch.zeros(b, n, dtype=torch.long, device=dev)
            return labels, torch.zeros_like(pd_boxes), torch.zeros_like(pd_scores), labels.bool()
        # cells whose centre lies inside a ground-truth box: (B, M, N)
        lt = points[None, None] - gt_boxes[:, :, None, :2]
        rb = gt_boxes[:, :, None, 2:] - points[None, None]
        inside = torch.cat((lt, rb), -1).amin(-1) > self.eps
        candidates = inside & gt_mask[:, :, None]

        overlaps = torch.zeros(b, m, n, dtype=pd_boxes.dtype, device=pd_boxes.device)
        bi, mi, ni = candidates.nonzero(as_tuple=True)
        overlaps[bi, mi, ni] = box_iou_pairs(gt_boxes[bi, mi], pd_boxes[bi, ni]).clamp_(0).to(overlaps.dtype)
        scores = torch.zeros_like(overlaps)
        scores[bi, mi, ni] = pd_scores[bi, ni, gt_labels[bi, mi]].to(scores.dtype)
        align = scores.pow(self.alpha) * overlaps.pow(self.beta)

        k = min(self.topk, n)
        top_idx = align.topk(k, dim=-1).indices  # (B, M, k)
        in_topk = torch.zeros_like(candidates).scatter_(-1, top_idx, True)
        pos = in_topk & candidates  # (B, M, N)

        # a cell claimed by several boxes keeps the one it overlaps most
        multi = pos.sum(1) > 1  # (B, N)
        if multi.any():
            best = overlaps.masked_fill(~pos, -1.0).argmax(1)  # (B, N), among the claiming boxes
            only_best = torch.zeros_like(pos).scatter_(1, best[:, None], True)
            pos = torch.where(multi[:, None], only_best, pos)
        fg = pos.any(1)  # (B, N)
        gt_idx = pos.float().argmax(1)  # (B, N)

        batch = torch.arange(b, device=gt_labels.device)[:, None]
        labels = gt_labels[batch, gt_idx]  # (B, N)
        boxes = gt_boxes[batch, gt_idx]  # (B, N, 4)
        target = torch.zeros(b, n, c, dtype=pd_scores.dtype, device=pd_scores.device)
        target.scatter_(2, labels.clamp(0)[..., None], 1.0)
        target *= fg[..., None]

        # soft targets: the alignment normalised per box so its best cell reaches the box's best IoU
        align = align * pos
        norm = (align * (overlaps * pos).amax(-1, keepdim=True) / (align.amax(-1, keepdim=True) + self.eps)).amax(1)
        target *= norm[..., None]
        return labels, boxes, target, fg
