"""sociomap.maps.osm_index: an OSM extract's features in a frame, stored once in a GeoPackage.

``prepare_osm_index`` reads the OSM file once (``osm_read``: tag and frame filters before geometry)
and writes what it keeps, in EPSG:3857, to a GeoPackage with three layers and their R-tree spatial
indexes: ``areas`` (polygons, plus sea polygons built from the coastlines), ``lines`` (roads, rails,
rivers) and ``points`` (POI nodes, plus one point per named/tagged area at ``point_on_surface`` for
the ``socioseg`` map style). Every area also carries ``classes``: the socio-classes of the taxonomy
its tags match, so the OSM baseline classifies each feature once, not once per tile and query.

The file is keyed by the OSM file's content id, the frame and the code and taxonomy that shaped it:
the driver builds it once per run (reused while unchanged), every worker reads it. ``OSMIndex`` reads
it per tile through SQLite and the GeoPackage R-tree directly (about 1 ms per layer and tile, where
opening the layer through GDAL costs about 8 ms), with one connection per thread.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from sociomap.maps.coastline import sea_polygons
from sociomap.maps.osm_read import (
    AREA_KEYS, LINE_KEYS, POI_KEYS, STYLE_KEYS, Progress, Row, check_path, header_bounds, read_osm,
)
from sociomap.taxonomy import load_taxonomy, taxonomy_fingerprint

logger = logging.getLogger(__name__)

LAYERS = ("areas", "lines", "points")
#: Rows written per append (bounds the memory of a country-sized build).
CHUNK = 20_000
#: Margin kept around the requested bounds, metres: beyond the widest render buffer and label context.
MARGIN_M = 500.0
#: Where indexes go when the caller names no folder (OSMMap / load_osm used on their own).
DEFAULT_DIR = Path(tempfile.gettempdir()) / "sociomap-osm-index"
_METRES_PER_DEGREE = 111_320.0


def kept_keys() -> frozenset[str]:
    """Tag keys kept on every object: the styles' keys and the taxonomy's rule keys (+ names)."""
    rule_keys = {k for c in load_taxonomy().classes for rule in c.osm for k, _ in rule.tags}
    return AREA_KEYS | LINE_KEYS | POI_KEYS | STYLE_KEYS | frozenset(rule_keys)


def padded(bounds: tuple[float, float, float, float], margin_m: float = MARGIN_M) -> tuple[float, ...]:
    """``bounds`` (degrees) grown by ``margin_m`` metres on every side, rounded outwards to 1e-6 degree."""
    import math

    west, south, east, north = bounds
    dy = margin_m / _METRES_PER_DEGREE
    dx = dy / max(math.cos(math.radians(max(abs(south), abs(north)))), 0.01)
    return (math.floor((west - dx) * 1e6) / 1e6, math.floor((south - dy) * 1e6) / 1e6,
            math.ceil((east + dx) * 1e6) / 1e6, math.ceil((north + dy) * 1e6) / 1e6)


def osm_index_key(osm: Path, bounds_wgs84: tuple[float, float, float, float] | None) -> str:
    """What the index depends on: file content, padded frame, kept keys, code and taxonomy (no read)."""
    from sociomap.fingerprint import code_fingerprint, content_id

    frame = padded(bounds_wgs84) if bounds_wgs84 is not None else None
    parts = {"osm": content_id(Path(osm)), "frame": frame, "keys": sorted(kept_keys()),
             "code": code_fingerprint("sociomap.maps.osm_read", "sociomap.maps.osm_index", "sociomap.maps.coastline"),
             "taxonomy": taxonomy_fingerprint()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def prepare_osm_index(osm: str | Path, bounds_wgs84: tuple[float, float, float, float] | None,
                      directory: str | Path | None = None, progress: Progress | None = None) -> Path:
    """Build (or reuse) the index of ``osm`` within ``bounds_wgs84`` (+ MARGIN_M) under ``directory``.

    Concurrent callers wait for one build (a file lock); an existing index with the same key is reused.
    Raises OSMError for a missing, corrupt or empty OSM file.
    """
    osm = Path(osm)
    check_path(osm)
    folder = Path(directory) if directory is not None else DEFAULT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    key = osm_index_key(osm, bounds_wgs84)
    target = folder / f"osm-{key[:20]}.gpkg"
    with open(folder / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if target.exists():
            return target
        tmp = folder / f".tmp-{os.getpid()}-{target.name}"
        try:
            _build(osm, padded(bounds_wgs84) if bounds_wgs84 is not None else None, tmp, progress)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


class _Writer:
    """Appends rows to the GeoPackage layers in chunks (all geometries reprojected to EPSG:3857)."""

    def __init__(self, path: Path):
        self.path, self.pending = path, {layer: [] for layer in LAYERS}
        self.written = dict.fromkeys(LAYERS, 0)
        self.classes = {c.name: c for c in load_taxonomy().classes}

    def add(self, layer: str, osm_id: str, tags: dict[str, str], geometry: shapely.Geometry) -> None:
        self.pending[layer].append((osm_id, tags, geometry))
        if len(self.pending[layer]) >= CHUNK:
            self.flush(layer)

    def flush(self, layer: str) -> None:
        import geopandas as gpd
        import pyogrio

        rows = self.pending[layer]
        if not rows and self.written[layer]:
            return
        ids, tags, geoms = (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [])
        columns = {"osm_id": ids, "tags": [json.dumps(t, ensure_ascii=False, sort_keys=True) for t in tags]}
        if layer == "areas":
            columns["classes"] = [";".join(c.name for c in self.classes.values() if c.matches(t)) for t in tags]
        frame = gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(geoms, crs=4326), crs=4326).to_crs(3857)
        pyogrio.write_dataframe(frame, self.path, layer=layer, driver="GPKG", append=self.written[layer] > 0,
                                geometry_type="Unknown", promote_to_multi=False)
        self.written[layer] += len(rows)
        self.pending[layer] = []

    def close(self) -> None:
        for layer in LAYERS:
            self.flush(layer)


def _area_point(geometry: shapely.Geometry) -> shapely.Geometry:
    return shapely.point_on_surface(geometry)


def _build(osm: Path, frame: tuple[float, ...] | None, out: Path, progress: Progress | None) -> None:
    writer = _Writer(out)
    coast: list[shapely.Geometry] = []
    extent = [np.inf, np.inf, -np.inf, -np.inf]
    for row in read_osm(osm, frame, kept_keys(), progress):
        if row.layer == "coast":
            coast.append(row.geometry)
            continue
        writer.add(row.layer, row.osm_id, row.tags, row.geometry)
        if row.layer == "areas" and any(k in POI_KEYS for k in row.tags):
            writer.add("points", row.osm_id, row.tags, _area_point(row.geometry))
        if frame is None:
            x0, y0, x1, y1 = row.geometry.bounds
            extent = [min(extent[0], x0), min(extent[1], y0), max(extent[2], x1), max(extent[3], y1)]
    bounds = frame or header_bounds(osm) or (tuple(extent) if np.isfinite(extent[0]) else None)
    if coast and bounds is not None:
        import geopandas as gpd

        bounds_m = tuple(gpd.GeoSeries([shapely.box(*bounds)], crs=4326).to_crs(3857).total_bounds)
        lines_m = gpd.GeoSeries(coast, crs=4326).to_crs(3857).geometry.values
        sea = gpd.GeoSeries(sea_polygons(lines_m, bounds_m), crs=3857).to_crs(4326)
        for polygon in sea:
            writer.add("areas", "coastline", {"natural": "sea"}, polygon)
    writer.close()
    if progress:
        progress("index written", sum(writer.written.values()), sum(writer.written.values()))
    if not any(writer.written.values()):
        logger.warning("%s: no OSM features inside %s; the map will be blank", osm, frame)


@dataclass(frozen=True)
class Features:
    """Rows of one layer: osm ids, tag dicts, socio-class names (areas; else ""), EPSG:3857 geometries."""

    osm_id: list[str]
    tags: list[dict[str, str]]
    classes: list[str]
    geometry: np.ndarray

    def __len__(self) -> int:
        return len(self.osm_id)


def _wkb(blob: bytes) -> bytes:
    """The WKB inside a GeoPackage geometry blob: 8-byte header (magic, version, flags, srs id) plus an
    envelope whose size the flags give (GeoPackage 1.3 spec, 2.1.3)."""
    envelope = (0, 32, 48, 48, 64)[(blob[3] >> 1) & 0b111]
    return blob[8 + envelope:]


@dataclass
class OSMIndex:
    """Read side of an index file; picklable (a path), one SQLite connection per thread."""

    path: Path
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path, self._local = state["path"], threading.local()

    def _db(self):  # noqa: ANN202 - sqlite3.Connection
        import sqlite3

        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True)
            self._local.db = db
        return db

    def _rows(self, layer: str, sql: str, args: tuple) -> Features:
        classes = "f.classes" if layer == "areas" else "''"
        rows = self._db().execute(f'SELECT f.osm_id, f.tags, {classes}, f.geom FROM "{layer}" f {sql}', args).fetchall()
        if not rows:
            return Features([], [], [], np.empty(0, object))
        geoms = shapely.from_wkb([_wkb(r[3]) for r in rows])
        return Features([r[0] for r in rows], [json.loads(r[1]) for r in rows], [r[2] for r in rows], geoms)

    def query(self, layer: str, bounds_m: tuple[float, float, float, float], where: str = "") -> Features:
        """Features of ``layer`` whose box meets ``bounds_m`` (EPSG:3857), in file order (= paint order)."""
        left, bottom, right, top = bounds_m
        extra = f" AND ({where})" if where else ""
        sql = (f'JOIN "rtree_{layer}_geom" r ON f.fid = r.id WHERE r.minx <= ? AND r.maxx >= ? '
               f"AND r.miny <= ? AND r.maxy >= ?{extra} ORDER BY f.fid")
        return self._rows(layer, sql, (right, left, top, bottom))

    def chunks(self, layer: str, where: str = "", size: int = CHUNK) -> Iterator[Features]:
        """The whole layer in chunks of ``size`` rows (streamed: one chunk in memory at a time)."""
        last = 0
        extra = f" AND ({where})" if where else ""
        while True:
            fids = self._db().execute(f'SELECT fid FROM "{layer}" f WHERE fid > ?{extra} ORDER BY fid LIMIT ?',
                                      (last, size)).fetchall()
            if not fids:
                return
            first, last = fids[0][0], fids[-1][0]
            yield self._rows(layer, f"WHERE f.fid BETWEEN ? AND ?{extra} ORDER BY f.fid", (first, last))

    def bounds_m(self) -> tuple[float, float, float, float]:
        """Extent of all layers (EPSG:3857), from the GeoPackage contents table."""
        rows = self._db().execute("SELECT min(min_x), min(min_y), max(max_x), max(max_y) FROM gpkg_contents "
                                  "WHERE min_x IS NOT NULL").fetchone()
        return tuple(rows) if rows and rows[0] is not None else (0.0, 0.0, 0.0, 0.0)
