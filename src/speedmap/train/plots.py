"""Training curves: loss components and validation mAP per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speedmap.plotting import pyplot, save


def plot_training(history: list[dict[str, Any]], path: Path) -> Path:
    """Loss components (left) and validation mAP50/mAP50-95 (right) per epoch."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("box_loss", "box (CIoU)"), ("cls_loss", "class (BCE)"), ("dfl_loss", "box (DFL)")):
        axes[0].plot(epochs, [h[key] for h in history], label=label)
    axes[0].set(xlabel="epoch", ylabel="training loss", title="Loss")
    for key, label in (("map50", "mAP50"), ("map", "mAP50-95")):
        vals = [h.get(key) for h in history]
        if any(v is not None for v in vals):
            axes[1].plot(epochs, [v if v is not None else float("nan") for v in vals], marker="o", ms=3, label=label)
    axes[1].set(xlabel="epoch", ylabel="validation", ylim=(0, 1), title="Validation mAP")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return save(fig, path, dpi=100)
