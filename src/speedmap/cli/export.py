"""``speedmap export`` and ``speedmap models``: ONNX export into the model store (or a web bundle), and its
listing."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from speedmap.cli.common import clean_errors, err, out
from speedmap.errors import MissingExtra, SpeedmapError


@clean_errors
def export_command(
    source: Path = typer.Argument(
        ..., help="onnx: training run folder (uses best.pt) or checkpoint. web: model id (project/version) or folder."
    ),
    out_dir: Path = typer.Option(..., "--out", help="onnx: model folder, e.g. models/PROJECT/VERSION. web: a folder."),
    fmt: str = typer.Option("onnx", "--format", help="onnx (model.onnx + model.json) or web (static browser bundle)."),
    models_dir: Path | None = typer.Option(None, "--models", help="web: model store for ids (default ./models)."),
    imgsz: int | None = typer.Option(None, "--imgsz", help="Input size (default: the training size)."),
    batch: str = typer.Option("dynamic", "--batch", help="Batch dimension: dynamic, or a fixed size (1, N)."),
    int8: Path | None = typer.Option(
        None,
        "--int8",
        help="Dataset to calibrate static int8 quantization on (faster on CPUs; model.json gets its mAP).",
    ),
    half: bool = typer.Option(False, "--half", help="fp16 weights and input (for GPUs)."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Do not score the exported model on the test split."),
) -> None:
    """Export a trained detector to ONNX (model.onnx + model.json) for the engine, server and benchmark,
    or an exported model to a static web bundle that runs it in the browser (--format web)."""
    if fmt == "web":
        given = [n for n, v in (("--imgsz", imgsz), ("--int8", int8), ("--half", half)) if v]
        given += ["--batch"] if batch != "dynamic" else []
        if given:
            raise SpeedmapError(f"{', '.join(given)} apply to --format onnx; a web bundle runs the exported graph")
        from speedmap.export.web import export_web

        meta, folder = export_web(str(source), out_dir, models_dir)
        err.print(
            f"[green]wrote[/] the web bundle of [bold]{escape(meta.id)}[/] to {escape(str(folder))}: serve the "
            "folder over HTTP (index.html); COOP/COEP headers enable threads",
            highlight=False,
        )
        return
    if fmt != "onnx":
        raise SpeedmapError(f"unknown --format {fmt!r}: onnx or web")
    try:
        from speedmap.export import export_model
    except ImportError as exc:
        raise MissingExtra("export", "train", exc) from None
    meta = export_model(
        source,
        out_dir,
        imgsz=imgsz,
        batch=batch,
        int8=int8,
        half=half,
        evaluate=not no_eval,
        log=lambda m: err.print(escape(m), highlight=False, soft_wrap=True),
    )
    d = meta.doc
    size_mb = meta.onnx.stat().st_size / 1e6
    err.print(
        f"[green]wrote[/] {escape(str(meta.onnx))} ({size_mb:.1f} MB, {d['precision']}, batch "
        f"{d['input']['batch']}) and model.json; model id [bold]{escape(meta.id)}[/]",
        highlight=False,
    )


@clean_errors
def models_list_command(
    models_dir: Path | None = typer.Option(
        None, "--models", help="Model store (default $SPEEDMAP_MODELS or ./models)."
    ),
) -> None:
    """List the models in a store: id, size, precision, classes, input size, test mAP."""
    from speedmap.modelstore import default_models_dir, list_models

    store = models_dir or default_models_dir()
    found = list_models(store)
    if not found:
        err.print(
            f"no models in {escape(str(store))}: export one with `speedmap export RUN --out "
            f"{escape(str(store))}/PROJECT/VERSION`",
            highlight=False,
        )
        return
    t = Table(
        "id",
        "size",
        "precision",
        "imgsz",
        "classes",
        "params",
        "test mAP50",
        "test mAP50-95",
        title=f"models in {store}",
    )
    for m in found:
        d = m.doc
        met = d.get("metrics") or {}
        params = f"{d['params'] / 1e6:.2f} M" if d.get("params") else "?"
        m50 = f"{met['map50']:.3f}" if "map50" in met else "-"
        m5095 = f"{met['map']:.3f}" if "map" in met else "-"
        t.add_row(
            escape(m.id),
            str(d.get("size", "?")),
            str(d.get("precision", "fp32")),
            str(m.imgsz),
            escape(", ".join(m.classes)),
            params,
            m50,
            m5095,
        )
    out.print(t)
