"""What a study runs: datasets or built-in tasks, sizes, schedule, destinations, constraints; the
``--quick`` and full presets; and the duration estimate stated up front."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from speedmap.data.tasks.builtin import TASKS
from speedmap.errors import SpeedmapError

DESTINATIONS = ("local", "http", "browser")
SIZES = ("fast", "accurate")
SATURATED_MAP50 = 0.95  # the reference study's "above 95%": Accurate has little left to gain
REALTIME_FPS = 30.0

# Training images per second at 256 px on this project's reference machine (2 cores, BENCHMARKS.md);
# only for the duration estimate stated up front.
REFERENCE_TRAIN_IPS = {"fast": 18.2, "accurate": 6.8}


@dataclass
class StudyConfig:
    data: list[str] = field(default_factory=list)  # dataset folders; empty: built-in tasks
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    sizes: list[str] = field(default_factory=lambda: list(SIZES))
    epochs: int = 30
    imgsz: int = 256
    batch: int = 16
    images: int = 600  # per built-in task
    seed: int = 0
    targets: list[str] = field(default_factory=lambda: list(DESTINATIONS))
    bench_seconds: float = 10.0  # minimum per benchmark run
    bench_requests: int = 100  # minimum per benchmark run
    http_concurrency: int = 100  # "many in flight" on the server, as the reference study
    local_concurrency: int = 4  # in-process: more threads than cores only oversubscribe
    quick: bool = False
    min_fps: float | None = None
    max_latency_ms: float | None = None
    min_map: float | None = None

    def check(self) -> None:
        for s in self.sizes:
            if s not in SIZES:
                raise SpeedmapError(f"unknown size {s!r}: {', '.join(SIZES)}")
        for t in self.targets:
            if t not in DESTINATIONS:
                raise SpeedmapError(f"unknown target {t!r}: {', '.join(DESTINATIONS)}")
        if not self.data:
            for t in self.tasks:
                if t not in TASKS:
                    raise SpeedmapError(f"unknown task {t!r}; built-in tasks: {', '.join(TASKS)}")
        if self.imgsz % 32 or not 64 <= self.imgsz <= 2048:
            raise SpeedmapError(f"--imgsz must be a multiple of 32 between 64 and 2048, got {self.imgsz}")
        if self.epochs < 1 or self.batch < 1 or self.images < 3:
            raise SpeedmapError("--epochs and --batch must be at least 1, --images at least 3")
        if self.min_fps is not None and self.max_latency_ms is not None:
            raise SpeedmapError("give one of --min-fps and --max-latency-ms")
        if self.min_map is not None and not 0 < self.min_map <= 1:
            raise SpeedmapError("--min-map is a mAP50 between 0 and 1, e.g. 0.6")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --quick: two tasks at 128 px, 300 images each, batch 8 for more updates per epoch (measured: `fast` reaches
# mAP50 0.70 on shapes in 10 epochs); about 8 minutes on 2 cores.
QUICK = {"tasks": ["shapes", "crowd"], "epochs": 10, "imgsz": 128, "images": 300, "batch": 8, "bench_seconds": 2.0,
         "bench_requests": 20, "http_concurrency": 16}  # fmt: skip


def preset(quick: bool, **given: Any) -> StudyConfig:
    """A config from the preset, with every option the user gave (not None) on top."""
    base: dict[str, Any] = dict(QUICK) if quick else {}
    base.update({k: v for k, v in given.items() if v is not None})
    return StudyConfig(quick=quick, **base)


def key(*parts: Any) -> str:
    """A step's identity: a hash of everything that determines its result."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def estimate_seconds(cfg: StudyConfig, train_images: list[int]) -> float:
    """A rough total: training from reference images/s scaled by pixels, plus benchmarks and overheads."""
    scale = (cfg.imgsz / 256) ** 1.35  # small inputs use the cores less well than the pixel count says
    train = sum(n * cfg.epochs / (REFERENCE_TRAIN_IPS[s] / scale) * 1.15 for n in train_images for s in cfg.sizes)
    models = len(train_images) * len(cfg.sizes)
    per_dest = {"local": 2, "http": 2, "browser": 1}
    bench = sum(models * per_dest[d] * (cfg.bench_seconds + 1.5) + (8 if d == "browser" else 0) for d in cfg.targets)
    return train + bench + models * 6  # export and test-split evaluation
