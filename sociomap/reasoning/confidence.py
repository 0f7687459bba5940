"""sociomap.reasoning.confidence: how sure the model is of one (tile, query) mask, from what it already made.

Used for the ``confidence`` column of a run's features (sociomap.merge.features combines it per feature) and
for the confidence bins of ``sociomap eval socioseg``. A ranking signal, not a calibrated probability.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def result_confidence(mask: np.ndarray, coarse: np.ndarray, scores: Sequence[float]) -> float | None:
    """0..1: SAM's mean predicted IoU of the final masks times the IoU of the stage-1 (coarse) and stage-2
    (final) masks; None when nothing was found (or SAM gave no scores)."""
    if not mask.any() or not len(scores):
        return None
    sam = float(np.clip(np.mean(scores), 0.0, 1.0))
    agreement = float(np.logical_and(mask, coarse).sum() / np.logical_or(mask, coarse).sum())
    return round(sam * agreement, 4)
