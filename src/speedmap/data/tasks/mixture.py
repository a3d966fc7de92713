"""``mixture``: the generated scenes `speedmap pretrain` trains on, wider than any built-in task.

Sixteen shape classes, each drawn filled, outlined or two-toned, stretched and turned, from 3 to 70 px in
radius (at 256 px), zero to forty per scene, overlapping up to half, among unlabelled look-alike blobs and
scribbles, on backgrounds from flat noise to photographic crops, with varied blur and sensor noise. It is
not one of the study's tasks (:data:`speedmap.data.tasks.builtin.TASKS`): it never appears in a study, and
it shares no scene with the tasks the study measures.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from speedmap.data.tasks.builtin import Task
from speedmap.data.tasks.canvas import Scene, background, cross, finish, random_color, regular_polygon, star

MIXTURE_CLASSES = (
    "circle",
    "triangle",
    "square",
    "pentagon",
    "hexagon",
    "octagon",
    "star4",
    "star5",
    "star7",
    "cross",
    "ring",
    "bar",
    "diamond",
    "arrow",
    "crescent",
    "dotted",
)
MAX_OBJECTS = 40


def _stretch(pts: list[tuple[float, float]], cx: float, cy: float, aspect: float, angle: float) -> list:
    """Scale ``pts`` by ``aspect`` along the direction ``angle`` through (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    out = []
    for x, y in pts:
        u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
        u *= aspect
        out.append((cx + u * c - v * s, cy + u * s + v * c))
    return out


def _outline(kind: int, cx: float, cy: float, r: float, a: float) -> list[tuple[float, float]]:
    """The polygon of a shape class (all but ring and crescent, which are drawn as ellipses)."""
    sides = {1: 3, 2: 4, 3: 5, 4: 6, 5: 8, 12: 4}
    if kind in sides:
        return regular_polygon(cx, cy, r, sides[kind], a + (math.pi / 4 if kind == 2 else 0.0))
    if kind in (6, 7, 8):
        return star(cx, cy, r, {6: 4, 7: 5, 8: 7}[kind], a)
    if kind == 9:
        return cross(cx, cy, r, a)
    if kind == 11:  # a bar: a long thin rectangle
        return _stretch(regular_polygon(cx, cy, r * 0.5, 4, math.pi / 4), cx, cy, 3.5, a)
    if kind == 13:  # an arrow
        local = [(-1, -0.2), (0.3, -0.2), (0.3, -0.55), (1, 0), (0.3, 0.55), (0.3, 0.2), (-1, 0.2)]
        c, s = math.cos(a), math.sin(a)
        return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in local]
    return regular_polygon(cx, cy, r, 24, a)  # circle (0) and dotted (15) as fine polygons


def _draw(scene: Scene, rng: np.random.Generator, kind: int, cx: float, cy: float, r: float, label: int | None) -> None:
    color = random_color(rng, 0.0, 1.0)
    outline = random_color(rng) if rng.random() < 0.4 else None  # filled, or with a contrasting outline
    width = max(1, round(r * rng.uniform(0.1, 0.25)))
    if kind == 10:  # ring
        scene.ellipse((cx - r, cy - r, cx + r, cy + r), None, label, outline=color, width=max(2, width))
        return
    if kind == 14:  # crescent: a disc with a bite of the background colour
        scene.ellipse((cx - r, cy - r, cx + r, cy + r), color, label)
        a = rng.uniform(0, 2 * math.pi)
        k, bx, by = 0.8 * r, cx + 0.45 * r * math.cos(a), cy + 0.45 * r * math.sin(a)
        scene.detail(ellipse=(bx - k, by - k, bx + k, by + k), fill=random_color(rng))
        return
    pts = _outline(kind, cx, cy, r, rng.uniform(0, 2 * math.pi))
    if kind not in (0, 11, 15) and rng.random() < 0.4:
        pts = _stretch(pts, cx, cy, rng.uniform(0.6, 1.6), rng.uniform(0, math.pi))
    scene.polygon(pts, color, label, outline=outline, width=width)
    if kind == 15:  # dotted: a disc with dots
        pip = random_color(rng)
        for px, py in regular_polygon(cx, cy, 0.55 * r, int(rng.integers(3, 7)), rng.uniform(0, 6.3)):
            q = 0.16 * r
            scene.detail(ellipse=(px - q, py - q, px + q, py + q), fill=pip)


def mixture(rng: np.random.Generator, size: int) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    s = size / 256
    scene = Scene(background(rng, size, photo=float(rng.uniform(0, 1)), contrast=float(rng.uniform(0.4, 1.2))))
    n = 0 if rng.random() < 0.05 else int(rng.integers(1, MAX_OBJECTS + 1))
    # one scene's objects share a scale regime (tiny, small, mixed or large): as in photographs
    regime = int(rng.integers(4))
    lo, hi = [(3, 8), (6, 20), (3, 70), (20, 70)][regime]
    n = min(n, 8) if regime == 3 else n  # large objects: few fit
    overlap = float(rng.uniform(0, 0.5))
    taken: list[tuple[float, float, float]] = []
    for _ in range(n + int(rng.integers(0, 12))):
        r = math.exp(rng.uniform(math.log(lo), math.log(hi))) * s
        labelled = len(scene.labels) < n and rng.random() < 0.8
        for _try in range(20):
            cx, cy = rng.uniform(r * 0.5, size - r * 0.5, 2)
            if all(math.hypot(cx - x, cy - y) >= (r + q) - overlap * 2 * min(r, q) for x, y, q in taken):
                break
        else:
            continue
        taken.append((float(cx), float(cy), r))
        kind = int(rng.integers(len(MIXTURE_CLASSES)))
        if labelled:
            _draw(scene, rng, kind, float(cx), float(cy), r, kind)
        else:  # an unlabelled blob: an irregular polygon
            pts = regular_polygon(cx, cy, r, int(rng.integers(5, 12)), rng.uniform(0, 6.3))
            pts = [(x + rng.normal(0, 0.25 * r), y + rng.normal(0, 0.25 * r)) for x, y in pts]
            scene.polygon(pts, random_color(rng), None)
    scene.unlabeled_lines(rng, int(rng.integers(0, 5)), random_color(rng), max(1, round(2 * s)))
    boxes, cls = scene.boxes(min_visible=0.3)
    return finish(scene.image, rng, blur=float(rng.uniform(0, 0.8)), noise=float(rng.uniform(0, 8))), boxes, cls


PRETRAIN_TASKS: dict[str, Task] = {
    "mixture": Task(
        "mixture",
        MIXTURE_CLASSES,
        "pretraining: 16 shape classes at every scale, style, density and background",
        "not a benchmark task",
        mixture,
        negatives=0.05,
    )
}
