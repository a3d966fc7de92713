"""``speedmap compare``: the Fast-vs-Accurate study on your data and hardware, and its report."""

from __future__ import annotations

import time
from math import ceil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from speedmap.cli.common import clean_errors, err, out
from speedmap.errors import MissingExtra, SpeedmapError
from speedmap.study.config import QUICK, Plan, StudyConfig, plan

if TYPE_CHECKING:
    from speedmap.study.run import Study


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
        if not self.steps:  # before the plan: setting up, timing training
            return f"[{minutes:.1f} min]"
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


FULL = StudyConfig()  # the full study's settings; --quick's are QUICK on top
# On your datasets: a verdict within half an hour per dataset on a 2-core CPU (training fits into what the other
# steps leave), and 5 s benchmark runs (3 interleaved repeats of each scenario: enough for VALID windows). Up to
# 120 epochs: on small real sets (trained from scratch), 60 left Fast further from its end than Accurate and the
# difference favoured Accurate by 5-14 points that twice the epochs took back (issue 33, BENCHMARKS.md).
DATA_DEFAULTS: dict[str, Any] = {"budget_minutes": 30.0, "bench_seconds": 5.0, "epochs": 120}


def _shown(value: Any) -> str:
    return ",".join(value) if isinstance(value, list) else f"{value:g}" if isinstance(value, float) else str(value)


def presets(name: str) -> str:
    """``(full: X, --quick: Y)``, read from the presets themselves so that the help cannot drift from them."""
    full = getattr(FULL, name)
    return f"(full: {_shown(full)}, --quick: {_shown(QUICK.get(name, full))})"


# The command's arguments and options, declared here so that its signature is a list of names and defaults.
DataArg = Annotated[
    list[Path] | None, typer.Argument(help="Dataset folders (COCO, YOLO or VOC); none: the built-in tasks.")
]
TasksOpt = Annotated[
    str,
    typer.Option(
        "--tasks",
        help=f"Built-in tasks when no data is given: all or a list (--quick: {_shown(QUICK['tasks'])}).",
    ),
]
SizesOpt = Annotated[str, typer.Option("--sizes", help="Sizes to train and compare.")]
EpochsOpt = Annotated[
    int | None,
    typer.Option(
        "--epochs",
        help=f"Most training epochs; a plateau ends a run earlier {presets('epochs')}; your datasets: "
        f"{DATA_DEFAULTS['epochs']}.",
    ),
]
PatienceOpt = Annotated[
    int | None,
    typer.Option(
        "--patience",
        help=f"Epochs without a validation mAP50-95 gain (and half the run) that make a plateau {presets('patience')}.",
    ),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for the built-in tasks' images and training.")]
BenchRepeatsOpt = Annotated[
    int | None,
    typer.Option(
        "--bench-repeats", help=f"Interleaved Fast/Accurate repeats per benchmark scenario {presets('bench_repeats')}."
    ),
]
ImgszOpt = Annotated[
    int | None,
    typer.Option(
        "--imgsz",
        help=f"Input size. Default: chosen from your data's box sizes (printed with its reason); built-in tasks "
        f"at {FULL.task_imgsz} px (--quick: {QUICK['task_imgsz']}).",
    ),
]
BudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--budget",
        help=f"Minutes per dataset: training fits into what the other steps leave (your data: "
        f"{DATA_DEFAULTS['budget_minutes']:g}; built-in tasks: none; 0: none). A verdict from training cut short "
        "is marked provisional.",
    ),
]
Int8Opt = Annotated[
    bool | None,
    typer.Option(
        "--int8/--no-int8",
        help="Also export, score and benchmark int8 models on the CPU destinations (default: yes; --quick: no).",
    ),
]
ImagesOpt = Annotated[int | None, typer.Option("--images", help=f"Images per built-in task {presets('images')}.")]
BatchOpt = Annotated[int | None, typer.Option("--batch", help=f"Training batch size {presets('batch')}.")]
TargetsOpt = Annotated[str, typer.Option("--targets", help="Destinations to benchmark; the advice is for the first.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Study folder (steps, models, report).")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="A small study: within 10 minutes on 2 CPU cores.")]
MinFpsOpt = Annotated[float | None, typer.Option("--min-fps", help="Constraint: frames per second on the target.")]
MaxLatencyOpt = Annotated[float | None, typer.Option("--max-latency-ms", help="Constraint: p50 latency.")]
MinMapOpt = Annotated[float | None, typer.Option("--min-map", help="Constraint: test mAP50 (0-1).")]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="Training device for every run: auto (CUDA when present) | cpu | cuda | cuda:N.")
]
WeightsOpt = Annotated[
    str,
    typer.Option(
        "--weights",
        help="Where every training run starts: pretrained (the weights shipped in the package, pretrained on "
        "generated scenes) or scratch.",
    ),
]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        help="Train every dataset x size as Ray tasks on the cluster at this address (auto: RAY_ADDRESS or the "
        "cluster of this node, else a local one; HOST:PORT). Run folders must be on a path every node reads.",
    ),
]
BenchNodeOpt = Annotated[
    str | None,
    typer.Option("--bench-node", help="With --ray: the node (IP or host name) to benchmark on; the study runs there."),
]
BenchSecondsOpt = Annotated[
    float | None,
    typer.Option("--bench-seconds", help=f"Minimum seconds per benchmark run {presets('bench_seconds')}."),
]
BenchRetryOpt = Annotated[
    bool,
    typer.Option(
        "--bench-retry/--no-bench-retry",
        help="Run an UNSTABLE benchmark run again, up to 4x longer (default: yes). Without: one try each, "
        "UNSTABLE runs are reported as such.",
    ),
]
BenchRequestsOpt = Annotated[
    int | None,
    typer.Option("--bench-requests", help=f"Minimum requests per benchmark run {presets('bench_requests')}."),
]


