"""The micro-batcher with the real engine: batches form from concurrent requests, a bad item fails
alone, a full queue refuses, results match unbatched predictions."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import numpy as np

from speedmap.engine import Model
from speedmap.serve.batcher import Batcher, Overloaded
from speedmap.serve.requests import Params


def _images(run: Path) -> list[Path]:
    data = Path(json.loads((run / "train.json").read_text())["dataset"]["abspath"])
    return sorted((data / "test").glob("*.jpg"))[:6]


def test_batches_form_and_a_bad_item_fails_alone(model_store: Path, tiny_run: Path) -> None:
    model = Model.load("shapes/1", models_dir=model_store)
    prepared = [model.prepare(p) for p in _images(tiny_run)]
    bad = dataclasses.replace(prepared[0], square=np.zeros((7, 9, 3), np.uint8))  # wrong input shape
    params = Params(confidence=0.05, overlap=0.45)
    sizes: list[int] = []

    async def main() -> list[object]:
        b = Batcher(model, max_batch=8, max_wait_ms=50, on_batch=sizes.append)
        try:
            jobs = [b.submit(p, params, 30) for p in prepared[:3]] + [b.submit(bad, params, 30)]
            jobs += [b.submit(p, params, 30) for p in prepared[3:]]
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            await b.close()

    results = asyncio.run(main())
    assert max(sizes) > 1  # requests were batched together
    assert isinstance(results[3], Exception)
    good = results[:3] + results[4:]
    for p, det in zip(prepared, good, strict=True):
        ref = model.finish(model.forward([p.square])[0], p, conf=0.05, iou=0.45)
        assert not isinstance(det, Exception)
        assert len(det) == len(ref) and np.abs(det.xyxy - ref.xyxy).max(initial=0) < 0.01


def test_full_queue_and_timeouts(model_store: Path, tiny_run: Path) -> None:
    model = Model.load("shapes/1", models_dir=model_store)
    p = model.prepare(_images(tiny_run)[0])

    async def main() -> tuple[list[object], object]:
        b = Batcher(model, max_batch=1, queue_size=2)
        try:
            burst = await asyncio.gather(*(b.submit(p, Params(), 30) for _ in range(20)), return_exceptions=True)
            late = await asyncio.gather(b.submit(p, Params(), 1e-6), return_exceptions=True)
            return burst, late[0]
        finally:
            await b.close()

    burst, late = asyncio.run(main())
    assert any(isinstance(r, Overloaded) for r in burst)
    assert any(not isinstance(r, Exception) for r in burst)
    assert isinstance(late, TimeoutError)
