"""The checkpoint format: what ``last.pt`` and ``best.pt`` hold, writing them atomically, reading them
back, and rebuilding the model from one.

Both start with the model's description (:func:`model_meta`: size, classes, input size, layer spec, dataset
fingerprint, speedmap version) and hold the EMA weights under ``model``. ``last.pt`` adds what resuming
needs: the training weights, the optimizer, the EMA's update count, the :class:`RunState` and the run's
config. ``best.pt`` adds its epoch and validation metrics. Files are plain ``torch.save`` dicts, so run
folders written by earlier versions load as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from speedmap import __version__
from speedmap.errors import SpeedmapError
from speedmap.models import Detector, SizeSpec, create_model
from speedmap.models.detector import spec_from_record
from speedmap.train.convergence import annealed_best
from speedmap.train.ema import ModelEMA

LAST = "last.pt"  # in a run folder: the latest epoch, with everything resuming needs
BEST = "best.pt"  # in a run folder: the epoch of best validation mAP50-95 (without validation: the latest)


class TrainError(SpeedmapError):
    """Training cannot start or go on: bad options, or a checkpoint that is missing, unreadable or done."""


@dataclass
class RunState:
    """Where a run stands after its latest epoch: what ``last.pt`` keeps besides weights and optimizer."""

    epoch: int = -1  # the latest finished epoch, 0-based (-1: none yet)
    best_fitness: float = -1.0  # what picks best.pt: validation mAP50-95 (without validation, the epoch)
    best_epoch: int = -1  # 0-based
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch (metrics.csv)
    epoch_seconds: list[float] = field(default_factory=list)  # wall seconds of each epoch's training loop
    # wsd: where and why the stable phase ended (stable_end, 1-based; stable_end_reason) and the cooldown's epochs
    phases: dict[str, Any] = field(default_factory=dict)


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside ``path``, flush to disk, then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise TrainError(f"{path} is not a readable speedmap checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "size" not in ckpt:
        raise TrainError(f"{path} is not a speedmap checkpoint (no model weights and size)")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> Detector:
    """The model of a checkpoint, with its EMA weights, in the architecture the checkpoint recorded (so a
    run still loads after its size's registered ``SizeSpec`` changes)."""
    model = create_model(ckpt["size"], ckpt["num_classes"], checkpoint_spec(ckpt))
    model.load_state_dict(ckpt["model"])
    return model


def checkpoint_spec(ckpt: dict[str, Any]) -> SizeSpec | None:
    """The architecture a checkpoint was trained with; None for one that records none (the registry's)."""
    if not isinstance(ckpt.get("spec"), dict):
        return None
    try:
        return spec_from_record(ckpt["spec"])
    except (TypeError, ValueError) as exc:
        raise TrainError(f"the checkpoint's {ckpt['size']!r} model cannot be built: {exc}") from exc


def model_meta(model: Detector, classes: list[str], imgsz: int, dataset: str) -> dict[str, Any]:
    """What every checkpoint says about its model; ``dataset`` is the training dataset's fingerprint."""
    return {
        "size": model.size,
        "num_classes": len(classes),
        "classes": classes,
        "imgsz": imgsz,
        "spec": model.spec(),
        "dataset": dataset,
        "speedmap": __version__,
    }


def save_last(
    path: Path,
    meta: dict[str, Any],
    model: Detector,
    ema: ModelEMA,
    optimizer: torch.optim.Optimizer,
    state: RunState,
    config: dict[str, Any],
) -> None:
    """``last.pt``: the EMA weights under ``model``, the training weights under ``model_train``."""
    ckpt = {
        **meta,
        "model": ema.ema.state_dict(),
        "model_train": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "ema_updates": ema.updates,
        "epoch": state.epoch,
        "best_fitness": state.best_fitness,
        "best_epoch": state.best_epoch,
        "history": state.history,
        "epoch_seconds": state.epoch_seconds,
        "phases": state.phases,
        "config": config,
    }
    save_atomic(ckpt, path)


def save_best(path: Path, meta: dict[str, Any], ema: ModelEMA, epoch: int, metrics: dict[str, Any] | None) -> None:
    """``best.pt``: the EMA weights of ``epoch`` and its validation metrics (None without validation)."""
    save_atomic({**meta, "model": ema.ema.state_dict(), "epoch": epoch, "metrics": metrics}, path)


def saved_config(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The config a ``last.pt`` was trained with. Runs from before the caller chose the input size saved
    ``imgsz: None``; the size they trained at is the checkpoint's ``imgsz``. Runs from before the ``schedule``
    setting keep the linear decay they started with."""
    config = dict(ckpt["config"])
    if config.get("imgsz") is None:
        config["imgsz"] = ckpt["imgsz"]
    config.setdefault("schedule", "linear")  # runs from before the wsd schedule decayed linearly ...
    config.setdefault("ema_epochs", None)  # ... and ramped their EMA by update count
    return config


def load_train_weights(model: Detector, ckpt: dict[str, Any]) -> None:
    """Put a ``last.pt``'s training (not EMA) weights into ``model``."""
    model.load_state_dict(ckpt["model_train"])


def restore_training(ckpt: dict[str, Any], optimizer: torch.optim.Optimizer, ema: ModelEMA) -> RunState:
    """Load a ``last.pt``'s optimizer and EMA into the fresh ones and return where the run stood."""
    optimizer.load_state_dict(ckpt["optimizer"])
    ema.ema.load_state_dict(ckpt["model"])
    ema.updates = ckpt["ema_updates"]
    state = RunState(
        ckpt["epoch"],
        ckpt["best_fitness"],
        ckpt["best_epoch"],
        ckpt["history"],
        ckpt["epoch_seconds"],
        dict(ckpt.get("phases") or {}),
    )
    maps = [h.get("map") for h in state.history]
    if maps and None not in maps:  # older checkpoints kept a mAP50/mAP50-95 mix
        state.best_epoch = annealed_best([max(m, 0.0) for m in maps], state.phases.get("stable_end"))
        state.best_fitness = max(maps[state.best_epoch], 0.0)
    return state
