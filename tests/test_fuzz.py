"""Randomly corrupted datasets load with problems logged or fail with DatasetError, never a crash."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from speedmap.data import load_dataset, save_dataset
from speedmap.data.tasks import make_task
from speedmap.errors import DatasetError

VALUES = [None, -1, 0, 1.5, "x", [], {}, [1, 2], True, 1e308, "1", [None] * 4, {"a": 1}, "a\x00b"]


def mutate_json(obj: object, rnd: random.Random) -> None:
    if isinstance(obj, dict) and obj:
        key = rnd.choice(list(obj))
        r = rnd.random()
        if r < 0.3:
            obj[key] = rnd.choice(VALUES)
        elif r < 0.4:
            del obj[key]
        else:
            mutate_json(obj[key], rnd)
    elif isinstance(obj, list) and obj:
        i = rnd.randrange(len(obj))
        if rnd.random() < 0.3:
            obj[i] = rnd.choice(VALUES)
        else:
            mutate_json(obj[i], rnd)


def mutate_bytes(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        if not b:
            break
        i, op = rnd.randrange(len(b)), rnd.random()
        if op < 0.4:
            b[i] = rnd.randrange(32, 127)
        elif op < 0.7:
            del b[i : i + rnd.randint(1, 10)]
        else:
            b[i:i] = rnd.choice([b" ", b"\n", b"-", b"x", b"1e9", b"<", b'"', b":", b"\x00"])
    return bytes(b)


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    make_task("shapes", root / "coco", images=6, imgsz=64)
    ds = load_dataset(root / "coco")
    save_dataset(ds, root / "yolo", "yolo")
    save_dataset(ds, root / "voc", "voc")
    return root


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_corrupted_datasets_never_crash(bases: Path, tmp_path: Path, fmt: str) -> None:
    rnd = random.Random(fmt)
    for it in range(60):
        work = tmp_path / f"w{it}"
        shutil.copytree(bases / fmt, work)
        if fmt == "coco":
            f = work / rnd.choice(["train", "valid", "test"]) / "_annotations.coco.json"
            doc = json.loads(f.read_text())
            for _ in range(rnd.randint(1, 4)):
                mutate_json(doc, rnd)
            f.write_text(json.dumps(doc))
        else:
            files = sorted(p for p in work.rglob("*") if p.suffix in (".txt", ".yaml", ".xml", ".jpg"))
            f = rnd.choice(files)
            f.write_bytes(mutate_bytes(f.read_bytes(), rnd))
        try:
            ds = load_dataset(work)
        except DatasetError as exc:
            assert str(exc)
        else:
            assert all(p.kind and p.file for p in ds.problems.items)
        shutil.rmtree(work)
