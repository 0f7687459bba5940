"""OSMMap renders aligned, labelled, deterministic map tiles from the Helsinki extract."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys

import mercantile
import numpy as np
import pytest
import shapely
from rasterio.features import rasterize

from sociomap.maps.mapnik_env import mapnik
from sociomap.maps.osm_features import socio_features
from sociomap.maps.osm_render import OSMMap
from sociomap.maps.osm_style import AREA_COLOURS, AREA_TEXT
from sociomap.taxonomy import resolve_query
from sociomap.tiling.grid import tile_transform

SIZE = 512


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def _near(image: np.ndarray, hex_colour: str, tol: int) -> np.ndarray:
    """(H, W) bool: pixels within ``tol`` of the colour on every channel."""
    return (np.abs(image.astype(int) - _rgb(hex_colour)) <= tol).all(axis=2)


def _footprint(geom, tile, buffer_m: float = 0.0) -> np.ndarray:
    shape = geom.buffer(buffer_m)
    if shape.is_empty:
        return np.zeros((SIZE, SIZE), bool)
    return rasterize([shape], out_shape=(SIZE, SIZE), transform=tile_transform(tile, SIZE)).astype(bool)


def _park(helsinki, name):
    parks = socio_features(helsinki, [resolve_query("park")])
    return parks[parks.name == name].geometry.iloc[0]


def _tile_of(geom, zoom):
    return mercantile.tile(*mercantile.lnglat(*shapely.get_coordinates(geom.representative_point())[0]), zoom)


@pytest.fixture(scope="module")
def osm_map(helsinki_path):
    return OSMMap(helsinki_path, style="carto")


def test_park_fill_lands_on_the_park_footprint(osm_map, helsinki):
    park = _park(helsinki, "Vanha kirkkopuisto")
    tile = _tile_of(park, 17)
    image = osm_map.read(tile, SIZE)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    fill = _near(image, AREA_COLOURS["park"][0], 2)
    inside = _footprint(park, tile, -6.0)
    ring = _footprint(park, tile, 25.0) & ~_footprint(park, tile, 4.0)
    assert fill[inside].mean() > 0.5  # paths, the church and labels cover the rest
    assert fill[ring].mean() < 0.1


def test_named_park_is_labelled_in_every_tile_that_shows_it(osm_map, helsinki):
    park = _park(helsinki, "Esplanadinpuisto")
    west, south = mercantile.lnglat(*shapely.total_bounds(park)[:2])
    east, north = mercantile.lnglat(*shapely.total_bounds(park)[2:])
    shown = 0
    for tile in mercantile.tiles(west, south, east, north, 17):
        footprint = _footprint(park, tile)
        if footprint.mean() < 0.1:
            continue
        shown += 1
        text = _near(osm_map.read(tile, SIZE), AREA_TEXT["park"], 40)
        assert (text & _footprint(park, tile, 15.0)).sum() > 30, tile
    assert shown >= 2


def test_no_dark_label_pixels_on_tile_borders(osm_map, dense_tile):
    # Labels must lie wholly inside a tile (avoid-edges); street names are drawn in #333333.
    for tile in (dense_tile, mercantile.Tile(dense_tile.x + 1, dense_tile.y, 16),
                 mercantile.Tile(dense_tile.x, dense_tile.y + 1, 16)):
        image = osm_map.read(tile, SIZE)
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        assert not (border.max(axis=1) < 80).any(), tile


def test_neighbouring_tiles_meet_without_a_seam(osm_map, dense_tile):
    left = osm_map.read(dense_tile, SIZE)
    right = osm_map.read(mercantile.Tile(dense_tile.x + 1, dense_tile.y, 16), SIZE)
    diff = np.abs(left[:, -1].astype(int) - right[:, 0].astype(int)).sum(axis=1)
    assert (diff < 60).mean() > 0.85


def test_same_input_gives_identical_png_bytes_across_processes(helsinki_path, osm_map, dense_tile):
    code = ("import hashlib, sys, mercantile; from sociomap.maps.osm_render import OSMMap; "
            f"png = OSMMap({str(helsinki_path)!r}, style='carto').read_png(mercantile.Tile(*{tuple(dense_tile)}), {SIZE}); "
            "sys.stdout.write(hashlib.sha256(png).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
               for _ in range(2)}
    digests.add(hashlib.sha256(osm_map.read_png(dense_tile, SIZE)).hexdigest())
    assert len(digests) == 1


def test_pickles_as_path_and_options(osm_map, dense_tile):
    blob = pickle.dumps(osm_map)
    assert len(blob) < 500
    assert np.array_equal(pickle.loads(blob).read(dense_tile, 256), osm_map.read(dense_tile, 256))
    assert osm_map.describe()["kind"] == "osm"


def test_cjk_names_render_and_language_prefers_name_xx(small_osm):
    tile = mercantile.tile(116.3005, 39.9105, 17)
    native = OSMMap(small_osm, style="carto").read(tile, SIZE)
    english = OSMMap(small_osm, language="en", style="carto").read(tile, SIZE)
    assert "Droid Sans Fallback Regular" in mapnik.FontEngine.face_names()
    for image in (native, english):
        assert _near(image, AREA_TEXT["park"], 40).sum() > 30
    assert not np.array_equal(native, english)


def test_importing_the_renderer_leaves_rasterio_epsg_lookups_working():
    code = ("import sociomap.maps.osm_render, rasterio.crs; "
            "print(rasterio.crs.CRS.from_epsg(3857).to_epsg())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "3857", done.stderr
