"""Model output is untrusted input: parse -> stage-2 drawing -> SAM prompts and decoding stay fast and well-formed
for any answer, however absurd (hypothesis, with a per-case time limit)."""

from datetime import timedelta

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sociomap.reasoning.parse import MAX_OBJECTS, MAX_POINTS, extract_answer, parse_object_prompts
from sociomap.reasoning.render import render_stage2_images
from sociomap.reasoning.sam import load_sam, sam_arrays, segment_objects
from sociomap.reasoning.tiny import TINY_SAM_DIRS

SIZE = 56  # model-input pixels of the fuzzed tile
absurd = st.sampled_from(["1e12", "-1e9", "NaN", "Infinity", "-Infinity", "1e308", "1e400", str(2**31 + 5),
                          str(2**63), str(2**64), str(-2**63 - 1), "4" * 400, "true", "null", '"7"', "[1]", "{}"])
sane = st.integers(-SIZE, 2 * SIZE).map(str) | st.floats(-SIZE, 2 * SIZE).map(repr)
number = sane | absurd
point = st.lists(number, min_size=1, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
obj = st.builds(lambda box, pts: '{"bbox_2d": [' + ",".join(box) + '], "points": [' + ",".join(pts) + "]}",
                st.lists(number, min_size=3, max_size=5), st.lists(point, max_size=6))
many = st.integers(0, 400).map(lambda n: "[" + ",".join(['{"bbox_2d": [1, 2, 1e12, NaN]}'] * n) + "]")
deep = st.integers(1, 20_000).map(lambda n: "[" * n + "]" * n)
huge = st.sampled_from(["1e12", "-1e9", "3e9", str(2**40), "1e300"])
tall = st.builds(lambda x0, y0, big, wide: '[{"bbox_2d": [%d, %d, %s, %s]}]' % ((x0, y0, big, "40") if wide else
                                                                               (x0, y0, "40", big)),
                 st.integers(0, 10), st.integers(0, 10), huge, st.booleans())  # PIL walks every row: 11-35 s each
answer_json = st.lists(obj, max_size=8).map(lambda xs: "[" + ",".join(xs) + "]") | many | deep | tall
text = (st.builds(lambda think, body, tail: f"<think>{think}</think><answer>{body}</answer>{tail}",
                  st.text(max_size=20), answer_json, st.sampled_from(["", "<|im_end|>", "<answer>[]</answer>"]))
        | st.integers(1, 50_000).map(lambda n: "<answer>" * n) | st.text(max_size=200))


@pytest.fixture(scope="module")
def sam(tiny_dir):
    return load_sam(tiny_dir / TINY_SAM_DIRS["sam2"], torch.device("cpu"))


@pytest.fixture(scope="module")
def embedding(sam):
    return sam.embed(np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))


@settings(deadline=timedelta(seconds=5), max_examples=150,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text)
def test_parse_draw_and_sam_are_bounded_for_any_answer(sam, embedding, text):
    prompts = parse_object_prompts(text)
    assert len(prompts) <= MAX_OBJECTS and all(len(p.points) <= MAX_POINTS for p in prompts)
    images = [np.full((SIZE, SIZE, 3), 100, np.uint8)] * 2
    from PIL import Image

    rendered = render_stage2_images([Image.fromarray(im) for im in images], extract_answer(text),
                                    np.zeros((64, 64), bool))
    assert [im.size for im in rendered] == [(SIZE, SIZE)] * 2
    boxes, points = sam_arrays(prompts, SIZE) if prompts else (np.zeros((0, 4)), np.zeros((0, 0, 2)))
    assert np.isfinite(boxes).all() and np.isfinite(points).all()
    assert (np.abs(boxes) <= 2 * SIZE).all() and (np.abs(points) <= 2 * SIZE).all()
    result = segment_objects(sam, embedding, prompts)
    assert result.mask.shape == (SIZE, SIZE) and len(result.scores) == len(result.kept)
