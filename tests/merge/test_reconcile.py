"""merge_layers: seam-cut objects, duplicates and the queries of one layer are joined; distinct neighbours are not."""

from __future__ import annotations

import json

import mercantile
import numpy as np
import pytest
import rasterio.features
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import from_bounds

from sociomap.merge import MergeConfig, PieceStore, merge_layers, vectorize_mask
from sociomap.merge.links import connected_labels

SIZE = 768
ORIGIN = mercantile.tile(24.94, 60.17, 16)
NO_CLEANING = MergeConfig(min_area_m2=0, min_hole_m2=0)


def block_tiles() -> list[tuple[mercantile.Tile, int, int]]:
    """The 2 x 2 tiles of the test block with their (row, col) offset in the block mask."""
    return [(mercantile.Tile(ORIGIN.x + dx, ORIGIN.y + dy, 16), dy * SIZE, dx * SIZE) for dy in (0, 1) for dx in (0, 1)]


def merge_block(tmp_path, mask: np.ndarray, config: MergeConfig = NO_CLEANING, **attrs):
    """Cut a (2*SIZE, 2*SIZE) mask into the 2 x 2 block, vectorize, store and merge; return the one layer."""
    with PieceStore(tmp_path) as store:
        for tile, row, col in block_tiles():
            polys = vectorize_mask(mask[row:row + SIZE, col:col + SIZE], tile, config)
            store.add("park", tile, polys, {"query": "Park", "function": "Park and greenspace", **attrs})
        ((name, frame),) = merge_layers(store, config)
    assert name == "park"
    return frame


def test_object_cut_by_four_tiles_becomes_one_with_provenance(tmp_path):
    mask = np.zeros((2 * SIZE, 2 * SIZE), dtype=bool)
    mask[600:900, 600:900] = True
    frame = merge_block(tmp_path, mask, run_id="run-1", model="socio-reasoner-3b", prompts=json.dumps([[1, 2]]))
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["n_tiles"] == 4 and row["n_pieces"] == 4 and bool(row["crosses_seam"])
    assert row["tiles"].count(";") == 3 and row["run_id"] == "run-1" and row["model"] == "socio-reasoner-3b"
    assert set(json.loads(row["prompts"])["Park"]) == set(row["tiles"].split(";"))
    assert frame.geometry.iloc[0].geom_type == "Polygon" and len(frame.geometry.iloc[0].interiors) == 0
    assert row["area_m2"] == pytest.approx(300 * 300 * 0.796**2 * np.cos(np.radians(60.17)) ** 2, rel=0.01)


def test_distinct_neighbours_touching_inside_a_tile_stay_separate(tmp_path):
    left, right = shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)  # share a whole edge
    x, y = mercantile.xy(*mercantile.ul(ORIGIN))
    pieces = [shapely.affinity.translate(g, x + 100, y - 300) for g in (left, right)]
    with PieceStore(tmp_path) as store:
        store.add("park", ORIGIN, pieces, {"query": "Park"})
        ((_, frame),) = merge_layers(store, NO_CLEANING)
    assert len(frame) == 2 and not frame["crosses_seam"].any()


def test_corner_contact_across_a_seam_does_not_link(tmp_path):
    mask = np.zeros((2 * SIZE, 2 * SIZE), dtype=bool)
    mask[700:SIZE, 700:SIZE] = True  # top-left tile, touching the block centre at a corner
    mask[SIZE:800, SIZE:800] = True  # bottom-right tile, diagonal neighbour
    mask[100:200, 700:SIZE] = True  # top-left tile, east edge rows 100-199
    mask[200:300, SIZE:800] = True  # top-right tile, west edge rows 200-299: meet only at one point
    assert len(merge_block(tmp_path, mask)) == 4


def test_seam_share_threshold_is_in_ground_metres(tmp_path):
    mask = np.zeros((2 * SIZE, 2 * SIZE), dtype=bool)
    mask[100:200, 600:SIZE] = True
    mask[195:300, SIZE:900] = True  # shares 5 px of seam: 5 * 0.40 m = 2.0 m on the ground at 60.17 N
    assert len(merge_block(tmp_path / "a", mask)) == 1
    assert len(merge_block(tmp_path / "b", mask, MergeConfig(min_area_m2=0, min_hole_m2=0, min_seam_share_m=1.5))) == 1
    assert len(merge_block(tmp_path / "c", mask, MergeConfig(min_area_m2=0, min_hole_m2=0, min_seam_share_m=2.5))) == 2


