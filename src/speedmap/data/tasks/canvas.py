"""Drawing primitives for the built-in tasks: backgrounds, shapes, and exact visible boxes.

Backgrounds mix procedural value noise with crops of images that ship inside installed packages
(matplotlib's sample data: a photograph and two elevation maps rendered with hill shading).
Objects are painted in order onto the image and onto an id mask, so each label's box is the box of
its *visible* pixels and occlusion is measured, not guessed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from statistics import NormalDist
from typing import TypeVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

T = TypeVar("T")
UNLABELED = 255  # mask value of distractors: they occlude labels but are not objects
# Standard normal quantiles at the centres of 256 equal-probability bins.
_NORMAL_QUANTILES = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)])


@lru_cache(maxsize=1)
def sample_textures() -> tuple[np.ndarray, ...]:
    """RGB textures from matplotlib's bundled sample data; empty if it is not available."""
    out: list[np.ndarray] = []
    try:
        import matplotlib
        from matplotlib import cbook, colors

        def load(name: str) -> str:
            return str(cbook.get_sample_data(name, asfileobj=False))

        with Image.open(load("grace_hopper.jpg")) as im:
            out.append(np.asarray(im.convert("RGB")))
        light = colors.LightSource(azdeg=315, altdeg=45)
        dem = np.load(load("jacksboro_fault_dem.npz"))["elevation"].astype(np.float64)
        rgb = light.shade(dem, cmap=matplotlib.colormaps["gist_earth"], blend_mode="soft", vert_exag=0.05)
        out.append((rgb[..., :3] * 255).astype(np.uint8))
        topo = np.load(load("topobathy.npz"))["topo"].astype(np.float64)
        rgb = light.shade(topo, cmap=matplotlib.colormaps["terrain"], blend_mode="overlay", vert_exag=0.01)
        big = Image.fromarray((rgb[..., :3] * 255).astype(np.uint8)).resize((480, 364), Image.BICUBIC)
        out.append(np.asarray(big))
    except Exception:  # sample data is optional: procedural backgrounds still work
        return tuple()
    return tuple(out)


def value_noise(rng: np.random.Generator, size: int, octaves: Sequence[int] = (3, 7, 17)) -> np.ndarray:
    """Smooth colour noise, ``size x size x 3`` float in [0, 1]."""
    acc = np.zeros((size, size, 3), dtype=np.float32)
    weight = 0.0
    for k, cells in enumerate(octaves):
        grid = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
        up = np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), dtype=np.float32) / 255
        w = 0.5**k
        acc += w * up
        weight += w
    return acc / weight


def background(rng: np.random.Generator, size: int, photo: float = 0.5, contrast: float = 1.0) -> Image.Image:
    """A textured background: a sample-image crop (probability ``photo``) or value noise."""
    textures = sample_textures()
    if textures and rng.random() < photo:
        tex = textures[int(rng.integers(len(textures)))]
        h, w = tex.shape[:2]
        side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(tex[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
        arr = np.asarray(crop, dtype=np.float32) / 255
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        arr = arr * rng.uniform(0.7, 1.2, size=3).astype(np.float32)  # colour jitter
    else:
        base = rng.random(3).astype(np.float32)
        arr = base * 0.6 + 0.4 * value_noise(rng, size)
    mean = arr.mean()
    arr = mean + (arr - mean) * contrast
    return Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8))


def regular_polygon(cx: float, cy: float, r: float, n: int, angle: float) -> list[tuple[float, float]]:
    return [
        (cx + r * math.cos(angle + 2 * math.pi * k / n), cy + r * math.sin(angle + 2 * math.pi * k / n))
        for k in range(n)
    ]


def star(cx: float, cy: float, r: float, points: int, angle: float, inner: float = 0.45) -> list[tuple[float, float]]:
    pts = []
    for k in range(2 * points):
        rad = r if k % 2 == 0 else r * inner
        a = angle + math.pi * k / points
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def cross(cx: float, cy: float, r: float, angle: float, arm: float = 0.33) -> list[tuple[float, float]]:
    """A plus sign of half-size ``r`` and arm half-width ``arm * r``, rotated by ``angle``."""
    a = arm * r
    local = [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r), (-a, a), (-r, a), (-r, -a), (-a, -a)]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in local]


