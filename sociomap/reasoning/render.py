"""Stage-2 input rendering and nearest-neighbour mask resizing, as the reference does them (PIL + numpy only).

Reference `render_image`: stage-1 boxes as blue rectangles of width 2, then the coarse mask composited in red
(255, 0, 0) at alpha int(255 * 0.4), on BOTH model-input images (map, satellite).

Boxes come from the model (untrusted): each coordinate is clipped to a few pixels beyond the image before PIL sees
it (`drawable_box`), so a huge one costs nothing (PIL walks every row of a 1e9-tall box: 11 s; NaN: 35 s), and the
drawn pixels are the same as the reference's for every box PIL draws in defined behaviour (|coordinate| < 2**31).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from sociomap.reasoning.parse import render_boxes

BOX_COLOR = "blue"
BOX_WIDTH = 2
MASK_RGBA = (255, 0, 0, int(255 * 0.4))


def drawable_box(box: list, size: tuple[int, int]) -> list[tuple[float, float]] | None:
    """A stage-1 box as PIL rectangle corners, clipped so PIL draws exactly the reference's pixels, or None.

    PIL truncates each coordinate toward zero, refuses x1 < x0 or y1 < y0 (compared before truncation) and draws
    an outline of width w inside the box: rows y0..y0+w-1 and y1-w+1..y1, columns likewise, and side lines from
    y0+w to y1-w (drawn even when reversed). With every coordinate clipped to [-(w+1), size-1+(w+1)] each of those
    lines that moved lies wholly outside the (width, height) = size image, the order of the corners is kept (or both clip to one value,
    when both are beyond one edge and nothing of the box shows), so the visible pixels are unchanged.
    Non-numbers give None (PIL raises; the reference skips the box), and so do NaN and infinities (deviation: the
    reference hands them to C code whose float-to-int conversion is undefined, and stalls up to 35 s). Beyond
    2**31 PIL's conversion is undefined too: there the clipped box draws what a box at the clip bound draws.
    """
    if not all(isinstance(c, (int, float)) for c in box):
        return None
    try:
        coords = [float(c) for c in box]
    except OverflowError:  # an integer beyond float range: PIL raises too, and the reference skips the box
        return None
    if not all(math.isfinite(c) for c in coords):
        return None
    margin = BOX_WIDTH + 1
    x0, y0, x1, y1 = (min(max(c, -margin), edge - 1 + margin) for c, edge in zip(coords, size * 2))
    return [(x0, y0), (x1, y1)]


def resize_mask_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) mask -> (height, width) with OpenCV INTER_NEAREST's sampling (src = floor(dst * src_len / dst_len)).

    Written in numpy so the reasoning package needs no OpenCV; the tests check it against cv2.resize.
    """
    rows = np.minimum(np.floor(np.arange(height) * (mask.shape[0] / height)).astype(np.int64), mask.shape[0] - 1)
    cols = np.minimum(np.floor(np.arange(width) * (mask.shape[1] / width)).astype(np.int64), mask.shape[1] - 1)
    return mask[rows[:, None], cols[None, :]]


def _mask_overlay(mask: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """RGBA overlay (w, h) = size: red at 40 % where the mask is set, transparent elsewhere."""
    width, height = size
    mask = resize_mask_nearest(mask, height, width)
    overlay = np.zeros((height, width, 4), dtype=np.uint8)
    overlay[mask > 0] = MASK_RGBA
    return Image.fromarray(overlay, "RGBA")


def render_stage2_images(images: list[Image.Image], stage1_answer: str, coarse_mask: np.ndarray) -> list[Image.Image]:
    """Draw stage-1 boxes and the coarse mask on each model-input image (RGB, model-input size) -> RGB images.

    `stage1_answer` is the raw <answer> text of stage 1 (boxes in model-input pixels); `coarse_mask` is the
    stage-1 mask (H, W) bool at tile size, resized nearest to the image size as the reference does.
    """
    boxes = render_boxes(stage1_answer)
    if not boxes and not np.any(coarse_mask):
        # Nothing to draw: compositing would return the same pixels (test_render checks it). Handing back the same
        # objects lets the queries of a tile that found nothing share their stage-2 prompt prefix (prefix.py).
        return list(images)
    overlay = _mask_overlay(np.asarray(coarse_mask), images[0].size)
    rendered = []
    for image in images:
        canvas = image.convert("RGBA")
        draw = ImageDraw.Draw(canvas)
        for box in boxes:
            corners = drawable_box(box, canvas.size)
            if corners is None:
                continue
            try:
                draw.rectangle(corners, outline=BOX_COLOR, width=BOX_WIDTH)
            except ValueError:  # reference: a box PIL refuses (x1 < x0 or y1 < y0) is skipped
                continue
        rendered.append(Image.alpha_composite(canvas, overlay).convert("RGB"))
    return rendered
