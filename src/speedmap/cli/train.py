"""``speedmap train``: train a detector of one size on a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from speedmap.cli.common import clean_errors, err
from speedmap.errors import MissingExtra

PATIENCE_HELP = (
    "End the constant-rate phase after this many epochs, and half the run, without a gain in the smoothed "
    "validation mAP50-95, then cool down and stop (0: only at --epochs, the maximum; with --schedule "
    "linear|cosine: stop at once after this many epochs)."
)
SCHEDULE_HELP = (
    "wsd: warm-up, a constant rate until a plateau or the epoch cap, then a cooldown of a fifth of the run (every "
    "run ends annealed); linear | cosine: decay over --epochs."
)


class EpochBars:
    """One rich progress bar per epoch: batches, loss components, images/s, ETA; a summary line after."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("box {task.fields[box]:.3f} cls {task.fields[cls]:.3f} dfl {task.fields[dfl]:.3f}"),
            TextColumn("{task.fields[ips]:.1f} img/s"),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self.task: Any = None
        self.epoch = -1

    def __call__(self, ev: dict[str, Any]) -> None:
        if "epoch_done" in ev:
            e = ev["epoch_done"]
            if self.task is not None:
                self.bar.remove_task(self.task)
                self.task = None
            val = f"mAP50 {e.map50:.3f}  mAP50-95 {e.map:.3f}" if e.map is not None else "no validation split"
            star = " [green]best[/]" if ev.get("best") else ""
            err.print(
                f"epoch {e.epoch:>3}  loss box {e.box_loss:.3f} cls {e.cls_loss:.3f} dfl {e.dfl_loss:.3f}  "
                f"{val}  {e.seconds:.1f}s ({e.images_per_second:.1f} img/s){star}",
                highlight=False,
            )
            return
        if ev["epoch"] != self.epoch or self.task is None:
            self.epoch = ev["epoch"]
            if not self.bar.live.is_started:
                self.bar.start()
            self.task = self.bar.add_task(
                f"epoch {ev['epoch'] + 1}/{ev['epochs']}", total=ev["batches"], box=0.0, cls=0.0, dfl=0.0, ips=0.0
            )
        self.bar.update(self.task, completed=ev["batch"], box=ev["box"], cls=ev["cls"], dfl=ev["dfl"], ips=ev["ips"])

    def close(self) -> None:
        if self.bar.live.is_started:
            self.bar.stop()


@clean_errors
def train_command(
    data: Path = typer.Argument(..., help="Dataset folder or annotation file (COCO, YOLO or VOC)."),
    size: str = typer.Option("fast", "--size", help="Model size: fast | accurate."),
    epochs: int = typer.Option(50, "--epochs", min=1),
    imgsz: int | None = typer.Option(
        None,
        "--imgsz",
        help="Input size, a multiple of 32 (default: 256 for built-in tasks, else chosen from the box sizes).",
    ),
    batch: int = typer.Option(16, "--batch", min=1),
    weights: str = typer.Option(
        "pretrained",
        "--weights",
        help="Start from: pretrained (weights shipped in the package, pretrained on generated scenes), scratch, or "
        "a checkpoint file (any class count).",
    ),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default runs/train/DATA-SIZE)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present) | cpu | cuda | cuda:N"),
    workers: int | None = typer.Option(None, "--workers", help="Data-loading processes (default: by CPU count)."),
    seed: int = typer.Option(0, "--seed"),
    patience: int = typer.Option(50, "--patience", help=PATIENCE_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt."),
    close_mosaic: int = typer.Option(10, "--close-mosaic", help="Last epochs trained without mosaic."),
    optimizer: str = typer.Option("auto", "--optimizer", help="auto | sgd | adamw"),
    schedule: str = typer.Option("wsd", "--schedule", help=SCHEDULE_HELP),
    cos_lr: bool = typer.Option(False, "--cos-lr", help="Same as --schedule cosine."),
) -> None:
    """Train a detector (PyTorch; install the `train` extra). Works under torchrun for several processes."""
    try:
        from speedmap.models import SIZES
        from speedmap.train.config import TrainConfig
        from speedmap.train.device import resolve_device
        from speedmap.train.trainer import train
    except ImportError as exc:
        raise MissingExtra("training", "train", exc) from None
    resolve_device(device)  # a missing GPU fails here, before the data is read
    if size not in SIZES:
        err.print(f"[bold red]error:[/] unknown size {size!r}; choose one of {', '.join(SIZES)}")
        raise typer.Exit(2)
    from speedmap.data.tasks import default_imgsz

    if imgsz is None and not resume:
        imgsz, why = default_imgsz(data)
        err.print(f"input size {imgsz} px: {escape(why)} (--imgsz to choose another)", highlight=False)
    cfg = TrainConfig(
        data=str(data),
        size=size,
        epochs=epochs,
        imgsz=imgsz or default_imgsz(data)[0],
        batch=batch,
        weights=weights,
        out=str(out) if out else None,
        device=device,
        workers=workers,
        seed=seed,
        patience=patience,
        resume=resume,
        close_mosaic=close_mosaic,
        optimizer=optimizer,
        schedule=schedule,
        cos_lr=cos_lr,
    )
    bars = EpochBars()
    try:
        record = train(cfg, progress=bars, log=lambda m: err.print(escape(m), highlight=False, soft_wrap=True))
    finally:
        bars.close()
    if record:
        err.print(
            f"[green]done[/]: best epoch {record['best_epoch']} mAP50 {record['best_map50'] or 0:.3f} "
            f"mAP50-95 {record['best_map'] or 0:.3f}; {record['total_seconds']:.0f}s training "
            f"({record['train_images_per_second']:.1f} img/s); run folder {escape(record['run'])}"
        )
        print_outcome(record)


def print_outcome(record: dict[str, Any]) -> None:
    """Converged or not (and why), and a warning when other processes competed for the CPU."""
    conv = record.get("convergence") or {}
    state = "[green]converged[/]" if record.get("converged") else "[yellow]not converged[/]"
    err.print(f"{state} ({record.get('epochs_run')} epochs): {escape(conv.get('reason', ''))}", highlight=False)
    if record.get("contended"):
        err.print(
            f"[yellow]warning:[/] other processes took {record['other_cpu_share']:.0%} of the CPU during "
            "training: wall-clock times are not comparable",
            highlight=False,
        )
