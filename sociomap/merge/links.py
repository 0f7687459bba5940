"""sociomap.merge.links: which pieces of one (layer, query) are parts of the same object.

Two pieces are linked when they come from different ``add`` calls and either
* their tiles overlap (a re-run tile, overlapping context, mixed zooms) and their intersection covers
  ``min_overlap_ratio`` of the smaller piece (duplicates), or
* their tiles share an edge and the pieces share more than ``min_seam_share_m`` of boundary along it
  (one object cut by the seam).
Pieces of the same call never link: they are distinct regions of one mask, even when they touch.
Candidates come from an R-tree (shapely STRtree) over the bounds of the only pieces that can link:
those touching their tile border or lying in a tile that another call overlaps.
"""

from __future__ import annotations

import numpy as np
import shapely

from sociomap.merge.config import MergeConfig, mercator_scale
from sociomap.tiling.grid import HALF_WORLD_M


def tile_bounds(z: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, 4) EPSG:3857 (left, bottom, right, top) of tiles given as arrays z, x, y."""
    width = 2 * HALF_WORLD_M / 2.0 ** np.asarray(z, dtype=float)
    left = -HALF_WORLD_M + x * width
    top = HALF_WORLD_M - y * width
    return np.column_stack([left, top - width, left + width, top])


def contested_tiles(z: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N,) bool per call: another call's tile overlaps this one (same tile, ancestor or descendant)."""
    keys = list(zip(z.tolist(), x.tolist(), y.tolist()))
    counts: dict[tuple[int, int, int], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    zooms = sorted({k[0] for k in counts})
    contested = {k for k, n in counts.items() if n > 1}
    if len(zooms) > 1:  # mixed zooms: a tile overlaps any call tile among its ancestors
        for key in counts:
            for zoom in zooms:
                if zoom < key[0]:
                    shift = key[0] - zoom
                    parent = (zoom, key[1] >> shift, key[2] >> shift)
                    if parent in counts:
                        contested.update((key, parent))
    return np.array([k in contested for k in keys], dtype=bool)


def seam_tolerance(call_tiles: np.ndarray, config: MergeConfig) -> float:
    """``seam_tolerance_m`` in EPSG:3857 metres, at the poleward edge of the calls' tiles ((M, 3) z, x, y).

    One value per (layer, query), from the tiles rather than the pieces, so every block of a partitioned
    merge uses the same tolerance as the whole.
    """
    tb = tile_bounds(call_tiles[:, 0], call_tiles[:, 1], call_tiles[:, 2])
    return config.seam_tolerance_m * float(np.max(mercator_scale(tb[:, [1, 3]]), initial=1.0))


def link_pairs(
    geoms: np.ndarray, bounds: np.ndarray, call: np.ndarray, tiles: np.ndarray, contested: np.ndarray,
    config: MergeConfig, tol: float,
) -> np.ndarray:
    """(K, 2) int indices of linked piece pairs.

    Args:
        geoms: (N,) Polygons, EPSG:3857.  bounds: (N, 4) their bounds.  call: (N,) add-call id.
        tiles: (N, 3) int (z, x, y) of each piece's tile.  contested: (N,) bool, tile overlapped by another call.
        tol: ``seam_tolerance`` of the (layer, query), EPSG:3857 metres.
    """
    on_border = near_box_edge(bounds, tile_bounds(tiles[:, 0], tiles[:, 1], tiles[:, 2]), tol)
    cand = np.flatnonzero(on_border | contested)
    if len(cand) < 2:
        return np.empty((0, 2), dtype=np.int64)
    boxes = shapely.box(*(bounds[cand] + [-tol, -tol, tol, tol]).T)
    left, right = shapely.STRtree(boxes).query(boxes, predicate="intersects")
    i, j = cand[left], cand[right]
    keep = (i < j) & (call[i] != call[j])
    i, j = i[keep], j[keep]
    overlap = _tiles_overlap(tiles[i], tiles[j])
    seam = _edge_neighbours(tiles[i], tiles[j])
    linked = np.zeros(len(i), dtype=bool)
    linked[overlap] = _overlap_ratio(geoms[i[overlap]], geoms[j[overlap]]) >= config.min_overlap_ratio
    linked[seam] = _seam_share_m(geoms[i[seam]], geoms[j[seam]], tiles[i[seam]], tiles[j[seam]], tol) > (
        config.min_seam_share_m
    )
    return np.column_stack([i[linked], j[linked]])


def near_box_edge(bounds: np.ndarray, box: np.ndarray, tol: float) -> np.ndarray:
    """(N,) bool: piece bounds ((N, 4), EPSG:3857) within ``tol`` of an edge of ``box`` ((N, 4) or (4,))."""
    box = np.asarray(box, dtype=float).reshape(-1, 4)
    low = ((bounds[:, :2] - box[:, :2]) <= tol).any(axis=1)
    return low | ((box[:, 2:] - bounds[:, 2:]) <= tol).any(axis=1)


def _tiles_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tile a equals, contains or lies inside tile b (arrays of (z, x, y))."""
    zmin = np.minimum(a[:, 0], b[:, 0])
    return ((a[:, 1] >> (a[:, 0] - zmin)) == (b[:, 1] >> (b[:, 0] - zmin))) & (
        (a[:, 2] >> (a[:, 0] - zmin)) == (b[:, 2] >> (b[:, 0] - zmin))
    )


def _edge_neighbours(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tiles of the same zoom sharing an edge (not only a corner)."""
    return (a[:, 0] == b[:, 0]) & (np.abs(a[:, 1] - b[:, 1]) + np.abs(a[:, 2] - b[:, 2]) == 1)


def _overlap_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    smaller = np.minimum(shapely.area(a), shapely.area(b))
    return shapely.area(shapely.intersection(a, b)) / np.maximum(smaller, np.finfo(float).tiny)


def _seam_share_m(a: np.ndarray, b: np.ndarray, ta: np.ndarray, tb: np.ndarray, tol: float) -> np.ndarray:
    """Ground length of boundary that pieces a and b share along the edge between their tiles."""
    bounds_a = tile_bounds(ta[:, 0], ta[:, 1], ta[:, 2])
    bounds_b = tile_bounds(tb[:, 0], tb[:, 1], tb[:, 2])
    lo = np.maximum(bounds_a[:, :2], bounds_b[:, :2])  # the shared edge is the tiles' intersection box
    hi = np.minimum(bounds_a[:, 2:], bounds_b[:, 2:])
    strip = shapely.box(lo[:, 0] - tol, lo[:, 1] - tol, hi[:, 0] + tol, hi[:, 1] + tol)
    edge_a = shapely.intersection(shapely.boundary(a), strip)
    edge_b = shapely.intersection(shapely.boundary(b), strip)
    # Snapping both sides to the tolerance grid makes edges a few 1e-9 m apart coincide.
    shared = shapely.intersection(edge_a, edge_b, grid_size=tol)
    return shapely.length(shared) / mercator_scale((lo[:, 1] + hi[:, 1]) / 2)


def connected_labels(n: int, pairs: np.ndarray) -> np.ndarray:
    """(n,) component label (smallest member index) of each node of an undirected graph given as pairs.

    Union-find by vectorized hooking and pointer jumping; hand-written because scipy (csgraph) is not a
    dependency and a Python loop over 10^6 edges would dominate the merge time.
    """
    labels = np.arange(n)
    if len(pairs) == 0:
        return labels
    i, j = pairs[:, 0], pairs[:, 1]
    while True:
        li, lj = labels[i], labels[j]
        differ = li != lj
        if not differ.any():
            return labels
        np.minimum.at(labels, np.maximum(li, lj)[differ], np.minimum(li, lj)[differ])
        while True:  # compress every path to its root
            parents = labels[labels]
            if np.array_equal(parents, labels):
                break
            labels = parents
