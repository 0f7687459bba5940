"""sociomap.evaluation.metrics: the paper's segmentation metrics, defined exactly (docs/evaluation.md).

Per sample (pred, gt: (H, W) bool; ``valid``: (H, W) bool, False where ignored):

- pixels outside ``valid`` are removed from both masks first, so an ignored pixel counts nowhere;
- I = |pred & gt|, U = |pred | gt|; IoU = I / U, and 1.0 when U = 0 (both empty: the rule of LISA and of the
  reference's ``compute_giou``);
- instances are the 8-connected components of each mask with more than ``min_instance_px`` pixels (the
  reference keeps ground-truth contours of area > 10 px for its box targets); a predicted and a ground-truth
  instance match when their IoU >= 0.5, one-to-one (``match_one_to_one``); TP = matches, FP = unmatched
  predicted instances, FN = unmatched ground-truth instances.

Over a set of samples (``summarize``):

- gIoU = mean of the per-sample IoUs; cIoU = sum(I) / sum(U) (1.0 when sum(U) = 0);
- precision = sum(TP) / sum(TP + FP), recall = sum(TP) / sum(TP + FN) (None when the denominator is 0);
  F1 = 2 sum(TP) / sum(2 TP + FP + FN) (1.0 when nothing was predicted or expected anywhere);
- mF1 = mean of the per-sample F1s (same formula per sample), reported beside F1 because the paper does
  not say which of the two it means.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLD = 0.5
MIN_INSTANCE_PX = 10
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity, as the reference's connectedComponents(connectivity=8)


@dataclass(frozen=True)
class MaskScore:
    """The counts one sample contributes; every metric is a function of these."""

    intersection: int
    union: int
    tp: int
    fp: int
    fn: int

    @property
    def iou(self) -> float:
        """I / U, 1.0 when both masks are empty."""
        return 1.0 if self.union == 0 else self.intersection / self.union

    @property
    def f1(self) -> float:
        """Instance F1 of this sample, 1.0 when it has no instance on either side."""
        total = 2 * self.tp + self.fp + self.fn
        return 1.0 if total == 0 else 2 * self.tp / total


@dataclass(frozen=True)
class Summary:
    """Metrics of a set of samples (fractions in 0..1; None where undefined)."""

    n: int
    ciou: float
    giou: float
    f1: float
    precision: float | None
    recall: float | None
    mf1: float
    intersection: int
    union: int
    tp: int
    fp: int
    fn: int


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, None when the denominator is 0."""
    return None if denominator == 0 else numerator / denominator


def components(mask: np.ndarray, min_px: int = MIN_INSTANCE_PX) -> tuple[np.ndarray, int]:
    """8-connected components of a (H, W) bool mask with more than ``min_px`` pixels.

    Returns (labels, n): labels (H, W) int32, 0 = background or a dropped small component, 1..n the kept ones.
    """
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return labels.astype(np.int32), 0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes > min_px
    keep[0] = False
    relabel = np.zeros(n + 1, dtype=np.int32)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return relabel[labels], int(keep.sum())


