"""Answer extraction and SAM-prompt parsing follow every reference rule; arbitrary text never crashes."""

import json
import re
import time

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sociomap.reasoning.parse import (MAX_OBJECTS, MAX_POINTS, ObjectPrompt, extract_answer, parse_object_prompts,
                                      render_boxes)


def answer(value) -> str:
    return f"<think>t</think><answer>{json.dumps(value)}</answer>"


def test_extract_answer_takes_first_block_stripped_across_lines():
    assert extract_answer("x<answer>\n [1]\n</answer><answer>[2]</answer>") == "[1]"


def test_extract_answer_without_tags_is_empty():
    assert extract_answer("<answer>[1]") == ""


def test_stage1_boxes_parse_to_box_only_prompts():
    assert parse_object_prompts(answer([{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [5, 6, 7, 8]}])) == [
        ObjectPrompt((1.0, 2.0, 3.0, 4.0), ()), ObjectPrompt((5.0, 6.0, 7.0, 8.0), ())]


def test_points_are_positive_xy_and_extra_coordinates_ignored():
    [prompt] = parse_object_prompts(answer([{"bbox_2d": [1, 2, 30, 40], "points": [[5, 6], [7, 8, 0]]}]))
    assert prompt.points == ((5.0, 6.0), (7.0, 8.0))


def test_non_list_answer_gives_no_prompts():
    assert parse_object_prompts(answer({"bbox_2d": [1, 2, 3, 4]})) == []


def test_invalid_json_and_missing_tags_give_no_prompts():
    assert parse_object_prompts("<answer>[{'bbox_2d': [1,2,3,4]}]</answer>") == []
    assert parse_object_prompts('[{"bbox_2d": [1, 2, 3, 4]}]') == []


def test_objects_without_four_number_box_are_dropped():
    items = [{"points": [[1, 2]]}, {"bbox_2d": [1, 2, 3]}, {"bbox_2d": "1234"}, {"bbox_2d": [1, 2, 3, "4"]},
             "x", {"bbox_2d": [1, 2, 3, 4]}]
    assert parse_object_prompts(answer(items)) == [ObjectPrompt((1.0, 2.0, 3.0, 4.0), ())]


def test_per_object_errors_skip_only_that_object():
    items = [{"bbox_2d": [1, 2, 3, 4], "points": [5]}, {"bbox_2d": [1, 2, 3, 4], "points": [[1]]},
             {"bbox_2d": [1, 2, 3, 4], "points": None}, {"bbox_2d": [9, 9, 9, 9], "points": [[1, 1]]}]
    assert parse_object_prompts(answer(items)) == [ObjectPrompt((9.0, 9.0, 9.0, 9.0), ((1.0, 1.0),))]


def test_inverted_boxes_pass_through_unsorted():
    assert parse_object_prompts(answer([{"bbox_2d": [30, 40, 1, 2]}]))[0].box == (30.0, 40.0, 1.0, 2.0)


