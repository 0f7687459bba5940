"""The two-stage loop: contract, wiring between the stages, per-tile SAM embedding, batching invariance."""

import dataclasses

import numpy as np
import pytest

from sociomap.reasoning import SocioReasoner
from sociomap.reasoning.parse import parse_object_prompts
from sociomap.reasoning.render import resize_mask_nearest
from sociomap.reasoning.sam import segment_objects
from sociomap.reasoning.vlm import Generation
from tests.reasoning.conftest import make_tiles

STAGE1 = '<think>a</think><answer> [{"bbox_2d": [0, 0, 378, 378]}] </answer>'
STAGE2 = '<think>b</think><answer>[{"bbox_2d": [0, 0, 378, 378], "points": [[189, 189], [300, 100]]}]</answer>'


class ScriptedEngine:
    """Stands in for the VLM with fixed answers per stage and records what the loop sent it."""

    def __init__(self, real, stage1=STAGE1, stage2=STAGE2):
        self.processor, self.model, self.answers, self.calls = real.processor, real.model, (stage1, stage2), []
        self.model_images = real.model_images

    def generate(self, texts, images, seeds=None):
        self.calls.append((list(texts), [list(pair) for pair in images]))
        answer = self.answers[0] if texts[0].startswith(
            "You will be given two images. The first is a map and the second is a corresponding satellite image."
            "Please find") else self.answers[1]
        return [Generation(text=answer, raw=answer + "<|im_end|>") for _ in texts]


class CountingSam:
    """Wraps a real SAM backend and counts the expensive and the cheap calls."""

    def __init__(self, real):
        self.real, self.name, self.embeds, self.decodes = real, real.name, 0, 0

    def embed(self, image):
        self.embeds += 1
        return self.real.embed(image)

    def decode(self, embedding, prompts):
        self.decodes += 1
        self.objects = getattr(self, "objects", 0) + len(prompts)
        return self.real.decode(embedding, prompts)


def scripted(reasoner, **answers):
    engine, sam = ScriptedEngine(reasoner.engine, **answers), CountingSam(reasoner.sam)
    return SocioReasoner(reasoner.config, engine, sam, reasoner.vlm_weights, reasoner.sam_weights), engine, sam


def test_result_grid_shapes_and_order(reasoner):
    tiles, queries = make_tiles(2), ["park", "school", "hospital"]
    result = reasoner.segment(tiles, queries)
    assert len(result) == 2 and all([r.query for r in row] == queries for row in result)
    for row in result:
        for r in row:
            assert r.mask.shape == r.coarse_mask.shape == (112, 112) and r.mask.dtype == bool
            assert isinstance(r.stage1_text, str) and isinstance(r.stage2_text, str)


def test_random_model_text_gives_empty_masks_not_errors(reasoner):
    [[r]] = reasoner.segment(make_tiles(1), ["park"])
    assert parse_object_prompts(r.stage1_text) == [] and not r.mask.any() and not r.coarse_mask.any()
    assert r.boxes == [] and r.points == []


def test_stage2_gets_stage1_answer_and_rendered_images(reasoner):
    model, engine, _ = scripted(reasoner)
    model.segment(make_tiles(1, size=768), ["park"])
    (texts1, images1), (texts2, images2) = engine.calls
    assert 'The found bbox(s) are: [{"bbox_2d": [0, 0, 378, 378]}].' in texts2[0]
    assert [im.size for im in images1[0] + images2[0]] == [(756, 756)] * 4
    for rendered in images2[0]:
        # blue box edge on map AND satellite, under the red 40 % coarse-mask overlay where the mask is set
        assert np.asarray(rendered)[0, 100].tolist() in ([0, 0, 255], [102, 0, 153])


def test_final_mask_boxes_and_points_in_tile_pixels(reasoner):
    model, _, sam = scripted(reasoner)
    tiles = make_tiles(1, size=768)
    [[r]] = model.segment(tiles, ["park"])
    assert r.boxes == [[0.0, 0.0, 384.0, 384.0]]
    assert r.points == [[192.0, 192.0], [pytest.approx(300 * 768 / 756), pytest.approx(100 * 768 / 756)]]
    emb = sam.real.embed(np.asarray(model._prepare(tiles[0]).images[1]))
    expected = segment_objects(sam.real, emb, parse_object_prompts(STAGE2))
    assert np.array_equal(r.mask, resize_mask_nearest(expected.mask, 768, 768))
    assert r.scores == expected.scores and len(r.coarse_scores) == 1


def test_sam_embedding_once_per_tile_and_one_decoder_call_per_tile_and_stage(reasoner):
    model, _, sam = scripted(reasoner)
    model.segment(make_tiles(3), ["a", "b", "c", "d"])
    assert sam.embeds == 3
    assert sam.objects == 3 * 4 * 2  # one object per answer, both stages
    assert sam.decodes == 3 * 2  # the 4 queries' objects of a tile share one call per stage


def test_malformed_answers_give_empty_masks(reasoner):
    model, _, _ = scripted(reasoner, stage1="<answer>[{'bbox_2d': 1}]</answer>", stage2="no tags at all")
    [[r]] = model.segment(make_tiles(1), ["park"])
    assert not r.mask.any() and not r.coarse_mask.any() and r.boxes == []


def test_batch_size_does_not_change_greedy_results(reasoner):
    tiles, queries = make_tiles(2, seed=3), ["park", "a longer school query"]
    one = SocioReasoner(dataclasses.replace(reasoner.config, batch_size=1), reasoner.engine, reasoner.sam,
                        reasoner.vlm_weights, reasoner.sam_weights)
    for a, b in zip(sum(one.segment(tiles, queries), []), sum(reasoner.segment(tiles, queries), [])):
        assert (a.stage1_text, a.stage2_text) == (b.stage1_text, b.stage2_text)
        assert np.array_equal(a.mask, b.mask)


def test_seeded_sampling_is_reproducible(reasoner):
    config = dataclasses.replace(reasoner.config, greedy=False, seed=7)
    sampler = SocioReasoner(config, reasoner.engine, reasoner.sam, reasoner.vlm_weights, reasoner.sam_weights)
    tiles = make_tiles(1)
    assert sampler.segment(tiles, ["park"])[0][0].stage1_text == sampler.segment(tiles, ["park"])[0][0].stage1_text


def test_identity_names_everything_that_determines_results(reasoner):
    ident = reasoner.identity()
    assert ident["random_init"] == "true" and ident["sam_backend"] == "hf-sam2"
    assert ident["model_revision"].startswith("sha256:") and ident["sam_revision"].startswith("sha256:")
    assert {"prompts_sha256", "dtype", "code_version", "temperature", "top_p", "top_k", "max_new_tokens",
            "greedy", "seed"} <= set(ident)
    assert all(isinstance(v, str) for v in ident.values())


def test_queries_that_found_nothing_share_their_stage2_prefix(reasoner):
    seen = []
    hook = reasoner.engine.model.model.visual.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(len(kwargs["grid_thw"])), with_kwargs=True)
    try:
        rows = reasoner.segment(make_tiles(2), ["park", "school", "hospital"])
    finally:
        hook.remove()
    assert not any(r.coarse_mask.any() or r.boxes for row in rows for r in row)  # random weights find nothing
    assert seen == [4, 4]  # stage 1 and stage 2: map + satellite of each tile once, not once per query
