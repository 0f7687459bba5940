"""The socioseg style draws roads and POIs like SocioSeg's maps; and rendering is safe under threads."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import mercantile
import numpy as np
import shapely

from sociomap.maps.osm_render import OSMMap
from sociomap.maps.osm_socioseg import BACKGROUND, BUILDING, POI_COLOURS
from sociomap.maps.osm_style import AREA_COLOURS
from sociomap.tiling.grid import tile_transform
from tests.conftest import subprocess_env

SIZE = 512
HOSPITAL_OSM = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="hand">
  <node id="1" version="1" lat="39.9100" lon="116.3000"/><node id="2" version="1" lat="39.9100" lon="116.3012"/>
  <node id="3" version="1" lat="39.9110" lon="116.3012"/><node id="4" version="1" lat="39.9110" lon="116.3000"/>
  <node id="5" version="1" lat="39.9120" lon="116.3020"/><node id="6" version="1" lat="39.9120" lon="116.3023"/>
  <node id="7" version="1" lat="39.9122" lon="116.3023"/><node id="8" version="1" lat="39.9122" lon="116.3020"/>
  <way id="100" version="1"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/>
    <tag k="building" v="hospital"/><tag k="amenity" v="hospital"/><tag k="name" v="City Hospital"/></way>
  <way id="101" version="1"><nd ref="5"/><nd ref="6"/><nd ref="7"/><nd ref="8"/><nd ref="5"/>
    <tag k="leisure" v="park"/><tag k="name" v="Tiny Park"/></way>
</osm>
"""


def _near(image: np.ndarray, hex_colour: str, tol: int) -> np.ndarray:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return (np.abs(image.astype(int) - rgb) <= tol).all(axis=2)


def _pixel(tile: mercantile.Tile, point: shapely.Point) -> tuple[int, int]:
    col, row = ~tile_transform(tile, SIZE) * (point.x, point.y)
    return int(row), int(col)


def test_hospital_building_gets_its_sign_and_a_small_park_keeps_its_name(tmp_path):
    path = tmp_path / "hospital.osm"
    path.write_text(HOSPITAL_OSM, encoding="utf-8")
    tile = mercantile.tile(116.3006, 39.9105, 17)
    socioseg, carto = OSMMap(path).read(tile, SIZE), OSMMap(path, style="carto").read(tile, SIZE)
    hospital = shapely.Point(mercantile.xy(116.3006, 39.9105))
    row, col = _pixel(tile, hospital)
    sign = _near(socioseg[row - 12:row + 12, col - 12:col + 12], POI_COLOURS["health"], 30)
    assert sign.sum() > 10  # the hospital sign on its building
    assert not _near(carto[row - 12:row + 12, col - 12:col + 12], POI_COLOURS["health"], 30).any()
    assert _near(socioseg, BUILDING[0], 3).sum() > 1000  # the building itself: a neutral footprint
    # The 25 m park is far below carto's area-label size, but its POI is named in socioseg.
    park_tile = mercantile.tile(116.30215, 39.9121, 17)
    socioseg, carto = OSMMap(path).read(park_tile, SIZE), OSMMap(path, style="carto").read(park_tile, SIZE)
    assert _near(socioseg, POI_COLOURS["park"], 40).sum() > _near(carto, POI_COLOURS["park"], 40).sum() + 20


def test_no_aoi_is_filled_in_socioseg(helsinki_path, helsinki):
    from sociomap.maps.osm_features import socio_features
    from sociomap.taxonomy import resolve_query

    parks = socio_features(helsinki, [resolve_query("park")])
    park = parks[parks.name == "Vanha kirkkopuisto"].geometry.iloc[0]
    point = shapely.get_coordinates(park.representative_point())[0]
    tile = mercantile.tile(*mercantile.lnglat(*point), 17)
    image = OSMMap(helsinki_path).read(tile, SIZE)
    from rasterio.features import rasterize

    inside = rasterize([park.buffer(-6)], out_shape=(SIZE, SIZE), transform=tile_transform(tile, SIZE)).astype(bool)
    assert not _near(image, AREA_COLOURS["park"][0], 3)[inside].any()
    assert _near(image, BACKGROUND, 2)[inside].mean() > 0.3  # the park is background (plus paths, the church)
    assert _near(image, POI_COLOURS["park"], 30).sum() > 10  # ... with its POI sign


THREADED = """
import hashlib, sys, threading, mercantile
from concurrent.futures import ThreadPoolExecutor
from sociomap.maps.osm_render import OSMMap
path, rounds = sys.argv[1], int(sys.argv[2])
x0, y0 = 37307, 18968
tiles = [mercantile.Tile(x0 + i % 3, y0 + i // 3, 16) for i in range(6)]
maps = [OSMMap(path, style=s) for s in ("socioseg", "carto")]
def job(args):
    m, t = args
    return hashlib.sha256(m.read_png(t, 384)).hexdigest()
work = [(m, t) for m in maps for t in tiles] * rounds
with ThreadPoolExecutor(4) as pool:
    digests = list(pool.map(job, work))
print(" ".join(digests))
"""


def test_four_threads_render_the_same_bytes_as_one(helsinki_path):
    rounds = 3
    single = [hashlib.sha256(OSMMap(helsinki_path, style=s).read_png(mercantile.Tile(37307 + i % 3, 18968 + i // 3, 16),
                                                                      384)).hexdigest()
              for s in ("socioseg", "carto") for i in range(6)]
    done = subprocess.run([sys.executable, "-c", THREADED, str(helsinki_path), str(rounds)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]  # a crash in libmapnik would show as a signal here
    assert done.stdout.split() == single * rounds
