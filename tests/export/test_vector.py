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


@pytest.fixture
def piece_store(tmp_path):
    """Two layers of a merge store: parks (two queries, objects across seams) and schools; no hospitals."""
    import mercantile
    import numpy as np

    from sociomap.merge import MergeConfig, PieceStore, vectorize_mask

    origin, size = mercantile.tile(24.94, 60.17, 16), 256
    rng = np.random.default_rng(3)
    with PieceStore(tmp_path / "pieces") as store:
        for layer, query in (("park_and_greenspace", "Park"), ("park_and_greenspace", "Garden"),
                             ("educational", "School")):
            mask = np.zeros((3 * size, 3 * size), dtype=bool)  # squares on 3 x 3 tiles, many across seams
            for r, c in rng.integers(0, 3 * size - 60, size=(40, 2)):
                mask[r:r + 60, c:c + 60] = True
            for dy in range(3):
                for dx in range(3):
                    tile = mercantile.Tile(origin.x + dx, origin.y + dy, 16)
                    sub = mask[dy * size:(dy + 1) * size, dx * size:(dx + 1) * size]
                    store.add(layer, tile, vectorize_mask(sub, tile, MergeConfig()),
                              {"query": query, "query_kind": "class", "run_id": "run-1"})
        yield store


def test_merged_layers_are_streamed_into_indexed_geopackages(tmp_path, piece_store, monkeypatch):
    from sociomap.export import write_merged_layers
    from sociomap.merge import MergeConfig, merge_layers
    from sociomap.merge import runner

    monkeypatch.setattr(runner, "BLOCK_PIECES", 20)  # many small blocks: many appends per layer
    seen = []
    out = tmp_path / "out"
    counts = write_merged_layers(piece_store, MergeConfig(), out, ["park_and_greenspace", "educational", "hospital"],
                                 crs="EPSG:4326", metadata={"run_id": "run-1"}, workers=1, combined=True,
                                 formats=("fgb", "geojson"), progress=lambda layer, n: seen.append((layer, n)))
    expected = dict(merge_layers(piece_store, MergeConfig()))
    assert dict(counts) == {"park_and_greenspace": len(expected["park_and_greenspace"]),
                            "educational": len(expected["educational"]), "hospital": 0}
    assert counts.crossing["park_and_greenspace"] == int(expected["park_and_greenspace"]["crosses_seam"].sum()) > 0
    parks = [n for layer, n in seen if layer == "park_and_greenspace"]
    assert len(parks) > 3 and parks == sorted(parks) and parks[-1] == counts["park_and_greenspace"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in counts.paths)  # no partial files
    for name, n in counts.items():
        info = pyogrio.read_info(out / f"{name}.gpkg", layer=name)
        assert info["crs"] == "EPSG:4326" and info["features"] == n and info["geometry_type"] == "MultiPolygon"
        assert {"query", "query_kind", "area_m2", "crosses_seam", "reasoning"} <= set(info["fields"])
        assert info["layer_metadata"] == {"run_id": "run-1"}
        with sqlite3.connect(out / f"{name}.gpkg") as db:
            assert db.execute(f"SELECT COUNT(*) FROM rtree_{name}_geom").fetchone()[0] == n
        assert pyogrio.read_info(out / f"{name}.fgb")["crs"] == "EPSG:4326"
        assert pyogrio.read_info(out / f"{name}.geojson")["features"] == n
    assert not pyogrio.read_info(out / "educational.gpkg")["dataset_metadata"]  # on the layer: no .aux.xml
    assert not list(out.glob("*.aux.xml"))
    combined = {name: pyogrio.read_info(out / "sociomap.gpkg", layer=name)["features"]
                for name, _ in pyogrio.list_layers(out / "sociomap.gpkg")}
    assert combined == dict(counts)
    parks = pyogrio.read_dataframe(out / "park_and_greenspace.gpkg").to_crs(3857)
    want = expected["park_and_greenspace"]
    assert sorted(parks["tiles"]) == sorted(want["tiles"]) and set(parks["query"]) == set(want["query"])
    assert abs(parks.area.sum() - want.area.sum()) < 1e-6 * want.area.sum()


def test_a_failing_merge_leaves_no_partial_file(tmp_path, piece_store):
    from sociomap.export import write_merged_layers
    from sociomap.merge import MergeConfig

    def interrupt(layer: str, n: int) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        write_merged_layers(piece_store, MergeConfig(), out, ["educational", "park_and_greenspace"], workers=1,
                            combined=True, progress=interrupt)
    assert list(out.iterdir()) == []
