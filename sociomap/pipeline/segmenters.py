"""sociomap.pipeline.segmenters: what turns a tile's images into one mask per query.

A registry (``SEGMENTERS``) of adapters with one interface, so the pipeline does not care whether
masks come from the SocioReasoner model or are rasterized from OpenStreetMap (the weights-free
baseline, ``--reasoner osm``). Instances are built once per worker process (``get_segmenter``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import mercantile
import numpy as np

from sociomap.fingerprint import code_fingerprint, content_id
from sociomap.reasoning.confidence import result_confidence  # numpy only: no model stack at import
from sociomap.taxonomy import Query


@dataclass(frozen=True)
class TileInputs:
    """The images of one tile: satellite and map are (H, W, 3) uint8 on the same grid; map may be None."""

    tile: mercantile.Tile
    satellite: np.ndarray
    map: np.ndarray | None


@dataclass(frozen=True)
class Segmentation:
    """One (tile, query) mask, (H, W) bool, with what the segmenter said (JSON-able)."""

    mask: np.ndarray
    meta: dict


class Segmenter(Protocol):
    """Masks for every (tile, query) pair of a batch."""

    needs_map: bool

    def segment(self, tiles: Sequence[TileInputs], queries: Sequence[Query]) -> list[list[Segmentation]]:
        """``result[i][j]`` is tile i, query j."""
        ...


@dataclass(frozen=True)
class SegmenterSpec:
    """A picklable, hashable description of the segmenter a worker should build."""

    kind: str
    reasoner: object | None = None  # sociomap.reasoning.ReasonerConfig for kind "socioreasoner"
    osm: Path | None = None  # OSM file for kind "osm"
    osm_bounds: tuple[float, float, float, float] | None = None  # only this area (WGS84) is loaded
    osm_index: Path | None = None  # the OSM index the driver built (maps.osm_index.prepare_osm_index)


class ReasonerSegmenter:
    """The SocioReasoner model (Qwen2.5-VL + SAM, two stages)."""

    needs_map = True

    def __init__(self, spec: SegmenterSpec) -> None:
        from sociomap.reasoning import load_reasoner

        # device "auto" is this worker's own GPU: CUDA_VISIBLE_DEVICES set per worker (local clusters,
        # `dask cuda worker`) leaves it one device, cuda:0; see docs/cluster.md.
        self._reasoner = load_reasoner(spec.reasoner)

    def segment(self, tiles: Sequence[TileInputs], queries: Sequence[Query]) -> list[list[Segmentation]]:
        from sociomap.reasoning import TilePair

        pairs = [TilePair(map=t.map, satellite=t.satellite, key=f"{t.tile.z}/{t.tile.x}/{t.tile.y}") for t in tiles]
        rows = self._reasoner.segment(pairs, [q.text for q in queries])
        return [[Segmentation(r.mask, _reasoner_meta(r)) for r in row] for row in rows]


def _reasoner_meta(result: object) -> dict:
    return {
        "confidence": result_confidence(result.mask, result.coarse_mask, result.scores),
        "stage1_text": result.stage1_text,
        "stage2_text": result.stage2_text,
        "boxes": [list(map(float, b)) for b in result.boxes],
        "points": [list(map(float, p)) for p in result.points],
        "scores": [float(s) for s in result.scores],
        "coarse_scores": [float(s) for s in result.coarse_scores],
    }


class OSMSegmenter:
    """OSM features of each query's classes rasterized on the tile grid (no model)."""

    needs_map = False

    def __init__(self, spec: SegmenterSpec) -> None:
        from sociomap.maps.osm_features import OSMSegmenter as _OSM

        self._osm = _OSM(Path(spec.osm), spec.osm_bounds, spec.osm_index)

    def segment(self, tiles: Sequence[TileInputs], queries: Sequence[Query]) -> list[list[Segmentation]]:
        out = []
        for t in tiles:
            masks = self._osm.masks(t.tile, t.satellite.shape[0], list(queries))
            out.append([Segmentation(m, {"source": "osm", "confidence": 1.0}) for m in masks])  # the rules are exact
        return out


SEGMENTERS: dict[str, type] = {"socioreasoner": ReasonerSegmenter, "osm": OSMSegmenter}


def needs_map(spec: SegmenterSpec) -> bool:
    """Whether this segmenter looks at the map tile (the OSM baseline does not)."""
    return SEGMENTERS[spec.kind].needs_map


def segmenter_identity(spec: SegmenterSpec) -> dict[str, str]:
    """Everything that determines a segmenter's results, WITHOUT loading a model.

    For the model it is resolved once per run on a worker that runs the model (device and dtype are
    that worker's), and shipped with the work; it includes a fingerprint of the reasoning code.
    """
    if spec.kind == "osm":
        # The rules of each query are in its own digest (pipeline.identity), not here: a taxonomy edit
        # recomputes only the classes it changed.
        code = code_fingerprint("sociomap.maps.osm_features", "sociomap.maps.osm_index", "sociomap.maps.osm_read",
                                "sociomap.maps.osm_data", "sociomap.maps.coastline", "sociomap.tiling.grid",
                                "sociomap.pipeline.segmenters")
        return {"segmenter": "osm", "osm": content_id(Path(spec.osm)), "frame": str(spec.osm_bounds), "code": code}
    from sociomap.reasoning import reasoner_identity

    code = code_fingerprint("sociomap.reasoning", "sociomap.pipeline.segmenters")
    return {"segmenter": spec.kind, **reasoner_identity(spec.reasoner), "code": code}


_LOAD_LOCK = threading.Lock()


def get_segmenter(spec: SegmenterSpec) -> Segmenter:
    """Build the segmenter once per process (the model loads once per Dask worker, even with 2 threads)."""
    with _LOAD_LOCK:
        return _build_segmenter(spec)


@functools.lru_cache(maxsize=2)
def _build_segmenter(spec: SegmenterSpec) -> Segmenter:
    return SEGMENTERS[spec.kind](spec)
