"""sociomap.pipeline.schedule: the driver loop that turns tiles into pieces, doing only what the cache lacks.

For every tile the driver first asks the cache: a tile whose inputs are unchanged (memo) and whose
results and polygons are stored costs two lookups and no task at all. Other tiles go to workers in
batches, at most ``executor.capacity()`` batches in flight:

    read_batch (CPU) -> summarize_read -> driver: cache lookup per (tile, query)
        -> segment_batch (model worker, only the misses) -> vectorize_batch (CPU) -> driver: cache + store

The driver is the only writer: results, polygons and memo entries go into the cache as each batch
completes (a killed run loses only the batches in flight), pieces into the run's piece store. A failing
batch is retried from its read; an input or weights error stops the run at once with its exit code.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import mercantile
import numpy as np
import shapely

from sociomap.pipeline.cache import MemoEntry, ResultCache, memo_key, pieces_key, result_key
from sociomap.pipeline.tasks import (ReadJob, Result, ResultBatch, TaskFailure, pack, read_batch, segment_batch,
                                     summarize_read, vectorize_batch)
from sociomap.taxonomy import Query

logger = logging.getLogger(__name__)


def tile_id(tile: mercantile.Tile) -> str:
    """``z/x/y``."""
    return f"{tile.z}/{tile.x}/{tile.y}"


@dataclass(frozen=True)
class Keys:
    """The digests every key of a run is built from (see ``pipeline.identity``)."""

    segmenter: str
    queries: tuple[str, ...]
    inputs: str  # fingerprint of mosaic + map + tiling, for memo keys
    vectorize: str


@dataclass
class Tally:
    """What the driver has done so far (folded into the RunSummary)."""

    tiles_empty: int = 0
    tiles_read: int = 0
    tiles_from_memo: int = 0
    data_tiles: int = 0
    map_blank: int = 0
    computed: int = 0
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # tile id -> error text
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    work: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # step -> worker -> tasks


@dataclass(frozen=True)
class Progress:
    """One progress step for the reporter."""

    tiles: int
    computed: int = 0
    reused: int = 0
    empty: int = 0
    failed: int = 0


@dataclass
class _Job:
    """A batch in flight: the tiles, what is known of them, and the futures of its current step."""

    tiles: tuple[mercantile.Tile, ...]
    attempt: int = 0
    digests: list[str | None] = field(default_factory=list)
    map_blank: list[bool] = field(default_factory=list)
    cached: list[Result] = field(default_factory=list)  # stored results whose polygons must be made again
    futures: list[object] = field(default_factory=list)  # every future of the batch, released when it ends
    polygons_next: bool = False  # the watched future is the vectorize step (else the read summary)
    keys: dict[tuple[int, int], str] = field(default_factory=dict)  # (tile index, query index) -> result key
    reused: int = 0


class Driver:
    """Runs the tiles of one run through an executor (in-process or Dask) with the cache in front."""

    def __init__(self, template: ReadJob, queries: tuple[Query, ...], keys: Keys, executor: object,
                 cache: ResultCache, store: object, provenance: dict, merge: object, tiles_per_task: int,
                 retries: int, force: bool, reporter: object) -> None:
        self.template, self.queries, self.keys = template, queries, keys
        self.executor, self.cache, self.store = executor, cache, store
        self.provenance, self.merge = provenance, merge
        self.tiles_per_task, self.retries, self.force = tiles_per_task, retries, force
        self.reporter = reporter
        self.tally = Tally()
        self._inflight: dict[object, _Job] = {}

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, tiles: Iterable[mercantile.Tile]) -> Tally:
        """Process every tile; returns the tally (failed tiles are listed, not raised)."""
        jobs = self._jobs(iter(tiles))
        exhausted = False
        while True:
            while not exhausted and len(self._inflight) < self.executor.capacity():
                job = next(jobs, None)
                if job is None:
                    exhausted = True
                    break
                self._start(job)
            if not self._inflight:
                break
            future = self.executor.next_done()
            job = self._inflight.pop(future)
            self._step(job, self.executor.outcome(future))
        self.cache.flush()
        return self.tally

    def _jobs(self, tiles: Iterator[mercantile.Tile]) -> Iterator[_Job]:
        """Batches of the tiles the cache cannot answer; answered tiles are settled on the way."""
        batch: list[mercantile.Tile] = []
        for tile in tiles:
            if not self._settle_from_cache(tile):
                batch.append(tile)
                if len(batch) == self.tiles_per_task:
                    yield _Job(tuple(batch))
                    batch = []
        if batch:
            yield _Job(tuple(batch))

    def _start(self, job: _Job) -> None:
        """Submit the read step of a batch."""
        read = self.executor.submit(read_batch, replace(self.template, tiles=job.tiles))
        summary = self.executor.submit(summarize_read, read, watch=True)
        job.futures = [read, summary]
        self._inflight[summary] = job

    def _step(self, job: _Job, outcome: object) -> None:
        """Advance a batch whose watched future completed."""
        if isinstance(outcome, TaskFailure):
            self._failed(job, outcome)
        elif job.polygons_next:
            self._finish(job, outcome)
        else:
            self._after_read(job, outcome)

    # -- cache lookups --------------------------------------------------------------------------------
    def _settle_from_cache(self, tile: mercantile.Tile) -> bool:
        """True when the cache answers the whole tile without reading it (memo + results + polygons)."""
        if self.force or not self.keys.inputs:
            return False
        memo = self.cache.get_memo(memo_key(self.keys.inputs, tile_id(tile)))
        if memo is None:
            return False
        if memo.digest is None:
            self.tally.tiles_empty += 1
            self.tally.tiles_from_memo += 1
            self.reporter.advance(1, Progress(1, empty=1))
            return True
        keys = [self._key(memo.digest, tile, j) for j in range(len(self.queries))]
        found = [self._stored_pieces(key) for key in keys]
        # The results behind the polygons are checked too (and marked used): a damaged one is healed now.
        if any(f is None for f in found) or not all(self.cache.has(key) for key in keys):
            return False
        for j, pieces in enumerate(found):
            self._add_pieces(tile, j, pieces.wkb, pieces.attrs)
        self.tally.tiles_from_memo += 1
        self.tally.data_tiles += 1
        self.tally.map_blank += memo.map_blank
        self.tally.reused += len(found)
        self.reporter.advance(1, Progress(1, reused=len(found)))
        return True

    def _key(self, digest: str, tile: mercantile.Tile, query: int) -> str:
        return result_key(digest, self.keys.segmenter, self.keys.queries[query], tile_id(tile))

    def _stored_pieces(self, key: str) -> object:
        return self.cache.get_pieces(pieces_key(key, self.keys.vectorize))

    def _after_read(self, job: _Job, summary: object) -> None:
        """Record what was read, find the (tile, query) pairs the cache lacks, submit model + vectorize."""
        self._count_work("read", summary.worker, summary.seconds)
        job.digests, job.map_blank = summary.digests, summary.map_blank
        todo: dict[int, tuple[int, ...]] = {}
        for i, (tile, digest) in enumerate(zip(job.tiles, summary.digests, strict=True)):
            if self.keys.inputs:
                self.cache.put_memo(memo_key(self.keys.inputs, tile_id(tile)), MemoEntry(digest, summary.map_blank[i]))
            if digest is None:
                continue
            missing = []
            for j in range(len(self.queries)):
                key = job.keys[(i, j)] = self._key(digest, tile, j)
                if self.force:
                    missing.append(j)
                    continue
                pieces = self._stored_pieces(key)
                if pieces is not None and self.cache.has(key):
                    self._add_pieces(tile, j, pieces.wkb, pieces.attrs)
                    job.reused += 1
                    continue
                stored = self.cache.get(key)
                if stored is None:
                    missing.append(j)
                else:
                    job.cached.append(pack(i, j, stored.mask, stored.meta))
                    job.reused += 1
            if missing:
                todo[i] = tuple(missing)
        if not todo and not job.cached:
            self._settle(job)
            return
        segmented = (self.executor.submit(segment_batch, job.futures[0], todo, self.queries, model=True) if todo
                     else ResultBatch([]))
        vectors = self.executor.submit(vectorize_batch, segmented, job.cached, job.tiles, self.merge, watch=True)
        job.futures += [segmented, vectors]
        job.polygons_next = True
        self._inflight[vectors] = job

    # -- results ------------------------------------------------------------------------------------
    def _finish(self, job: _Job, batch: ResultBatch) -> None:
        """Store new results and everyone's polygons; add the pieces to the run's store."""
        for step, worker in batch.workers.items():
            self.tally.work[step][worker] += 1
        for stage, seconds in batch.seconds.items():
            self.tally.seconds[stage] += seconds
        computed = 0
        from_cache = {(c.tile, c.query) for c in job.cached}
        for result in batch.results:
            key = job.keys[(result.tile, result.query)]
            if (result.tile, result.query) not in from_cache:
                self.cache.put(key, result.mask, result.meta)
                computed += 1
            attrs = self._attrs(key, result.meta)
            self.cache.put_pieces(pieces_key(key, self.keys.vectorize), result.pieces, attrs)
            self._add_pieces(job.tiles[result.tile], result.query, result.pieces, attrs)
        self.tally.computed += computed
        self._settle(job, computed)

    def _settle(self, job: _Job, computed: int = 0) -> None:
        """Count a finished batch and let the cluster forget its data."""
        for future in job.futures:
            if not isinstance(future, ResultBatch):
                self.executor.release(future)
        empty = sum(d is None for d in job.digests)
        self.tally.tiles_read += len(job.tiles)
        self.tally.tiles_empty += empty
        self.tally.data_tiles += len(job.tiles) - empty
        self.tally.map_blank += sum(blank for d, blank in zip(job.digests, job.map_blank) if d is not None)
        self.tally.reused += job.reused
        self.cache.flush()
        self.reporter.advance(len(job.tiles), Progress(len(job.tiles), computed, job.reused, empty))

    def _failed(self, job: _Job, failure: TaskFailure) -> None:
        for future in job.futures:
            if not isinstance(future, ResultBatch):
                self.executor.release(future)
        if failure.is_input_error:
            logger.debug("worker %s: %s", failure.worker, failure.traceback)
            raise failure.rebuild()
        tiles = [tile_id(t) for t in job.tiles]
        if job.attempt < self.retries:
            logger.warning("tiles %s failed (%s); retrying (%d/%d)", tiles, failure.message, job.attempt + 1,
                           self.retries)
            self._start(_Job(job.tiles, attempt=job.attempt + 1))
            return
        logger.error("tiles %s failed after %d retries: %s", tiles, self.retries, failure.message)
        logger.debug("%s", failure.traceback)
        for t in tiles:
            self.tally.failed[t] = f"{failure.message} (worker {failure.worker or '?'})"
        self.reporter.advance(len(job.tiles), Progress(len(job.tiles), failed=len(job.tiles)))

    def _count_work(self, step: str, worker: str, seconds: dict[str, float]) -> None:
        self.tally.work[step][worker] += 1
        for stage, value in seconds.items():
            self.tally.seconds[stage] += value

    def _attrs(self, key: str, meta: dict) -> dict:
        """Provenance a result's features carry: the model's prompts and a pointer to its texts."""
        prompts = {k: meta[k] for k in ("boxes", "points") if k in meta}
        return {"prompts": json.dumps(prompts) if prompts else None,
                "reasoning": key if "stage1_text" in meta else None, "confidence": meta.get("confidence")}

    def _add_pieces(self, tile: mercantile.Tile, query: int, wkb: list[bytes], attrs: dict) -> None:
        if not wkb:
            return
        q = self.queries[query]
        geoms = list(shapely.from_wkb(np.asarray(wkb, dtype=object)))
        self.store.add(q.layer, tile, geoms, {**self.provenance, "query": q.text, "function": q.function,
                                              "query_kind": q.kind, **attrs})
