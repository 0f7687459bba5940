"""The model segmenter as the pipeline drives it: per-sample seeds follow the tile and the query, not the batch."""

from __future__ import annotations

import mercantile
import numpy as np
import pytest

from sociomap.pipeline.segmenters import SegmenterSpec, TileInputs, get_segmenter
from sociomap.taxonomy import resolve_queries


@pytest.fixture(scope="module")
def sampling_segmenter(tiny_checkpoint):
    from sociomap.reasoning import ReasonerConfig

    config = ReasonerConfig(model=str(tiny_checkpoint / "vlm"), sam=str(tiny_checkpoint / "sam2"), greedy=False,
                            temperature=1.0, seed=7, max_new_tokens=24, device="cpu", batch_size=4)
    return get_segmenter(SegmenterSpec(kind="socioreasoner", reasoner=config))


def _tiles() -> list[TileInputs]:
    """Two tiles with the SAME pixels at different places: only their keys tell them apart."""
    rng = np.random.default_rng(0)
    sat = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    map_rgb = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    return [TileInputs(mercantile.Tile(x, 100, 8), sat, map_rgb) for x in (10, 11)]


def _texts(segmenter, tiles, classes):
    queries = resolve_queries(classes)
    rows = segmenter.segment(tiles, queries)
    return {(t.tile, q.text): (s.meta["stage1_text"], s.meta["stage2_text"])
            for t, row in zip(tiles, rows) for q, s in zip(queries, row)}


def test_a_sampled_answer_does_not_depend_on_its_batch_companions(sampling_segmenter):
    tiles = _tiles()
    alone = _texts(sampling_segmenter, tiles, ["park"])
    shared = _texts(sampling_segmenter, tiles[::-1], ["park", "school"])  # other order, another class beside
    assert {k: v for k, v in shared.items() if k[1] == "Park"} == alone


def test_the_seed_follows_the_tile_key(sampling_segmenter):
    (a, b) = _texts(sampling_segmenter, _tiles(), ["park"]).values()
    assert a != b, "identical pixels at two tiles must be sampled with two seeds (the tile key reaches the model)"


def test_result_confidence_is_sam_score_times_stage_agreement():
    from sociomap.reasoning.confidence import result_confidence

    final = np.zeros((4, 4), bool)
    final[:2, :] = True  # 8 pixels
    coarse = np.zeros((4, 4), bool)
    coarse[:1, :] = True  # 4 pixels inside the final mask: IoU 4/8
    assert result_confidence(final, coarse, [0.9, 0.7]) == pytest.approx(0.8 * 0.5)
    assert result_confidence(final, final, [1.7]) == 1.0  # scores are clipped to 0..1
    assert result_confidence(np.zeros((4, 4), bool), coarse, [0.9]) is None  # nothing found, no feature


def test_every_model_result_carries_a_confidence(sampling_segmenter):
    (row, *_) = sampling_segmenter.segment(_tiles(), resolve_queries(["park"]))
    for seg in row:
        c = seg.meta["confidence"]
        assert (c is None) == (not seg.mask.any()) and (c is None or 0.0 <= c <= 1.0)
