"""The study's report from its typed results: ``report.md``, a self-contained ``report.html`` (plots
embedded) and the plots as PNG files. Both documents are rendered from one list of blocks; the
recommendation is the one computed with the results, never recomputed here."""

from __future__ import annotations

import base64
import html
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedmap.plotting import pyplot, save
from speedmap.study.config import SATURATED_MAP50, StudyConfig
from speedmap.study.recommend import SIZES
from speedmap.study.results import Choice, Interval, Rule, StudyResults, TaskResult

DEST_NAMES = {
    "local": "in-process (ONNX Runtime)",
    "local-cuda": "in-process, CUDA",
    "http": "HTTP server",
    "http-cuda": "HTTP server, CUDA",
    "browser": "web browser (onnxruntime-web)",
}


@dataclass
class Block:
    kind: str  # h1 | h2 | p | table | image | list | code
    content: Any
    caption: str = ""


def _f(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pct_points(v: float) -> str:
    return f"{100 * v:+.1f}"


def _ci(ci: Interval | None, points: bool = False) -> str:
    if ci is None:
        return "-"
    return f"[{_pct_points(ci[0])}, {_pct_points(ci[1])}]" if points else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _pairs(results: StudyResults) -> list[tuple[str, TaskResult]]:
    return [(n, t) for n, t in results.tasks.items() if t.pair() is not None]


def _minutes(seconds: float) -> str:
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
    for name, t in _pairs(results):
        f, a = t.pair()  # type: ignore[misc]
        d = t.accuracy_delta
        rows.append(
            [
                name,
                str(f.test_images),
                _f(f.metrics.map50),
                _f(a.metrics.map50),
                f"{_f(f.metrics.map)} {_ci(f.metrics.map_ci95)}",
                f"{_f(a.metrics.map)} {_ci(a.metrics.map_ci95)}",
                f"{_pct_points(a.metrics.map - f.metrics.map)} {_ci(d.map_ci95 if d else None, True)}",
                f"{_pct_points(a.metrics.map50 - f.metrics.map50)} {_ci(d.map50_ci95 if d else None, True)}",
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
                    _f(one.p50_ms, 1),
                    _f(one.p90_ms, 1),
                    _f(one.fps, 1),
                    str(many.concurrency) if many else "-",
                    _f(many.throughput_rps, 1) if many else "-",
                    _f(many.p50_ms, 1) if many else "-",
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
    for name, t in _pairs(results):
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
                    _f(tr.cpu_seconds, 0),
                    _minutes(tr.time_to_95_seconds) if tr.time_to_95_seconds is not None else "-",
                    share + (" (contended)" if tr.contended else ""),
                    _f(tr.train_images_per_second, 1),
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
    for name, t in _pairs(results):
        f, a = t.pair()  # type: ignore[misc]
        p = t.train_speed_probe
        whole = a.train.total_seconds / f.train.total_seconds if f.train.total_seconds else None
        rows.append(
            [
                name,
                _f(p.fast_step_s, 3) if p else "-",
                _f(p.accurate_step_s, 3) if p else "-",
                f"{p.ratio:.2f}x" if p else "-",
                f"{whole:.2f}x" if whole else "-",
            ]
        )
    return rows


def equal_time_lines(results: StudyResults) -> list[str]:
    """Accuracy at equal training time: the validation curves read at the shorter run's length (and at
    half of it), so "given N minutes, Fast reaches X, Accurate Y"."""
    lines = []
    for name, t in _pairs(results):
        f, a = t.pair()  # type: ignore[misc]
        budget = min(f.train.total_seconds, a.train.total_seconds)
        parts = []
        for s in (budget / 2, budget):
            mf, ma = f.train.map_at(s), a.train.map_at(s)
            parts.append(
                f"given {_minutes(s)} of training, Fast reaches validation mAP50-95 {_f(mf)}, Accurate {_f(ma)}"
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
                f"{_pct_points(d.map)} {_ci(d.map_ci95, True)} ({ev.accuracy})" if d else "-",
                ("VALID" if ev.speed_valid else "UNSTABLE: " + ", ".join(ev.unstable))
                + "".join(f"; {s} contended ({100 * v:.0f}%)" for s, v in ev.speed_contended.items()),
                "certain" if ev.speed_certain else "uncertain",
                "contended" if ev.contended else "quiet",
            ]
        )
    return rows


# ---- plots
def plot_pareto(results: StudyResults, path: Path) -> Path | None:
    """mAP50-95 against single-frame p50 latency, one panel per destination; Fast and Accurate of each
    task joined by a line; error bars: the bootstrap interval."""
    dests = results.destinations
    if not dests:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(dests), figsize=(5.2 * len(dests), 4.4), squeeze=False)
    for ax, dest in zip(axes[0], dests, strict=True):
        for k, (name, t) in enumerate(results.tasks.items()):
            pts = [
                (e.speed[dest].single.p50_ms, e.metrics.map, e.metrics.map_ci95, size)
                for size, e in t.sizes.items()
                if dest in e.speed
            ]
            if not pts:
                continue
            color = f"C{k}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=color, alpha=0.5)
            for x, y, ci, size in pts:
                yerr = [[y - ci[0]], [ci[1] - y]] if ci else None
                ax.errorbar(x, y, yerr=yerr, fmt="o" if size == "fast" else "s", color=color, ms=8, capsize=3)
                ax.annotate(f"{name} {size}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.set(xlabel="p50 latency, one frame at a time (ms)", ylabel="test mAP50-95", title=DEST_NAMES.get(dest, dest))
        ax.grid(True, alpha=0.3)
    fig.suptitle("Accuracy vs latency (circles: Fast, squares: Accurate; bars: 95% CI; up and left is better)")
    return save(fig, path)


def plot_training(results: StudyResults, path: Path) -> Path | None:
    """Validation mAP50-95 against cumulative training time, one panel per task; an open marker where a
    run did not converge."""
    tasks = [(n, t) for n, t in results.tasks.items() if any(e.train.history for e in t.sizes.values())]
    if not tasks:
        return None
    plt = pyplot()
    cols = min(3, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(tasks) :]:
        ax.axis("off")
    for ax, (name, t) in zip(axes.flat, tasks, strict=False):
        for size, e in t.sizes.items():
            xs, ys = e.train.curve()
            label = f"{size} ({'converged' if e.train.settled else 'not converged'})"
            line = ax.plot(xs, ys, marker=".", label=label)[0]
            if xs and not e.train.settled:
                ax.plot(xs[-1], ys[-1], "o", mfc="none", ms=10, color=line.get_color())
        ax.set(title=name, xlabel="training time (s)", ylabel="valid mAP50-95")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Training curves: validation mAP50-95 against wall-clock training time")
    return save(fig, path)


def plot_accuracy(results: StudyResults, path: Path) -> Path | None:
    pairs = _pairs(results)
    if not pairs:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(pairs) + 2), 3.8))
    xs = range(len(pairs))
    for k, size in enumerate(SIZES):
        ms = [t.sizes[size].metrics for _, t in pairs]
        err = [
            [m.map - m.map_ci95[0] if m.map_ci95 else 0 for m in ms],
            [m.map_ci95[1] - m.map if m.map_ci95 else 0 for m in ms],
        ]
        ax.bar(
            [x + (k - 0.5) * 0.38 for x in xs], [m.map for m in ms], 0.38, yerr=err, capsize=3, label=size.capitalize()
        )
    ax.set_xticks(list(xs), [n for n, _ in pairs])
    ax.set(ylabel="test mAP50-95 (bars: 95% CI)", title="Accuracy per task")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    return save(fig, path)


