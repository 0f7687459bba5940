"""Shared-prefix generation: same greedy tokens as per-sample generate, and one prefix prefill per tile."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from sociomap.reasoning.prefix import group_prefixes, left_pad
from sociomap.reasoning.prompts import stage1_prompt
from sociomap.reasoning.vlm import VLMEngine

QUERIES = ("a", "park and greenspace", "a much longer query about schools, hospitals and the like")


@pytest.fixture(scope="module")
def engine(reasoner):
    """The tiny model with greedy decoding long enough (24 tokens) for positions to matter."""
    return VLMEngine(reasoner.engine.model, reasoner.engine.processor,
                     dataclasses.replace(reasoner.config, greedy=True, max_new_tokens=24))


def tile_images(sizes=(112, 112, 168), seed=1):
    """[map, satellite] per tile; the 168 px tile has a longer prefix than the others."""
    rng = np.random.default_rng(seed)
    return [[Image.fromarray(rng.integers(0, 256, (s, s, 3), dtype=np.uint8)) for _ in range(2)] for s in sizes]


def per_sample_text(engine, text, images):
    """Raw completion (special tokens kept) of one sample through processor + model.generate."""
    inputs = engine.processor(text=[engine.chat_text(text)], images=images, return_tensors="pt")
    with torch.inference_mode():
        out = engine.model.generate(**inputs, generation_config=engine.generation_config)
    return engine.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=False)[0]


def up_to_eos(engine, raw):
    """Cut a raw completion after its first EOS (batched rows that stop early are padded after it)."""
    eos = engine.processor.tokenizer.eos_token
    return raw.split(eos)[0] + eos if eos in raw else raw


@pytest.mark.parametrize("shared", [True, False], ids=["queries-share-tile-images", "own-image-copies"])
def test_greedy_tokens_equal_per_sample_generate(engine, shared):
    tiles = tile_images()
    requests = [(stage1_prompt(q), imgs if shared else [im.copy() for im in imgs]) for imgs in tiles for q in QUERIES]
    texts, images = [t for t, _ in requests], [imgs for _, imgs in requests]
    expected = [per_sample_text(engine, t, imgs) for t, imgs in requests]
    assert [up_to_eos(engine, g.raw) for g in engine.generate(texts, images)] == expected


def test_prefix_is_prefilled_once_per_tile(engine):
    calls, images_seen = [], []
    text_model, visual = engine.model.model.language_model, engine.model.model.visual
    hooks = [text_model.register_forward_pre_hook(
                 lambda m, args, kwargs: calls.append(tuple(kwargs["inputs_embeds"].shape[:2])), with_kwargs=True),
             visual.register_forward_hook(
                 lambda m, args, kwargs, out: images_seen.append(len(kwargs["grid_thw"])), with_kwargs=True)]
    tiles = tile_images(sizes=(112, 112))
    try:
        engine.generate([stage1_prompt(q) for _ in tiles for q in QUERIES], [t for t in tiles for _ in QUERIES])
    finally:
        for hook in hooks:
            hook.remove()
    (prefix_rows, prefix_len), (suffix_rows, suffix_len) = calls[:2]
    assert (prefix_rows, suffix_rows) == (2, 2 * len(QUERIES))  # one prefix row per tile, then every query
    full = engine.processor(text=[engine.chat_text(stage1_prompt(q)) for q in QUERIES], images=tiles[0] * 3,
                            padding=True)["input_ids"]
    assert prefix_len > 2 * 16 and prefix_len + suffix_len == len(full[0])  # prefix holds both images (16 tokens each)
    assert all(shape == (2 * len(QUERIES), 1) for shape in calls[2:])  # then one-token decode steps
    assert images_seen == [4]  # vision tower: map + satellite of each tile, once


def test_groups_share_longest_common_prefix_and_keep_one_own_token():
    rows = [torch.tensor(r) for r in ([1, 9, 9, 5, 6, 7], [1, 9, 9, 5, 6, 8, 8], [1, 9, 9, 5, 6], [1, 9, 9, 5, 6, 7])]
    groups = group_prefixes(rows, keys=["a", "a", "b", "b"], image_end=[3, 3, 3, 3])
    assert groups.row_group == [0, 0, 1, 1] and groups.leader == [0, 2]
    assert groups.length == [5, 4]  # group b: row 2 is a prefix of row 3 but keeps its last token


def test_rows_with_other_tokens_before_the_images_are_not_grouped():
    rows = [torch.tensor([1, 2, 9, 9, 5]), torch.tensor([1, 3, 9, 9, 5])]
    assert group_prefixes(rows, keys=["a", "a"], image_end=[4, 4]).row_group == [0, 1]


def test_left_pad_puts_values_right_and_marks_them():
    padded, mask = left_pad([torch.tensor([[1, 2], [3, 4]]), torch.tensor([[5], [6]])], value=0)
    assert padded.tolist() == [[[1, 2], [0, 5]], [[3, 4], [0, 6]]]
    assert mask.tolist() == [[1, 1], [0, 1]]
