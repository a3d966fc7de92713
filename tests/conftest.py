"""Shared fixtures: small real image files and datasets built in memory."""

from __future__ import annotations

import os
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


# The modules whose tests run studies, Ray clusters and real training (a minute or more each, 60% of the suite's
# time): collected first, so that under ``-n auto`` no worker is left with one of them while the other idles.
HEAVY_FIRST = ("test_compare", "test_ray_study", "test_real_data", "test_annealed_verdict", "test_train_contention")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The heavy modules first (:data:`HEAVY_FIRST`), the rest in their usual order."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


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
    """A small `fast` run trained for a few epochs on a generated task (shared by engine/server tests)."""
    pytest.importorskip("torch")
    from speedmap.data.tasks import make_task
    from speedmap.train.config import TrainConfig
    from speedmap.train.trainer import train

    root = tmp_path_factory.mktemp("tiny_run")
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
    return root / "run"


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


CLIENT_PINS = ["inference-sdk==1.8.3", "inference-cli==1.8.3", "requests"]


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
    """A virtualenv with the real Roboflow clients, apart from ours (their pins clash with our stack)."""
    import os

    root = Path(os.environ.get("SPEEDMAP_CLIENTS_VENV", Path(__file__).resolve().parents[1] / ".venv-clients"))
    py = root / "bin" / "python"
    marker = root / ".installed"
    if not marker.is_file() or marker.read_text() != " ".join(CLIENT_PINS):
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *CLIENT_PINS], check=True, timeout=900)
        marker.write_text(" ".join(CLIENT_PINS))
    return py
