"""Faults in the middle of real runs: kill -9 at every stage, a killed worker, a disk that fills up.

Each fault strikes a real ``sociomap`` process at one named call (``harness.Fault``: the test's runner wraps
that call; the code under test is unchanged). A cron user needs three things after it, and each case checks
them: the published set is the one from before, byte for byte; nothing was left outside the output folder
(an empty TMPDIR and working folder); the next plain run finishes and gives the layers of a clean run.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyogrio
import pytest

from tests.conftest import HELSINKI_PBF
from tests.reliability.harness import (TABLE, Fault, cli, env_with_tmpdir, error_line, mount_tmpfs, published, tree,
                                       unmount)

OSM = ("--reasoner", "osm", "--osm", str(HELSINKI_PBF), "--tile-size", "256", "--tiles-per-task", "1",
       "--no-pictures")
FIRST, SECOND = "park", "park,school"  # the published run, then the run (with new work) that the fault strikes


def run_args(image: Path, out: Path, classes: str, *extra: object) -> list[object]:
    return ["run", image, "-c", classes, "-o", out, *OSM, "--workers", "0", *extra]


def set_digest(out: Path) -> dict[str, str]:
    """sha256 of every file of the published set (what a reader of OUT/current gets)."""
    current = (out / "current").resolve()
    return {str(p.relative_to(current)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(current.rglob("*")) if p.is_file()}


def layers(out: Path) -> dict[str, list[bytes]]:
    """Every published layer's geometries (normalised WKB), read back through GDAL."""
    found = {}
    for path in sorted((out / "current").resolve().glob("*.gpkg")):
        frame = pyogrio.read_dataframe(path)
        found[path.stem] = sorted(g.wkb for g in frame.geometry.normalize())
    return found


def leftovers(out: Path) -> list[str]:
    """Temporary state of unfinished runs inside OUT (a finished run removes it)."""
    state = out / ".sociomap"
    found = [str(p.relative_to(out)) for p in (state / "staging").glob("*")] if (state / "staging").is_dir() else []
    return found + [p.name for p in (*out.glob(".tmp-*"), *out.glob(".current-*"), *state.glob(".tmp-*"))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, utm_mosaic) -> dict[str, list[bytes]]:
    """The layers of a clean SECOND run into a new folder: what every recovery must give."""
    out = tmp_path_factory.mktemp("reference") / "out"
    outcome = cli(*run_args(utm_mosaic, out, SECOND))
    assert outcome.exit == 0, outcome.stderr[-2000:]
    return layers(out)


@pytest.fixture
def site(tmp_path, utm_mosaic):
    """A folder with a published FIRST run, an empty TMPDIR and an empty working folder for the next command."""
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    env = env_with_tmpdir(tmp_path / "tmp")
    first = cli(*run_args(utm_mosaic, out, FIRST), env=env, cwd=cwd)
    assert first.exit == 0, first.stderr[-2000:]
    return Site(out, cwd, tmp_path / "tmp", env, utm_mosaic)


@dataclass
class Site:
    out: Path
    cwd: Path
    tmpdir: Path
    env: dict
    image: Path

    def strike(self, fault: Fault, *args: object):
        return cli(*(args or run_args(self.image, self.out, SECOND)), env=fault.env(self.env), cwd=self.cwd)


@dataclass(frozen=True)
class KillPoint:
    key: str
    stage: str
    fault: Fault
    command: str = "run"  # or "export": the fault strikes `sociomap export OUT --format pmtiles`


KILLS = [
    KillPoint("kill-tiling", "reading tiles", Fault("sociomap.tiling.mosaic:Mosaic.read", "kill", nth=4)),
    KillPoint("kill-inference", "inference", Fault("sociomap.pipeline.segmenters:OSMSegmenter.segment", "kill",
                                                   nth=3)),
    KillPoint("kill-merge", "merging and writing layers", Fault("sociomap.export.vector:_LayerFile.append", "kill",
                                                                when="after")),
    KillPoint("kill-manifest", "writing the new set's run.json",
              Fault("sociomap.pipeline.manifest:os.replace", "kill", match="run.json")),
    KillPoint("kill-publish", "publishing (the set moved, OUT/current not yet switched)",
              Fault("sociomap.pipeline.outputs:_symlink_atomic", "kill")),
    KillPoint("kill-export", "`sociomap export --format pmtiles` (tippecanoe's archive written)",
              Fault("sociomap.export.pmtiles:_declare_layers", "kill"), command="export"),
]


