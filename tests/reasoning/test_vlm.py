"""VLM engine: the reference's pixel limits (768 -> 756, any tile <= 768*768 pixels); repeated images are
preprocessed once."""

import numpy as np
import pytest
import torch
from PIL import Image

from sociomap.reasoning.vlm import MAX_PIXELS, MIN_PIXELS, model_input_size, resize_for_model


@pytest.mark.parametrize("tile, edge", [(768, 756), (1024, 756), (2048, 756), (512, 504), (112, 112), (20, 56)])
def test_model_input_size_follows_the_reference_pixel_limits(tile, edge):
    assert model_input_size(tile) == edge
    assert edge * edge <= MAX_PIXELS and edge * edge >= MIN_PIXELS


def test_loaded_processor_keeps_model_input_images_as_they_are(reasoner):
    """The checkpoint's processor allows 12.8 M pixels; loading sets the reference's limits, so a 1024 tile is
    resized once to 756 (729 merged tokens per image) and the processor leaves that size alone."""
    engine = reasoner.engine
    image = engine.model_images(np.zeros((1024, 1024, 3), np.uint8))
    assert image.size == (756, 756)
    out = engine.processor(text=[engine.chat_text("q")], images=[image, image], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 54, 54]] * 2
    big = engine.processor(text=[engine.chat_text("q")], images=[Image.new("RGB", (1024, 1024))] * 2,
                           return_tensors="pt")
    assert big["image_grid_thw"].tolist() == [[1, 54, 54]] * 2  # the processor's own cap is the reference's too


def test_resize_uses_the_processor_resample(reasoner):
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (768, 768, 3), dtype=np.uint8)
    expected = Image.fromarray(tile).resize((756, 756), resample=Image.BICUBIC)
    assert np.array_equal(np.asarray(reasoner.engine.model_images(tile)), np.asarray(expected))
    assert np.array_equal(np.asarray(resize_for_model(tile)), np.asarray(expected))


def test_repeated_images_are_preprocessed_once_with_the_same_output(reasoner):
    processor, calls = reasoner.engine.processor, []
    rng = np.random.default_rng(4)
    images = [Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) for _ in range(2)]
    text = [reasoner.engine.chat_text(q) for q in ("a", "bb", "ccc")]
    original = processor.image_processor.preprocess
    processor.image_processor.preprocess = lambda imgs, *a, **k: calls.append(len(imgs)) or original(imgs, *a, **k)
    try:
        shared = processor(text=text, images=images * 3, padding=True, return_tensors="pt")
    finally:
        del processor.image_processor.preprocess
    copies = processor(text=text, images=[im.copy() for _ in range(3) for im in images], padding=True,
                       return_tensors="pt")
    assert calls == [2]
    assert all(torch.equal(shared[k], copies[k]) for k in copies)
