"""Pretraining on generated scenes (``speedmap pretrain``): no photograph and no download.

Each size trains on the ``mixture`` scenes (:mod:`speedmap.data.tasks.mixture`) with the same trainer as any
dataset. The run folders are ``OUT/data`` (the scenes) and ``OUT/SIZE`` (a training run): the same command
run again continues every unfinished run from its ``last.pt`` and skips the finished ones, so pretraining can
span sessions. ``OUT/SIZE/pretrain.json`` records what reproduces the weights: the command, the seed, the scene
generator's arguments and the code version.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speedmap import __version__
from speedmap.data.tasks.make import make_task, task_meta
from speedmap.jsonfile import write_json_atomic
from speedmap.train.checkpoint import LAST, TrainError
from speedmap.train.config import Progress, TrainConfig
from speedmap.train.trainer import train

PRETRAIN_TASK = "mixture"
PROVENANCE = "pretrain.json"


@dataclass
class PretrainConfig:
    out: str = "runs/pretrain"
    sizes: list[str] = field(default_factory=lambda: ["fast", "accurate"])
    images: int = 8000
    imgsz: int = 256
    epochs: int = 60
    batch: int = 16
    seed: int = 0
    device: str = "auto"
    workers: int | None = None


def code_version() -> dict[str, Any]:
    """speedmap's version, and the git commit of its source tree when it runs from a checkout."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(here), "status", "--porcelain", "--", "."],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"speedmap": __version__, "git_commit": commit, "git_dirty": dirty}


def command_line(cfg: PretrainConfig) -> str:
    """The command that reproduces (or continues) this pretraining."""
    args = ["speedmap", "pretrain", "--out", cfg.out, "--size", ",".join(cfg.sizes)]
    args += ["--images", str(cfg.images), "--imgsz", str(cfg.imgsz), "--epochs", str(cfg.epochs)]
    args += ["--batch", str(cfg.batch), "--seed", str(cfg.seed)]
    return shlex.join(args)


def finished(run: Path) -> bool:
    """True when ``run`` holds a training that ran all its planned epochs."""
    try:
        rec = json.loads((run / "train.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return rec.get("epochs_run", 0) >= rec.get("epochs_planned", 1)


def make_scenes(cfg: PretrainConfig, progress: Callable[[int, int], None] | None = None) -> Path:
    """The generated scenes in ``OUT/data`` (made once; the same settings reuse them)."""
    return make_task(
        PRETRAIN_TASK, Path(cfg.out) / "data", seed=cfg.seed, images=cfg.images, imgsz=cfg.imgsz, progress=progress
    )


def pretrain(
    cfg: PretrainConfig, progress: Progress | None = None, log: Callable[[str], None] = print
) -> dict[str, dict[str, Any]]:
    """Generate the scenes (once) and train every size on them, resuming unfinished runs; returns each size's
    run record (``train.json``)."""
    out = Path(cfg.out)
    data = make_scenes(cfg)
    records: dict[str, dict[str, Any]] = {}
    for size in cfg.sizes:
        run = out / size
        _check_settings(run, cfg, size)
        if finished(run):
            log(f"{size}: already pretrained ({run}); skipped")
            records[size] = json.loads((run / "train.json").read_text(encoding="utf-8"))
            continue
        resume = (run / LAST).is_file()
        _record_provenance(run, cfg, size, resume)
        log(f"{size}: {'continuing' if resume else 'starting'} pretraining in {run}")
        tcfg = TrainConfig(
            data=str(data),
            size=size,
            epochs=cfg.epochs,
            imgsz=cfg.imgsz,
            batch=cfg.batch,
            out=str(run),
            device=cfg.device,
            workers=cfg.workers,
            seed=cfg.seed,
            patience=0,
            resume=resume,
            schedule="linear",  # the shipped weights' recipe: a fixed decay over --epochs ...
            ema_epochs=None,  # ... and the EMA ramped by update count (thousands of steps an epoch)
        )
        records[size] = train(tcfg, progress, log)
    return records


def _check_settings(run: Path, cfg: PretrainConfig, size: str) -> None:
    """A :class:`TrainError` when ``run`` was started with other settings than ``cfg``'s."""
    try:
        saved = json.loads((run / PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if saved.get("config") != _determining(cfg, size):
        raise TrainError(
            f"{size} in {run.name} was started with other settings ({saved.get('command')}); continue it with that "
            "command or choose another --out"
        )


def _record_provenance(run: Path, cfg: PretrainConfig, size: str, resume: bool) -> None:
    """Write ``pretrain.json`` at the start; on a resume, check the settings match and add the code version
    that continues the run."""
    path = run / PROVENANCE
    saved = json.loads(path.read_text(encoding="utf-8")) if resume and path.is_file() else None
    if saved is not None:
        saved.setdefault("continued", []).append(code_version())
        write_json_atomic(path, saved)
        return
    run.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        path,
        {
            "command": command_line(cfg),
            "config": _determining(cfg, size),
            "scenes": task_meta(PRETRAIN_TASK, cfg.seed, cfg.images, cfg.imgsz, "coco"),
            "code": code_version(),
            "python": sys.version.split()[0],
        },
    )


def _determining(cfg: PretrainConfig, size: str) -> dict[str, Any]:
    """The settings that fix a size's pretrained weights (not where they run or how many processes load data)."""
    d = asdict(cfg)
    return {k: d[k] for k in ("images", "imgsz", "epochs", "batch", "seed")} | {"size": size}
