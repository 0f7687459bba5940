"""The viewer in a real browser: headless Chromium loads it from 127.0.0.1 (or from disk), draws every
layer, toggles them, and a real click on a feature opens its properties and the model's reasoning.

Screenshots go to pytest's tmp folder, and also to $SOCIOMAP_SCREENSHOTS when set (docs/viewer.png
is made that way).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest

from sociomap.viewer import open_run
from tests.conftest import HELSINKI_PBF
from tests.viewer.conftest import cache_pointers, serving

WIDTH, HEIGHT = 1400, 860


def load(browser, url: str, timeout: float = 90) -> None:
    """Open ``url`` and wait until the map has loaded and gone idle (``window.sociomapViewer.ready``)."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if browser.execute_script("return !!(window.sociomapViewer && window.sociomapViewer.ready)"):
            return
        time.sleep(0.2)
    errors = browser.execute_script("return window.sociomapViewer && window.sociomapViewer.errors")
    pytest.fail(f"the map did not load within {timeout} s: {errors} {browser.get_log('browser')[-5:]}")


def settle(browser, center: tuple[float, float] | None = None, zoom: float | None = None) -> None:
    """Optionally move the map, then wait for it to go idle (all tiles drawn)."""
    browser.set_script_timeout(90)
    browser.execute_async_script(
        """
        const [center, zoom, done] = arguments;
        const map = window.sociomapViewer.map;
        if (center) map.jumpTo({center: center, zoom: zoom});
        map.once('idle', () => done(true));
        map.triggerRepaint();
    """,
        list(center) if center else None,
        zoom,
    )


def click_at_center(browser) -> None:
    """A real pointer click in the middle of the window (the map, right of the panel)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(browser)
    actions.pointer_action.move_to_location(WIDTH // 2, HEIGHT // 2)
    actions.pointer_action.click()
    actions.perform()


def wait_for(browser, css: str, timeout: float = 30) -> object:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def screenshot(browser, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    browser.save_screenshot(str(path))
    if os.environ.get("SOCIOMAP_SCREENSHOTS"):
        target = Path(os.environ["SOCIOMAP_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def interior_point(layer) -> tuple[float, float]:
    """A point well inside the layer's largest feature (EPSG:4326)."""
    frame = pyogrio.read_dataframe(layer.path).to_crs("EPSG:4326")
    point = max(frame.geometry, key=lambda g: g.area).representative_point()
    return point.x, point.y


def check_layers(browser, view) -> None:
    """Every layer is in the map (fill + outline), drawn where it has features, its count in the legend."""
    ids = browser.execute_script("return window.sociomapViewer.map.getStyle().layers.map(l => l.id)")
    for layer in view.layers:
        assert f"{layer.slug}-fill" in ids and f"{layer.slug}-line" in ids
        legend = browser.execute_script(
            "return document.querySelector(`[data-legend='${arguments[0]}'] .count`).textContent", layer.slug
        )
        assert legend.replace(",", "") == str(layer.count)
    drawn = browser.execute_script("""
        const map = window.sociomapViewer.map;
        return Object.fromEntries(window.sociomapViewer.config.layers.map(
            l => [l.slug, map.queryRenderedFeatures({layers: [l.fill]}).length]));
    """)
    for layer in view.layers:
        assert (drawn[layer.slug] > 0) == (layer.count > 0), (layer.slug, drawn)


def check_only_local_requests(browser, origin: str) -> None:
    names = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert names and all(n.startswith((origin, "data:", "blob:")) for n in names), names
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_served_run_over_imagery_toggles_layers_and_shows_a_clicked_feature(browser, baseline_run, tmp_path):
    view = open_run(baseline_run)
    with serving(view) as server:
        load(browser, server.url)
        check_layers(browser, view)
        # Layer toggles and the background choice act on the map.
        browser.find_element("css selector", "input[data-layer='educational']").click()
        visibility = "return window.sociomapViewer.map.getLayoutProperty(arguments[0], 'visibility')"
        assert browser.execute_script(visibility, "educational-fill") == "none"
        browser.find_element("css selector", "input[data-layer='educational']").click()
        assert browser.execute_script(visibility, "educational-fill") == "visible"
        browser.find_element("css selector", "input[data-background='bg-map']").click()
        assert browser.execute_script(visibility, "bg-imagery") == "none"
        assert browser.execute_script(visibility, "bg-map") == "visible"
        browser.find_element("css selector", "input[data-background='bg-imagery']").click()
        # A real click on a park opens its properties.
        parks = next(layer for layer in view.layers if layer.slug == "park_and_greenspace")
        settle(browser, interior_point(parks), 16.5)
        click_at_center(browser)
        popup = wait_for(browser, "#sociomap-popup .feature[data-layer='park_and_greenspace']")
        text = popup.text
        assert "Park and greenspace" in text and "Query" in text and "Park" in text and "m²" in text
        fields = {e.get_attribute("data-field") for e in popup.find_elements("css selector", "tr")}
        assert {"query", "area_m2", "n_tiles", "tiles"} <= fields
        assert "From OpenStreetMap tags" in text  # the baseline says it has no model text
        screenshot(browser, tmp_path, "viewer-baseline.png")
        check_only_local_requests(browser, server.url.rstrip("/"))
        assert server.app.stats["206 data"] > 0  # the PMTiles layers were read by range requests
        assert server.app.stats["200 tile-imagery"] > 0


