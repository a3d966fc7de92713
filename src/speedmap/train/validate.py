"""Validation: detections for a split through the shared preprocessing and postprocessing, and their COCO
metrics (what early stopping, ``best.pt`` and the benchmarks' scores go by)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from speedmap.data import load_dataset
from speedmap.detections import Detections
from speedmap.eval import Metrics, evaluate_predictions
from speedmap.postprocess import EVAL_CONF, EVAL_IOU, EVAL_MAX_DET, postprocess
from speedmap.preprocess import to_input
from speedmap.train.checkpoint import load_checkpoint, model_from_checkpoint
from speedmap.train.data import ValData

VAL_BATCH = 32  # images per forward pass in validation


@torch.no_grad()
def predict_split(
    model: nn.Module,
    val: ValData,
    device: torch.device,
    batch: int = VAL_BATCH,
    conf: float = EVAL_CONF,
    iou: float = EVAL_IOU,
    max_det: int = EVAL_MAX_DET,
) -> list[Detections]:
    """Detections for every validation image, through the shared preprocessing and postprocessing."""
    model.eval()
    out: list[Detections] = []
    for i in range(0, len(val), batch):
        x = torch.from_numpy(to_input(val.images[i : i + batch])).to(device)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        pred = model(x).float().cpu().numpy()
        for p, lb in zip(pred, val.letterboxes[i : i + batch], strict=True):
            det = postprocess(p, conf=conf, iou=iou, max_det=max_det)
            det.xyxy = lb.to_original(det.xyxy)
            out.append(det)
    return out


def validation_metrics(model: nn.Module, val: ValData, device: torch.device) -> Metrics:
    return evaluate_predictions(val.split, predict_split(model, val, device)).metrics


def evaluate_checkpoint(path: str | Path, data: str | Path, split: str = "test") -> Metrics:
    """COCO metrics of a checkpoint on one split of a dataset, at the checkpoint's input size."""
    ckpt = load_checkpoint(path)
    view = load_dataset(data, auto_split=True, decode=(split,)).split(split)
    return validation_metrics(model_from_checkpoint(ckpt), ValData(view, ckpt["imgsz"]), torch.device("cpu"))
