"""export_run and the `sociomap export` command on a finished run folder."""

from __future__ import annotations

import json

import pyogrio
import pytest
from click.testing import CliRunner

from sociomap.cli.export import export
from sociomap.errors import InputError
from sociomap.export import export_run, verify_pmtiles


def test_export_run_pmtiles_and_fgb(run_dir, layers):
    path = export_run(run_dir, "pmtiles", minzoom=12, maxzoom=14, engine="python")
    assert path == run_dir / "sociomap.pmtiles"
    assert verify_pmtiles(path, list(layers))["layers"] == sorted(layers)
    export_run(run_dir, "fgb")
    assert pyogrio.read_info(run_dir / "educational.fgb")["features"] == len(layers["educational"])


def test_cli_export_writes_pmtiles_into_the_published_set(run_dir, layers):
    result = CliRunner().invoke(export, [str(run_dir), "--format", "pmtiles", "--minzoom", "12", "--maxzoom", "14"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("sociomap.pmtiles")
    assert verify_pmtiles(run_dir / "sociomap.pmtiles", list(layers))["tiles"] > 0
    # The old-style folder became a published set: every file is a link into current/, run.json records it.
    assert (run_dir / "current").is_symlink() and (run_dir / "sociomap.pmtiles").is_symlink()
    assert (run_dir / "educational.gpkg").is_symlink() and (run_dir / "current" / "educational.gpkg").is_file()
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["exports"]["pmtiles"]["files"] == ["sociomap.pmtiles"]
    assert manifest["exports"]["pmtiles"]["maxzoom"] == 14


def test_cli_export_geojson(run_dir, layers):
    result = CliRunner().invoke(export, [str(run_dir), "--format", "geojson"])
    assert result.exit_code == 0, result.output
    assert pyogrio.read_info(run_dir / "park_and_greenspace.geojson")["features"] == len(layers["park_and_greenspace"])


def test_export_of_a_folder_without_layers_names_the_fix(tmp_path):
    with pytest.raises(InputError, match="finished `sociomap run`"):
        export_run(tmp_path, "pmtiles")
    result = CliRunner().invoke(export, [str(tmp_path)])
    assert isinstance(result.exception, InputError) and "nothing published" in str(result.exception)
    result = CliRunner().invoke(export, [str(tmp_path), "--format", "shp"])
    assert result.exit_code == 2
