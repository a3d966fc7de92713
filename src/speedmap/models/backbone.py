"""Backbones: a stride-2 stem and four stride-2 stages, returning the stride 8, 16, 32 maps (three
stages and the stride 8, 16 maps for a 2-level model). ``csp`` stages are cross-stage partial blocks;
``rep`` stages are plain RepVGG convolutions (fused at export). SPPF ends the last stage."""

from __future__ import annotations

import torch
from torch import nn

from speedmap.models.blocks import SPPF, Conv, CSPBlock, rep_stage


class Backbone(nn.Module):
    def __init__(
        self,
        ch: tuple[int, int, int, int, int],
        depth: tuple[int, int, int, int],
        block: str = "csp",
        levels: int = 3,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = ch
        n2, n3, n4, n5 = depth

        def stage(c_in: int, c_out: int, n: int, last: bool) -> nn.Module:
            if block == "rep":
                body = rep_stage(c_in, c_out, n)
            else:
                body = nn.Sequential(Conv(c_in, c_out, 3, 2), CSPBlock(c_out, c_out, n))
            if not last:
                return body
            # the parameter names of the checkpoints trained before 2-level models: stage5.2 (csp), stage5.1 (rep)
            return (
                nn.Sequential(*body, SPPF(c_out, c_out)) if block == "csp" else nn.Sequential(body, SPPF(c_out, c_out))
            )

        # the stem is one plain conv for both blocks: torch 2.13's CPU backward of a 1x1 stride-2 conv on 3
        # channels_last channels corrupts the heap (glibc aborts with "free(): invalid next size")
        self.stem = Conv(3, c1, 3, 2)
        self.stage2 = stage(c1, c2, n2, False)
        self.stage3 = stage(c2, c3, n3, False)
        self.stage4 = stage(c3, c4, n4, levels == 2)
        if levels == 3:
            self.stage5 = stage(c4, c5, n5, True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p3 = self.stage3(self.stage2(self.stem(x)))
        p4 = self.stage4(p3)
        return (p3, p4, self.stage5(p4)) if hasattr(self, "stage5") else (p3, p4)
