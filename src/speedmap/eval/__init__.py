"""Accuracy: COCO metrics equal to pycocotools', PR curves, a confusion matrix and paired bootstrap
confidence intervals of mAP."""

from speedmap.eval.bootstrap import Interval, PairedBootstrap, paired_bootstrap, replicate_metrics
from speedmap.eval.cocoeval import EvalError, Evaluation, evaluate_files, evaluate_predictions
from speedmap.eval.metrics import SUMMARY_KEYS, Metrics

__all__ = [
    "SUMMARY_KEYS",
    "EvalError",
    "Evaluation",
    "Interval",
    "Metrics",
    "PairedBootstrap",
    "evaluate_files",
    "evaluate_predictions",
    "paired_bootstrap",
    "replicate_metrics",
]
