"""The reference study's general rules (Fast trains faster; Accurate gains where the task is not saturated and
little where it is; which size is real-time), each checked against this study's converged numbers."""

from __future__ import annotations

from speedmap.study.config import REALTIME_FPS
from speedmap.study.evidence import LITTLE_GAIN_MAP50, NEAR_THRESHOLD, TRAINS_FASTER, Numbers, interval_text, pct
from speedmap.study.results import (
    Rule,
)


def general_rules(numbers: dict[str, Numbers], dest: str, whole_runs: dict[str, float] | None = None) -> list[Rule]:
    """The reference study's rules of thumb, each supported, not supported, or not decidable (``None``)
    by this study's evidence. Under-trained pairs never count for or against an accuracy rule."""
    converged = {k: n for k, n in numbers.items() if not n.evidence.under_trained}
    left_out = [k for k in numbers if k not in converged]
    out_note = f" Left out as under-trained: {', '.join(left_out)}." if left_out else ""
    rules = [
        _training_rule(numbers, whole_runs),
        _saturated_rule(numbers, converged, out_note),
        _headroom_rule(numbers, converged, out_note),
        _realtime_rule(numbers, dest),
    ]
    return [r for r in rules if r is not None]


def _training_rule(numbers: dict[str, Numbers], whole_runs: dict[str, float] | None) -> Rule | None:
    """The rule "Prototype with Fast", from the training-speed ratios; ``None`` when no task has one."""
    ratios = {k: n.train_ratio for k, n in numbers.items() if n.train_ratio is not None}
    if not ratios:
        return None
    lo, hi = min(ratios.values()), max(ratios.values())
    runs = ""
    if whole_runs:
        wlo, whi = f"{min(whole_runs.values()):.1f}", f"{max(whole_runs.values()):.1f}"
        runs = f"; whole runs, which also differ in epochs run: {wlo if wlo == whi else wlo + '-' + whi}x"
    span = f"{lo:.1f}" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}-{hi:.1f}"
    return Rule(
        "Prototype with Fast: it trains faster.",
        lo >= TRAINS_FASTER,
        f"Accurate takes {span}x Fast's time per optimizer step (interleaved probe: "
        f"same data and batch, one thread, CPU time){runs}.",
    )


def _saturated_rule(numbers: dict[str, Numbers], converged: dict[str, Numbers], out_note: str) -> Rule | None:
    """The rule "saturated tasks gain little", decided by the converged saturated tasks; ``None`` when no
    task is saturated."""
    if not any(n.saturated for n in numbers.values()):
        return None
    sat = {k: n for k, n in converged.items() if n.saturated}
    gains = ", ".join(f"{k} {pct(n.gain_map50)} (mAP50-95 {pct(n.gain_map)})" for k, n in sat.items()) or "none"
    return Rule(
        "Saturated tasks (Fast already above 95% mAP50) gain little from Accurate.",
        all(n.gain_map50 < LITTLE_GAIN_MAP50 for n in sat.values()) if sat else None,
        f"mAP50 points gained by Accurate on converged saturated tasks: {gains}." + out_note,
    )


def _headroom_rule(numbers: dict[str, Numbers], converged: dict[str, Numbers], out_note: str) -> Rule | None:
    """The rule "Accurate gains mAP where there is headroom", decided by the converged unsaturated tasks;
    ``None`` when every task is saturated."""
    if all(n.saturated for n in numbers.values()):
        return None
    open_ = {k: n for k, n in converged.items() if not n.saturated}
    won = sum(n.real_gain for n in open_.values())
    gains = ", ".join(
        f"{k} {pct(n.gain_map)}{interval_text(n.delta.map_ci95) if n.delta else ''}" for k, n in open_.items()
    )
    text = (
        f"mAP50-95 points gained by Accurate where Fast is below 95% mAP50: {gains} (a real gain on {won} of "
        f"{len(open_)})."
        if open_
        else "no converged task with headroom."
    )
    return Rule(
        "Where the task has accuracy headroom, Accurate gains mAP (worth it when the budget allows its latency).",
        all(n.real_gain for n in open_.values()) if open_ else None,
        text + out_note,
    )


def _realtime_rule(numbers: dict[str, Numbers], dest: str) -> Rule | None:
    """The rule "real time needs Fast", undecided where doubtful speed evidence could move a size across
    the threshold; ``None`` without tasks."""
    if not numbers:
        return None
    rt = [k for k, n in numbers.items() if n.fast_fps >= REALTIME_FPS > n.accurate_fps]
    both = [k for k, n in numbers.items() if n.accurate_fps >= REALTIME_FPS]
    fps = ", ".join(f"{k} {n.fast_fps:.0f} vs {n.accurate_fps:.0f}" for k, n in numbers.items())
    # doubtful speed evidence only matters where it could move a size across the threshold
    near = {
        k
        for k, n in numbers.items()
        if any(
            REALTIME_FPS / NEAR_THRESHOLD <= f <= REALTIME_FPS * NEAR_THRESHOLD for f in (n.fast_fps, n.accurate_fps)
        )
    }
    shaky = [k for k, n in numbers.items() if k in near and (not n.evidence.speed_valid or not n.latency_ratio.certain)]
    busy = [k for k, n in numbers.items() if k in near and n.evidence.speed_contended]
    note = f" Speed evidence UNSTABLE or ranking uncertain on: {', '.join(shaky)}." if shaky else ""
    note += f" Speed runs contended on: {', '.join(busy)}." if busy else ""
    return Rule(
        f"Real time ({REALTIME_FPS:g} FPS) at the edge needs Fast.",
        None if shaky or busy else bool(rt) and not both,
        f"single-stream FPS on {dest}, Fast vs Accurate: {fps}.{note}",
    )