@pytest.mark.parametrize("point", KILLS, ids=[k.key for k in KILLS])
def test_kill_9_keeps_the_published_set_and_the_next_run_recovers(point, site, reference):
    before, manifest, first_layers = set_digest(site.out), published(site.out), layers(site.out)
    args = ("export", site.out, "--format", "pmtiles") if point.command == "export" else ()
    killed = site.strike(point.fault, *args)
    assert killed.exit == -signal.SIGKILL, (killed.exit, killed.stderr[-2000:])
    kept = set_digest(site.out) == before and published(site.out) == manifest
    outside = tree(site.tmpdir) + tree(site.cwd)
    left = leftovers(site.out)

    again = cli(*(args or run_args(site.image, site.out, SECOND)), env=site.env, cwd=site.cwd)
    recovered = again.exit == 0 and not leftovers(site.out)
    same = layers(site.out) == (reference if point.command == "run" else first_layers)
    TABLE.record(point.key, "kill -9", f"kill -9 while {point.stage}", "killed (-9)",
                 f"published set {'unchanged' if kept else 'CHANGED'}; the same command again: exit {again.exit}, "
                 f"{'same layers as a clean run' if same else 'OTHER LAYERS'}",
                 ("nothing outside OUT" if not outside else "FILES OUTSIDE OUT") +
                 (f"; {len(left)} staging folder(s) in OUT, removed by the next command" if left else ""))
    assert kept, "a kill must never change what OUT/current serves"
    assert outside == [], f"files left outside the output folder: {outside}"
    assert recovered, again.stderr[-2000:]
    assert same


def test_kill_9_during_inference_resumes_from_the_cache(site, reference):
    killed = site.strike(Fault("sociomap.pipeline.segmenters:OSMSegmenter.segment", "kill", nth=6))
    assert killed.exit == -signal.SIGKILL
    again = cli(*run_args(site.image, site.out, SECOND), env=site.env, cwd=site.cwd)
    counts = published(site.out)[1]["counts"]
    new_work = counts["tiles_total"] - counts["tiles_empty"]  # one new (tile, school) result per tile with data
    TABLE.record("kill-resume", "kill -9", "kill -9 after 5 inference batches, then the same command",
                 again.exit, f"resumed: {new_work - counts['results_computed']} of {new_work} new results came "
                 "from the killed run's cache; same layers as a clean run", "nothing outside OUT")
    assert again.exit == 0 and layers(site.out) == reference
    assert counts["results_computed"] == new_work - 5, counts  # the 5 batches done before the kill are not redone


def test_a_killed_worker_is_replaced_and_the_run_gives_the_same_layers(utm_mosaic, tmp_path):
    # z18: ~500 tiles, long enough (tens of seconds) for the kill to land while tiles flow.
    clean = cli(*run_args(utm_mosaic, tmp_path / "clean", SECOND, "--zoom", "18"))
    assert clean.exit == 0, clean.stderr[-2000:]
    reference = layers(tmp_path / "clean")
    out, log = tmp_path / "out", tmp_path / "stderr.log"
    args = [sys.executable, "-m", "sociomap", "-v", "run", utm_mosaic, "-c", SECOND, "-o", out, *OSM, "--zoom", "18",
            "--workers", "2", "--retries", "2"]
    with open(log, "w") as stderr:
        proc = subprocess.Popen(list(map(str, args)), stdout=subprocess.DEVNULL, stderr=stderr,
                                env=env_with_tmpdir(tmp_path / "tmp"))
        victim = _kill_a_worker_once_tiles_flow(proc, log)
        proc.wait(timeout=600)
    text = log.read_text()
    ok = proc.returncode == 0 and layers(out) == reference
    TABLE.record("kill-worker", "cluster", "kill -9 of one of 2 local Dask workers mid-run", proc.returncode,
                 "run finished; same layers as a clean run" if ok else error_line_of(text), "nothing outside OUT")
    assert victim is not None, "no worker process was found to kill"
    assert proc.returncode == 0, text[-3000:]
    assert ok and published(out)[1]["status"] == "ok"
    assert tree(tmp_path / "tmp") == []


