"""True end-to-end runs of the installed command in a subprocess, outputs reopened with pyogrio."""

from __future__ import annotations

import json
import subprocess
import sys

import pyogrio

from tests.conftest import HELSINKI_PBF, subprocess_env


def sociomap(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m sociomap ARGS`` as a user would run ``sociomap ARGS``."""
    return subprocess.run([sys.executable, "-m", "sociomap", *args], env=subprocess_env(), capture_output=True,
                          text=True, timeout=600)


def test_osm_baseline_on_a_local_dask_cluster(utm_mosaic, tmp_path):
    out = tmp_path / "layers"
    proc = sociomap("run", str(utm_mosaic), "--classes", "park,school", "--out", str(out),
                    "--reasoner", "osm", "--osm", str(HELSINKI_PBF), "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["executor"].startswith("dask")
    for layer in ("park_and_greenspace", "educational"):
        path = out / f"{layer}.gpkg"
        info = pyogrio.read_info(path)
        assert info["crs"] == "EPSG:4326"
        assert [name for name, _ in pyogrio.list_layers(path)] == [layer]
        assert info["features"] == manifest["layers"][layer] > 0
    parks = pyogrio.read_dataframe(out / "park_and_greenspace.gpkg")
    assert (parks["n_tiles"] >= 2).any(), "a park spanning two tiles must come out as one feature"
    assert (out / "pictures" / "overview.png").is_file(), "a run pictures its layers by default"
    assert "pictures/overview.png" in manifest["exports"]["pictures"]["files"]
    schools = pyogrio.read_dataframe(out / "educational.gpkg")
    assert manifest["counts"]["seam_features"] == int(parks["crosses_seam"].sum() + schools["crosses_seam"].sum())


def test_tiny_model_run_then_pmtiles_export(utm_mosaic, map_4326, tiny_checkpoint, tmp_path):
    out = tmp_path / "layers"
    proc = sociomap("run", str(utm_mosaic), "--classes", "hospital", "--out", str(out), "--map", str(map_4326),
                    "--model", str(tiny_checkpoint / "vlm"), "--sam", str(tiny_checkpoint / "sam2"),
                    "--greedy", "--max-new-tokens", "16", "--tile-size", "256", "--workers", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANDOM WEIGHTS" in proc.stderr
    assert pyogrio.read_info(out / "medical.gpkg")["crs"] == "EPSG:4326"
    proc = sociomap("export", str(out), "--format", "pmtiles")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(out.glob("*.pmtiles"))
