"""sociomap.maps.osm_read: stream the features of an OpenStreetMap file that lie in a frame.

Objects are filtered by tag keys in libosmium (C++ ``KeyFilter``: untagged and uninteresting objects
never reach Python) and by the frame on their node locations BEFORE any geometry is built. Files above
``CUT_ABOVE_BYTES`` are first cut to the frame: one Python pass over the nodes finds those inside, then
pyosmium's ``IdTracker`` adds, in C++ passes, every way and multipolygon touching them and all their
nodes ("complete ways and multipolygons", like ``osmium extract --strategy smart``) and writes that cut
to a temporary .osm.pbf, which is read like a small file. Cost of the cut: one Python visit per node of
the file (about 3-4 us) plus C++ passes; memory: the tracker's node-id bitmap (max node id / 8 bytes,
independent of the file size) plus what lies in the frame. Small files skip the cut (its bitmap would
cost more memory than reading them whole).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import osmium
import shapely
import shapely.wkb
from osmium.geom import WKBFactory

from sociomap.errors import OSMError

logger = logging.getLogger(__name__)

EXTENSIONS = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz", ".osm.xml")
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
#: Further keys kept because the styles read them.
STYLE_KEYS = frozenset({"area", "bridge", "tunnel", "layer", "service", "sport", "religion", "ref", "station"})
#: Files larger than this are cut to the frame before reading (see the module docstring).
CUT_ABOVE_BYTES = 64 << 20
_LINEAR_ONLY = {"highway", "barrier", "railway", "waterway"}
#: Values of otherwise linear keys that are areas (railway=station, waterway=riverbank, ...).
_AREA_VALUES = {"station", "platform", "riverbank", "dock", "basin"}
_E7 = 10_000_000

#: ``progress(stage, done, total)``: ``total`` is None where it is not known in advance.
Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class Row:
    """One kept feature: layer ("areas", "lines", "points", "coast"), id (n1 / w2 / r3), slim tags,
    geometry in EPSG:4326."""

    layer: str
    osm_id: str
    tags: dict[str, str]
    geometry: shapely.Geometry


@dataclass(frozen=True)
class Frame:
    """A lon/lat box in OSM's fixed-point units (1e-7 degree), the unit node locations come in."""

    west: int
    south: int
    east: int
    north: int

    @classmethod
    def of(cls, bounds: tuple[float, float, float, float]) -> Frame:
        """From (west, south, east, north) degrees."""
        west, south, east, north = bounds
        return cls(int(west * _E7), int(south * _E7), int(east * _E7) + 1, int(north * _E7) + 1)

    def box(self) -> tuple[float, float, float, float]:
        """Back to degrees."""
        return self.west / _E7, self.south / _E7, self.east / _E7, self.north / _E7

    def meets(self, nodes: object) -> bool:
        """True when a node lies inside or the nodes' bounding box crosses the frame (a long segment
        with no vertex inside); nodes without a location (clipped extracts) are skipped."""
        x0 = y0 = 1 << 62
        x1 = y1 = -(1 << 62)
        for n in nodes:
            loc = n.location
            if not loc.valid():
                continue
            x, y = loc.x, loc.y
            if self.west <= x <= self.east and self.south <= y <= self.north:
                return True
            x0, x1, y0, y1 = min(x0, x), max(x1, x), min(y0, y), max(y1, y)
        return x0 <= self.east and x1 >= self.west and y0 <= self.north and y1 >= self.south


def check_path(path: Path) -> None:
    """Raise OSMError for a missing, misnamed or empty OSM file."""
    if not path.is_file():
        raise OSMError(f"{path}: no such OSM file; pass --osm with a .osm.pbf, .osm or .osm.bz2 extract")
    if not path.name.lower().endswith(EXTENSIONS):
        raise OSMError(f"{path}: not an OSM file name; use a .osm.pbf, .osm or .osm.bz2 extract")
    if path.stat().st_size == 0:
        raise OSMError(f"{path}: the OSM file is empty; re-download or re-extract it (osmium extract)")


def header_bounds(path: Path) -> tuple[float, float, float, float] | None:
    """The bounding box an extract declares in its header, or None."""
    box = osmium.io.Reader(str(path), osmium.osm.osm_entity_bits.NOTHING).header().box()
    if not box.valid():
        return None
    return box.bottom_left.lon, box.bottom_left.lat, box.top_right.lon, box.top_right.lat


def _slim(tags: osmium.osm.TagList, keys: frozenset[str]) -> dict[str, str]:
    return {t.k: t.v for t in tags if t.k in keys or t.k == "name" or t.k.startswith("name:")}


def is_area_feature(tags: dict[str, str]) -> bool:
    """Whether a closed way with these tags is an area (not a closed line such as a roundabout)."""
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


