"""Parse SocioReasoner answers into SAM prompts with the reference's rules (pure, no torch).

Reference: `parse_points_text_from_content` (roll/pipeline/multi_utils.py), `parse_visual_prompt_from_json_s2`
and `segment_v4_*` (roll/pipeline/rlvr/seg_worker.py), `render_image` (rlvr_socioseg_vlm_pipeline_infer.py).
Hand-written because the rules ARE the reference's behaviour; no library encodes them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ObjectPrompt:
    """One object's SAM prompt in model-input pixels (756 space for 768 tiles); all points are positive."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2 as emitted (not clipped, not sorted)
    points: tuple[tuple[float, float], ...]  # (x, y), label 1 each


def extract_answer(text: str) -> str:
    """Text inside the first <answer>...</answer>, stripped; "" when there is none (reference rule)."""
    match = _ANSWER.search(text)
    return match.group(1).strip() if match else ""


def _load_answer_json(text: str) -> object | None:
    """The JSON value of the <answer> block, or None when there is no block or it is not valid JSON."""
    match = _ANSWER.search(text)
    if not match:
        return None
    try:
        return json.loads(match.group(1).strip())
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; deep nesting must not crash a run
        return None


def _is_coordinate(value: object) -> bool:
    """A finite JSON number (bools count as 0/1, as numpy does in the reference); strings etc. make SAM fail."""
    if not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # a huge JSON integer: numpy makes an object array and SAM fails
        return False


def _object_prompt(obj: object) -> ObjectPrompt | None:
    """One answer item -> prompt, or None where the reference skips the object (dict, 4-number list bbox_2d)."""
    if not isinstance(obj, dict):
        return None
    box = obj.get("bbox_2d", [])
    point_data = obj.get("points", [])
    try:
        points = [(p[0], p[1]) for p in point_data]  # reference: [[p[0], p[1]] for p in point_data]
    except (TypeError, IndexError, KeyError):  # non-iterable points or a non-subscriptable point: skip object
        return None
    if not isinstance(box, list) or len(box) != 4:
        return None
    coords = list(box) + [c for p in points for c in p]
    if not all(_is_coordinate(c) for c in coords):  # the reference's SAM call raises and skips the object
        return None
    return ObjectPrompt(box=tuple(float(c) for c in box), points=tuple((float(x), float(y)) for x, y in points))


def parse_object_prompts(text: str) -> list[ObjectPrompt]:
    """SAM prompts from a full model output (both stages use this parser); malformed answers give []."""
    data = _load_answer_json(text)
    if not isinstance(data, list):
        return []
    return [prompt for prompt in map(_object_prompt, data) if prompt is not None]


def render_boxes(answer: str) -> list[list]:
    """Boxes that stage-2 rendering draws from the stage-1 answer text (reference `render_image` rule).

    Items that are dicts with a length-4 `bbox_2d` are kept as is (drawing may still fail on them later);
    an item whose `bbox_2d` has no length makes the reference drop every box.
    """
    try:
        data = json.loads(answer)
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, list):
        return []
    boxes = []
    for item in data:
        if not isinstance(item, dict) or "bbox_2d" not in item:
            continue
        try:
            if len(item["bbox_2d"]) == 4:
                boxes.append(item["bbox_2d"])
        except TypeError:
            return []
    return boxes
