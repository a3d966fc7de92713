"""Fast and Accurate side by side on one destination (:class:`Numbers`), and how sure a verdict drawn from
them is (:func:`evidence`: converged models, the accuracy interval, valid uncontended speed runs and training)."""

from __future__ import annotations

from dataclasses import dataclass

from speedmap.study.results import (
    AccuracyDelta,
    Evidence,
    SizeResult,
    SpeedRatio,
    Spread,
    StudyResults,
    TaskResult,
    saturated,
)

NO_GAIN = 0.01  # without a bootstrap interval: mAP50-95 differences under one point are not a gain
LITTLE_GAIN_MAP50 = 0.02  # "gains little" on a saturated task: under two mAP50 points
NEAR_THRESHOLD = 1.5  # an UNSTABLE or uncertain speed decides the real-time rule only within 1.5x of 30 FPS
TRAINS_FASTER = 1.5  # "Fast trains faster": Accurate takes at least this many times longer per step
SIZES = ("fast", "accurate")


@dataclass
class Numbers:
    """Fast and Accurate side by side on one destination."""

    fast_map: float
    accurate_map: float
    fast_map50: float
    accurate_map50: float
    fast_p50_ms: float
    accurate_p50_ms: float
    fast_fps: float
    accurate_fps: float
    latency_ratio: Spread  # Accurate p50 / Fast p50 over interleaved repeats
    train_ratio: float | None  # the interleaved probe's, else whole runs'
    delta: AccuracyDelta | None
    evidence: Evidence

    @property
    def gain_map(self) -> float:
        return self.accurate_map - self.fast_map

    @property
    def gain_map50(self) -> float:
        return self.accurate_map50 - self.fast_map50

    @property
    def saturated(self) -> bool:
        return saturated(self.fast_map50)

    @property
    def real_gain(self) -> bool:
        """Accurate is measurably more accurate (mAP50-95): its interval excludes zero, or, without an
        interval, the gain is at least one point."""
        if self.delta is not None and self.delta.map_ci95 is not None:
            return self.delta.detectable and self.delta.map > 0
        return self.gain_map >= NO_GAIN


def primary_destination(results: StudyResults) -> str | None:
    """The destination the advice is for: the first of ``--targets`` that was measured."""
    dests = results.destinations
    return next((d for d in results.config.targets if d in dests), dests[0] if dests else None)


def pct(v: float) -> str:
    return f"{100 * v:+.1f}"


