"""Unit tests of paired IoU/CIoU (speedmap.train.boxops) and of the detection loss's DFL term and totals."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import cast

import pytest
import torch

from speedmap.models.detector import Detector
from speedmap.models.head import STRIDES
from speedmap.train.boxops import box_ciou_pairs, box_iou_pairs
from speedmap.train.loss import DetectionLoss

LOG2, LOG4 = math.log(2.0), math.log(4.0)


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def make_loss(num_classes: int, reg_max: int = 4) -> DetectionLoss:
    """DetectionLoss reads only ``num_classes`` and ``reg_max`` from the model."""
    return DetectionLoss(cast(Detector, SimpleNamespace(num_classes=num_classes, reg_max=reg_max, strides=STRIDES)))


# --- box_iou_pairs ----------------------------------------------------------------------------------------------------


def test_iou_known_pairs() -> None:
    a = t([0, 0, 10, 10], [0, 0, 1, 1], [0, 0, 10, 10], [0, 0, 2, 2], [0, 0, 1, 1])
    b = t([0, 0, 10, 10], [2, 0, 3, 1], [0, 0, 20, 20], [1, 1, 3, 3], [1, 0, 2, 1])
    # identical: 1;  disjoint: 0;  nested: 100 / 400 = 0.25;  partial: inter 1, union 4 + 4 - 1 = 7 -> 1/7;
    # touching along an edge: inter 0 -> 0
    torch.testing.assert_close(box_iou_pairs(a, b), torch.tensor([1.0, 0.0, 0.25, 1 / 7, 0.0]))
    torch.testing.assert_close(box_iou_pairs(b, a), box_iou_pairs(a, b))  # symmetric


def test_iou_degenerate_boxes_are_zero_not_nan() -> None:
    # a point box against itself: 0 / (0 + eps) = 0; an inverted box has area 0
    out = box_iou_pairs(t([5, 5, 5, 5], [10, 10, 0, 0]), t([5, 5, 5, 5], [0, 0, 10, 10]))
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0]))


def test_iou_broadcasts_over_leading_dims() -> None:
    a = t([0, 0, 10, 10]).expand(2, 3, 4)
    b = t([0, 0, 10, 5]).expand(2, 3, 4)  # half of a: 50 / 100
    torch.testing.assert_close(box_iou_pairs(a, b), torch.full((2, 3), 0.5))


# --- box_ciou_pairs ---------------------------------------------------------------------------------------------------


def test_ciou_identical_is_one() -> None:
    a = t([0, 0, 10, 10], [3, 4, 5, 12])
    torch.testing.assert_close(box_ciou_pairs(a, a.clone()), torch.tensor([1.0, 1.0]))


def test_ciou_disjoint_is_minus_the_distance_term() -> None:
    # (0,0,1,1) and (2,0,3,1): IoU 0, same shape (v = 0); centres (0.5,0.5), (2.5,0.5) -> rho^2 = 4;
    # enclosing box 3 x 1 -> c^2 = 9 + 1 = 10; CIoU = 0 - 4/10 = -0.4
    torch.testing.assert_close(box_ciou_pairs(t([0, 0, 1, 1]), t([2, 0, 3, 1])), torch.tensor([-0.4]))


def test_ciou_nested_same_shape() -> None:
    # (0,0,10,10) in (0,0,20,20): IoU 0.25; centres (5,5), (10,10) -> rho^2 = 50; enclosing 20 x 20 -> c^2 = 800
    # v = 0 (both square): CIoU = 0.25 - 50/800 = 0.1875
    torch.testing.assert_close(box_ciou_pairs(t([0, 0, 10, 10]), t([0, 0, 20, 20])), torch.tensor([0.1875]))


def test_ciou_with_aspect_ratio_term() -> None:
    # a = (0,0,4,2): w 4, h 2, centre (2,1);  b = (1,0,3,4): w 2, h 4, centre (2,2)
    # inter (1..3) x (0..2) = 4, union 8 + 8 - 4 = 12 -> IoU 1/3
    # enclosing (0..4) x (0..4): c^2 = 16 + 16 = 32; rho^2 = (2-2)^2 + (2-1)^2 = 1 -> 1/32 = 0.03125
    # v = 4/pi^2 * (atan(2/4) - atan(4/2))^2 = 0.405285 * 0.643501^2 = 0.167826
    # alpha = v / (v - IoU + 1) = 0.167826 / 0.834492 = 0.201111;  v * alpha = 0.033752
    # CIoU = 0.333333 - 0.03125 - 0.033752 = 0.268332
    iou = 1 / 3
    v = 4 / math.pi**2 * (math.atan(0.5) - math.atan(2.0)) ** 2
    expected = iou - 1 / 32 - v * v / (v - iou + 1)
    assert expected == pytest.approx(0.268332, abs=1e-6)
    out = box_ciou_pairs(t([0, 0, 4, 2]), t([1, 0, 3, 4]))
    torch.testing.assert_close(out, torch.tensor([expected]))
    torch.testing.assert_close(box_ciou_pairs(t([1, 0, 3, 4]), t([0, 0, 4, 2])), out)  # symmetric


def test_ciou_gradients_are_finite_for_identical_and_flat_boxes() -> None:
    a = t([0, 0, 10, 10], [0, 5, 10, 5]).requires_grad_()  # the second has height 0
    b = t([0, 0, 10, 10], [0, 0, 10, 10])
    box_ciou_pairs(a, b).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


# --- distribution focal loss ------------------------------------------------------------------------------------------


def test_dfl_on_a_bin_is_the_cross_entropy_of_that_bin() -> None:
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = torch.stack([torch.zeros(4), probs.log(), probs.log()])
    # uniform logits, target 2: left 2 with weight 2 + 1 - 2 = 1 -> CE = log 4
    # softmax = probs, target 1: -log 0.2;  target 0: -log 0.1
    out = DetectionLoss._dfl(logits, torch.tensor([2.0, 1.0, 0.0]))
    torch.testing.assert_close(out, torch.tensor([LOG4, -math.log(0.2), -math.log(0.1)]))


def test_dfl_between_bins_mixes_the_two_neighbours() -> None:
    logits = torch.tensor([0.1, 0.2, 0.3, 0.4]).log()[None].expand(2, 4)
    # 2.25: left 2 weight 0.75, right 3 weight 0.25 -> 0.75 * -log 0.3 + 0.25 * -log 0.4
    #       = 0.75 * 1.203973 + 0.25 * 0.916291 = 1.132052
    # 2.99 (the largest target the loss lets through, reg_max - 1.01): 0.01 * -log 0.3 + 0.99 * -log 0.4
    out = DetectionLoss._dfl(logits, torch.tensor([2.25, 2.99]))
    expected = [0.75 * -math.log(0.3) + 0.25 * -math.log(0.4), 0.01 * -math.log(0.3) + 0.99 * -math.log(0.4)]
    assert expected[0] == pytest.approx(1.132052, abs=1e-6)
    torch.testing.assert_close(out, torch.tensor(expected))


def test_dfl_is_smallest_at_the_two_bin_distribution() -> None:
    # for target 2.25 the best distribution is (0, 0, 0.75, 0.25): loss = its entropy
    # -0.75 log 0.75 - 0.25 log 0.25 = 0.215762 + 0.346574 = 0.562335, below the uniform's log 4 = 1.386294
    best = torch.tensor([[-1e4, -1e4, math.log(0.75), math.log(0.25)]])
    out = DetectionLoss._dfl(best, torch.tensor([2.25]))
    torch.testing.assert_close(out, torch.tensor([0.562335]), atol=1e-6, rtol=0)
    # its gradient is softmax minus the two-bin target: uniform logits give (0.25, 0.25, 0.25 - 0.75, 0.25 - 0.25)
    logits = torch.zeros(1, 4, requires_grad=True)
    DetectionLoss._dfl(logits, torch.tensor([2.25])).sum().backward()
    assert logits.grad is not None
    torch.testing.assert_close(logits.grad, torch.tensor([[0.25, 0.25, -0.5, 0.0]]))


# --- the whole loss ---------------------------------------------------------------------------------------------------

SHAPES = [(1, 1), (1, 1), (1, 1)]  # one cell per level: centre (0.5, 0.5) grid units; (4,4), (8,8), (16,16) pixels


def test_loss_without_targets_is_classification_only() -> None:
    loss_fn = make_loss(num_classes=2)
    raw = torch.zeros(2, 3, 4 * 4 + 2, requires_grad=True)
    total, parts = loss_fn(raw, SHAPES, torch.zeros(0, 6))
    # no foreground: box and DFL are exactly 0; every logit is 0 against target 0: BCE log 2 each,
    # 2 images * 3 cells * 2 classes = 12 * log 2 = 8.317766, over score_sum clamped to 1, times weight 0.5
    torch.testing.assert_close(parts, torch.tensor([0.0, 0.5 * 12 * LOG2, 0.0]))
    torch.testing.assert_close(total, torch.tensor(0.5 * 12 * LOG2 * 2))  # times the batch size 2
    total.backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all()
    assert not raw.grad[..., :16].any()  # the box logits get no gradient without targets


def test_loss_without_targets_is_finite_for_extreme_logits() -> None:
    torch.manual_seed(0)
    raw = torch.randn(1, 3, 4 * 4 + 3) * 50
    total, parts = make_loss(num_classes=3)(raw, SHAPES, torch.zeros(0, 6))
    assert torch.isfinite(total) and torch.isfinite(parts).all()
    assert parts[0] == 0 and parts[2] == 0


def test_loss_with_one_target_by_hand() -> None:
    """One 8x8 box at the origin: only the stride-8 cell (centre (4,4)) lies strictly inside it."""
    loss_fn = make_loss(num_classes=1)
    raw = torch.zeros(1, 3, 4 * 4 + 1)
    total, parts = loss_fn(raw, SHAPES, torch.tensor([[0.0, 0.0, 0.0, 0.0, 8.0, 8.0]]))
    # Uniform distance logits: each side 1.5 grid units -> predicted box (-1,-1,2,2) grid = (-8,-8,16,16) px.
    # Cells: (4,4) inside; (8,8) on the border (excluded); (16,16) outside.
    # IoU with (0,0,8,8): 64 / 576 = 1/9; score sigmoid(0) = 0.5; align = 0.5**0.5 * (1/9)**6 = 1.3306e-6
    # soft target w = align * (1/9) / (align + 1e-9) ~= 1/9 (the eps costs 0.075%); score_sum = max(w, 1) = 1
    align = 0.5**0.5 * (1 / 9) ** 6
    w = align * (1 / 9) / (align + 1e-9)
    # box: target (0,0,1,1) grid, same centre (0.5,0.5) and aspect as the prediction -> CIoU = IoU = 1/9
    loss_box = (1 - 1 / 9) * w
    # cls: BCE of logit 0 is log 2 whatever the target; 3 cells x 1 class
    loss_cls = 3 * LOG2
    # dfl: target distances 0.5 on every side -> 0.5 * CE(bin 0) + 0.5 * CE(bin 1) = log 4 (uniform), mean of 4 sides
    loss_dfl = LOG4 * w
    expected = torch.tensor([7.5 * loss_box, 0.5 * loss_cls, 1.5 * loss_dfl])
    torch.testing.assert_close(parts, expected)
    torch.testing.assert_close(total, expected.sum())


def test_loss_dfl_target_is_clamped_inside_the_bins() -> None:
    # a box far larger than reg_max bins can express: right/bottom distances (100 - 0.5 grid units at stride 8) are
    # clamped to 3 - 1.01 = 2.99, so the DFL indexes bins 2 and 3 and stays finite instead of indexing bin 100
    loss_fn = make_loss(num_classes=1)
    raw = torch.zeros(1, 3, 4 * 4 + 1)
    total, parts = loss_fn(raw, SHAPES, torch.tensor([[0.0, 0.0, 0.0, 0.0, 800.0, 800.0]]))
    assert torch.isfinite(total)
    assert parts[2] > 0
