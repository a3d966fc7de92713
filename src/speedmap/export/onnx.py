"""Export a trained checkpoint to ``model.onnx`` + ``model.json`` (needs the ``train`` extra for torch).

The graph ends with the decoded head: boxes ``xyxy`` in input pixels and class probabilities,
``(B, N, 4 + nc)``. NMS stays outside the graph, in numpy (measured: ``benchmarks/bench_engine.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from speedmap import __version__
from speedmap.errors import SpeedmapError
from speedmap.jsonfile import write_json_atomic
from speedmap.modelstore import META_FILE, MODEL_FILE, ModelMeta, read_meta

OPSET = 17
PREPROCESSING = {
    "resize": "letterbox",
    "interpolation": "bilinear",
    "pad_value": 114,
    "color": "RGB",
    "scale": 1 / 255,
    "layout": "NCHW",
    "exif_orientation": True,
}


class ExportError(SpeedmapError):
    """A checkpoint that cannot be exported, or bad export options."""


def find_checkpoint(source: str | Path) -> tuple[Path, dict[str, Any] | None]:
    """The checkpoint of a run folder (``best.pt``, else ``last.pt``) or a ``.pt`` file, and the run's
    ``train.json`` when there is one."""
    p = Path(source)
    if p.is_dir():
        ckpt = next((p / n for n in ("best.pt", "last.pt") if (p / n).is_file()), None)
        if ckpt is None:
            raise ExportError(f"{p} holds no best.pt or last.pt: is it a training run folder?")
    elif p.is_file():
        ckpt = p
    else:
        raise ExportError(f"no run folder or checkpoint at {p}")
    record = ckpt.parent / "train.json"
    try:
        return ckpt, json.loads(record.read_text()) if record.is_file() else None
    except ValueError:
        return ckpt, None


def _batch_arg(batch: int | str) -> int | None:
    if batch in ("dynamic", None):
        return None
    try:
        b = int(batch)
    except ValueError as exc:
        raise ExportError(f"--batch must be a positive integer or 'dynamic', got {batch!r}") from exc
    if b < 1:
        raise ExportError(f"--batch must be a positive integer or 'dynamic', got {batch!r}")
    return b


def export_model(
    source: str | Path,
    out: str | Path,
    imgsz: int | None = None,
    batch: int | str = "dynamic",
    int8: str | Path | None = None,
    half: bool = False,
    evaluate: bool = True,
    calib_images: int = 128,
    log: Callable[[str], None] = print,
    int8_float: Sequence[str] | None = None,
) -> ModelMeta:
    """Write ``out/model.onnx`` and ``out/model.json`` from a run folder or checkpoint.

    ``int8``: a dataset to calibrate static int8 quantization (QDQ) on; ``int8_float``: the modules
    kept in float then (None: the size's ``int8_float``); ``half``: fp16 weights (GPUs).
    With ``evaluate``, the exported model is scored through the engine on the training dataset's test
    split (when that dataset is still on disk) and the metrics go into ``model.json``.
    """
    import torch

    from speedmap.models import count_flops, count_params
    from speedmap.train.checkpoint import load_checkpoint, model_from_checkpoint

    if int8 is not None and half:
        raise ExportError("choose one of --int8 and --half")
    fixed_batch = _batch_arg(batch)
    ckpt_path, record = find_checkpoint(source)
    ckpt = load_checkpoint(ckpt_path)
    imgsz = int(imgsz or ckpt["imgsz"])
    if imgsz % 32 or not 32 <= imgsz <= 4096:
        raise ExportError(f"--imgsz must be a multiple of 32 between 32 and 4096, got {imgsz}")
    model = model_from_checkpoint(ckpt).eval().fuse()  # no BatchNorm, no train-only branches in the graph
    model.head.fix_anchors(imgsz)
    params, flops = count_params(model), count_flops(model, imgsz)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{MODEL_FILE}.tmp"
    if half:
        model = model.half()
    log(
        f"exporting {ckpt['size']} ({params / 1e6:.2f} M params, {flops / 1e9:.2f} GFLOPs at {imgsz}px) "
        f"from {ckpt_path}"
    )
    x = torch.zeros(fixed_batch or 1, 3, imgsz, imgsz, dtype=torch.float16 if half else torch.float32)
    trace_to_onnx(model, x, tmp, dynamic=fixed_batch is None)
    precision = "fp16" if half else "fp32"
    if int8 is not None:
        from speedmap.export.quantize import quantize_int8

        keep = model.size_spec.int8_float if int8_float is None else int8_float
        quantize_int8(tmp, tmp, int8, imgsz, calib_images, log, float_modules=keep)
        precision = "int8"
    os.replace(tmp, out / MODEL_FILE)

    doc = _model_doc(out, ckpt, ckpt_path, record, imgsz, fixed_batch, precision, params, flops)
    write_json_atomic(out / META_FILE, doc)
    meta = read_meta(out)
    data = _training_data(record, ckpt_path)
    if evaluate and data is not None:
        try:
            doc["metrics"] = _test_metrics(meta, data, log)
        except SpeedmapError as exc:  # the exported model stays; only its test score is missing
            log(f"warning: the model is exported, but scoring it on the dataset failed: {exc}")
            return meta
        write_json_atomic(out / META_FILE, doc)
        meta = read_meta(out)
    return meta


def trace_to_onnx(model: Any, x: Any, path: Path, dynamic: bool) -> None:
    """Trace ``model`` on the example input ``x`` into ``path`` (a dynamic batch axis when ``dynamic``)."""
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["images"],
            output_names=["output"],
            do_constant_folding=True,
            dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}} if dynamic else None,
        )


def _model_doc(
    out: Path,
    ckpt: dict[str, Any],
    ckpt_path: Path,
    record: dict[str, Any] | None,
    imgsz: int,
    fixed_batch: int | None,
    precision: str,
    params: int,
    flops: int,
) -> dict[str, Any]:
    """``model.json`` before the exported model is scored (``metrics`` None)."""
    import torch

    return {
        "name": out.resolve().parent.name,
        "version": out.resolve().name,
        "task": "object-detection",
        "file": MODEL_FILE,
        "classes": list(ckpt["classes"]),
        "input": {
            "name": "images",
            "imgsz": imgsz,
            "width": imgsz,
            "height": imgsz,
            "batch": fixed_batch or "dynamic",
            "dtype": "float16" if precision == "fp16" else "float32",
        },
        "output": {"name": "output", "format": "xyxy+class_probabilities", "nms": "outside the graph"},
        "preprocessing": PREPROCESSING,
        "size": ckpt["size"],
        "spec": ckpt.get("spec"),
        "params": params,
        "flops": flops,
        "precision": precision,
        "opset": OPSET,
        "training": {
            "checkpoint": str(ckpt_path),
            "epoch": int(ckpt.get("epoch", -1)) + 1,
            "dataset_fingerprint": ckpt.get("dataset"),
            "dataset": record["dataset"]["path"] if record else None,
            "epochs": record["epochs"] if record else None,
            "total_seconds": record["total_seconds"] if record else None,
            "train_images_per_second": record["train_images_per_second"] if record else None,
            "valid_metrics": ckpt.get("metrics"),
        },
        "metrics": None,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "speedmap": __version__,
        "torch": torch.__version__,
    }


def _training_data(record: dict[str, Any] | None, ckpt_path: Path) -> Path | None:
    """The training dataset, if still on disk: its absolute path, or the recorded path relative to the
    current folder or to a folder above the run (runs record the path as the user typed it)."""
    if not record:
        return None
    ds = record.get("dataset", {})
    if ds.get("abspath") and Path(ds["abspath"]).exists():
        return Path(ds["abspath"])
    rel = Path(ds.get("path", ""))
    for base in (Path.cwd(), *ckpt_path.resolve().parents):
        if str(rel) and (base / rel).exists():
            return base / rel
    return None


def _test_metrics(meta: ModelMeta, data: Path, log: Callable[[str], None]) -> dict[str, Any] | None:
    """mAP of the exported model on the dataset's test split (valid when there is no test split), and
    the confidence threshold of best F1 there, from the same predictions (the model runs once)."""
    from speedmap.data import load_dataset
    from speedmap.data.verify import drop_undecodable
    from speedmap.engine import Model
    from speedmap.eval.cocoeval import evaluate_predictions
    from speedmap.eval.model import predict_records
    from speedmap.eval.threshold import best_confidence

    ds = load_dataset(data, auto_split=True, decode=("test",))
    if not ds.split_records("test"):
        drop_undecodable(ds, ("valid",))
    split = "test" if ds.split_records("test") else "valid" if ds.split_records("valid") else None
    for line in ds.problems.report_lines(data):
        log(line)
    if split is None:
        return None
    view = ds.split(split)
    predictions = predict_records(Model(meta), view)
    m = evaluate_predictions(view, predictions).metrics  # what evaluate_model does, keeping the predictions
    best = best_confidence(predictions, view, iou=0.5)
    log(f"{split} split through the exported model: mAP50 {m.map50:.3f}  mAP50-95 {m.map:.3f}")
    log(f"best confidence {best.confidence:.2f} (F1 {best.f1:.2f} on the {split} split)")
    return {
        "split": split,
        "images": len(ds.split_records(split)),
        "corrupt_images": ds.problems.corrupt_images(),  # skipped: unreadable or not decodable
        "map50": m.map50,
        "map": m.map,
        "dataset_fingerprint": ds.fingerprint(),
        "best_confidence": {
            "confidence": best.confidence,
            "f1": best.f1,
            "precision": best.precision,
            "recall": best.recall,
            "split": split,
            "iou": 0.5,
        },
    }
