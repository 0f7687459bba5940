"""sociomap.merge.links: which pieces of one layer (socio-function) are parts of the same object.

Two pieces from different ``add`` calls are linked when
* their tiles share an edge (any zooms: a z16 tile beside a z17 tile too) and the pieces share more
  than ``min_seam_share_m`` of boundary along it (one object cut by the seam), or
* their tiles overlap (a re-run tile, overlapping context, mixed zooms) and either the two calls ran
  different queries of the layer and the pieces overlap or share an edge (the layer is the union of
  its queries' masks: 4-connected there means one object), or the same query and their intersection
  covers ``min_overlap_ratio`` of the smaller piece (a duplicate).
Pieces of the same call never link: they are distinct regions of one mask.

Seam links are found from *seam intervals*: the stretches of a piece's boundary lying on a side of its
tile. A tile side is a line of the global tile grid, named by an integer at ``REF_ZOOM``, so the two
sides of a seam meet on the same key whatever their zooms, and linking is a 1-D interval overlap
(no polygon overlay). Intervals are all a block carries up the merge hierarchy (``tasks``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from sociomap.merge.config import MergeConfig, mercator_scale
from sociomap.tiling.grid import HALF_WORLD_M

#: Tile-grid lines are named at this zoom (finer than any tile), so every zoom's lines are integers.
REF_ZOOM = 30
#: ``line`` keys of horizontal lines (constant y) are offset by this; vertical lines (constant x) are not.
HORIZONTAL = 1 << 31


def tile_bounds(z: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, 4) EPSG:3857 (left, bottom, right, top) of tiles given as arrays z, x, y."""
    width = 2 * HALF_WORLD_M / 2.0 ** np.asarray(z, dtype=float)
    left = -HALF_WORLD_M + x * width
    top = HALF_WORLD_M - y * width
    return np.column_stack([left, top - width, left + width, top])


