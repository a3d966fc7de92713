"""Warm-up and learning-rate decay, and the optimizer numbers they work with.

Every parameter group's rate is ``initial_lr`` times a factor (:meth:`Schedule.factor`). The default schedule,
``wsd`` (warm-up, stable, decay), keeps the factor at 1 until the trainer ends the stable phase (a plateau of
the smoothed validation curve, the epoch cap or the time budget) and then cools down: the factor falls
linearly to ``lrf`` over :func:`cooldown_epochs`, a fixed share of the run, and the run ends there. So every
run ends annealed, however early it stops, and both sizes stop by the same rule. ``linear`` and ``cosine``
decay from 1 to ``lrf`` over the planned epochs (the fixed schedules of earlier versions; pretraining keeps
``linear``). During warm-up (the first :func:`warmup_iterations` optimizer steps) the rates rise linearly from
0 to the factor's value, except the biases', which come down from :data:`WARMUP_BIAS_LR`, and the momentum
rises from :data:`WARMUP_MOMENTUM` to :data:`MOMENTUM`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MOMENTUM = 0.937  # SGD's (Nesterov) momentum and AdamW's beta1 once warm-up is over
ADAMW_BETA2 = 0.999  # AdamW's decay of its squared-gradient average
SGD_LR = 0.01  # SGD's initial learning rate when lr0 is not given
AUTO_SGD_ABOVE = 10_000  # optimizer "auto": SGD for runs of more optimizer steps than this, else AdamW
AUTO_ADAMW_LR = 0.002  # optimizer "auto" AdamW's initial rate for one class, scaled for nc classes by ...
AUTO_ADAMW_CLASS_OFFSET = 4  # ... (offset + 1) / (offset + nc): 0.002 * 5 / (4 + nc)
AUTO_ADAMW_LR_DIGITS = 6  # that rate is rounded to this many decimals
WEIGHT_DECAY_BATCH = 64  # the batch size weight_decay is given for; it is scaled by batch / 64
BIAS_GROUP = 2  # index of the biases' parameter group (trainer._param_groups: decayed, BatchNorm, biases)
WARMUP_MIN_ITERS = 100  # warm-up, when on, lasts at least this many optimizer steps
WARMUP_MOMENTUM = 0.8  # SGD's momentum at the first warm-up step (AdamW's beta1 is not warmed up)
WARMUP_BIAS_LR = 0.1  # the biases' learning rate at the first warm-up step
MAX_GRAD_NORM = 10.0  # gradients are clipped to this total norm before every optimizer step
SCHEDULES = ("wsd", "linear", "cosine")
COOLDOWN_SHARE = 0.2  # wsd: the cooldown is this share of the whole run (a quarter of the stable epochs) ...
MIN_COOLDOWN = 2  # ... and at least this many epochs


def cooldown_epochs(stable_epochs: int) -> int:
    """Epochs of cooldown after ``stable_epochs`` at the full rate: :data:`COOLDOWN_SHARE` of the run."""
    return max(MIN_COOLDOWN, math.ceil(stable_epochs * COOLDOWN_SHARE / (1 - COOLDOWN_SHARE) - 1e-9))


def stable_cap(epochs: int) -> int:
    """The most stable epochs a run of at most ``epochs`` can have and still cool down in full (at least 1)."""
    s = max(1, epochs - cooldown_epochs(epochs))
    while s > 1 and s + cooldown_epochs(s) > epochs:
        s -= 1
    while s + 1 + cooldown_epochs(s + 1) <= epochs:
        s += 1
    return s


def auto_optimizer(iterations: int) -> str:
    """What optimizer "auto" picks for a run of ``iterations`` optimizer steps."""
    return "sgd" if iterations > AUTO_SGD_ABOVE else "adamw"


def auto_adamw_lr(nc: int) -> float:
    """AdamW's initial learning rate for ``nc`` classes when lr0 is not given."""
    return round(AUTO_ADAMW_LR * (AUTO_ADAMW_CLASS_OFFSET + 1) / (AUTO_ADAMW_CLASS_OFFSET + nc), AUTO_ADAMW_LR_DIGITS)


def warmup_iterations(warmup_epochs: float, batches_per_epoch: int, min_iters: int = WARMUP_MIN_ITERS) -> int:
    """Optimizer steps of warm-up: ``warmup_epochs`` worth, at least ``min_iters``; 0 turns it off."""
    return max(round(warmup_epochs * batches_per_epoch), min_iters) if warmup_epochs > 0 else 0


@dataclass(frozen=True)
class Schedule:
    """Sets every parameter group's learning rate (and momentum during warm-up) before each optimizer step."""

    epochs: int
    lrf: float  # final rate as a fraction of the initial one
    kind: str  # one of SCHEDULES
    batches_per_epoch: int
    warmup_iters: int
    cooldown_start: int | None = None  # wsd: the first epoch (0-based) of the cooldown, once the trainer set it
    cooldown: int = 0  # wsd: the cooldown's epochs

    def factor(self, epoch_progress: float) -> float:
        """The rate's factor at ``epoch_progress`` (in epochs): wsd's constant phase and cooldown, or a decay
        from 1 to ``lrf`` over the run, cosine or linear."""
        if self.kind == "wsd":
            if self.cooldown_start is None or epoch_progress < self.cooldown_start:
                return 1.0
            x = min((epoch_progress - self.cooldown_start) / max(self.cooldown, 1), 1.0)
        else:
            x = min(epoch_progress / max(self.epochs, 1), 1.0)
        if self.kind == "cosine":
            return ((1 - math.cos(x * math.pi)) / 2) * (self.lrf - 1) + 1
        return (1 - x) * (1.0 - self.lrf) + self.lrf

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, i: int) -> None:
        """Rates for batch ``i`` of ``epoch``: warm-up ramps towards the epoch's start rate, then the decay
        follows the batch."""
        it = i + self.batches_per_epoch * epoch
        if it < self.warmup_iters:
            frac = it / self.warmup_iters
            target = self.factor(epoch)
            for j, g in enumerate(optimizer.param_groups):
                start = WARMUP_BIAS_LR if j == BIAS_GROUP else 0.0
                g["lr"] = start + (g["initial_lr"] * target - start) * frac
                if "momentum" in g:
                    g["momentum"] = WARMUP_MOMENTUM + (MOMENTUM - WARMUP_MOMENTUM) * frac
        else:
            f = self.factor(epoch + i / self.batches_per_epoch)
            for g in optimizer.param_groups:
                g["lr"] = g["initial_lr"] * f