# ---- the document
def _choice_line(c: Choice) -> str:
    variant = " int8" if c.variant == "int8" else ""
    head = f"**{c.task}: deploy {c.size.capitalize()}{variant}{' (provisional)' if c.provisional else ''}.**"
    strength = f" Evidence: {c.evidence.strength}." if c.evidence else ""
    return f"{head}{strength} " + " ".join(c.reasons)


def _rule_line(r: Rule) -> str:
    return f"{r.rule} {r.evidence}"


def blocks(results: StudyResults, plots: dict[str, Path | None]) -> list[Block]:
    """The whole document, section by section."""
    return [
        *_title_blocks(results),
        *_recommendation_blocks(results),
        *_sureness_blocks(results),
        *_accuracy_blocks(results, plots),
        *_speed_blocks(results),
        *_training_blocks(results),
        *_plot_blocks(plots),
        *_provenance_blocks(results),
    ]


def _title_blocks(results: StudyResults) -> list[Block]:
    b = [Block("h1", "speedmap study: Fast or Accurate?")]
    if not results.complete:
        b.append(
            Block(
                "p",
                "**This study is incomplete** (interrupted or still running): rerun the same command "
                "to continue; finished steps are reused.",
            )
        )
    return b


def _recommendation_blocks(results: StudyResults) -> list[Block]:
    rec = results.recommendation
    b = [Block("h2", "Recommendation")]
    if rec is None or not rec.destination:
        b.append(Block("p", "The recommendation is written when the study completes."))
        return b
    dest = rec.destination
    b.append(Block("p", _deployment_line(dest, results.config)))
    b.append(Block("list", [_choice_line(c) for c in rec.choices]))
    others = {d: v for d, v in rec.per_destination.items() if d != dest}
    if others:
        b.append(
            Block(
                "list",
                [
                    f"On the {DEST_NAMES.get(d, d)}: " + ", ".join(f"{t} → {s.capitalize()}" for t, s in v.items())
                    for d, v in others.items()
                ],
            )
        )
    b.extend(_rule_blocks(rec.rules))
    return b


