"""What a study runs: datasets or built-in tasks, sizes, schedule, destinations, constraints; the
``--quick`` and full presets; and the duration estimate stated up front."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from math import ceil
from typing import Any

from speedmap.data.tasks.builtin import TASKS
from speedmap.errors import SpeedmapError

DESTINATIONS = ("local", "http", "browser")
SIZES = ("fast", "accurate")
SATURATED_MAP50 = 0.95  # the reference study's "above 95%": Accurate has little left to gain
REALTIME_FPS = 30.0

# Training images per second at 128 px, batch 8, on this project's reference machine (2 cores; measured by the
# --quick study, BENCHMARKS.md), and how it falls with the input size (fitted to the 256 px runs: 18.2 and 6.8
# images/s). Only for the built-in tasks' estimate: on your data the probe measures it (``measured_ips``) before
# the estimate is stated, since it varies with the data (real photos trained 1.4-2x faster per image than the
# generated tasks at the same size, BENCHMARKS.md "Real data").
REFERENCE_TRAIN_IPS = {"fast": 74.0, "accurate": 37.0}
IPS_EXPONENT = {"fast": 2.0, "accurate": 2.4}
# Training (2 threads, data loading in workers) against the probe's one-thread step: 1.52-1.87x per image on the
# three real datasets at 128-320 px (BENCHMARKS.md "Real data"); other thread counts are a guess on the same slope.
PROBE_THREAD_GAIN_2 = 1.7


def train_images_per_second(size: str, imgsz: int) -> float:
    """Measured: below 128 px an epoch is no faster (96 px trained at the 128 px rate: small inputs leave the
    cores idle)."""
    return REFERENCE_TRAIN_IPS[size] * (128 / max(imgsz, 128)) ** IPS_EXPONENT[size]


def measured_ips(fast_step_s: float, accurate_step_s: float, batch: int, threads: int) -> dict[str, float]:
    """Training images per second per size, from the probe's one-thread seconds per optimizer step."""
    gain = 1.0 + (PROBE_THREAD_GAIN_2 - 1.0) * max(threads - 1, 0)
    return {"fast": gain * batch / fast_step_s, "accurate": gain * batch / accurate_step_s}


@dataclass
class StudyConfig:
    data: list[str] = field(default_factory=list)  # dataset folders; empty: built-in tasks
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    sizes: list[str] = field(default_factory=lambda: list(SIZES))
    epochs: int = 60  # a maximum: training stops earlier at a plateau (``patience``)
    patience: int = 8  # epochs without a validation mAP50-95 gain before a run counts as converged
    imgsz: int | None = None  # the input size everywhere; None: built-in tasks at task_imgsz, data by its boxes
    task_imgsz: int = 256  # built-in tasks: generated and trained at this size
    budget_minutes: float | None = None  # per dataset: training fits into what the other steps leave of it
    int8: bool = True  # also export int8 (CPU deployment), score it and benchmark it on the CPU destinations
    batch: int = 16
    images: int = 600  # per built-in task
    seed: int = 0
    targets: list[str] = field(default_factory=lambda: list(DESTINATIONS))
    bench_seconds: float = 10.0  # minimum per benchmark run
    bench_requests: int = 100  # minimum per benchmark run
    bench_repeats: int = 3  # interleaved Fast/Accurate repeats per scenario and destination
    bench_retry: bool = True  # an UNSTABLE benchmark run is tried again, longer (bench.run.RETRY_FACTORS)
    probe_steps: int = 8  # optimizer steps per segment of the training-speed probe
    bootstrap_resamples: int = 1000  # paired bootstrap over test images
    http_concurrency: int = 100  # "many in flight" on the server, as the reference study
    local_concurrency: int = 4  # in-process: more threads than cores only oversubscribe
    quick: bool = False
    device: str = "auto"  # training device of every run: auto | cpu | cuda | cuda:N
    weights: str = "pretrained"  # where every run starts: pretrained (the package's weights) | scratch
    ray: str | None = None  # a Ray cluster's address (auto, local, HOST:PORT): training steps run as Ray tasks
    bench_node: str | None = None  # with ray: the node (IP or host name) benchmarks must run on
    min_fps: float | None = None
    max_latency_ms: float | None = None
    min_map: float | None = None

    def check(self) -> None:
        """Raise a SpeedmapError naming the first option that is out of range, in the order below."""
        self._check_names()
        self._check_schedule()
        self._check_constraints()

    def _check_names(self) -> None:
        if self.weights not in ("pretrained", "scratch"):
            raise SpeedmapError(
                f"--weights {self.weights!r}: the study takes pretrained or scratch (a checkpoint file is for "
                "`speedmap train --weights`)"
            )
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

    def _check_schedule(self) -> None:
        for v in (self.imgsz, self.task_imgsz):
            if v is not None and (v % 32 or not 64 <= v <= 2048):
                raise SpeedmapError(f"--imgsz must be a multiple of 32 between 64 and 2048, got {v}")
        if self.budget_minutes is not None and not 1 <= self.budget_minutes <= 100_000:
            raise SpeedmapError(f"--budget is in minutes, at least 1; got {self.budget_minutes:g}")
        if self.epochs < 1 or self.batch < 1 or self.images < 3:
            raise SpeedmapError("--epochs and --batch must be at least 1, --images at least 3")
        if self.patience < 0 or self.bench_repeats < 1 or self.probe_steps < 1 or self.bootstrap_resamples < 100:
            raise SpeedmapError(
                "--patience must be at least 0, --bench-repeats at least 1, and the bootstrap needs "
                "at least 100 resamples"
            )

        if not 1 <= self.bench_requests <= MAX_BENCH_REQUESTS:
            raise SpeedmapError(
                f"--bench-requests must be between 1 and {MAX_BENCH_REQUESTS}, got {self.bench_requests}"
            )

    def _check_constraints(self) -> None:
        if self.min_fps is not None and self.max_latency_ms is not None:
            raise SpeedmapError("give one of --min-fps and --max-latency-ms")
        if self.min_map is not None and not 0 < self.min_map <= 1:
            raise SpeedmapError("--min-map is a mAP50 between 0 and 1, e.g. 0.6")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