def test_helsinki_labels_over_the_rendered_map(browser, helsinki_labels, tmp_path):
    view = open_run(helsinki_labels, osm=str(HELSINKI_PBF))
    with serving(view) as server:
        load(browser, server.url)
        check_layers(browser, view)
        settle(browser)
        schools = next(layer for layer in view.layers if layer.slug == "educational")
        lon, lat = interior_point(schools)
        zoom = browser.execute_script("return window.sociomapViewer.map.getZoom()") + 0.5
        settle(browser, (lon, lat), zoom)
        click_at_center(browser)
        popup = wait_for(browser, "#sociomap-popup .feature")
        assert "Name" in popup.text and "OSM id" in popup.text
        assert "Crosses a seam" not in popup.text  # labels are not tiled: no tile rows
        settle(browser)
        screenshot(browser, tmp_path, "viewer-helsinki.png")
        check_only_local_requests(browser, server.url.rstrip("/"))
        assert server.app.stats["200 tile-map"] > 0


@pytest.fixture
def model_run_with_a_feature(tiny_model_run, baseline_run, tmp_path) -> tuple[Path, list[str]]:
    """The tiny-model run's folder with one park whose ``reasoning`` points at two of its real cache entries.

    Random weights find no polygons, so the polygon (and a ``confidence`` value) is set here; the texts
    behind it are the model's own, read through ``read_entries`` like any run's.
    """
    out = tmp_path / "model-run"
    shutil.copytree(tiny_model_run, out, symlinks=True)  # the output-set layout, links and all
    pointers = cache_pointers(out)[:2]
    published = (out / "current").resolve()
    parks = pyogrio.read_dataframe(baseline_run / "park_and_greenspace.gpkg")
    feature = parks.iloc[[int(parks.to_crs("EPSG:3857").geometry.area.argmax())]].copy()
    feature["reasoning"] = ";".join(pointers)
    feature["model"] = "tiny-random"
    feature["confidence"] = 0.87
    (published / "park_and_greenspace.gpkg").unlink()
    pyogrio.write_dataframe(
        gpd.GeoDataFrame(feature), published / "park_and_greenspace.gpkg", layer="park_and_greenspace"
    )
    (published / "sociomap.pmtiles").unlink(missing_ok=True)
    return out, pointers


def test_click_shows_the_models_reasoning_and_confidence(browser, model_run_with_a_feature, tmp_path):
    from sociomap.pipeline.cache import read_entries

    out, pointers = model_run_with_a_feature
    view = open_run(out)
    expected = read_entries(out, pointers)[0][1]["stage1_text"]
    with serving(view) as server:
        load(browser, server.url)
        assert "RANDOM WEIGHTS" in browser.find_element("css selector", "#panel .warning").text
        settle(browser, interior_point(view.layers[0]), 16)
        click_at_center(browser)
        wait_for(browser, "#sociomap-popup pre[data-text='stage1_text']")
        popup = browser.find_element("css selector", "#sociomap-popup")
        assert "Confidence" in popup.text and "0.87" in popup.text
        texts = [
            e.get_attribute("textContent")
            for e in popup.find_elements("css selector", "pre[data-text='stage1_text']")
        ]
        assert len(texts) == 2 and texts[0] == expected
        assert server.app.stats["200 reasoning"] == 1
        screenshot(browser, tmp_path, "viewer-reasoning.png")


def test_offline_page_works_from_disk_without_a_server(browser, model_run_with_a_feature, tmp_path):
    from sociomap.viewer.html import write_html

    out, pointers = model_run_with_a_feature
    view = open_run(out)
    page = write_html(view, tmp_path / "offline.html", max_px=1024)
    load(browser, page.as_uri())
    check_layers(browser, view)
    settle(browser, interior_point(view.layers[0]), 16)
    click_at_center(browser)
    wait_for(browser, "#sociomap-popup pre[data-text='stage2_text']")
    names = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(n.startswith(("data:", "blob:")) for n in names), names  # nothing fetched: works offline
    config = json.loads(browser.execute_script("return JSON.stringify(window.sociomapViewer.config.texts)"))
    assert set(config) == set(pointers)
    screenshot(browser, tmp_path, "viewer-offline.png")
