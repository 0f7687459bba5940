"""The metric definitions on hand-computed cases (docs/evaluation.md gives the formulas)."""

from __future__ import annotations

import numpy as np
import pytest

from sociomap.evaluation.metrics import MaskScore, components, match_one_to_one, score_mask, summarize


def canvas(*boxes: tuple[int, int, int, int], size: int = 32) -> np.ndarray:
    """A (size, size) bool mask with the given (row0, col0, row1, col1) half-open boxes set."""
    mask = np.zeros((size, size), bool)
    for r0, c0, r1, c1 in boxes:
        mask[r0:r1, c0:c1] = True
    return mask


def test_both_empty_is_a_perfect_sample():
    s = score_mask(canvas(), canvas())
    assert (s.intersection, s.union, s.tp, s.fp, s.fn) == (0, 0, 0, 0, 0)
    assert s.iou == 1.0 and s.f1 == 1.0


def test_empty_prediction_misses_every_instance():
    s = score_mask(canvas(), canvas((0, 0, 6, 6), (20, 20, 26, 26)))
    assert s.iou == 0.0 and (s.tp, s.fp, s.fn) == (0, 0, 2) and s.f1 == 0.0


def test_prediction_on_empty_ground_truth_is_all_false_positive():
    s = score_mask(canvas((0, 0, 6, 6)), canvas())
    assert (s.intersection, s.union, s.iou) == (0, 36, 0.0) and (s.tp, s.fp, s.fn) == (0, 1, 0)


def test_partial_overlap_below_half_is_no_instance_match():
    # gt 6x6 at cols 0..5, pred 6x6 at cols 3..8: I = 18, U = 54, IoU = 1/3.
    s = score_mask(canvas((0, 3, 6, 9)), canvas((0, 0, 6, 6)))
    assert (s.intersection, s.union) == (18, 54) and s.iou == pytest.approx(1 / 3)
    assert (s.tp, s.fp, s.fn) == (0, 1, 1)


def test_multi_instance_sample_matches_each_instance_and_iou_exactly_half_counts():
    # gt: A = rows 0..5 x cols 0..5 (36 px), B = rows 20..25 x cols 20..25 (36 px).
    # pred: A exactly, and the left half of B (18 px): IoU(B) = 18/36 = 0.5 -> a match (>= 0.5).
    gt = canvas((0, 0, 6, 6), (20, 20, 26, 26))
    pred = canvas((0, 0, 6, 6), (20, 20, 26, 23))
    s = score_mask(pred, gt)
    assert (s.intersection, s.union) == (54, 72) and s.iou == 0.75
    assert (s.tp, s.fp, s.fn) == (2, 0, 0) and s.f1 == 1.0
    # One pixel less of B: IoU 17/36 < 0.5 -> B is missed and the piece is a false positive.
    pred[20, 22] = False
    s = score_mask(pred, gt)
    assert (s.tp, s.fp, s.fn) == (1, 1, 1) and s.f1 == pytest.approx(0.5)


def test_ignored_pixels_count_nowhere():
    gt = canvas((0, 0, 6, 6))
    pred = canvas((0, 0, 6, 12))  # 36 px right + 36 px beside it
    assert score_mask(pred, gt).iou == 0.5
    valid = ~canvas((0, 6, 32, 32))  # columns 6.. ignored: the false-positive half disappears
    s = score_mask(pred, gt, valid)
    assert (s.intersection, s.union, s.iou) == (36, 36, 1.0) and (s.tp, s.fp, s.fn) == (1, 0, 0)
    # Ignored ground truth is not expected either.
    s = score_mask(canvas(), canvas((0, 0, 6, 6), (20, 20, 26, 26)), ~canvas((16, 16, 32, 32)))
    assert (s.union, s.fn) == (36, 1)


def test_small_components_are_not_instances_but_count_as_pixels():
    gt = canvas((0, 0, 6, 6))
    pred = canvas((0, 0, 6, 6), (20, 20, 22, 25))  # + a 10 px speckle (not more than 10: dropped)
    s = score_mask(pred, gt)
    assert (s.intersection, s.union) == (36, 46)
    assert (s.tp, s.fp, s.fn) == (1, 0, 0)
    assert score_mask(pred, gt, min_instance_px=0).fp == 1


def test_components_are_eight_connected():
    mask = canvas((0, 0, 4, 4), (4, 4, 8, 8))  # touch at one corner only
    labels, n = components(mask, min_px=0)
    assert n == 1 and set(np.unique(labels)) == {0, 1}
    _, n = components(canvas((0, 0, 4, 4), (5, 5, 9, 9)), min_px=0)
    assert n == 2


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in size"):
        score_mask(np.zeros((4, 4), bool), np.zeros((5, 5), bool))


def test_summary_ciou_is_pooled_and_giou_is_the_mean():
    scores = [MaskScore(8, 24, 0, 1, 1), MaskScore(0, 0, 0, 0, 0), MaskScore(16, 16, 1, 0, 0)]
    s = summarize(scores)
    assert s.n == 3
    assert s.giou == pytest.approx((1 / 3 + 1 + 1) / 3)
    assert s.ciou == pytest.approx(24 / 40)
    assert (s.tp, s.fp, s.fn) == (1, 1, 1)
    assert s.precision == 0.5 and s.recall == 0.5 and s.f1 == pytest.approx(0.5)
    assert s.mf1 == pytest.approx((0 + 1 + 1) / 3)


def test_summary_of_nothing_predicted_has_no_precision():
    s = summarize([MaskScore(0, 36, 0, 0, 1)])
    assert s.precision is None and s.recall == 0.0 and s.f1 == 0.0
    s = summarize([MaskScore(0, 0, 0, 0, 0)])
    assert s.ciou == 1.0 and s.giou == 1.0 and s.f1 == 1.0 and s.precision is None
    with pytest.raises(ValueError):
        summarize([])


def test_matching_is_one_to_one_and_maximises_matches_not_greedy_iou():
    # a0-b0 0.9, a0-b1 0.6, a1-b0 0.7: greedy by IoU takes a0-b0 and strands a1; the assignment finds 2 pairs.
    edges = [(0, 0, 0.9), (0, 1, 0.6), (1, 0, 0.7), (2, 2, 0.49), (3, 3, 0.5)]
    assert match_one_to_one(edges) == [(0, 1, 0.6), (1, 0, 0.7), (3, 3, 0.5)]
    # Among equally many pairs the larger total IoU wins.
    edges = [(0, 0, 0.8), (0, 1, 0.6), (1, 0, 0.55), (1, 1, 0.9)]
    assert match_one_to_one(edges) == [(0, 0, 0.8), (1, 1, 0.9)]
    assert match_one_to_one([]) == []
