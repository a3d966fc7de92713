"""Unit tests of the training augmentations with hand-placed images, boxes and random draws."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import pytest

from speedmap.preprocess import PAD_VALUE
from speedmap.train.augment import Sample, hflip, hsv_jitter, mosaic, random_affine


class FixedDraws:
    """Stands in for ``np.random.Generator``: ``uniform`` returns the next scripted values in order."""

    def __init__(self, *draws: float | Sequence[float]) -> None:
        self.draws = list(draws)

    def uniform(self, low: float, high: float, size: int | None = None) -> float | np.ndarray:
        value = self.draws.pop(0)
        out = np.asarray(value, dtype=np.float64)
        assert out.shape == (() if size is None else (size,)), "the test scripted the wrong number of draws"
        return float(out) if size is None else out


def rng_of(*draws: float | Sequence[float]) -> np.random.Generator:
    return cast(np.random.Generator, FixedDraws(*draws))


def sample(img: np.ndarray, *boxes: tuple[float, float, float, float], classes: Sequence[int] = ()) -> Sample:
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    c = np.asarray(classes if classes else [0] * len(b), dtype=np.int64)
    return img, b, c


def gradient(h: int, w: int) -> np.ndarray:
    """A uint8 RGB image whose every pixel is distinct (value r * w + c in channel 0)."""
    v = np.arange(h * w, dtype=np.uint8).reshape(h, w)
    return np.stack([v, v // 2, 255 - v], -1)


# --- hflip ------------------------------------------------------------------------------------------------------------


def test_hflip_mirrors_x_exactly() -> None:
    img = gradient(4, 6)
    # width 6: x' = 6 - x, with x1/x2 swapped: (1,0,3,2) -> (6-3, 0, 6-1, 2) = (3,0,5,2); (0,1,6,3) stays
    out, boxes, classes = hflip(sample(img, (1, 0, 3, 2), (0, 1, 6, 3), classes=[4, 7]))
    np.testing.assert_array_equal(boxes, [[3, 0, 5, 2], [0, 1, 6, 3]])
    assert classes.tolist() == [4, 7]
    np.testing.assert_array_equal(out[:, 0], img[:, 5])
    np.testing.assert_array_equal(out[2, 1], img[2, 4])
    assert out.flags.c_contiguous


def test_hflip_twice_is_identity_and_leaves_the_input_alone() -> None:
    img = gradient(5, 7)
    src = sample(img, (0.5, 1, 2.25, 4), (3, 0, 7, 5))
    before = src[1].copy()
    img2, boxes2, classes2 = hflip(hflip(src))
    np.testing.assert_array_equal(img2, img)
    np.testing.assert_array_equal(boxes2, before)
    np.testing.assert_array_equal(src[1], before)  # the input boxes are not modified in place
    assert classes2.tolist() == [0, 0]


def test_hflip_without_boxes() -> None:
    out, boxes, classes = hflip(sample(gradient(2, 3)))
    assert out.shape == (2, 3, 3) and boxes.shape == (0, 4) and classes.shape == (0,)


# --- mosaic -----------------------------------------------------------------------------------------------------------


def test_mosaic_places_four_images_and_shifts_their_boxes() -> None:
    # size 8, canvas 16x16, centre drawn as (6.7, 10.2) -> (6, 10). Every sample is 8x8 with box (1,1,3,3).
    #   k=0 top left:     canvas x 0..6,  y 2..10  <- sample x 2..8, y 0..8; shift (0-2, 2-0) = (-2, +2)
    #   k=1 top right:    canvas x 6..14, y 2..10  <- sample x 0..8, y 0..8; shift (6, 2)
    #   k=2 bottom left:  canvas x 0..6,  y 10..16 <- sample x 2..8, y 0..6; shift (-2, 10)
    #   k=3 bottom right: canvas x 6..14, y 10..16 <- sample x 0..8, y 0..6; shift (6, 10)
    # rows 0..2 and columns 14..16 stay padding.
    first = gradient(8, 8)
    samples = [sample(first, (1, 1, 3, 3), classes=[0])]
    samples += [sample(np.full((8, 8, 3), 10 * k, np.uint8), (1, 1, 3, 3), classes=[k]) for k in (1, 2, 3)]
    canvas, boxes, classes = mosaic(samples, 8, rng_of((6.7, 10.2)))
    assert canvas.shape == (16, 16, 3) and canvas.dtype == np.uint8
    np.testing.assert_array_equal(canvas[2:10, 0:6], first[0:8, 2:8])
    assert (canvas[2:10, 6:14] == 10).all()
    assert (canvas[10:16, 0:6] == 20).all()
    assert (canvas[10:16, 6:14] == 30).all()
    assert (canvas[0:2] == PAD_VALUE).all() and (canvas[:, 14:] == PAD_VALUE).all()
    # boxes are shifted, not clipped: sample 0's box starts left of the canvas (x1 = 1 - 2 = -1)
    np.testing.assert_array_equal(boxes, [[-1, 3, 1, 5], [7, 3, 9, 5], [-1, 11, 1, 13], [7, 11, 9, 13]])
    assert classes.tolist() == [0, 1, 2, 3]


def test_mosaic_small_images_sit_against_the_centre() -> None:
    # size 8, centre (8, 8); 4x4 samples: k=0 at x 4..8, y 4..8 (shift 4,4); k=3 at x 8..12, y 8..12 (shift 8,8)
    samples = [sample(np.full((4, 4, 3), 50 + k, np.uint8), (0, 0, 4, 4)) for k in range(4)]
    canvas, boxes, _ = mosaic(samples, 8, rng_of((8.0, 8.0)))
    np.testing.assert_array_equal(boxes, [[4, 4, 8, 8], [8, 4, 12, 8], [4, 8, 8, 12], [8, 8, 12, 12]])
    assert (canvas[4:8, 4:8] == 50).all() and (canvas[8:12, 8:12] == 53).all()
    assert (canvas[:4] == PAD_VALUE).all() and (canvas[12:] == PAD_VALUE).all()


# --- random_affine ----------------------------------------------------------------------------------------------------


def test_random_affine_translation_moves_pixels_and_boxes() -> None:
    # 16x16 in, size 8 out, scale 1, translate draws (0.5, 0.5) * 8 = (4, 4): offset 4 - 1 * 16/2 = -4 on both axes
    img = gradient(16, 16)
    out, boxes, classes = random_affine(
        sample(img, (5, 5, 8, 8), (2, 2, 8, 8), classes=[1, 2]), 8, rng_of(1.0, (0.5, 0.5))
    )
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, img[4:12, 4:12])  # an integer shift is exact
    # (5,5,8,8) - 4 = (1,1,4,4): 3x3, kept;  (2,2,8,8) - 4 = (-2,-2,4,4) -> clipped (0,0,4,4): 16 > 0.1 * 36, kept
    np.testing.assert_array_equal(boxes, [[1, 1, 4, 4], [0, 0, 4, 4]])
    assert boxes.dtype == np.float32
    assert classes.tolist() == [1, 2]


def test_random_affine_scale_about_the_centre() -> None:
    # 16x16 in, size 8 out, scale 0.5, translate (4, 4): offset 4 - 0.5 * 8 = 0 -> boxes halve
    out, boxes, _ = random_affine(sample(gradient(16, 16), (2, 2, 10, 14)), 8, rng_of(0.5, (0.5, 0.5)))
    np.testing.assert_allclose(boxes, [[1, 1, 5, 7]])
    assert out.shape == (8, 8, 3)


def test_random_affine_drops_boxes_that_leave_or_shrink() -> None:
    # same warp as the translation test (x' = x - 4, y' = y - 4, output 8x8); the only kept box is the first
    src = sample(
        gradient(16, 16),
        (5, 5, 9, 9),  # -> (1,1,5,5): kept
        (5, 5, 7, 7),  # -> (1,1,3,3): width 2 is not > 2, dropped
        (0, 0, 5, 5),  # -> (-4,-4,1,1) -> clipped (0,0,1,1): too thin, dropped
        (-36, 4, 9, 14),  # -> (-40,0,5,10) area 450 -> clipped (0,0,5,8) area 40 < 45 (10%), dropped
        (20, 20, 30, 30),  # -> (16,16,26,26) -> clipped (8,8,8,8): outside, dropped
        classes=[0, 1, 2, 3, 4],
    )
    _, boxes, classes = random_affine(src, 8, rng_of(1.0, (0.5, 0.5)))
    np.testing.assert_array_equal(boxes, [[1, 1, 5, 5]])
    assert classes.tolist() == [0]


def test_random_affine_without_boxes() -> None:
    out, boxes, classes = random_affine(sample(gradient(16, 16)), 8, rng_of(1.0, (0.5, 0.5)))
    assert out.shape == (8, 8, 3) and boxes.shape == (0, 4) and classes.shape == (0,)


# --- hsv_jitter -------------------------------------------------------------------------------------------------------


def test_hsv_jitter_value_gain_on_grey_and_red() -> None:
    # draws (0, 0, 0.5): gains (1, 1, 1 + 0.5 * 0.4 = 1.2). Grey has no hue/saturation: 50 -> 60, 100 -> 120,
    # 250 -> 300 clipped to 255. Pure red is (H 0, S 255, V 255): V stays 255 (clipped), red stays red.
    img = np.array([[[50, 50, 50], [100, 100, 100], [250, 250, 250], [255, 0, 0]]], dtype=np.uint8)
    hsv_jitter(img, rng_of((0.0, 0.0, 0.5)))
    np.testing.assert_array_equal(img, [[[60, 60, 60], [120, 120, 120], [255, 255, 255], [255, 0, 0]]])
    # draws (0, 0, -1): value gain 1 - 0.4 = 0.6: red (255,0,0) -> (153,0,0), grey 100 -> 60
    img = np.array([[[255, 0, 0], [100, 100, 100]]], dtype=np.uint8)
    hsv_jitter(img, rng_of((0.0, 0.0, -1.0)))
    np.testing.assert_array_equal(img, [[[153, 0, 0], [60, 60, 60]]])


def test_hsv_jitter_saturation_gain_zero_makes_grey() -> None:
    # s = 1 with draw -1: gain 0 -> saturation 0 -> R = G = B = V = max channel (255 for red, 200 for (200,100,50))
    img = np.array([[[255, 0, 0], [200, 100, 50]]], dtype=np.uint8)
    hsv_jitter(img, rng_of((0.0, -1.0, 0.0)), s=1.0)
    np.testing.assert_array_equal(img, [[[255, 255, 255], [200, 200, 200]]])


def test_hsv_jitter_works_in_place_and_is_reproducible() -> None:
    base = np.random.default_rng(3).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    a, b = base.copy(), base.copy()
    assert hsv_jitter(a, np.random.default_rng(11)) is None
    hsv_jitter(b, np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == base.shape
    assert not np.array_equal(a, base)  # seed 11 draws non-trivial gains


# --- seeded pipeline --------------------------------------------------------------------------------------------------


def pipeline(seed: int, size: int = 32) -> Sample:
    """mosaic -> random_affine -> hsv_jitter -> hflip, as the training data does, on four random samples."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(4):
        h, w = (int(v) for v in rng.integers(8, size + 1, 2))
        xy = rng.uniform(0, 1, (3, 2)) * (w, h)
        wh = rng.uniform(0.1, 0.6, (3, 2)) * (w, h)
        boxes = np.concatenate([xy, np.minimum(xy + wh, (w, h))], 1).astype(np.float32)
        samples.append((rng.integers(0, 256, (h, w, 3), dtype=np.uint8), boxes, rng.integers(0, 5, 3)))
    img, boxes, classes = random_affine(mosaic(samples, size, rng), size, rng)
    hsv_jitter(img, rng)
    return hflip((img, boxes, classes))


def test_same_seed_same_sample() -> None:
    a, b = pipeline(5), pipeline(5)
    assert len(a[1]) > 0  # some boxes survive, so the comparison covers them
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = pipeline(6)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("seed", range(12))
def test_boxes_stay_inside_the_output(seed: int) -> None:
    size = 32
    img, boxes, classes = pipeline(seed, size)
    assert img.shape == (size, size, 3)
    assert len(boxes) == len(classes)
    assert (boxes >= 0).all() and (boxes <= size).all()
    # every kept box is more than 2 pixels on each side
    assert (boxes[:, 2] - boxes[:, 0] > 2).all() and (boxes[:, 3] - boxes[:, 1] > 2).all()
