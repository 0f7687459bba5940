"""sociomap.pipeline.tasks: the worker-side job, one batch of tiles from pixels to polygons.

``process_batch`` runs the same way in a Dask worker and in-process (``--workers 0``). It takes
paths and small picklable specs, opens files and loads the model once per process, and returns
small results: polygons and counters, never images.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mercantile
import numpy as np

from sociomap.maps.base import MapSource
from sociomap.pipeline.cache import TileCache, identity_digest, result_key, tile_input_digest
from sociomap.pipeline.segmenters import SegmenterSpec, TileInputs, get_segmenter
from sociomap.taxonomy import Query
from sociomap.tiling.mosaic import Mosaic


@dataclass(frozen=True)
class BatchJob:
    """Everything a worker needs for a batch of tiles (all picklable)."""

    tiles: tuple[mercantile.Tile, ...]
    mosaic: Mosaic
    map_source: MapSource | None
    segmenter: SegmenterSpec
    queries: tuple[Query, ...]
    size: int
    cache_root: Path
    merge: object  # sociomap.merge.MergeConfig
    force: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class PieceBatch:
    """Polygons (EPSG:3857) of one (tile, query) result plus provenance for the merged features."""

    layer: str
    tile: mercantile.Tile
    geometries: list
    attrs: dict


@dataclass
class BatchResult:
    """What came back from one batch."""

    tiles: tuple[mercantile.Tile, ...]
    empty: int = 0
    read: int = 0
    computed: int = 0
    reused: int = 0
    pieces: list[PieceBatch] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    identity: dict[str, str] = field(default_factory=dict)


@contextmanager
def _timed(result: BatchResult, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        result.seconds[stage] += time.perf_counter() - start


def _read_inputs(job: BatchJob, needs_map: bool, result: BatchResult) -> tuple[list[TileInputs], list]:
    inputs, valid = [], []
    for tile in job.tiles:
        with _timed(result, "read"):
            img = job.mosaic.read(tile, job.size)
        if img is None:
            result.empty += 1
            continue
        with _timed(result, "map"):
            map_rgb = job.map_source.read(tile, job.size) if needs_map and job.map_source else None
        inputs.append(TileInputs(tile, img.rgb, map_rgb))
        valid.append(img.valid)
    result.read = len(inputs)
    return inputs, valid


def process_batch(job: BatchJob) -> BatchResult:
    """Read, segment (or reuse from cache) and vectorize every (tile, query) of a batch."""
    from sociomap.merge import vectorize_mask

    result = BatchResult(job.tiles)
    with _timed(result, "load"):
        segmenter = get_segmenter(job.segmenter)
        result.identity = segmenter.identity()
    inputs, valid = _read_inputs(job, segmenter.needs_map, result)
    cache = TileCache(job.cache_root)
    seg_digest = identity_digest(result.identity)
    keys = [
        [result_key(tile_input_digest(t.satellite, t.map), seg_digest, q.text) for q in job.queries] for t in inputs
    ]
    missing: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, row in enumerate(keys):
        todo = tuple(j for j, k in enumerate(row) if job.force or not cache.has(k))
        if todo:
            missing[todo].append(i)
        result.reused += len(row) - len(todo)
    result.computed = sum(len(q) * len(t) for q, t in missing.items())
    if job.dry_run:
        return result
    for qidx, tidx in missing.items():
        with _timed(result, "model"):
            rows = segmenter.segment([inputs[i] for i in tidx], [job.queries[j] for j in qidx])
        with _timed(result, "cache"):
            for i, row in zip(tidx, rows, strict=True):
                for j, seg in zip(qidx, row, strict=True):
                    cache.put(keys[i][j], seg.mask, seg.meta)
    with _timed(result, "vectorize"):
        for i, t in enumerate(inputs):
            for j, q in enumerate(job.queries):
                entry = cache.get(keys[i][j])
                if entry is None:  # removed under us: the next run recomputes it
                    raise RuntimeError(f"cache entry {keys[i][j]} vanished during the run")
                geoms = vectorize_mask(entry.mask & valid[i], t.tile, job.merge)
                if geoms:
                    result.pieces.append(PieceBatch(q.layer, t.tile, geoms, _provenance(q, entry.meta, cache, keys[i][j])))
    return result


def _provenance(query: Query, meta: dict, cache: TileCache, key: str) -> dict:
    prompts = {k: meta[k] for k in ("boxes", "points") if k in meta}
    return {
        "query": query.text,
        "function": query.function,
        "prompts": json.dumps(prompts) if prompts else "",
        "reasoning": str(cache.path(key).relative_to(cache.root)) if "stage1_text" in meta else "",
    }


