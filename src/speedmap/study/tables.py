"""The report's tables and lines, from the study's typed results: accuracy, speed per destination, relative
speed, training, how sure each verdict is, the data and int8."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from speedmap.study.evidence import SIZES, images_needed_text
from speedmap.study.results import Interval, StudyResults, TaskResult

DEST_NAMES = {
    "local": "in-process (ONNX Runtime)",
    "local-cuda": "in-process, CUDA",
    "http": "HTTP server",
    "http-cuda": "HTTP server, CUDA",
    "browser": "web browser (onnxruntime-web)",
}


def fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def pct_points(v: float) -> str:
    return f"{100 * v:+.1f}"


def ci_text(ci: Interval | None, points: bool = False) -> str:
    if ci is None:
        return "-"
    return f"[{pct_points(ci[0])}, {pct_points(ci[1])}]" if points else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def paired_tasks(results: StudyResults) -> list[tuple[str, TaskResult]]:
    return [(n, t) for n, t in results.tasks.items() if t.pair() is not None]


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def accuracy_table(results: StudyResults) -> list[list[str]]:
    rows = [
        [
            "task",
            "test images",
            "Fast mAP50",
            "Accurate mAP50",
            "Fast mAP50-95 [95% CI]",
            "Accurate mAP50-95 [95% CI]",
            "Δ mAP50-95 points [95% CI]",
            "Δ mAP50 points [95% CI]",
            "saturated",
        ]
    ]
    for name, t in paired_tasks(results):
        f, a = t.pair()  # type: ignore[misc]
        d = t.accuracy_delta
        rows.append(
            [
                name,
                str(f.test_images),
                fmt(f.metrics.map50),
                fmt(a.metrics.map50),
                f"{fmt(f.metrics.map)} {ci_text(f.metrics.map_ci95)}",
                f"{fmt(a.metrics.map)} {ci_text(a.metrics.map_ci95)}",
                f"{pct_points(a.metrics.map - f.metrics.map)} {ci_text(d.map_ci95 if d else None, True)}",
                f"{pct_points(a.metrics.map50 - f.metrics.map50)} {ci_text(d.map50_ci95 if d else None, True)}",
                "yes" if t.saturated() else "no",
            ]
        )
    return rows


def speed_table(results: StudyResults, dest: str) -> list[list[str]]:
    rows = [
        [
            "task",
            "size",
            "p50 ms",
            "p90 ms",
            "FPS (one at a time)",
            "in flight",
            "req/s (many in flight)",
            "p50 ms (loaded)",
            "repeats",
            "valid",
        ]
    ]
    for name, t in results.tasks.items():
        variants = [(size, e.speed.get(dest)) for size, e in t.sizes.items()]
        variants += [(f"{size} int8", e.int8.speed.get(dest)) for size, e in t.sizes.items() if e.int8 is not None]
        for size, s in variants:
            if s is None:
                continue
            one, many = s.single, s.loaded
            bad = [r for r in (one, many) if r is not None and not r.valid]
            valid = "VALID" if not bad else f"UNSTABLE ({sum(r.unstable_repeats for r in bad)} runs)"
            if s.contended:
                valid += f", contended (others {100 * (s.other_cpu_share or 0):.0f}% of the CPU)"
            rows.append(
                [
                    name,
                    size,
                    fmt(one.p50_ms, 1),
                    fmt(one.p90_ms, 1),
                    fmt(one.fps, 1),
                    str(many.concurrency) if many else "-",
                    fmt(many.throughput_rps, 1) if many else "-",
                    fmt(many.p50_ms, 1) if many else "-",
                    str(one.repeats),
                    valid,
                ]
            )
    return rows


def relative_speed_rows(results: StudyResults) -> list[list[str]]:
    """Fast vs Accurate per destination: how many times faster Fast is, per task from interleaved repeats
    (median, min-max), and the median over tasks."""
    rows = [
        [
            "destination",
            "task",
            "Fast speed-up, one at a time (p50 latency ratio)",
            "Fast speed-up, many in flight (throughput ratio)",
            "ranking",
        ]
    ]
    for dest in results.destinations:
        meds = []
        for name, t in results.tasks.items():
            r = t.speed_ratio.get(dest)
            if r is None:
                continue
            lat, tp = r.latency, r.throughput
            meds.append(lat.median)
            rows.append(
                [
                    DEST_NAMES.get(dest, dest),
                    name,
                    f"{lat.median:.2f}x ({lat.min:.2f}-{lat.max:.2f})",
                    f"{tp.median:.2f}x ({tp.min:.2f}-{tp.max:.2f})" if tp else "-",
                    "certain" if lat.certain else "uncertain",
                ]
            )
        if len(meds) > 1:
            rows.append([DEST_NAMES.get(dest, dest), "median over tasks", f"{statistics.median(meds):.2f}x", "", ""])
    return rows


def training_rows(results: StudyResults) -> list[list[str]]:
    rows = [
        [
            "task",
            "size",
            "epochs run / max",
            "converged",
            "best epoch",
            "wall s",
            "CPU s",
            "time to 95% of best",
            "other processes' CPU",
            "img/s",
        ]
    ]
    for name, t in paired_tasks(results):
        for size, e in t.sizes.items():
            tr = e.train
            share = "-" if tr.other_cpu_share is None else f"{100 * tr.other_cpu_share:.0f}%"
            rows.append(
                [
                    name,
                    size,
                    f"{tr.epochs_run} / {tr.epochs_max}",
                    "yes" if tr.settled else "NO",
                    str(tr.best_epoch),
                    f"{tr.total_seconds:.0f}",
                    fmt(tr.cpu_seconds, 0),
                    minutes(tr.time_to_95_seconds) if tr.time_to_95_seconds is not None else "-",
                    share + (" (contended)" if tr.contended else ""),
                    fmt(tr.train_images_per_second, 1),
                ]
            )
    return rows


def train_speed_rows(results: StudyResults) -> list[list[str]]:
    rows = [
        [
            "task",
            "probe: Fast s/step",
            "probe: Accurate s/step",
            "probe ratio (Accurate / Fast)",
            "whole runs: Accurate / Fast wall time",
        ]
    ]
    for name, t in paired_tasks(results):
        f, a = t.pair()  # type: ignore[misc]
        p = t.train_speed_probe
        whole = a.train.total_seconds / f.train.total_seconds if f.train.total_seconds else None
        rows.append(
            [
                name,
                fmt(p.fast_step_s, 3) if p else "-",
                fmt(p.accurate_step_s, 3) if p else "-",
                f"{p.ratio:.2f}x" if p else "-",
                f"{whole:.2f}x" if whole else "-",
            ]
        )
    return rows


def equal_time_lines(results: StudyResults) -> list[str]:
    """Accuracy at equal training time: the validation curves read at the shorter run's length (and at
    half of it), so "given N minutes, Fast reaches X, Accurate Y"."""
    lines = []
    for name, t in paired_tasks(results):
        f, a = t.pair()  # type: ignore[misc]
        budget = min(f.train.total_seconds, a.train.total_seconds)
        parts = []
        for s in (budget / 2, budget):
            mf, ma = f.train.map_at(s), a.train.map_at(s)
            parts.append(
                f"given {minutes(s)} of training, Fast reaches validation mAP50-95 {fmt(mf)}, Accurate {fmt(ma)}"
            )
        lines.append(f"{name}: " + "; ".join(parts) + ".")
    return lines


def sureness_rows(results: StudyResults) -> list[list[str]]:
    rec = results.recommendation
    rows = [
        [
            "task",
            "evidence",
            "Fast trained",
            "Accurate trained",
            "Δ mAP50-95 [95% CI]",
            "speed runs",
            "speed ranking",
            "training CPU",
        ]
    ]
    for c in rec.choices if rec else []:
        ev = c.evidence
        if ev is None:
            continue
        t = results.tasks[c.task]
        d = t.accuracy_delta
        trained = [f"{'converged' if ev.converged[s] else 'NOT converged'} ({ev.epochs_run[s]} epochs)" for s in SIZES]
        rows.append(
            [
                c.task,
                ev.strength,
                *trained,
                f"{pct_points(d.map)} {ci_text(d.map_ci95, True)} ({ev.accuracy})" if d else "-",
                ("VALID" if ev.speed_valid else "UNSTABLE: " + ", ".join(ev.unstable))
                + "".join(f"; {s} contended ({100 * v:.0f}%)" for s, v in ev.speed_contended.items()),
                "certain" if ev.speed_certain else "uncertain",
                "contended" if ev.contended else "quiet",
            ]
        )
    return rows


# ---- plots

SMALL_SPLIT = 50  # a test split under this many images gives wide intervals: the report says what it costs


def data_lines(t: TaskResult, cfg: Any) -> list[str]:
    """What the data and the schedule do to the verdict: the split, a small test split, the budget, int8."""
    lines = []
    sp = t.split or {}
    if sp.get("source") == "automatic":
        pct = "/".join(f"{round(100 * r)}" for r in sp.get("ratios") or [])
        lines.append(
            f"Split: the dataset came without {' and '.join(sp.get('carved') or [])}; speedmap split it {pct} "
            f"(seed {sp.get('seed')}; `speedmap datasets split` writes another)."
        )
    if t.corrupt_images:
        names = ", ".join(f"`{Path(p).name}`" for p in t.corrupt_images[:5])
        more = f" and {len(t.corrupt_images) - 5} more" if len(t.corrupt_images) > 5 else ""
        lines.append(
            f"Skipped: {len(t.corrupt_images)} image{'s' * (len(t.corrupt_images) != 1)} that cannot be decoded "
            f"({names}{more}); every step left {'them' if len(t.corrupt_images) != 1 else 'it'} out alike "
            "(`speedmap datasets validate` lists each)."
        )
    pair = t.pair()
    d = t.accuracy_delta
    if pair is not None and pair[0].test_images < SMALL_SPLIT:
        width = f"±{50 * (d.map_ci95[1] - d.map_ci95[0]):.1f} points" if d and d.map_ci95 else "wide"
        need = images_needed_text(d.images_needed if d else None, "would make this difference detectable")
        lines.append(
            f"Small test split: {pair[0].test_images} images (under {SMALL_SPLIT}), so the interval of the "
            f"difference is {width}{need}. Label more images, or split with a larger test share."
        )
    if getattr(cfg, "weights", "scratch") == "pretrained":
        lines.append(
            "Start: both sizes were fine-tuned from speedmap's shipped weights, pretrained on generated scenes "
            "(no photographs); --weights scratch trains from random initialisation."
        )
    plan = t.plan or {}
    if plan.get("limited") and cfg.budget_minutes:
        lines.append(
            f"Budget: {cfg.budget_minutes:g} minutes allowed at most {plan.get('epochs')} epochs per size at "
            f"{t.imgsz} px; a converged answer needs about {float(plan.get('converged_seconds') or 0) / 60:.0f} min."
        )
    for size, e in (t.sizes or {}).items():
        if e.int8 is not None and e.int8.loses:
            lines.append(
                f"{size.capitalize()} int8 is {-100 * e.int8.delta_map:.1f} points below fp32 (int8 - fp32: "
                f"{pct_points(e.int8.delta_map)} {ci_text(e.int8.delta_map_ci95, True)}): more than the 1 point "
                "allowed, flagged."
            )
    return lines


def data_rows(results: StudyResults) -> list[list[str]]:
    rows = [["task", "train / test images", "split", "input size", "why this size"]]
    for name, t in results.tasks.items():
        pair = t.pair() or tuple(t.sizes.values())
        train = pair[0].train.train_images if pair else "-"
        test = pair[0].test_images if pair else "-"
        sp = t.split or {}
        how = "automatic, seed " + str(sp.get("seed")) if sp.get("source") == "automatic" else "as given"
        rows.append([name, f"{train} / {test}", how, f"{t.imgsz or '-'} px", t.imgsz_reason or "-"])
    return rows


def int8_rows(results: StudyResults) -> list[list[str]]:
    rows = [["task", "size", "fp32 mAP50-95", "int8 mAP50-95 [95% CI]", "int8 - fp32 points [95% CI]", "flag"]]
    for name, t in results.tasks.items():
        for size, e in t.sizes.items():
            q = e.int8
            if q is None:
                continue
            rows.append(
                [
                    name,
                    size,
                    fmt(e.metrics.map),
                    f"{fmt(q.metrics.map)} {ci_text(q.metrics.map_ci95)}",
                    f"{pct_points(q.delta_map)} {ci_text(q.delta_map_ci95, True)}",
                    "more than 1 point below fp32" if q.loses else "-",
                ]
            )
    return rows
