"""Unit tests of NMS and postprocessing (speedmap.postprocess), plus the box decode before it
(Head.decode) and the mapping back to the original image after it (Letterbox), with hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from speedmap.models.head import Head
from speedmap.postprocess import MAX_CANDIDATES, nms, postprocess
from speedmap.preprocess import PAD_VALUE, Letterbox, letterbox


def boxes_of(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def pred_of(*rows: tuple[float, ...]) -> np.ndarray:
    """Rows ``(x1, y1, x2, y2, p_class0, p_class1, ...)`` as postprocess takes them."""
    return np.asarray(rows, dtype=np.float32)


# --- nms --------------------------------------------------------------------------------------------------------------


def test_nms_keeps_indices_by_decreasing_score() -> None:
    # three disjoint boxes: nothing is suppressed, only reordered
    boxes = boxes_of((0, 0, 1, 1), (10, 10, 11, 11), (20, 20, 21, 21))
    keep = nms(boxes, np.array([0.2, 0.9, 0.5], dtype=np.float32), 0.5)
    assert keep.tolist() == [1, 2, 0]
    assert keep.dtype == np.int64


def test_nms_tied_scores_keep_the_lower_index_first() -> None:
    # identical boxes, identical scores: the stable sort puts index 0 first, and it suppresses index 1 (IoU 1)
    boxes = boxes_of((0, 0, 10, 10), (0, 0, 10, 10))
    assert nms(boxes, np.array([0.7, 0.7], dtype=np.float32), 0.5).tolist() == [0]
    # disjoint boxes with tied scores keep their input order among the tie: [1] first (0.9), then 0 before 2
    boxes = boxes_of((0, 0, 1, 1), (10, 10, 11, 11), (20, 20, 21, 21))
    assert nms(boxes, np.array([0.5, 0.9, 0.5], dtype=np.float32), 0.5).tolist() == [1, 0, 2]


@pytest.mark.parametrize(("iou", "kept"), [(0.5, [0, 1]), (0.5001, [0, 1]), (0.4999, [0])])
def test_nms_iou_exactly_at_the_threshold_is_kept(iou: float, kept: list[int]) -> None:
    # A = (0,0,10,10) area 100, B = (0,0,10,5) area 50, inside A: inter 50, union 100 + 50 - 50 = 100, IoU 0.5.
    # Suppression is "IoU > threshold": at 0.5 B survives, just under 0.5 it goes.
    boxes = boxes_of((0, 0, 10, 10), (0, 0, 10, 5))
    assert nms(boxes, np.array([0.9, 0.8], dtype=np.float32), iou).tolist() == kept


def test_nms_suppression_is_greedy_not_transitive() -> None:
    # A=(0,0,10,10), B=(5,0,15,10), C=(10,0,20,10), all area 100, scores A > B > C.
    # IoU(A,B) = 50 / 150 = 1/3, IoU(B,C) = 1/3, IoU(A,C) = 0 (they only touch).
    # threshold 0.3: A suppresses B; C is compared with A only (B is gone) and survives.
    boxes = boxes_of((0, 0, 10, 10), (5, 0, 15, 10), (10, 0, 20, 10))
    assert nms(boxes, np.array([0.9, 0.8, 0.7], dtype=np.float32), 0.3).tolist() == [0, 2]
    # threshold 0.34 (> 1/3): nothing is suppressed
    assert nms(boxes, np.array([0.9, 0.8, 0.7], dtype=np.float32), 0.34).tolist() == [0, 1, 2]


def test_nms_empty_input() -> None:
    keep = nms(np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.float32), 0.5)
    assert keep.shape == (0,)
    assert keep.dtype == np.int64


# --- postprocess: filtering -------------------------------------------------------------------------------------------


def test_postprocess_takes_each_rows_best_class_and_its_probability() -> None:
    pred = pred_of((0, 0, 10, 10, 0.3, 0.6), (20, 20, 30, 30, 0.8, 0.1))
    det = postprocess(pred, conf=0.25)
    # best first: row 1 (class 0, 0.8), then row 0 (class 1, 0.6)
    np.testing.assert_array_equal(det.xyxy, [[20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(det.confidence, [0.8, 0.6])
    assert det.class_id.tolist() == [0, 1]


def test_postprocess_class_tie_takes_the_first_class() -> None:
    det = postprocess(pred_of((0, 0, 10, 10, 0.5, 0.5)), conf=0.25)
    assert det.class_id.tolist() == [0]


def test_postprocess_confidence_threshold_is_inclusive() -> None:
    # scores 0.5 (== conf, kept), 0.49 (dropped), 0.75 (kept); disjoint boxes so NMS removes nothing
    pred = pred_of((0, 0, 1, 1, 0.5), (10, 10, 11, 11, 0.49), (20, 20, 21, 21, 0.75))
    det = postprocess(pred, conf=0.5)
    np.testing.assert_allclose(det.confidence, [0.75, 0.5])
    np.testing.assert_array_equal(det.xyxy, [[20, 20, 21, 21], [0, 0, 1, 1]])


def test_postprocess_class_filter() -> None:
    pred = pred_of((0, 0, 1, 1, 0.9, 0.0, 0.0), (10, 10, 11, 11, 0.0, 0.8, 0.0), (20, 20, 21, 21, 0.0, 0.0, 0.7))
    assert postprocess(pred, conf=0.25, classes=[2, 0]).class_id.tolist() == [0, 2]
    assert len(postprocess(pred, conf=0.25, classes=[])) == 0


@pytest.mark.parametrize("pred", [np.zeros((0, 6), dtype=np.float32), pred_of((0, 0, 10, 10, 0.1, 0.2))])
def test_postprocess_nothing_left(pred: np.ndarray) -> None:
    """Empty input, and input whose every score is under ``conf``."""
    det = postprocess(pred, conf=0.25)
    assert len(det) == 0
    assert det.xyxy.shape == (0, 4)
    assert det.confidence.shape == (0,)
    assert det.class_id.shape == (0,)


# --- postprocess: NMS per class, max_det ------------------------------------------------------------------------------


def test_postprocess_class_aware_keeps_overlapping_boxes_of_different_classes() -> None:
    # (0,0,10,10) and (1,0,11,10): inter 9*10 = 90, union 100 + 100 - 90 = 110, IoU 0.82 > 0.45
    pred = pred_of((0, 0, 10, 10, 0.9, 0.0), (1, 0, 11, 10, 0.0, 0.8))
    aware = postprocess(pred, conf=0.25, iou=0.45)
    assert aware.class_id.tolist() == [0, 1]
    np.testing.assert_array_equal(aware.xyxy, [[0, 0, 10, 10], [1, 0, 11, 10]])  # the shift never leaks out
    agnostic = postprocess(pred, conf=0.25, iou=0.45, agnostic=True)
    assert agnostic.class_id.tolist() == [0]
    np.testing.assert_allclose(agnostic.confidence, [0.9])


def test_postprocess_same_class_overlap_is_suppressed_when_class_aware() -> None:
    pred = pred_of((0, 0, 10, 10, 0.0, 0.9), (1, 0, 11, 10, 0.0, 0.8))  # IoU 0.82, both class 1
    det = postprocess(pred, conf=0.25, iou=0.45)
    assert det.class_id.tolist() == [1]
    np.testing.assert_allclose(det.confidence, [0.9])


def test_postprocess_class_aware_with_negative_coordinates() -> None:
    # class 0 (0,0,10,10); class 1 (-10,-10,1,1) overlaps it by 1 pixel: IoU 1 / (100 + 121 - 1) = 0.0045.
    # A shift of class * (max|coord| + 1) = 11 put class 1 at (1,1,12,12), IoU 81 / 140 = 0.58 with class 0, and
    # dropped it although the classes differ; class * (2 max|coord| + 1) keeps each class's range apart.
    pred = pred_of((0, 0, 10, 10, 0.9, 0.0), (-10, -10, 1, 1, 0.0, 0.8))
    assert postprocess(pred, conf=0.25, iou=0.45).class_id.tolist() == [0, 1]


def test_postprocess_max_det_keeps_the_highest_scores() -> None:
    # five disjoint boxes, scores in scrambled order; max_det 2 keeps 0.9 and 0.8
    scores = [0.3, 0.9, 0.5, 0.8, 0.4]
    pred = pred_of(*((10 * i, 0, 10 * i + 5, 5, s) for i, s in enumerate(scores)))
    det = postprocess(pred, conf=0.25, max_det=2)
    np.testing.assert_allclose(det.confidence, [0.9, 0.8])
    np.testing.assert_array_equal(det.xyxy, [[10, 0, 15, 5], [30, 0, 35, 5]])
    assert len(postprocess(pred, conf=0.25, max_det=0)) == 0


def test_postprocess_max_det_counts_after_nms() -> None:
    # the two best boxes overlap (IoU 0.82); NMS removes 0.8 first, so max_det 2 keeps 0.9 and 0.7
    pred = pred_of((0, 0, 10, 10, 0.9), (1, 0, 11, 10, 0.8), (50, 50, 60, 60, 0.7))
    np.testing.assert_allclose(postprocess(pred, conf=0.25, max_det=2).confidence, [0.9, 0.7])


def test_postprocess_caps_candidates_at_the_highest_scores() -> None:
    # MAX_CANDIDATES + 5 disjoint boxes; the 5 lowest scores are cut before NMS, the rest all survive
    n = MAX_CANDIDATES + 5
    x = np.arange(n, dtype=np.float32) * 2
    scores = np.linspace(0.3, 0.9, n, dtype=np.float32)[::-1].copy()
    pred = np.stack([x, np.zeros(n), x + 1, np.ones(n), scores], 1).astype(np.float32)
    det = postprocess(pred, conf=0.25, max_det=n)
    assert len(det) == MAX_CANDIDATES
    np.testing.assert_allclose(det.confidence, scores[:MAX_CANDIDATES])


# --- the decode before postprocess and the mapping after it -----------------------------------------------------------


def test_head_decode_then_postprocess_then_letterbox_mapping() -> None:
    """A hand-built raw output of a 3-cell grid (one cell per level) through the whole box path."""
    reg_max, nc = 4, 2
    head = Head(nc, (8, 8, 8), reg_max)
    shapes = [(1, 1), (1, 1), (1, 1)]  # cell centres all at (0.5, 0.5) grid units, strides 8, 16, 32
    uniform = [0.0] * reg_max  # softmax 1/4 each: expectation (0+1+2+3)/4 = 1.5
    rising = [math.log(p) for p in (0.1, 0.2, 0.3, 0.4)]  # expectation 0*.1 + 1*.2 + 2*.3 + 3*.4 = 2.0
    falling = [math.log(p) for p in (0.4, 0.3, 0.2, 0.1)]  # expectation .3 + 2*.2 + 3*.1 = 1.0
    raw = torch.tensor(
        [
            [
                # cell 0, stride 8: l=2.0, t=1.5, r=1.0, b=1.5; class logits 0 -> 0.5 and log 3 -> 0.75
                rising + uniform + falling + uniform + [0.0, math.log(3.0)],
                # cell 1, stride 16: all sides 1.5; class 0 sigmoid(-log 3) = 1/(1+3) = 0.25, under conf 0.3
                uniform * 4 + [-math.log(3.0), -20.0],
                # cell 2, stride 32: both classes ~0
                uniform * 4 + [-20.0, -20.0],
            ]
        ]
    )
    out = head.decode(raw, shapes)[0]
    # cell 0: (0.5 - 2.0, 0.5 - 1.5, 0.5 + 1.0, 0.5 + 1.5) * 8 = (-12, -8, 12, 16)
    # cell 1: (0.5 - 1.5, 0.5 - 1.5, 0.5 + 1.5, 0.5 + 1.5) * 16 = (-16, -16, 32, 32)
    torch.testing.assert_close(out[0], torch.tensor([-12.0, -8.0, 12.0, 16.0, 0.5, 0.75]))
    torch.testing.assert_close(out[1, :5], torch.tensor([-16.0, -16.0, 32.0, 32.0, 0.25]))

    det = postprocess(out.numpy(), conf=0.3)
    assert det.class_id.tolist() == [1]
    np.testing.assert_allclose(det.confidence, [0.75], rtol=1e-6)
    np.testing.assert_allclose(det.xyxy, [[-12, -8, 12, 16]], atol=1e-5)

    # a 40x20 (w x h) image letterboxed to 32: scale min(32/20, 32/40) = 0.8, resized 32x16, pad left 0, top 8.
    # x: -12/0.8 = -15 -> clipped 0, 12/0.8 = 15; y: (-8 - 8)/0.8 = -20 -> clipped 0, (16 - 8)/0.8 = 10
    box = Letterbox(0.8, (0, 8), (20, 40))
    np.testing.assert_allclose(box.to_original(det.xyxy), [[0, 0, 15, 10]], atol=1e-5)


def test_letterbox_mapping_round_numbers() -> None:
    sq, box = letterbox(np.zeros((20, 40, 3), dtype=np.uint8), 32)
    # scale 0.8, pad (0, 8) as above: rows 0-7 and 24-31 are padding, rows 8-23 the image
    assert (box.scale, box.pad) == (0.8, (0, 8))
    assert sq.shape == (32, 32, 3)
    assert (sq[:8] == PAD_VALUE).all() and (sq[24:] == PAD_VALUE).all() and (sq[8:24] == 0).all()
    # (8, 12, 24, 20) -> x 8/0.8 = 10, 24/0.8 = 30; y (12-8)/0.8 = 5, (20-8)/0.8 = 15
    # (30, 30, 40, 40) -> x 37.5, 50 -> clipped to 40 (width); y 27.5, 40 -> clipped to 20 (height)
    mapped = box.to_original(boxes_of((8, 12, 24, 20), (30, 30, 40, 40)))
    np.testing.assert_allclose(mapped, [[10, 5, 30, 15], [37.5, 20, 40, 20]], atol=1e-5)
    # a pillarboxed image pads left: 20 wide, 40 high to 32 -> scale 0.8, 16x32, pad (8, 0)
    _, tall = letterbox(np.zeros((40, 20, 3), dtype=np.uint8), 32)
    assert (tall.scale, tall.pad) == (0.8, (8, 0))
    np.testing.assert_allclose(tall.to_original(boxes_of((8, 0, 24, 32))), [[0, 0, 20, 40]], atol=1e-5)
