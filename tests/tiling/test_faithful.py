"""Tiles faithful to the mosaic: resampling in the warp, palettes, nodata, GCPs, non-Earth CRSs, huge rasters."""

from __future__ import annotations

import logging

import mercantile
import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.transform import from_origin

from sociomap.errors import ConfigError, MosaicError
from sociomap.tiling import Mosaic, TilingConfig, count_tiles
from tests.conftest import HELSINKI_ORIGIN, UTM35N, synthetic_rgb, write_geotiff


def _tile_with_data(mosaic: Mosaic, zoom: int, size: int):
    for tile in mosaic.tiles(zoom):
        img = mosaic.read(tile, size)
        if img is not None and img.coverage == 1.0:
            return img
    raise AssertionError("no fully covered tile")


def _equal_to_right_neighbour(rgb: np.ndarray) -> float:
    return float((rgb[:, 1:] == rgb[:, :-1]).all(axis=2).mean())


def test_bilinear_reaches_the_reprojection_of_a_utm_mosaic(utm_mosaic):
    # z18 at 512 px is ~0.15 m on the ground: each 2 m UTM pixel spans ~13 tile pixels.
    blocky = _equal_to_right_neighbour(_tile_with_data(Mosaic(utm_mosaic, resampling="nearest"), 18, 512).rgb)
    smooth = _equal_to_right_neighbour(_tile_with_data(Mosaic(utm_mosaic), 18, 512).rgb)
    assert blocky > 0.6 and smooth < 0.25, (blocky, smooth)


def test_paletted_mosaic_is_expanded_to_rgb(tmp_path):
    index = np.zeros((1, 256, 256), np.uint8)
    index[0, :, :128], index[0, :, 128:] = 1, 2
    path = tmp_path / "palette.tif"
    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint8", crs=UTM35N,
                       transform=from_origin(*HELSINKI_ORIGIN, 2.0, 2.0), photometric="palette") as dst:
        dst.write(index)
        dst.write_colormap(1, {0: (0, 0, 0, 0), 1: (220, 30, 30, 255), 2: (30, 120, 230, 255)})
    mosaic = Mosaic(path)
    images = [img for img in (mosaic.read(t, 256) for t in mosaic.tiles(17)) if img is not None]
    colours = {tuple(int(v) for v in c) for img in images for c in np.unique(img.rgb[img.valid], axis=0)}
    assert colours <= {(220, 30, 30), (30, 120, 230)} and len(colours) == 2  # never grey index values


def test_nodata_option_masks_undeclared_borders(tmp_path):
    data = synthetic_rgb(256, 256)
    data[:, :, :] = 0
    path = write_geotiff(tmp_path / "black.tif", data, UTM35N, from_origin(*HELSINKI_ORIGIN, 2.0, 2.0))
    tile = next(Mosaic(path).tiles(17))
    assert Mosaic(path).read(tile, 128) is not None  # black pixels count as data without a nodata value
    assert Mosaic(path, nodata=0).read(tile, 128) is None


def test_mars_raster_is_refused(tmp_path):
    path = write_geotiff(tmp_path / "mars.tif", synthetic_rgb(64, 64), "+proj=longlat +a=3396190 +b=3376200 +no_defs",
                         from_origin(137.0, -4.5, 0.001, 0.001))
    with pytest.raises(MosaicError, match="not on Earth") as err:
        Mosaic(path)
    assert err.value.exit_code == 3 and str(path) in str(err.value)


def test_gcp_only_raster_is_warped_by_its_gcps(tmp_path, utm_mosaic):
    with rasterio.open(utm_mosaic) as src:
        data, transform, (h, w) = src.read(), src.transform, src.shape
    corners = [(0, 0), (0, w), (h, 0), (h, w)]
    gcps = [GroundControlPoint(row, col, *(transform * (col, row))) for row, col in corners]
    path = tmp_path / "gcps.tif"
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8", nodata=0,
                       gcps=gcps, crs=UTM35N) as dst:
        dst.write(data)
    reference = _tile_with_data(Mosaic(utm_mosaic), 17, 256)
    warped = Mosaic(path).read(reference.tile, 256)
    both = reference.valid & warped.valid
    assert both.mean() > 0.9
    assert np.abs(reference.rgb[both].astype(int) - warped.rgb[both]).mean() < 3


def test_reversed_rescale_is_refused():
    with pytest.raises(ConfigError, match="MIN must be below MAX"):
        TilingConfig(rescale=(2550.0, 0.0))


def test_zoom_far_finer_than_the_mosaic_warns(utm_mosaic, caplog):
    mosaic = Mosaic(utm_mosaic)
    # 2 m pixels at 60 N are 4 m of Web Mercator; a z15 768-px tile pixel is 1.6 m of it: 2.5x, fine
    assert mosaic.check_zoom(15, 768) is None
    with caplog.at_level(logging.WARNING):
        message = mosaic.check_zoom(21, 768)
    assert message and "far finer" in message and "--zoom" in caplog.text
    assert mosaic.native_zoom(768) == 14  # 3.2 Mercator m per tile pixel vs the mosaic's 4.0


@pytest.mark.parametrize("zoom", [12, 15, 17, 18])
def test_count_tiles_matches_the_stream_without_reading(utm_mosaic, zoom):
    mosaic = Mosaic(utm_mosaic)
    assert mosaic.count_tiles(zoom) == len(list(mosaic.tiles(zoom)))


def test_count_tiles_across_the_antimeridian_and_the_world():
    assert count_tiles((179.0, -1.0, -179.0, 1.0), 8) == len(list(mercantile.tiles(179.0, -1.0, -179.0, 1.0, 8)))
    assert count_tiles((-180.0, -90.0, 180.0, 90.0), 16) == 4**16


@pytest.fixture(scope="module")
def huge_sparse(tmp_path_factory) -> object:
    """A 36000x18000 world raster at 0.01 degree with one 512x512 block of data (central Helsinki)."""
    path = tmp_path_factory.mktemp("huge") / "world.tif"
    with rasterio.open(path, "w", driver="GTiff", width=36000, height=18000, count=3, dtype="uint8", nodata=0,
                       crs="EPSG:4326", transform=from_origin(-180.0, 90.0, 0.01, 0.01), tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True) as dst:
        dst.write(synthetic_rgb(512, 512), window=rasterio.windows.Window(20480, 2560, 512, 512))
    return path


def test_huge_sparse_world_raster_counts_and_reads_without_loading(huge_sparse):
    mosaic = Mosaic(huge_sparse)
    assert mosaic.count_tiles(16) == 65536 * 65536  # counted, not enumerated
    data = mercantile.tile(-180 + (20480 + 256) * 0.01, 90 - (2560 + 256) * 0.01, 10)
    ocean = mercantile.tile(-30.0, 0.0, 10)
    assert mosaic.read(data, 256) is not None and mosaic.read(ocean, 256) is None
