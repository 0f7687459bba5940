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
