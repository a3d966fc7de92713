"""Which size to deploy, and why, from the study's measurements and the user's constraints, computed
once per study. Every verdict carries its evidence (converged models, the accuracy interval, valid
uncontended speed runs and training); a comparison of under-trained models is provisional and never
counts for or against a general rule."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from speedmap.study.config import REALTIME_FPS, StudyConfig
from speedmap.study.results import (
    AccuracyDelta,
    Choice,
    Evidence,
    Recommendation,
    Rule,
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


def _pct(v: float) -> str:
    return f"{100 * v:+.1f}"


def _ci(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f", 95% CI [{_pct(ci[0])}, {_pct(ci[1])}]"


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
    tail = (
        "a real difference"
        if d.detectable
        else "**no detectable difference**"
        + (f"; about {d.images_needed} test images would be needed to tell" if d.images_needed else "")
    )
    return acc, (
        f"Accuracy: Accurate minus Fast = {_pct(d.map)} mAP50-95 points{_ci(d.map_ci95)} "
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


def _meets_speed(fps: float, p50: float, cfg: StudyConfig) -> bool:
    if cfg.min_fps is not None and fps < cfg.min_fps:
        return False
    return not (cfg.max_latency_ms is not None and p50 > cfg.max_latency_ms)


def constraint_text(cfg: StudyConfig) -> str:
    parts = []
    if cfg.min_fps is not None:
        parts.append(f"at least {cfg.min_fps:g} FPS")
    if cfg.max_latency_ms is not None:
        parts.append(f"at most {cfg.max_latency_ms:g} ms per frame")
    if cfg.min_map is not None:
        parts.append(f"mAP50 of at least {cfg.min_map:.2f}")
    return " and ".join(parts)


def _under_trained_note(n: Numbers) -> str:
    ev = n.evidence
    who = " and ".join(f"{s.capitalize()}" for s in ev.under_trained)
    runs = sorted({ev.epochs_run[s] for s in ev.under_trained})
    after = " and ".join(str(r) for r in runs)
    return (
        f"Provisional: {who} had not converged after {after} epochs; the gap reflects the training budget, "
        f"not the sizes; rerun with --epochs {max(2 * runs[-1], 10)}."
    )


def choose(name: str, n: Numbers, dest: str, cfg: StudyConfig) -> Choice:
    """The size to deploy on ``dest`` for task ``name``, with reasons a user can act on, opened by how
    sure the verdict is."""
    c = _choose(name, n, dest, cfg)
    c.evidence = n.evidence
    if n.evidence.under_trained:
        c.provisional = True
        c.reasons.insert(0, _under_trained_note(n))
    lat = n.latency_ratio
    if not lat.certain:
        c.reasons.append(
            f"The speed ranking on {dest} is uncertain: Accurate/Fast p50 latency ranged "
            f"{lat.min:.2f}-{lat.max:.2f}x over {len(lat.values)} interleaved repeats."
        )
    if n.evidence.unstable:
        c.reasons.append(
            f"Speed runs that stayed UNSTABLE after retries ({', '.join(n.evidence.unstable)}): treat "
            "those speed numbers as indicative; rerun on a quieter machine or with --bench-seconds "
            "larger."
        )
    if n.evidence.speed_contended:
        who = ", ".join(f"{s.capitalize()} {100 * v:.0f}%" for s, v in n.evidence.speed_contended.items())
        c.reasons.append(
            f"Other processes took over 20% of the CPU during speed runs on {dest} ({who}), even when tried "
            "again: the speed numbers may reflect that load; rerun on a quiet machine."
        )
    return c


def _choose(name: str, n: Numbers, dest: str, cfg: StudyConfig) -> Choice:
    speed = (
        f"Fast answers in {n.fast_p50_ms:.1f} ms ({n.fast_fps:.0f} FPS) on {dest}, Accurate in "
        f"{n.accurate_p50_ms:.1f} ms ({n.accurate_fps:.0f} FPS): "
        f"{n.latency_ratio.median:.1f}x slower"
    )
    ci = _ci(n.delta.map_ci95) if n.delta is not None else ""
    acc = (
        f"mAP50-95 {n.fast_map:.3f} vs {n.accurate_map:.3f} ({_pct(n.gain_map)} points{ci}), "
        f"mAP50 {n.fast_map50:.3f} vs {n.accurate_map50:.3f}"
    )
    if max(n.fast_map50, n.accurate_map50) < 0.05:
        return Choice(
            name,
            dest,
            "fast",
            [
                f"Neither size learned this task yet ({acc}): train longer (--epochs) or check the labels before "
                f"choosing a size; until then Fast is the cheaper one to iterate with. {speed}."
            ],
        )
    constrained = _constrained_choice(name, n, dest, cfg, speed, acc)
    if constrained is not None:
        return constrained
    if not n.real_gain:
        train = f"; Accurate also takes {n.train_ratio:.1f}x Fast's time per training step" if n.train_ratio else ""
        why = _no_gain_reason(n, acc)
        return Choice(name, dest, "fast", [f"{why}, so Accurate's cost buys nothing. {speed}{train}."])
    return Choice(name, dest, "accurate", _accurate_reasons(n, dest, constraint_text(cfg), speed, acc))


def _constrained_choice(name: str, n: Numbers, dest: str, cfg: StudyConfig, speed: str, acc: str) -> Choice | None:
    """The choice the constraints force when at most one size meets them; ``None`` when both do (or none
    were given), so the accuracy gain decides."""
    ok_speed = {s: _meets_speed(getattr(n, f"{s}_fps"), getattr(n, f"{s}_p50_ms"), cfg) for s in SIZES}
    ok_map = {s: cfg.min_map is None or getattr(n, f"{s}_map50") >= cfg.min_map for s in SIZES}
    ok = [s for s in SIZES if ok_speed[s] and ok_map[s]]
    want = constraint_text(cfg)
    if not ok:
        if not any(ok_speed.values()):
            return Choice(
                name,
                dest,
                "fast",
                [
                    f"Neither size meets {want} on {dest}. {speed}. Fast is the closest; consider a smaller input "
                    "size (--imgsz), a faster destination or a GPU provider."
                ],
            )
        best = max((s for s in SIZES if ok_speed[s]), key=lambda s: getattr(n, f"{s}_map50"))
        return Choice(
            name,
            dest,
            best,
            [
                f"No size reaches {want}: {acc}. {best.capitalize()} is the most accurate that meets the speed "
                "constraint; more training data or epochs should come before a bigger model."
            ],
        )
    if ok == ["fast"]:
        why = "the speed constraint" if not ok_speed["accurate"] else "the accuracy constraint"
        return Choice(name, dest, "fast", [f"Only Fast meets {want} (Accurate fails {why}). {speed}. {acc}."])
    if ok == ["accurate"]:
        return Choice(name, dest, "accurate", [f"Only Accurate meets {want}: {acc}. {speed}."])
    return None


def _no_gain_reason(n: Numbers, acc: str) -> str:
    """Why Accurate's extra cost buys nothing, when it has no real mAP50-95 gain."""
    d = n.delta
    if d is not None and d.map_ci95 is not None and d.detectable:  # detectable, and Fast is the better one
        return f"Fast is measurably more accurate here ({acc})"
    if d is not None and d.map_ci95 is not None:
        need = f"; about {d.images_needed} would be needed to tell" if d.images_needed else ""
        return f"There is no detectable mAP50-95 difference on {d.images} test images ({acc}){need}"
    if n.saturated:
        return f"The task is saturated and Accurate gains under one mAP50-95 point ({acc})"
    return f"Accurate gains under one mAP50-95 point here ({acc})"


