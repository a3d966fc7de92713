"""PAN neck: a top-down path (upsample + concat) then a bottom-up path (stride-2 conv + concat), over
three levels (strides 8, 16, 32) or two (8, 16). Each merge is a CSP block (``csp``) or a 1x1 projection
then ``n`` RepConvs (``rep``)."""

from __future__ import annotations

import torch
from torch import nn

from speedmap.models.blocks import Conv, CSPBlock, RepConv


class PAN(nn.Module):
    def __init__(self, ch: tuple[int, ...], n: int, block: str = "csp") -> None:
        super().__init__()
        c3, c4 = ch[:2]

        def merge(c_in: int, c_out: int) -> nn.Module:
            if block == "rep":
                return nn.Sequential(Conv(c_in, c_out, 1), *(RepConv(c_out, c_out) for _ in range(n)))
            return CSPBlock(c_in, c_out, n, shortcut=False)

        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        if len(ch) == 3:
            self.td4 = merge(ch[2] + c4, c4)
        self.td3 = merge(c4 + c3, c3)
        self.down3 = Conv(c3, c3, 3, 2)
        self.bu4 = merge(c3 + c4, c4)
        if len(ch) == 3:
            self.down4 = Conv(c4, c4, 3, 2)
            self.bu5 = merge(c4 + ch[2], ch[2])

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        p3, p4 = feats[:2]
        t4 = self.td4(torch.cat([self.up(feats[2]), p4], 1)) if len(feats) == 3 else p4
        n3 = self.td3(torch.cat([self.up(t4), p3], 1))
        n4 = self.bu4(torch.cat([self.down3(n3), t4], 1))
        if len(feats) == 2:
            return [n3, n4]
        return [n3, n4, self.bu5(torch.cat([self.down4(n4), feats[2]], 1))]
