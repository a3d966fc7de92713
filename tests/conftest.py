"""Shared fixtures: small real image files and datasets built in memory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from speedmap.data import Dataset, ImageRecord


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core this process may use (its affinity mask), at most 8."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return min(8, len(cpus))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``scripts/setup.sh test`` runs one worker per core): pin each worker, and all it
    starts, to one core of its own. Tiny models train as fast on one thread as on two, so two workers do twice
    the work, where two unpinned workers of two threads each oversubscribed the cores 5-10x; and each worker's
    CPU meter counts its own core only, so the other worker is not "contention" (``speedmap.cpustat``), and the
    contention tests burn every core they may use (one)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[int(worker[2:]) % len(cpus)]})
        if "torch" in sys.modules:  # imported before the pin: its thread pool was sized to the old mask
            sys.modules["torch"].set_num_threads(1)


# Seconds each module's tests take under ``-n 2`` on 2 cores (rough: for balancing only; BENCHMARKS.md, the suite's
# time). The rest take under 20 s each.
MODULE_SECONDS = {
    "test_compare": 200,
    "test_train_contention": 170,
    "test_ray_study": 140,
    "test_real_data": 100,
    "test_train": 85,
    "test_annealed_verdict": 65,
    "test_pretrain": 60,
    "test_serve_ray": 37,
    "test_broken_images": 37,
    "test_serve_fuzz": 33,
    "test_serve_hardening": 32,
    "test_web": 27,
    "test_bench_retry": 24,
    "test_serve": 23,
    "test_bench_contention": 22,
}


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the tests for ``-n N --dist worksteal``, which first gives worker i the i-th of N consecutive slices
    of this order and then lets an idle worker steal from the end of another's queue. Each slice gets heavy
    modules (whole, so their fixtures are built once) to an equal share of :data:`MODULE_SECONDS`, heaviest
    first, then light tests to its size: no worker starts with all the heavy work (the heavy modules used to
    lead one slice: one worker ran the studies back to back while the other ran out of light tests), and the
    queues end on light tests, which is what gets stolen. One process: the heavy modules first."""
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.path.stem, []).append(item)
    heavy = sorted((m for m in modules if m in MODULE_SECONDS), key=MODULE_SECONDS.__getitem__, reverse=True)
    light = [it for m, its in modules.items() if m not in MODULE_SECONDS for it in its]
    slices: list[list[pytest.Item]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for m in heavy:
        j = load.index(min(load))
        slices[j] += modules[m]
        load[j] += MODULE_SECONDS[m]
    ordered, left = [], len(items)
    for j, part in enumerate(slices):
        size = left // (workers - j)  # the slice worksteal sends worker j
        fill = max(0, size - len(part))
        ordered += part + light[:fill]
        light, left = light[fill:], left - size
    items[:] = ordered + light


def write_image(path: Path, w: int = 64, h: int = 48, fmt: str = "JPEG", orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    im.save(path, format=fmt, **kwargs)
    return path


def sample_dataset(folder: Path, crowd: bool = False) -> Dataset:
    """Three splits, fractional coordinates, a negative image, mixed image sizes and formats."""
    rng = np.random.default_rng(7)
    classes = ["cat", "dog", "traffic light"]
    splits: dict[str, list[ImageRecord]] = {}
    k = 0
    for split, n in (("train", 5), ("valid", 2), ("test", 2)):
        recs = []
        for i in range(n):
            w, h = (64, 48) if i % 2 == 0 else (50, 70)
            suffix, fmt = (".jpg", "JPEG") if i % 3 else (".png", "PNG")
            path = write_image(folder / f"img{k:03d}{suffix}", w, h, fmt)
            k += 1
            nb = 0 if i == 1 else int(rng.integers(1, 5))
            x1 = rng.uniform(0, w - 10, nb)
            y1 = rng.uniform(0, h - 10, nb)
            boxes = np.column_stack([x1, y1, x1 + rng.uniform(2, 9.5, nb), y1 + rng.uniform(2, 9.5, nb)])
            cls = rng.integers(0, len(classes), nb)
            iscrowd = np.zeros(nb, dtype=bool)
            if crowd and nb:
                iscrowd[0] = True
            recs.append(ImageRecord(path, w, h, boxes, cls, iscrowd))
        splits[split] = recs
    return Dataset(classes, splits, "coco", folder)


@pytest.fixture
def sample(tmp_path: Path) -> Dataset:
    return sample_dataset(tmp_path / "src_images")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small `fast` run trained for a few epochs on a generated task (shared by engine/server tests). Trained
    once per suite: under pytest-xdist the first worker to need it trains it (about a minute), under a file lock
    in the workers' shared temporary folder, and the others wait for it and reuse it."""
    pytest.importorskip("torch")
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # pytest-N/, above each worker's popen-gwK/
    root, done = shared / "tiny_run", shared / "tiny_run.done"
    with FileLock(str(shared / "tiny_run.lock")):
        if not done.is_file():
            shutil.rmtree(root, ignore_errors=True)  # a worker that died half-way
            _train_tiny_run(root)
            done.touch()
    return root / "run"


def _train_tiny_run(root: Path) -> None:
    from speedmap.data.tasks import make_task
    from speedmap.train.config import TrainConfig
    from speedmap.train.trainer import train

    data = make_task("shapes", root / "shapes", images=48, imgsz=64, seed=5)
    # 64 px and batch 4, from the package's pretrained weights (what `speedmap train` starts from): in ~25 s of
    # CPU the model finds the shapes (validation mAP50 0.7-0.8 over seeds 0-2), so engine and server tests
    # compare real detections. From scratch the same run reached test mAP50 0.4 on one CPU and 0.06 on another
    # (AVX-512): too close to chance for tests that need the model to find something.
    cfg = TrainConfig(
        data=str(data),
        epochs=30,
        imgsz=64,
        batch=4,
        workers=0,
        close_mosaic=3,
        weights="pretrained",
        out=str(root / "run"),
    )
    train(cfg, log=lambda m: None)


@pytest.fixture(scope="session")
def model_store(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store holding the tiny run exported as ``shapes/1`` (fp32, dynamic batch)."""
    from speedmap.export import export_model

    store = tmp_path_factory.mktemp("models")
    export_model(tiny_run, store / "shapes" / "1", log=lambda m: None)
    return store


@pytest.fixture(scope="session")
def delay_server() -> Iterator[str]:
    """`tests/delay_server.py` under uvicorn: known delays, stalls and HTTP corner cases."""
    from tests.test_serve import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.delay_server:app", "--port", str(port), "--log-level", "warning"],
        cwd=Path(__file__).resolve().parents[1],
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{url}/delay", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


CLIENT_PINS = [
    line.strip()
    for line in (Path(__file__).parent / "clients.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


@pytest.fixture(scope="module")
def images(tiny_run: Path) -> list[Path]:
    """Four test images of the tiny run's dataset (server and engine tests)."""
    import json

    data = Path(json.loads((tiny_run / "train.json").read_text())["dataset"]["abspath"])
    return sorted((data / "test").glob("*.jpg"))[:4]


@pytest.fixture(scope="module")
def engine(model_store: Path):  # type: ignore[no-untyped-def]
    """The tiny run's exported model through the engine."""
    from speedmap.engine import Model

    return Model.load("shapes/1", models_dir=model_store)


@pytest.fixture(scope="session")
def client_python() -> Path:
    """A virtualenv with the real Roboflow clients, apart from ours (their pins clash with our stack):
    ``scripts/setup.sh test`` installs it before the tests (about a minute); here, when missing or stale, under
    a file lock, so that two xdist workers never install into it at once."""
    from filelock import FileLock

    root = Path(os.environ.get("SPEEDMAP_CLIENTS_VENV", Path(__file__).resolve().parents[1] / ".venv-clients"))
    py = root / "bin" / "python"
    marker = root / ".installed"
    with FileLock(str(root.with_name(root.name + ".lock"))):
        if not marker.is_file() or marker.read_text().split() != CLIENT_PINS:
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", *CLIENT_PINS], check=True, timeout=900)
            marker.write_text(" ".join(CLIENT_PINS))
    return py
