"""The dataset layer: one in-memory type, three formats (COCO, YOLO, VOC), built-in tasks."""

from speedmap.data.dataset import FORMATS, SPLITS, Dataset, DatasetSplit, ImageRecord
from speedmap.data.io import detect_format, load_dataset, save_dataset
from speedmap.data.problems import Problem, ProblemLog
from speedmap.data.stats import dataset_info

__all__ = [
    "FORMATS",
    "SPLITS",
    "Dataset",
    "DatasetSplit",
    "ImageRecord",
    "Problem",
    "ProblemLog",
    "dataset_info",
    "detect_format",
    "load_dataset",
    "save_dataset",
]
