"""Backbones: a stride-2 stem and four stride-2 stages, returning the stride 8, 16, 32 maps. ``csp``
stages are cross-stage partial blocks; ``rep`` stages are plain RepVGG convolutions (fused at export)."""

from __future__ import annotations

import torch
from torch import nn

from speedmap.models.blocks import SPPF, Conv, CSPBlock, rep_stage


class Backbone(nn.Module):
    def __init__(
        self, ch: tuple[int, int, int, int, int], depth: tuple[int, int, int, int], block: str = "csp"
    ) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = ch
        n2, n3, n4, n5 = depth
        if block == "rep":
            # a plain stem: torch 2.13's CPU backward of a 1x1 stride-2 conv on 3 channels_last channels corrupts
            # the heap (glibc aborts with "free(): invalid next size"); the stem is one conv either way
            self.stem: nn.Module = Conv(3, c1, 3, 2)
            self.stage2: nn.Module = rep_stage(c1, c2, n2)
            self.stage3: nn.Module = rep_stage(c2, c3, n3)
            self.stage4: nn.Module = rep_stage(c3, c4, n4)
            self.stage5: nn.Module = nn.Sequential(rep_stage(c4, c5, n5), SPPF(c5, c5))
            return
        self.stem = Conv(3, c1, 3, 2)
        self.stage2 = nn.Sequential(Conv(c1, c2, 3, 2), CSPBlock(c2, c2, n2))
        self.stage3 = nn.Sequential(Conv(c2, c3, 3, 2), CSPBlock(c3, c3, n3))
        self.stage4 = nn.Sequential(Conv(c3, c4, 3, 2), CSPBlock(c4, c4, n4))
        self.stage5 = nn.Sequential(Conv(c4, c5, 3, 2), CSPBlock(c5, c5, n5), SPPF(c5, c5))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3 = self.stage3(self.stage2(self.stem(x)))
        p4 = self.stage4(p3)
        return p3, p4, self.stage5(p4)
