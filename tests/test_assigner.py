"""Unit tests of task-aligned label assignment on a few hand-placed cells."""

from __future__ import annotations

import pytest
import torch

from speedmap.train.assigner import TaskAlignedAssigner

Result = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def assign(
    assigner: TaskAlignedAssigner,
    scores: list[list[float]],
    pd_boxes: list[list[float]],
    points: list[list[float]],
    gt_labels: list[int],
    gt_boxes: list[list[float]],
    gt_mask: list[bool] | None = None,
) -> Result:
    """One image (batch of 1): returns labels (N,), boxes (N, 4), target scores (N, C), foreground (N,)."""
    gt = torch.tensor(gt_boxes, dtype=torch.float32).reshape(1, -1, 4)
    mask = torch.tensor(gt_mask if gt_mask is not None else [True] * gt.shape[1], dtype=torch.bool)[None]
    labels, boxes, target, fg = assigner(
        torch.tensor(scores)[None],
        torch.tensor(pd_boxes)[None],
        torch.tensor(points),
        torch.tensor(gt_labels, dtype=torch.long).reshape(1, -1),
        gt,
        mask,
    )
    return labels[0], boxes[0], target[0], fg[0]


# One ground-truth box G = (0, 0, 40, 40), area 1600, and predicted boxes of known IoU with it:
G = [0.0, 0.0, 40.0, 40.0]
IOU_1 = [0.0, 0.0, 40.0, 40.0]  # G itself
IOU_75 = [0.0, 0.0, 40.0, 30.0]  # inside G, area 1200: 1200 / 1600
IOU_50 = [0.0, 0.0, 40.0, 20.0]  # inside G, area 800: 800 / 1600
INSIDE = [[10.0, 10.0], [30.0, 10.0], [10.0, 30.0], [30.0, 30.0]]  # four cell centres inside G


def test_topk_takes_the_best_aligned_cells() -> None:
    # alpha = beta = 1: align = score * IoU
    #   cell 0: 0.1 * 1.00 = 0.10    cell 1: 0.9 * 0.50 = 0.45
    #   cell 2: 0.7 * 0.50 = 0.35    cell 3: 0.8 * 0.75 = 0.60
    # topk 2 -> cells 3 and 1; cell 0 has the best IoU but a poor score, and loses.
    # cell 4 lies outside G: never positive, whatever its score and box.
    a = TaskAlignedAssigner(topk=2, alpha=1.0, beta=1.0)
    scores = [[0.1, 0.0], [0.9, 0.0], [0.7, 0.0], [0.8, 0.0], [1.0, 1.0]]
    labels, boxes, target, fg = assign(
        a, scores, [IOU_1, IOU_50, IOU_50, IOU_75, IOU_1], [*INSIDE, [50.0, 50.0]], [0], [G]
    )
    assert fg.tolist() == [False, True, False, True, False]
    assert labels[fg].tolist() == [0, 0]
    torch.testing.assert_close(boxes[fg], torch.tensor([G, G]))
    # soft targets: align / max align over the box's positives * the best IoU among them (0.75):
    #   cell 3: 0.60 / 0.60 * 0.75 = 0.75;  cell 1: 0.45 / 0.60 * 0.75 = 0.5625; background rows are 0
    expected = torch.zeros(5, 2)
    expected[3, 0], expected[1, 0] = 0.75, 0.5625
    torch.testing.assert_close(target, expected)


def test_topk_larger_than_candidates_takes_every_candidate() -> None:
    # topk 10 > 5 cells: every cell inside G is positive, none outside
    a = TaskAlignedAssigner(topk=10, alpha=1.0, beta=1.0)
    scores = [[0.1], [0.9], [0.7], [0.8], [1.0]]
    _, _, target, fg = assign(a, scores, [IOU_1, IOU_50, IOU_50, IOU_75, IOU_1], [*INSIDE, [50.0, 50.0]], [0], [G])
    assert fg.tolist() == [True, True, True, True, False]
    # best IoU among positives is now 1.0 (cell 0); align 0.10, 0.45, 0.35, 0.60 over max 0.60
    torch.testing.assert_close(target[:, 0], torch.tensor([0.10 / 0.60, 0.75, 0.35 / 0.60, 1.0, 0.0]))


def test_default_exponents_weigh_iou_far_above_score() -> None:
    # alpha 0.5, beta 6: cell 0: 0.25**0.5 * 1**6 = 0.5;  cell 1: 1.0**0.5 * 0.75**6 = 0.178 -> topk 1 takes cell 0.
    # With alpha = beta = 1 the order flips: 0.25 * 1 = 0.25 < 1.0 * 0.75 = 0.75 -> cell 1.
    args = ([[0.25], [1.0]], [IOU_1, IOU_75], INSIDE[:2], [0], [G])
    assert assign(TaskAlignedAssigner(topk=1), *args)[3].tolist() == [True, False]
    assert assign(TaskAlignedAssigner(topk=1, alpha=1.0, beta=1.0), *args)[3].tolist() == [False, True]


def test_cell_centres_on_the_border_are_outside() -> None:
    # centres (40, 20) on G's right edge and (20, 0) on its top edge: not strictly inside -> not candidates
    a = TaskAlignedAssigner(topk=10, alpha=1.0, beta=1.0)
    pts = [[20.0, 20.0], [40.0, 20.0], [20.0, 0.0], [39.5, 0.5]]
    _, _, _, fg = assign(a, [[0.5]] * 4, [IOU_1] * 4, pts, [0], [G])
    assert fg.tolist() == [True, False, False, True]


