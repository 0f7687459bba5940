"""Fixtures for the map-source tests: the bundled Helsinki extract and small tile archives."""

from __future__ import annotations

from pathlib import Path

import mercantile
import pytest

from sociomap.maps.osm_data import OSMData, cached_osm

HELSINKI = Path(__file__).resolve().parents[1] / "data" / "helsinki.osm.pbf"
#: The densest z16 tile of the extract (central station), and its neighbours.
DENSE_TILE = mercantile.Tile(37308, 18969, 16)

SMALL_OSM = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="hand">
  <node id="1" version="1" lat="39.9100" lon="116.3000"/>
  <node id="2" version="1" lat="39.9100" lon="116.3010"/>
  <node id="3" version="1" lat="39.9110" lon="116.3010"/>
  <node id="4" version="1" lat="39.9110" lon="116.3000"/>
  <node id="5" version="1" lat="39.9105" lon="116.3005"><tag k="amenity" v="cafe"/><tag k="name" v="咖啡馆"/></node>
  <way id="100" version="1"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/>
    <tag k="leisure" v="park"/><tag k="name" v="人民公园"/><tag k="name:en" v="People's Park"/></way>
</osm>
"""


@pytest.fixture(scope="session")
def helsinki_path() -> Path:
    return HELSINKI


@pytest.fixture(scope="session")
def dense_tile() -> mercantile.Tile:
    return DENSE_TILE


@pytest.fixture(scope="session")
def helsinki(helsinki_path: Path) -> OSMData:
    return cached_osm(helsinki_path)


@pytest.fixture()
def small_osm(tmp_path: Path) -> Path:
    """A hand-written .osm file: one named park (CJK + English name) and a cafe."""
    path = tmp_path / "small.osm"
    path.write_text(SMALL_OSM, encoding="utf-8")
    return path


def _png(rgb) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


def tile_pngs(tiles, osm_path: Path) -> dict[mercantile.Tile, bytes]:
    """256-px PNGs of real OSMMap renders, the content every archive fixture stores."""
    from sociomap.maps.osm_render import OSMMap

    source = OSMMap(osm_path)
    return {t: _png(source.read(t, 256)) for t in tiles}


@pytest.fixture(scope="session")
def archive_tiles(helsinki_path: Path) -> dict[mercantile.Tile, bytes]:
    tiles = [DENSE_TILE, mercantile.Tile(DENSE_TILE.x + 1, DENSE_TILE.y, 16)]
    return tile_pngs(tiles, helsinki_path)


@pytest.fixture()
def xyz_folder(tmp_path: Path, archive_tiles) -> Path:
    root = tmp_path / "tiles"
    for t, data in archive_tiles.items():
        (root / str(t.z) / str(t.x)).mkdir(parents=True, exist_ok=True)
        (root / str(t.z) / str(t.x) / f"{t.y}.png").write_bytes(data)
    return root


@pytest.fixture()
def mbtiles(tmp_path: Path, archive_tiles) -> Path:
    import sqlite3

    path = tmp_path / "map.mbtiles"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        db.execute("CREATE TABLE tiles (zoom_level INT, tile_column INT, tile_row INT, tile_data BLOB)")
        db.executemany("INSERT INTO metadata VALUES (?, ?)", [("name", "test"), ("format", "png")])
        db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)",
                       [(t.z, t.x, (1 << t.z) - 1 - t.y, data) for t, data in archive_tiles.items()])
    return path


def write_pmtiles(path: Path, tiles: dict[mercantile.Tile, bytes], tile_type=None) -> Path:
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    with open(path, "wb") as f:
        writer = Writer(f)
        for tid, data in sorted((zxy_to_tileid(t.z, t.x, t.y), d) for t, d in tiles.items()):
            writer.write_tile(tid, data)
        zooms = [t.z for t in tiles]
        writer.finalize({"tile_type": tile_type or TileType.PNG, "tile_compression": Compression.NONE,
                         "min_zoom": min(zooms), "max_zoom": max(zooms),
                         "min_lon_e7": 0, "min_lat_e7": 0, "max_lon_e7": 0, "max_lat_e7": 0,
                         "center_zoom": min(zooms), "center_lon_e7": 0, "center_lat_e7": 0}, {"name": "test"})
    return path


@pytest.fixture(scope="session")
def pmtiles_writer():
    """The PMTiles fixture writer, for tests that need another tile type."""
    return write_pmtiles


@pytest.fixture()
def pmtiles(tmp_path: Path, archive_tiles) -> Path:
    return write_pmtiles(tmp_path / "map.pmtiles", archive_tiles)