def _deployment_line(dest: str, cfg: StudyConfig) -> str:
    """The line that introduces the choices: the destination and the constraints given, or a hint at the
    constraint flags when none were."""
    want = [
        f"{k.replace('_', ' ')} {v:g}"
        for k, v in (("min_fps", cfg.min_fps), ("max_latency_ms", cfg.max_latency_ms), ("min_map", cfg.min_map))
        if v
    ]
    return (
        f"For deployment on the **{DEST_NAMES.get(dest, dest)}**"
        + (f" with {', '.join(want)}" if want else " (no constraints given: --min-fps, --max-latency-ms, --min-map)")
        + ":"
    )


def _rule_blocks(rules: list[Rule]) -> list[Block]:
    """The general rules grouped by verdict: supported, not supported, undecided; empty groups left out."""
    b = []
    undecided = "Rules this study cannot decide (under-trained models or unstable speed):"
    for title, want_flag in (
        ("The general rules these measurements support:", True),
        ("Rules of thumb these measurements do **not** support on this data:", False),
        (undecided, None),
    ):
        group = [r for r in rules if r.supported is want_flag]
        if group:
            b.append(Block("p", title))
            b.append(Block("list", [_rule_line(r) for r in group]))
    return b


def _sureness_blocks(results: StudyResults) -> list[Block]:
    rec = results.recommendation
    b = [Block("h2", "How sure is this?")]
    b.append(
        Block(
            "p",
            "Each verdict is only as good as its evidence. **strong**: both models converged, the speed "
            "runs were VALID and ranked the sizes the same way in every interleaved repeat, neither they nor "
            "training were contended (other processes took under 20% of the CPU), and the accuracy difference "
            "has a bootstrap interval. **weak**: a model had "
            "not converged, so the comparison reflects the training budget. **moderate**: anything "
            "between.",
        )
    )
    if len(rows := sureness_rows(results)) > 1:
        b.append(Block("table", rows))
    for c in rec.choices if rec else []:
        if c.evidence is not None:
            b.append(Block("p", f"**{c.task}** ({c.evidence.strength})"))
            b.append(Block("list", list(c.evidence.lines) + data_lines(results.tasks[c.task], results.config)))
    return b


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
        need = (
            f"; about {d.images_needed} test images would make this difference detectable"
            if d and d.images_needed
            else ""
        )
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
                f"{_pct_points(e.int8.delta_map)} {_ci(e.int8.delta_map_ci95, True)}): more than the 1 point "
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
                    _f(e.metrics.map),
                    f"{_f(q.metrics.map)} {_ci(q.metrics.map_ci95)}",
                    f"{_pct_points(q.delta_map)} {_ci(q.delta_map_ci95, True)}",
                    "more than 1 point below fp32" if q.loses else "-",
                ]
            )
    return rows


