"""Every bad input gets one clear line, the right exit code, before any heavy work, with nothing left behind.

Each case runs the real CLI in a fresh process. "Before heavy work" is observed, not timed: the case fails
if torch, transformers or dask.distributed had been imported when the command ended, or if anything was
created under --out.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin

from tests.conftest import HELSINKI_ORIGIN, HELSINKI_PBF, UTM35N, synthetic_rgb, write_geotiff
from tests.reliability.harness import TABLE, cli, error_line, mount_tmpfs, tree, unmount

OSM = ("--reasoner", "osm", "--osm", str(HELSINKI_PBF), "--workers", "0", "--tile-size", "256", "--no-pictures")


@dataclass(frozen=True)
class Case:
    """A bad input: how to build the command, and what the user must see."""

    key: str
    area: str
    what: str
    args: object  # callable(paths: dict) -> list of CLI arguments
    exit: int
    says: tuple[str, ...]
    heavy_ok: bool = False  # the model's own checks need the model stack


def _mosaic_args(image: object, *extra: object) -> object:
    return lambda p: ["run", p[image] if isinstance(image, str) and image in p else image, "-c", "park", "-o",
                      p["out"], *OSM, *extra]


CASES = [
    Case("mosaic-missing", "mosaic", "the mosaic does not exist", lambda p: ["run", p["tmp"] / "nope.tif", "-c", "park",
         "-o", p["out"], *OSM], 3, ("nope.tif", "no such file")),
    Case("mosaic-folder", "mosaic", "the mosaic is a folder", _mosaic_args("folder"), 3, ("is a folder",)),
    Case("mosaic-not-utf8", "mosaic", "the mosaic's file name is not UTF-8", _mosaic_args("latin1"), 3,
         ("not valid UTF-8",)),
    Case("mosaic-not-raster", "mosaic", "the mosaic is not a raster", _mosaic_args("text"), 3, ("notraster.tif",)),
    Case("mosaic-no-crs", "mosaic", "the mosaic has no CRS", _mosaic_args("nocrs"), 3, ("CRS",)),
    Case("mosaic-mars", "mosaic", "the mosaic is in a Mars CRS", _mosaic_args("mars"), 3, ("mars.tif",)),
    Case("mosaic-16bit", "mosaic", "a 16-bit mosaic without --rescale", _mosaic_args("uint16"), 3, ("--rescale",)),
    Case("rescale-reversed", "options", "--rescale 2550,0 (MIN above MAX)", _mosaic_args("mosaic", "--rescale", "2550,0"),
         3, ("--rescale",)),
    Case("bands-range", "options", "--bands 4,5,6 on a 3-band mosaic", _mosaic_args("mosaic", "--bands", "4,5,6"), 3,
         ("band",)),
    Case("osm-missing", "map", "the OSM file does not exist",
         lambda p: ["run", p["mosaic"], "-c", "park", "-o", p["out"], "--reasoner", "osm", "--osm",
                    p["tmp"] / "gone.osm.pbf", "--workers", "0"], 3, ("gone.osm.pbf",)),
    Case("osm-corrupt", "map", "the OSM file is corrupt",
         lambda p: ["run", p["mosaic"], "-c", "park", "-o", p["out"], "--reasoner", "osm", "--osm", p["badosm"],
                    "--workers", "0"], 3, ("bad.osm.pbf",)),
    Case("osm-elsewhere", "map", "the OSM extract covers another area",
         lambda p: ["run", p["mosaic"], "-c", "park", "-o", p["out"], "--reasoner", "osm", "--osm", p["elsewhere"],
                    "--workers", "0"], 3, ("not the mosaic",)),
    Case("map-missing", "map", "--map does not exist",
         lambda p: ["run", p["mosaic"], "-c", "park", "-o", p["out"], "--map", p["tmp"] / "nomap.tif", "--workers", "0"],
         3, ("nomap.tif",)),
    Case("map-elsewhere", "map", "--map raster does not overlap the mosaic",
         lambda p: ["run", p["mosaic"], "-c", "park", "-o", p["out"], "--map", p["farmap"], "--workers", "0"], 3,
         ("farmap.tif",)),
    Case("out-file", "output", "--out is a file", lambda p: ["run", p["mosaic"], "-c", "park", "-o", p["text"], *OSM], 3,
         ("not a folder",)),
    Case("out-proc", "output", "--out under /proc", lambda p: ["run", p["mosaic"], "-c", "park", "-o",
         "/proc/sociomap-out", *OSM], 3, ("/proc", "writable --out")),
    Case("out-not-utf8", "output", "--out's name is not UTF-8",
         lambda p: ["run", p["mosaic"], "-c", "park", "-o", p["badout"], *OSM], 3, ("not valid UTF-8",)),
    Case("out-users-file", "output", "--out holds a user's own file at a layer's path",
         lambda p: ["run", p["mosaic"], "-c", "park", "-o", p["userout"], *OSM], 3, ("--overwrite",)),
    Case("scheduler-syntax", "cluster", "--scheduler notaurl", _mosaic_args("mosaic", "--scheduler", "notaurl"), 3,
         ("--scheduler", "tcp://host:8786")),
    Case("scheduler-down", "cluster", "--scheduler tcp://127.0.0.1:9 (nothing listens)",
         _mosaic_args("mosaic", "--scheduler", "tcp://127.0.0.1:9"), 3, ("cannot connect",)),
    Case("memory-limit", "cluster", "--memory-limit lots", _mosaic_args("mosaic", "--memory-limit", "lots"), 3,
         ("--memory-limit",)),
    Case("workers-many", "cluster", "--workers 500 on this machine",
         lambda p: ["run", p["mosaic"], "-c", "park", "-o", p["out"], "--reasoner", "osm", "--osm", HELSINKI_PBF,
                    "--workers", "500"], 3, ("--workers 500", "cores")),
    Case("class-typo", "options", "--classes parkk (a typo)", lambda p: ["run", p["mosaic"], "-c", "parkk", "-o",
         p["out"], *OSM], 2, ("did you mean",)),
    Case("classes-empty", "options", "--classes ','", lambda p: ["run", p["mosaic"], "-c", ",", "-o", p["out"], *OSM],
         2, ("--classes",)),
    Case("crs-bad", "options", "--crs foo", _mosaic_args("mosaic", "--crs", "foo"), 2, ("--crs",)),
    Case("config-key", "options", "a config file with an unknown key",
         lambda p: ["run", "--config", p["badtoml"]], 2, ("zoooom",)),
    Case("tile-size", "options", "--tile-size 10", _mosaic_args("mosaic", "--tile-size", "10"), 2, ("--tile-size",)),
    Case("model-missing", "model", "--model a folder that does not exist",
         lambda p: ["run", p["mosaic"], "-c", "park", "-o", p["out"], "--map", p["map"], "--model", p["tmp"] / "nomodel",
                    "--workers", "0"], 4, ("nomodel",), heavy_ok=True),
    Case("model-offline", "model", "a hub model not downloaded, --offline",
         lambda p: ["run", p["mosaic"], "-c", "park", "-o", p["out"], "--map", p["map"], "--model",
                    "nobody/no-such-model", "--offline", "--workers", "0"], 4, ("no-such-model",), heavy_ok=True),
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory, utm_mosaic, map_4326) -> dict:
    """Inputs good and bad, built once."""
    tmp = tmp_path_factory.mktemp("inputs")
    (tmp / "folder.tif").mkdir()
    latin1 = Path(os.fsdecode(bytes(tmp / "mosa") + b"\xefque.tif"))
    shutil.copy(utm_mosaic, latin1)
    (tmp / "notraster.tif").write_text("not a raster\n")
    nocrs = write_geotiff(tmp / "nocrs.tif", synthetic_rgb(64, 64), None, from_origin(0, 0, 1, 1))
    mars = write_geotiff(tmp / "mars.tif", synthetic_rgb(64, 64), "+proj=longlat +a=3396190 +b=3376200 +no_defs",
                         from_origin(10, 10, 0.001, 0.001))
    uint16 = write_geotiff(tmp / "uint16.tif", synthetic_rgb(200, 200).astype(np.uint16) * 100, UTM35N,
                           from_origin(*HELSINKI_ORIGIN, 2.0, 2.0))
    badosm = tmp / "bad.osm.pbf"
    badosm.write_bytes(b"\x00\x00\x00\x0dnot a pbf at all")
    elsewhere = tmp / "elsewhere.osm"
    elsewhere.write_text("<?xml version='1.0' encoding='UTF-8'?><osm version='0.6' generator='hand'>"
                         "<bounds minlat='50.0' minlon='10.0' maxlat='50.01' maxlon='10.01'/>"
                         "<node id='1' version='1' lat='50.005' lon='10.005'><tag k='amenity' v='school'/></node></osm>")
    farmap = write_geotiff(tmp / "farmap.tif", synthetic_rgb(64, 64), "EPSG:4326", from_origin(10.0, 50.0, 1e-4, 1e-4))
    userout = tmp / "userout"
    userout.mkdir()
    (userout / "park_and_greenspace.gpkg").write_bytes(b"my own work")
    badtoml = tmp / "bad.toml"
    badtoml.write_text("zoooom = 3\n")
    return {"tmp": tmp, "mosaic": utm_mosaic, "map": map_4326, "folder": tmp / "folder.tif", "latin1": latin1,
            "text": tmp / "notraster.tif", "nocrs": nocrs, "mars": mars, "uint16": uint16, "badosm": badosm,
            "elsewhere": elsewhere, "farmap": farmap, "userout": userout, "badtoml": badtoml,
            "badout": Path(os.fsdecode(bytes(tmp) + b"/out\xff"))}


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_a_bad_input_is_one_clear_line_before_any_heavy_work(case, paths, tmp_path):
    p = {**paths, "out": tmp_path / "out"}
    before = {"user": tree(paths["userout"]), "tmp": tree(tmp_path)}
    outcome = cli(*case.args(p))
    line = error_line(outcome, paths["tmp"], tmp_path)
    TABLE.record(case.key, case.area, case.what, outcome.exit, line or "(no error line)",
                 "nothing" if tree(tmp_path) == before["tmp"] and tree(paths["userout"]) == before["user"]
                 else "FILES")
    assert outcome.exit == case.exit, outcome.stderr[-2000:]
    assert len(outcome.error_lines) == 1 and "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    for words in case.says:
        assert words in outcome.stderr, (words, outcome.stderr[-1000:])
    assert tree(tmp_path) == before["tmp"], "nothing may be created for a run that cannot start"
    assert tree(paths["userout"]) == before["user"]
    if not case.heavy_ok:
        assert outcome.heavy == [], f"{outcome.heavy} were imported before the bad input was noticed"


def test_a_read_only_output_folder_is_refused_up_front(utm_mosaic, tmp_path):
    folder = tmp_path / "ro"
    if not mount_tmpfs(folder, "1M", readonly=True):
        pytest.skip("cannot mount a read-only tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        outcome = cli("run", utm_mosaic, "-c", "park", "-o", folder / "out", *OSM)
    finally:
        unmount(folder)
    TABLE.record("out-read-only", "output", "--out on a read-only file system", outcome.exit,
                 error_line(outcome, tmp_path), "nothing")
    assert outcome.exit == 3 and "Read-only file system" in outcome.stderr and outcome.heavy == []


def test_a_dry_run_creates_nothing(utm_mosaic, tmp_path):
    outcome = cli("run", utm_mosaic, "-c", "park", "-o", tmp_path / "out", "--dry-run", *OSM)
    TABLE.record("dry-run", "options", "--dry-run on a new --out", outcome.exit,
                 normalise_dry(outcome.stdout), "nothing" if not (tmp_path / "out").exists() else "FILES")
    assert outcome.exit == 0 and "model calls needed" in outcome.stdout
    assert not (tmp_path / "out").exists() and outcome.heavy == []


def normalise_dry(stdout: str) -> str:
    line = next((x for x in stdout.splitlines() if x.startswith("dry run")), "")
    return line.split(";")[0]


def test_a_locked_output_is_exit_5_at_once(utm_mosaic, tmp_path):
    from sociomap.pipeline.lock import output_lock

    out = tmp_path / "out"
    with output_lock(out / ".sociomap"):
        outcome = cli("run", utm_mosaic, "-c", "park", "-o", out, *OSM)
    TABLE.record("locked", "output", "another run holds --out", outcome.exit, error_line(outcome, tmp_path),
                 "nothing")
    assert outcome.exit == 5 and "another sociomap run" in outcome.stderr and outcome.heavy == []
