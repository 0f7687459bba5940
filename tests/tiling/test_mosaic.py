"""Streaming a mosaic (any CRS) as XYZ tiles."""

import mercantile
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_points

from sociomap.errors import MosaicError
from sociomap.tiling import Mosaic, tile_transform
from tests.conftest import UTM35N, synthetic_rgb, write_geotiff


def test_tiles_cover_the_footprint_and_skip_nodata(utm_mosaic):
    mosaic = Mosaic(utm_mosaic)
    tiles = list(mosaic.tiles(16))
    read = [mosaic.read(t, 256) for t in tiles]
    assert len(tiles) >= 4
    assert any(r is None for r in read), "tiles over the nodata strip / outside must be skipped"
    got = [r for r in read if r is not None]
    assert got and all(r.rgb.shape == (256, 256, 3) and r.rgb.dtype == np.uint8 for r in got)
    assert all(r.valid.any() for r in got)


def test_a_known_point_lands_on_the_right_pixel(tmp_path):
    # A bright 20 m square at a known UTM position must appear where the tile transform says it is.
    data = np.full((3, 400, 400), 40, np.uint8)
    data[:, 200:210, 300:310] = 250
    origin = (385_100.0, 6_672_700.0)
    path = write_geotiff(tmp_path / "dot.tif", data, UTM35N, from_origin(*origin, 2.0, 2.0))
    cx, cy = origin[0] + 305 * 2.0, origin[1] - 205 * 2.0
    (mx,), (my,) = warp_points(UTM35N, "EPSG:3857", [cx], [cy])
    lon, lat = mercantile.lnglat(mx, my)
    tile = mercantile.tile(lon, lat, 17)
    img = Mosaic(path).read(tile, 512)
    col, row = ~tile_transform(tile, 512) @ (mx, my)
    assert img.rgb[int(row), int(col)].min() > 200
    assert img.rgb[int(row) + 40 if row < 400 else int(row) - 40, int(col)].max() < 100


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("problem, message", [
    ("missing", "no such file"),
    ("nocrs", "has no CRS"),
    ("uint16", "--rescale"),
])
def test_bad_mosaics_get_one_clear_error(tmp_path, problem, message):
    path = tmp_path / f"{problem}.tif"
    if problem == "nocrs":
        with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8") as dst:
            dst.write(np.zeros((3, 8, 8), np.uint8))
    elif problem == "uint16":
        write_geotiff(path, synthetic_rgb(64, 64).astype(np.uint16) * 100, UTM35N, from_origin(0, 0, 1, 1))
    with pytest.raises(MosaicError, match=message) as err:
        Mosaic(path)
    assert str(path) in str(err.value)


def test_rescale_stretches_16_bit(tmp_path):
    data = (synthetic_rgb(64, 64).astype(np.uint16) * 10)
    path = write_geotiff(tmp_path / "u16.tif", data, UTM35N, from_origin(385_100.0, 6_672_700.0, 2.0, 2.0))
    mosaic = Mosaic(path, rescale=(0, 2550))
    tile = next(t for t in mosaic.tiles(17) if mosaic.read(t, 256) is not None)
    img = mosaic.read(tile, 256)
    assert img.rgb[img.valid].max() > 200


def test_mosaic_pickles_without_its_open_dataset(utm_mosaic):
    import pickle

    mosaic = Mosaic(utm_mosaic)
    tile = next(mosaic.tiles(16))
    mosaic.read(tile, 128)
    clone = pickle.loads(pickle.dumps(mosaic))
    a, b = mosaic.read(tile, 128), clone.read(tile, 128)
    assert (a is None and b is None) or np.array_equal(a.rgb, b.rgb)


@pytest.mark.parametrize("lon,lat", [(-122.26, 37.87), (24.94, 60.17)])
def test_native_resolution_of_a_geographic_raster(tmp_path, lon, lat):
    """A 1e-5 degree pixel is 1.11 m of Web-Mercator x and 1.11 m / cos(lat) of y; the native resolution (GDAL's
    square suggestion) lies between. The bounds were once read in the wrong order: west of -90 degrees that
    failed outright (the Berkeley map), elsewhere it gave the zoom advice wrong numbers."""
    import math

    path = write_geotiff(tmp_path / "geo.tif", synthetic_rgb(64, 64), "EPSG:4326", from_origin(lon, lat, 1e-5, 1e-5))
    tile_m = 2 * math.pi * 6378137.0 / 2**18 / 256
    native = Mosaic(path).upsampling(18, 256) * tile_m
    x_m = 1e-5 * math.pi / 180 * 6378137.0
    assert x_m * 0.99 <= native <= x_m / math.cos(math.radians(lat)) * 1.01