@clean_errors
def compare_command(
    data: DataArg = None,
    tasks: TasksOpt = "all",
    sizes: SizesOpt = "fast,accurate",
    epochs: EpochsOpt = None,
    patience: PatienceOpt = None,
    seed: SeedOpt = None,
    bench_repeats: BenchRepeatsOpt = None,
    imgsz: ImgszOpt = None,
    images: ImagesOpt = None,
    batch: BatchOpt = None,
    targets: TargetsOpt = "http,local,browser",
    out_dir: OutOpt = Path("study"),
    quick: QuickOpt = False,
    min_fps: MinFpsOpt = None,
    max_latency_ms: MaxLatencyOpt = None,
    min_map: MinMapOpt = None,
    bench_seconds: BenchSecondsOpt = None,
    bench_requests: BenchRequestsOpt = None,
    bench_retry: BenchRetryOpt = True,
    budget: BudgetOpt = None,
    int8: Int8Opt = None,
    device: DeviceOpt = "auto",
    weights: WeightsOpt = "pretrained",
    ray: RayOpt = None,
    bench_node: BenchNodeOpt = None,
) -> None:
    """Train Fast and Accurate, score, benchmark every destination, and recommend one, with numbers."""
    from speedmap.study.report import write_report
    from speedmap.study.run import Study

    task_list = None if tasks == "all" else _csv(tasks)
    cfg = study_config(
        quick,
        data,
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
        bench_requests=bench_requests,
        bench_retry=bench_retry,
        budget_minutes=budget,
        int8=int8,
        device=device,
        weights=weights,
        ray=ray,
        bench_node=bench_node,
    )
    _check_config(cfg)
    ui = StudyUI(0, 0.0)
    study = Study(cfg, out_dir, ui, command=_command(cfg, out_dir))
    try:
        _announce(cfg, out_dir, study, ui)
        results = study.run()
    finally:
        ui.bars.close()
    paths = write_report(results, out_dir)
    _summary(results)
    err.print(
        "wrote " + ", ".join(escape(str(p)) for p in (paths["markdown"], paths["html"], out_dir / "results.json")),
        highlight=False,
    )


def study_config(quick: bool, data: list[Path] | None, **given: Any) -> StudyConfig:
    """The study's settings: the full study's or --quick's, then, on your datasets, :data:`DATA_DEFAULTS` (the
    budget even with --quick), then every option given; ``budget_minutes=0``: no budget."""
    from speedmap.study.config import preset

    defaults = DATA_DEFAULTS if data else {}
    for name in ("budget_minutes",) if quick else tuple(DATA_DEFAULTS):
        if given.get(name) is None:
            given[name] = defaults.get(name)
    given["budget_minutes"] = given.get("budget_minutes") or None
    return preset(quick, data=[str(d) for d in data or []], **given)


def _check_config(cfg: StudyConfig) -> None:
    """Refuse a study that cannot run before anything is prepared."""
    cfg.check()
    if not cfg.ray:  # on Ray the GPUs are the cluster's, not necessarily this machine's
        _check_device(cfg.device)
    if cfg.bench_node and not cfg.ray:
        raise SpeedmapError("--bench-node needs --ray")
    for d in cfg.data:
        if not Path(d).exists():
            raise SpeedmapError(f"dataset not found: {d}")


def _check_device(device: str) -> None:
    """Fail at once on a device this machine lacks, not after the data is prepared."""
    try:
        from speedmap.train.device import resolve_device
    except ImportError as exc:
        raise MissingExtra("training", "train", exc) from None
    resolve_device(device)