def _accurate_reasons(n: Numbers, dest: str, want: str, speed: str, acc: str) -> list[str]:
    """Why Accurate, when it has a real gain, and when Fast would still do (tight boxes or real time)."""
    if n.saturated:
        head = "Both sizes saturate mAP50, yet Accurate's boxes fit tighter"
    elif saturated(n.accurate_map50):
        head = "Accurate reaches the task's ceiling where Fast does not"
    else:
        head = "Accurate uses the task's accuracy headroom"
    reasons = [f"{head}: {acc}" + (f", and still meets {want}. " if want else ". ") + f"{speed}."]
    if n.saturated and n.gain_map50 < LITTLE_GAIN_MAP50:
        reasons.append(
            f"If finding the objects is what matters (mAP50) rather than tight boxes, Fast does the "
            f"same job {n.latency_ratio.median:.1f}x faster."
        )
    if not want and n.accurate_fps < REALTIME_FPS <= n.fast_fps:
        reasons.append(
            f"If you need real time ({REALTIME_FPS:g} FPS) on {dest}, deploy Fast instead: only Fast "
            "reaches that frame rate here (rerun with --min-fps to decide by it)."
        )
    return reasons


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
    gains = ", ".join(f"{k} {_pct(n.gain_map50)} (mAP50-95 {_pct(n.gain_map)})" for k, n in sat.items()) or "none"
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
    gains = ", ".join(f"{k} {_pct(n.gain_map)}{_ci(n.delta.map_ci95) if n.delta else ''}" for k, n in open_.items())
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


