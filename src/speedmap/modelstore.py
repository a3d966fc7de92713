"""The model store: a folder where each exported model lives at ``PROJECT/VERSION/`` (``model.onnx`` +
``model.json``) and is addressed by the id ``project/version``, as Roboflow's model ids are."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedmap.errors import SpeedmapError
from speedmap.jsonfile import JsonFileError, read_json

MODEL_FILE, META_FILE = "model.onnx", "model.json"
# ``\Z``, not ``$``: ``$`` also matches before a trailing newline. Each part at most 100 characters, so
# that no id makes a file name the file system refuses.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")


class ModelNotFoundError(SpeedmapError):
    """No model at a path or under an id."""


class ModelFormatError(SpeedmapError):
    """A model folder whose ``model.json`` is missing or wrong."""


class ModelIdError(ModelNotFoundError):
    """A model id that is not ``project/version`` (and so can name no model in a store)."""


def default_models_dir() -> Path:
    """``$SPEEDMAP_MODELS`` or ``./models``."""
    return Path(os.environ.get("SPEEDMAP_MODELS", "models"))


@dataclass(frozen=True)
class ModelMeta:
    """What ``model.json`` says about an exported model."""

    path: Path  # the model folder
    doc: dict[str, Any]

    @property
    def id(self) -> str:
        """``project/version``: where the model lives in a store."""
        return f"{self.path.resolve().parent.name}/{self.path.resolve().name}"

    @property
    def classes(self) -> list[str]:
        return list(self.doc["classes"])

    @property
    def imgsz(self) -> int:
        return int(self.doc["input"]["imgsz"])

    @property
    def batch(self) -> int | None:
        """Fixed batch size of the graph, or None when dynamic."""
        b = self.doc["input"].get("batch")
        return None if b in (None, "dynamic") else int(b)

    @property
    def onnx(self) -> Path:
        return self.path / self.doc.get("file", MODEL_FILE)

    @property
    def best_confidence(self) -> float | None:
        """The confidence threshold of best F1 measured at export (``metrics.best_confidence``), or None
        for models exported without it (before it existed, or without the dataset to measure on)."""
        metrics = self.doc.get("metrics")
        best = metrics.get("best_confidence") if isinstance(metrics, dict) else None
        value = best.get("confidence") if isinstance(best, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            return None
        return float(value)


def read_meta(folder: Path) -> ModelMeta:
    """``model.json`` of a model folder, checked for the fields the engine needs."""
    try:
        doc = read_json(folder / META_FILE)
    except FileNotFoundError as exc:
        raise ModelFormatError(f"{folder} has no {META_FILE}: export the model with `speedmap export`") from exc
    except JsonFileError as exc:
        raise ModelFormatError(f"{folder / META_FILE}: {exc}") from exc
    problems = []
    if not isinstance(doc, dict):
        problems.append("not a JSON object")
    else:
        if not isinstance(doc.get("classes"), list) or not doc["classes"]:
            problems.append("'classes' must be a non-empty list")
        if not isinstance(doc.get("input"), dict) or not isinstance(doc["input"].get("imgsz"), int):
            problems.append("'input.imgsz' must be an integer")
    if problems:
        raise ModelFormatError(f"{folder / META_FILE}: {'; '.join(problems)}")
    meta = ModelMeta(folder, doc)
    if not meta.onnx.is_file():
        raise ModelFormatError(f"{folder} has {META_FILE} but no {meta.onnx.name}")
    return meta


def resolve(path_or_id: str | Path, models_dir: str | Path | None = None) -> ModelMeta:
    """A model folder (or its ``model.onnx``/``model.json``) by path, else by id in the store."""
    p = Path(path_or_id)
    if p.is_file() and p.name in (MODEL_FILE, META_FILE):
        p = p.parent
    if p.is_dir():
        return read_meta(p)
    store = Path(models_dir) if models_dir is not None else default_models_dir()
    if ID_PATTERN.match(str(path_or_id)) and (store / str(path_or_id)).is_dir():
        return read_meta(store / str(path_or_id))
    known = [m.id for m in list_models(store)]
    hint = f"known ids in {store}: {', '.join(known)}" if known else f"no models in {store}"
    raise ModelNotFoundError(f"unknown model {str(path_or_id)!r} (not a model folder; {hint})")


def find(models_dir: str | Path, model_id: str) -> ModelMeta:
    """The model ``project/version`` of a store, for callers that must not reveal the store: the errors
    (:class:`ModelIdError`, :class:`ModelNotFoundError`, :class:`ModelFormatError`) name the id only,
    never a path and never the other models."""
    shown = repr(model_id[:100]) + ("..." if len(model_id) > 100 else "")
    if not ID_PATTERN.match(model_id):  # also what keeps ids inside the store (no '..', no '/x/y/z')
        raise ModelIdError(f"invalid model id {shown}: expected project/version (letters, digits, . _ -)")
    folder = Path(models_dir) / model_id
    if not (folder / META_FILE).is_file():
        raise ModelNotFoundError(f"model {shown} not found")
    try:
        return read_meta(folder)
    except ModelFormatError:
        raise ModelFormatError(f"model {shown} is in the store but cannot be read (see the server log)") from None


def list_models(models_dir: str | Path | None = None) -> list[ModelMeta]:
    """Every readable model in the store, sorted by id (unreadable folders are skipped)."""
    store = Path(models_dir) if models_dir is not None else default_models_dir()
    out = []
    for meta_file in sorted(store.glob(f"*/*/{META_FILE}")):
        try:
            out.append(read_meta(meta_file.parent))
        except SpeedmapError:
            continue
    return out
