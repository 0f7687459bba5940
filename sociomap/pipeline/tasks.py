"""sociomap.pipeline.tasks: the worker-side steps of a batch of tiles, from pixels to polygons.

A batch moves through three tasks so that each runs where it belongs:
``read_batch`` (CPU workers: read satellite tiles, draw maps, hash the inputs),
``segment_batch`` (model workers: masks for the (tile, query) pairs the cache lacks) and
``vectorize_batch`` (CPU workers: masks -> polygons). The driver looks the cache up between them and
is the only process that writes anything; workers send small results back (packed masks, WKB), so
nothing is ever left on a worker's disk. Every task returns a ``TaskFailure`` instead of raising, so
an error reaches the driver once, with its exit code, and Dask neither retries it nor logs it.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mercantile
import numpy as np

from sociomap.errors import SociomapError
from sociomap.maps.base import MapSource
from sociomap.pipeline.cache import tile_input_digest
from sociomap.pipeline.segmenters import SegmenterSpec, TileInputs, get_segmenter, needs_map
from sociomap.taxonomy import Query
from sociomap.tiling.mosaic import Mosaic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskFailure:
    """A task's error as plain values (always picklable): the class name in sociomap.errors, its exit
    code and message, and the worker's traceback text for the log and ``failed-<run>.json``."""

    error_class: str
    exit_code: int
    message: str
    traceback: str
    worker: str

    @property
    def is_input_error(self) -> bool:
        """True for SociomapErrors (bad input, weights, config): the same for every tile, so the run stops."""
        return self.error_class != "" and self.exit_code != 1

    def rebuild(self) -> SociomapError:
        """The SociomapError this failure carries, rebuilt in the driver."""
        import sociomap.errors as errors

        cls = getattr(errors, self.error_class, errors.SociomapError)
        return cls(self.message)


def worker_name() -> str:
    """``name@address`` of the Dask worker running this code, or "in-process"."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return "in-process"
    return f"{worker.name}@{worker.address}"


def failures_as_values(fn: Callable) -> Callable:
    """Decorate a task: an exception becomes a returned TaskFailure; a failed input passes through."""

    @functools.wraps(fn)
    def task(*args: Any) -> Any:
        for arg in args:
            if isinstance(arg, TaskFailure):
                return arg
        try:
            return fn(*args)
        except SociomapError as exc:
            return TaskFailure(type(exc).__name__, exc.exit_code, str(exc), traceback.format_exc(), worker_name())
        except Exception as exc:  # reported per batch by the driver, which retries and then lists the tiles
            return TaskFailure("", 1, f"{type(exc).__name__}: {exc}", traceback.format_exc(), worker_name())

    return task


@failures_as_values
def call(fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` as a task: its error comes back as a TaskFailure (see ``returned``)."""
    return fn(*args)


def returned(outcome: Any) -> Any:
    """The value of a ``call``, or its error raised here (a SociomapError keeps its class and exit code)."""
    if isinstance(outcome, TaskFailure):
        if outcome.is_input_error:
            raise outcome.rebuild()
        raise RuntimeError(f"{outcome.message} (on worker {outcome.worker})\n{outcome.traceback}")
    return outcome


@dataclass(frozen=True)
class ReadJob:
    """Everything a worker needs to read a batch of tiles (all picklable)."""

    tiles: tuple[mercantile.Tile, ...]
    mosaic: Mosaic
    map_source: MapSource | None
    segmenter: SegmenterSpec
    size: int


@dataclass
class ReadBatch:
    """Tile images after the read step; stays on the worker that read it until the model step needs it.

    Attributes:
        inputs: TileInputs per tile with data (None for a tile outside the data or all nodata).
        valid: (H, W) bool per tile, where the mosaic has data (None where ``inputs`` is None).
        digests: ``tile_input_digest`` per tile (None for a tile without data).
        map_blank: per tile, True when its map tile is one flat colour (nothing drawn there).
    """

    job: ReadJob
    inputs: list[TileInputs | None]
    valid: list[np.ndarray | None]
    digests: list[str | None]
    map_blank: list[bool]
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    worker: str = ""


@dataclass(frozen=True)
class ReadSummary:
    """The small part of a ReadBatch the driver needs to look the cache up."""

    digests: list[str | None]
    map_blank: list[bool]
    seconds: dict[str, float]
    worker: str