def _announce(cfg: StudyConfig, out_dir: Path, study: Study, ui: StudyUI) -> None:
    """What the study will do and about how long it takes, stated up front (on your data after timing both
    sizes' training steps on it, a minute or two that the study would spend anyway); sets the progress
    display's step count and expected time."""
    from speedmap.study.run import train_threads

    what = ", ".join(cfg.data) if cfg.data else f"built-in tasks {', '.join(cfg.tasks)}"
    budget = f"; budget {cfg.budget_minutes:g} min per dataset" if cfg.budget_minutes else ""
    err.print(
        f"speedmap compare{' --quick' if cfg.quick else ''}: {what}; sizes {', '.join(cfg.sizes)}; "
        f"at most {cfg.epochs} epochs (patience {cfg.patience}){' with int8' if cfg.int8 else ''}; destinations "
        f"{', '.join(cfg.targets)}; seed {cfg.seed}{budget}; training starts from "
        f"{'the shipped pretrained weights' if cfg.weights == 'pretrained' else 'scratch'}",
        highlight=False,
    )
    plans = _plans(cfg, study)
    expected = sum(p.expected_seconds for _, p in plans)
    at_most = sum(p.at_most_seconds for _, p in plans)
    for name, p in plans:
        if p.ips:
            err.print(
                f"  {escape(name)}: measured training speed {p.ips['fast']:.0f} (Fast) and "
                f"{p.ips['accurate']:.0f} (Accurate) images/s",
                highlight=False,
            )
        if p.limited:
            err.print(
                f"  [yellow]the budget gives at most {p.epochs} epochs per size[/] (of --epochs {cfg.epochs}); a "
                f"converged answer typically needs about {p.converged_seconds / 60:.0f} min (--budget "
                f"{ceil(p.converged_seconds / 60)}); a run cut short makes the verdict provisional",
                highlight=False,
            )
    limit = (
        " (training is cut to fit the budget)"
        if any(p.limited for _, p in plans)
        else (f", at most {at_most / 60:.0f} if no model plateaus before --epochs")
    )
    err.print(
        f"expected duration: about {expected / 60:.0f} minutes on this {train_threads()}-core CPU{limit} (finished "
        f"steps in {escape(str(out_dir))} are reused)",
        highlight=False,
    )
    ui.steps = len(plans) * (len(cfg.sizes) + 1 + len(cfg.targets) + (len(cfg.sizes) == 2))
    ui.expected_s = expected


def _plans(cfg: StudyConfig, study: Study) -> list[tuple[str, Plan]]:
    """Per dataset (or built-in task): its name and its schedule within the budget. Your datasets are set up
    by the study itself (split, input size, the training-speed probe); built-in tasks, generated later, are
    planned on the reference speeds."""
    if not cfg.data:
        size = cfg.imgsz or cfg.task_imgsz
        for t in cfg.tasks:
            err.print(f"  {t}: {round(cfg.images * 0.7)} training images at {size} px (built-in task)")
        return [(t, plan(cfg, round(cfg.images * 0.7), size)) for t in cfg.tasks]
    dests = study.destinations()
    return [(name, study.setup_task(name, path, dests)[2]) for name, path in study.datasets()]


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
        "--batch",
        str(cfg.batch),
        "--targets",
        ",".join(cfg.targets),
        "--bench-seconds",
        f"{cfg.bench_seconds:g}",
        "--bench-requests",
        str(cfg.bench_requests),
        "--bench-retry" if cfg.bench_retry else "--no-bench-retry",
        "--out",
        str(out_dir),
    ]
    if cfg.imgsz:
        cmd += ["--imgsz", str(cfg.imgsz)]
    cmd += ["--budget", f"{cfg.budget_minutes or 0:g}", "--int8" if cfg.int8 else "--no-int8"]
    cmd += ["--device", cfg.device, "--weights", cfg.weights]
    if cfg.ray:
        cmd += ["--ray", cfg.ray] + (["--bench-node", cfg.bench_node] if cfg.bench_node else [])
    if not cfg.data:
        cmd += ["--images", str(cfg.images)]
    if cfg.quick:
        cmd.append("--quick")
    for flag, v in (("--min-fps", cfg.min_fps), ("--max-latency-ms", cfg.max_latency_ms), ("--min-map", cfg.min_map)):
        if v is not None:
            cmd += [flag, f"{v:g}"]
    return cmd


def _summary(results: Any) -> None:
    from rich.table import Table

    from speedmap.study.tables import accuracy_table, relative_speed_rows, sureness_rows, training_rows

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
            f"[bold]{escape(c.task)}: deploy {c.size.capitalize()}{' int8' if c.variant == 'int8' else ''}"
            f"{' (provisional)' if c.provisional else ''}[/]"
            f" on {rec.destination}{strength}. " + escape(" ".join(c.reasons))
        )
