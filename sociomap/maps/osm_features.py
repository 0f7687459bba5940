"""sociomap.maps.osm_features: socio-function polygons from OSM (reference labels, ``--reasoner osm``).

The taxonomy table decides which OSM areas belong to which socio-class, so the OSM baseline and
``--classes`` never disagree. Only areas count: a POI node has no footprint to compare a mask with.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import mercantile
import numpy as np
import shapely
from rasterio.features import rasterize

from sociomap.maps.osm_data import OSMData, cached_osm, load_osm
from sociomap.taxonomy import Query, SocioClass, load_taxonomy
from sociomap.tiling.grid import tile_bounds_m, tile_transform

COLUMNS = ["query", "function", "socio_class", "name", "osm_id", "geometry"]


def _names(tags: Mapping[str, str]) -> set[str]:
    return {v.casefold().strip() for k, v in tags.items() if k == "name" or k.startswith("name:")}


def _classes_of(query: Query) -> tuple[SocioClass, ...]:
    taxonomy = load_taxonomy()
    return tuple(c for c in taxonomy.classes if c.name in query.classes)


def _match(query: Query, classes: tuple[SocioClass, ...], tags: Mapping[str, str]) -> tuple[bool, str | None]:
    """(matches, socio-class name) of one area's tags for one query."""
    if query.kind == "name":
        if query.text.casefold().strip() not in _names(tags):
            return False, None
        found = load_taxonomy().classify(tags)
        return True, found.name if found else None
    found = next((c for c in classes if c.matches(tags)), None)
    return found is not None, found.name if found else None


def socio_features(osm: OSMData | str | Path, queries: Sequence[Query]) -> gpd.GeoDataFrame:
    """OSM areas answering each query, one row per (query, area), polygons in EPSG:3857.

    Columns: query (its text), function (socio-function or None), socio_class (or None for a
    place name of no known class), name (OSM ``name``), osm_id (w123 / r456), geometry.
    """
    data = osm if isinstance(osm, OSMData) else load_osm(osm)
    areas = data.areas[data.areas.osm_id != "coastline"]
    taxonomy = load_taxonomy()
    rows = []
    for query in queries:
        classes = _classes_of(query)
        for osm_id, tags, geom in zip(areas.osm_id, areas.tags, areas.geometry, strict=True):
            hit, socio_class = _match(query, classes, tags)
            if hit:
                found = taxonomy.classify(tags)
                function = query.function or (found.function if found else None)
                rows.append([query.text, function, socio_class, tags.get("name"), osm_id, geom])
    table = {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}
    return gpd.GeoDataFrame(table, geometry="geometry", crs=3857)


@functools.lru_cache(maxsize=8)
def _query_features(path: Path, bounds: tuple | None, query: Query) -> gpd.GeoDataFrame:
    return socio_features(cached_osm(path, bounds), [query])


@dataclass(frozen=True)
class OSMSegmenter:
    """Per-tile masks straight from OSM areas: the weights-free ``--reasoner osm``.

    Pickles as its path; each worker loads the file once.
    """

    path: Path
    bounds_wgs84: tuple[float, float, float, float] | None = None

    def masks(self, tile: mercantile.Tile, size: int, queries: Sequence[Query]) -> list[np.ndarray]:
        """One (size, size) bool mask per query, on the tile's exact pixel grid (tiling.grid)."""
        transform = tile_transform(tile, size)
        box = tile_bounds_m(tile, size)
        out = []
        for query in queries:
            features = _query_features(Path(self.path).resolve(), self.bounds_wgs84, query)
            hits = features.geometry.iloc[np.sort(features.sindex.query(shapely.box(*box)))]
            if len(hits):
                out.append(rasterize(list(hits), out_shape=(size, size), transform=transform,
                                     fill=0, default_value=1, dtype="uint8").astype(bool))
            else:
                out.append(np.zeros((size, size), bool))
        return out
