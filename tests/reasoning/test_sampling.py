"""Decoding is sociomap's own: per-sample seeds independent of batch companions, and a checkpoint's
generation_config.json never changes the tokens."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from sociomap.reasoning import SocioReasoner, TilePair, load_reasoner
from sociomap.reasoning.sampling import RowSampler, request_fields, stage_seed
from tests.reasoning.conftest import make_tiles


def test_stage_seeds_are_per_tile_query_and_stage():
    seeds = {stage_seed(7, key, query, stage) for key in ("16/1/2", "16/1/3") for query in ("park", "school")
             for stage in (1, 2)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert stage_seed(7, "16/1/2", "park", 1) == stage_seed(7, "16/1/2", "park", 1)
    assert stage_seed(None, "16/1/2", "park", 1) is None


def test_row_sampler_rows_do_not_depend_on_each_other():
    """Many steps of a 3-row batch draw, per row, the tokens the row draws alone with its seed."""
    rng = np.random.default_rng(0)
    steps = [torch.tensor(rng.normal(size=(3, 50)), dtype=torch.float32) for _ in range(40)]
    together, alone = RowSampler([11, 12, 13]), [RowSampler([s]) for s in (11, 12, 13)]
    for scores in steps:
        picks = together(None, scores).argmax(-1)
        assert picks.tolist() == [int(alone[r](None, scores[r:r + 1]).argmax()) for r in range(3)]


def test_row_sampler_draws_from_the_softmax():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.0]]))
    sampler = RowSampler([3])
    counts = np.bincount([int(sampler(None, scores).argmax()) for _ in range(6000)], minlength=4)
    assert counts[3] == 0 and np.allclose(counts[:3] / 6000, [0.5, 0.3, 0.2], atol=0.025)


def keyed(tiles, prefix="16/0/"):
    return [TilePair(t.map, t.satellite, key=f"{prefix}{i}") for i, t in enumerate(tiles)]


@pytest.fixture(scope="module")
def sampler(reasoner):
    config = dataclasses.replace(reasoner.config, greedy=False, seed=7, max_new_tokens=12, top_k=0, top_p=1.0)
    return SocioReasoner(config, type(reasoner.engine)(reasoner.engine.model, reasoner.engine.processor, config),
                         reasoner.sam, reasoner.vlm_weights, reasoner.sam_weights)


def test_same_tile_query_seed_gives_the_same_texts_alone_and_in_any_batch(sampler):
    tiles = keyed(make_tiles(3, seed=9))
    alone = sampler.segment(tiles[1:2], ["park"])[0][0]
    crowd = sampler.segment(tiles, ["school", "park", "hospital"])[1][1]
    assert (alone.stage1_text, alone.stage2_text) == (crowd.stage1_text, crowd.stage2_text)
    one_by_one = SocioReasoner(dataclasses.replace(sampler.config, batch_size=1), sampler.engine, sampler.sam,
                               sampler.vlm_weights, sampler.sam_weights)
    assert one_by_one.segment(tiles, ["school", "park", "hospital"])[1][1].stage1_text == crowd.stage1_text


def test_other_keys_queries_and_seeds_sample_other_texts(sampler):
    tiles = keyed(make_tiles(1, seed=9))
    base = sampler.segment(tiles, ["park", "school"])[0]
    moved = sampler.segment(keyed(make_tiles(1, seed=9), prefix="17/0/"), ["park"])[0][0]
    assert base[0].stage1_text != moved.stage1_text
    assert base[0].stage1_text != base[1].stage1_text


def test_request_fields_send_every_sampling_setting():
    fields, extra = request_fields(False, 1.0, 0.8, 100, 2048, 5)
    assert fields == {"temperature": 1.0, "top_p": 0.8, "max_tokens": 2048, "n": 1, "presence_penalty": 0.0,
                      "frequency_penalty": 0.0, "seed": 5}
    assert extra["top_k"] == 100 and extra["repetition_penalty"] == 1.0 and extra["min_p"] == 0.0
    greedy, extra = request_fields(True, 1.0, 0.8, 100, 16, None)
    assert greedy["temperature"] == 0.0 and extra["top_k"] == -1 and "seed" not in greedy


HOSTILE_GENERATION_CONFIG = {"repetition_penalty": 1.3, "do_sample": True, "temperature": 0.05, "top_k": 1,
                             "top_p": 0.01, "no_repeat_ngram_size": 1, "min_new_tokens": 12, "suppress_tokens": [5, 6],
                             "encoder_repetition_penalty": 2.0}


@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "sampled"])
def test_a_checkpoints_generation_config_never_changes_the_tokens(tiny_dir, tiny_config, tmp_path, greedy):
    hostile = tmp_path / "vlm"
    shutil.copytree(tiny_dir / "vlm", hostile)
    path = hostile / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **HOSTILE_GENERATION_CONFIG}))
    config = dataclasses.replace(tiny_config, greedy=greedy, seed=3, max_new_tokens=16, top_k=0, top_p=1.0)
    tiles, queries = keyed(make_tiles(2, seed=4)), ["park", "school"]
    clean = load_reasoner(config).segment(tiles, queries)
    other = load_reasoner(dataclasses.replace(config, model=str(hostile))).segment(tiles, queries)
    for a, b in zip(sum(clean, []), sum(other, [])):
        assert (a.stage1_text, a.stage2_text) == (b.stage1_text, b.stage2_text)
