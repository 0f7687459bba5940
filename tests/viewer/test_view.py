"""sociomap.viewer.view: what a viewer shows for model runs, baselines, labels and published sets."""

from __future__ import annotations

import json
import os
import shutil
import time

import pyogrio
import pytest

from sociomap.errors import InputError
from sociomap.viewer import open_run
from sociomap.viewer.style import FUNCTION_COLOURS
from tests.conftest import HELSINKI_PBF
from tests.viewer.conftest import copy_set
from sociomap.pipeline.outputs import published_set


def test_baseline_run_shows_its_layers_over_the_recorded_imagery_and_map(baseline_run, utm_mosaic):
    view = open_run(baseline_run)
    manifest = json.loads((baseline_run / "run.json").read_text())
    assert view.kind == "osm-baseline" and not view.random_weights
    assert [layer.slug for layer in view.layers] == list(manifest["layers"])  # the run's order
    for layer in view.layers:
        assert layer.count == manifest["layers"][layer.slug] == pyogrio.read_info(layer.path)["features"]
        assert layer.colour == FUNCTION_COLOURS[layer.slug]
    assert {layer.title for layer in view.layers} == {"Park and greenspace", "Educational"}
    imagery = view.background("imagery")
    assert imagery is not None and imagery.source == str(utm_mosaic) and imagery.archive is None
    assert view.background("map").source == str(HELSINKI_PBF)
    assert view.vector_archive == published_set(baseline_run) / "sociomap.pmtiles"
    west, south, east, north = view.bounds
    parks = next(layer for layer in view.layers if layer.slug == "park_and_greenspace")
    assert (
        west <= parks.bounds[0]
        and east >= parks.bounds[2]
        and south <= parks.bounds[1]
        and north >= parks.bounds[3]
    )


def test_labels_are_said_to_be_osm_labels_over_the_map_of_their_osm_file(helsinki_labels, tmp_path):
    view = open_run(helsinki_labels)  # the labels' run.json records the OSM file: its map is the background
    assert view.kind == "labels" and "no model involved" in view.description
    assert [b.role for b in view.backgrounds] == ["map"]
    bare = copy_set(helsinki_labels, tmp_path / "bare", ignore=("run.json",))  # layers only: nothing to draw on
    assert open_run(bare).backgrounds == () and any("--osm" in note for note in open_run(bare).notes)
    view = open_run(helsinki_labels, osm=str(HELSINKI_PBF))
    assert view.background("map").options["bounds_wgs84"] == view.bounds  # render only the frame's data
    assert any("No satellite imagery" in note for note in view.notes)
    assert sum(layer.count for layer in view.layers) > 50
    assert next(layer for layer in view.layers if layer.slug == "medical").bounds is None  # empty layer


def test_reads_through_the_published_set_once(baseline_run, tmp_path):
    out = tmp_path / "out"
    sets = out / ".sociomap" / "sets"
    set_dir = sets / "20260101T000000Z-aaaaaa"
    copy_set(baseline_run, set_dir)
    os.symlink(os.path.relpath(set_dir, out), out / "current")
    # A stray old-style layer at OUT's top level must not be read.
    pyogrio.write_dataframe(pyogrio.read_dataframe(set_dir / "educational.gpkg"), out / "stray.gpkg")
    view = open_run(out)
    assert view.set_dir == set_dir.resolve() and view.out == out
    assert {layer.slug for layer in view.layers} == {"park_and_greenspace", "educational"}
    assert all(layer.path.parent == set_dir.resolve() for layer in view.layers)


def test_stale_vector_archive_falls_back_to_the_geopackages(baseline_run, tmp_path):
    out = tmp_path / "out"
    copy_set(baseline_run, out)
    later = time.time() + 5
    os.utime(out / "educational.gpkg", (later, later))  # re-run after the last export
    view = open_run(out)
    assert view.vector_archive is None
    assert any("older than the layers" in note for note in view.notes)


def test_missing_recorded_imagery_is_a_note_not_an_error(baseline_run, tmp_path):
    out = tmp_path / "out"
    copy_set(baseline_run, out)
    manifest = json.loads((out / "run.json").read_text())
    manifest["config"]["image"] = str(tmp_path / "moved-away.tif")
    (out / "run.json").write_text(json.dumps(manifest))
    view = open_run(out)
    assert view.background("imagery") is None
    assert any("moved-away.tif" in note and "--image" in note for note in view.notes)


def test_folder_without_layers_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no GeoPackage layers"):
        open_run(tmp_path)


def test_viewing_writes_nothing_into_the_set(tmp_path):
    """Open, serve, picture and page a labels folder: its files stay exactly as they were."""
    import urllib.request

    from sociomap.pipeline.labels import write_labels
    from sociomap.viewer.html import write_html
    from sociomap.viewer.pictures import write_pictures
    from tests.viewer.conftest import serving

    out = tmp_path / "labels"
    write_labels(HELSINKI_PBF, ("park", "school"), out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    view = open_run(out, osm=str(HELSINKI_PBF))
    with serving(view) as server:
        for path in ("", "layers/park_and_greenspace.geojson", "layers/educational.geojson"):
            urllib.request.urlopen(server.url + path, timeout=30).read()
    write_pictures(tmp_path / "elsewhere", view, width=300, thumb_width=100)
    write_html(view, tmp_path / "elsewhere" / "page.html", max_px=256)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # no .aux.xml, nothing touched
