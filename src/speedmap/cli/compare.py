"""``speedmap compare``: the Fast-vs-Accurate study on your data and hardware, and its report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from speedmap.cli.common import clean_errors, err, out
from speedmap.errors import SpeedmapError


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


class StudyUI:
    """Progress for the whole study: one line per step, the trainer's epoch bars, elapsed vs expected."""

    def __init__(self, steps: int, expected_s: float) -> None:
        from speedmap.cli.train import EpochBars

        self.steps, self.done, self.expected_s, self.t0 = steps, 0, expected_s, time.time()
        self.bars = EpochBars()

    def _clock(self) -> str:
        minutes = (time.time() - self.t0) / 60
        return f"[{self.done}/{self.steps} steps, {minutes:.1f} of ~{self.expected_s / 60:.0f} min]"

    def stage(self, text: str) -> None:
        self.bars.close()
        err.print(f"[bold]{escape(text)}[/] [dim]{self._clock()}[/]")

    def note(self, text: str) -> None:
        err.print(f"  {escape(text)}", highlight=False)

    def training(self, event: dict[str, Any]) -> None:
        self.bars(event)

    def step_done(self) -> None:
        self.bars.close()
        self.done += 1


@clean_errors
def compare_command(
    data: list[Path] = typer.Argument(None, help="Dataset folders (COCO, YOLO or VOC); none: the built-in tasks."),
    tasks: str = typer.Option("all", "--tasks", help="Built-in tasks when no data is given: all or a list."),
    sizes: str = typer.Option("fast,accurate", "--sizes", help="Sizes to train and compare."),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Most training epochs; early stopping ends a run at a plateau (full: 60)."
    ),
    patience: int | None = typer.Option(
        None, "--patience", help="Epochs without a validation mAP50-95 gain before a run stops (full: 8)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed for the built-in tasks' images and training."),
    bench_repeats: int | None = typer.Option(
        None, "--bench-repeats", help="Interleaved Fast/Accurate repeats per benchmark scenario (full: 3)."
    ),
    imgsz: int | None = typer.Option(None, "--imgsz", help="Input size (full: 256 for tasks, 640 for data)."),
    images: int | None = typer.Option(None, "--images", help="Images per built-in task (full: 600)."),
    batch: int | None = typer.Option(None, "--batch", help="Training batch size (full: 16, --quick: 8)."),
    targets: str = typer.Option(
        "http,local,browser", "--targets", help="Destinations to benchmark; the advice is for the first."
    ),
    out_dir: Path = typer.Option(Path("study"), "--out", help="Study folder (steps, models, report)."),
    quick: bool = typer.Option(False, "--quick", help="A small study: within 10 minutes on 2 CPU cores."),
    min_fps: float | None = typer.Option(None, "--min-fps", help="Constraint: frames per second on the target."),
    max_latency_ms: float | None = typer.Option(None, "--max-latency-ms", help="Constraint: p50 latency."),
    min_map: float | None = typer.Option(None, "--min-map", help="Constraint: test mAP50 (0-1)."),
    bench_seconds: float | None = typer.Option(None, "--bench-seconds", help="Minimum seconds per benchmark run."),
) -> None:
    """Train Fast and Accurate, score, benchmark every destination, and recommend one, with numbers."""
    from speedmap.study.config import expected_seconds, preset
    from speedmap.study.report import write_report
    from speedmap.study.run import Study

    task_list = None if tasks == "all" else _csv(tasks)
    if data and imgsz is None and not quick:
        imgsz = 640
    cfg = preset(
        quick,
        data=[str(d) for d in data or []],
        tasks=task_list if not data else None,
        sizes=_csv(sizes),
        epochs=epochs,
        patience=patience,
        seed=seed,
        bench_repeats=bench_repeats,
        imgsz=imgsz,
        images=images,
        batch=batch,
        targets=_csv(targets),
        min_fps=min_fps,
        max_latency_ms=max_latency_ms,
        min_map=min_map,
        bench_seconds=bench_seconds,
    )
    cfg.check()
    for d in cfg.data:
        if not Path(d).exists():
            raise SpeedmapError(f"dataset not found: {d}")
    n_sets = len(cfg.data) or len(cfg.tasks)
    train_images = [round(cfg.images * 0.7)] * n_sets if not cfg.data else [_train_count(d) for d in cfg.data]
    expected, at_most = expected_seconds(cfg, train_images)
    steps = n_sets * (len(cfg.sizes) + 1 + len(cfg.targets) + (len(cfg.sizes) == 2))
    what = ", ".join(cfg.data) if cfg.data else f"built-in tasks {', '.join(cfg.tasks)}"
    err.print(
        f"speedmap compare{' --quick' if quick else ''}: {what}; sizes {', '.join(cfg.sizes)}; "
        f"at most {cfg.epochs} epochs (patience {cfg.patience}) at {cfg.imgsz} px; destinations "
        f"{', '.join(cfg.targets)}; seed {cfg.seed}",
        highlight=False,
    )
    err.print(
        f"expected duration: about {expected / 60:.0f} minutes on a 2-core CPU, at most {at_most / 60:.0f} if no "
        f"model plateaus before --epochs (finished steps in {escape(str(out_dir))} are reused)",
        highlight=False,
    )
    ui = StudyUI(steps, expected)
    try:
        results = Study(cfg, out_dir, ui, command=_command(cfg, out_dir)).run()
    finally:
        ui.bars.close()
    paths = write_report(results, out_dir)
    _summary(results)
    err.print(
        "wrote " + ", ".join(escape(str(p)) for p in (paths["markdown"], paths["html"], out_dir / "results.json")),
        highlight=False,
    )


