"""Viewer fixtures: real outputs (an OSM-baseline run over the synthetic Helsinki mosaic, OSM reference
labels of the bundled extract), a viewer server on a free port, and a headless Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HELSINKI_PBF

LABEL_CLASSES = ("park", "school", "hospital", "sport and cultural", "residential", "commercial")


@pytest.fixture(scope="session")
def baseline_run(tmp_path_factory: pytest.TempPathFactory, utm_mosaic: Path) -> Path:
    """`sociomap run --reasoner osm` over central Helsinki (the real pipeline, in-process), as PMTiles too."""
    from sociomap.pipeline.publish import export_published
    from sociomap.merge import MergeConfig
    from sociomap.pipeline.executor import ExecutorConfig
    from sociomap.pipeline.run import RunConfig
    from sociomap.pipeline.run import run as run_pipeline
    from sociomap.tiling import TilingConfig

    out = tmp_path_factory.mktemp("baseline") / "out"
    config = RunConfig(
        image=utm_mosaic,
        out=out,
        classes=("park", "school"),
        osm=HELSINKI_PBF,
        reasoner_kind="osm",
        tiling=TilingConfig(zoom=16, tile_size=384, tiles_per_task=3),
        merge=MergeConfig(),
        executor=ExecutorConfig(workers=0),
    )
    run_pipeline(config)
    export_published(out, "pmtiles", minzoom=12, maxzoom=16)  # into the published set, as `sociomap export`
    return out


@pytest.fixture(scope="session")
def helsinki_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sociomap labels` of the bundled Helsinki extract (six socio-functions), exported to PMTiles."""
    from sociomap.pipeline.labels import write_labels
    from sociomap.pipeline.publish import export_published

    out = tmp_path_factory.mktemp("labels") / "helsinki"
    write_labels(HELSINKI_PBF, LABEL_CLASSES, out)
    export_published(out, "pmtiles", minzoom=12, maxzoom=16)
    return out


@pytest.fixture(scope="session")
def tiny_model_run(
    tmp_path_factory: pytest.TempPathFactory, utm_mosaic: Path, map_4326: Path, tiny_checkpoint: Path
) -> Path:
    """A real `sociomap run` with the tiny RANDOM checkpoint (z15, 256 px): a model run's folder and cache.

    Random weights find no polygons, so its layers are empty; its cache holds the model's real texts.
    """
    from click.testing import CliRunner

    from sociomap.cli import cli

    out = tmp_path_factory.mktemp("tiny-run") / "out"
    args = [
        "run",
        str(utm_mosaic),
        "-c",
        "park",
        "-o",
        str(out),
        "--map",
        str(map_4326),
        "--model",
        str(tiny_checkpoint / "vlm"),
        "--sam",
        str(tiny_checkpoint / "sam2"),
        "--greedy",
        "--max-new-tokens",
        "12",
        "--zoom",
        "15",
        "--tile-size",
        "256",
        "--workers",
        "0",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out


def copy_set(out: Path, dest: Path, ignore: tuple[str, ...] = ()) -> Path:
    """The files of OUT's published set copied flat into ``dest`` (run.json and layers side by side), for tests
    that change a run's files and look at the result."""
    import shutil

    from sociomap.pipeline.outputs import published_set

    shutil.copytree(published_set(out), dest, ignore=shutil.ignore_patterns(*ignore))
    return dest


def cache_pointers(out: Path) -> list[str]:
    """The ``reasoning`` pointers (result keys) of every entry in OUT's result cache."""
    import sqlite3

    with sqlite3.connect(out / ".sociomap" / "cache.sqlite") as db:
        return sorted(key for (key,) in db.execute("SELECT key FROM results"))


@contextlib.contextmanager
def serving(view: object) -> Iterator[object]:
    """A viewer server for ``view`` on 127.0.0.1, a free port, in a thread; shut down afterwards."""
    from sociomap.viewer.server import make_server

    server = make_server(view, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVERS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _first(paths: tuple[str, ...], name: str) -> str | None:
    return next((p for p in paths if os.access(p, os.X_OK)), None) or shutil.which(name)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium through chromedriver (Debian `chromium` + `chromium-driver`), a fresh profile.

    Skipped, with the reason, when no browser is installed, unless SOCIOMAP_REQUIRE_BROWSER=1 (CI sets it
    after installing one), where a missing browser fails the run instead.
    """
    binary, driver = _first(BROWSERS, "chromium"), _first(DRIVERS, "chromedriver")
    missing = [name for name, path in (("chromium", binary), ("chromedriver", driver)) if path is None]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install selenium)")
    if missing:
        reason = f"no real browser: {', '.join(missing)} missing (apt-get install chromium chromium-driver)"
        if os.environ.get("SOCIOMAP_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    profile = tempfile.mkdtemp(prefix="sociomap-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
        # WebGL in software (SwiftShader): Chromium >= 137 wants this opt-in for trusted local pages.
        "--enable-unsafe-swiftshader",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager would otherwise try to download one.
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_page_load_timeout(60)
    try:
        yield session
    finally:
        session.quit()
        shutil.rmtree(profile, ignore_errors=True)
