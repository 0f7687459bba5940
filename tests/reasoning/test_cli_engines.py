"""`sociomap run --engine openai` end to end through the CLI against a real server process: the same layers as
`--engine hf`, and each server fault answered with the right exit code; public outputs only (GeoPackages read
back with pyogrio, run.json)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyogrio
import pytest

from tests.conftest import subprocess_env
from tests.reasoning.conftest import openai_server

CLASSES = "park,hospital"
LAYERS = ("park_and_greenspace", "medical")


def sociomap(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sociomap", *args], env=subprocess_env(HF_HUB_OFFLINE="1", **env),
                          capture_output=True, text=True, timeout=900)


def run_args(mosaic: Path, map_raster: Path, out: Path, checkpoint: Path, *extra: str) -> list[str]:
    return ["run", str(mosaic), "--map", str(map_raster), "--classes", CLASSES, "--out", str(out),
            "--sam", str(checkpoint / "sam2"), "--greedy", "--max-new-tokens", "8", "--tile-size", "256", "--zoom", "15",
            "--workers", "0", "--offline", "--no-pictures", *extra]  # pictures: tests/viewer


def served_args(url: str) -> list[str]:
    return ["--engine", "openai", "--endpoint", url, "--model", "tiny", "--request-retries", "1",
            "--concurrency", "8"]


def published(out: Path) -> Path:
    """The folder holding the published layers (an output set, or OUT itself before output sets)."""
    return (out / "current").resolve() if (out / "current").exists() else out


def layers(out: Path) -> dict[str, list[tuple[bytes, float, int]]]:
    """Per layer, the sorted (geometry WKB, area, tiles) of its features."""
    found = {}
    for name in LAYERS:
        frame = pyogrio.read_dataframe(published(out) / f"{name}.gpkg")
        found[name] = sorted(zip(frame.geometry.to_wkb(), frame["area_m2"].round(3), frame["n_tiles"]))
    return found


@pytest.fixture(scope="module")
def hf_run(utm_mosaic, map_4326, answer_dir, tmp_path_factory):
    """The in-process engine's layers: the reference for the served runs."""
    out = tmp_path_factory.mktemp("hf") / "layers"
    proc = sociomap(*run_args(utm_mosaic, map_4326, out, answer_dir, "--model", str(answer_dir / "vlm")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = layers(out)
    assert all(found[name] for name in LAYERS), "the answering model must give features"
    return found


def test_openai_engine_gives_the_layers_of_the_hf_engine(hf_run, utm_mosaic, map_4326, answer_dir, tmp_path):
    out = tmp_path / "layers"
    with openai_server(answer_dir / "vlm") as (url, _):
        proc = sociomap(*run_args(utm_mosaic, map_4326, out, answer_dir, *served_args(url)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert layers(out) == hf_run
    manifest = json.loads((published(out) / "run.json").read_text())
    assert manifest["counts"]["results_computed"] > 0


def test_server_killed_mid_run_lists_failed_tiles_and_a_rerun_resumes(hf_run, utm_mosaic, map_4326, answer_dir,
                                                                      tmp_path):
    out = tmp_path / "layers"
    args = run_args(utm_mosaic, map_4326, out, answer_dir, "--tiles-per-task", "2", "--retries", "0")
    with openai_server(answer_dir / "vlm", "--die-after", "12") as (url, proc):
        first = sociomap(*args, *served_args(url))
        assert proc.wait(timeout=30) == 3  # it did die
    assert first.returncode == 6, first.stderr[-3000:]
    assert "tile(s) failed" in first.stderr
    [failed] = out.glob("**/failed-*.json")  # the tiles, listed for the re-run
    assert json.loads(failed.read_text())["failed_tiles"]
    assert not any(published(out).glob("*.gpkg"))  # nothing published from a partial run
    with openai_server(answer_dir / "vlm") as (url, _):  # a new server, on another port
        second = sociomap(*args, *served_args(url))
    assert second.returncode == 0, second.stderr[-3000:]
    counts = json.loads((published(out) / "run.json").read_text())["counts"]
    assert counts["results_reused"] >= 4 and counts["results_computed"] > 0  # 12 requests = 6 pairs were done
    assert layers(out) == hf_run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_server_at_start_is_exit_4_in_one_line(utm_mosaic, map_4326, answer_dir, tmp_path):
    proc = sociomap(*run_args(utm_mosaic, map_4326, tmp_path / "out", answer_dir,
                              *served_args(f"http://127.0.0.1:{free_port()}/v1")))
    assert proc.returncode == 4, proc.stderr[-3000:]
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert "no model server answers" in line and "vllm serve vvangfaye/SocioReasoner-3B" in line


def test_corrupt_weights_are_exit_4_not_a_tile_failure(utm_mosaic, map_4326, answer_dir, tmp_path):
    broken = tmp_path / "vlm"
    shutil.copytree(answer_dir / "vlm", broken)
    (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:5000])
    proc = sociomap(*run_args(utm_mosaic, map_4326, tmp_path / "out", answer_dir, "--model", str(broken)))
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert "SafetensorError" in proc.stderr and "cannot load Qwen2.5-VL weights" in proc.stderr
