"""Real Dask clusters: one started here, and an external scheduler + workers started by the test, in other
folders, with GPU resources, joining mid-run, running other code, failing on bad input."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sociomap.pipeline.run import run
from tests.conftest import HELSINKI_PBF, REPO, subprocess_env
from tests.pipeline.conftest import with_executor
from tests.pipeline.test_run import layer_wkbs

LAYERS = ("park_and_greenspace.gpkg", "educational.gpkg")
OSM = ["--reasoner", "osm", "--osm", str(HELSINKI_PBF), "--tile-size", "384", "--no-pictures"]


def _dask(*args: str, log: Path, cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
                            env=env or subprocess_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=cwd)


class Cluster:
    """A `dask scheduler` on 127.0.0.1 and the workers a test starts, stopped at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.file = tmp_path / "scheduler.json"
        self.procs = [_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                            "--scheduler-file", str(self.file), log=tmp_path / "scheduler.log")]
        deadline = time.time() + 60
        while not self.file.exists() and time.time() < deadline:
            time.sleep(0.1)
        self.workers: list[subprocess.Popen] = []

    def add_worker(self, *extra: str, cwd: Path | None = None, env: dict | None = None, wait: bool = True) -> str:
        """Start a worker (in ``cwd``); returns its name."""
        name = f"w{len(self.workers)}"
        proc = _dask("worker", "--scheduler-file", str(self.file), "--nthreads", "1", "--nworkers", "1",
                     "--no-dashboard", "--host", "127.0.0.1", "--name", name, *extra,
                     log=self.tmp / f"{name}.log", cwd=cwd, env=env)
        self.workers.append(proc)
        self.procs.append(proc)
        if wait:
            self.wait_for(len(self.workers))
        return name

    def wait_for(self, n: int) -> None:
        from distributed import Client

        with Client(scheduler_file=str(self.file), timeout=60) as client:
            client.wait_for_workers(n, timeout=90)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def sociomap(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sociomap", *map(str, args)], env=subprocess_env(), cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def reference_layers(osm_run_config, tmp_path):
    """The layers of the same job run in-process, for comparison."""
    ref = replace(osm_run_config, out=tmp_path / "reference")
    run(ref)
    return {name: layer_wkbs(ref.out / name) for name in LAYERS}


def test_a_cluster_started_here_gives_the_same_layers_and_uses_every_core(osm_run_config, reference_layers):
    summary = run(with_executor(osm_run_config, workers=2))
    assert summary.executor.startswith("dask")
    assert {name: layer_wkbs(osm_run_config.out / name) for name in LAYERS} == reference_layers
    assert len(summary.work["read"]) == 2 and len(summary.work["model"]) == 2, summary.work  # both workers worked
    assert "in-process" not in summary.work["read"]


def test_external_scheduler_survives_a_killed_worker(osm_run_config, reference_layers, cluster):
    cluster.add_worker()
    cluster.add_worker()

    class KillOnFirstResult:
        killed = False

        def start(self, total_tiles, queries):
            pass

        def stage(self, name):
            pass

        def advance(self, tiles, progress):
            if not self.killed:
                os.killpg(cluster.workers[0].pid, signal.SIGKILL)  # the worker and its nanny die mid-run
                self.killed = True

    cfg = replace(osm_run_config, tiling=replace(osm_run_config.tiling, tiles_per_task=1))
    reporter = KillOnFirstResult()
    summary = run(with_executor(cfg, scheduler=str(cluster.file)), reporter)
    assert reporter.killed and cluster.workers[0].wait(timeout=10) is not None
    assert not summary.failed_tiles
    assert {name: layer_wkbs(cfg.out / name) for name in LAYERS} == reference_layers
    # A re-run on the cluster reuses every result from the cache and gives identical layers.
    again = run(with_executor(cfg, scheduler=str(cluster.file)))
    assert again.results_computed == 0
    assert {name: layer_wkbs(cfg.out / name) for name in LAYERS} == reference_layers


def test_workers_in_another_folder_and_a_relative_out(utm_mosaic, cluster, tmp_path):
    elsewhere, client_dir = tmp_path / "workers", tmp_path / "client"
    elsewhere.mkdir()
    client_dir.mkdir()
    cluster.add_worker(cwd=elsewhere)
    cluster.add_worker(cwd=elsewhere)
    proc = sociomap("run", utm_mosaic, "-c", "park", "-o", "rel/out", "--scheduler", cluster.file, *OSM, cwd=client_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = client_dir / "rel" / "out"
    manifest = json.loads((out / "run.json").read_text())
    assert (out / "park_and_greenspace.gpkg").exists() and (out / ".sociomap" / "cache.sqlite").exists()
    assert manifest["counts"]["results_computed"] > 0 and len(manifest["work"]["read"]) == 2
    assert not (elsewhere / "rel").exists() and not list(elsewhere.rglob("*.sqlite")), "nothing lands on workers"
    proc = sociomap("run", utm_mosaic, "-c", "park", "-o", "rel/out", "--scheduler", cluster.file, *OSM, cwd=client_dir)
    assert proc.returncode == 0 and json.loads((out / "run.json").read_text())["counts"]["results_computed"] == 0


def test_a_worker_that_joins_mid_run_gets_work_and_widens_the_window(osm_run_config, cluster):
    cluster.add_worker()

    class AddWorkerOnFirstResult:
        added = False

        def start(self, total_tiles, queries):
            pass

        def stage(self, name):
            pass

        def advance(self, tiles, progress):
            if not self.added:
                self.added = True
                cluster.add_worker()  # blocks until it has joined

    cfg = replace(osm_run_config, tiling=replace(osm_run_config.tiling, zoom=17, tile_size=256, tiles_per_task=1))
    summary = run(with_executor(cfg, scheduler=str(cluster.file)), AddWorkerOnFirstResult())
    assert len(summary.work["read"]) == 2, summary.work
    assert summary.max_window == 4  # 2 x the cluster's threads, as it grew from one worker to two


def test_model_tasks_run_only_on_gpu_workers(utm_mosaic, map_4326, tiny_checkpoint, cluster, tmp_path):
    from sociomap.merge import MergeConfig
    from sociomap.pipeline.executor import ExecutorConfig
    from sociomap.pipeline.run import RunConfig
    from sociomap.reasoning import ReasonerConfig
    from sociomap.tiling import TilingConfig

    for _ in range(2):
        cluster.add_worker("--resources", "GPU=1")  # a CPU machine stands in for two GPU workers
    cluster.add_worker()
    reasoner = ReasonerConfig(model=str(tiny_checkpoint / "vlm"), sam=str(tiny_checkpoint / "sam2"), greedy=True,
                              max_new_tokens=4)
    config = RunConfig(image=utm_mosaic, out=tmp_path / "out", classes=("park",), map=map_4326, reasoner=reasoner,
                       tiling=TilingConfig(zoom=15, tile_size=128, tiles_per_task=1), merge=MergeConfig(),
                       executor=ExecutorConfig(scheduler=str(cluster.file)))
    summary = run(config)
    assert {w.split("@")[0] for w in summary.work["model"]} == {"w0", "w1"}, summary.work
    assert "w2" in {w.split("@")[0] for step in ("read", "vectorize") for w in summary.work[step]}


def test_a_worker_side_bad_input_is_one_line_and_its_exit_code(utm_mosaic, tiny_checkpoint, cluster, tmp_path):
    import mercantile

    cluster.add_worker()
    tiles = tmp_path / "tiles"
    for t in mercantile.tiles(24.93, 60.16, 24.96, 60.18, zooms=15):  # a tile folder whose PNGs are garbage
        (tiles / "15" / str(t.x)).mkdir(parents=True, exist_ok=True)
        (tiles / "15" / str(t.x) / f"{t.y}.png").write_bytes(b"not a png")
    proc = sociomap("run", utm_mosaic, "-c", "park", "-o", tmp_path / "out", "--map", tiles, "--zoom", "15",
                    "--tile-size", "128", "--model", tiny_checkpoint / "vlm", "--sam", tiny_checkpoint / "sam2",
                    "--device", "cpu", "--scheduler", cluster.file)
    assert proc.returncode == 3, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "Error" in line]
    assert len(errors) == 1 and ".png" in errors[0] and "Traceback" not in proc.stderr
    proc = sociomap("run", utm_mosaic, "-c", "park", "-o", tmp_path / "out2", "--map", tiles, "--device", "cpu",
                    "--model", tmp_path / "no-such-model", "--scheduler", cluster.file)
    assert proc.returncode == 4 and "no-such-model" in proc.stderr and "Traceback" not in proc.stderr


def test_a_worker_running_other_sociomap_code_is_refused(utm_mosaic, cluster, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(REPO / "sociomap", other / "sociomap", ignore=shutil.ignore_patterns("__pycache__"))
    init = other / "sociomap" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.9.9+'))
    cluster.add_worker(env=subprocess_env(PYTHONPATH=str(other)), cwd=tmp_path)  # cwd: not this checkout
    proc = sociomap("run", utm_mosaic, "-c", "park", "-o", tmp_path / "out", "--scheduler", cluster.file, *OSM)
    assert proc.returncode == 3 and "9.9.9" in proc.stderr and "same sociomap" in proc.stderr
    assert not (tmp_path / "out" / "current").exists()


def test_workers_that_cannot_read_an_input_are_named(cluster, tmp_path):
    from distributed import Client

    from sociomap.errors import InputError
    from sociomap.pipeline.executor import check_workers

    cluster.add_worker()
    with Client(scheduler_file=str(cluster.file), timeout=60) as client:
        readable = tmp_path / "readable.tif"
        readable.write_bytes(b"x")
        check_workers(client, [str(readable)], list(client.nthreads()))
        with pytest.raises(InputError, match=r"worker tcp://127\.0\.0\.1:\d+ cannot read .*missing\.tif"):
            check_workers(client, [str(readable), str(tmp_path / "missing.tif")], list(client.nthreads()))


def test_errors_keep_class_message_and_exit_code_across_processes(cluster):
    import rasterio.errors
    from distributed import Client

    import sociomap.errors as errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.SociomapError)]
    for cls in classes:
        try:
            try:
                raise rasterio.errors.RasterioIOError("GDAL said no")
            except rasterio.errors.RasterioIOError as cause:
                raise cls("/data/city.tif: cannot read") from cause
        except cls as exc:
            back = pickle.loads(pickle.dumps(exc))
        assert type(back) is cls and str(back) == "/data/city.tif: cannot read" and back.exit_code == cls.exit_code
    cluster.add_worker()
    with Client(scheduler_file=str(cluster.file), timeout=60) as client:
        future = client.submit(_raise_mosaic_error, pure=False)
        with pytest.raises(errors.MosaicError, match="city.tif"):
            future.result()


