"""Reading JSON files with clear errors: one rule for the dataset layer and evaluation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson

from speedmap.errors import SpeedmapError


class JsonFileError(SpeedmapError):
    """A JSON file that cannot be read; ``line`` is set for parse errors."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def read_json(path: Path) -> Any:
    """Parse ``path`` (a BOM is tolerated). orjson first for speed on large files; stdlib json
    accepts a little more (NaN, very big ints) and words its errors better, so it decides failures."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise JsonFileError(f"cannot read: {exc}") from exc
    if not text.strip():
        raise JsonFileError("file is empty")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated")
        what = "truncated JSON" if truncated else "malformed JSON"
        raise JsonFileError(f"{what}: {exc.msg} (line {exc.lineno}, column {exc.colno})", exc.lineno) from exc


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write ``doc`` as indented JSON through a temporary file and a rename: never half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
