"""write_geopackages: reopened with pyogrio/GDAL, right CRS, layers, counts, metadata, spatial index."""

from __future__ import annotations

import sqlite3

import pyogrio
import pytest

from sociomap.errors import ExportError
from sociomap.export import write_geopackages


def test_one_indexed_geopackage_per_layer_plus_combined(tmp_path, layers):
    paths = write_geopackages(layers.items(), tmp_path, metadata={"sociomap_run": "run-1"}, combined=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["park_and_greenspace.gpkg", "educational.gpkg", "sociomap.gpkg"])  # no partial files left
    assert sorted(p.name for p in paths) == sorted(p.name for p in tmp_path.iterdir())
    for name, frame in layers.items():
        info = pyogrio.read_info(tmp_path / f"{name}.gpkg", layer=name)
        assert info["crs"] == "EPSG:4326" and info["features"] == len(frame)
        assert info["layer_metadata"] == {"sociomap_run": "run-1"}
        pyogrio.read_dataframe(tmp_path / f"{name}.gpkg")
        assert not list(tmp_path.glob("*.aux.xml")), "reading a layer must not leave .aux.xml files behind"
        assert {"query", "area_m2", "crosses_seam"} <= set(info["fields"])
        with sqlite3.connect(tmp_path / f"{name}.gpkg") as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert f"rtree_{name}_geom" in tables
    combined = {name: n for name, _ in pyogrio.list_layers(tmp_path / "sociomap.gpkg")
                for n in [pyogrio.read_info(tmp_path / "sociomap.gpkg", layer=name)["features"]]}
    assert combined == {name: len(frame) for name, frame in layers.items()}


def test_geojson_and_flatgeobuf_on_request(tmp_path, layers):
    write_geopackages(layers.items(), tmp_path, crs="EPSG:3857", formats=("geojson", "fgb"))
    assert pyogrio.read_info(tmp_path / "educational.geojson")["crs"] == "EPSG:4326"  # RFC 7946
    info = pyogrio.read_info(tmp_path / "educational.fgb")
    assert info["crs"] == "EPSG:3857" and info["features"] == len(layers["educational"])


def test_unknown_format_is_refused(tmp_path, layers):
    with pytest.raises(ExportError, match="shp"):
        write_geopackages(layers.items(), tmp_path, formats=("shp",))
