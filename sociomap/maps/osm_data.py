"""sociomap.maps.osm_data: stream an OpenStreetMap file into EPSG:3857 areas, lines and POIs.

pyosmium's FileProcessor reads .osm.pbf/.osm/.osm.bz2 in two passes (multipolygon relations are
assembled into areas) without loading the file whole; only objects that intersect the requested
bounds and carry tags the map style or the taxonomy needs are kept.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import osmium
import pandas as pd
import shapely
import shapely.wkb
from osmium.geom import WKBFactory

from sociomap.errors import OSMError
from sociomap.maps.coastline import sea_polygons
from sociomap.taxonomy import load_taxonomy

logger = logging.getLogger(__name__)

#: Keys that make a closed way or multipolygon an area worth keeping (fills, labels, taxonomy).
AREA_KEYS = frozenset({
    "landuse", "leisure", "amenity", "natural", "water", "building", "tourism", "shop", "place",
    "aeroway", "man_made", "office", "healthcare", "historic", "public_transport", "railway", "waterway",
})
#: Keys that make a way a line feature (roads, railways, rivers, the coastline).
LINE_KEYS = frozenset({"highway", "railway", "waterway", "natural"})
#: Keys that make a node a POI.
POI_KEYS = frozenset({
    "amenity", "shop", "tourism", "leisure", "office", "healthcare", "historic", "railway",
    "public_transport", "place", "station",
})
#: Further keys kept because the style reads them.
STYLE_KEYS = frozenset({"area", "bridge", "tunnel", "layer", "service", "sport", "religion", "ref", "station"})
EXTENSIONS = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz", ".osm.xml")
_LINEAR_ONLY = {"highway", "barrier", "railway", "waterway"}
#: Values of otherwise linear keys that are areas (railway=station, waterway=riverbank, ...).
_AREA_VALUES = {"station", "platform", "riverbank", "dock", "basin"}


@dataclass(frozen=True)
class OSMData:
    """What one OSM file holds inside the bounds, all geometries in EPSG:3857.

    Attributes:
        path: the OSM file.
        areas: GeoDataFrame [osm_id, tags, geometry]; (Multi)Polygons: closed ways, multipolygons, sea.
        lines: GeoDataFrame [osm_id, tags, geometry]; (Multi)LineStrings: roads, railways, rivers.
        points: GeoDataFrame [osm_id, tags, geometry]; Points: POI nodes.
        bounds_m: (left, bottom, right, top) of the kept frame in EPSG:3857.
    """

    path: Path
    areas: gpd.GeoDataFrame
    lines: gpd.GeoDataFrame
    points: gpd.GeoDataFrame
    bounds_m: tuple[float, float, float, float]


def kept_keys() -> frozenset[str]:
    """Tag keys kept on every object: style keys, taxonomy rule keys (names are kept separately)."""
    rule_keys = {k for c in load_taxonomy().classes for rule in c.osm for k, _ in rule.tags}
    return AREA_KEYS | LINE_KEYS | POI_KEYS | STYLE_KEYS | rule_keys


def _slim(tags: osmium.osm.TagList, keys: frozenset[str]) -> dict[str, str]:
    return {t.k: t.v for t in tags if t.k in keys or t.k == "name" or t.k.startswith("name:")}


def _is_area_feature(tags: dict[str, str]) -> bool:
    if tags.get("area") == "no" or tags.get("natural") == "coastline":
        return False
    if tags.get("area") == "yes":
        return True
    return any(k in AREA_KEYS and not (k in _LINEAR_ONLY and tags.get(k) not in _AREA_VALUES) for k in tags)


def _is_line_feature(tags: dict[str, str]) -> bool:
    if tags.get("area") == "yes":
        return False
    if tags.get("natural") == "coastline":
        return True
    return any(k in tags and tags[k] not in _AREA_VALUES for k in ("highway", "railway", "waterway"))


def _salvaged_ring(way: osmium.osm.Way) -> shapely.Geometry | None:
    """A closed way cut by the extract boundary (some node locations missing) as a polygon of the rest."""
    coords = [(n.lon, n.lat) for n in way.nodes if n.location.valid()]
    if len(set(coords)) < 3:
        return None
    poly = shapely.make_valid(shapely.Polygon(coords))
    parts = [g for g in getattr(poly, "geoms", [poly]) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else None


def _line_runs(way: osmium.osm.Way) -> shapely.Geometry | None:
    """A way with missing node locations as the runs of consecutive located nodes."""
    runs, run = [], []
    for n in way.nodes:
        if n.location.valid():
            run.append((n.lon, n.lat))
        else:
            runs, run = runs + [run], []
    runs = [r for r in runs + [run] if len(r) >= 2]
    return shapely.MultiLineString(runs) if runs else None


class _Collector:
    """Accumulates (osm_id, tags, geometry) rows per layer, keeping what intersects ``frame``."""

    def __init__(self, frame: shapely.Geometry | None, keys: frozenset[str]):
        self.frame, self.keys, self.wkb = frame, keys, WKBFactory()
        self.rows: dict[str, list[tuple[str, dict[str, str], shapely.Geometry]]] = {
            "areas": [], "lines": [], "points": [], "coast": []}
        self.objects = 0
        self.salvaged = 0

    def add(self, layer: str, osm_id: str, tags: dict[str, str], geom: shapely.Geometry | None) -> None:
        if geom is None or geom.is_empty or (self.frame is not None and not self.frame.intersects(geom)):
            return
        self.rows[layer].append((osm_id, tags, geom))

    def take(self, obj: osmium.osm.OSMObject) -> None:
        self.objects += 1
        if obj.is_area():
            tags = _slim(obj.tags, self.keys)
            if _is_area_feature(tags):
                osm_id = f"{'w' if obj.from_way() else 'r'}{obj.orig_id()}"
                self.add("areas", osm_id, tags, shapely.wkb.loads(self.wkb.create_multipolygon(obj), hex=True))
        elif obj.is_way():
            self._take_way(obj)
        elif obj.is_node():
            tags = _slim(obj.tags, self.keys)
            if any(k in POI_KEYS for k in tags) and obj.location.valid():
                self.add("points", f"n{obj.id}", tags, shapely.Point(obj.location.lon, obj.location.lat))

    def _take_way(self, way: osmium.osm.Way) -> None:
        tags = _slim(way.tags, self.keys)
        complete = all(n.location.valid() for n in way.nodes)
        if tags.get("natural") == "coastline":
            # Joined across missing nodes: the sea builder needs the coastline's run, not its pieces.
            coords = [(n.lon, n.lat) for n in way.nodes if n.location.valid()]
            self.add("coast", f"w{way.id}", tags, shapely.LineString(coords) if len(coords) >= 2 else None)
        elif _is_line_feature(tags):
            geom = shapely.wkb.loads(self.wkb.create_linestring(way), hex=True) if complete else _line_runs(way)
            self.add("lines", f"w{way.id}", tags, geom)
        elif not complete and way.is_closed() and _is_area_feature(tags):
            # libosmium assembles no area from a ring with missing nodes (clipped extracts): keep the rest.
            self.salvaged += 1
            self.add("areas", f"w{way.id}", tags, _salvaged_ring(way))


def osm_header_box(path: Path) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) from the file's header, None when it declares none; OSMError if unreadable."""
    _check_path(Path(path))
    try:
        box = osmium.io.Reader(str(path), osmium.osm.osm_entity_bits.NOTHING).header().box()
    except (RuntimeError, ValueError, OSError) as exc:
        raise OSMError(f"{path}: cannot read as OpenStreetMap data ({exc}); re-download the extract "
                       "or check it with `osmium fileinfo`") from exc
    if not box.valid():
        return None
    return (box.bottom_left.lon, box.bottom_left.lat, box.top_right.lon, box.top_right.lat)


