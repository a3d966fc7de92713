"""The study's steps: each keyed by a hash of its inputs, its config and the source code it depends on, and
kept in ``steps.json`` with its result, so a finished step is reused, a step whose code or settings changed is
redone (and the progress line says why), and an interrupted study continues where it stopped."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shlex
import time
from pathlib import Path
from typing import Any, Protocol

from speedmap import __version__
from speedmap.bench.run import machine
from speedmap.data.yolo import GENERIC_FOLDERS
from speedmap.jsonfile import write_json_atomic
from speedmap.study.config import key

STEPS_FILE = "steps.json"
PACKAGE = Path(__file__).resolve().parents[1]
# The source each kind of step depends on (subpackages and modules of speedmap), for its key.
COMMON = (
    "data",
    "detections.py",
    "errors.py",
    "imageio.py",
    "imageheader.py",
    "imagepixels.py",
    "preprocess.py",
    "postprocess.py",
    "runtime.py",
    "boxes.py",
    "jsonfile.py",
)
DEPENDS = {
    "train": (*COMMON, "models", "train", "eval", "cpustat.py"),
    "probe": (*COMMON, "models", "train", "cpustat.py"),
    "export": (*COMMON, "models", "export", "engine.py", "modelstore.py"),
    "score": (*COMMON, "eval", "engine.py", "modelstore.py"),
    "bench": (*COMMON, "bench", "serve", "web", "engine.py", "modelstore.py", "cpustat.py"),
}
_code_hashes: dict[tuple[str, ...], str] = {}


def code_hash(parts: tuple[str, ...]) -> str:
    """A hash of the source files of these parts of the package (``.py``, and the web page's files)."""
    if parts not in _code_hashes:
        h = hashlib.sha256()
        for part in sorted(parts):
            root = PACKAGE / part
            files = (
                sorted(p for p in root.rglob("*") if p.suffix in (".py", ".js", ".html") and "vendor" not in p.parts)
                if root.is_dir()
                else [root]
            )
            for f in files:
                if f.is_file():
                    h.update(str(f.relative_to(PACKAGE)).encode() + b"\0" + f.read_bytes() + b"\0")
        _code_hashes[parts] = h.hexdigest()[:12]
    return _code_hashes[parts]


class UI(Protocol):
    """What the study reports as it goes (the CLI draws it with rich)."""

    def stage(self, text: str) -> None: ...  # a step starts
    def note(self, text: str) -> None: ...  # a line worth keeping
    def training(self, event: dict[str, Any]) -> None: ...  # the trainer's progress events
    def step_done(self) -> None: ...  # one planned step finished (cached or run)


class Steps:
    """``steps.json``: each finished step's key (inputs and code) and result."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}
        self.started = time.perf_counter()

    def lookup(self, name: str, kind: str, *inputs: Any) -> tuple[str, Any, str]:
        """The step's key, its cached result (None: run it) and why it runs again ("" for a new step)."""
        inputs_key, code = key(name, *inputs, __version__), code_hash(DEPENDS[kind])
        k = key(inputs_key, code)
        entry = self.done.get(name)
        self.started = time.perf_counter()  # a step that is not cached runs from here
        if entry is not None and entry.get("key") == k:
            return k, entry["result"], ""
        why = ""
        if entry is not None:
            why = " (redone: the code changed)" if entry.get("inputs") == inputs_key else " (redone: settings changed)"
        return k, None, why

    def put(self, name: str, k: str, result: Any, *inputs: Any, seconds: float | None = None) -> Any:
        """Record a finished step; ``seconds``: its compute time when it ran elsewhere (default: since lookup)."""
        self.done[name] = {
            "key": k,
            "inputs": key(name, *inputs, __version__),
            "result": result,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - self.started if seconds is None else seconds, 1),
        }
        write_json_atomic(self.path, self.done)
        return result

    def seconds(self) -> float:
        """Compute time of every finished step (what the study cost, whatever the interruptions)."""
        return float(sum(e.get("seconds", 0.0) for e in self.done.values()))


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "data"


def task_names(folders: list[Path]) -> list[str]:
    """Each dataset folder's name in the study: the folder's own, or its parent's and its own where the folder
    is named generically (a Roboflow export unpacked as ``medicine/dataset``: ``medicine-dataset``); a repeated
    name gets ``-2``, ``-3``, ... so no task overwrites another."""
    names: list[str] = []
    for folder in folders:
        p = folder.resolve()
        base = f"{p.parent.name}-{p.name}" if p.name.lower() in GENERIC_FOLDERS and p.parent.name else p.name
        name, n = slug(base), 1
        while name in names:
            n += 1
            name = f"{slug(base)}-{n}"
        names.append(name)
    return names


def provenance(command: list[str]) -> dict[str, Any]:
    """The benchmark's :func:`~speedmap.bench.run.machine`, the code's hash, the command, and torch."""
    prov: dict[str, Any] = {
        **machine(),
        "code": code_hash(("",)),
        "command": shlex.join(command) if command else None,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        import torch

        prov["torch"] = torch.__version__
    except ImportError:
        pass
    return prov
