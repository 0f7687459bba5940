"""Cron you can trust, each fault provoked for real through the CLI: kills, damaged cache entries, taxonomy
edits, other classes, no data, shrinking layers, exports that must not go stale, cache gc, cheap re-runs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from rasterio.transform import from_origin

from sociomap.cli import cli
from tests.conftest import HELSINKI_ORIGIN, HELSINKI_PBF, UTM35N, subprocess_env, synthetic_rgb, write_geotiff
from tests.pipeline.test_run import layer_wkbs

OSM = ["--reasoner", "osm", "--osm", str(HELSINKI_PBF), "--tile-size", "384", "--tiles-per-task", "3", "--no-pictures"]
PARK, SCHOOL = "park_and_greenspace.gpkg", "educational.gpkg"


def sociomap(runner, *args: str, expect: int = 0):
    result = runner.invoke(cli, [str(a) for a in args])
    assert result.exit_code == expect, result.output
    return result


def manifest(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def assert_one_complete_set(out: Path) -> dict:
    """OUT/current is one run's whole set: every layer link resolves into it and was written by its run."""
    current = (out / "current").resolve()
    record = json.loads((current / "run.json").read_text())
    for slug, n in record["layers"].items():
        link = out / f"{slug}.gpkg"
        assert link.resolve() == current / f"{slug}.gpkg"
        frame = pyogrio.read_dataframe(link)
        assert len(frame) == n
        expected = record["carried"].get(slug, record["run_id"])
        assert set(frame["run_id"]) <= {expected}, f"{slug} mixes runs"
    return record


@pytest.fixture
def eastern_mosaic(tmp_path) -> Path:
    """The Helsinki fixture area with data only in its eastern half: other layers than the full mosaic."""
    data = synthetic_rgb(800, 640, seed=3)
    data[:, :, :320] = 0
    return write_geotiff(tmp_path / "east.tif", data, UTM35N, from_origin(*HELSINKI_ORIGIN, 2.0, 2.0), nodata=0)


def test_a_kill_during_publish_never_leaves_a_mixed_set(utm_mosaic, eastern_mosaic, tmp_path, runner):
    out = tmp_path / "out"
    sociomap(runner, "run", utm_mosaic, "-c", "park,school", "-o", out, "--workers", "0", *OSM)
    first = assert_one_complete_set(out)
    staging = out / ".sociomap" / "staging"
    for point in ("a layer is being written", "run.json is written"):
        proc = subprocess.Popen([sys.executable, "-m", "sociomap", "-q", "run", str(eastern_mosaic), "-c", "park,school",
                                 "-o", str(out), "--workers", "0", "--allow-shrink", *OSM],
                                env=subprocess_env(), start_new_session=True, stderr=subprocess.PIPE)
        pattern = "*/set/*.gpkg" if point.startswith("a layer") else "*/set/run.json"
        deadline = time.time() + 120
        while not list(staging.glob(pattern)) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.001)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"the run ended before {point}"
        assert assert_one_complete_set(out)["run_id"] == first["run_id"], f"killed when {point}"
    # The next run removes what the killed ones left and publishes its own complete set.
    sociomap(runner, "run", eastern_mosaic, "-c", "park,school", "-o", out, "--workers", "0", "--allow-shrink", *OSM)
    second = assert_one_complete_set(out)
    assert second["run_id"] != first["run_id"] and not list(staging.glob("run-*"))
    assert layer_wkbs(out / PARK) != layer_wkbs(Path(first["outputs"][0]).parent / ".sociomap" / "sets" /
                                                first["run_id"] / PARK)


def test_damaged_and_foreign_cache_entries_are_recomputed(utm_mosaic, tmp_path, runner):
    clean, out = tmp_path / "clean", tmp_path / "out"
    sociomap(runner, "run", utm_mosaic, "-c", "park,school", "-o", clean, "--workers", "0", *OSM)
    sociomap(runner, "run", utm_mosaic, "-c", "park,school", "-o", out, "--workers", "0", *OSM)
    with sqlite3.connect(out / ".sociomap" / "cache.sqlite") as db:
        keys = [k for (k,) in db.execute("SELECT key FROM results ORDER BY key")]
        pieces = [k for (k,) in db.execute("SELECT key FROM pieces ORDER BY key")]
        for table, all_keys in (("results", keys), ("pieces", pieces)):
            db.execute(f"UPDATE {table} SET body = substr(body, 1, 7) WHERE key = ?", (all_keys[0],))  # truncated
            db.execute(f"UPDATE {table} SET body = (SELECT body FROM {table} WHERE key = ?), "  # another key's entry
                       f"sha256 = (SELECT sha256 FROM {table} WHERE key = ?) WHERE key = ?",
                       (all_keys[2], all_keys[2], all_keys[1]))
    result = sociomap(runner, "run", utm_mosaic, "-c", "park,school", "-o", out, "--workers", "0", *OSM)
    counts = manifest(out)["counts"]
    assert counts["cache_damaged"] >= 2 and 1 <= counts["results_computed"] <= 4, counts
    assert "damaged" in result.output  # logged once, and in the summary
    for name in (PARK, SCHOOL):
        assert layer_wkbs(out / name) == layer_wkbs(clean / name)
    again = sociomap(runner, "run", utm_mosaic, "-c", "park,school", "-o", out, "--workers", "0", *OSM)
    assert manifest(out)["counts"]["cache_damaged"] == 0 and "damaged" not in again.output  # healed for good