def _frame(path: Path, bounds_wgs84: tuple[float, float, float, float] | None) -> shapely.Geometry | None:
    if bounds_wgs84 is not None:
        return shapely.box(*bounds_wgs84)
    box = osm_header_box(path)
    return None if box is None else shapely.box(*box)


def _frame_of(frame: shapely.Geometry | None, rows: Iterable[list]) -> shapely.Geometry:
    if frame is not None:
        return frame
    geoms = [g for layer in rows for _, _, g in layer]
    return shapely.box(*shapely.total_bounds(geoms)) if geoms else shapely.box(0, 0, 0, 0)


def _frame_gdf(rows: list[tuple[str, dict[str, str], shapely.Geometry]]) -> gpd.GeoDataFrame:
    ids, tags, geoms = (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [])
    return gpd.GeoDataFrame({"osm_id": ids, "tags": tags}, geometry=geoms, crs=4326).to_crs(3857)


def _check_path(path: Path) -> None:
    if not path.is_file():
        raise OSMError(f"{path}: no such OSM file; pass --osm with a .osm.pbf, .osm or .osm.bz2 extract")
    if not path.name.lower().endswith(EXTENSIONS):
        raise OSMError(f"{path}: not an OSM file name; use a .osm.pbf, .osm or .osm.bz2 extract")
    if path.stat().st_size == 0:
        raise OSMError(f"{path}: the OSM file is empty; re-download or re-extract it (osmium extract)")


