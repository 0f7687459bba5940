"""Stage-2 rendering: blue width-2 boxes and a red alpha-0.4 mask on both images; OpenCV-nearest resizing."""

import cv2
import numpy as np
from PIL import Image

from sociomap.reasoning.render import render_stage2_images, resize_mask_nearest


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