def _accuracy_blocks(results: StudyResults, plots: dict[str, Path | None]) -> list[Block]:
    b = [Block("h2", "1. Accuracy (test split, scored through the exported ONNX model)")]
    b.append(Block("table", data_rows(results), "The data as trained and scored"))
    b.append(Block("table", accuracy_table(results)))
    if len(rows := int8_rows(results)) > 1:
        b.append(Block("table", rows, "int8 exports (what a CPU deployment would run), paired with their fp32 model"))
    b.append(
        Block(
            "p",
            f"Saturated: Fast reaches mAP50 {SATURATED_MAP50:.0%} or more. Intervals are 95% paired "
            "bootstrap intervals over test images (each resample scored by the COCO evaluator); a "
            "difference is real when its interval excludes zero.",
        )
    )
    if plots.get("accuracy"):
        b.append(Block("image", plots["accuracy"], "Accuracy per task"))
    return b


def _speed_blocks(results: StudyResults) -> list[Block]:
    b = [Block("h2", "2. Inference speed per destination")]
    b.append(
        Block("table", relative_speed_rows(results), "Fast vs Accurate: median (min-max) over interleaved repeats")
    )
    for d in results.destinations:
        b.append(Block("p", f"**{DEST_NAMES.get(d, d)}**"))
        b.append(Block("table", speed_table(results, d)))
    b.append(
        Block(
            "p",
            "Latency is end to end for the destination: for HTTP, posting a base64 image and "
            "getting JSON back over loopback; in-process, decode to detections; in the browser, "
            "the page's own timing from encoded image to detections. 'many in flight' is a closed "
            "loop with that many requests outstanding. Numbers are medians over the interleaved repeats "
            "(Fast, Accurate, then Accurate, Fast, ...); an UNSTABLE run was retried at twice and four "
            "times the duration before it was reported as such.",
        )
    )
    return b


def _training_blocks(results: StudyResults) -> list[Block]:
    b = [Block("h2", "3. Training time")]
    b.append(Block("table", training_rows(results)))
    b.append(
        Block(
            "p",
            "Training speed, measured side by side: the same optimizer steps on the same batches, "
            "interleaved Fast, Accurate, Accurate, Fast, on one thread and timed in CPU seconds per "
            "step, which a competing process barely moves (wall time under contention does). Whole "
            "runs use all cores and also differ in how many epochs early stopping ran.",
        )
    )
    b.append(Block("table", train_speed_rows(results)))
    if lines := equal_time_lines(results):
        b.append(
            Block("p", "Accuracy at equal training time (read from the validation curves against wall-clock time):")
        )
        b.append(Block("list", lines))
    return b


def _plot_blocks(plots: dict[str, Path | None]) -> list[Block]:
    b = [Block("h2", "4. Accuracy against latency, and training curves")]
    for key, cap in (
        ("pareto", "mAP50-95 against single-frame latency per destination"),
        ("training", "Validation mAP50-95 during training"),
    ):
        if plots.get(key):
            b.append(Block("image", plots[key], cap))
    return b


