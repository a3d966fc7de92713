"""``speedmap pretrain``: pretrain each size on generated scenes, resumable across sessions."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from speedmap.cli.common import clean_errors, err, progress_bar
from speedmap.cli.train import EpochBars, print_outcome
from speedmap.errors import MissingExtra


@clean_errors
def pretrain_command(
    size: str = typer.Option("fast,accurate", "--size", help="Sizes to pretrain, comma-separated."),
    images: int = typer.Option(8000, "--images", min=30, help="Generated scenes (70% train, 15% valid, 15% test)."),
    imgsz: int = typer.Option(256, "--imgsz", help="Scene and input size, a multiple of 32."),
    epochs: int = typer.Option(60, "--epochs", min=1),
    batch: int = typer.Option(16, "--batch", min=1),
    seed: int = typer.Option(0, "--seed", help="Seeds the scenes and the training."),
    out: Path = typer.Option(Path("runs/pretrain"), "--out", help="Folder of the scenes and one run per size."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present) | cpu | cuda | cuda:N"),
    workers: int | None = typer.Option(None, "--workers", help="Data-loading processes (default: by CPU count)."),
    pool: list[Path] = typer.Option(
        [], "--pool", help="A labelled dataset folder to pretrain on beside the scenes (repeatable; any layout)."
    ),
    weights: str | None = typer.Option(
        None, "--weights", help="Start from: scratch (default), pretrained (the package's weights) or a checkpoint."
    ),
    close_mosaic: int = typer.Option(10, "--close-mosaic", min=0, help="Last epochs trained without mosaic."),
    pool_images: int = typer.Option(
        1000, "--pool-images", min=1, help="Images at most from one --pool dataset (a seeded sample)."
    ),
    lr0: float | None = typer.Option(
        None, "--lr0", min=1e-6, max=1.0, help="Learning rate (default: automatic, lower as classes grow)."
    ),
) -> None:
    """Pretrain on generated scenes (no download), and with --pool on your own labelled datasets beside them.
    Run the same command again to continue where it stopped; fine-tune with
    `speedmap train DATA --weights OUT/SIZE/best.pt`."""
    try:
        from speedmap.models import SIZES
        from speedmap.train.device import resolve_device
        from speedmap.train.pretrain import PretrainConfig, make_scenes, prepare, pretrain
    except ImportError as exc:
        raise MissingExtra("training", "train", exc) from None
    resolve_device(device)  # a missing GPU fails here, before any scene is generated
    sizes = [s.strip() for s in size.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown or not sizes:
        err.print(f"[bold red]error:[/] unknown size {','.join(unknown)!r}; choose from {', '.join(SIZES)}")
        raise typer.Exit(2)
    for folder in pool:
        if not folder.is_dir():
            err.print(f"[bold red]error:[/] --pool {escape(str(folder))}: no such folder", soft_wrap=True)
            raise typer.Exit(2)
    cfg = PretrainConfig(
        out=str(out),
        sizes=sizes,
        images=images,
        imgsz=imgsz,
        epochs=epochs,
        batch=batch,
        seed=seed,
        device=device,
        workers=workers,
        pool=[str(f) for f in pool],
        weights=weights,
        close_mosaic=close_mosaic,
        pool_images=pool_images,
        lr0=lr0,
    )
    with progress_bar("generating scenes") as scenes:
        make_scenes(cfg, scenes)
    with progress_bar("pooling datasets", bool(pool)) as pooling:  # (the scenes are made: reused)
        data = prepare(cfg, pool_progress=pooling)
    bars = EpochBars()
    try:
        records = pretrain(
            cfg, progress=bars, log=lambda m: err.print(escape(m), highlight=False, soft_wrap=True), data=data
        )
    finally:
        bars.close()
    for s, record in records.items():
        if record:
            err.print(
                f"[green]{s}[/]: best epoch {record['best_epoch']} mAP50-95 {record['best_map'] or 0:.3f} on the "
                f"scenes; fine-tune with --weights {escape(str(out / s / 'best.pt'))}",
                highlight=False,
            )
            print_outcome(record)
