"""sociomap.pipeline.tasks: the worker-side job, one batch of tiles from pixels to polygons.

A batch runs in two halves so a GPU is not idle while tiles are read and maps drawn:
``prepare_batch`` (CPU: read, render, hash, cache lookup) and ``finish_batch`` (model on the misses,
cache, vectorize). On Dask the two are separate tasks, the second pinned to GPU workers by resources;
in-process, ``process_batch`` runs both. Tasks take paths and small picklable specs, load the model
once per process, and return small results: polygons and counters, never images.
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
from sociomap.pipeline.segmenters import SegmenterSpec, TileInputs, get_segmenter, needs_map, segmenter_identity
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


@dataclass
class PreparedBatch:
    """A batch after its CPU half: tile images, cache keys and which (tile, query) pairs need the model."""

    job: BatchJob
    result: BatchResult
    inputs: list[TileInputs]
    valid: list[np.ndarray]  # (H, W) bool per tile: where the mosaic has data
    keys: list[list[str]]  # [tile][query] cache keys
    missing: dict[tuple[int, ...], list[int]]  # query indexes -> tile indexes that lack them

    @property
    def needs_model(self) -> bool:
        """True when some (tile, query) is not cached (only then does the GPU half do model work)."""
        return bool(self.missing) and not self.job.dry_run


def _read_inputs(job: BatchJob, result: BatchResult) -> tuple[list[TileInputs], list[np.ndarray]]:
    inputs, valid = [], []
    with_map = needs_map(job.segmenter) and job.map_source is not None
    for tile in job.tiles:
        with _timed(result, "read"):
            img = job.mosaic.read(tile, job.size)
        if img is None:
            result.empty += 1
            continue
        with _timed(result, "map"):
            map_rgb = job.map_source.read(tile, job.size) if with_map else None
        inputs.append(TileInputs(tile, img.rgb, map_rgb))
        valid.append(img.valid)
    result.read = len(inputs)
    return inputs, valid


def prepare_batch(job: BatchJob) -> PreparedBatch:
    """CPU half: read tiles, draw maps, compute cache keys, find misses (no model is loaded here)."""
    result = BatchResult(job.tiles)
    result.identity = segmenter_identity(job.segmenter)
    inputs, valid = _read_inputs(job, result)
    cache = TileCache(job.cache_root)
    seg_digest = identity_digest(result.identity)
    with _timed(result, "hash"):
        keys = [[result_key(tile_input_digest(t.satellite, t.map), seg_digest, q.text,
                            f"{t.tile.z}/{t.tile.x}/{t.tile.y}") for q in job.queries] for t in inputs]
    missing: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, row in enumerate(keys):
        todo = tuple(j for j, k in enumerate(row) if job.force or not cache.has(k))
        if todo:
            missing[todo].append(i)
        result.reused += len(row) - len(todo)
    result.computed = sum(len(q) * len(t) for q, t in missing.items())
    return PreparedBatch(job, result, inputs, valid, keys, dict(missing))


def finish_batch(prepared: PreparedBatch) -> BatchResult:
    """Model half: segment the misses (model loaded once per process), cache them, vectorize all results."""
    from sociomap.merge import vectorize_mask

    job, result = prepared.job, prepared.result
    if job.dry_run:
        return result
    cache = TileCache(job.cache_root)
    if prepared.needs_model:
        with _timed(result, "load"):
            segmenter = get_segmenter(job.segmenter)
    for qidx, tidx in prepared.missing.items():
        with _timed(result, "model"):
            rows = segmenter.segment([prepared.inputs[i] for i in tidx], [job.queries[j] for j in qidx])
        with _timed(result, "cache"):
            for i, row in zip(tidx, rows, strict=True):
                for j, seg in zip(qidx, row, strict=True):
                    cache.put(prepared.keys[i][j], seg.mask, seg.meta)
    with _timed(result, "vectorize"):
        for i, t in enumerate(prepared.inputs):
            for j, q in enumerate(job.queries):
                key = prepared.keys[i][j]
                entry = cache.get(key)
                if entry is None:
                    raise RuntimeError(f"cache entry {cache.path(key)} is missing or damaged after writing")
                geoms = vectorize_mask(entry.mask & prepared.valid[i], t.tile, job.merge)
                if geoms:
                    result.pieces.append(PieceBatch(q.layer, t.tile, geoms, _provenance(q, entry.meta, cache, key)))
    return result


def process_batch(job: BatchJob) -> BatchResult:
    """Both halves in one call (in-process runs)."""
    return finish_batch(prepare_batch(job))


def _provenance(query: Query, meta: dict, cache: TileCache, key: str) -> dict:
    prompts = {k: meta[k] for k in ("boxes", "points") if k in meta}
    return {
        "query": query.text,
        "query_kind": query.kind,
        "function": query.function,
        "prompts": json.dumps(prompts) if prompts else None,
        "reasoning": str(cache.path(key).relative_to(cache.root)) if "stage1_text" in meta else None,
    }
