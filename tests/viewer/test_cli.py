"""`sociomap view`: serve, offline page, pictures, and its errors (exit codes, one-line messages)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request

from sociomap.cli import cli
from tests.conftest import HELSINKI_PBF, subprocess_env


def test_html_and_pictures_are_written_and_named(runner, tiny_model_run, tmp_path):
    page = tmp_path / "run.html"
    args = ["view", str(tiny_model_run), "--html", str(page), "--pictures", str(tmp_path)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    overview = tmp_path / "pictures" / "overview.png"
    assert str(page) in result.output and str(overview) in result.output and overview.stat().st_size > 10_000
    assert page.stat().st_size > 1_000_000 and "RANDOM WEIGHTS" in page.read_text("utf-8")
    for option in ("--image", "--osm", "--map"):
        result = runner.invoke(cli, [*args, option, str(tmp_path / "gone.tif")])
        assert result.exit_code == 3 and "gone.tif: no such file" in result.output and option in result.output


def test_serves_on_a_free_port_until_interrupted(helsinki_labels):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sociomap",
            "view",
            str(helsinki_labels),
            "--osm",
            str(HELSINKI_PBF),
            "--port",
            "0",
        ],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        with urllib.request.urlopen(url, timeout=30) as response:
            page = response.read().decode()
        assert "sociomap-config" in page and "OSM reference layers" in page
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0


def test_taken_port_is_exit_3_with_the_fix(runner, baseline_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = runner.invoke(cli, ["view", str(baseline_run), "--port", str(port)])
    assert result.exit_code == 3
    assert f"port {port}" in result.output and "--port 0" in result.output


def test_folder_without_layers_is_exit_3(runner, tmp_path):
    result = runner.invoke(cli, ["view", str(tmp_path)])
    assert result.exit_code == 3 and "no GeoPackage layers" in result.output


def test_help_imports_no_heavy_stack():
    code = ("import sys; from sociomap.cli import cli\n"
            "try:\n    cli(['view', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'geopandas', 'pyogrio', 'sociomap.viewer') if m in sys.modules]\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--port" in proc.stdout and "--html" in proc.stdout and "8765" in proc.stdout
