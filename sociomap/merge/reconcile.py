"""sociomap.merge.reconcile: per-tile pieces -> one polygon per object, per layer, with provenance.

Per (layer, query) the pieces are linked (``links``), grouped by union-find, and only the small
connected groups are unioned; a city-wide ``union_all`` (which grows faster than n log n and merges
distinct neighbours) is never built. See docs/merge.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from sociomap.merge.clean import clean_polygons, ground_area_m2
from sociomap.merge.config import MergeConfig
from sociomap.merge.links import connected_labels, contested_tiles, link_pairs, seam_tolerance
from sociomap.merge.store import PieceTable

logger = logging.getLogger(__name__)

#: Output columns besides geometry, in order.
COLUMNS = ("query", "function", "area_m2", "n_tiles", "n_pieces", "tiles", "run_id", "model", "prompts",
           "reasoning", "crosses_seam")
_PROVENANCE = tuple(c for c in COLUMNS if c != "area_m2")
_CALL_FIELDS = ("z", "x", "y", "function", "run_id", "model", "prompts", "reasoning")


def merge_table(query: str, table: PieceTable, config: MergeConfig) -> gpd.GeoDataFrame:
    """Merge the pieces of one (layer, query) in this process, all at once.

    Each row is one object: query, function, area_m2 (ground), n_tiles, n_pieces, tiles ("z/x/y;..."),
    run_id, model, prompts (JSON {"z/x/y": model prompts}), reasoning (";"-joined pointers),
    crosses_seam (pieces from more than one tile), geometry (EPSG:3857); objects in store order of
    their first piece. ``merge_layers`` gives the same objects block by block.
    """
    tol = seam_tolerance(_call_tiles(table)[1], config)
    frame, _ = build_objects(query, table, component_labels(table, config, tol), config)
    return frame


def component_labels(table: PieceTable, config: MergeConfig, tol: float) -> np.ndarray:
    """(N,) label per piece of ``table``: pieces with equal labels are parts of one object."""
    call_ids, call_tiles = _call_tiles(table)
    row = np.searchsorted(call_ids, table.call)
    contested = contested_tiles(*call_tiles.T)[row]
    pairs = link_pairs(table.geometry, table.bounds, table.call, call_tiles[row], contested, config, tol)
    return connected_labels(len(table.geometry), pairs)


def build_objects(
    query: str, table: PieceTable, labels: np.ndarray, config: MergeConfig
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """(objects in the order of their first piece, index of that first piece in ``table``) from ``labels``."""
    call_ids = np.array(sorted(table.calls), dtype=np.int64)
    calls = pd.DataFrame([table.calls[c] for c in call_ids], columns=list(_CALL_FIELDS), dtype=object)
    row = np.searchsorted(call_ids, table.call)  # piece -> row of ``calls``
    labels = np.unique(labels, return_inverse=True)[1].reshape(-1)  # 0..k-1, same grouping
    # Most objects are one piece: their rows are built column-wise; only linked groups loop in Python.
    single = np.bincount(labels, minlength=len(labels))[labels] == 1
    singles = np.flatnonzero(single)
    groups = _groups(labels[~single], np.flatnonzero(~single))
    call_list = list(calls.itertuples(index=False, name=None))
    parts = [_single_rows(query, calls, row[singles]),
             pd.DataFrame.from_records([_group_row(query, call_list, row[g]) for g in groups],
                                       columns=list(_PROVENANCE))]
    # An empty part has object columns and would turn the str columns of the other to object.
    rows = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    geoms = np.empty(len(rows), dtype=object)
    geoms[: len(singles)] = table.geometry[singles]
    geoms[len(singles):] = union_groups(table.geometry, groups)
    first = np.concatenate([singles, [g[0] for g in groups]]).astype(np.int64)
    geoms, kept = clean_polygons(geoms, config.min_area_m2, config.min_hole_m2)
    order = np.argsort(first[kept], kind="stable")  # objects in the order of their first piece
    frame = rows.iloc[kept[order]].reset_index(drop=True)
    frame.insert(2, "area_m2", ground_area_m2(geoms[order]))
    objects = gpd.GeoDataFrame(frame[list(COLUMNS)], geometry=list(geoms[order]), crs="EPSG:3857")
    return objects, first[kept][order]


def seam_crossings(layers: Iterable[gpd.GeoDataFrame]) -> int:
    """Run-summary seam metric: how many output features are made of pieces from more than one tile."""
    return int(sum(int(frame["crosses_seam"].sum()) for frame in layers))


def _groups(labels: np.ndarray, members: np.ndarray) -> list[np.ndarray]:
    """Member indices of each component (``labels`` of ``members``), each sorted, ordered by label."""
    if len(members) == 0:
        return []
    order = np.argsort(labels, kind="stable")
    _, starts = np.unique(labels[order], return_index=True)
    return np.split(members[order], starts[1:])


def union_groups(geometry: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """(len(groups),) union of each group of linked pieces (each group is small: a few tiles' pieces)."""
    out = np.empty(len(groups), dtype=object)
    out[:] = [_union(geometry[g]) for g in groups]
    return out


def _union(parts: np.ndarray) -> shapely.Geometry:
    merged = shapely.union_all(parts)
    if merged.geom_type == "MultiPolygon":
        # Linked pieces are connected, so a MultiPolygon means seam edges a hair apart: union on a 1 mm grid.
        merged = shapely.union_all(parts, grid_size=1e-3)
    return merged


def _single_rows(query: str, calls: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """Provenance columns of one-piece objects, column-wise from their calls' rows."""
    picked = calls.iloc[rows].reset_index(drop=True)
    tile = picked["z"].astype(str) + "/" + picked["x"].astype(str) + "/" + picked["y"].astype(str)
    has = picked["prompts"].notna()
    prompts = pd.Series(None, index=picked.index, dtype=object)
    prompts[has] = '{"' + tile[has] + '":' + picked["prompts"][has] + "}"
    return pd.DataFrame({
        "query": query, "function": picked["function"], "n_tiles": 1, "n_pieces": 1, "tiles": tile,
        "run_id": picked["run_id"], "model": picked["model"], "prompts": prompts,
        "reasoning": picked["reasoning"], "crosses_seam": False,
    }, columns=list(_PROVENANCE))


def _group_row(query: str, calls: list[tuple], rows: np.ndarray) -> dict[str, object]:
    """Provenance of one object made of several pieces (``rows`` index ``calls``, one per piece)."""
    picked = [calls[k] for k in np.unique(rows)]  # (z, x, y, function, run_id, model, prompts, reasoning)
    tiles = [f"{c[0]}/{c[1]}/{c[2]}" for c in picked]
    prompts = {t: json.loads(c[6]) for t, c in zip(tiles, picked) if isinstance(c[6], str)}
    return {
        "query": query,
        "function": picked[0][3],
        "n_tiles": len(set(tiles)),
        "n_pieces": len(rows),
        "tiles": ";".join(sorted(set(tiles))),
        "run_id": _join(c[4] for c in picked),
        "model": _join(c[5] for c in picked),
        "prompts": json.dumps(prompts, separators=(",", ":")) if prompts else None,
        "reasoning": _join(c[7] for c in picked),
        "crosses_seam": len(set(tiles)) > 1,
    }


def _join(values: Iterable[str | None]) -> str | None:
    unique = sorted({v for v in values if isinstance(v, str) and v})
    return ";".join(unique) if unique else None


def _call_tiles(table: PieceTable) -> tuple[np.ndarray, np.ndarray]:
    """(sorted call ids (M,), their tiles (M, 3) int64 z, x, y)."""
    call_ids = np.array(sorted(table.calls), dtype=np.int64)
    return call_ids, np.array([table.calls[c][:3] for c in call_ids], dtype=np.int64).reshape(-1, 3)


def concat_frames(frames: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:3857")