def test_duplicates_from_a_rerun_tile_merge_but_partial_overlaps_do_not(tmp_path):
    a = shapely.box(0, 0, 100, 100)
    x, y = mercantile.xy(*mercantile.ul(ORIGIN))
    place = lambda g: shapely.affinity.translate(g, x + 50, y - 400)  # noqa: E731
    with PieceStore(tmp_path) as store:
        store.add("park", ORIGIN, [place(a)], {"query": "Park", "run_id": "run-1"})
        store.add("park", ORIGIN, [place(shapely.box(2, 2, 101, 99))], {"query": "Park", "run_id": "run-2"})
        store.add("park", ORIGIN, [place(shapely.box(90, 0, 190, 100))], {"query": "Park", "run_id": "run-3"})
        ((_, frame),) = merge_layers(store, NO_CLEANING)
    assert sorted(frame["n_pieces"]) == [1, 2]
    dup = frame[frame["n_pieces"] == 2].iloc[0]
    assert dup["run_id"] == "run-1;run-2" and dup["n_tiles"] == 1 and not dup["crosses_seam"]


def test_seams_a_hair_apart_still_link(tmp_path):
    """Masks vectorized with per-tile mercantile transforms leave ~1e-9 m gaps (docs/merge.md, trap 1)."""
    mask = np.zeros((2 * SIZE, 2 * SIZE), dtype=np.uint8)
    mask[300:500, 600:900] = 1
    with PieceStore(tmp_path) as store:
        for tile, row, col in block_tiles():
            sub = mask[row:row + SIZE, col:col + SIZE]
            transform = from_bounds(*mercantile.xy_bounds(tile), SIZE, SIZE)
            polys = [shapely.geometry.shape(g) for g, _ in rasterio.features.shapes(sub, mask=sub > 0, transform=transform)]
            store.add("park", tile, polys, {"query": "Park"})
        ((_, frame),) = merge_layers(store, NO_CLEANING)
    assert len(frame) == 1 and frame.geometry.iloc[0].geom_type == "Polygon"


def test_queries_of_one_layer_are_one_entity_set_and_layers_stay_apart(tmp_path):
    mask = np.zeros((2 * SIZE, 2 * SIZE), dtype=bool)
    mask[600:900, 600:900] = True
    with PieceStore(tmp_path) as store:
        for tile, row, col in block_tiles():
            polys = vectorize_mask(mask[row:row + SIZE, col:col + SIZE], tile, NO_CLEANING)
            store.add("park", tile, polys, {"query": "Park", "query_kind": "class"})
            store.add("park", tile, polys, {"query": "Park and greenspace", "query_kind": "function"})
            store.add("school", tile, polys, {"query": "School"})
        layers = dict(merge_layers(store, NO_CLEANING))
    assert sorted(layers) == ["park", "school"] and len(layers["school"]) == 1
    (park,) = layers["park"].itertuples()
    assert park.query == "Park;Park and greenspace" and park.query_kind == "class;function"
    assert park.n_pieces == 8 and park.n_tiles == 4


def test_small_objects_are_dropped_after_merging(tmp_path):
    mask = np.zeros((2 * SIZE, 2 * SIZE), dtype=bool)
    mask[SIZE - 3:SIZE + 3, 100:110] = True  # 60 px ~ 9.5 m² across the seam: kept per tile, dropped merged
    mask[300:400, 300:400] = True
    frame = merge_block(tmp_path, mask, MergeConfig(min_area_m2=25.0))
    assert len(frame) == 1 and frame["area_m2"].iloc[0] > 1000


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=60))))
def test_connected_labels_match_a_plain_union_find(graph):
    n, edges = graph
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    for a, b in edges:
        parent[find(max(a, b))] = find(min(a, b))
    expected = [min(i for i in range(n) if find(i) == find(k)) for k in range(n)]
    labels = connected_labels(n, np.array(edges, dtype=np.int64).reshape(-1, 2))
    assert labels.tolist() == expected


def test_queries_touching_along_an_edge_are_one_object_at_a_corner_two(tmp_path):
    """The layer is the union of its queries' masks: 4-connected there (an edge) is one object."""
    x, y = mercantile.xy(*mercantile.ul(ORIGIN))
    place = lambda g: shapely.affinity.translate(g, x + 100, y - 300)  # noqa: E731
    with PieceStore(tmp_path) as store:
        store.add("park", ORIGIN, [place(shapely.box(0, 0, 10, 10)), place(shapely.box(30, 0, 40, 10))],
                  {"query": "Park"})
        store.add("park", ORIGIN, [place(shapely.box(10, 0, 20, 10)), place(shapely.box(40, 10, 50, 20))],
                  {"query": "Garden"})
        ((_, frame),) = merge_layers(store, NO_CLEANING)
    assert sorted(frame["query"]) == ["Garden", "Garden;Park", "Park"]
    joined = frame[frame["query"] == "Garden;Park"].geometry.iloc[0]
    assert joined.equals(place(shapely.box(0, 0, 20, 10)))
