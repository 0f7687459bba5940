"""Model answers are untrusted input: the absurd answers that stalled the stage-2 drawing are bounded now.

The hypothesis fuzz over parse + draw + SAM prompts lives in tests/reasoning/test_untrusted.py; these are the
named cases of the reliability table, each run end to end (parse -> draw -> SAM prompt arrays) with a limit.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from sociomap.reasoning.parse import MAX_OBJECTS, extract_answer, parse_object_prompts
from sociomap.reasoning.render import render_stage2_images
from sociomap.reasoning.sam import sam_arrays
from tests.reliability.harness import TABLE

SIZE = 768  # the reference's stage-2 image size: where a huge box used to cost ~30 s of drawing
LIMIT_S = 5.0
ANSWERS = {
    "answer-huge-y": ("a box with y = 1e12", '<answer>[{"bbox_2d": [10, 10, 40, 1e12]}]</answer>'),
    "answer-nan": ("a box with NaN coordinates", '<answer>[{"bbox_2d": [NaN, 10, 40, NaN], "points": [[NaN, 1]]}]'
                   "</answer>"),
    "answer-inf": ("a box with infinite y", '<answer>[{"bbox_2d": [0, -Infinity, 40, Infinity]}]</answer>'),
    "answer-int64": ("coordinates past int64", '<answer>[{"bbox_2d": [0, 0, %d, %d]}]</answer>' % (2**64, 2**63)),
    "answer-many": ("10,000 boxes", "<answer>[" + ",".join(['{"bbox_2d": [1, 2, 30, 40]}'] * 10_000) + "]</answer>"),
    "answer-long": ("3 MB of boxes (past the 1 MB read limit)",
                    "<answer>[" + ",".join(['{"bbox_2d": [1, 2, 30, 40]}'] * 110_000) + "]</answer>"),
    "answer-deep": ("50,000 nested brackets", "<answer>" + "[" * 50_000 + "]" * 50_000 + "</answer>"),
}


@pytest.mark.parametrize("key", ANSWERS)
def test_an_absurd_answer_is_parsed_drawn_and_prompted_in_bounded_time(key):
    what, text = ANSWERS[key]
    start = time.perf_counter()
    prompts = parse_object_prompts(text)
    images = [Image.fromarray(np.full((SIZE, SIZE, 3), 100, np.uint8))] * 2
    drawn = render_stage2_images(images, extract_answer(text), np.zeros((SIZE, SIZE), bool))
    boxes, _ = sam_arrays(prompts, SIZE) if prompts else (np.zeros((0, 4)), None)
    seconds = time.perf_counter() - start
    TABLE.record(key, "model output", f"the model answers with {what}", "-",
                 f"{len(prompts)} prompt(s) kept (at most {MAX_OBJECTS}), inside the image; "
                 f"{'within' if seconds < LIMIT_S else 'OVER'} the {LIMIT_S:.0f} s limit", "nothing")
    assert seconds < LIMIT_S
    assert len(prompts) <= MAX_OBJECTS and [im.size for im in drawn] == [(SIZE, SIZE)] * 2
    assert np.isfinite(boxes).all() and (np.abs(boxes) <= 2 * SIZE).all()