MAX_BENCH_REQUESTS = 1_000_000  # per benchmark run: more is a typo, not a benchmark

# --quick, chosen by measurement (BENCHMARKS.md): one task with accuracy headroom (crowd) at 96 px, 300 images,
# batch 8, up to 40 epochs with early stopping. Measured first: two tasks at 128 px and 20 epochs took 9.5 min and
# left Accurate still improving on both (every verdict provisional); one task at 128 px with patience 4 stopped
# Accurate at epoch 13 on validation noise (45 images swing 5 points from epoch to epoch), so patience is 8.
QUICK = {
    "tasks": ["crowd"],
    "epochs": 40,
    "patience": 8,
    "task_imgsz": 96,
    "int8": False,  # int8's exports, scoring and benchmarks add about a minute and a half: --quick --int8 asks
    "images": 300,
    "batch": 8,
    "bench_seconds": 1.0,
    "bench_requests": 10,
    "bench_repeats": 3,
    "http_concurrency": 16,
    "probe_steps": 6,
}


def preset(quick: bool, **given: Any) -> StudyConfig:
    """A config from the preset, with every option the user gave (not None) on top."""
    base: dict[str, Any] = dict(QUICK) if quick else {}
    base.update({k: v for k, v in given.items() if v is not None})
    return StudyConfig(quick=quick, **base)


