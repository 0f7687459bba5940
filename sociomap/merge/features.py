"""sociomap.merge.features: finished objects -> feature rows (provenance, ground area, output CRS, WKB).

A finished object is a polygon (EPSG:3857) and the ``add`` calls whose pieces it was merged from; its
row lists the queries that found it, its tiles, the model's prompts and reasoning pointers. Rows are
built column-wise for the common one-call object; objects of several calls loop in Python.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np
import shapely

from sociomap.merge.clean import fill_small_holes, ground_area_m2
from sociomap.merge.config import EARTH_RADIUS_M, MergeConfig
from sociomap.merge.store import Call
from sociomap.tiling.grid import HALF_WORLD_M

if TYPE_CHECKING:  # geopandas is only needed by to_frame: merge workers do without it (~100 MB each)
    import geopandas as gpd

#: Output columns besides geometry, in order.
COLUMNS = ("query", "query_kind", "function", "area_m2", "n_tiles", "n_pieces", "tiles", "run_id", "model",
           "prompts", "reasoning", "crosses_seam", "confidence")
_DTYPES = {"area_m2": np.float64, "n_tiles": np.int64, "n_pieces": np.int64, "crosses_seam": bool,
           "confidence": np.float64}
#: Seam edges a hair apart leave a union of connected pieces in parts; it is redone on this grid (metres).
UNION_GRID_M = 1e-3


@dataclass(frozen=True)
class Members:
    """The calls of K objects in CSR form: object k has calls ``call[ptr[k]:ptr[k + 1]]`` (unique)."""

    ptr: np.ndarray
    call: np.ndarray

    @staticmethod
    def from_pairs(obj: np.ndarray, call: np.ndarray, n: int) -> Members:
        """From (object, call) pairs, one per piece (duplicates allowed), for objects 0..n-1."""
        pairs = np.unique(np.column_stack([obj, call]).reshape(-1, 2), axis=0)
        ptr = np.searchsorted(pairs[:, 0], np.arange(n + 1))
        return Members(ptr.astype(np.int64), pairs[:, 1].astype(np.int64))

    def of(self, k: int) -> np.ndarray:
        return self.call[self.ptr[k]:self.ptr[k + 1]]


@dataclass
class ObjectBatch:
    """Finished features, column-wise: geometry as WKB in ``crs``, the ``COLUMNS`` as arrays."""

    geometry: np.ndarray
    columns: dict[str, np.ndarray]
    crs: str

    def __len__(self) -> int:
        return len(self.geometry)

    @staticmethod
    def empty(crs: str) -> ObjectBatch:
        return ObjectBatch(np.empty(0, dtype=object),
                           {c: np.empty(0, dtype=_DTYPES.get(c, object)) for c in COLUMNS}, crs)

    @staticmethod
    def concat(batches: list[ObjectBatch], crs: str) -> ObjectBatch:
        batches = [b for b in batches if len(b)] or [ObjectBatch.empty(crs)]
        return ObjectBatch(np.concatenate([b.geometry for b in batches]),
                           {c: np.concatenate([b.columns[c] for b in batches]) for c in COLUMNS}, crs)

    def to_frame(self) -> gpd.GeoDataFrame:
        """A GeoDataFrame (for small in-memory uses: tests, ``merge_layers``)."""
        import geopandas as gpd
        import pandas as pd

        frame = pd.DataFrame({c: self.columns[c] for c in COLUMNS})
        return gpd.GeoDataFrame(frame, geometry=shapely.from_wkb(self.geometry), crs=self.crs)


def union_parts(parts: np.ndarray, inner_zoom: int | None = None, tol: float = 0.0) -> shapely.Geometry:
    """Union of linked (hence connected) polygons; redone on a 1 mm grid when seams a hair apart split it.

    With ``inner_zoom`` (only for parts that do not overlap: pieces of different tiles, partials of
    different blocks), holes lying inside one tile of that zoom's grid, more than ``tol`` from its edges,
    are set aside and put back afterwards: a seam union changes nothing away from tile edges, and a
    district with 10^5 courtyards would otherwise go through every overlay of the merge hierarchy.
    """
    if len(parts) == 1:
        return parts[0]
    if inner_zoom is not None:
        merged = _union_without_inner_holes(parts, inner_zoom, tol)
        if merged is not None:
            return merged
    merged = shapely.union_all(parts)
    if merged.geom_type == "MultiPolygon":
        merged = shapely.union_all(parts, grid_size=UNION_GRID_M)
    return merged


def _union_without_inner_holes(parts: np.ndarray, zoom: int, tol: float) -> shapely.Geometry | None:
    if not (shapely.get_type_id(parts) == shapely.GeometryType.POLYGON).all():
        return None
    if not shapely.get_num_interior_rings(parts).any():  # most seam groups: nothing to set aside
        return None
    rings, owner = shapely.get_rings(parts, return_index=True)
    shell = np.r_[True, owner[1:] != owner[:-1]]
    width = 2 * HALF_WORLD_M / 2.0**zoom
    b = shapely.bounds(rings)
    col = np.floor((b[:, [0, 2]] + [-tol, tol] + HALF_WORLD_M) / width)
    row = np.floor((HALF_WORLD_M - b[:, [3, 1]] + [-tol, tol]) / width)
    inner = ~shell & (col[:, 0] == col[:, 1]) & (row[:, 0] == row[:, 1])
    if not inner.any():
        return None
    merged = shapely.union_all(shapely.polygons(rings[~inner], indices=owner[~inner]))
    if merged.geom_type != "Polygon":
        return None  # seams a hair apart: the caller redoes the whole union
    kept = shapely.get_rings(merged)
    return shapely.polygons(np.concatenate([kept, rings[inner]]), indices=np.zeros(len(kept) + inner.sum(), int))[0]


def finish_objects(
    geoms: np.ndarray, members: Members, n_pieces: np.ndarray, calls: dict[int, Call], config: MergeConfig,
    crs: str,
) -> ObjectBatch:
    """Feature rows of finished objects (geometry EPSG:3857): holes and small objects cleaned, provenance,
    ground area, geometry reprojected to ``crs`` as WKB.
    """
    geoms = fill_small_holes(np.asarray(geoms, dtype=object), config.min_hole_m2)
    area = ground_area_m2(geoms)
    kept = np.flatnonzero(area >= config.min_area_m2)
    geoms = geoms[kept]
    if len(kept) == 0:
        return ObjectBatch.empty(crs)
    counts = np.diff(members.ptr)[kept]
    columns = {c: np.empty(len(kept), dtype=_DTYPES.get(c, object)) for c in COLUMNS}
    single = counts == 1
    if single.any():
        one_call = members.call[members.ptr[kept[single]]]
        for name, values in _single_columns(one_call, calls).items():
            columns[name][single] = values
    for k in np.flatnonzero(~single):
        for name, value in _group_row([calls[int(c)] for c in members.of(int(kept[k]))]).items():
            columns[name][k] = value
    columns["n_pieces"][:] = n_pieces[kept]
    columns["area_m2"][:] = area[kept]
    columns["crosses_seam"][:] = columns["n_tiles"] > 1
    return ObjectBatch(shapely.to_wkb(to_crs(geoms, crs)), columns, crs)


def _single_columns(call_ids: np.ndarray, calls: dict[int, Call]) -> dict[str, np.ndarray]:
    """Provenance of one-call objects, built once per distinct call and spread column-wise."""
    unique, which = np.unique(call_ids, return_inverse=True)
    rows = [_call_row(calls[int(c)]) for c in unique]
    return {name: np.array([r[name] for r in rows] + [None], dtype=_DTYPES.get(name, object))[:-1][which.reshape(-1)]
            if name != "n_tiles" else np.ones(len(call_ids), dtype=np.int64) for name in rows[0]}


def _call_row(call: Call) -> dict[str, object]:
    prompts = None
    if call.prompts is not None:
        prompts = f'{{{json.dumps(call.query)}:{{"{call.tile}":{call.prompts}}}}}'
    return {"query": call.query, "query_kind": call.query_kind, "function": call.function, "n_tiles": 1,
            "tiles": call.tile, "run_id": call.run_id or None, "model": call.model or None, "prompts": prompts,
            "reasoning": call.reasoning or None, "confidence": _or_nan(call.confidence)}


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else float(value)


def feature_confidence(calls: list[Call]) -> float:
    """An object's confidence from its calls': the mean over the tiles of each query (a seam-split object is
    one piece of evidence), then combined over queries as independent evidence, 1 - prod(1 - c_q); NaN when
    no call has one. Documented in docs/merge.md."""
    per_query: dict[str, list[float]] = {}
    for c in calls:
        if c.confidence is not None:
            per_query.setdefault(c.query, []).append(c.confidence)
    if not per_query:
        return np.nan
    miss = np.prod([1.0 - float(np.mean(v)) for v in per_query.values()])
    return float(1.0 - miss)


def _group_row(calls: list[Call]) -> dict[str, object]:
    """Provenance of an object made from several calls (tiles, queries, re-runs)."""
    kinds = {}
    for c in sorted(calls, key=lambda c: c.query):
        kinds.setdefault(c.query, c.query_kind)
    tiles = sorted({c.tile for c in calls})
    prompts: dict[str, dict[str, object]] = {}
    for c in calls:
        if c.prompts is not None:
            prompts.setdefault(c.query, {})[c.tile] = json.loads(c.prompts)
    return {
        "query": ";".join(kinds),
        "query_kind": None if all(k is None for k in kinds.values()) else ";".join(k or "" for k in kinds.values()),
        "function": _join(c.function for c in calls),
        "n_tiles": len(tiles),
        "tiles": ";".join(tiles),
        "run_id": _join(c.run_id for c in calls),
        "model": _join(c.model for c in calls),
        "prompts": json.dumps(prompts, separators=(",", ":"), sort_keys=True) if prompts else None,
        "reasoning": _join(c.reasoning for c in calls),
        "confidence": feature_confidence(calls),
    }


def _join(values: Iterable[str | None]) -> str | None:
    unique = sorted({v for v in values if isinstance(v, str) and v})
    return ";".join(unique) if unique else None


def to_crs(geoms: np.ndarray, crs: str) -> np.ndarray:
    """EPSG:3857 geometries in ``crs``; EPSG:4326 by the closed-form spherical-Mercator inverse."""
    kind = _crs_kind(crs)
    if kind == "3857":
        return geoms
    if kind == "4326":
        # The exact inverse of EPSG:3857 (what PROJ computes, to 1e-14 degrees), 5x faster than pyproj here.
        def inverse(xy: np.ndarray) -> np.ndarray:
            return np.column_stack([np.degrees(xy[:, 0] / EARTH_RADIUS_M),
                                    np.degrees(np.arctan(np.sinh(xy[:, 1] / EARTH_RADIUS_M)))])
        return shapely.transform(geoms, inverse)
    transformer = _transformer(crs)
    return shapely.transform(geoms, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))


@functools.lru_cache(maxsize=8)
def _crs_kind(crs: str) -> str:
    from pyproj import CRS

    epsg = CRS.from_user_input(crs).to_epsg()
    return {3857: "3857", 4326: "4326"}.get(epsg, "other")


@functools.lru_cache(maxsize=8)
def _transformer(crs: str) -> object:
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:3857", crs, always_xy=True)
