"""VLM engine: 768 -> 756 input size, batched left-padded generation equals one-at-a-time, shared vision."""

import numpy as np
import torch
from PIL import Image

from sociomap.reasoning.prompts import stage1_prompt
from sociomap.reasoning.vlm import model_input_size, resize_for_model


def test_768_tiles_become_756_model_input(reasoner):
    processor = reasoner.engine.processor
    assert model_input_size(processor, 768) == 756
    assert resize_for_model(np.zeros((768, 768, 3), np.uint8), processor).size == (756, 756)
    assert model_input_size(processor, 112) == 112


def naive_generate(engine, text, images):
    """One sample, straight processor + model.generate, as a per-sample port of the reference would do."""
    inputs = engine.processor(text=[engine.chat_text(text)], images=images, return_tensors="pt")
    with torch.inference_mode():
        out = engine.model.generate(**inputs, **engine.generate_kwargs)
    return engine.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]


def pairs(n_tiles=2, queries=("park", "a much longer query about schools")):
    rng = np.random.default_rng(5)
    tiles = [[Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) for _ in range(2)]
             for _ in range(n_tiles)]
    return [(stage1_prompt(q), tile) for tile in tiles for q in queries]


def test_batched_generation_equals_one_at_a_time_under_greedy(reasoner):
    engine = reasoner.engine
    requests = pairs()
    batched = engine.generate([t for t, _ in requests], [imgs for _, imgs in requests])
    assert [g.text for g in batched] == [naive_generate(engine, t, imgs) for t, imgs in requests]


def test_vision_encoder_runs_once_per_distinct_image(reasoner):
    engine, seen = reasoner.engine, []
    hook = engine.model.model.visual.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(kwargs["grid_thw"].shape[0]), with_kwargs=True)
    try:
        requests = pairs(n_tiles=2, queries=("a", "b", "c"))
        engine.generate([t for t, _ in requests], [imgs for _, imgs in requests])
    finally:
        hook.remove()
    assert seen == [4]  # 2 tiles x (map, satellite), not 6 pairs x 2 images
