"""Parse SocioReasoner answers into SAM prompts with the reference's rules (pure: numpy, no torch).

Reference: `parse_points_text_from_content` (roll/pipeline/multi_utils.py), `parse_visual_prompt_from_json_s2`
and `segment_v4_*` (roll/pipeline/rlvr/seg_worker.py), `render_image` (rlvr_socioseg_vlm_pipeline_infer.py).
Hand-written because the rules ARE the reference's behaviour; no library encodes them.

Model output is untrusted input (a random checkpoint, a fine-tune gone wrong, or a server that answers anything):
parsing is linear in the text, reads at most MAX_TEXT_CHARS, and keeps at most MAX_OBJECTS objects of at most
MAX_POINTS points. A sane answer (a few objects, coordinates that are numbers) is parsed exactly as the reference
does; docs/reasoning.md lists what differs for absurd ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

MAX_TEXT_CHARS = 1_000_000  # a 2,048-token answer is ~10 kB; a longer text is read only up to here
MAX_OBJECTS = 100  # objects kept per answer (the reference model emits 1-5; 2,048 tokens hold ~150 boxes)
MAX_POINTS = 100  # points kept per object (the reference's length reward peaks at 2)
_OPEN, _CLOSE = "<answer>", "</answer>"


@dataclass(frozen=True, slots=True)
class ObjectPrompt:
    """One object's SAM prompt in model-input pixels (756 space for 768 tiles); all points are positive."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2 as emitted (not clipped, not sorted)
    points: tuple[tuple[float, float], ...]  # (x, y), label 1 each


def extract_answer(text: str) -> str:
    """Text inside the first <answer>...</answer>, stripped; "" when there is none.

    Same result as the reference's `re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)`, in linear time: the
    regex rescans the rest of the text from every "<answer>" that has no closing tag (quadratic on a text of
    repeated "<answer>"), while a closing tag after any opening one is also after the first.
    """
    found = _answer_block(text)
    return found.strip() if found is not None else ""


def _answer_block(text: str) -> str | None:
    """The raw text between the first <answer> and the next </answer>, or None."""
    text = text[:MAX_TEXT_CHARS]
    start = text.find(_OPEN)
    if start < 0:
        return None
    end = text.find(_CLOSE, start + len(_OPEN))
    return text[start + len(_OPEN):end] if end >= 0 else None


def _load_json(text: str) -> object | None:
    """json.loads, or None for invalid JSON (as the reference's except clause) or nesting too deep to parse."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; so is an int of > 4,300 digits
        return None


def _numbers(values: list) -> np.ndarray | None:
    """A flat list of coordinates as the reference's SAM call would take them (float64), else None.

    The reference passes `np.array(values)` to SAM, which converts it with `torch.as_tensor(dtype=float)`: that
    refuses the uint64 (integers in [2**63, 2**64)) and object (integers beyond, e.g. 2**64) arrays numpy makes
    for integers beyond int64, so the object is skipped (the int64 rule). Non-numbers are refused likewise. NaN
    and infinities are refused too (deviation: the reference's SAM turns them into an all-false mask for that
    object, the same union).
    """
    if not all(isinstance(v, (int, float)) for v in values):  # bool is an int, as numpy and torch take it
        return None
    try:
        array = np.array(values)
    except (ValueError, OverflowError):
        return None
    if array.dtype.kind not in "bif" or not np.isfinite(array.astype(np.float64)).all():
        return None
    return array.astype(np.float64)


def _object_prompt(obj: object) -> ObjectPrompt | None:
    """One answer item -> prompt, or None where the reference skips the object (dict, 4-number list bbox_2d)."""
    if not isinstance(obj, dict):
        return None
    box = obj.get("bbox_2d", [])
    point_data = obj.get("points", [])
    try:
        points = [[p[0], p[1]] for p in point_data]  # the reference's rule, verbatim
    except (TypeError, IndexError, KeyError):  # non-iterable points or a non-subscriptable point: skip object
        return None
    if not isinstance(box, list) or len(box) != 4:
        return None
    box_array = _numbers(box)
    point_array = _numbers([c for p in points[:MAX_POINTS] for c in p])  # same dtype as the (n, 2) array
    if box_array is None or point_array is None:
        return None
    return ObjectPrompt(box=tuple(float(c) for c in box_array),
                        points=tuple((float(x), float(y)) for x, y in point_array.reshape(-1, 2)))


def parse_object_prompts(text: str) -> list[ObjectPrompt]:
    """SAM prompts from a full model output (both stages use this parser); malformed answers give []."""
    block = _answer_block(text)
    data = _load_json(block.strip()) if block is not None else None
    if not isinstance(data, list):
        return []
    prompts = []
    for item in data:
        prompt = _object_prompt(item)
        if prompt is not None:
            prompts.append(prompt)
            if len(prompts) == MAX_OBJECTS:
                break
    return prompts


def render_boxes(answer: str) -> list[list]:
    """Boxes that stage-2 rendering draws from the stage-1 answer text (reference `render_image` rule).

    Items that are dicts with a length-4 `bbox_2d` are kept as is (drawing may still skip them later);
    an item whose `bbox_2d` has no length makes the reference drop every box. At most MAX_OBJECTS are kept.
    """
    data = _load_json(answer[:MAX_TEXT_CHARS])
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
    return boxes[:MAX_OBJECTS]