class _Reader:
    """Turns pyosmium objects into Rows: frame test on node locations first, geometry only after."""

    def __init__(self, frame: Frame | None, keys: frozenset[str]):
        self.frame, self.keys, self.wkb = frame, keys, WKBFactory()
        self.objects = self.salvaged = 0

    def _inside(self, nodes: object) -> bool:
        return self.frame is None or self.frame.meets(nodes)

    def rows(self, obj: osmium.osm.OSMObject) -> Iterator[Row]:
        self.objects += 1
        if obj.is_area():
            tags = _slim(obj.tags, self.keys)
            if is_area_feature(tags) and any(self._inside(ring) for ring in obj.outer_rings()):
                osm_id = f"{'w' if obj.from_way() else 'r'}{obj.orig_id()}"
                yield Row("areas", osm_id, tags, shapely.wkb.loads(self.wkb.create_multipolygon(obj), hex=True))
        elif obj.is_way():
            yield from self._way(obj)
        elif obj.is_node():
            tags = _slim(obj.tags, self.keys)
            loc = obj.location
            if any(k in POI_KEYS for k in tags) and loc.valid() and self._inside([obj]):
                yield Row("points", f"n{obj.id}", tags, shapely.Point(loc.lon, loc.lat))

    def _way(self, way: osmium.osm.Way) -> Iterator[Row]:
        tags = _slim(way.tags, self.keys)
        coast, line = tags.get("natural") == "coastline", _is_line_feature(tags)
        partial_area = not line and way.is_closed() and is_area_feature(tags)
        if not (coast or line or partial_area) or not self._inside(way.nodes):
            return
        complete = all(n.location.valid() for n in way.nodes)
        if coast:
            # Joined across missing nodes: the sea builder needs the coastline's run, not its pieces.
            coords = [(n.lon, n.lat) for n in way.nodes if n.location.valid()]
            if len(coords) >= 2:
                yield Row("coast", f"w{way.id}", tags, shapely.LineString(coords))
        elif line:
            geom = shapely.wkb.loads(self.wkb.create_linestring(way), hex=True) if complete else _line_runs(way)
            if geom is not None:
                yield Row("lines", f"w{way.id}", tags, geom)
        elif not complete:
            # libosmium assembles no area from a ring with missing nodes (clipped extracts): keep the rest.
            geom = _salvaged_ring(way)
            if geom is not None:
                self.salvaged += 1
                yield Row("areas", f"w{way.id}", tags, geom)


def _cut(path: Path, frame: Frame, folder: Path, progress: Progress | None) -> Path:
    """Write the objects touching ``frame`` (complete ways and multipolygons) to ``folder/cut.osm.pbf``."""
    tracker = osmium.IdTracker()
    nodes = inside = 0
    with osmium.io.Reader(str(path), osmium.osm.osm_entity_bits.NODE) as reader:
        for node in osmium.OsmFileIterator(reader):
            nodes += 1
            loc = node.location
            if frame.west <= loc.x <= frame.east and frame.south <= loc.y <= frame.north:
                tracker.add_node(node.id)
                inside += 1
            if progress and nodes % 1_000_000 == 0:
                progress("cutting: nodes", nodes, None)
    logger.info("%s: %d of %d nodes inside the frame", path, inside, nodes)
    tracker.complete_forward_references(str(path), relation_depth=0)  # C++: ways and relations touching
    if progress:
        progress("cutting: ways and multipolygons", nodes, None)
    relations = osmium.FileProcessor(str(path), osmium.osm.RELATION).with_filter(tracker.id_filter())
    for rel in relations:  # only tracked relations reach Python: keep the multipolygons among them
        if rel.tags.get("type") != "multipolygon":  # routes, admin boundaries: not drawn, huge
            tracker.relation_ids().unset(rel.id)
    tracker.complete_backward_references(str(path), relation_depth=1)  # C++: member ways (depth >= 1), nodes
    out = folder / "cut.osm.pbf"
    writer = osmium.SimpleWriter(str(out), overwrite=True)
    try:
        osmium.apply(str(path), tracker.id_filter(), writer)  # C++: copy the tracked objects
    finally:
        writer.close()
    return out


def read_osm(path: str | Path, bounds_wgs84: tuple[float, float, float, float] | None, keys: frozenset[str],
             progress: Progress | None = None, cut_above: int = CUT_ABOVE_BYTES) -> Iterator[Row]:
    """Rows of the features in ``path`` that touch ``bounds_wgs84`` (None: the whole file), keeping the tag
    keys ``keys`` plus every ``name``/``name:xx``. Raises OSMError for a missing, corrupt or empty file."""
    path = Path(path)
    check_path(path)
    frame = Frame.of(bounds_wgs84) if bounds_wgs84 is not None else None
    reader = _Reader(frame, keys)
    try:
        with tempfile.TemporaryDirectory(prefix="sociomap-osm-") as folder:
            source = path
            if frame is not None and path.stat().st_size > cut_above:
                source = _cut(path, frame, Path(folder), progress)
            processor = (osmium.FileProcessor(str(source)).with_locations()
                         .with_areas(osmium.filter.KeyFilter(*AREA_KEYS, "area"))
                         .with_filter(osmium.filter.KeyFilter(*keys)))
            for obj in processor:
                yield from reader.rows(obj)
                if progress and reader.objects % 100_000 == 0:
                    progress("reading features", reader.objects, None)
    except (RuntimeError, ValueError, OSError) as exc:
        raise OSMError(f"{path}: cannot read as OpenStreetMap data ({exc}); re-download the extract "
                       "or check it with `osmium fileinfo`") from exc
    if reader.objects == 0 and not _has_tagged_objects(path):
        raise OSMError(f"{path}: holds no tagged OSM objects; use an extract of the area you map")
    if reader.salvaged:
        logger.info("%s: %d closed ways cut by the extract boundary kept as partial areas", path, reader.salvaged)


def _has_tagged_objects(path: Path) -> bool:
    for _ in osmium.FileProcessor(str(path)).with_filter(osmium.filter.EmptyTagFilter()):
        return True
    return False
