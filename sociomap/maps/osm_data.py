"""sociomap.maps.osm_data: an OSM index's features in memory, for small areas, tests and benchmarks.

Everything goes through the on-disk index (``osm_index``): ``load_osm`` builds it (or reuses it) and
reads its layers whole into GeoDataFrames. Tile-by-tile work (rendering, the OSM baseline) queries the
index per tile instead, so its memory does not grow with the area.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd

from sociomap.maps.osm_index import LAYERS, OSMIndex, prepare_osm_index
from sociomap.maps.osm_read import EXTENSIONS, check_path

__all__ = ["EXTENSIONS", "OSMData", "cached_osm", "load_index", "load_osm"]


@dataclass(frozen=True)
class OSMData:
    """What one OSM file holds inside the bounds, all geometries in EPSG:3857.

    Attributes:
        path: the OSM file.
        areas: GeoDataFrame [osm_id, tags, classes, geometry]; (Multi)Polygons: closed ways, multipolygons, sea.
        lines: GeoDataFrame [osm_id, tags, geometry]; (Multi)LineStrings: roads, railways, rivers.
        points: GeoDataFrame [osm_id, tags, geometry]; Points: POI nodes (n...) and area POIs (w.../r...).
        bounds_m: (left, bottom, right, top) of the index's features in EPSG:3857.
    """

    path: Path
    areas: gpd.GeoDataFrame
    lines: gpd.GeoDataFrame
    points: gpd.GeoDataFrame
    bounds_m: tuple[float, float, float, float]


def load_index(index: str | Path, source: Path | None = None) -> OSMData:
    """Every feature of an index file, in memory."""
    reader = OSMIndex(Path(index))
    frames = {}
    for layer in LAYERS:
        chunks = list(reader.chunks(layer))
        ids = [i for c in chunks for i in c.osm_id]
        columns = {"osm_id": ids, "tags": [t for c in chunks for t in c.tags]}
        if layer == "areas":
            columns["classes"] = [k for c in chunks for k in c.classes]
        geoms = [g for c in chunks for g in c.geometry]
        frames[layer] = gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(geoms, crs=3857), crs=3857)
    return OSMData(source or Path(index), frames["areas"], frames["lines"], frames["points"], reader.bounds_m())


def load_osm(path: str | Path, bounds_wgs84: tuple[float, float, float, float] | None = None,
             directory: str | Path | None = None) -> OSMData:
    """Read an OSM extract, keeping what touches ``bounds_wgs84`` (lon/lat), in EPSG:3857.

    Raises OSMError for a missing, corrupt or empty file.
    """
    path = Path(path)
    return load_index(prepare_osm_index(path, bounds_wgs84, directory), path)


@functools.lru_cache(maxsize=4)
def _cached(path: Path, stamp: tuple[int, int], bounds: tuple[float, float, float, float] | None) -> OSMData:
    return load_osm(path, bounds)


def cached_osm(path: str | Path, bounds_wgs84: tuple[float, float, float, float] | None = None) -> OSMData:
    """``load_osm`` once per process and file version."""
    path = Path(path)
    check_path(path)
    st = path.stat()
    return _cached(path.resolve(), (st.st_mtime_ns, st.st_size), bounds_wgs84 and tuple(bounds_wgs84))
