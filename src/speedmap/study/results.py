"""The study's results as typed objects: task -> size -> accuracy, training, speed per destination, and
the comparisons drawn from them. ``results.json`` is written and read here only (:meth:`StudyResults.to_json`,
:meth:`StudyResults.from_json`); everything else takes the objects."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from speedmap.bench.results import Spread
from speedmap.cpustat import CONTENDED_SHARE
from speedmap.study.config import SATURATED_MAP50, StudyConfig
from speedmap.train.convergence import ANNEALED_SHARE, lr_share

Interval = tuple[float, float]  # a 95% confidence interval, [low, high] in JSON
INT8_TOLERANCE = 0.01  # an int8 model more than 1 point of mAP50-95 below its fp32 model is flagged


def saturated(map50: float | None) -> bool:
    """The reference study's "above 95%": a size at or above this mAP50 has little left to gain."""
    return map50 is not None and map50 >= SATURATED_MAP50


@dataclass
class TrainResult:
    """One size's training run, from its ``train.json`` (``history``: one row per epoch)."""

    size: str
    params: int
    flops: int
    imgsz: int
    epochs_run: int
    epochs_max: int
    total_seconds: float
    cpu_seconds: float | None
    train_images_per_second: float | None
    best_epoch: int
    best_map: float | None
    best_map50: float | None
    converged: bool
    convergence: dict[str, Any]
    contended: bool
    other_cpu_share: float | None
    time_to_95_seconds: float | None
    epoch_to_95: int | None
    run: str
    train_images: int
    history: list[dict[str, Any]] = field(default_factory=list)
    budget: dict[str, Any] | None = None  # what the study's time budget changed (epochs fitted, stopped at)
    worker: dict[str, Any] | None = None  # on Ray: host, pid, start and end times, attempt, epochs resumed after

    @property
    def annealed(self) -> bool:
        """Whether the run ended with its learning rate low (from its per-epoch log; True without rates): a run
        stopped at a high rate is not converged, whatever its record says (records from before the wsd
        schedule called a patience stop converged)."""
        share = lr_share(self.history)
        return share is None or share <= ANNEALED_SHARE

    @property
    def settled(self) -> bool:
        """Converged and annealed: what a strong verdict needs of each size."""
        return self.converged and self.annealed

    def curve(self) -> tuple[list[float], list[float]]:
        """Validation mAP50-95 against cumulative training wall time (seconds)."""
        xs, ys, clock = [], [], 0.0
        for h in self.history:
            clock += h.get("seconds") or 0.0
            if h.get("map") is not None:
                xs.append(clock)
                ys.append(float(h["map"]))
        return xs, ys

    def map_at(self, seconds: float) -> float | None:
        """The best validation mAP50-95 reached within ``seconds`` of training (None: no epoch finished)."""
        xs, ys = self.curve()
        within = [y for x, y in zip(xs, ys, strict=True) if x <= seconds * 1.0001]
        return max(within) if within else None


@dataclass
class Accuracy:
    """Test-split COCO metrics through the exported model, with bootstrap intervals."""

    map: float
    map50: float
    map_ci95: Interval | None = None
    map50_ci95: Interval | None = None


@dataclass
class RunSummary:
    """One benchmark scenario for one model: the median over interleaved repeats, and whether every
    repeat was VALID."""

    p50_ms: float
    p90_ms: float | None
    throughput_rps: float
    valid: bool
    errors: int
    concurrency: int = 1
    repeats: int = 1
    unstable_repeats: int = 0
    other_cpu_share: float | None = None  # the most other processes took in a repeat (None: unknown)

    @property
    def fps(self) -> float:
        return self.throughput_rps if self.concurrency == 1 and self.throughput_rps else 1000.0 / self.p50_ms


@dataclass
class Speed:
    """One size on one destination: one at a time, and many in flight."""

    single: RunSummary
    loaded: RunSummary | None
    doc: str
    warmup: dict[str, Any] = field(default_factory=dict)
    browser_info: dict[str, Any] = field(default_factory=dict)
    # Other processes' share of the CPU, the most in any run (after its retry); contended: over 20%.
    # Taken from the runs when they carry it.
    other_cpu_share: float | None = None
    contended: bool = False

    def __post_init__(self) -> None:
        # (the study builds a Speed from its runs' summaries as plain dicts, to store it in steps.json)
        runs = [r if isinstance(r, dict) else dataclasses.asdict(r) for r in (self.single, self.loaded) if r]
        shares = [r["other_cpu_share"] for r in runs if r.get("other_cpu_share") is not None]
        if shares:
            self.other_cpu_share = max(shares)
        self.contended = self.contended or (self.other_cpu_share or 0.0) > CONTENDED_SHARE

    @property
    def valid(self) -> bool:
        return self.single.valid and (self.loaded is None or self.loaded.valid)


