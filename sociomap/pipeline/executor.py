"""sociomap.pipeline.executor: where tasks run: in this process, on a cluster started here, or on yours.

The driver submits small task graphs (read -> segment -> vectorize per batch) and consumes them as they
complete; an executor only runs functions and reports outcomes. Tasks return failures as values
(``tasks.TaskFailure``), so retries are the driver's decision and Dask never logs or retries them.

On Dask, model tasks run only on workers that offer the ``GPU`` resource unless the model is asked to
run on the CPU (``--device cpu``). A cluster started here gives one GPU worker per GPU (its own
``CUDA_VISIBLE_DEVICES``) plus CPU workers sized from the cores and memory for reading, drawing and
vectorizing; the OSM baseline uses every core. On an existing cluster, every worker is checked before
any work (same sociomap code, same Dask stack, inputs readable) and again when new workers join.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sociomap.errors import ConfigError, InputError
from sociomap.pipeline.tasks import TaskFailure, call, returned

logger = logging.getLogger(__name__)

#: The Dask worker resource that marks a worker able to run the model on a GPU.
GPU_RESOURCE = "GPU"
#: Environment of single-thread CPU workers: numeric libraries must not each start a thread per core.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: How often (seconds) the driver re-reads the worker list (window size, new workers to check).
WORKERS_REFRESH_S = 2.0


@dataclass(frozen=True)
class ExecutorConfig:
    """How to run.

    Attributes:
        workers: local worker processes for reading, drawing and vectorizing (and the OSM baseline);
            None picks from the machine; 0 runs everything in this process.
        scheduler: address (tcp://host:8786) or scheduler-file of an existing cluster.
        gpus: GPUs of this machine to give one worker each (None: all visible ones).
        memory_limit: per-worker memory limit ("auto" shares the machine's memory).
        window: batches in flight (None: twice the cluster's threads, following workers as they come and go).
        retries: resubmissions of a failing batch before its tiles count as failed.
        min_workers: on an existing cluster, wait until this many workers have joined.
        worker_dir: scratch folder for local workers (spill files), inside the output's state folder.
    """

    workers: int | None = None
    scheduler: str | None = None
    gpus: int | None = None
    memory_limit: str = "auto"
    window: int | None = None
    retries: int = 2
    min_workers: int = 1
    worker_dir: Path | None = None


def machine_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_count() -> int:
    """CUDA devices visible here (0 without a CUDA torch; torch is imported only to ask)."""
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # a broken or CPU-only torch: no GPUs
        return 0


class InProcessExecutor:
    """Runs each task when it is submitted, in this process (tests, debugging, tiny runs)."""

    name = "in-process"
    max_window = 1
    workers_seen = frozenset({"in-process"})

    def __init__(self) -> None:
        self._watched: list[Future] = []

    def submit(self, fn: Callable, *args: object, model: bool = False, watch: bool = False) -> Future:
        """Run ``fn`` now; arguments that are futures are replaced by their results."""
        future: Future = Future()
        future.set_result(fn(*(a.result() if isinstance(a, Future) else a for a in args)))
        if watch:
            self._watched.append(future)
        return future

    def next_done(self) -> Future:
        """The oldest watched task (all are done)."""
        return self._watched.pop(0)

    def outcome(self, future: Future) -> object:
        """The task's return value (a TaskFailure when it failed)."""
        return future.result()

    def release(self, future: Future) -> None:
        """Nothing to release in-process."""

    def capacity(self) -> int:
        """One batch at a time."""
        return 1

    def call_on_model_worker(self, fn: Callable, *args: object) -> object:
        """Run ``fn`` here (this process runs the model)."""
        return returned(call(fn, *args))


class DaskExecutor:
    """Submits to a distributed Client; model tasks carry the GPU resource when the run needs one."""

    def __init__(self, client: object, config: ExecutorConfig, model_on_gpu: bool, paths: Sequence[Path],
                 owns_cluster: bool) -> None:
        from distributed import as_completed

        self.client, self.config, self.paths = client, config, [str(p) for p in paths]
        self.model_resources = {GPU_RESOURCE: 1} if model_on_gpu else None
        self.name = f"dask {client.scheduler.address}"
        self.owns_cluster = owns_cluster
        self._completed = as_completed([], with_results=False)
        self._checked: set[str] = set()
        self._window = 2
        self._refreshed = 0.0
        self.max_window = 0
        self.workers_seen: set[str] = set()
        self.refresh()

    def submit(self, fn: Callable, *args: object, model: bool = False, watch: bool = False) -> object:
        """Submit a task (model tasks pinned to GPU workers when the run has a GPU model); ``watch`` it to
        get it back from ``next_done`` when it completes."""
        future = self.client.submit(fn, *args, pure=False, resources=self.model_resources if model else None)
        if watch:
            self._completed.add(future)
        return future

    def next_done(self) -> object:
        """Block until a watched task completes; return it."""
        return next(self._completed)

    def outcome(self, future: object) -> object:
        """The task's value, or a TaskFailure for a task Dask lost (e.g. its workers kept dying)."""
        try:
            return future.result()
        except Exception as exc:  # KilledWorker, CommClosedError, deserialization errors, ...
            return TaskFailure("", 1, f"{type(exc).__name__}: {exc}", traceback.format_exc(), "")

    def release(self, future: object) -> None:
        """Let the cluster forget a result the driver has consumed."""
        future.release()

    def capacity(self) -> int:
        """Batches to keep in flight: twice the cluster's threads, re-read every few seconds."""
        if time.monotonic() - self._refreshed > WORKERS_REFRESH_S:
            self.refresh()
        return self._window

    def refresh(self) -> None:
        """Re-read the workers: size the window, check workers that joined since the last look."""
        threads = self.client.nthreads()
        self._refreshed = time.monotonic()
        new = set(threads) - self._checked
        if new:
            check_workers(self.client, self.paths, sorted(new))
            self._checked |= new
        self.workers_seen |= set(threads)
        self._window = self.config.window or max(2, 2 * sum(threads.values()))
        self.max_window = max(self.max_window, self._window)

    def call_on_model_worker(self, fn: Callable, *args: object) -> object:
        """Run ``fn`` on a worker that will run the model (e.g. to resolve the model identity there)."""
        return returned(self.outcome(self.client.submit(call, fn, *args, pure=False, resources=self.model_resources)))


def _read_problems(paths: list[str]) -> list[str]:
    """Runs on each worker: the input paths it cannot read, with the reason."""
    problems = []
    for path in paths:
        p = Path(path)
        try:
            if p.is_dir():
                next(iter(os.scandir(p)), None)
            else:
                with open(p, "rb") as handle:
                    handle.read(1)
        except OSError as exc:
            problems.append(f"{path} ({exc.strerror or exc})")
    return problems


def _sociomap_identity() -> tuple[str, str]:
    """Runs on each worker: the installed sociomap version and a fingerprint of its code."""
    import sociomap
    from sociomap.fingerprint import code_fingerprint

    return sociomap.__version__, code_fingerprint("sociomap")


def check_workers(client: object, paths: list[str], workers: list[str]) -> None:
    """Fail before any work when a worker runs other code or cannot read an input (naming both)."""
    try:
        client.get_versions(check=True)
    except ValueError as exc:
        raise ConfigError(f"the cluster's Python packages differ between client and workers: {exc}") from None
    mine = _sociomap_identity()
    for worker, theirs in client.run(_sociomap_identity, workers=workers).items():
        if tuple(theirs) != mine:
            raise ConfigError(f"worker {worker} runs sociomap {theirs[0]} (code {theirs[1][:12]}), this client "
                              f"{mine[0]} (code {mine[1][:12]}); install the same sociomap on every node")
    if paths:
        for worker, problems in client.run(_read_problems, paths, workers=workers).items():
            if problems:
                raise InputError(f"worker {worker} cannot read {problems[0]}; every worker needs the inputs at the "
                                 "same path (a shared file system or the same mount); see docs/cluster.md")


def _connect(scheduler: str) -> object:
    from distributed import Client

    try:
        if Path(scheduler).is_file():
            return Client(scheduler_file=scheduler, timeout=30)
        return Client(scheduler, timeout=30)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"--scheduler {scheduler}: cannot connect ({exc}); is the scheduler running?") from None


def _wait_for_model_worker(client: object, timeout: float) -> None:
    """An adaptive cluster may still be scaling up: wait for a GPU worker, then fail clearly."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
        if any(w.get("resources", {}).get(GPU_RESOURCE) for w in workers):
            return
        time.sleep(1.0)
    raise ConfigError(f"no worker of the cluster offers the {GPU_RESOURCE} resource after {timeout:.0f} s: start "
                      f"GPU workers with `dask worker ... --resources {GPU_RESOURCE}=1` (one per GPU; `dask cuda "
                      "worker` on multi-GPU nodes), or pass --device cpu to run the model on CPU workers")


@dataclass(frozen=True)
class WorkerSpec:
    """One local worker process: threads, resources, environment."""

    name: str
    threads: int
    resources: dict
    env: dict


def local_layout(config: ExecutorConfig, needs_model: bool, model_on_gpu: bool) -> list[WorkerSpec]:
    """The workers a cluster started on this machine gets.

    GPU runs: one single-thread worker per GPU (resource GPU=1, its own CUDA_VISIBLE_DEVICES) plus CPU
    workers on the remaining cores. A CPU model: one worker with two threads (one reads the next tiles while
    the other runs the model, which uses every core itself). The OSM baseline: one worker per core.
    """
    from sociomap.pipeline.checks import check_workers

    cores = machine_cores()
    gpus = (config.gpus if config.gpus is not None else gpu_count()) if needs_model and model_on_gpu else 0
    check_workers(config.workers, config.scheduler)
    if gpus:
        cpu_workers = config.workers or max(cores - gpus, 1)
        return ([WorkerSpec(f"gpu-{i}", 1, {GPU_RESOURCE: 1}, {"CUDA_VISIBLE_DEVICES": str(i)}) for i in range(gpus)]
                + [WorkerSpec(f"cpu-{i}", 1, {}, ONE_THREAD) for i in range(cpu_workers)])
    if needs_model:
        return [WorkerSpec(f"cpu-{i}", 2, {}, {}) for i in range(config.workers or 1)]
    return [WorkerSpec(f"cpu-{i}", 1, {}, ONE_THREAD) for i in range(config.workers or cores)]


def _start_cluster(specs: list[WorkerSpec], config: ExecutorConfig) -> object:
    from distributed import Nanny, Scheduler, SpecCluster

    common = {"memory_limit": config.memory_limit if config.memory_limit != "auto" else
              f"{int(_total_memory() / len(specs))}B", "silence_logs": logging.ERROR, "dashboard": False,
              "host": "127.0.0.1"}
    if config.worker_dir is not None:
        common["local_directory"] = str(config.worker_dir)
    workers = {s.name: {"cls": Nanny, "options": {**common, "nthreads": s.threads, "resources": s.resources,
                                                  "env": s.env}} for s in specs}
    scheduler = {"cls": Scheduler, "options": {"dashboard": False, "dashboard_address": None, "host": "127.0.0.1",
                                               "port": 0}}
    if config.worker_dir is not None:  # the scheduler's scratch (locks) too: nothing of a run outside --out
        scheduler["options"]["local_directory"] = str(config.worker_dir)
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.ERROR, name="sociomap")


def _total_memory() -> int:
    import psutil

    return psutil.virtual_memory().total


@contextmanager
def open_executor(config: ExecutorConfig, needs_model: bool, model_on_gpu: bool,
                  paths: Sequence[Path] = ()) -> Iterator[InProcessExecutor | DaskExecutor]:
    """The executor a run asks for; a cluster started here is closed on exit. ``paths`` are the local
    inputs every worker must be able to read (checked before any work)."""
    if config.scheduler:
        client = _connect(config.scheduler)
        try:
            if config.min_workers > 1 or not client.nthreads():
                try:
                    client.wait_for_workers(config.min_workers, timeout=300)
                except TimeoutError:
                    raise ConfigError(f"--min-workers {config.min_workers}: fewer workers joined within 300 s") from None
            if needs_model and model_on_gpu:
                _wait_for_model_worker(client, timeout=300)
            yield DaskExecutor(client, config, needs_model and model_on_gpu, paths, owns_cluster=False)
        finally:
            client.close()
        return
    if config.workers == 0:
        yield InProcessExecutor()
        return
    from distributed import Client

    specs = local_layout(config, needs_model, model_on_gpu)
    cluster = _start_cluster(specs, config)
    client = Client(cluster)
    try:
        has_gpus = any(s.resources for s in specs)
        yield DaskExecutor(client, config, has_gpus, paths, owns_cluster=True)
    finally:
        client.close()
        cluster.close()
