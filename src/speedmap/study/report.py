"""The study's report from its typed results: ``report.md``, a self-contained ``report.html`` (plots
embedded) and the plots as PNG files. Both documents are rendered from one list of blocks; the
recommendation is the one computed with the results, never recomputed here.

This room holds the document's sections in order; the tables come from :mod:`~speedmap.study.tables`, the plots
from :mod:`~speedmap.study.plots`, the rendering from :mod:`~speedmap.study.render`."""

from __future__ import annotations

from pathlib import Path

from speedmap.study.config import SATURATED_MAP50, StudyConfig
from speedmap.study.plots import plot_accuracy, plot_pareto, plot_training
from speedmap.study.render import Block, to_html, to_markdown
from speedmap.study.results import Choice, Rule, StudyResults
from speedmap.study.tables import (
    DEST_NAMES,
    accuracy_table,
    data_lines,
    data_rows,
    equal_time_lines,
    int8_rows,
    relative_speed_rows,
    speed_table,
    sureness_rows,
    train_speed_rows,
    training_rows,
)


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
            "not converged, so the comparison may change with more training. **moderate**: anything "
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