def test_cell_claimed_by_two_boxes_goes_to_the_one_it_overlaps_most() -> None:
    # A = (0,0,40,40) class 0, B = (20,0,60,40) class 1; centres (10,20) in A only, (30,20) in both, (50,20) in B only.
    # Cell 1 predicts B exactly: IoU with B = 1; with A: inter (20..40) x (0..40) = 800, union 2400 -> 1/3.
    # Its class-0 score (0.9) would favour A by alignment (0.9 * 1/3 = 0.3 > 0.1 * 1 = 0.1), but the
    # tie-break is the overlap: cell 1 goes to B.
    a = TaskAlignedAssigner(topk=10, alpha=1.0, beta=1.0)
    box_a, box_b = [0.0, 0.0, 40.0, 40.0], [20.0, 0.0, 60.0, 40.0]
    scores = [[0.8, 0.0], [0.9, 0.1], [0.0, 0.5]]
    labels, boxes, target, fg = assign(
        a, scores, [box_a, box_b, box_b], [[10.0, 20.0], [30.0, 20.0], [50.0, 20.0]], [0, 1], [box_a, box_b]
    )
    assert fg.tolist() == [True, True, True]
    assert labels.tolist() == [0, 1, 1]
    torch.testing.assert_close(boxes, torch.tensor([box_a, box_b, box_b]))
    # A keeps cell 0 only: 0.8 / 0.8 * IoU 1 = 1.
    # B has cells 1 (align 0.1 * 1) and 2 (0.5 * 1): 0.1 / 0.5 * 1 = 0.2 and 1.0; cell 1's class-0 score is gone.
    torch.testing.assert_close(target, torch.tensor([[1.0, 0.0], [0.0, 0.2], [0.0, 1.0]]))


def test_claimed_cell_follows_the_overlap_not_the_order_of_the_boxes() -> None:
    # the same scene with the ground truth listed B first: cell 1 still ends up with B (now index 0, class 1)
    a = TaskAlignedAssigner(topk=10, alpha=1.0, beta=1.0)
    box_a, box_b = [0.0, 0.0, 40.0, 40.0], [20.0, 0.0, 60.0, 40.0]
    labels, _, _, fg = assign(
        a,
        [[0.8, 0.0], [0.9, 0.1], [0.0, 0.5]],
        [box_a, box_b, box_b],
        [[10.0, 20.0], [30.0, 20.0], [50.0, 20.0]],
        [1, 0],
        [box_b, box_a],
    )
    assert fg.all()
    assert labels.tolist() == [0, 1, 1]


def test_no_ground_truth_boxes() -> None:
    a = TaskAlignedAssigner()
    scores = torch.full((2, 3, 4), 0.9)
    pd = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).expand(2, 3, 4)
    no_labels, no_boxes, no_mask = torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, 4), torch.zeros(2, 0).bool()
    labels, boxes, target, fg = a(scores, pd, torch.tensor([[5.0, 5.0]] * 3), no_labels, no_boxes, no_mask)
    assert labels.shape == (2, 3) and labels.dtype == torch.long and not labels.any()
    assert boxes.shape == (2, 3, 4) and not boxes.any()
    assert target.shape == (2, 3, 4) and not target.any()
    assert fg.shape == (2, 3) and fg.dtype == torch.bool and not fg.any()


def test_padded_rows_claim_nothing() -> None:
    # image 0: G (class 0) plus a padding row whose box covers every cell and predicts it perfectly
    # image 1: only a padding row
    a = TaskAlignedAssigner(topk=10, alpha=1.0, beta=1.0)
    big = [0.0, 0.0, 100.0, 100.0]
    pts = torch.tensor([[10.0, 10.0], [70.0, 70.0]])  # cell 0 inside G and big, cell 1 inside big only
    scores = torch.full((2, 2, 2), 0.9)
    pd = torch.tensor([[G, big], [big, big]])
    gt_boxes = torch.tensor([[G, big], [big, big]])
    gt_labels = torch.tensor([[0, 1], [1, 1]])
    gt_mask = torch.tensor([[True, False], [False, False]])
    labels, boxes, target, fg = a(scores, pd, pts, gt_labels, gt_boxes, gt_mask)
    assert fg.tolist() == [[True, False], [False, False]]
    assert labels[0, 0] == 0
    torch.testing.assert_close(boxes[0, 0], torch.tensor(G))
    # the one positive: align 0.9 * 1 over itself, times IoU 1 -> 1.0 for class 0; everything else 0
    expected = torch.zeros(2, 2, 2)
    expected[0, 0, 0] = 1.0
    torch.testing.assert_close(target, expected)


@pytest.mark.parametrize("topk", [1, 3])
def test_batches_are_assigned_independently(topk: int) -> None:
    # the same image twice with the ground truth of image 1 moved away: image 0 matches, image 1 has no candidates
    a = TaskAlignedAssigner(topk=topk, alpha=1.0, beta=1.0)
    pts = torch.tensor([[10.0, 10.0], [30.0, 30.0]])
    scores = torch.tensor([[[0.5], [0.8]], [[0.5], [0.8]]])
    pd = torch.tensor([[G, G], [G, G]])
    gt = torch.tensor([[G], [[200.0, 200.0, 240.0, 240.0]]])
    _, _, _, fg = a(scores, pd, pts, torch.zeros(2, 1, dtype=torch.long), gt, torch.ones(2, 1, dtype=torch.bool))
    # topk 1: align 0.5 vs 0.8 -> cell 1 only; topk 3 (clamped to 2 cells): both
    assert fg[0].tolist() == ([False, True] if topk == 1 else [True, True])
    assert not fg[1].any()
