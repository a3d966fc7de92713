"""Where a training run starts: from scratch, from the weights shipped in the package, or from a checkpoint."""

from __future__ import annotations

import json
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from speedmap import __version__
from speedmap.data.pool import source_name
from speedmap.train.checkpoint import BEST, TrainError, load_checkpoint, save_atomic

SCRATCH = "scratch"  # random initialisation
PRETRAINED = "pretrained"  # the package's weights for the size (speedmap/weights/SIZE.pt), never downloaded


def packaged_weights(size: str) -> Path | None:
    """The package's pretrained checkpoint for ``size``, or None when this version ships none."""
    path = resources.files("speedmap").joinpath("weights", f"{size}.pt")
    return Path(str(path)) if path.is_file() else None


def resolve_weights(spec: str | None, size: str) -> str | None:
    """The checkpoint path a run starts from (None: from scratch) for ``--weights``: scratch, pretrained or a
    path."""
    if spec is None or spec == SCRATCH:
        return None
    if spec == PRETRAINED:
        path = packaged_weights(size)
        if path is None:
            raise TrainError(
                f"speedmap {__version__} ships no pretrained {size!r} weights: train from scratch "
                "(--weights scratch) or pretrain your own (speedmap pretrain) and pass its best.pt"
            )
        return str(path)
    if not Path(spec).is_file():
        raise TrainError(f"--weights {Path(spec).name}: no such checkpoint file (or use scratch / pretrained)")
    return spec


def weights_record(spec: str | None, path: str | None) -> dict[str, Any]:
    """What ``train.json`` says about the start: scratch, or the checkpoint and, when it came from
    ``speedmap pretrain``, the pretraining's provenance (packed into the package's weights, or the run's
    ``pretrain.json``)."""
    if path is None:
        return {"start": SCRATCH}
    pre = _packed_provenance(path) if spec == PRETRAINED else None
    if pre is None:
        try:
            pre = json.loads((Path(path).parent / "pretrain.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pre = None
    return {"start": PRETRAINED if spec == PRETRAINED else "checkpoint", "file": Path(path).name, "pretrain": pre}


def _packed_provenance(path: str) -> dict[str, Any] | None:
    pre = load_checkpoint(path).get("pretrain")
    return pre if isinstance(pre, dict) else None


def portable_command(command: str) -> str:
    """``command`` without its ``--out`` folder, its ``--pool`` folders and ``--weights`` file by name only: the
    shipped weights' provenance names no path of the machine that made them (the output folder does not change
    the weights; the pool's sources are identified by name and fingerprint in the provenance)."""
    args = shlex.split(command)
    kept: list[str] = []
    option = None
    for a in args:
        if option == "--out":
            option = None
        elif option is not None:
            named = a if option == "--weights" and a in (SCRATCH, PRETRAINED) else source_name(Path(a))
            kept += [option, named]
            option = None
        elif a in ("--out", "--pool", "--weights"):
            option = a
        elif not a.startswith("--out="):
            kept.append(a)
    return shlex.join(kept)


def pack_weights(run: str | Path, dest: str | Path) -> Path:
    """A ``speedmap pretrain`` run's ``best.pt`` as the package ships it: the model's description, its EMA
    weights in fp16 (half the size; fine-tuning loads them into fp32), the epoch and validation metrics it was
    chosen by, and the pretraining's provenance (``pretrain.json``: command, seed, scenes, code version)."""
    run = Path(run)
    ckpt = load_checkpoint(run / BEST)
    try:
        provenance = json.loads((run / "pretrain.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainError(f"{run.name}: no pretrain.json, so not a speedmap pretrain run") from exc
    provenance["command"] = portable_command(str(provenance.get("command", "")))
    model = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_atomic({**ckpt, "model": model, "pretrain": provenance, "weights_dtype": str(torch.float16)}, dest)
    return dest
