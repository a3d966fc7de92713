"""Exponential moving average of the weights, with a ramp so early updates are not frozen in.

Its horizon is set in epochs (:func:`epoch_ema`), not in optimizer steps: the classic decay of 0.9999 with a
2000-update ramp averages over about 1.4 epochs on COCO, but on a few hundred images (9-15 steps an epoch)
it stays near 0.1 for the whole run, so the "EMA" weights were the raw ones and their validation mAP swung
from 0.0 to 0.3 between epochs at a constant rate (raccoon, Accurate). Averaged over about
:data:`EMA_EPOCHS` epochs the curve rises smoothly (epoch-to-epoch SD 0.016) and the weights score higher
(BENCHMARKS.md, issue 33)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

EMA_EPOCHS = 5.0  # the average's horizon: about this many epochs of updates (at most 10,000)
EMA_RAMP_EPOCHS = 0.5  # the decay ramps up over about this many epochs
EMA_RUN_SHARE = 0.1  # ... and the horizon is at most this share of the run's planned epochs (a 16-epoch run: 1.6)


def ema_horizon(epochs: float, run_epochs: int) -> float:
    """The horizon for a run of ``run_epochs``: ``epochs``, at most :data:`EMA_RUN_SHARE` of the run (a short
    run from scratch would otherwise validate an average still full of its first, random weights)."""
    return min(epochs, EMA_RUN_SHARE * run_epochs)


def epoch_ema(batches_per_epoch: int, epochs: float = EMA_EPOCHS) -> tuple[float, float]:
    """``(decay, tau)`` for an average over about ``epochs`` epochs of ``batches_per_epoch`` updates."""
    return min(0.9999, 1 - 1 / max(epochs * batches_per_epoch, 1.0)), max(1.0, EMA_RAMP_EPOCHS * batches_per_epoch)


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