@dataclass(frozen=True)
class Result:
    """One (tile, query) result on its way back: bit-packed mask cut to the data, meta, polygons as WKB."""

    tile: int  # index into the batch's tiles
    query: int  # index into the run's queries
    shape: tuple[int, int]
    packed_mask: bytes
    meta: dict
    pieces: list[bytes] = field(default_factory=list)

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool."""
        h, w = self.shape
        return np.unpackbits(np.frombuffer(self.packed_mask, np.uint8))[: h * w].reshape(h, w).astype(bool)


def pack(tile: int, query: int, mask: np.ndarray, meta: dict) -> Result:
    """A Result from a (H, W) bool mask."""
    mask = np.asarray(mask, dtype=bool)
    return Result(tile, query, mask.shape, np.packbits(mask.ravel()).tobytes(), meta)


@dataclass
class ResultBatch:
    """Results of a segment or vectorize step, with where and how long it ran."""

    results: list[Result]
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    workers: dict[str, str] = field(default_factory=dict)  # step -> worker address


def _is_flat(rgb: np.ndarray) -> bool:
    return bool((rgb == rgb[:1, :1]).all())


@failures_as_values
def read_batch(job: ReadJob) -> ReadBatch:
    """Read the satellite tiles, draw their maps (when the segmenter reads maps) and hash what it will see."""
    with_map = needs_map(job.segmenter) and job.map_source is not None
    batch = ReadBatch(job, [], [], [], [], worker=worker_name())
    for tile in job.tiles:
        start = time.perf_counter()
        img = job.mosaic.read(tile, job.size)
        batch.seconds["read"] += time.perf_counter() - start
        if img is None:
            batch.inputs.append(None)
            batch.valid.append(None)
            batch.digests.append(None)
            batch.map_blank.append(False)
            continue
        start = time.perf_counter()
        map_rgb = job.map_source.read(tile, job.size) if with_map else None
        batch.seconds["map"] += time.perf_counter() - start
        start = time.perf_counter()
        batch.digests.append(tile_input_digest(img.rgb, map_rgb, img.valid))
        batch.seconds["hash"] += time.perf_counter() - start
        batch.inputs.append(TileInputs(tile, img.rgb, map_rgb))
        batch.valid.append(img.valid)
        batch.map_blank.append(map_rgb is not None and _is_flat(map_rgb))
    return batch


@failures_as_values
def summarize_read(batch: ReadBatch) -> ReadSummary:
    """What the driver needs from a ReadBatch (the images stay on the worker)."""
    return ReadSummary(batch.digests, batch.map_blank, dict(batch.seconds), batch.worker)


@failures_as_values
def segment_batch(batch: ReadBatch, todo: dict[int, tuple[int, ...]], queries: tuple[Query, ...]) -> ResultBatch:
    """Masks for ``todo`` (tile index -> query indexes), cut to each tile's valid data.

    The segmenter is built once per process (the model loads once per worker). Tiles that need the same
    queries go to the segmenter together, so the model batches across tiles.
    """
    out = ResultBatch([], workers={"model": worker_name()})
    start = time.perf_counter()
    segmenter = get_segmenter(batch.job.segmenter)
    out.seconds["load"] += time.perf_counter() - start
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for tile, qidx in sorted(todo.items()):
        groups[qidx].append(tile)
    for qidx, tiles in groups.items():
        start = time.perf_counter()
        rows = segmenter.segment([batch.inputs[i] for i in tiles], [queries[j] for j in qidx])
        out.seconds["model"] += time.perf_counter() - start
        for i, row in zip(tiles, rows, strict=True):
            for j, seg in zip(qidx, row, strict=True):
                out.results.append(pack(i, j, seg.mask & batch.valid[i], seg.meta))
    return out


@failures_as_values
def vectorize_batch(segmented: ResultBatch, cached: list[Result], tiles: tuple[mercantile.Tile, ...],
                    merge: object) -> ResultBatch:
    """Polygons (WKB, EPSG:3857) of every result: the new ones and cached ones whose pieces are missing."""
    import shapely

    from sociomap.merge import vectorize_mask

    out = ResultBatch([], defaultdict(float, segmented.seconds), {**segmented.workers, "vectorize": worker_name()})
    start = time.perf_counter()
    for result in [*segmented.results, *cached]:
        geoms = vectorize_mask(result.mask, tiles[result.tile], merge)
        wkb = [bytes(b) for b in shapely.to_wkb(np.asarray(geoms, dtype=object))] if geoms else []
        out.results.append(Result(result.tile, result.query, result.shape, result.packed_mask, result.meta, wkb))
    out.seconds["vectorize"] += time.perf_counter() - start
    return out
