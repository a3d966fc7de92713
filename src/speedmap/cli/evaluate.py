"""``speedmap eval``: COCO metrics (equal to pycocotools'), PR curves and a confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from speedmap.cli.common import clean_errors, err, out, progress_bar
from speedmap.eval import SUMMARY_KEYS, Evaluation, Metrics, evaluate_files
from speedmap.eval.confusion import ConfusionMatrix

LABELS = {
    "map": "AP @[IoU=0.50:0.95 | area=all | maxDets=100]",
    "map50": "AP @[IoU=0.50 | area=all | maxDets=100]",
    "map75": "AP @[IoU=0.75 | area=all | maxDets=100]",
    "map_small": "AP @[IoU=0.50:0.95 | area=small | maxDets=100]",
    "map_medium": "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "map_large": "AP @[IoU=0.50:0.95 | area=large | maxDets=100]",
    "mar_1": "AR @[IoU=0.50:0.95 | area=all | maxDets=1]",
    "mar_10": "AR @[IoU=0.50:0.95 | area=all | maxDets=10]",
    "mar_100": "AR @[IoU=0.50:0.95 | area=all | maxDets=100]",
    "mar_small": "AR @[IoU=0.50:0.95 | area=small | maxDets=100]",
    "mar_medium": "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "mar_large": "AR @[IoU=0.50:0.95 | area=large | maxDets=100]",
}


def _fmt(v: float) -> str:
    return "n/a (-1)" if v < 0 else f"{v:.4f}"


def print_metrics(m: Metrics) -> None:
    summary = Table("metric", "", "value", title="COCO bbox metrics")
    for key in SUMMARY_KEYS:
        summary.add_row(key, LABELS[key], _fmt(getattr(m, key)))
    out.print(summary)
    per_class = Table("class", "AP50-95", "AP50", title="per class")
    for name in m.classes:
        v = m.per_class[name]
        per_class.add_row(escape(name), _fmt(v["map"]), _fmt(v["map50"]))
    out.print(per_class)
    for note in m.notes:
        out.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)


def write_plots(m: Metrics, cm: ConfusionMatrix, folder: Path) -> list[Path]:
    from speedmap.eval.plots import plot_confusion, plot_pr_curves

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "confusion_matrix.json").write_text(json.dumps(cm.to_json(), indent=1) + "\n", encoding="utf-8")
    return [
        plot_pr_curves(m, folder / "pr_curves.png"),
        plot_confusion(cm, folder / "confusion_matrix.png"),
        folder / "confusion_matrix.json",
    ]


@clean_errors
def eval_command(
    gt: Path | None = typer.Option(None, "--gt", help="COCO annotation file (ground truth)."),
    pred: Path | None = typer.Option(None, "--pred", help="COCO results file: [{image_id, category_id, bbox, score}]."),
    model: str | None = typer.Option(None, "--model", help="Exported model (folder or project/version id)."),
    data: Path | None = typer.Option(None, "--data", help="Dataset to evaluate --model on."),
    split: str = typer.Option("test", "--split", help="Dataset split for --model: train | valid | test."),
    models_dir: Path | None = typer.Option(None, "--models", help="Model store for ids (default ./models)."),
    providers: str | None = typer.Option(None, "--providers", help="ONNX Runtime providers, e.g. cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    plots: Path | None = typer.Option(None, "--plots", help="Folder for PR curves and the confusion matrix."),
    conf: float = typer.Option(0.25, "--conf", help="Confidence threshold of the confusion matrix."),
    iou: float = typer.Option(0.5, "--iou", help="IoU threshold of the confusion matrix."),
) -> None:
    """COCO bbox metrics (the same numbers as pycocotools) of a results file against ground truth
    (--gt/--pred), or of an exported model on a dataset split through the inference engine
    (--model/--data)."""
    corrupt: list[str] | None = None  # with --model: the images skipped because they do not decode
    if model is not None:
        if data is None or gt is not None or pred is not None:
            raise typer.BadParameter("--model needs --data (and no --gt/--pred)")
        result, corrupt = _evaluate_model(model, data, split, models_dir, providers, quiet=as_json)
    elif gt is not None and pred is not None:
        if data is not None:
            raise typer.BadParameter("--data goes with --model, not with --gt/--pred")
        result = evaluate_files(gt, pred)
    else:
        raise typer.BadParameter("give --gt and --pred, or --model and --data")
    metrics = result.metrics
    if as_json:
        extra = {"images": len(result.gt["images"]), "corrupt_images": corrupt} if corrupt is not None else {}
        typer.echo(json.dumps(metrics.to_json() | extra))
        for note in metrics.notes:
            err.print(f"note: {escape(note)}", soft_wrap=True)
    else:
        print_metrics(metrics)
    if plots is not None:
        for p in write_plots(metrics, result.confusion(conf, iou), plots):
            err.print(f"wrote {escape(str(p))}", soft_wrap=True)


def _evaluate_model(
    model_ref: str, data: Path, split: str, models_dir: Path | None, providers: str | None, quiet: bool
) -> tuple[Evaluation, list[str]]:
    """The evaluation of the model on the split's images that decode, and the files of those that do not
    (each named on stderr)."""
    from speedmap.data import load_dataset
    from speedmap.engine import Model
    from speedmap.eval.model import evaluate_model

    model = Model.load(model_ref, providers=providers, models_dir=models_dir)
    ds = load_dataset(data, auto_split=True, decode=(split,))
    for line in ds.problems.report_lines(data):
        err.print(escape(line), highlight=False, soft_wrap=True)
    view = ds.split(split)
    err.print(
        f"evaluating {model.id} ({model.meta.doc.get('size')}, {model.meta.doc.get('precision', 'fp32')}) "
        f"on {len(view.records)} {split} images; {', '.join(model.providers)}, {model.threads} threads",
        highlight=False,
        soft_wrap=True,
    )
    with progress_bar("evaluating", enabled=not quiet) as update:
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            update(done, len(view.records))

        return evaluate_model(model, view, advance=advance), ds.problems.corrupt_images()
