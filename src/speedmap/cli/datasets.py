"""``speedmap datasets``: info, validate, convert, split, tasks, make."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from speedmap.cli.common import Command, Group, clean_errors, err, out, progress_bar
from speedmap.data import FORMATS, SPLITS, Dataset, dataset_info, load_dataset, save_dataset
from speedmap.data.splitting import MIN_SPLIT_IMAGES, auto_split, parse_ratios
from speedmap.data.tasks import DEFAULT_TASK, TASKS, make_task
from speedmap.data.tasks.make import DEFAULT_IMAGES, DEFAULT_IMGSZ, check_task_args, is_made, task_meta
from speedmap.data.verify import decode_all
from speedmap.errors import DatasetError

app = typer.Typer(help="Read, check, convert and generate detection datasets.", cls=Group, no_args_is_help=True)

FORMAT_HELP = f"Dataset format ({'|'.join(FORMATS)}); detected when omitted."


def _check_format(fmt: str | None) -> str | None:
    if fmt is not None and fmt not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def report_problems(ds: Dataset, examples: int = 5) -> None:
    """Summarise skipped/fixed items on stderr (stdout stays clean for --json)."""
    if not ds.problems:
        return
    err.print(f"[yellow]{len(ds.problems)} problem(s) in {escape(str(ds.root))}:[/]")
    for line in ds.problems.summary_lines():
        err.print(escape(line), highlight=False, soft_wrap=True)
    for p in ds.problems.items[:examples]:
        err.print(f"  [dim]e.g. {escape(str(p))}[/]", highlight=False, soft_wrap=True)
    if len(ds.problems) > examples:
        err.print(
            f"  [dim]... `speedmap datasets validate {escape(str(ds.root))}` lists all[/]",
            highlight=False,
            soft_wrap=True,
        )


@app.command(cls=Command)
@clean_errors
def info(
    path: Path = typer.Argument(..., help="Dataset folder or annotation file."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    strict: bool = typer.Option(False, "--strict", help="Fail on any problem instead of skipping it."),
    format: str | None = typer.Option(None, "--format", help=FORMAT_HELP),
) -> None:
    """Format, classes, and per split: images, boxes, negatives, boxes per class and by size.

    A dataset without valid or test splits is shown as training and the study will use it: with the
    missing splits carved from train (seeded, 70/15/15; `datasets split` writes another split out).
    """
    ds = load_dataset(path, _check_format(format), strict=strict, auto_split=True)
    doc = dataset_info(ds)
    report_problems(ds)
    if as_json:
        typer.echo(json.dumps(doc))
        return
    out.print(f"[bold]{escape(str(path))}[/]  format [cyan]{ds.format}[/]  {len(ds.classes)} classes")
    out.print(f"splits: {escape(ds.split_info.describe())}")
    table = Table("split", "images", "boxes", "negatives", "small", "medium", "large")
    for s in SPLITS:
        st = doc["splits"][s]
        table.add_row(s, *(str(v) for v in (st["images"], st["boxes"], st["negatives"], *st["sizes"].values())))
    out.print(table)
    per_class = Table("class", *SPLITS, title="boxes per class")
    for name in ds.classes:
        per_class.add_row(escape(name), *(str(doc["splits"][s]["per_class"][name]) for s in SPLITS))
    out.print(per_class)


@app.command(cls=Command)
@clean_errors
def validate(
    path: Path = typer.Argument(..., help="Dataset folder or annotation file."),
    strict: bool = typer.Option(False, "--strict", help="Exit with an error if any problem is found."),
    decode: bool = typer.Option(True, "--decode/--no-decode", help="Fully decode every image (finds truncated files)."),
    as_json: bool = typer.Option(False, "--json", help="Print the problems as JSON."),
    format: str | None = typer.Option(None, "--format", help=FORMAT_HELP),
) -> None:
    """Check annotations and images; list every problem with file and line."""
    ds = load_dataset(path, _check_format(format))
    if decode:
        with progress_bar("decoding images", enabled=not as_json) as update:
            decode_all(ds, update)
    if as_json:
        typer.echo(json.dumps({"images": ds.num_images, "problems": ds.problems.to_json()}))
    else:
        for p in ds.problems.items:
            out.print(escape(str(p)), highlight=False, soft_wrap=True)
        if ds.problems:
            out.print(f"[yellow]{len(ds.problems)} problem(s); {ds.num_images} usable images[/]")
            for line in ds.problems.summary_lines():
                out.print(escape(line), highlight=False, soft_wrap=True)
        else:
            out.print(f"[green]ok[/]: {ds.num_images} images, {len(ds.classes)} classes, no problems")
    if strict and ds.problems:
        raise typer.Exit(1)


@app.command(cls=Command)
@clean_errors
def convert(
    src: Path = typer.Argument(..., help="Source dataset."),
    dst: Path = typer.Argument(..., help="New output folder."),
    to: str = typer.Option(..., "--to", help="Target format: coco|yolo|voc."),
    strict: bool = typer.Option(False, "--strict", help="Refuse to convert a dataset with problems."),
    link: bool = typer.Option(False, "--link", help="Hard-link images instead of copying them."),
    format: str | None = typer.Option(None, "--format", help=FORMAT_HELP),
    as_given: bool = typer.Option(
        False, "--as-given", help="Write the source's splits as they are (an unsplit folder stays all train)."
    ),
) -> None:
    """Convert between COCO, YOLO and Pascal VOC.

    A dataset without valid or test splits is written with them carved from train exactly as `info`, `train`,
    `eval` and `compare` see it (seeded, 70/15/15), so another trainer gets the split the study reported.
    """
    _check_format(to)
    ds = load_dataset(src, _check_format(format), strict=strict, auto_split=not as_given)
    report_problems(ds)
    notes = save_dataset(ds, dst, to, transfer="link" if link else "copy")
    for note in notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    counts = " / ".join(f"{len(ds.split_records(s))} {s}" for s in SPLITS)
    out.print(f"wrote {ds.num_images} images ({counts}), {len(ds.classes)} classes as {to} to {escape(str(dst))}")
    out.print(f"splits: {escape(ds.split_info.describe())}")


@app.command(cls=Command)
@clean_errors
def split(
    src: Path = typer.Argument(..., help="Source dataset."),
    dst: Path = typer.Argument(..., help="New output folder."),
    ratios: str = typer.Option("70,15,15", "--ratios", help="Shares of train,valid,test (any scale)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same split."),
    strict: bool = typer.Option(False, "--strict", help="Refuse to split a dataset with problems."),
    link: bool = typer.Option(False, "--link", help="Hard-link images instead of copying them."),
    format: str | None = typer.Option(None, "--format", help=FORMAT_HELP),
) -> None:
    """Split a dataset into train, valid and test, and write it in the source's format.

    Every image of the source is pooled and split again: shuffled by the seed, with every class that is
    in at least 3 images in each of valid and test.
    """
    fractions = parse_ratios(ratios)
    ds = load_dataset(src, _check_format(format), strict=strict)
    report_problems(ds)
    if ds.num_images < MIN_SPLIT_IMAGES:
        raise DatasetError(f"{src}: {ds.num_images} images; splitting needs at least {MIN_SPLIT_IMAGES}")
    done = auto_split(ds, fractions, seed, pool_all=True)
    notes = save_dataset(done, dst, ds.format, transfer="link" if link else "copy")
    for note in notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    counts = ", ".join(f"{s} {len(done.split_records(s))}" for s in SPLITS)
    out.print(f"wrote {counts} images ({ds.format}, seed {seed}) to {escape(str(dst))}")


@app.command(cls=Command)
@clean_errors
def tasks(as_json: bool = typer.Option(False, "--json", help="Print the task names as a JSON list.")) -> None:
    """List the built-in benchmark tasks."""
    if as_json:
        typer.echo(json.dumps(list(TASKS)))
        return
    table = Table("task", "classes", "what it tests", "expected difficulty")
    for t in TASKS.values():
        name = f"{t.name} (default)" if t.name == DEFAULT_TASK else t.name
        table.add_row(name, ", ".join(t.classes), t.tests, t.difficulty)
    out.print(table)


@app.command(cls=Command)
@clean_errors
def make(
    task: str = typer.Argument(..., help=f"Built-in task: {', '.join(TASKS)}."),
    dst: Path = typer.Argument(..., help="New output folder."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives identical files."),
    images: int = typer.Option(DEFAULT_IMAGES, "--images", help="Number of images (split 70/15/15)."),
    imgsz: int = typer.Option(DEFAULT_IMGSZ, "--imgsz", help="Image side in pixels."),
    format: str = typer.Option("coco", "--format", help="Output format: coco|yolo|voc."),
) -> None:
    """Generate a built-in task locally (nothing is downloaded)."""
    _check_format(format)
    if task in TASKS and is_made(dst, task_meta(task, seed, images, imgsz, format)):
        out.print(f"task {task!r} already made in {escape(str(dst))} (same arguments): reusing it")
        return
    check_task_args(task, dst, images, imgsz)
    with progress_bar(f"making {task}") as update:
        make_task(task, dst, seed=seed, images=images, imgsz=imgsz, format=format, progress=update)
    out.print(f"wrote task {task!r} ({images} images, {imgsz}px, {format}) to {escape(str(dst))}")