def test_render_boxes_keeps_length_four_items_and_drops_all_on_unsized_box():
    assert render_boxes(json.dumps([{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [1]}, 5])) == [[1, 2, 3, 4]]
    assert render_boxes(json.dumps([{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": 7}])) == []
    assert render_boxes("not json") == [] and render_boxes("{}") == []


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                               st.sampled_from(["bbox_2d", "points", "x"]), inner, max_size=3), max_leaves=20)


@given(st.text())
def test_arbitrary_text_never_crashes(text):
    prompts = parse_object_prompts(text)
    assert isinstance(prompts, list)
    assert isinstance(extract_answer(text), str)
    assert isinstance(render_boxes(text), list)


@given(json_values)
def test_arbitrary_json_answers_give_well_formed_prompts(value):
    for prompt in parse_object_prompts(f"<answer>{json.dumps(value)}</answer>"):
        assert len(prompt.box) == 4 and all(isinstance(c, float) for c in prompt.box)
        assert all(len(p) == 2 and all(isinstance(c, float) for c in p) for p in prompt.points)


@given(st.lists(st.tuples(*[st.integers(-2000, 2000)] * 4), max_size=5))
def test_valid_boxes_round_trip(boxes):
    text = answer([{"bbox_2d": list(b)} for b in boxes])
    assert [p.box for p in parse_object_prompts(text)] == [tuple(float(c) for c in b) for b in boxes]


# --- untrusted answers: linear extraction, the int64 rule, bounded counts ---------------------------------------

def regex_answer(text: str) -> str:
    """The reference's extraction, verbatim."""
    match = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    return match.group(1).strip() if match else ""


@given(st.lists(st.sampled_from(["<answer>", "</answer>", "<answer", "answer>", "x", " ", "\n", "[1]"]),
                max_size=30).map("".join))
def test_extract_answer_equals_the_reference_regex(text):
    assert extract_answer(text) == regex_answer(text)


def test_extract_answer_is_linear_on_unclosed_tags():
    text = "<answer>" * 100_000  # the regex rescans the rest from each one: ~10^10 steps
    start = time.perf_counter()
    assert extract_answer(text) == "" and parse_object_prompts(text) == []
    assert time.perf_counter() - start < 1.0


def reference_sam_accepts(box, points) -> bool:
    """Whether the reference's SAM call takes the object: np.array(box), np.array(points) -> torch float."""
    try:
        torch.as_tensor(np.array(box), dtype=torch.float)
        if points:
            torch.as_tensor(np.array(points), dtype=torch.float)
    except (TypeError, ValueError, OverflowError, RuntimeError):
        return False
    return True


@pytest.mark.parametrize("box", [[1, 2, 3, 2**63], [1, 2, 3, 2**64], [1, 2, 3, -2**63 - 1], [2**63] * 4,
                                 [2**63 - 1] * 4, [-2**63, 0, 1, 2], [1.5, 2, 3, 2**64], [True, 2, 3, 4]])
def test_the_int64_rule_follows_the_reference_conversion(box):
    assert bool(parse_object_prompts(answer([{"bbox_2d": box}]))) == reference_sam_accepts(box, [])


big_ints = st.integers(-2**66, 2**66) | st.sampled_from([2**63, 2**63 - 1, -2**63, -2**63 - 1, 2**64 - 1, 2**64])


@given(st.lists(big_ints | st.floats(-1e300, 1e300), min_size=4, max_size=4),
       st.lists(st.lists(big_ints | st.floats(-1e6, 1e6), min_size=2, max_size=2), max_size=3))
def test_objects_are_kept_exactly_when_the_reference_sam_takes_them(box, points):
    kept = parse_object_prompts(answer([{"bbox_2d": box, "points": points}]))
    assert bool(kept) == reference_sam_accepts(box, points)


def test_nan_and_infinity_objects_are_dropped():
    text = '<answer>[{"bbox_2d": [1, 2, NaN, 4]}, {"bbox_2d": [1, 2, 3, 4], "points": [[Infinity, 1]]}, ' \
           '{"bbox_2d": [1e400, 2, 3, 4]}, {"bbox_2d": [5, 6, 7, 8]}]</answer>'
    assert parse_object_prompts(text) == [ObjectPrompt((5.0, 6.0, 7.0, 8.0), ())]


def test_counts_are_bounded():
    items = [{"bbox_2d": [i, i, i + 1, i + 1], "points": [[j, j] for j in range(MAX_POINTS + 50)]}
             for i in range(MAX_OBJECTS + 50)]
    prompts = parse_object_prompts(answer(items))
    assert len(prompts) == MAX_OBJECTS and all(len(p.points) == MAX_POINTS for p in prompts)
    assert prompts[-1].box[0] == MAX_OBJECTS - 1  # the first ones are kept
    assert len(render_boxes(json.dumps(items))) == MAX_OBJECTS
