"""VLM engine: 768 px tiles give 756 px model input; repeated images are preprocessed once."""

import numpy as np
import torch
from PIL import Image

from sociomap.reasoning.vlm import model_input_size, resize_for_model


def test_768_tiles_become_756_model_input(reasoner):
    processor = reasoner.engine.processor
    assert model_input_size(processor, 768) == 756
    assert resize_for_model(np.zeros((768, 768, 3), np.uint8), processor).size == (756, 756)
    assert model_input_size(processor, 112) == 112


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
