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
