"""What a training run is asked to do (:class:`TrainConfig`), what it logs per epoch (:class:`EpochLog`), and the
input sizes the models take."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from speedmap.train.checkpoint import TrainError

IMGSZ_STRIDE = 32  # the input size must be a multiple of the model's largest stride ...
IMGSZ_MAX = 4096  # ... and at most this


@dataclass
class TrainConfig:
    data: str
    size: str = "fast"
    epochs: int = 50
    imgsz: int = field(kw_only=True)  # input size, chosen by the caller (speedmap.data.tasks.default_imgsz)
    batch: int = 16
    weights: str | None = None
    out: str | None = None
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    workers: int | None = None
    seed: int = 0
    # wsd: the constant-rate phase ends after this many epochs without a gain of the smoothed validation mAP50-95
    # (0: at the epoch cap), then the run cools down; linear / cosine: stop after them (not annealed)
    patience: int = 50
    resume: bool = False
    close_mosaic: int = 10
    optimizer: str = "auto"  # auto | sgd | adamw
    lr0: float | None = None
    lrf: float = 0.01
    schedule: str = "wsd"  # wsd (warm-up, stable, cooldown: every run ends annealed) | linear | cosine
    cos_lr: bool = False  # the older switch: cosine decay (schedule "cosine")
    warmup_epochs: float = 3.0
    weight_decay: float = 5e-4
    ema_tau: float = 2000.0  # with ema_epochs None: the EMA's decay (0.9999) ramps up as 1 - exp(-updates / ema_tau)
    ema_epochs: float | None = 5.0  # the EMA averages over about this many epochs (None: the update-count ramp)
    warmup_min_iters: int = 100  # warm-up lasts at least this many optimizer steps
    aug_scale: float = 0.5  # random scaling of training samples: 1 +- this
    mosaic: float = 1.0  # probability of a mosaic sample (before close_mosaic)
    val: bool = True
    # seconds this run may take (training and validation); after its first epoch the run fits its epochs into
    # them (the schedule shortened to what fits), and it stops when the next epoch would not fit
    time_limit: float | None = None


@dataclass
class EpochLog:
    epoch: int
    box_loss: float
    cls_loss: float
    dfl_loss: float
    lr: float
    seconds: float
    images_per_second: float
    map50: float | None = None
    map: float | None = None
    cpu_seconds: float | None = None  # this process's CPU time in the epoch's training loop
    other_cpu_share: float | None = None  # share of the machine's CPU used by other processes meanwhile


Progress = Callable[[dict[str, Any]], None]


def check_imgsz(imgsz: int) -> int:
    """``imgsz`` if the model can take it, else a :class:`TrainError` that says what it can take."""
    if not isinstance(imgsz, int) or imgsz % IMGSZ_STRIDE or not IMGSZ_STRIDE <= imgsz <= IMGSZ_MAX:
        raise TrainError(
            f"--imgsz must be a multiple of {IMGSZ_STRIDE} between {IMGSZ_STRIDE} and {IMGSZ_MAX}, got {imgsz}"
        )
    return imgsz
