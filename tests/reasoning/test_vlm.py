"""VLM engine sizing: 768 px tiles become 756 px model input (batching and prefix sharing: test_prefix.py)."""

import numpy as np

from sociomap.reasoning.vlm import model_input_size, resize_for_model


def test_768_tiles_become_756_model_input(reasoner):
    processor = reasoner.engine.processor
    assert model_input_size(processor, 768) == 756
    assert resize_for_model(np.zeros((768, 768, 3), np.uint8), processor).size == (756, 756)
    assert model_input_size(processor, 112) == 112