def tiles_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) bool: tile a equals, contains or lies inside tile b ((N, 3) arrays of z, x, y)."""
    zmin = np.minimum(a[:, 0], b[:, 0])
    da, db = a[:, 0] - zmin, b[:, 0] - zmin
    return ((a[:, 1] >> da) == (b[:, 1] >> db)) & ((a[:, 2] >> da) == (b[:, 2] >> db))


def contested_tiles(tiles: np.ndarray) -> np.ndarray:
    """(M,) bool per call tile ((M, 3) z, x, y): another call's tile overlaps it (same, ancestor or descendant)."""
    keys = [tuple(t) for t in np.asarray(tiles).tolist()]
    counts: dict[tuple[int, int, int], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    contested = {k for k, n in counts.items() if n > 1}
    zooms = sorted({k[0] for k in counts})
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

    One value per layer, from the tiles rather than the pieces, so every block uses the same tolerance.
    """
    call_tiles = np.asarray(call_tiles).reshape(-1, 3)
    tb = tile_bounds(call_tiles[:, 0], call_tiles[:, 1], call_tiles[:, 2])
    return config.seam_tolerance_m * float(np.max(mercator_scale(tb[:, [1, 3]]), initial=1.0))


def near_box_edge(bounds: np.ndarray, box: np.ndarray, tol: float) -> np.ndarray:
    """(N,) bool: piece bounds ((N, 4), EPSG:3857) within ``tol`` of an edge of ``box`` ((N, 4) or (4,))."""
    box = np.asarray(box, dtype=float).reshape(-1, 4)
    low = ((bounds[:, :2] - box[:, :2]) <= tol).any(axis=1)
    return low | ((box[:, 2:] - bounds[:, 2:]) <= tol).any(axis=1)


@dataclass(frozen=True)
class SeamIntervals:
    """Stretches of piece boundary on tile sides, column-wise (K rows).

    Attributes:
        piece: (K,) int64 id of the piece (store row id).
        line: (K,) int64 tile-grid line: vertical lines are x at ``REF_ZOOM``, horizontal ones
            ``HORIZONTAL`` + y at ``REF_ZOOM``.
        side: (K,) int8, 0 for a piece west of / north of the line, 1 for east of / south of it.
        lo, hi: (K,) float64, the stretch along the line (EPSG:3857 y for vertical, x for horizontal lines).
        at: (K,) float64, the line's own coordinate (EPSG:3857 x for vertical, y for horizontal lines).
    """

    piece: np.ndarray
    line: np.ndarray
    side: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    at: np.ndarray

    def __len__(self) -> int:
        return len(self.piece)

    def take(self, keep: np.ndarray) -> SeamIntervals:
        return SeamIntervals(*(getattr(self, f)[keep] for f in _FIELDS))

    @staticmethod
    def concat(parts: list[SeamIntervals]) -> SeamIntervals:
        parts = [p for p in parts if len(p)] or [EMPTY_INTERVALS]
        return SeamIntervals(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("piece", "line", "side", "lo", "hi", "at")
EMPTY_INTERVALS = SeamIntervals(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int8),
                                np.empty(0), np.empty(0), np.empty(0))


def block_lines(z: int, x: int, y: int) -> np.ndarray:
    """(4,) int64 line keys of a block tile's west, east, north and south sides."""
    shift = REF_ZOOM - z
    return np.array([x << shift, (x + 1) << shift, HORIZONTAL + (y << shift), HORIZONTAL + ((y + 1) << shift)],
                    dtype=np.int64)


def seam_intervals(geoms: np.ndarray, piece_ids: np.ndarray, tiles: np.ndarray, tol: float) -> SeamIntervals:
    """Seam intervals of pieces (Polygons in EPSG:3857; tiles (N, 3) z, x, y): boundary segments whose two
    ends lie within ``tol`` of a side of the piece's tile, clipped to that side, longer than ``tol``.
    """
    if len(geoms) == 0:
        return EMPTY_INTERVALS
    parts, part_of = shapely.get_parts(geoms, return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    coords, coord_of = shapely.get_coordinates(rings, return_index=True)
    same_ring = coord_of[1:] == coord_of[:-1]
    a, b = coords[:-1][same_ring], coords[1:][same_ring]
    owner = part_of[ring_of[coord_of[:-1][same_ring]]]  # index into geoms of each segment
    seg_tiles = tiles[owner]
    tb = tile_bounds(seg_tiles[:, 0], seg_tiles[:, 1], seg_tiles[:, 2])
    shift = REF_ZOOM - seg_tiles[:, 0]
    x, y = seg_tiles[:, 1], seg_tiles[:, 2]
    out = []
    # (coordinate across the side, coordinate along it, side value, extent along, line key, side code)
    for across, along, value, (lo_b, hi_b), key, side in (
        (0, 1, tb[:, 0], (tb[:, 1], tb[:, 3]), x << shift, 1),  # west side: piece east of the line
        (0, 1, tb[:, 2], (tb[:, 1], tb[:, 3]), (x + 1) << shift, 0),  # east side
        (1, 0, tb[:, 3], (tb[:, 0], tb[:, 2]), HORIZONTAL + (y << shift), 1),  # north side: piece south of it
        (1, 0, tb[:, 1], (tb[:, 0], tb[:, 2]), HORIZONTAL + ((y + 1) << shift), 0),  # south side
    ):
        on = (np.abs(a[:, across] - value) <= tol) & (np.abs(b[:, across] - value) <= tol)
        lo = np.maximum(np.minimum(a[on, along], b[on, along]), lo_b[on])
        hi = np.minimum(np.maximum(a[on, along], b[on, along]), hi_b[on])
        long = hi - lo > tol
        idx = np.flatnonzero(on)[long]
        out.append(SeamIntervals(piece_ids[owner[idx]], key[idx].astype(np.int64),
                                 np.full(len(idx), side, np.int8), lo[long], hi[long], value[idx]))
    return SeamIntervals.concat(out)


def seam_pairs(iv: SeamIntervals, config: MergeConfig, tol: float) -> np.ndarray:
    """(K, 2) piece ids linked across a seam: opposite sides of one line sharing > ``min_seam_share_m``.

    Overlaps of ``tol`` or less are contacts at a point (tile corners) and never count.
    """
    if len(iv) < 2:
        return np.empty((0, 2), dtype=np.int64)
    # Each interval is a thin box at its line's key: the R-tree finds stretches on the same line that overlap.
    boxes = shapely.box(iv.lo, iv.line, iv.hi, iv.line + 0.5)
    i, j = shapely.STRtree(boxes).query(boxes)
    keep = (iv.side[i] == 0) & (iv.side[j] == 1) & (iv.line[i] == iv.line[j])
    i, j = i[keep], j[keep]
    lo, hi = np.maximum(iv.lo[i], iv.lo[j]), np.minimum(iv.hi[i], iv.hi[j])
    keep = hi - lo > tol
    i, j, lo, hi = i[keep], j[keep], lo[keep], hi[keep]
    vertical = iv.line[i] < HORIZONTAL
    ground = (hi - lo) / mercator_scale(np.where(vertical, (lo + hi) / 2, iv.at[i]))
    pairs = np.column_stack([iv.piece[i], iv.piece[j]])
    if len(pairs) == 0:
        return pairs.astype(np.int64)
    unique, which = np.unique(pairs, axis=0, return_inverse=True)
    shared = np.bincount(which.reshape(-1), weights=ground, minlength=len(unique))
    return unique[shared > config.min_seam_share_m].astype(np.int64)


def overlap_pairs(
    geoms: np.ndarray, bounds: np.ndarray, call: np.ndarray, query: np.ndarray, tiles: np.ndarray,
    candidates: np.ndarray, config: MergeConfig,
) -> np.ndarray:
    """(K, 2) indices of linked pieces whose tiles overlap (see the module docstring).

    Args:
        geoms: (N,) Polygons, EPSG:3857.  bounds: (N, 4) their bounds.  call: (N,) call id.
        query: (N,) query text.  tiles: (N, 3) z, x, y.  candidates: (N,) bool, tile overlapped by another call.
    """
    cand = np.flatnonzero(candidates)
    if len(cand) < 2:
        return np.empty((0, 2), dtype=np.int64)
    boxes = shapely.box(*bounds[cand].T)
    left, right = shapely.STRtree(boxes).query(boxes, predicate="intersects")
    i, j = cand[left], cand[right]
    keep = (i < j) & (call[i] != call[j])
    i, j = i[keep], j[keep]
    keep = tiles_overlap(tiles[i], tiles[j])
    i, j = i[keep], j[keep]
    linked = np.zeros(len(i), dtype=bool)
    same = query[i] == query[j]
    linked[same] = _overlap_ratio(geoms[i[same]], geoms[j[same]]) >= config.min_overlap_ratio
    if (~same).any():
        # DE-9IM: interiors meet (overlap) or boundaries share a line (edge contact); a point is not enough.
        relation = shapely.relate(geoms[i[~same]], geoms[j[~same]])
        linked[~same] = [r[0] == "2" or r[4] == "1" for r in relation]
    return np.column_stack([i[linked], j[linked]])


def _overlap_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    smaller = np.minimum(shapely.area(a), shapely.area(b))
    return shapely.area(shapely.intersection(a, b)) / np.maximum(smaller, np.finfo(float).tiny)


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
