"""Block-partitioned merge: same objects, geometry and order as merging the whole (layer, query) at once."""

from __future__ import annotations

import geopandas as gpd
import mercantile
import numpy as np
import pandas as pd
import pytest
import shapely

from sociomap.merge import MergeConfig, PieceStore, merge_layers, merge_table, vectorize_mask
from sociomap.merge.blocks import block_runner, merge_query, plan_blocks, split_blocks

SIZE = 768
ORIGIN = mercantile.tile(24.94, 60.17, 16)  # x even: the 4 x 4 test area spans two z15 blocks per axis
NO_CLEANING = MergeConfig(min_area_m2=0, min_hole_m2=0)


def ellipses_mask(seed: int, side: int) -> np.ndarray:
    """(side, side) bool: random ellipses, many across tile seams."""
    rng = np.random.default_rng(seed)
    rows, cols = np.ogrid[:side, :side]
    mask = np.zeros((side, side), dtype=bool)
    for _ in range(40):
        cy, cx = rng.uniform(0, side, size=2)
        ry, rx = rng.uniform(20, 300), rng.uniform(20, 300)
        mask |= ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
    return mask


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """4 x 4 z16 tiles of random ellipses, one tile run twice (duplicates), two queries."""
    tiles = 4
    mask = ellipses_mask(7, tiles * SIZE)
    with PieceStore(tmp_path_factory.mktemp("blocks")) as store:
        for dy in range(tiles):
            for dx in range(tiles):
                tile = mercantile.Tile(ORIGIN.x + dx, ORIGIN.y + dy, 16)
                sub = mask[dy * SIZE:(dy + 1) * SIZE, dx * SIZE:(dx + 1) * SIZE]
                polys = vectorize_mask(sub, tile, NO_CLEANING)
                store.add("park", tile, polys, {"query": "Park", "run_id": "run-1"})
                store.add("park", tile, polys[::2], {"query": "Garden", "run_id": "run-1"})
        rerun = mercantile.Tile(ORIGIN.x + 1, ORIGIN.y + 1, 16)
        store.add("park", rerun, vectorize_mask(mask[SIZE:2 * SIZE, SIZE:2 * SIZE], rerun, NO_CLEANING),
                  {"query": "Park", "run_id": "run-2"})
        yield store


def assert_same_objects(got: gpd.GeoDataFrame, expected: gpd.GeoDataFrame) -> None:
    columns = [c for c in expected.columns if c != "geometry"]
    pd.testing.assert_frame_equal(pd.DataFrame(got[columns]), pd.DataFrame(expected[columns]))
    assert shapely.equals_exact(got.geometry.values, expected.geometry.values, 0).all()


@pytest.mark.parametrize("block_pieces", [1, 50, 10**6], ids=["tile-blocks", "small-blocks", "one-block"])
def test_blocks_give_the_unpartitioned_merge(store, block_pieces):
    with block_runner(1) as run_blocks:
        got = merge_query(store, "park", "Park", NO_CLEANING, run_blocks, block_pieces=block_pieces)
    expected = merge_table("Park", store.read("park", "Park"), NO_CLEANING)
    assert (expected["n_tiles"] > 2).any() and (expected["n_pieces"] > expected["n_tiles"]).any()
    assert_same_objects(got, expected)


def test_object_across_a_block_edge_is_one_feature_in_worker_processes(tmp_path):
    mask = np.zeros((2 * SIZE, 2 * SIZE), dtype=bool)
    mask[600:900, 500:1000] = True  # across both seams of the 2 x 2 tiles
    mask[100:200, 100:200] = True  # inside one tile
    with PieceStore(tmp_path) as store:
        for dy in (0, 1):
            for dx in (0, 1):
                tile = mercantile.Tile(ORIGIN.x + 1 + dx, ORIGIN.y + dy, 16)  # x odd: tiles in two z15 blocks
                sub = mask[dy * SIZE:(dy + 1) * SIZE, dx * SIZE:(dx + 1) * SIZE]
                store.add("park", tile, vectorize_mask(sub, tile, NO_CLEANING), {"query": "Park"})
        assert len(split_blocks(store.read_calls("park", "Park"), store.count_pieces("park", "Park"), 1)) == 4
        with block_runner(2) as run_blocks:
            got = merge_query(store, "park", "Park", NO_CLEANING, run_blocks, block_pieces=1,
                              parallel_min_pieces=0)
        expected = merge_table("Park", store.read("park", "Park"), NO_CLEANING)
    assert sorted(got["n_tiles"]) == [1, 4]
    assert_same_objects(got, expected)


def test_merge_layers_does_not_depend_on_workers(store):
    one = dict(merge_layers(store, NO_CLEANING, workers=1))
    two = dict(merge_layers(store, NO_CLEANING, workers=2))
    assert sorted(one) == ["park"] and set(one["park"]["query"]) == {"Garden", "Park"}
    assert_same_objects(two["park"], one["park"])


def test_a_query_with_tiles_but_no_pieces_gives_an_empty_layer(tmp_path):
    with PieceStore(tmp_path) as store:
        store.add("park", ORIGIN, [], {"query": "Park"})
        ((name, frame),) = merge_layers(store, NO_CLEANING)
        expected = merge_table("Park", store.read("park", "Park"), NO_CLEANING)
    assert name == "park" and len(frame) == 0 and list(frame.columns) == list(expected.columns)


def test_tiles_of_mixed_zooms_nest_in_one_block():
    tiles = np.array([[16, 37308, 18969], [17, 74616, 37938], [17, 74617, 37939], [16, 37309, 18969]])
    zoom, block = plan_blocks(tiles, np.ones(4), block_pieces=1)
    assert zoom == 16 and block[0] == block[1] == block[2] != block[3]
    zoom, block = plan_blocks(tiles, np.ones(4), block_pieces=4)
    assert zoom == 15 and len(set(block.tolist())) == 1
