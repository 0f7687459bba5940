"""Stage-2 input rendering and nearest-neighbour mask resizing, as the reference does them (PIL + numpy only).

Reference `render_image`: stage-1 boxes as blue rectangles of width 2, then the coarse mask composited in red
(255, 0, 0) at alpha int(255 * 0.4), on BOTH model-input images (map, satellite).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from sociomap.reasoning.parse import render_boxes

BOX_COLOR = "blue"
BOX_WIDTH = 2
MASK_RGBA = (255, 0, 0, int(255 * 0.4))


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
            try:
                draw.rectangle([(box[0], box[1]), (box[2], box[3])], outline=BOX_COLOR, width=BOX_WIDTH)
            except (TypeError, ValueError, KeyError, IndexError):  # reference: a box PIL cannot draw is skipped
                continue
        rendered.append(Image.alpha_composite(canvas, overlay).convert("RGB"))
    return rendered
