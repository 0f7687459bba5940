"""sociomap.viewer.tiles: raster PMTiles of the imagery and the map, written atomically and read back."""

from __future__ import annotations

import io

import mercantile
import numpy as np
import pytest
from PIL import Image
from pmtiles.reader import MmapSource, Reader, all_tiles

from sociomap.errors import ExportError
from sociomap.tiling import Mosaic
from sociomap.viewer import open_run
from sociomap.viewer.tiles import (
    MosaicTiles,
    archive_info,
    fit_zoom,
    write_basemap_tiles,
    write_imagery_tiles,
    write_raster_pmtiles,
)
from tests.conftest import HELSINKI_PBF
from tests.viewer.conftest import copy_set


def test_imagery_archive_holds_the_mosaic_from_one_tile_to_native_resolution(utm_mosaic, tmp_path):
    mosaic = Mosaic(utm_mosaic)
    calls = []
    (path,) = write_imagery_tiles(tmp_path, mosaic, progress=lambda done, total: calls.append((done, total)))
    assert path == tmp_path / "imagery.pmtiles" and not list(tmp_path.glob(".*partial*"))
    info = archive_info(path)
    bounds = mosaic.geographic_bounds()
    # 2 m UTM pixels at 60 N are ~4 Web-Mercator metres: native zoom 15 for 256 px tiles (rio-tiler),
    # so 14 for our 512 px tiles.
    assert mosaic.reader.maxzoom == 15
    assert info["tile_type"] == "webp" and info["max_zoom"] == 14 and info["min_zoom"] <= fit_zoom(bounds)
    assert info["bounds"] == pytest.approx(bounds, abs=1e-6)
    assert calls[-1][0] == calls[-1][1] == len(calls)
    with open(path, "rb") as f:
        reader = Reader(MmapSource(f))
        stored = {(z, x, y): data for (z, x, y), data in all_tiles(reader.get_bytes)}
    assert {z for z, _, _ in stored} == set(range(info["min_zoom"], info["max_zoom"] + 1))
    west, south, east, north = bounds
    tile = mercantile.tile((west + east) / 2, (south + north) / 2, 14)
    image = np.asarray(Image.open(io.BytesIO(stored[(tile.z, tile.x, tile.y)])).convert("RGBA"))
    expected = MosaicTiles(mosaic).read(tile, 512)
    valid = expected[..., 3] > 0
    assert (
        valid.any() and np.corrcoef(image[valid][:, :3].ravel(), expected[valid][:, :3].ravel())[0, 1] > 0.95
    )
    assert (image[~valid][:, 3] == 0).all() if (~valid).any() else True  # transparent outside the data


def test_archive_is_a_raster_map_source_for_the_pipeline(utm_mosaic, tmp_path):
    """What the viewer writes, the pipeline's own PMTiles map reader can read (one tile grid)."""
    from sociomap.maps.archives import PMTilesMap

    mosaic = Mosaic(utm_mosaic)
    (path,) = write_imagery_tiles(tmp_path, mosaic, maxzoom=14)
    assert archive_info(path)["max_zoom"] == 14
    west, south, east, north = mosaic.geographic_bounds()
    tile = mercantile.tile((west + east) / 2, (south + north) / 2, 14)
    rgb = PMTilesMap(path).read(tile, 256)
    assert rgb.shape == (256, 256, 3) and rgb.std() > 10  # imagery, not the blank map colour


def test_basemap_archive_renders_the_osm_map(tmp_path):
    from sociomap.maps.base import open_map_source

    bounds = (24.940, 60.168, 24.946, 60.171)
    source = open_map_source(HELSINKI_PBF, bounds_wgs84=bounds)
    (path,) = write_basemap_tiles(tmp_path, source, bounds, maxzoom=16)
    info = archive_info(path)
    assert info["tile_type"] == "png" and info["max_zoom"] == 16
    with open(path, "rb") as f:
        reader = Reader(MmapSource(f))
        assert reader.metadata()["attribution"] == "© OpenStreetMap contributors"
        tiles = list(all_tiles(reader.get_bytes))
    assert tiles and all(Image.open(io.BytesIO(data)).size == (512, 512) for _, data in tiles)


def test_no_data_anywhere_is_an_error_and_leaves_no_file(tmp_path):
    class Empty:
        def read(self, tile, size):
            return None

    target = tmp_path / "imagery.pmtiles"
    with pytest.raises(ExportError, match="no tile"):
        write_raster_pmtiles(target, Empty(), (24.94, 60.16, 24.95, 60.17), 14, 15, "webp", "x")
    assert list(tmp_path.iterdir()) == []


def test_viewer_uses_an_imagery_archive_in_the_set(baseline_run, tmp_path):
    import shutil

    out = tmp_path / "out"
    copy_set(baseline_run, out)
    mosaic = Mosaic(open_run(out).background("imagery").source)
    write_imagery_tiles(out, mosaic, maxzoom=14)
    view = open_run(out)
    assert view.background("imagery").archive == out / "imagery.pmtiles"
    from sociomap.viewer.html import served_page

    assert '"url":"pmtiles:///data/imagery.pmtiles"' in served_page(view, {})


@pytest.mark.parametrize("span", [0.001, 0.01, 0.1, 1.0, 10.0])
def test_fit_zoom_puts_the_frame_in_about_one_tile(span):
    bounds = (24.9, 60.1, 24.9 + span, 60.1 + span / 2)
    z = fit_zoom(bounds)
    tiles = list(mercantile.tiles(*bounds, zooms=z))
    assert 1 <= len(tiles) <= 4
    assert len(list(mercantile.tiles(*bounds, zooms=z + 2))) > 4
