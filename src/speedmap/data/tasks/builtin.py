"""The built-in benchmark tasks: a registry of procedurally generated detection datasets.

They stand in for "a selection of target tasks": some where a small detector should saturate, some
where it should stay in the 40-80% mAP50 band. Difficulty below is the design intent; the study
(``speedmap compare``) measures it by training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from speedmap.data.tasks.canvas import (
    Scene,
    background,
    cross,
    finish,
    random_color,
    regular_polygon,
    rotate,
    scatter,
    star,
)

Render = Callable[[np.random.Generator, int], tuple[Image.Image, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[str, ...]
    tests: str
    difficulty: str
    render: Render
    negatives: float  # share of images with no labelled object


TASKS: dict[str, Task] = {}
DEFAULT_TASK = "shapes"


def register(
    name: str, classes: tuple[str, ...], tests: str, difficulty: str, negatives: float
) -> Callable[[Render], Render]:
    def wrap(fn: Render) -> Render:
        TASKS[name] = Task(name, classes, tests, difficulty, fn, negatives)
        return fn

    return wrap


def _basic(
    scene: Scene,
    kind: int,
    cx: float,
    cy: float,
    r: float,
    rng: np.random.Generator,
    color: tuple[int, int, int],
    label: int | None,
    outline: tuple[int, int, int] | None = None,
) -> None:
    """circle (0), square (1) or triangle (2)."""
    if kind == 0:
        scene.ellipse((cx - r, cy - r, cx + r, cy + r), color, label, outline)
    elif kind == 1:
        a = r * 0.85
        pts = rotate(
            [(cx - a, cy - a), (cx + a, cy - a), (cx + a, cy + a), (cx - a, cy + a)], cx, cy, rng.uniform(-0.25, 0.25)
        )
        scene.polygon(pts, color, label, outline)
    else:
        scene.polygon(regular_polygon(cx, cy, r, 3, rng.uniform(0, 2 * math.pi)), color, label, outline)


@register(
    "shapes",
    ("circle", "square", "triangle"),
    "large, well separated, high-contrast shapes on smooth textures",
    "easy: saturates (measured: fast mAP50 1.00 after 15 epochs)",
    negatives=0.05,
)
def shapes(rng: np.random.Generator, size: int) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    s = size / 256
    scene = Scene(background(rng, size, photo=0.2, contrast=0.6))
    n = 0 if rng.random() < TASKS["shapes"].negatives else int(rng.integers(1, 6))
    for _, cx, cy, r in scatter(rng, size, range(n), (14, 40), s, max_overlap=0.1):
        kind = int(rng.integers(3))
        _basic(scene, kind, cx, cy, r, rng, random_color(rng, 0.1, 1.0), kind, outline=(20, 20, 20))
    boxes, cls = scene.boxes()
    return finish(scene.image, rng), boxes, cls


@register(
    "tiny",
    ("circle", "square", "triangle"),
    "object scale: many tiny objects (6-16 px at 256) on photographic textures",
    "hard (measured: fast mAP50 0.30 after 10 epochs)",
    negatives=0.05,
)
def tiny(rng: np.random.Generator, size: int) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    s = size / 256
    scene = Scene(background(rng, size, photo=0.7))
    n = 0 if rng.random() < TASKS["tiny"].negatives else int(rng.integers(3, 26))
    for _, cx, cy, r in scatter(rng, size, range(n), (3, 8), s, max_overlap=0.0):
        kind = int(rng.integers(3))
        _basic(scene, kind, cx, cy, r, rng, random_color(rng, 0.0, 1.0), kind)
    boxes, cls = scene.boxes()
    return finish(scene.image, rng, blur=0.4), boxes, cls


@register(
    "crowd",
    ("coin", "chip"),
    "crowding and occlusion: piles of similar objects overlapping up to 70%",
    "medium (measured: fast mAP50 0.90 after 10 epochs)",
    negatives=0.05,
)
def crowd(rng: np.random.Generator, size: int) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    s = size / 256
    scene = Scene(background(rng, size, photo=0.4, contrast=0.7))
    n = 0 if rng.random() < TASKS["crowd"].negatives else int(rng.integers(10, 41))
    centres = rng.uniform(0.25 * size, 0.75 * size, size=(int(rng.integers(1, 4)), 2))
    for _ in range(n):
        r = rng.uniform(12, 24) * s
        cx, cy = np.clip(centres[int(rng.integers(len(centres)))] + rng.normal(0, 0.18 * size, 2), r, size - r)
        tone = rng.uniform(0.35, 0.8)
        color = tuple(int(255 * min(1.0, tone * f)) for f in (1.15, 1.0, 0.75))
        label = int(rng.integers(2))
        if label == 0:  # coin: a disc with a raised rim
            scene.ellipse((cx - r, cy - r, cx + r, cy + r), color, 0, outline=(40, 35, 25), width=max(1, round(s)))
            k = 0.72 * r
            scene.draw.ellipse((cx - k, cy - k, cx + k, cy + k), outline=(60, 50, 30), width=max(1, round(s)))
        else:  # chip: a rounded square
            a = 0.85 * r
            pts = rotate(regular_polygon(cx, cy, a * math.sqrt(2), 4, math.pi / 4), cx, cy, rng.uniform(0, math.pi / 2))
            scene.polygon(pts, color, 1, outline=(40, 35, 25), width=max(1, round(s)))
    boxes, cls = scene.boxes(min_visible=0.3)
    return finish(scene.image, rng), boxes, cls


DIE_PIPS: dict[int, list[tuple[float, float]]] = {
    1: [(0, 0)],
    2: [(-1, -1), (1, 1)],
    3: [(-1, -1), (0, 0), (1, 1)],
    4: [(-1, -1), (1, -1), (-1, 1), (1, 1)],
    5: [(-1, -1), (1, -1), (0, 0), (-1, 1), (1, 1)],
    6: [(-1, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (1, 1)],
}


@register(
    "fine",
    ("one", "two", "three", "four", "five", "six"),
    "fine-grained classes: dice faces that differ only in their pips (3-4 px at 256)",
    "easy despite the small pips (measured: fast mAP50 0.99 after 13 epochs)",
    negatives=0.05,
)
def fine(rng: np.random.Generator, size: int) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    s = size / 256
    scene = Scene(background(rng, size, photo=0.5, contrast=0.8))
    n = 0 if rng.random() < TASKS["fine"].negatives else int(rng.integers(1, 7))
    for _, cx, cy, r in scatter(rng, size, range(n), (12, 20), s, max_overlap=0.05, pad=1.4):  # r: half side
        angle = rng.uniform(-0.5, 0.5)
        body, pip = ((235, 230, 220), (20, 20, 20)) if rng.random() < 0.7 else ((180, 30, 30), (245, 245, 245))
        face = int(rng.integers(1, 7))
        pts = rotate([(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)], cx, cy, angle)
        scene.polygon(pts, body, face - 1, outline=(60, 60, 60))
        pr, step = 0.17 * r, 0.52 * r
        for px, py in rotate([(cx + u * step, cy + v * step) for u, v in DIE_PIPS[face]], cx, cy, angle):
            scene.detail(ellipse=(px - pr, py - pr, px + pr, py + pr), fill=pip)
    boxes, cls = scene.boxes()
    return finish(scene.image, rng, blur=0.4), boxes, cls


@register(
    "clutter",
    ("star", "cross", "ring"),
    "clutter with unlabelled look-alike distractors, class imbalance (70/22/8) and 25% negatives",
    "hardest (measured: fast mAP50 0.17 after 10 epochs, 0.77 after 30)",
    negatives=0.25,
)
def clutter(rng: np.random.Generator, size: int) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    s = size / 256
    scene = Scene(background(rng, size, photo=0.8))
    negative = rng.random() < TASKS["clutter"].negatives
    n_obj = 0 if negative else int(rng.integers(1, 6))
    n_dis = int(rng.integers(4, 13))
    items = [(True, i) for i in range(n_obj)] + [(False, i) for i in range(n_dis)]
    order = rng.permutation(len(items))
    for j, cx, cy, r in scatter(rng, size, order, (10, 26), s, max_overlap=0.25):
        labelled = items[j][0]
        color = random_color(rng, 0.05, 1.0)
        if labelled:
            cls = int(rng.choice(3, p=[0.70, 0.22, 0.08]))
            if cls == 0:
                scene.polygon(star(cx, cy, r, 5, rng.uniform(0, 2 * math.pi)), color, 0)
            elif cls == 1:
                scene.polygon(cross(cx, cy, r, rng.uniform(-0.15, 0.15)), color, 1)
            else:
                scene.ellipse((cx - r, cy - r, cx + r, cy + r), None, 2, outline=color, width=max(2, round(0.3 * r)))
        else:
            kind = int(rng.integers(4))
            if kind == 0:  # stars with the wrong number of points
                scene.polygon(star(cx, cy, r, int(rng.choice([4, 6, 7])), rng.uniform(0, 2 * math.pi)), color, None)
            elif kind == 1:  # an X: a cross turned by 45 degrees
                scene.polygon(cross(cx, cy, r, math.pi / 4 + rng.uniform(-0.15, 0.15)), color, None)
            elif kind == 2:  # a filled disc, not a ring
                scene.ellipse((cx - r, cy - r, cx + r, cy + r), color, None)
            else:
                scene.polygon(regular_polygon(cx, cy, r, int(rng.integers(5, 9)), rng.uniform(0, 6.3)), color, None)
    scene.unlabeled_lines(rng, int(rng.integers(0, 4)), random_color(rng), max(1, round(2 * s)))
    boxes, cls = scene.boxes(min_visible=0.3)
    return finish(scene.image, rng), boxes, cls
