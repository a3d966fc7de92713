"""Training and validation data: images cached at training size, augmented samples, collation."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from speedmap.data.dataset import DatasetSplit
from speedmap.imageio import read_image
from speedmap.preprocess import Letterbox, letterbox
from speedmap.train.augment import Sample, hflip, hsv_jitter, mosaic, random_affine

CACHE_LIMIT_BYTES = 4 << 30


@dataclass
class AugmentConfig:
    mosaic: float = 1.0  # probability
    scale: float = 0.5
    translate: float = 0.1
    fliplr: float = 0.5
    hsv: tuple[float, float, float] = (0.015, 0.7, 0.4)


def load_resized(path: str, imgsz: int, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode (EXIF-aware, RGB) and resize so the long side is ``imgsz``; boxes follow."""
    img = read_image(path)
    h, w = img.shape[:2]
    r = imgsz / max(h, w)
    if r != 1:
        interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR
        img = cv2.resize(img, (max(1, round(w * r)), max(1, round(h * r))), interpolation=interp)
    return img, (boxes * r).astype(np.float32)


class TrainData(torch.utils.data.Dataset):
    """Augmented training samples; ``set_epoch`` selects the epoch's random stream and mosaic."""

    def __init__(self, split: DatasetSplit, imgsz: int, seed: int, aug: AugmentConfig | None = None) -> None:
        self.split, self.imgsz, self.seed = split, imgsz, seed
        self.aug = aug or AugmentConfig()
        self.epoch, self.use_mosaic = 0, True
        # crowd regions are not objects to learn; they are left out of training targets
        self.labels = [(r.boxes[~r.iscrowd], r.class_ids[~r.iscrowd]) for r in split.records]
        est = len(split.records) * imgsz * imgsz * 3
        self.cache: list[tuple[np.ndarray, np.ndarray]] | None = None
        if est <= CACHE_LIMIT_BYTES:
            self.cache = [self._load(i) for i in range(len(split.records))]

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return load_resized(str(self.split.records[i].path), self.imgsz, self.labels[i][0])

    def _sample(self, i: int) -> Sample:
        img, boxes = self.cache[i] if self.cache is not None else self._load(i)
        return img, boxes, self.labels[i][1]

    def set_epoch(self, epoch: int, use_mosaic: bool) -> None:
        self.epoch, self.use_mosaic = epoch, use_mosaic

    def __len__(self) -> int:
        return len(self.split.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        a, s = self.aug, self.imgsz
        if self.use_mosaic and rng.random() < a.mosaic:
            others = rng.integers(0, len(self), 3)
            sample = mosaic([self._sample(i), *(self._sample(int(j)) for j in others)], s, rng)
        else:
            img, boxes, cls = self._sample(i)
            sq, lb = letterbox(img, s)
            sample = (sq, boxes * lb.scale + np.array([*lb.pad, *lb.pad], dtype=np.float32), cls)
        sample = random_affine(sample, s, rng, a.scale, a.translate)
        hsv_jitter(sample[0], rng, *a.hsv)
        if rng.random() < a.fliplr:
            sample = hflip(sample)
        img, boxes, cls = sample
        target = (
            np.concatenate([cls[:, None].astype(np.float32), boxes], 1) if len(cls) else np.zeros((0, 5), np.float32)
        )
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), torch.from_numpy(target)


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images; targets become rows ``(image index, class, x1, y1, x2, y2)``."""
    images = torch.stack([b[0] for b in batch])
    targets = [torch.cat([torch.full((len(t), 1), k, dtype=torch.float32), t], 1) for k, (_, t) in enumerate(batch)]
    return images, torch.cat(targets) if targets else torch.zeros(0, 6)


class ValData:
    """Validation images letterboxed once with the shared preprocessing function."""

    def __init__(self, split: DatasetSplit, imgsz: int) -> None:
        self.split, self.imgsz = split, imgsz
        self.images: list[np.ndarray] = []
        self.letterboxes: list[Letterbox] = []
        for rec in split.records:
            sq, lb = letterbox(read_image(rec.path), imgsz)
            self.images.append(sq)
            self.letterboxes.append(lb)

    def __len__(self) -> int:
        return len(self.images)
