"""Which size to deploy, and why, from the study's measurements and the user's constraints, computed
once per study. Every verdict carries its evidence (converged models, the accuracy interval, valid
uncontended speed runs and training); a comparison of under-trained models is provisional and never
counts for or against a general rule."""

from __future__ import annotations

from math import ceil

from speedmap.study.config import REALTIME_FPS, StudyConfig
from speedmap.study.evidence import (
    LITTLE_GAIN_MAP50,
    SIZES,
    Numbers,
    images_needed_text,
    interval_text,
    pct,
    primary_destination,
    task_numbers,
)
from speedmap.study.results import (
    Choice,
    Evidence,
    Recommendation,
    StudyResults,
    TaskResult,
    saturated,
)
from speedmap.study.rules import general_rules


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


def rerun_epochs(ev: Evidence) -> int:
    """The ``--epochs`` an under-trained pair's advice names: twice the longest under-trained run, 10 at least."""
    return max(2 * max(ev.epochs_run[s] for s in ev.under_trained), 10)


def _under_trained_note(n: Numbers) -> str:
    ev = n.evidence
    who = " and ".join(f"{s.capitalize()}" for s in ev.under_trained)
    after = " and ".join(str(r) for r in sorted({ev.epochs_run[s] for s in ev.under_trained}))
    return (
        f"Provisional: {who} had not converged after {after} epochs; the gap may change with more "
        f"training; rerun with --epochs {rerun_epochs(ev)}."
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
    ci = interval_text(n.delta.map_ci95) if n.delta is not None else ""
    acc = (
        f"mAP50-95 {n.fast_map:.3f} vs {n.accurate_map:.3f} ({pct(n.gain_map)} points{ci}), "
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
        need = images_needed_text(d.images_needed)
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


def _budget_note(task: TaskResult, c: Choice, cfg: StudyConfig) -> None:
    """A provisional verdict whose training the budget cut short says so, with the time a converged one needs."""
    pair = task.pair()
    limited = bool(task.plan.get("limited"))  # the plan gave fewer epochs than --epochs: the budget's cut too
    cut = [e.train for e in pair or () if (e.train.budget or limited) and not e.train.settled]
    if not c.provisional or not cfg.budget_minutes:
        return
    if not cut:
        _epochs_budget(task, c, cfg)
        return
    need = float(task.plan.get("converged_seconds") or 0.0) / 60
    epochs = " and ".join(str(r) for r in sorted({t.epochs_run for t in cut}))
    again = ceil(max(need, cfg.budget_minutes + 1))
    c.reasons[0] = (
        f"Provisional: the {cfg.budget_minutes:g}-minute budget cut training at {epochs} epochs, before "
        f"{' and '.join(t.size.capitalize() for t in cut)} converged; the gap may change with more training. "
        f"A converged answer needs about {need:.0f} minutes: rerun with --budget {again}."
    )


def _epochs_budget(task: TaskResult, c: Choice, cfg: StudyConfig) -> None:
    """The epoch cap, not the budget, ended an under-trained run: where the advice's ``--epochs`` would not fit
    the budget, name the budget it needs too (the plan's fixed steps plus its seconds per epoch), so that the
    rerun is not cut by the budget instead."""
    p, ev = task.plan, c.evidence
    keys = ("budget_seconds", "train_seconds", "at_most_seconds", "epochs")
    if ev is None or not ev.under_trained or any(not p.get(k) for k in keys):
        return
    fixed = float(p["budget_seconds"]) - float(p["train_seconds"])
    per_epoch = (float(p["at_most_seconds"]) - fixed) / int(p["epochs"])
    epochs = rerun_epochs(ev)
    need = ceil((fixed + per_epoch * epochs) / 60)
    if need > cfg.budget_minutes and c.reasons[0].endswith(f"--epochs {epochs}."):
        c.reasons[0] = c.reasons[0][:-1] + f" --budget {need}."


def deploy_variant(task: TaskResult, c: Choice) -> None:
    """Name the export to deploy: int8 where it was measured on the destination, is faster, and stays within
    1 point of mAP50-95 of fp32; an int8 model that loses more is flagged."""
    size = task.sizes.get(c.size)
    q = size.int8 if size is not None else None
    if size is None or q is None:
        return
    acc = (
        f"int8 mAP50-95 {q.metrics.map:.3f} vs fp32 {size.metrics.map:.3f} ({pct(q.delta_map)} points"
        f"{interval_text(q.delta_map_ci95)})"
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