def _budget_note(task: TaskResult, c: Choice, cfg: StudyConfig) -> None:
    """A provisional verdict whose training the budget cut short says so, with the time a converged one needs."""
    pair = task.pair()
    limited = bool(task.plan.get("limited"))  # the plan gave fewer epochs than --epochs: the budget's cut too
    cut = [e.train for e in pair or () if (e.train.budget or limited) and not e.train.settled]
    if not c.provisional or not cut or not cfg.budget_minutes:
        return
    need = float(task.plan.get("converged_seconds") or 0.0) / 60
    epochs = " and ".join(str(r) for r in sorted({t.epochs_run for t in cut}))
    again = ceil(max(need, cfg.budget_minutes + 1))
    c.reasons[0] = (
        f"Provisional: the {cfg.budget_minutes:g}-minute budget cut training at {epochs} epochs, before "
        f"{' and '.join(t.size.capitalize() for t in cut)} converged; the gap reflects the budget, not the sizes. "
        f"A converged answer needs about {need:.0f} minutes: rerun with --budget {again}."
    )


def deploy_variant(task: TaskResult, c: Choice) -> None:
    """Name the export to deploy: int8 where it was measured on the destination, is faster, and stays within
    1 point of mAP50-95 of fp32; an int8 model that loses more is flagged."""
    size = task.sizes.get(c.size)
    q = size.int8 if size is not None else None
    if size is None or q is None:
        return
    acc = (
        f"int8 mAP50-95 {q.metrics.map:.3f} vs fp32 {size.metrics.map:.3f} ({_pct(q.delta_map)} points"
        f"{_ci(q.delta_map_ci95)})"
    )
    qs, fs = q.speed.get(c.destination), size.speed.get(c.destination)
    if q.loses:
        c.reasons.append(
            f"Its int8 export is flagged: {acc}, more than 1 point below fp32; deploy fp32 (or calibrate on more "
            "images)."
        )
    elif qs is None or fs is None:
        c.reasons.append(f"Its int8 export ({acc}) was not timed on {c.destination}; fp32 is what was measured.")
    elif qs.single.p50_ms < fs.single.p50_ms:
        c.variant = "int8"
        c.reasons.append(
            f"Deploy its int8 export: {qs.single.p50_ms:.1f} ms vs {fs.single.p50_ms:.1f} ms for fp32 on "
            f"{c.destination} ({fs.single.p50_ms / qs.single.p50_ms:.2f}x faster), {acc}."
        )
    else:
        c.reasons.append(
            f"Its int8 export is not faster on {c.destination} ({qs.single.p50_ms:.1f} vs {fs.single.p50_ms:.1f} ms"
            f" fp32; {acc}): deploy fp32."
        )


def recommend(results: StudyResults) -> Recommendation:
    cfg = results.config
    dest = primary_destination(results)
    out = Recommendation(dest)
    if dest is None:
        return out
    numbers = {}
    for name, task in results.tasks.items():
        n = task_numbers(task, dest)
        if n is not None:
            numbers[name] = n
            c = choose(name, n, dest, cfg)
            _budget_note(task, c, cfg)
            deploy_variant(task, c)
            out.choices.append(c)
    for d in results.destinations:
        out.per_destination[d] = {
            name: choose(name, n, d, cfg).size
            for name, task in results.tasks.items()
            if (n := task_numbers(task, d)) is not None
        }
    whole = {}
    for name, task in results.tasks.items():
        pair = task.pair()
        if pair is not None and pair[0].train.total_seconds:
            whole[name] = pair[1].train.total_seconds / pair[0].train.total_seconds
    out.rules = general_rules(numbers, dest, whole)
    return out
