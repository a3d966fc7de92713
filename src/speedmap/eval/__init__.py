"""Accuracy: COCO metrics equal to pycocotools', PR curves and a confusion matrix."""

from speedmap.eval.cocoeval import EvalError, FileEvaluation, evaluate, evaluate_files
from speedmap.eval.metrics import SUMMARY_KEYS, Metrics

__all__ = ["SUMMARY_KEYS", "EvalError", "FileEvaluation", "Metrics", "evaluate", "evaluate_files"]
