"""`sociomap run` through click's CliRunner: options, config files, errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pyogrio

from sociomap.cli import cli
from tests.conftest import HELSINKI_PBF, subprocess_env

OSM_ARGS = ["--reasoner", "osm", "--osm", str(HELSINKI_PBF), "--workers", "0", "--tile-size", "256", "--no-pictures"]


def test_help_is_fast_and_imports_no_heavy_stack():
    code = ("import sys; from sociomap.cli import cli\n"
            "try:\n    cli(['run', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'distributed', 'geopandas') if m in sys.modules]\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--classes" in proc.stdout and "--scheduler" in proc.stdout


def test_run_prints_the_query_mapping_and_writes_layers(runner, utm_mosaic, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["run", str(utm_mosaic), "--classes", "park,university,Kaisaniemi",
                                 "--out", str(out), *OSM_ARGS])
    assert result.exit_code == 0, result.output
    assert "Park and greenspace" in result.output and "College" in result.output
    assert "own layer" in result.output  # the free-text place name
    names = sorted(p.name for p in out.glob("*.gpkg"))
    assert names == ["educational.gpkg", "kaisaniemi.gpkg", "park_and_greenspace.gpkg"]
    assert pyogrio.read_info(out / "park_and_greenspace.gpkg")["features"] > 0


def test_config_file_supplies_options_and_the_command_line_wins(runner, utm_mosaic, tmp_path):
    config = tmp_path / "city.toml"
    config.write_text(f'image = "{utm_mosaic}"\nclasses = ["school"]\nout = "{tmp_path / "a"}"\n'
                      f'reasoner = "osm"\nosm = "{HELSINKI_PBF}"\nworkers = 0\ntile-size = 256\n')
    result = runner.invoke(cli, ["run", "--config", str(config), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "educational.gpkg").exists() and not (tmp_path / "a").exists()


def test_unknown_config_key_is_a_usage_error(runner, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('zoooom = 3\n')
    result = runner.invoke(cli, ["run", "--config", str(config)])
    assert result.exit_code == 2 and "zoooom" in result.output


def test_missing_mosaic_is_one_line_exit_3_and_leaves_no_output(runner, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["run", str(tmp_path / "nope.tif"), "-c", "park", "-o", str(out), *OSM_ARGS])
    assert result.exit_code == 3
    assert "nope.tif" in result.output and "no such file" in result.output
    assert not list(out.glob("*.gpkg")) and not (out / "run.json").exists()


def test_corrupt_osm_file_is_exit_3(runner, utm_mosaic, tmp_path):
    bad = tmp_path / "bad.osm.pbf"
    bad.write_bytes(b"\x00\x00\x00\x0dnot a pbf at all")
    args = ["run", str(utm_mosaic), "-c", "park", "-o", str(tmp_path / "o"), "--reasoner", "osm",
            "--osm", str(bad), "--workers", "0"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 3 and "bad.osm.pbf" in result.output


def test_locked_output_is_exit_5(runner, utm_mosaic, tmp_path):
    from sociomap.pipeline.lock import output_lock

    out = tmp_path / "out"
    with output_lock(out / ".sociomap"):
        result = runner.invoke(cli, ["run", str(utm_mosaic), "-c", "park", "-o", str(out), *OSM_ARGS])
    assert result.exit_code == 5 and "another sociomap run" in result.output


def test_dry_run_reports_counts(runner, utm_mosaic, tmp_path):
    result = runner.invoke(cli, ["run", str(utm_mosaic), "-c", "park", "-o", str(tmp_path / "o"), "--dry-run",
                                 *OSM_ARGS])
    assert result.exit_code == 0 and "model calls needed" in result.output
    assert not list((tmp_path / "o").glob("*.gpkg"))


def test_tiny_model_run_warns_loudly_about_random_weights(runner, utm_mosaic, map_4326, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["run", str(utm_mosaic), "-c", "park,school", "-o", str(out), "--map", str(map_4326),
                                 "--model", str(tiny_checkpoint / "vlm"), "--sam", str(tiny_checkpoint / "sam2"),
                                 "--greedy", "--max-new-tokens", "24", "--tile-size", "256", "--zoom", "15",
                                 "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "RANDOM WEIGHTS" in result.output
    assert (out / "park_and_greenspace.gpkg").exists() and (out / "educational.gpkg").exists()
    meta = pyogrio.read_info(out / "educational.gpkg")
    assert meta["crs"] == "EPSG:4326"


def test_missing_model_offline_is_exit_4_with_a_fix(runner, utm_mosaic, map_4326, tmp_path):
    result = runner.invoke(cli, ["run", str(utm_mosaic), "-c", "park", "-o", str(tmp_path / "o"),
                                 "--map", str(map_4326), "--model", "nobody/no-such-model", "--offline",
                                 "--workers", "0", "--tile-size", "256"])
    assert result.exit_code == 4
    assert "no-such-model" in result.output and ("model pull" in result.output or "--model" in result.output)


def test_model_run_with_maps_rendered_from_osm(runner, utm_mosaic, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["run", str(utm_mosaic), "-c", "library", "-o", str(out), "--osm", str(HELSINKI_PBF),
                                 "--map-language", "en", "--model", str(tiny_checkpoint / "vlm"),
                                 "--sam", str(tiny_checkpoint / "sam2"), "--greedy", "--max-new-tokens", "8",
                                 "--zoom", "15", "--tile-size", "256", "--workers", "0"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["config"]["osm"] == str(HELSINKI_PBF) and manifest["random_weights"] is True
    assert manifest["counts"]["results_computed"] == manifest["counts"]["tiles_read"] > 0
    assert (out / "sport_and_cultural.gpkg").exists()


def test_json_logs_mode_writes_only_json_lines_on_stderr(utm_mosaic, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sociomap", "--json-logs", "-v", "run", str(utm_mosaic), "-c", "park",
                           "-o", str(tmp_path / "o"), *OSM_ARGS], env=subprocess_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert records and {"time", "level", "logger", "message"} <= set(records[0])


def test_bad_crs_is_a_usage_error_before_any_work(runner, utm_mosaic, tmp_path):
    out = tmp_path / "o"
    result = runner.invoke(cli, ["run", str(utm_mosaic), "-c", "park", "-o", str(out), "--crs", "foo", *OSM_ARGS])
    assert result.exit_code == 2 and "--crs" in result.output
    assert not out.exists()


def test_verbose_logs_reach_stderr_when_it_is_not_a_terminal(utm_mosaic, tmp_path):
    """Under cron stderr is a file or a pipe: -v log lines must still be written beside the progress bar."""
    proc = subprocess.run([sys.executable, "-m", "sociomap", "-v", "run", str(utm_mosaic), "-c", "park", "-o",
                           str(tmp_path / "o"), *OSM_ARGS], capture_output=True, text=True, env=subprocess_env(),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stage: tiles" in proc.stderr and "stage: published" in proc.stderr
