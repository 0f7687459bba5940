"""XYZ folder, MBTiles and raster PMTiles sources read back the tiles they hold, aligned."""

from __future__ import annotations

import pickle

import mercantile
import numpy as np
import pytest
from pmtiles.tile import TileType

from sociomap.errors import MapSourceError
from sociomap.maps.archives import MBTilesMap, PMTilesMap, XYZFolderMap
from sociomap.maps.base import open_map_source
from sociomap.maps.osm_render import OSMMap
from sociomap.maps.raster import BLANK_RGB

SOURCES = ["xyz_folder", "mbtiles", "pmtiles"]
KINDS = {"xyz_folder": XYZFolderMap, "mbtiles": MBTilesMap, "pmtiles": PMTilesMap}


@pytest.mark.parametrize("fixture", SOURCES)
def test_archive_returns_the_rendered_tile_pixel_for_pixel(request, fixture, helsinki_path, dense_tile):
    source = open_map_source(request.getfixturevalue(fixture), language="fi")  # OSM-only option ignored
    assert isinstance(source, KINDS[fixture])
    source = pickle.loads(pickle.dumps(source))
    expected = OSMMap(helsinki_path).read(dense_tile, 256)
    assert np.array_equal(source.read(dense_tile, 256), expected)


@pytest.mark.parametrize("fixture", SOURCES)
def test_archive_resamples_to_the_requested_size(request, fixture, helsinki_path, dense_tile):
    source = open_map_source(request.getfixturevalue(fixture))
    big = source.read(dense_tile, 768)
    assert big.shape == (768, 768, 3) and big.dtype == np.uint8
    small = OSMMap(helsinki_path).read(dense_tile, 256).astype(float)
    # Block means of the upsampled tile match the 256-px original: same footprint, no shift.
    means = big.astype(float).reshape(256, 3, 256, 3, 3).mean(axis=(1, 3))
    assert np.abs(means - small).mean() < 6
    shifted = np.roll(small, 4, axis=1)
    assert np.abs(means - small).mean() < np.abs(means - shifted).mean() / 2


@pytest.mark.parametrize("fixture", SOURCES)
def test_missing_tile_is_a_blank_map(request, fixture):
    source = open_map_source(request.getfixturevalue(fixture))
    for tile in (mercantile.Tile(1, 1, 16), mercantile.Tile(0, 0, 3)):
        blank = source.read(tile, 128)
        assert blank.shape == (128, 128, 3) and (blank == BLANK_RGB).all()


def test_vector_pmtiles_is_refused(tmp_path, archive_tiles, pmtiles_writer):
    path = pmtiles_writer(tmp_path / "vector.pmtiles", archive_tiles, TileType.MVT)
    with pytest.raises(MapSourceError, match="raster PMTiles"):
        open_map_source(path)


def test_not_an_archive_raises_map_source_error(tmp_path):
    for name in ("junk.pmtiles", "junk.mbtiles"):
        path = tmp_path / name
        path.write_bytes(b"definitely not an archive" * 10)
        with pytest.raises(MapSourceError, match=name):
            open_map_source(path)


def test_corrupt_tile_names_the_tile(xyz_folder, dense_tile):
    (xyz_folder / "16" / str(dense_tile.x) / f"{dense_tile.y}.png").write_bytes(b"broken")
    with pytest.raises(MapSourceError, match="not a readable image tile"):
        open_map_source(xyz_folder).read(dense_tile, 256)


def test_osm_file_opens_as_osm_map(helsinki_path):
    source = open_map_source(helsinki_path, language="sv")
    assert isinstance(source, OSMMap) and source.describe()["language"] == "sv"


def test_missing_path_raises(tmp_path):
    with pytest.raises(MapSourceError, match="no such map file"):
        open_map_source(tmp_path / "nothing.mbtiles")