def rotate(points: Sequence[tuple[float, float]], cx: float, cy: float, angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def random_color(rng: np.random.Generator, low: float = 0.0, high: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.uniform(low * 255, high * 255, size=3))  # type: ignore[return-value]


@dataclass
class Scene:
    """An image being painted and the id mask that tracks which object each pixel shows."""

    image: Image.Image
    mask: Image.Image = field(init=False)
    labels: list[int] = field(default_factory=list)
    full_area: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mask = Image.new("L", self.image.size, 0)
        self.draw = ImageDraw.Draw(self.image)
        self.mdraw = ImageDraw.Draw(self.mask)

    def _begin(self, label: int | None) -> int:
        if label is None:
            return UNLABELED
        if len(self.labels) >= UNLABELED - 1:
            raise ValueError("too many labelled objects in one scene")
        self.labels.append(label)
        return len(self.labels)

    def _end(self, oid: int, bounds: tuple[float, float, float, float]) -> None:
        if oid == UNLABELED:
            return
        x0, y0, x1, y1 = self._clip(bounds)
        region = np.asarray(self.mask.crop((x0, y0, x1, y1)))
        self.full_area.append(int(np.count_nonzero(region == oid)))

    def _clip(self, b: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        w, h = self.image.size
        return (
            max(0, math.floor(b[0]) - 1),
            max(0, math.floor(b[1]) - 1),
            min(w, math.ceil(b[2]) + 2),
            min(h, math.ceil(b[3]) + 2),
        )

    def polygon(
        self,
        pts: Sequence[tuple[float, float]],
        fill: tuple[int, int, int],
        label: int | None,
        outline: tuple[int, int, int] | None = None,
        width: int = 1,
    ) -> None:
        oid = self._begin(label)
        self.draw.polygon(pts, fill=fill, outline=outline, width=width if outline else 0)
        self.mdraw.polygon(pts, fill=oid, outline=oid, width=width if outline else 0)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        self._end(oid, (min(xs), min(ys), max(xs), max(ys)))

    def ellipse(
        self,
        box: tuple[float, float, float, float],
        fill: tuple[int, int, int] | None,
        label: int | None,
        outline: tuple[int, int, int] | None = None,
        width: int = 1,
    ) -> None:
        oid = self._begin(label)
        self.draw.ellipse(box, fill=fill, outline=outline, width=width)
        self.mdraw.ellipse(box, fill=oid if fill is not None else None, outline=oid if outline else None, width=width)
        self._end(oid, box)

    def detail(
        self,
        pts: Sequence[tuple[float, float]] | None = None,
        ellipse: tuple[float, float, float, float] | None = None,
        fill: tuple[int, int, int] = (0, 0, 0),
    ) -> None:
        """Paint a detail that belongs to the last object (pips on a die): image only, not the mask."""
        if pts is not None:
            self.draw.polygon(pts, fill=fill)
        if ellipse is not None:
            self.draw.ellipse(ellipse, fill=fill)

    def unlabeled_lines(self, rng: np.random.Generator, n: int, color: tuple[int, int, int], width: int) -> None:
        """Scribbles that occlude whatever is below them."""
        w, h = self.image.size
        for _ in range(n):
            pts = [tuple(float(v) for v in rng.uniform(0, [w, h])) for _ in range(int(rng.integers(2, 5)))]
            self.draw.line(pts, fill=color, width=width)
            self.mdraw.line(pts, fill=UNLABELED, width=width)

    def boxes(self, min_visible: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Visible ``xyxy`` boxes and class ids of labelled objects at least ``min_visible`` visible."""
        mask = np.asarray(self.mask)
        out, cls = [], []
        for k, label in enumerate(self.labels):
            ys, xs = np.nonzero(mask == k + 1)
            if len(xs) == 0 or self.full_area[k] == 0 or len(xs) / self.full_area[k] < min_visible:
                continue
            out.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
            cls.append(label)
        return np.asarray(out, dtype=np.float64).reshape(-1, 4), np.asarray(cls, dtype=np.int64)


def finish(image: Image.Image, rng: np.random.Generator, blur: float = 0.5, noise: float = 4.0) -> Image.Image:
    """Camera-like finish: a little optical blur (3x3, strength ``blur`` in [0, 1]) and sensor noise."""
    if blur > 0:
        g = np.array([1, 2, 1, 2, 4, 2, 1, 2, 1], dtype=np.float64) / 16 * blur
        g[4] += 1 - blur
        image = image.filter(ImageFilter.Kernel((3, 3), [float(v) for v in g * 256], scale=256))
    if noise > 0:
        arr = np.asarray(image, dtype=np.int16)
        # Gaussian noise via a quantile table: uniform bytes are far cheaper to draw than normals.
        arr = (
            arr + np.round(noise * _NORMAL_QUANTILES).astype(np.int16)[rng.integers(0, 256, arr.shape, dtype=np.uint8)]
        )
        image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return image


def place(
    rng: np.random.Generator,
    taken: list[tuple[float, float, float]],
    size: int,
    r: float,
    max_overlap: float,
    tries: int = 30,
) -> tuple[float, float] | None:
    """A centre for a radius-``r`` object inside the image whose overlap with ``taken`` circles stays
    under ``max_overlap`` (fraction of the smaller radius); ``None`` if none found."""
    for _ in range(tries):
        cx, cy = rng.uniform(r, size - r, size=2)
        if all(math.hypot(cx - x, cy - y) >= (r + q) - max_overlap * 2 * min(r, q) for x, y, q in taken):
            return float(cx), float(cy)
    return None


def scatter(
    rng: np.random.Generator,
    size: int,
    items: Iterable[T],
    radius: tuple[float, float],
    scale: float,
    max_overlap: float,
    pad: float = 1.0,
) -> Iterator[tuple[T, float, float, float]]:
    """Give each item a centre and a radius (uniform in ``radius``, times ``scale``); an item that
    finds no room is skipped. ``pad`` enlarges the footprint used for spacing (e.g. rotated squares)."""
    taken: list[tuple[float, float, float]] = []
    for item in items:
        r = rng.uniform(*radius) * scale
        c = place(rng, taken, size, r * pad, max_overlap)
        if c is None:
            continue
        taken.append((*c, r * pad))
        yield item, c[0], c[1], r
