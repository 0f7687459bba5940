"""sociomap.viewer.html: the served page links only local assets; the offline page inlines everything."""

from __future__ import annotations

import json
import re
import shutil

import geopandas as gpd
import pyogrio

from sociomap.viewer import open_run
from sociomap.viewer.html import render_page, served_page, write_html
from sociomap.viewer.style import fill_layer_id, line_layer_id
from tests.viewer.conftest import copy_set


def _config(page: str) -> dict:
    body = re.search(r'<script id="sociomap-config" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(body[1])


def test_served_page_uses_the_sets_pmtiles_and_live_tiles(baseline_run):
    view = open_run(baseline_run)
    page = served_page(
        view,
        {
            "imagery": {"minzoom": 13, "maxzoom": 15, "format": "webp"},
            "map": {"minzoom": 13, "maxzoom": 18, "format": "png"},
        },
    )
    config = _config(page)
    sources = config["style"]["sources"]
    assert sources["sociomap"] == {"type": "vector", "url": "pmtiles:///data/sociomap.pmtiles"}
    assert sources["bg-imagery"]["tiles"] == ["/tiles/imagery/{z}/{x}/{y}.webp"]
    assert sources["bg-map"]["tiles"] == ["/tiles/map/{z}/{x}/{y}.png"]
    ids = [layer["id"] for layer in config["style"]["layers"]]
    for layer in view.layers:
        assert fill_layer_id(layer.slug) in ids and line_layer_id(layer.slug) in ids
    assert [b["role"] for b in config["backgrounds"]] == ["imagery", "map"]
    assert config["reasoning"] == "none"  # an OSM baseline has no model texts
    # No asset from anywhere but this server: no CDN, no font or sprite URL.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "glyphs" not in config["style"] and "sprite" not in config["style"]


def test_offline_page_inlines_layers_backgrounds_and_code(baseline_run, tmp_path):
    view = open_run(baseline_run)
    path = write_html(view, tmp_path / "view.html", max_px=512)
    page = path.read_text("utf-8")
    markup = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", page, flags=re.S)  # the page minus inlined code
    assert re.findall(r'(?:src|href)="([^"]*)"', markup) == ["data:,"]  # nothing to fetch (an empty icon)
    assert "maplibregl" in page and "sociomapViewer" in page
    config = _config(page)
    sources = config["style"]["sources"]
    for layer in view.layers:
        data = sources[f"layer-{layer.slug}"]["data"]
        assert data["type"] == "FeatureCollection" and len(data["features"]) == layer.count
    assert sources["bg-imagery"]["type"] == "image" and sources["bg-imagery"]["url"].startswith(
        "data:image/jpeg;base64,"
    )
    assert sources["bg-map"]["url"].startswith("data:image/png;base64,")
    corners = sources["bg-imagery"]["coordinates"]
    west, south, east, north = view.bounds
    assert corners[0][0] < west and corners[0][1] > north and corners[2][0] > east and corners[2][1] < south
    assert any("Offline page" in note for note in config["notes"])


def test_text_in_the_data_cannot_break_out_of_the_page(baseline_run, tmp_path):
    out = tmp_path / "out"
    copy_set(baseline_run, out, ignore=("sociomap.pmtiles",))
    path = out / "park_and_greenspace.gpkg"
    frame = pyogrio.read_dataframe(path)
    evil = "</script><script>window.pwned=1</script> __SCRIPTS__ <b>"
    frame["query"] = evil
    pyogrio.write_dataframe(gpd.GeoDataFrame(frame), path, layer="park_and_greenspace")
    page = write_html(open_run(out), tmp_path / "view.html", max_px=256).read_text("utf-8")
    assert "window.pwned" in page and "</script><script>window.pwned" not in page
    config = _config(page)
    features = config["style"]["sources"]["layer-park_and_greenspace"]["data"]["features"]
    assert {f["properties"]["query"] for f in features} == {evil}  # round-trips exactly
    assert page.count("<script") == page.count("</script>")


def test_render_page_escapes_the_title():
    page = render_page({"title": "<i>x</i>", "style": {"sources": {}}}, inline=False)
    assert "<title><i>" not in page and "&lt;i&gt;x&lt;/i&gt;" in page


def test_a_set_is_titled_by_its_output_folder(baseline_run):
    """The published set (OUT/.sociomap/sets/<id>) and a set being built carry OUT's name, not their own."""
    for folder in (baseline_run, (baseline_run / "current").resolve()):
        assert open_run(folder).title == f"OSM baseline run: {baseline_run.name}"