def load_osm(path: str | Path, bounds_wgs84: tuple[float, float, float, float] | None = None) -> OSMData:
    """Read an OSM extract, keeping what intersects ``bounds_wgs84`` (lon/lat), in EPSG:3857.

    Raises OSMError for a missing, corrupt or empty file.
    """
    path = Path(path)
    _check_path(path)
    try:
        frame = _frame(path, bounds_wgs84)
        if frame is not None:
            shapely.prepare(frame)
        collector = _Collector(frame, kept_keys())
        processor = (osmium.FileProcessor(str(path)).with_locations().with_areas()
                     .with_filter(osmium.filter.EmptyTagFilter()))
        for obj in processor:
            collector.take(obj)
    except (RuntimeError, ValueError, OSError) as exc:
        raise OSMError(f"{path}: cannot read as OpenStreetMap data ({exc}); re-download the extract "
                       "or check it with `osmium fileinfo`") from exc
    if collector.objects == 0:
        raise OSMError(f"{path}: holds no tagged OSM objects; use an extract of the area you map")
    if collector.salvaged:
        logger.info("%s: %d closed ways cut by the extract boundary kept as partial areas", path,
                    collector.salvaged)
    rows = collector.rows
    frame = _frame_of(frame, rows.values())
    areas = _frame_gdf(rows["areas"])
    bounds_m = tuple(gpd.GeoSeries([frame], crs=4326).to_crs(3857).total_bounds.tolist())
    sea = sea_polygons(_frame_gdf(rows["coast"]).geometry, bounds_m)
    if len(sea):
        sea_rows = gpd.GeoDataFrame({"osm_id": ["coastline"] * len(sea), "tags": [{"natural": "sea"}] * len(sea)},
                                    geometry=list(sea), crs=3857)
        areas = gpd.GeoDataFrame(pd.concat([sea_rows, areas], ignore_index=True), crs=3857)
    data = OSMData(path, areas, _frame_gdf(rows["lines"]), _frame_gdf(rows["points"]), bounds_m)
    if not (len(data.areas) or len(data.lines) or len(data.points)):
        logger.warning("%s: no OSM features inside %s; the map will be blank", path, bounds_wgs84)
    return data


@functools.lru_cache(maxsize=4)
def _cached(path: Path, stamp: tuple[int, int], bounds: tuple[float, float, float, float] | None) -> OSMData:
    return load_osm(path, bounds)


def cached_osm(path: str | Path, bounds_wgs84: tuple[float, float, float, float] | None = None) -> OSMData:
    """``load_osm`` once per process and file version (workers share nothing but the path)."""
    path = Path(path)
    _check_path(path)
    st = path.stat()
    return _cached(path.resolve(), (st.st_mtime_ns, st.st_size), bounds_wgs84 and tuple(bounds_wgs84))