def key(*parts: Any) -> str:
    """A step's identity: a hash of everything that determines its result."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


# About where a run plateaus: with --patience 8, early stopping ended the built-in tasks' runs at about two
# thirds of 60 epochs (BENCHMARKS.md); a budget that gives fewer epochs is not expected to converge.
CONVERGED_EPOCHS = 40


def typical_epochs(cfg: StudyConfig, epochs: int) -> int:
    """Where a run of at most ``epochs`` typically ends: the built-in tasks' near :data:`CONVERGED_EPOCHS`; on
    real data at the cap (issue 33: with the 5-epoch EMA, small real sets' validation curves still rose at 120
    epochs; BENCHMARKS.md)."""
    return epochs if cfg.data else min(epochs, CONVERGED_EPOCHS)


EPOCH_OVERHEAD = 1.3  # validation and checkpoints on top of the training pass


def epoch_seconds(size: str, imgsz: int, train_images: int, ips: dict[str, float] | None = None) -> float:
    rate = ips[size] if ips else train_images_per_second(size, imgsz)
    return train_images / rate * EPOCH_OVERHEAD


# A benchmark run's wall time against its configured duration: HTTP runs at 100 in flight are often UNSTABLE at
# 5 s and tried again at 10 and 20 s (real-data study: 2.4x on average, 1.3-3.3x per step), the others rarely.
HTTP_RUN_FACTOR = 2.4


def _repeats(cfg: StudyConfig) -> int:
    """Benchmark repeats a comparison typically takes: it stops once the ranking is settled (after 2; Fast and
    Accurate differ 1.5-2.6x), so 2 where more were asked for two sizes."""
    return min(cfg.bench_repeats, 2) if len(cfg.sizes) == 2 else cfg.bench_repeats


def fixed_seconds(cfg: StudyConfig, imgsz: int, destinations: list[str] | None = None, probe: bool = True) -> float:
    """Everything but training for one dataset: the probe (unless already run), exports (int8 calibration),
    scoring, benchmarks."""
    ips = {s: train_images_per_second(s, imgsz) for s in cfg.sizes}
    probe_s = sum(2 * (cfg.probe_steps + 2) * cfg.batch / (ips[s] / 2) for s in cfg.sizes)
    variants = 2 if cfg.int8 else 1
    bench = 0.0
    for d in destinations if destinations is not None else cfg.targets:
        scenarios, extra, factor = (
            (1, 8.0, 1.0) if d == "browser" else (2, 0.7, HTTP_RUN_FACTOR if d.startswith("http") else 1)
        )
        runs = len(cfg.sizes) * _repeats(cfg) * scenarios * (1 if d == "browser" else variants)
        bench += runs * (cfg.bench_seconds * factor + extra)
    export = len(cfg.sizes) * (2 + (3 + 4 * (imgsz / 256) ** 2 if cfg.int8 else 0))  # int8: calibration
    probe_s = probe_s if probe and len(cfg.sizes) == 2 else 0.0
    return probe_s + bench + export + len(cfg.sizes) * variants * 6  # + scoring and bootstrap


@dataclass
class Plan:
    """One dataset's schedule: the epochs that fit the budget and what the study should take."""

    imgsz: int
    train_images: int
    epochs: int  # the most each size trains
    expected_seconds: float  # typical: runs end where typical_epochs says, or at the budget's epochs
    at_most_seconds: float
    limited: bool  # the budget allows fewer epochs than --epochs
    converged_seconds: float  # what runs to typical_epochs of --epochs would take
    budget_seconds: float | None
    train_seconds: float | None  # of the budget, what is left for training (both sizes)
    ips: dict[str, float] | None = None  # training images/s per size, measured by the probe (None: estimated)
    spent_seconds: float = 0.0  # already spent before the plan (the probe), counted in the totals

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan(
    cfg: StudyConfig,
    train_images: int,
    imgsz: int,
    destinations: list[str] | None = None,
    ips: dict[str, float] | None = None,
    spent_seconds: float = 0.0,
) -> Plan:
    """Fit the schedule into ``cfg.budget_minutes``: the epochs both sizes can train after the fixed steps.
    ``ips``: measured training speeds (the probe, which then counts as ``spent_seconds`` instead of estimated)."""
    per = sum(epoch_seconds(s, imgsz, train_images, ips) for s in cfg.sizes)
    fixed = fixed_seconds(cfg, imgsz, destinations, probe=ips is None) + spent_seconds
    converged = fixed + per * typical_epochs(cfg, cfg.epochs)
    budget = None if cfg.budget_minutes is None else cfg.budget_minutes * 60
    epochs, train_s = cfg.epochs, None
    if budget is not None:
        train_s = budget - fixed
        if train_s < per:
            raise SpeedmapError(
                f"--budget {cfg.budget_minutes:g} min leaves no time to train: the benchmarks, exports and scoring"
                f" take about {fixed / 60:.0f} min and one epoch of each size {per / 60:.1f} min at {imgsz} px;"
                f" give at least --budget {ceil((fixed + 3 * per) / 60)}"
            )
        epochs = min(cfg.epochs, int(train_s // per))
    limited = epochs < cfg.epochs
    typical = fixed + per * typical_epochs(cfg, epochs)
    return Plan(
        imgsz,
        train_images,
        epochs,
        typical,
        fixed + per * epochs,
        limited,
        converged,
        budget,
        train_s,
        ips,
        spent_seconds,
    )


def estimate_seconds(cfg: StudyConfig, train_images: list[int], epochs: float | None = None) -> float:
    """A rough total at ``epochs`` per model (default: the maximum, ``cfg.epochs``) at the built-in tasks' size."""
    ep = cfg.epochs if epochs is None else epochs
    imgsz = cfg.imgsz or cfg.task_imgsz
    per = sum(sum(epoch_seconds(s, imgsz, n) for s in cfg.sizes) for n in train_images)
    return per * ep + fixed_seconds(cfg, imgsz) * len(train_images)
