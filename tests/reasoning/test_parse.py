"""Answer extraction and SAM-prompt parsing follow every reference rule; arbitrary text never crashes."""

import json

from hypothesis import given
from hypothesis import strategies as st

from sociomap.reasoning.parse import ObjectPrompt, extract_answer, parse_object_prompts, render_boxes


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