@dataclass
class Int8Result:
    """A size's int8 export: test accuracy (interval from the bootstrap paired with its fp32 model), the
    difference from fp32, and speed on the CPU destinations."""

    model_id: str
    metrics: Accuracy
    delta_map: float  # int8 minus fp32, mAP50-95
    delta_map_ci95: Interval | None
    speed: dict[str, Speed] = field(default_factory=dict)

    @property
    def loses(self) -> bool:
        """More than :data:`INT8_TOLERANCE` of mAP50-95 below its fp32 model: flagged."""
        return self.delta_map < -INT8_TOLERANCE


@dataclass
class SizeResult:
    model_id: str
    train: TrainResult
    metrics: Accuracy
    test_images: int
    speed: dict[str, Speed] = field(default_factory=dict)
    int8: Int8Result | None = None


@dataclass
class SpeedRatio:
    """Accurate over Fast on one destination, from interleaved repeats: p50 latency (one at a time) and
    throughput (many in flight; Fast over Accurate so that both read "how many times faster is Fast")."""

    latency: Spread
    throughput: Spread | None
    repeats: int
    interleaved: bool = True


@dataclass
class AccuracyDelta:
    """Accurate minus Fast on the test split, with paired-bootstrap 95% intervals."""

    map: float
    map50: float
    map_ci95: Interval | None
    map50_ci95: Interval | None
    images: int
    resamples: int = 0
    images_needed: int | None = None  # for the mAP50-95 interval to exclude zero (None: cannot tell)

    @property
    def detectable(self) -> bool:
        """The mAP50-95 difference's interval excludes zero (without an interval: never)."""
        return self.map_ci95 is not None and (self.map_ci95[0] > 0 or self.map_ci95[1] < 0)


@dataclass
class TrainProbe:
    """Interleaved timing of a fixed number of optimizer steps (Fast, Accurate, Accurate, Fast)."""

    ratio: float  # Accurate seconds per step / Fast seconds per step
    fast_step_s: float
    accurate_step_s: float
    steps: int
    other_cpu_share: float | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TaskResult:
    dataset: str
    classes: list[str]
    fingerprint: str
    sizes: dict[str, SizeResult] = field(default_factory=dict)
    accuracy_delta: AccuracyDelta | None = None
    train_speed_probe: TrainProbe | None = None
    speed_ratio: dict[str, SpeedRatio] = field(default_factory=dict)
    imgsz: int | None = None  # the input size both sizes trained and run at
    imgsz_reason: str = ""
    split: dict[str, Any] = field(default_factory=dict)  # source (dataset | automatic), seed, ratios, carved
    plan: dict[str, Any] = field(default_factory=dict)  # the schedule within the budget (config.Plan)
    corrupt_images: list[str] = field(default_factory=list)  # image files skipped: unreadable or not decodable

    def pair(self) -> tuple[SizeResult, SizeResult] | None:
        f, a = self.sizes.get("fast"), self.sizes.get("accurate")
        return (f, a) if f is not None and a is not None else None

    def saturated(self) -> bool:
        """Fast already reaches the ceiling: the one saturation rule the recommendation and report use."""
        f = self.sizes.get("fast")
        return f is not None and saturated(f.metrics.map50)


@dataclass
class Evidence:
    """How sure a verdict is: what the user reads first."""

    converged: dict[str, bool]  # size -> converged
    epochs_run: dict[str, int]
    accuracy: str  # "detectable" | "not detectable" | "no interval"
    speed_valid: bool
    speed_certain: bool
    unstable: list[str]  # "size scenario" runs that stayed UNSTABLE
    contended: dict[str, float]  # size -> other processes' CPU share, for contended runs only
    strength: str  # "strong" | "moderate" | "weak"
    lines: list[str] = field(default_factory=list)  # the words the report prints
    speed_contended: dict[str, float] = field(default_factory=dict)  # size -> others' CPU share, contended speed

    @property
    def under_trained(self) -> list[str]:
        return [s for s, ok in self.converged.items() if not ok]


@dataclass
class Choice:
    task: str
    destination: str
    size: str
    reasons: list[str]
    evidence: Evidence | None = None
    provisional: bool = False  # drawn from under-trained models: not a verdict on the sizes themselves
    variant: str = "fp32"  # the export to deploy: "fp32" or "int8" (measured faster and within 1 point)


@dataclass
class Rule:
    rule: str
    supported: bool | None  # None: the evidence is not good enough to say
    evidence: str


@dataclass
class Recommendation:
    destination: str | None
    choices: list[Choice] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    per_destination: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class StudyResults:
    config: StudyConfig
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    destinations: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    recommendation: Recommendation | None = None

    def to_json(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StudyResults:
        return from_plain(cls, doc)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def from_plain(tp: Any, v: Any) -> Any:
    """``v`` (plain JSON, as ``to_json`` writes it) as type ``tp``: dataclasses, ``X | None``, lists,
    tuples and dicts of them."""
    if v is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return from_plain(inner[0], v) if len(inner) == 1 else v
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        return tp(**{k: from_plain(hints[k], x) for k, x in v.items() if k in names})
    if origin is list:
        (arg,) = typing.get_args(tp)
        return [from_plain(arg, x) for x in v]
    if origin is tuple:
        return tuple(v)
    if origin is dict:
        _, arg = typing.get_args(tp)
        return {k: from_plain(arg, x) for k, x in v.items()}
    return v