def _kill_a_worker_once_tiles_flow(proc: subprocess.Popen, log: Path) -> int | None:
    """SIGKILL one Dask worker process once the run is past its first tiles (the nannies run in the CLI's own
    event loop; each worker is a multiprocessing child of the CLI)."""
    import psutil

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and "stage: tiles" not in log.read_text():
        time.sleep(0.2)
    time.sleep(2)  # the workers are busy with tiles
    children = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
    if not workers:
        return None
    os.kill(workers[0].pid, signal.SIGKILL)
    return workers[0].pid


def error_line_of(stderr: str) -> str:
    return next((line for line in stderr.splitlines() if line.startswith("Error")), "(no error line)")


# A disk that fills up: the output folder on a small tmpfs, filled at one point of the run; where no tmpfs can
# be mounted (no root or CAP_SYS_ADMIN, e.g. an unprivileged container; or SOCIOMAP_TEST_NO_TMPFS=1), ENOSPC is
# raised by the first write of that point instead (the cache, the GeoPackage, the export file).
DISK_POINTS = [
    ("full-inference", "while results are stored", "sociomap.pipeline.segmenters:OSMSegmenter.segment",
     "sociomap.pipeline.cache:ResultCache._write"),
    ("full-layers", "while layers are written", "sociomap.export:write_merged_layers",
     "sociomap.export.vector:_LayerFile._write"),
    ("full-export", "while exports are made", "sociomap.pipeline.publish:write_export",
     "sociomap.export.vector:_write_atomic"),
]


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    mounted = not os.environ.get("SOCIOMAP_TEST_NO_TMPFS") and mount_tmpfs(disk, "96M")
    disk.mkdir(exist_ok=True)
    yield disk, mounted
    if mounted:
        unmount(disk)


@pytest.mark.parametrize("key,when,fill_at,raise_at", DISK_POINTS, ids=[p[0] for p in DISK_POINTS])
def test_a_full_disk_is_one_line_and_keeps_the_published_set(key, when, fill_at, raise_at, small_disk, utm_mosaic,
                                                              tmp_path, reference):
    disk, mounted = small_disk
    out, ballast = disk / "out", disk / "ballast"
    env = env_with_tmpdir(tmp_path / "tmp")
    first = cli(*run_args(utm_mosaic, out, FIRST, "--format", "fgb"), env=env)
    assert first.exit == 0, first.stderr[-2000:]
    before, manifest = set_digest(out), published(out)
    fault = Fault(fill_at, "fill", ballast=str(ballast)) if mounted else Fault(raise_at, "enospc", ballast=str(out))
    full = cli(*run_args(utm_mosaic, out, SECOND), env=fault.env(env))
    kept = set_digest(out) == before and published(out) == manifest
    line = error_line(full, out, disk, tmp_path)
    ballast.unlink(missing_ok=True)
    again = cli(*run_args(utm_mosaic, out, SECOND), env=env)
    TABLE.record(key, "full disk", f"the disk fills up {when}", full.exit,
                 f"{line.split(' (')[0]}; published set {'unchanged' if kept else 'CHANGED'}; after freeing "
                 f"space the next run exits {again.exit}", "nothing outside OUT" if not tree(tmp_path / "tmp")
                 else "FILES OUTSIDE OUT")
    assert full.exit == 3, full.stderr[-2000:]
    assert len(full.error_lines) == 1 and "disk is full" in full.stderr, full.stderr[-2000:]
    assert "Traceback" not in full.stderr and " ERROR " not in full.stderr  # no second error about the same cause
    assert kept and tree(tmp_path / "tmp") == []
    assert again.exit == 0 and layers(out) == reference, again.stderr[-2000:]


def test_tiles_failing_inside_workers_are_one_line_without_worker_tracebacks(utm_mosaic, tmp_path):
    broken = tmp_path / "broken.tif"  # cut short: the header opens, reads of its later blocks fail on the workers
    data = utm_mosaic.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    outcome = cli("run", broken, "-c", "park", "-o", tmp_path / "out", *OSM, "--workers", "2", "--retries", "1",
                  env=env_with_tmpdir(tmp_path / "tmp"))
    TABLE.record("worker-tiles-fail", "cluster", "a mosaic cut short: tile reads fail inside 2 Dask workers",
                 outcome.exit, error_line(outcome, tmp_path), "failed-<run_id>.json with each tile's error")
    assert outcome.exit == 6 and len(outcome.error_lines) == 1, outcome.stderr[-3000:]
    assert "Traceback" not in outcome.stderr and "failed after retries" in outcome.stderr
