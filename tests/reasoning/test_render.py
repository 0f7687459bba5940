"""Stage-2 rendering: blue width-2 boxes and a red alpha-0.4 mask on both images; OpenCV-nearest resizing."""

import json
import time

import cv2
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from sociomap.reasoning.render import drawable_box, render_stage2_images, resize_mask_nearest


def gray(size=56):
    return Image.fromarray(np.full((size, size, 3), 100, np.uint8))


def test_boxes_are_blue_width_two_on_both_images():
    images = [gray(), gray()]
    out = render_stage2_images(images, '[{"bbox_2d": [10, 10, 40, 40]}]', np.zeros((56, 56), bool))
    for rendered in out:
        arr = np.asarray(rendered)
        assert (arr[10, 20] == [0, 0, 255]).all() and (arr[11, 20] == [0, 0, 255]).all()
        assert (arr[12, 20] == [100, 100, 100]).all() and (arr[25, 25] == [100, 100, 100]).all()
    assert np.asarray(images[0])[10, 20].tolist() == [100, 100, 100]  # inputs untouched


def test_mask_is_red_at_alpha_0_4_after_nearest_resize():
    mask = np.zeros((112, 112), bool)
    mask[:56] = True  # top half, at tile size (twice the image size)
    [rendered_map, rendered_sat] = render_stage2_images([gray(), gray()], "", mask)
    expected = np.round(np.array([255, 0, 0]) * 102 / 255 + 100 * (1 - 102 / 255))
    for arr in (np.asarray(rendered_map), np.asarray(rendered_sat)):
        assert np.abs(arr[5, 5].astype(int) - expected).max() <= 1
        assert arr[40, 5].tolist() == [100, 100, 100]


def test_malformed_stage1_answer_draws_nothing():
    out = render_stage2_images([gray()], "[{bbox_2d: oops", np.zeros((56, 56), bool))
    assert (np.asarray(out[0]) == 100).all()


def test_inverted_box_is_skipped_like_pillow_refuses_it():
    out = render_stage2_images([gray()], '[{"bbox_2d": [40, 40, 10, 10]}, {"bbox_2d": [1, 1, 5, 5]}]',
                               np.zeros((56, 56), bool))
    arr = np.asarray(out[0])
    assert arr[1, 3].tolist() == [0, 0, 255] and arr[40, 20].tolist() == [100, 100, 100]


def test_resize_mask_nearest_matches_opencv():
    rng = np.random.default_rng(1)
    for src, dst in [(756, 768), (768, 756), (100, 37), (37, 100)]:
        mask = rng.integers(0, 2, (src, src), dtype=np.uint8)
        assert np.array_equal(resize_mask_nearest(mask, dst, dst),
                              cv2.resize(mask, (dst, dst), interpolation=cv2.INTER_NEAREST))


def test_nothing_to_draw_hands_back_the_same_images_with_the_composited_pixels():
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)) for _ in range(2)]
    empty = np.zeros((56, 56), bool)
    assert all(a is b for a, b in zip(render_stage2_images(images, "no answer", empty), images))
    # a box PIL cannot draw (x2 < x1) takes the compositing path with nothing drawn: same pixels as the inputs
    composited = render_stage2_images(images, '[{"bbox_2d": [40, 40, 10, 10]}]', empty)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(composited, images))


# --- untrusted boxes: clipped so PIL draws the reference's pixels, in bounded time ------------------------------

def draw_reference(box, size=40):
    """The reference's drawing of one box, verbatim: PIL gets the coordinates as emitted."""
    canvas = Image.new("RGBA", (size, size), (100, 100, 100, 255))
    try:
        ImageDraw.Draw(canvas).rectangle([(box[0], box[1]), (box[2], box[3])], outline="blue", width=2)
    except Exception:
        pass
    return np.asarray(canvas)


def draw_clipped(box, size=40):
    canvas = Image.new("RGBA", (size, size), (100, 100, 100, 255))
    corners = drawable_box(box, canvas.size)
    if corners is not None:
        try:
            ImageDraw.Draw(canvas).rectangle(corners, outline="blue", width=2)
        except ValueError:
            pass
    return np.asarray(canvas)


coordinate = (st.integers(-160, 200) | st.floats(-160, 200) | st.sampled_from([-4, -3, -2.5, -1, -0.5, 0, 38.9, 39,
                                                                                 40, 41, 42, 42.5, 43, 44, 1e5, -1e5]))


@given(st.lists(coordinate, min_size=4, max_size=4))
def test_clipped_boxes_draw_the_reference_pixels(box):
    assert np.array_equal(draw_clipped(box), draw_reference(box))


def test_degenerate_boxes_beyond_one_edge_draw_nothing_as_in_the_reference():
    for box in ([10, 100, 20, 101], [10, 1e4, 20, 5e4], [-1e4, 5, -1e3, 30], [50, 50, 45, 60], [10, -60, 20, -50]):
        assert np.array_equal(draw_clipped(box), draw_reference(box)), box


def test_absurd_boxes_render_in_bounded_time():
    answer = json.dumps([{"bbox_2d": b} for b in ([10, 10, 40, 1e12], [10, -1e9, 40, 40], [1e300, 0, 2e300, 5],
                                                  [10, 10, 40, 2**70], [0, 0, 10**400, 5])]).replace("1e+300", "NaN")
    start = time.perf_counter()
    out = render_stage2_images([gray(756), gray(756)], answer, np.zeros((768, 768), bool))
    assert time.perf_counter() - start < 2.0  # the reference: minutes
    arr = np.asarray(out[0])
    assert arr[10, 20].tolist() == [0, 0, 255] and arr[700, 10].tolist() == [0, 0, 255]  # the tall box: top, left side