def _command(cfg: Any, out_dir: Path) -> list[str]:
    """The study's command with every setting spelled out, to reproduce it exactly."""
    cmd = ["speedmap", "compare", *cfg.data]
    if not cfg.data:
        cmd += ["--tasks", ",".join(cfg.tasks)]
    cmd += [
        "--sizes",
        ",".join(cfg.sizes),
        "--epochs",
        str(cfg.epochs),
        "--patience",
        str(cfg.patience),
        "--seed",
        str(cfg.seed),
        "--bench-repeats",
        str(cfg.bench_repeats),
        "--imgsz",
        str(cfg.imgsz),
        "--batch",
        str(cfg.batch),
        "--targets",
        ",".join(cfg.targets),
        "--bench-seconds",
        f"{cfg.bench_seconds:g}",
        "--out",
        str(out_dir),
    ]
    if not cfg.data:
        cmd += ["--images", str(cfg.images)]
    if cfg.quick:
        cmd.append("--quick")
    for flag, v in (("--min-fps", cfg.min_fps), ("--max-latency-ms", cfg.max_latency_ms), ("--min-map", cfg.min_map)):
        if v is not None:
            cmd += [flag, f"{v:g}"]
    return cmd


def _train_count(path: str) -> int:
    from speedmap.data.io import load_dataset

    return len(load_dataset(path).split("train"))


def _summary(results: Any) -> None:
    from rich.table import Table

    from speedmap.study.report import accuracy_table, relative_speed_rows, sureness_rows, training_rows

    for title, rows in (
        ("Accuracy (test split)", accuracy_table(results)),
        ("Fast vs Accurate speed", relative_speed_rows(results)),
        ("Training", training_rows(results)),
        ("How sure is this?", sureness_rows(results)),
    ):
        if len(rows) > 1:
            t = Table(*rows[0], title=title)
            for r in rows[1:]:
                t.add_row(*(escape(c) for c in r))
            out.print(t)
    rec = results.recommendation
    for c in rec.choices if rec else []:
        strength = f" [dim](evidence: {c.evidence.strength})[/]" if c.evidence else ""
        out.print(
            f"[bold]{escape(c.task)}: deploy {c.size.capitalize()}{' (provisional)' if c.provisional else ''}[/]"
            f" on {rec.destination}{strength}. " + escape(" ".join(c.reasons))
        )