def test_a_taxonomy_edit_recomputes_what_it_changes(osm_run_config, monkeypatch):
    from dataclasses import replace

    import sociomap.taxonomy as taxonomy
    from sociomap.pipeline.run import run

    first = run(osm_run_config)
    parks = layer_wkbs(osm_run_config.out / PARK)
    original = taxonomy.load_taxonomy
    table = original()
    park = next(c for c in table.classes if c.name == "Park")  # Park keeps only its leisure=garden rule
    edited = replace(table, classes=tuple(replace(c, osm=c.osm[1:]) if c is park else c for c in table.classes))
    for module in [m for name, m in list(sys.modules.items()) if name.startswith("sociomap") and m is not None]:
        if getattr(module, "load_taxonomy", None) is original:
            monkeypatch.setattr(module, "load_taxonomy", lambda: edited)
    second = run(replace(osm_run_config, allow_shrink=True))  # the OSM index is rebuilt too: its key covers it
    data_tiles = first.tiles_read - first.tiles_empty
    assert second.results_computed == data_tiles, "every Park result recomputes, no School result does"
    assert second.results_reused == first.results_computed - data_tiles
    assert 0 < len(layer_wkbs(osm_run_config.out / PARK)) < len(parks), "only the gardens are Park now"


def test_a_run_with_other_classes_keeps_the_earlier_layers(utm_mosaic, tmp_path, runner):
    out = tmp_path / "out"
    sociomap(runner, "run", utm_mosaic, "-c", "park", "-o", out, "--workers", "0", *OSM)
    park = layer_wkbs(out / PARK)
    first = manifest(out)
    sociomap(runner, "run", utm_mosaic, "-c", "school", "-o", out, "--workers", "0", *OSM)
    record = assert_one_complete_set(out)
    assert layer_wkbs(out / PARK) == park and (out / SCHOOL).exists()
    assert record["carried"] == {"park_and_greenspace": first["run_id"]}
    assert record["layers"]["park_and_greenspace"] == first["layers"]["park_and_greenspace"]


def test_an_all_nodata_mosaic_leaves_the_published_set_untouched(utm_mosaic, tmp_path, runner):
    out = tmp_path / "out"
    sociomap(runner, "run", utm_mosaic, "-c", "park", "-o", out, "--workers", "0", *OSM)
    before = os.readlink(out / "current")
    empty = write_geotiff(tmp_path / "empty.tif", np.zeros((3, 800, 640), np.uint8), UTM35N,
                          from_origin(*HELSINKI_ORIGIN, 2.0, 2.0), nodata=0)
    result = sociomap(runner, "-q", "run", empty, "-c", "park", "-o", out, "--workers", "0", *OSM, expect=3)
    assert "empty.tif" in result.output and "holds data" in result.output
    assert os.readlink(out / "current") == before
    assert any(p.name.startswith("failed-") for p in (out / ".sociomap").iterdir())


def test_an_osm_file_that_misses_the_mosaic_is_refused_before_any_work(utm_mosaic, tmp_path, runner):
    elsewhere = tmp_path / "elsewhere.osm"
    elsewhere.write_text("<?xml version='1.0' encoding='UTF-8'?><osm version='0.6' generator='hand'>"
                         "<bounds minlat='50.0' minlon='10.0' maxlat='50.01' maxlon='10.01'/>"
                         "<node id='1' version='1' lat='50.005' lon='10.005'><tag k='amenity' v='school'/></node></osm>")
    out = tmp_path / "out"
    result = sociomap(runner, "run", utm_mosaic, "-c", "park", "-o", out, "--workers", "0",
                      "--reasoner", "osm", "--osm", elsewhere, expect=3)
    assert "elsewhere.osm" in result.output and "not the mosaic" in result.output
    assert not out.exists()


