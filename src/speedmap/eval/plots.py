"""The plots people read: per-class precision-recall curves and the confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speedmap.eval.confusion import ConfusionMatrix
from speedmap.eval.metrics import RECALL_POINTS, Metrics
from speedmap.plotting import pyplot, save


def plot_pr_curves(metrics: Metrics, path: str | Path) -> Path:
    """Per-class PR curves at IoU 0.50 (left) and averaged over IoU 0.50:0.95 (right)."""
    plt = pyplot()
    assert metrics.precision is not None
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), sharey=True)
    for ax, iou_slice, title, key in (
        (axes[0], slice(0, 1), "IoU 0.50", "map50"),
        (axes[1], slice(0, 10), "IoU 0.50:0.95 (mean)", "map"),
    ):
        curves = []
        for k, name in enumerate(metrics.classes):
            p = metrics.precision[iou_slice, :, k]
            if (p < 0).all():
                continue  # no ground truth for this class
            curve = np.where(p < 0, np.nan, p).mean(axis=0)
            curves.append(curve)
            ap = metrics.per_class[name][key]
            ax.plot(RECALL_POINTS, curve, lw=1, alpha=0.8, label=f"{name} {ap:.3f}")
        if curves:
            mean = np.nanmean(np.vstack(curves), axis=0)
            ax.plot(RECALL_POINTS, mean, lw=3, color="black", label=f"all classes {getattr(metrics, key):.3f}")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", title=f"Precision-recall, {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("precision")
    return save(fig, Path(path))


def plot_confusion(cm: ConfusionMatrix, path: str | Path) -> Path:
    """Counts, coloured by the share of each true class (row) that went to each prediction."""
    plt = pyplot()
    labels = [*cm.classes, "background"]
    n = len(labels)
    rows = cm.matrix.sum(axis=1, keepdims=True)
    share = np.divide(cm.matrix, rows, out=np.zeros(cm.matrix.shape), where=rows > 0)
    side = min(2 + 0.55 * n, 16)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm.matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        str(cm.matrix[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix (confidence >= {cm.conf:g}, IoU >= {cm.iou:g})")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    return save(fig, Path(path))