def interval_text(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f", 95% CI [{pct(ci[0])}, {pct(ci[1])}]"


NEEDED_CAP = 1000  # past this many test images the estimate reads as absurd: the difference is small, not "3562"


def images_needed_text(needed: int | None, what: str = "would be needed to tell") -> str:
    """The clause "; about N test images <what>" for a difference the test split cannot tell; "over 1000" past
    :data:`NEEDED_CAP`; "" without an estimate."""
    if not needed:
        return ""
    if needed > NEEDED_CAP:
        return f"; over {NEEDED_CAP} test images {what} (the difference is small against the noise)"
    return f"; about {needed} test images {what}"


def evidence(task: TaskResult, dest: str) -> Evidence:
    """How sure a verdict on ``task`` for ``dest`` can be, in flags and in the words the report prints."""
    pair = task.pair()
    assert pair is not None
    conv = {s: e.train.settled for s, e in zip(SIZES, pair, strict=True)}
    runs = {s: e.train.epochs_run for s, e in zip(SIZES, pair, strict=True)}
    lines = [_training_line(pair)]
    acc, accuracy_line = _accuracy_evidence(task.accuracy_delta)
    lines.append(accuracy_line)
    unstable = _unstable_runs(pair, dest)
    ratio = task.speed_ratio.get(dest)
    certain = ratio is not None and ratio.latency.certain
    valid = not unstable
    if ratio is not None:
        lines.append(_speed_line(ratio, dest, unstable))
    contended = {s: e.train.other_cpu_share or 0.0 for s, e in zip(SIZES, pair, strict=True) if e.train.contended}
    lines.append(_contention_line(contended))
    busy = _contended_speed(pair, dest)
    if busy:
        lines.append(_speed_contention_line(busy, dest))
    if not all(conv.values()):
        strength = "weak"
    elif valid and certain and acc != "no interval" and not contended and not busy:
        strength = "strong"
    else:
        strength = "moderate"
    return Evidence(conv, runs, acc, valid, certain, unstable, contended, strength, lines, busy)


def _training_line(pair: tuple[SizeResult, SizeResult]) -> str:
    """Whether each size converged, and the trainer's reason."""
    parts = []
    for s, e in zip(SIZES, pair, strict=True):
        why = e.train.convergence.get("reason") or ""
        if e.train.converged and not e.train.annealed:
            why = "stopped while its learning rate was still high: not annealed, so a longer run may change it"
        state = "converged" if e.train.settled else f"had **not converged** after {e.train.epochs_run} epochs"
        parts.append(f"{s.capitalize()} {state}" + (f" ({why})" if why else ""))
    return "Training: " + "; ".join(parts) + "."


def _accuracy_evidence(d: AccuracyDelta | None) -> tuple[str, str]:
    """The accuracy verdict (``no interval``, ``detectable`` or ``not detectable``) and its line."""
    if d is None or d.map_ci95 is None:
        return "no interval", "Accuracy: no confidence interval (bootstrap not run)."
    acc = "detectable" if d.detectable else "not detectable"
    tail = "a real difference" if d.detectable else "**no detectable difference**" + images_needed_text(d.images_needed)
    return acc, (
        f"Accuracy: Accurate minus Fast = {pct(d.map)} mAP50-95 points{interval_text(d.map_ci95)} "
        f"({d.resamples} paired bootstrap resamples of {d.images} test images): {tail}."
    )


def _unstable_runs(pair: tuple[SizeResult, SizeResult], dest: str) -> list[str]:
    """The speed runs on ``dest`` that stayed UNSTABLE, as "<size> <load>"."""
    unstable = []
    for s, e in zip(SIZES, pair, strict=True):
        sp = e.speed.get(dest)
        if sp is None:
            continue
        for label, run in (("one at a time", sp.single), ("many in flight", sp.loaded)):
            if run is not None and not run.valid:
                unstable.append(f"{s} {label}")
    return unstable


def _contended_speed(pair: tuple[SizeResult, SizeResult], dest: str) -> dict[str, float]:
    """The sizes whose speed runs on ``dest`` stayed contended, with the most others took."""
    speeds = {s: e.speed.get(dest) for s, e in zip(SIZES, pair, strict=True)}
    return {s: sp.other_cpu_share or 0.0 for s, sp in speeds.items() if sp is not None and sp.contended}


def _speed_contention_line(busy: dict[str, float], dest: str) -> str:
    who = ", ".join(f"{100 * v:.0f}% during {s.capitalize()}'s" for s, v in busy.items())
    return (
        f"Speed on {dest}: **contended** (other processes took up to {who} runs, over 20% even when tried "
        "again): the times and their ratio may reflect the other load, not the models; rerun on a quiet machine."
    )


def _speed_line(ratio: SpeedRatio, dest: str, unstable: list[str]) -> str:
    lat = ratio.latency
    order = (
        "Fast is faster"
        if lat.min > 1
        else "Accurate is faster"
        if lat.max < 1
        else "**the speed ranking is uncertain**"
    )
    how = f"{ratio.repeats} interleaved repeats" if ratio.interleaved else f"{ratio.repeats} alternating runs"
    return (
        f"Speed on {dest}: {'VALID' if not unstable else '**UNSTABLE** (' + ', '.join(unstable) + ')'}; "
        f"Accurate/Fast p50 latency {lat.median:.2f}x ({lat.min:.2f}-{lat.max:.2f} over {how}): "
        f"{order}."
    )


def _contention_line(contended: dict[str, float]) -> str:
    if not contended:
        return "Training time: not contended (other processes took under 20% of the CPU)."
    who = ", ".join(f"{s.capitalize()}'s {100 * v:.0f}%" for s, v in contended.items())
    return (
        f"Training time: **contended** (other processes took {who} of the CPU): whole-run times are not "
        "comparable; the interleaved probe's ratio is used."
    )


def task_numbers(task: TaskResult, dest: str) -> Numbers | None:
    pair = task.pair()
    if pair is None:
        return None
    f, a = pair
    sf, sa = f.speed.get(dest), a.speed.get(dest)
    if sf is None or sa is None:
        return None
    ratio = task.speed_ratio.get(dest)
    lat = ratio.latency if ratio is not None else Spread.of([sa.single.p50_ms / sf.single.p50_ms])
    probe = task.train_speed_probe
    train_ratio = probe.ratio if probe is not None else a.train.total_seconds / max(f.train.total_seconds, 1e-9)
    return Numbers(
        f.metrics.map,
        a.metrics.map,
        f.metrics.map50,
        a.metrics.map50,
        sf.single.p50_ms,
        sa.single.p50_ms,
        sf.single.fps,
        sa.single.fps,
        lat,
        train_ratio,
        task.accuracy_delta,
        evidence(task, dest),
    )
