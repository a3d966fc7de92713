"""The report's plots: accuracy per task, mAP against latency per destination, training curves."""

from __future__ import annotations

from pathlib import Path

from speedmap.plotting import pyplot, save
from speedmap.study.evidence import SIZES
from speedmap.study.results import StudyResults
from speedmap.study.tables import DEST_NAMES, paired_tasks


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
    pairs = paired_tasks(results)
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
