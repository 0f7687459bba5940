"""The quadtree of blocks and the hierarchical edge pass: the same objects as linking the whole layer at
once, whatever the block size, the workers or where the steps run; bounded steps for city-sized objects;
mixed-zoom seams; queries of one function reconciled."""

from __future__ import annotations

import os

import geopandas as gpd
import mercantile
import numpy as np
import pandas as pd
import pytest
import shapely

from sociomap.merge import MergeConfig, MergeRunner, ObjectBatch, PieceStore, merge_layers, merge_table, vectorize_mask
from sociomap.merge.links import seam_intervals
from sociomap.merge.plan import plan_layer
from sociomap.merge.runner import LayerStats
from sociomap.merge.store import CallIndex
from sociomap.tiling.grid import global_pixel_to_m
from tests.merge.conftest import raster_ideal

SIZE = 768
ORIGIN = mercantile.tile(24.94, 60.17, 16)
NO_CLEANING = MergeConfig(min_area_m2=0, min_hole_m2=0)


def ellipses_mask(seed: int, side: int, n: int = 40) -> np.ndarray:
    """(side, side) bool: random ellipses, many across tile seams."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((side, side), dtype=bool)
    for _ in range(n):
        cy, cx = rng.uniform(0, side, size=2)
        ry, rx = rng.uniform(20, 300), rng.uniform(20, 300)
        r0, r1, c0, c1 = max(0, int(cy - ry)), int(cy + ry) + 1, max(0, int(cx - rx)), int(cx + rx) + 1
        rows, cols = np.ogrid[r0:min(r1, side), c0:min(c1, side)]
        mask[r0:r1, c0:c1] |= ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
    return mask


def city_block_mask(tiles: int, size: int) -> np.ndarray:
    """(tiles*size)^2 bool: one contiguous district with a ragged outline, courtyards (holes) in every
    tile, some cut by seams, and an island inside the largest courtyard."""
    side = tiles * size
    rows, cols = np.ogrid[:side, :side]
    mask = (np.abs(rows - side / 2) < side * 0.45 + 9 * np.sin(cols / 17.0)) & (cols > 5 + (rows % 40) // 8)
    step = size // 2
    for r in range(step // 2, side, step):  # courtyards: half of them straddle a seam
        for c in range(step // 3, side, step):
            mask[r:r + size // 8, c:c + size // 6] = False
    mask[side // 3:side // 3 + size, side // 3:side // 3 + size] = False  # a park inside the district
    mask[side // 3 + size // 4:side // 3 + size // 2, side // 3 + size // 4:side // 3 + size // 2] = True
    return mask


def store_mask(store: PieceStore, mask: np.ndarray, origin: mercantile.Tile, size: int, query: str = "Park",
               layer: str = "park", kind: str = "class") -> None:
    """Cut a mask into tiles of ``size`` px from ``origin``, vectorize and store each (as a run would)."""
    for dy in range(mask.shape[0] // size):
        for dx in range(mask.shape[1] // size):
            tile = mercantile.Tile(origin.x + dx, origin.y + dy, origin.z)
            sub = mask[dy * size:(dy + 1) * size, dx * size:(dx + 1) * size]
            store.add(layer, tile, vectorize_mask(sub, tile, NO_CLEANING), {"query": query, "query_kind": kind})


def merged(store: PieceStore, layer: str = "park", block_pieces: int = 8_000, workers: int = 1,
           client: object = None, stats: LayerStats | None = None) -> gpd.GeoDataFrame:
    with MergeRunner(workers, client, parallel_min_pieces=0) as runner:
        batches = list(runner.run(store, layer, NO_CLEANING, "EPSG:3857", block_pieces=block_pieces, stats=stats))
    return ObjectBatch.concat(batches, "EPSG:3857").to_frame()


def assert_same_objects(got: gpd.GeoDataFrame, expected: gpd.GeoDataFrame) -> None:
    """Same rows (any order) and topologically equal geometry."""
    def ordered(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        return frame.sort_values(["tiles", "n_pieces", "area_m2"]).reset_index(drop=True)

    got, expected = ordered(got), ordered(expected)
    columns = [c for c in expected.columns if c not in ("geometry", "area_m2")]
    pd.testing.assert_frame_equal(pd.DataFrame(got[columns]), pd.DataFrame(expected[columns]))
    np.testing.assert_allclose(got["area_m2"], expected["area_m2"], rtol=1e-9)
    assert shapely.equals(got.geometry.values, expected.geometry.values).all()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """4 x 4 z16 tiles of random ellipses, one tile run twice (duplicates), two queries of one layer."""
    tiles = 4
    mask = ellipses_mask(7, tiles * SIZE)
    with PieceStore(tmp_path_factory.mktemp("blocks")) as store:
        store_mask(store, mask, ORIGIN, SIZE)
        store_mask(store, mask & ellipses_mask(8, tiles * SIZE), ORIGIN, SIZE, query="Garden")
        rerun = mercantile.Tile(ORIGIN.x + 1, ORIGIN.y + 1, 16)
        store.add("park", rerun, vectorize_mask(mask[SIZE:2 * SIZE, SIZE:2 * SIZE], rerun, NO_CLEANING),
                  {"query": "Park", "run_id": "run-2"})
        yield store


@pytest.mark.parametrize("block_pieces", [1, 50, 10**6], ids=["tile-leaves", "small-leaves", "one-leaf"])
def test_blocks_give_the_unpartitioned_merge(store, block_pieces):
    stats = LayerStats()
    got = merged(store, block_pieces=block_pieces, stats=stats)
    expected = merge_table(store, "park", NO_CLEANING)
    assert (expected["n_tiles"] > 2).any() and (expected["query"] == "Garden;Park").any()
    assert len(stats.steps) > 1 or block_pieces == 10**6
    assert_same_objects(got, expected)


def test_steps_run_in_worker_processes_and_the_output_does_not_depend_on_them(store):
    here = merged(store, block_pieces=50)
    stats = LayerStats()
    there = merged(store, block_pieces=50, workers=2, stats=stats)
    assert os.getpid() not in stats.pids and len(stats.pids) == 2
    pd.testing.assert_frame_equal(pd.DataFrame(there.drop(columns="geometry")),
                                  pd.DataFrame(here.drop(columns="geometry")))  # same rows in the same order
    assert shapely.equals_exact(there.geometry.values, here.geometry.values, 0).all()


def test_steps_run_as_dask_tasks_on_a_cluster(store):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        stats = LayerStats()
        got = merged(store, block_pieces=50, client=client, stats=stats)
        worker_pids = set(client.run(os.getpid).values())
    assert stats.pids <= worker_pids and os.getpid() not in stats.pids
    assert_same_objects(got, merge_table(store, "park", NO_CLEANING))


def test_a_contiguous_object_over_many_blocks_is_one_feature_equal_to_the_raster_ideal(tmp_path):
    """A district over 8 x 8 tiles (courtyards, an island) merged in leaves of ~2 x 2 tiles: one feature
    equal to the raster ideal. No step holds more than a leaf's pieces or the seam intervals along its
    children's edges (O(block side), not the O(side^2) pieces of the object): the bound set by the block size.
    """
    tiles, size = 8, 256
    origin = mercantile.Tile(ORIGIN.x * 4, ORIGIN.y * 4, 18)  # 256 px z18 tiles: the z16 ground resolution
    mask = city_block_mask(tiles, size)
    stats = LayerStats()
    with PieceStore(tmp_path) as store:
        store_mask(store, mask, origin, size)
        index = store.read_index("park")
        per_tile = int(index.n_pieces.max())
        got = merged(store, block_pieces=4 * per_tile, stats=stats)
        rows = store.read_pieces(index.call_id)
        calls = store.read_calls(index.call_id)
    ideal = raster_ideal(mask, origin.x * size, origin.y * size, origin.z, size)
    main = ideal[np.argmax(shapely.area(ideal))]
    assert len(main.interiors) > 50
    feature = got.geometry.values[np.argmax(got["area_m2"])]
    assert len(got) == len(ideal) and got["n_tiles"].max() == tiles * tiles
    assert shapely.equals(feature, main) and shapely.area(shapely.symmetric_difference(feature, main)) < 1e-6
    # Bounds: leaves hold at most block_pieces; a join holds the intervals on its children's edges only.
    tiles_arr = np.array([(calls[c].z, calls[c].x, calls[c].y) for c in rows.call])
    intervals = seam_intervals(shapely.from_wkb(rows.wkb), rows.piece_id, tiles_arr, 0.02)
    per_side = np.unique(np.column_stack([intervals.line, intervals.side, tiles_arr[np.searchsorted(
        rows.piece_id, intervals.piece)][:, 1:]]), axis=0, return_counts=True)[1].max()
    leaves = [s for s in stats.steps if s.kind == "leaf"]
    joins = [s for s in stats.steps if s.kind == "node"]
    assert len(leaves) >= 16 and len(joins) >= 5
    assert stats.max_leaf_pieces <= 4 * per_tile
    assert stats.max_node_intervals <= 4 * 2 * tiles * per_side  # the 4 children's perimeters, in tile sides
    assert stats.max_node_intervals < len(rows) / 2 < len(intervals)


def test_a_z16_tile_beside_z17_tiles_joins_across_the_seam(tmp_path):
    """West: one z16 tile; east: the four z17 children of its neighbour. A box across the seam, drawn on
    z16 pixels (so on z17 pixels too), comes back as one feature equal to the box."""
    west, east = ORIGIN, mercantile.Tile(ORIGIN.x + 1, ORIGIN.y, 16)
    mask16 = np.zeros((SIZE, SIZE), dtype=bool)
    mask16[300:700, 500:] = True
    mask17 = np.zeros((2 * SIZE, 2 * SIZE), dtype=bool)  # the east tile at z17 resolution
    mask17[600:1400, :864] = True  # the same rows, and 432 z16 px to the east
    with PieceStore(tmp_path) as store:
        store.add("park", west, vectorize_mask(mask16, west, NO_CLEANING), {"query": "Park"})
        for j in (0, 1):
            for i in (0, 1):
                child = mercantile.Tile(2 * east.x + i, 2 * east.y + j, 17)
                sub = mask17[j * SIZE:(j + 1) * SIZE, i * SIZE:(i + 1) * SIZE]
                store.add("park", child, vectorize_mask(sub, child, NO_CLEANING), {"query": "Park"})
        (frame,) = [f for _, f in merge_layers(store, NO_CLEANING)]
    col, row = west.x * SIZE, west.y * SIZE
    x0, y0 = global_pixel_to_m(col + 500, row + 300, 16, SIZE)
    x1, y1 = global_pixel_to_m(col + SIZE + 432, row + 700, 16, SIZE)
    assert len(frame) == 1 and frame["n_tiles"].iloc[0] == 5
    assert shapely.equals(frame.geometry.iloc[0], shapely.box(x0, y1, x1, y0))


def test_two_queries_of_one_function_give_no_overlapping_features(tmp_path):
    """"park" and "park and greenspace" find overlapping, different regions on 3 x 3 tiles: one entity set,
    equal to the raster ideal of either mask, no two features overlapping, each listing its queries."""
    tiles = 3
    park, green = ellipses_mask(1, tiles * SIZE, 25), ellipses_mask(2, tiles * SIZE, 25)
    with PieceStore(tmp_path) as store:
        store_mask(store, park, ORIGIN, SIZE, query="Park")
        store_mask(store, green, ORIGIN, SIZE, query="Park and greenspace", kind="function")
        (frame,) = [f for _, f in merge_layers(store, NO_CLEANING)]
    geoms = frame.geometry.values
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = left < right
    assert (shapely.area(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]])) < 1e-6).all()
    ideal = raster_ideal(park | green, ORIGIN.x * SIZE, ORIGIN.y * SIZE, 16)
    assert len(frame) == len(ideal)
    assert shapely.equals(shapely.union_all(geoms), shapely.union_all(ideal))
    both = frame[frame["query"] == "Park;Park and greenspace"]
    assert len(both) > 0 and set(both["query_kind"]) == {"class;function"}
    assert {"Park", "Park and greenspace"} <= set(frame["query"])  # some found by one query only


def test_a_layer_with_tiles_but_no_pieces_gives_an_empty_frame(tmp_path):
    with PieceStore(tmp_path) as store:
        store.add("park", ORIGIN, [], {"query": "Park"})
        ((name, frame),) = merge_layers(store, NO_CLEANING)
    assert name == "park" and len(frame) == 0 and "query_kind" in frame.columns


def test_the_plan_nests_mixed_zooms_in_one_leaf_and_bounds_leaves():
    tiles = np.array([[16, 37308, 18969], [17, 74616, 37938], [17, 74617, 37939], [16, 37309, 18969],
                      [16, 37310, 18969]])
    index = CallIndex(np.arange(5), tiles, np.array([1, 1, 1, 1, 5]))
    plan = plan_layer(index, block_pieces=1)
    leaves = [s for s in plan if not s.children]
    assert [sorted(s.calls.tolist()) for s in leaves] == [[0, 1, 2], [3], [4]]  # a z16 tile and its z17 children
    assert not plan[-1].children == () and plan[-1].boundary is None  # post-order: the root is last
    for step in plan:
        assert all(c < plan.index(step) for c in step.children)
    assert plan_layer(index, block_pieces=100)[0].calls.tolist() == [0, 1, 2, 3, 4]