def match_one_to_one(edges: Iterable[tuple[int, int, float]], threshold: float = IOU_THRESHOLD
                     ) -> list[tuple[int, int, float]]:
    """Pairs (a, b, iou) with iou >= threshold, each a and each b used at most once, as many pairs as possible
    and, among those, the largest total IoU (Hungarian assignment, solved per connected group of candidates).

    For disjoint connected objects on both sides (mask components) an object can overlap at most one object of
    the other side with IoU >= 0.5 (each match needs half of it), so the pairs are unique and any rule agrees;
    the assignment matters only where objects overlap (city layers whose features overlap).
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    kept = [(int(a), int(b), float(v)) for a, b, v in edges if v >= threshold]
    if not kept:
        return []
    a_ids = sorted({a for a, _, _ in kept})
    b_ids = sorted({b for _, b, _ in kept})
    a_pos = {a: i for i, a in enumerate(a_ids)}
    b_pos = {b: i for i, b in enumerate(b_ids)}
    n_a = len(a_ids)
    rows = [a_pos[a] for a, _, _ in kept]
    cols = [n_a + b_pos[b] for _, b, _ in kept]
    graph = coo_matrix((np.ones(len(kept)), (rows, cols)), shape=(n_a + len(b_ids),) * 2)
    _, group = connected_components(graph, directed=False)
    by_group: dict[int, list[tuple[int, int, float]]] = {}
    for edge, g in zip(kept, group[rows], strict=True):
        by_group.setdefault(int(g), []).append(edge)
    matches = []
    for group_edges in by_group.values():
        if len(group_edges) == 1:
            matches.append(group_edges[0])
            continue
        ga = sorted({a for a, _, _ in group_edges})
        gb = sorted({b for _, b, _ in group_edges})
        weight = np.zeros((len(ga), len(gb)))
        big = len(group_edges) + 1.0  # one more pair always outweighs any IoU gain (IoU sums stay below this)
        for a, b, v in group_edges:
            weight[ga.index(a), gb.index(b)] = big + v
        iou = {(a, b): v for a, b, v in group_edges}
        for i, j in zip(*linear_sum_assignment(weight, maximize=True), strict=True):
            if weight[i, j] > 0:
                matches.append((ga[i], gb[j], iou[ga[i], gb[j]]))
    return sorted(matches)


def _instance_counts(pred: np.ndarray, gt: np.ndarray, threshold: float, min_px: int) -> tuple[int, int, int]:
    """(TP, FP, FN) of the mask components of one sample."""
    pred_labels, n_pred = components(pred, min_px)
    gt_labels, n_gt = components(gt, min_px)
    if n_pred == 0 or n_gt == 0:
        return 0, n_pred, n_gt
    # Contingency table of (pred label, gt label) pixel counts in one pass; row/column 0 = background.
    table = np.bincount(pred_labels.ravel().astype(np.int64) * (n_gt + 1) + gt_labels.ravel(),
                        minlength=(n_pred + 1) * (n_gt + 1)).reshape(n_pred + 1, n_gt + 1)
    pred_area, gt_area = table.sum(axis=1), table.sum(axis=0)
    edges = []
    for p, g in zip(*np.nonzero(table[1:, 1:]), strict=True):
        inter = table[p + 1, g + 1]
        edges.append((p, g, inter / (pred_area[p + 1] + gt_area[g + 1] - inter)))
    tp = len(match_one_to_one(edges, threshold))
    return tp, n_pred - tp, n_gt - tp


def score_mask(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None,
               threshold: float = IOU_THRESHOLD, min_instance_px: int = MIN_INSTANCE_PX) -> MaskScore:
    """Counts of one sample: pred, gt (H, W) bool (nonzero = foreground); valid (H, W) bool or None (all)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    if valid is not None:
        pred, gt = pred & valid, gt & valid
    intersection = int(np.count_nonzero(pred & gt))
    union = int(np.count_nonzero(pred | gt))
    tp, fp, fn = _instance_counts(pred, gt, threshold, min_instance_px)
    return MaskScore(intersection, union, tp, fp, fn)


def summarize(scores: Sequence[MaskScore]) -> Summary:
    """The set's cIoU, gIoU, F1, precision, recall and mF1 (module docstring) over at least one sample."""
    n = len(scores)
    if n == 0:
        raise ValueError("summarize needs at least one sample")
    inter = sum(s.intersection for s in scores)
    union = sum(s.union for s in scores)
    tp, fp, fn = (sum(getattr(s, k) for s in scores) for k in ("tp", "fp", "fn"))
    f1_den = 2 * tp + fp + fn
    return Summary(
        n=n, ciou=1.0 if union == 0 else inter / union,
        giou=float(np.mean([s.iou for s in scores])),
        f1=1.0 if f1_den == 0 else 2 * tp / f1_den,
        precision=ratio(tp, tp + fp), recall=ratio(tp, tp + fn),
        mf1=float(np.mean([s.f1 for s in scores])),
        intersection=inter, union=union, tp=tp, fp=fp, fn=fn,
    )