def test_a_run_that_would_empty_a_layer_is_refused_unless_allowed(utm_mosaic, tmp_path, runner):
    out = tmp_path / "out"
    sociomap(runner, "run", utm_mosaic, "-c", "park", "-o", out, "--workers", "0", *OSM)
    before = os.readlink(out / "current")
    result = sociomap(runner, "-q", "run", utm_mosaic, "-c", "park", "-o", out, "--workers", "0", "--min-area", "1e9",
                      *OSM, expect=7)
    assert "park_and_greenspace" in result.output and "--allow-shrink" in result.output
    assert os.readlink(out / "current") == before
    sociomap(runner, "run", utm_mosaic, "-c", "park", "-o", out, "--workers", "0", "--min-area", "1e9",
             "--allow-shrink", *OSM)
    assert manifest(out)["layers"]["park_and_greenspace"] == 0


def test_exports_are_made_again_by_later_runs(utm_mosaic, tmp_path, runner):
    from sociomap.export import verify_pmtiles

    out = tmp_path / "out"
    sociomap(runner, "run", utm_mosaic, "-c", "park", "-o", out, "--workers", "0", *OSM)
    sociomap(runner, "export", out, "--format", "pmtiles", "--engine", "python", "--maxzoom", "15")
    assert manifest(out)["exports"]["pmtiles"]["maxzoom"] == 15
    sociomap(runner, "run", utm_mosaic, "-c", "school", "-o", out, "--workers", "0", *OSM)
    record = assert_one_complete_set(out)
    assert record["exports"]["pmtiles"] == {"minzoom": 10, "maxzoom": 15, "engine": "python",
                                            "files": ["sociomap.pmtiles"]}
    assert verify_pmtiles(out / "sociomap.pmtiles", ["park_and_greenspace", "educational"])["max_zoom"] == 15


def test_a_users_own_file_is_never_replaced_without_overwrite(utm_mosaic, tmp_path, runner):
    out = tmp_path / "out"
    out.mkdir()
    (out / PARK).write_bytes(b"my own work")
    result = sociomap(runner, "run", utm_mosaic, "-c", "park", "-o", out, "--workers", "0", *OSM, expect=3)
    assert "--overwrite" in result.output and (out / PARK).read_bytes() == b"my own work"
    assert not (out / ".sociomap").exists()
    sociomap(runner, "run", utm_mosaic, "-c", "park", "-o", out, "--workers", "0", "--overwrite", *OSM)
    assert pyogrio.read_info(out / PARK)["features"] > 0


def test_an_unchanged_rerun_reads_nothing_and_a_resume_finishes_the_rest(utm_mosaic, tmp_path, runner):
    out = tmp_path / "out"
    args = ["run", utm_mosaic, "-c", "park,school", "-o", out, *OSM]
    proc = subprocess.Popen([sys.executable, "-m", "sociomap", "-q", *map(str, args), "--workers", "0",
                             "--tiles-per-task", "1"], env=subprocess_env(), start_new_session=True)
    cache = out / ".sociomap" / "cache.sqlite"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:  # kill once some results are stored
        try:
            with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
                if db.execute("SELECT count(*) FROM results").fetchone()[0] >= 10:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "current").exists(), "killed before anything was published"
    sociomap(runner, *args, "--workers", "0")  # the resume
    resumed = manifest(out)["counts"]
    assert resumed["results_reused"] >= 10 and resumed["results_computed"] > 0
    sociomap(runner, *args, "--workers", "0")  # unchanged: nothing read, drawn, computed or vectorized
    record = manifest(out)
    assert record["counts"]["tiles_read"] == 0 and record["counts"]["tiles_from_memo"] == record["counts"]["tiles_total"]
    assert record["counts"]["results_computed"] == 0 and set(record["work"]) == set()


def test_cache_gc_keeps_what_the_last_runs_use(utm_mosaic, eastern_mosaic, tmp_path, runner):
    out = tmp_path / "out"
    sociomap(runner, "run", eastern_mosaic, "-c", "school", "-o", out, "--workers", "0", *OSM)
    sociomap(runner, "run", utm_mosaic, "-c", "school", "-o", out, "--workers", "0", "--allow-shrink", *OSM)
    with sqlite3.connect(out / ".sociomap" / "cache.sqlite") as db:
        before = db.execute("SELECT count(*) FROM results").fetchone()[0]
    result = sociomap(runner, "cache", "gc", out, "--keep-last", "1")
    assert "removed" in result.output
    with sqlite3.connect(out / ".sociomap" / "cache.sqlite") as db:
        after = db.execute("SELECT count(*) FROM results").fetchone()[0]
    assert 0 < after < before
    sociomap(runner, "run", utm_mosaic, "-c", "school", "-o", out, "--workers", "0", *OSM)
    assert manifest(out)["counts"]["results_computed"] == 0, "gc kept everything the last run uses"
    sociomap(runner, "run", eastern_mosaic, "-c", "school", "-o", out, "--workers", "0", "--allow-shrink", *OSM)
    assert manifest(out)["counts"]["results_computed"] > 0, "what only the older run used is gone"
    info = sociomap(runner, "cache", "info", out)
    assert "results:" in info.output and "runs: 4" in info.output
