"""sociomap.maps.osm_features: socio-function polygons from OSM (reference labels, ``--reasoner osm``).

The taxonomy table decides which OSM areas belong to which socio-class, so the OSM baseline and
``--classes`` never disagree. Each area's matching classes are computed once, when the OSM index is
built (its ``classes`` column); per tile, one index query serves every query of the batch, and each
query is a set lookup. Only areas count: a POI node has no footprint to compare a mask with.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import mercantile
import numpy as np
import shapely
from rasterio.features import rasterize

from sociomap.maps.osm_data import OSMData, load_osm
from sociomap.maps.osm_index import Features, OSMIndex, prepare_osm_index
from sociomap.taxonomy import Query, load_taxonomy
from sociomap.tiling.grid import tile_bounds_m, tile_transform

COLUMNS = ["query", "function", "socio_class", "name", "osm_id", "geometry"]


def _names(tags: Mapping[str, str]) -> set[str]:
    return {v.casefold().strip() for k, v in tags.items() if k == "name" or k.startswith("name:")}


def _first_class(classes: list[str]) -> str | None:
    return classes[0] if classes else None


def match(query: Query, classes: list[str], tags: Mapping[str, str]) -> tuple[bool, str | None]:
    """(matches, socio-class name) of one area (its matching classes, in table order) for one query."""
    if query.kind == "name":
        return query.text.casefold().strip() in _names(tags), _first_class(classes)
    found = next((c for c in classes if c in query.classes), None)
    return found is not None, found


def _function_of(query: Query, classes: list[str]) -> str | None:
    if query.function:
        return query.function
    taxonomy = {c.name: c.function for c in load_taxonomy().classes}
    return taxonomy.get(classes[0]) if classes else None


def feature_rows(features: Features, queries: Sequence[Query]) -> Iterator[tuple[int, list]]:
    """(query index, row of COLUMNS) for every (area, query) match; each area's classes split once."""
    for osm_id, tags, joined, geom in zip(features.osm_id, features.tags, features.classes, features.geometry,
                                          strict=True):
        if osm_id == "coastline":
            continue
        classes = joined.split(";") if joined else []
        for j, query in enumerate(queries):
            hit, socio_class = match(query, classes, tags)
            if hit:
                yield j, [query.text, _function_of(query, classes), socio_class, tags.get("name"), osm_id, geom]


def _frame(rows: list[list]) -> gpd.GeoDataFrame:
    table = {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}
    return gpd.GeoDataFrame(table, geometry="geometry", crs=3857)


def _features_of(data: OSMData) -> Features:
    areas = data.areas
    classes = list(areas["classes"]) if "classes" in areas else [""] * len(areas)
    return Features(list(areas.osm_id), list(areas.tags), classes, areas.geometry.values)


def socio_features(osm: OSMData | str | Path, queries: Sequence[Query]) -> gpd.GeoDataFrame:
    """OSM areas answering each query, one row per (query, area), polygons in EPSG:3857.

    Columns: query (its text), function (socio-function or None), socio_class (or None for a
    place name of no known class), name (OSM ``name``), osm_id (w123 / r456), geometry.
    """
    data = osm if isinstance(osm, OSMData) else load_osm(osm)
    return _frame([row for _, row in feature_rows(_features_of(data), queries)])


def iter_socio_features(index: str | Path, queries: Sequence[Query], chunk: int = 20_000
                        ) -> Iterator[gpd.GeoDataFrame]:
    """``socio_features`` streamed from an index file, one GeoDataFrame per chunk of areas (bounded memory)."""
    where = _where(queries)
    for features in OSMIndex(Path(index)).chunks("areas", where, chunk):
        rows = [row for _, row in feature_rows(features, queries)]
        if rows:
            yield _frame(rows)


def _where(queries: Sequence[Query]) -> str:
    """SQL that skips areas no query can match (no class and no name) before their tags are parsed."""
    if any(q.kind == "name" for q in queries):
        return ""
    return "f.classes != ''"


@dataclass(frozen=True)
class OSMSegmenter:
    """Per-tile masks straight from OSM areas: the weights-free ``--reasoner osm``.

    Pickles as paths; ``index`` is the driver-built OSM index (None: built or reused on first use).
    """

    path: Path
    bounds_wgs84: tuple[float, float, float, float] | None = None
    index: Path | None = None

    def _index(self) -> OSMIndex:
        if self.index is not None:
            return _reader(Path(self.index))
        return _reader(_own_index(Path(self.path).resolve(), self.bounds_wgs84))

    def masks(self, tile: mercantile.Tile, size: int, queries: Sequence[Query]) -> list[np.ndarray]:
        """One (size, size) bool mask per query, on the tile's exact pixel grid (tiling.grid).

        One index query and one pass over the tile's areas serve every query.
        """
        features = self._index().query("areas", tile_bounds_m(tile, size), _where(queries))
        hits: list[list] = [[] for _ in queries]
        for j, row in feature_rows(features, queries):
            hits[j].append(row[-1])
        transform = tile_transform(tile, size)
        box = shapely.box(*tile_bounds_m(tile, size))
        out = []
        for geoms in hits:
            geoms = [g for g in geoms if g.intersects(box)]
            if geoms:
                out.append(rasterize(geoms, out_shape=(size, size), transform=transform,
                                     fill=0, default_value=1, dtype="uint8").astype(bool))
            else:
                out.append(np.zeros((size, size), bool))
        return out


@functools.lru_cache(maxsize=8)
def _own_index(path: Path, bounds: tuple | None) -> Path:
    return prepare_osm_index(path, bounds)


@functools.lru_cache(maxsize=8)
def _reader(path: Path) -> OSMIndex:
    return OSMIndex(path)