def _provenance_blocks(results: StudyResults) -> list[Block]:
    cfg, prov = results.config, results.provenance
    b = [Block("h2", "5. Provenance")]
    names = {
        "wall_seconds": "this invocation's wall time (s)",
        "steps_seconds": "time of all steps, cached ones included (s)",
        "usable_cpus": "usable cpus",
        "available_providers": "ONNX Runtime providers",
        "code": "source hash",
    }
    b.append(Block("list", [f"{names.get(k, k)}: {v}" for k, v in prov.items() if k != "command"]))
    b.append(Block("p", "Configuration:"))
    b.append(Block("code", "\n".join(f"{k} = {v}" for k, v in cfg.to_json().items())))
    b.append(Block("p", "Reproduce (finished steps are reused; delete the folder to start over):"))
    b.append(Block("code", prov.get("command") or "speedmap compare"))
    return b


def _md_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def to_markdown(blocks_: list[Block], folder: Path) -> str:
    out = []
    for b in blocks_:
        if b.kind == "h1":
            out.append(f"# {b.content}")
        elif b.kind == "h2":
            out.append(f"## {b.content}")
        elif b.kind == "p":
            out.append(b.content)
        elif b.kind == "list":
            out.append("\n".join(f"- {x}" for x in b.content))
        elif b.kind == "table":
            out.append((f"*{b.caption}*\n\n" if b.caption else "") + _md_table(b.content))
        elif b.kind == "image":
            out.append(f"![{b.caption}]({Path(b.content).relative_to(folder).as_posix()})")
        elif b.kind == "code":
            out.append(f"```\n{b.content}\n```")
    return "\n\n".join(out) + "\n"


def _inline_md(text: str) -> str:
    """Escape, then the one piece of markdown the blocks use inline: **bold**."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks_: list[Block]) -> str:
    body = []
    for b in blocks_:
        if b.kind in ("h1", "h2"):
            body.append(f"<{b.kind}>{html.escape(b.content)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{_inline_md(b.content)}</p>")
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline_md(x)}</li>" for x in b.content) + "</ul>")
        elif b.kind == "table":
            head, *rows = b.content
            cap = f"<caption>{html.escape(b.caption)}</caption>" if b.caption else ""
            body.append(
                f"<table>{cap}<tr>"
                + "".join(f"<th>{html.escape(h)}</th>" for h in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                + "</table>"
            )
        elif b.kind == "image":
            data = base64.b64encode(Path(b.content).read_bytes()).decode()
            body.append(
                f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(b.caption)}</figcaption></figure>"
            )
        elif b.kind == "code":
            body.append(f"<pre>{html.escape(b.content)}</pre>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
        "table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .6em;"
        "text-align:right}td:first-child,th:first-child{text-align:left}caption{font-style:italic;padding:.3em}"
        "img{max-width:100%}pre{background:#f4f4f4;padding:.8em;overflow-x:auto}"
        "figcaption{color:#555}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>speedmap study</title><style>{style}</style>"
        f"</head><body>{''.join(body)}</body></html>\n"
    )


def write_report(results: StudyResults, folder: Path) -> dict[str, Path]:
    """``report.md``, ``report.html`` and the PNG plots in ``folder``; returns their paths."""
    plots = {
        "accuracy": plot_accuracy(results, folder / "accuracy.png"),
        "pareto": plot_pareto(results, folder / "pareto.png"),
        "training": plot_training(results, folder / "training_curves.png"),
    }
    bl = blocks(results, plots)
    md, page = folder / "report.md", folder / "report.html"
    md.write_text(to_markdown(bl, folder), encoding="utf-8")
    page.write_text(to_html(bl), encoding="utf-8")
    return {"markdown": md, "html": page, **{k: v for k, v in plots.items() if v is not None}}
