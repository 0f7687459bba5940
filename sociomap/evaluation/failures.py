"""sociomap.evaluation.failures: why a sample failed (stage-2 IoU < 0.1, the paper's A.7 threshold).

The modes are checked in this order, the first that holds wins:

1. ``unparsable answer``: the stage-2 output has no ``<answer>`` block holding a JSON list (the reference then
   gives SAM no prompt and the mask is empty);
2. ``no boxes``: the answer parses but holds no object with a 4-number ``bbox_2d`` (nothing to segment);
3. ``empty mask``: there were boxes, yet SAM's final mask is empty (degenerate boxes, or boxes off the image);
4. ``nothing to find``: the ground truth is empty (after ignored pixels) and the model found something;
5. ``wrong place``: prediction and ground truth share less than half of the smaller of the two (the paper's
   "localization failure");
6. ``wrong extent``: otherwise: one mostly lies inside the other, so the place is right and the extent is
   wrong (the paper's "boundary imprecision"), noted as too large or too small.
"""

from __future__ import annotations

import json

import numpy as np

FAILURE_IOU = 0.1
MODES = ("unparsable answer", "no boxes", "empty mask", "nothing to find", "wrong place", "wrong extent")


def answer_parses(text: str) -> bool:
    """True when the first <answer> block of the text is a JSON list (else the reference prompts nothing)."""
    from sociomap.reasoning.parse import extract_answer

    try:
        return isinstance(json.loads(extract_answer(text)), list)
    except (ValueError, RecursionError):
        return False


def failure_mode(pred: np.ndarray, gt: np.ndarray, stage2_text: str, n_boxes: int) -> tuple[str, str]:
    """(mode, detail) of a failed sample; pred and gt (H, W) bool with ignored pixels already removed."""
    pred_px, gt_px = int(np.count_nonzero(pred)), int(np.count_nonzero(gt))
    if not pred_px:
        if not answer_parses(stage2_text):
            return "unparsable answer", "no <answer> JSON list in the stage-2 output"
        if n_boxes == 0:
            return "no boxes", "the stage-2 answer holds no usable bbox_2d"
        return "empty mask", f"{n_boxes} box(es), SAM returned an empty mask"
    if not gt_px:
        return "nothing to find", f"ground truth empty, prediction {pred_px} px"
    inter = int(np.count_nonzero(pred & gt))
    size = f"prediction {pred_px / gt_px:.2f} x the ground-truth area"
    if inter < 0.5 * min(pred_px, gt_px):
        return "wrong place", f"{inter / min(pred_px, gt_px):.0%} of the smaller mask overlaps; {size}"
    return "wrong extent", f"too {'large' if pred_px > gt_px else 'small'}: {size}"
