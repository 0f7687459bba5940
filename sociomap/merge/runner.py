"""sociomap.merge.runner: run a layer's merge plan in this process, in worker processes or on Dask,
streaming finished objects block by block.

Leaves are started in plan order with a bounded window; a node starts as soon as its children are done
(the driver hands it their partials); finished objects are yielded in plan order, so the output does
not depend on the number of workers or on timing, and only a window of blocks is held at once.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sociomap.merge.config import MergeConfig
from sociomap.merge.features import ObjectBatch
from sociomap.merge.links import seam_tolerance
from sociomap.merge.plan import PlanStep, plan_layer
from sociomap.merge.store import PieceStore
from sociomap.merge.tasks import LeafTask, NodeTask, TaskResult, TaskStats, run_task

if TYPE_CHECKING:
    import geopandas as gpd

logger = logging.getLogger(__name__)

#: A leaf holds at most this many pieces (unless one tile holds more): ~100-300 MB in a worker.
BLOCK_PIECES = 8_000
#: Layers with fewer pieces are merged in this process: starting workers (~1 s) costs more than they save.
PARALLEL_MIN_PIECES = 20_000
#: Memory one merge worker may need (a leaf of BLOCK_PIECES pieces with room to spare), for ``default_workers``.
WORKER_MEMORY_BYTES = 1 << 30


def default_workers() -> int:
    """Merge worker processes for this machine: one per core, fewer when memory is short."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return max(1, cores)
    return max(1, min(cores, available // WORKER_MEMORY_BYTES))


@dataclass
class LayerStats:
    """What merging one layer took: steps run and the largest share of the layer any step held."""

    steps: list[TaskStats] = field(default_factory=list)

    @property
    def max_leaf_pieces(self) -> int:
        return max((s.pieces for s in self.steps if s.kind == "leaf"), default=0)

    @property
    def max_node_intervals(self) -> int:
        return max((s.intervals for s in self.steps if s.kind == "node"), default=0)

    @property
    def pids(self) -> set[int]:
        return {s.pid for s in self.steps}


class MergeRunner:
    """Where merge steps run: ``client`` (a distributed Client) when given, else ``workers`` spawned
    processes (None: ``default_workers()``; started on first use, for layers of ``parallel_min_pieces``
    pieces or more), else this process. Use as a context manager; it can serve many layers.
    """

    def __init__(self, workers: int | None = None, client: object | None = None,
                 parallel_min_pieces: int = PARALLEL_MIN_PIECES) -> None:
        self.workers = default_workers() if workers is None else max(1, int(workers))
        self.client = client
        self.parallel_min_pieces = parallel_min_pieces
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def __enter__(self) -> MergeRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _mode(self, pieces: int) -> str:
        if self.client is not None:
            return "dask"
        if self.workers > 1 and pieces >= self.parallel_min_pieces:
            return "pool"
        return "here"

    def _executor(self, mode: str) -> tuple[Callable, Callable, int]:
        """(submit(task) -> future, wait_any(futures) -> done futures, window) for a mode."""
        if mode == "dask":
            import distributed

            def submit(task: object) -> object:
                return self.client.submit(run_task, task, pure=False)

            def wait_any(futures: list) -> set:
                return set(distributed.wait(futures, return_when="FIRST_COMPLETED").done)

            n = max(1, len(self.client.scheduler_info().get("workers", {})))
            return submit, wait_any, 2 * n
        if mode == "pool":
            if self._pool is None:
                # spawn, not fork: the caller may hold threads (Dask, torch) and an open SQLite connection.
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"))
            pool = self._pool

            def wait_pool(futures: list) -> set:
                return concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED).done

            return (lambda task: pool.submit(run_task, task)), wait_pool, self.workers + 1
        return _run_now, lambda futures: set(futures), 1

    def run(self, store: PieceStore, layer: str, config: MergeConfig, crs: str,
            block_pieces: int | None = None, stats: LayerStats | None = None) -> Iterator[ObjectBatch]:
        """Finished objects of ``layer`` (geometry WKB in ``crs``), block by block in plan order; leaves
        of at most ``block_pieces`` pieces (None: ``BLOCK_PIECES``)."""
        index = store.read_index(layer)
        plan = plan_layer(index, block_pieces or BLOCK_PIECES)
        if not plan:
            return
        tol = seam_tolerance(index.tiles, config)
        grid_zoom = int(index.tiles[:, 0].max())
        mode = self._mode(int(index.n_pieces.sum()))
        submit, wait_any, window = self._executor(mode)
        logger.info("Merging layer %s: %d pieces, %d leaves, %d joins, %s", layer, int(index.n_pieces.sum()),
                    sum(1 for s in plan if not s.children), sum(1 for s in plan if s.children),
                    f"{self.workers} workers" if mode == "pool" else mode)

        def leaf(step: PlanStep) -> LeafTask:
            if mode == "pool":  # worker processes on this machine read the store themselves
                source = store.directory
            else:  # this process, or cluster workers that may not see this machine's disk
                source = (store.read_pieces(step.calls), store.read_calls(step.calls))
            return LeafTask(step.boundary, step.calls, source, config, tol, crs, grid_zoom)

        def node(step: PlanStep, partials: list) -> NodeTask:
            return NodeTask(step.boundary, partials, config, tol, crs, grid_zoom)

        for result in execute_plan(plan, leaf, node, submit, wait_any, window):
            if stats is not None:
                stats.steps.append(result.stats)
            yield result.batch


def execute_plan(plan: list[PlanStep], leaf: Callable, node: Callable, submit: Callable, wait_any: Callable,
                 window: int, lookahead: int | None = None) -> Iterator[TaskResult]:
    """Run the steps of ``plan`` (post-order) and yield their results in plan order.

    At most ``window`` steps run at once and at most ``lookahead`` plan positions ahead of the last
    yielded one are started, so finished-but-unyielded results stay bounded.
    """
    lookahead = lookahead or 4 * window
    parent = [-1] * len(plan)
    for k, step in enumerate(plan):
        for child in step.children:
            parent[child] = k
    waiting = [len(step.children) for step in plan]
    leaves = deque(k for k, step in enumerate(plan) if not step.children)
    ready: deque[int] = deque()
    partials: dict[int, list] = {}
    done: dict[int, TaskResult] = {}
    running: dict[object, int] = {}
    emit = 0
    while emit < len(plan):
        while emit in done:
            yield done.pop(emit)
            emit += 1
        if emit == len(plan):
            return
        while len(running) < window:
            if ready:
                k = ready.popleft()
                task = node(plan[k], [p for c in plan[k].children for p in partials.pop(c)])
            elif leaves and leaves[0] < emit + lookahead:
                k = leaves.popleft()
                task = leaf(plan[k])
            else:
                break
            running[submit(task)] = k
        if not running:
            raise AssertionError(f"merge plan stalled at step {emit} of {len(plan)}")
        for future in wait_any(list(running)):
            k = running.pop(future)
            result = future.result()
            if parent[k] >= 0:
                partials[k] = result.partials
                waiting[parent[k]] -= 1
                if waiting[parent[k]] == 0:
                    ready.append(parent[k])
            elif result.partials:
                raise AssertionError("the root step left objects cut by a boundary")
            result.partials = []
            done[k] = result


def _run_now(task: object) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    try:
        future.set_result(run_task(task))
    except BaseException as exc:  # re-raised by .result() in execute_plan, as from a worker
        future.set_exception(exc)
    return future


def merge_layers(store: PieceStore, config: MergeConfig, workers: int | None = 1, client: object | None = None,
                 crs: str = "EPSG:3857") -> Iterator[tuple[str, gpd.GeoDataFrame]]:
    """(layer slug, GeoDataFrame) per layer of the store, sorted: the whole layer in memory, for small
    uses (tests, notebooks). City-scale runs stream with ``sociomap.export.write_merged_layers``.
    """
    with MergeRunner(workers, client) as runner:
        for layer in store.layers():
            batches = list(runner.run(store, layer, config, crs))
            yield layer, ObjectBatch.concat(batches, crs).to_frame()


def merge_table(store: PieceStore, layer: str, config: MergeConfig, crs: str = "EPSG:3857") -> gpd.GeoDataFrame:
    """The whole layer linked and merged at once in this process (one block: the unpartitioned reference)."""
    index = store.read_index(layer)
    if len(index.call_id) == 0:
        return ObjectBatch.empty(crs).to_frame()
    source = (store.read_pieces(index.call_id), store.read_calls(index.call_id))
    task = LeafTask(None, index.call_id, source, config, seam_tolerance(index.tiles, config), crs,
                    int(index.tiles[:, 0].max()))
    return run_task(task).batch.to_frame()
