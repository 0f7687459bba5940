"""Fixtures for the export tests: two small merged layers written as a finished run folder."""

from __future__ import annotations

import json

import geopandas as gpd
import mercantile
import pytest
import shapely

from sociomap.export import write_geopackages


@pytest.fixture
def layers() -> dict[str, gpd.GeoDataFrame]:
    """Two socio-function layers (EPSG:3857) in central Helsinki with merge-style columns."""
    x, y = mercantile.xy(24.94, 60.17)
    out = {}
    for k, (name, query) in enumerate([("park_and_greenspace", "Park"), ("educational", "School")]):
        geoms = [shapely.box(x + 300 * i, y + 200 * k, x + 300 * i + 150, y + 200 * k + 120) for i in range(3 + k)]
        out[name] = gpd.GeoDataFrame({
            "query": query, "function": name, "area_m2": [shapely.area(g) / 4 for g in geoms],
            "n_tiles": 1, "tiles": "16/37308/18969", "crosses_seam": False, "prompts": None,
        }, geometry=geoms, crs="EPSG:3857")
    return out


@pytest.fixture
def run_dir(tmp_path, layers):
    """A finished run's output folder as sociomap 0.1 wrote it: GeoPackages (one per layer plus the combined
    one) and run.json directly in the folder."""
    paths = write_geopackages(layers.items(), tmp_path, combined=True)
    manifest = {"status": "ok", "run_id": "r0", "outputs": [str(p) for p in paths],
                "layers": {name: len(frame) for name, frame in layers.items()}}
    (tmp_path / "run.json").write_text(json.dumps(manifest))
    return tmp_path