def _raise_mosaic_error() -> None:
    import rasterio

    from sociomap.errors import MosaicError

    try:
        rasterio.open("/nonexistent/city.tif")
    except rasterio.errors.RasterioIOError as exc:
        raise MosaicError("/nonexistent/city.tif: cannot open") from exc


def test_local_layout_follows_the_machine(monkeypatch):
    import sociomap.pipeline.executor as executor
    from sociomap.errors import ConfigError
    from sociomap.pipeline.executor import ExecutorConfig, local_layout

    monkeypatch.setattr(executor, "machine_cores", lambda: 16)
    osm = local_layout(ExecutorConfig(), needs_model=False, model_on_gpu=False)
    assert len(osm) == 16 and all(w.threads == 1 and not w.resources for w in osm)
    gpu = local_layout(ExecutorConfig(gpus=4), needs_model=True, model_on_gpu=True)
    gpus = [w for w in gpu if w.resources]
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in gpus] == ["0", "1", "2", "3"]
    assert all(w.resources == {"GPU": 1} for w in gpus) and len(gpu) - len(gpus) == 12
    cpu_model = local_layout(ExecutorConfig(), needs_model=True, model_on_gpu=False)
    assert len(cpu_model) == 1 and cpu_model[0].threads == 2
    with pytest.raises(ConfigError, match="--workers 500: this machine has 16 cores"):
        local_layout(ExecutorConfig(workers=500), needs_model=False, model_on_gpu=False)


def test_local_gpu_layout_pins_model_tasks_to_gpu_workers(osm_run_config, utm_mosaic, map_4326, tiny_checkpoint,
                                                         tmp_path):
    from sociomap.reasoning import ReasonerConfig

    reasoner = ReasonerConfig(model=str(tiny_checkpoint / "vlm"), sam=str(tiny_checkpoint / "sam2"), greedy=True,
                              max_new_tokens=4)
    config = replace(osm_run_config, reasoner_kind="socioreasoner", osm=None, map=map_4326, reasoner=reasoner,
                     classes=("park",),
                     tiling=replace(osm_run_config.tiling, zoom=15, tile_size=128, tiles_per_task=1))
    summary = run(with_executor(config, workers=1, gpus=1))  # one "GPU" worker (CUDA_VISIBLE_DEVICES=0) + one CPU
    assert [w.split("@")[0] for w in summary.work["model"]] == ["gpu-0"], summary.work
