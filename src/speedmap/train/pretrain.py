"""Pretraining (``speedmap pretrain``): on generated scenes, and on a pool of real labelled datasets beside them.

Each size trains on the ``mixture`` scenes (:mod:`speedmap.data.tasks.mixture`), or with ``pool`` on those
scenes merged with local dataset folders (:mod:`speedmap.data.pool`), with the same trainer as any dataset,
from scratch or from given weights (``weights``: the package's, to continue them). The run folders are
``OUT/data`` (the scenes), ``OUT/pool`` and ``OUT/SIZE`` (a training run): the same command run again continues
every unfinished run from its ``last.pt`` and skips the finished ones, so pretraining can span sessions.
``OUT/SIZE/pretrain.json`` records what reproduces the weights: the command, the seed, the scene generator's
arguments, the pool's sources (names and fingerprints), the start's own provenance and the code version.
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
from speedmap.data.pool import PER_SOURCE, build_pool, load_sources, read_pool_record, source_name
from speedmap.data.tasks.make import make_task, task_meta
from speedmap.jsonfile import write_json_atomic
from speedmap.train.checkpoint import LAST, TrainError
from speedmap.train.config import Progress, TrainConfig
from speedmap.train.trainer import train
from speedmap.train.weights import PRETRAINED, SCRATCH, portable_command, resolve_weights, weights_record

PRETRAIN_TASK = "mixture"
PROVENANCE = "pretrain.json"
CLOSE_MOSAIC = 10  # the shipped weights' first pretraining (recorded only when another is asked for)


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
    pool: list[str] = field(default_factory=list)  # dataset folders pooled with the scenes
    weights: str | None = None  # the start: None (scratch), "pretrained" (the package's) or a checkpoint
    close_mosaic: int = CLOSE_MOSAIC  # the last epochs without mosaic (a short continuation needs fewer)
    pool_images: int = PER_SOURCE  # images at most from one pooled source
    lr0: float | None = None  # None: the trainer's automatic rate (which falls as the classes grow)


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
    for folder in cfg.pool:
        args += ["--pool", folder]
    if cfg.pool and cfg.pool_images != PER_SOURCE:
        args += ["--pool-images", str(cfg.pool_images)]
    if cfg.weights is not None:
        args += ["--weights", cfg.weights]
    if cfg.close_mosaic != CLOSE_MOSAIC:
        args += ["--close-mosaic", str(cfg.close_mosaic)]
    if cfg.lr0 is not None:
        args += ["--lr0", repr(cfg.lr0)]
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


def prepare(
    cfg: PretrainConfig,
    scenes_progress: Callable[[int, int], None] | None = None,
    pool_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The data every size trains on: the scenes (made once), or with ``pool`` the pool of them and the pooled
    datasets (each read once; a run begun on other contents of them is refused before the pool is remade)."""
    data = make_scenes(cfg, scenes_progress)
    if not cfg.pool:
        return data
    sources = load_sources(cfg.pool)
    _check_pool_sources(Path(cfg.out), cfg, [ds.fingerprint() for _, ds in sources])
    out = Path(cfg.out) / "pool"
    return build_pool(sources, data, out, cfg.imgsz, cfg.seed, pool_progress, per_source=cfg.pool_images)


def pretrain(
    cfg: PretrainConfig,
    progress: Progress | None = None,
    log: Callable[[str], None] = print,
    data: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every size on the data :func:`prepare` makes (``data``: already prepared), resuming unfinished
    runs; returns each size's run record (``train.json``)."""
    out = Path(cfg.out)
    data = prepare(cfg) if data is None else data
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
            weights=cfg.weights,
            close_mosaic=cfg.close_mosaic,
            lr0=cfg.lr0,
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


def _check_pool_sources(out: Path, cfg: PretrainConfig, fingerprints: list[str]) -> None:
    """A :class:`TrainError` when a run in ``out`` began on pooled datasets whose contents have changed since
    (same folder names, other fingerprints): continuing it would mix two pools."""
    for size in cfg.sizes:
        try:
            saved = json.loads((out / size / PROVENANCE).read_text(encoding="utf-8"))["pool"]["detail"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if [d.get("fingerprint") for d in saved] != fingerprints:
            raise TrainError(
                f"{size} in {out.name} was started on other contents of the pooled datasets; restore them or "
                "choose another --out"
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
            "pool": _pool_record(run.parent / "pool") if cfg.pool else None,
            "start": _start_record(cfg, size),
            "code": code_version(),
            "python": sys.version.split()[0],
        },
    )


def _determining(cfg: PretrainConfig, size: str) -> dict[str, Any]:
    """The settings that fix a size's pretrained weights (not where they run or how many processes load data;
    the pool by its sources' names, the start by its kind and file name: no path)."""
    d = asdict(cfg)
    fixed = {k: d[k] for k in ("images", "imgsz", "epochs", "batch", "seed")} | {"size": size}
    if cfg.pool:
        fixed["pool"] = [source_name(Path(f)) for f in cfg.pool]
        fixed["pool_images"] = cfg.pool_images
    if cfg.weights is not None:
        fixed["weights"] = cfg.weights if cfg.weights in (SCRATCH, PRETRAINED) else Path(cfg.weights).name
    if cfg.close_mosaic != CLOSE_MOSAIC:
        fixed["close_mosaic"] = cfg.close_mosaic
    if cfg.lr0 is not None:
        fixed["lr0"] = cfg.lr0
    return fixed


def _pool_record(folder: Path) -> dict[str, Any] | None:
    """The pool's sources as ``pool.json`` lists them (names, fingerprints, images, classes)."""
    record = read_pool_record(folder)
    keys = ("version", "imgsz", "seed", "per_source", "classes", "detail")
    return None if record is None else {k: record.get(k) for k in keys}


def _start_record(cfg: PretrainConfig, size: str) -> dict[str, Any]:
    """Where the pretraining starts: scratch, or weights and their own pretraining provenance (so a chain of
    pretrainings is recorded whole, its commands without the folders of the machine that ran them)."""
    record = weights_record(cfg.weights, resolve_weights(cfg.weights, size))
    pre = record.get("pretrain")
    if isinstance(pre, dict) and isinstance(pre.get("command"), str):
        record["pretrain"] = pre | {"command": portable_command(pre["command"])}
    return record
