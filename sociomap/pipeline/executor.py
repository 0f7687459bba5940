"""sociomap.pipeline.executor: run batch jobs in-process or on Dask, streaming, with a bounded window.

Only ``window`` jobs are in flight at once and results are yielded as they complete, so driver memory
does not grow with the number of tiles. On Dask, a job whose worker dies is rescheduled by the
scheduler and retried up to ``retries`` times on errors; a job that still fails is yielded with its
exception so the caller can report the tiles instead of dropping them. A SociomapError (bad input,
missing weights) is the same for every tile, so it stops the run at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice

from sociomap.errors import ConfigError, SociomapError

logger = logging.getLogger(__name__)

Outcome = tuple[object, object | None, BaseException | None]  # (job, result, error)


@dataclass(frozen=True)
class ExecutorConfig:
    """How to run: ``workers=0`` in-process; ``scheduler`` an address or scheduler-file of an existing cluster."""

    workers: int | None = None
    scheduler: str | None = None
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    window: int | None = None
    retries: int = 2
    use_gpus: bool = True  # False: never look for GPUs (the OSM baseline needs none, nor torch)


class InProcessExecutor:
    """Runs jobs one after the other in this process (tests, debugging, tiny runs)."""

    name = "in-process"

    def map_unordered(self, prepare: Callable, finish: Callable, jobs: Iterable) -> Iterator[Outcome]:
        """Yield (job, finish(prepare(job)), None), or (job, None, error) for a failed job."""
        for job in jobs:
            try:
                yield job, finish(prepare(job)), None
            except SociomapError:  # bad input or weights: the same for every tile, stop now
                raise
            except Exception as exc:  # reported per batch by the caller
                logger.exception("batch failed")
                yield job, None, exc


class DaskExecutor:
    """Streams jobs through a distributed Client, keeping at most ``window`` jobs in flight.

    Each job is two chained tasks: ``prepare`` anywhere, ``finish`` on a worker that offers the
    ``GPU`` resource when the cluster has any, so GPU workers with two threads read the next tiles
    while the model runs.
    """

    def __init__(self, client: object, window: int, retries: int) -> None:
        self.client, self.window, self.retries = client, window, retries
        self.name = f"dask {client.scheduler.address}"
        self.finish_resources = {"GPU": 1} if _cluster_has_gpus(client) else None

    def _submit(self, prepare: Callable, finish: Callable, job: object) -> object:
        prepared = self.client.submit(prepare, job, retries=self.retries, pure=False)
        return self.client.submit(finish, prepared, retries=self.retries, pure=False,
                                  resources=self.finish_resources)

    def map_unordered(self, prepare: Callable, finish: Callable, jobs: Iterable) -> Iterator[Outcome]:
        """Yield (job, result, None) or (job, None, error) as jobs complete, in any order."""
        from distributed import as_completed

        jobs = iter(jobs)
        inflight = {self._submit(prepare, finish, j): j for j in islice(jobs, self.window)}
        pending = as_completed(list(inflight))
        for fut in pending:
            job = inflight.pop(fut)
            try:
                yield job, fut.result(), None
            except SociomapError:  # bad input or weights: the same for every tile, stop now
                raise
            except Exception as exc:  # includes KilledWorker after repeated worker deaths
                yield job, None, exc
            finally:
                fut.release()
            for nxt in islice(jobs, 1):
                new = self._submit(prepare, finish, nxt)
                inflight[new] = nxt
                pending.add(new)


def _cluster_has_gpus(client: object) -> bool:
    workers = client.scheduler_info().get("workers", {}).values()
    return any(w.get("resources", {}).get("GPU") for w in workers)


def gpu_count() -> int:
    """CUDA devices visible here (0 without a CUDA torch)."""
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # a broken or CPU-only torch: no GPUs
        return 0


def _connect(scheduler: str) -> object:
    from distributed import Client

    try:
        if os.path.exists(scheduler):
            return Client(scheduler_file=scheduler, timeout=30)
        return Client(scheduler, timeout=30)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"--scheduler {scheduler}: cannot connect ({exc}); is the scheduler running?") from exc


@contextmanager
def open_executor(config: ExecutorConfig) -> Iterator[InProcessExecutor | DaskExecutor]:
    """The executor a run asks for; clusters started here are closed on exit."""
    if config.scheduler:
        client = _connect(config.scheduler)
        nworkers = max(len(client.scheduler_info().get("workers", {})), 1)
        try:
            yield DaskExecutor(client, config.window or 2 * nworkers, config.retries)
        finally:
            client.close()
        return
    if config.workers == 0:
        yield InProcessExecutor()
        return
    from distributed import Client, LocalCluster

    gpus = gpu_count() if config.use_gpus else 0
    # One worker per GPU (2 threads: one feeds tiles while the other runs the model); on CPU a single
    # worker by default, since a VLM is memory-bound and torch already uses every core.
    n = config.workers or max(gpus, 1)
    extra = {"resources": {"GPU": 1}, "threads_per_worker": 2} if gpus else {}
    cluster = LocalCluster(n_workers=n, processes=True, dashboard_address=None, memory_limit=config.memory_limit,
                           **{"threads_per_worker": config.threads_per_worker, **extra})
    client = Client(cluster)
    try:
        yield DaskExecutor(client, config.window or 2 * n, config.retries)
    finally:
        client.close()
        cluster.close()
