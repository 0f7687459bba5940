"""Real Dask clusters: a LocalCluster of processes, and an external scheduler + workers started here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from sociomap.pipeline.run import run
from tests.conftest import subprocess_env
from tests.pipeline.conftest import with_executor
from tests.pipeline.test_run import layer_wkbs

LAYERS = ("park_and_greenspace.gpkg", "educational.gpkg")


def _dask(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
                            env=subprocess_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.fixture
def external_cluster(tmp_path):
    """`dask scheduler` + two `dask worker` processes on 127.0.0.1; yields (scheduler file, workers)."""
    sched_file = tmp_path / "scheduler.json"
    procs = [_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                   "--scheduler-file", str(sched_file), log=tmp_path / "scheduler.log")]
    deadline = time.time() + 60
    while not sched_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    workers = [_dask("worker", "--scheduler-file", str(sched_file), "--nthreads", "1", "--nworkers", "1",
                     "--no-dashboard", "--host", "127.0.0.1", log=tmp_path / f"worker{i}.log") for i in range(2)]
    procs += workers
    from distributed import Client

    with Client(scheduler_file=str(sched_file), timeout=60) as client:
        client.wait_for_workers(2, timeout=60)
    try:
        yield sched_file, workers
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture
def reference_layers(osm_run_config, tmp_path):
    """The layers of the same job run in-process, for comparison."""
    ref = replace(osm_run_config, out=tmp_path / "reference")
    run(ref)
    return {name: layer_wkbs(ref.out / name) for name in LAYERS}


def test_local_cluster_gives_the_same_layers(osm_run_config, reference_layers):
    summary = run(with_executor(osm_run_config, workers=2))
    assert summary.executor.startswith("dask")
    assert {name: layer_wkbs(osm_run_config.out / name) for name in LAYERS} == reference_layers


def test_external_scheduler_survives_a_killed_worker(osm_run_config, reference_layers, external_cluster):
    sched_file, workers = external_cluster

    class KillOnFirstResult:
        killed = False

        def start(self, total_tiles, queries):
            pass

        def stage(self, name):
            pass

        def advance(self, tiles, result):
            if not self.killed:
                os.killpg(workers[0].pid, signal.SIGKILL)  # the worker and its nanny die mid-run
                self.killed = True

    cfg = replace(osm_run_config, tiling=replace(osm_run_config.tiling, tiles_per_task=1))
    reporter = KillOnFirstResult()
    summary = run(with_executor(cfg, scheduler=str(sched_file)), reporter)
    assert reporter.killed and workers[0].wait(timeout=10) is not None
    assert not summary.failed_tiles
    assert {name: layer_wkbs(cfg.out / name) for name in LAYERS} == reference_layers
    # A re-run on the cluster reuses every result from the cache and gives identical layers.
    again = run(with_executor(cfg, scheduler=str(sched_file)))
    assert again.results_computed == 0
    assert {name: layer_wkbs(cfg.out / name) for name in LAYERS} == reference_layers
