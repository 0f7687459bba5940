"""sociomap.maps.base: the MapSource contract and the dispatcher that opens one from a path.

A MapSource returns the map image of an XYZ tile at a given pixel size, pixel-aligned with the
satellite tile of the same (tile, size). Sources must pickle cheaply (paths and options only) because
Dask ships them to workers, where they open their files lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import mercantile
import numpy as np

from sociomap.errors import MapSourceError


@runtime_checkable
class MapSource(Protocol):
    """Anything that can draw or read the map for a tile."""

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray:
        """The map of ``tile`` as (size, size, 3) uint8 RGB, aligned with the satellite tile."""
        ...

    def describe(self) -> dict[str, str]:
        """What identifies this source in a run manifest (kind, path, style options)."""
        ...


#: Options only an OSM source understands; other sources ignore them.
OSM_OPTIONS = ("language", "bounds_wgs84")


def open_map_source(path: str | Path, **options: object) -> MapSource:
    """Open a map source by what ``path`` is.

    A folder is an XYZ tile folder ``{z}/{x}/{y}.png``; ``.mbtiles`` / ``.pmtiles`` are raster tile
    archives; ``.osm.pbf`` / ``.osm`` / ``.osm.bz2`` are rendered with OSMMap (options ``language``,
    ``bounds_wgs84``); anything else is a georeferenced map raster in any CRS (.tif, .vrt, ...).
    """
    from sociomap.maps.archives import MBTilesMap, PMTilesMap, XYZFolderMap
    from sociomap.maps.osm_data import EXTENSIONS
    from sociomap.maps.raster import RasterMap

    p = Path(path)
    if not p.exists():
        raise MapSourceError(f"{p}: no such map file or folder; pass --map with a map raster or tile archive")
    name = p.name.lower()
    if name.endswith(EXTENSIONS):
        from sociomap.maps.osm_render import OSMMap

        return OSMMap(p, **options)  # type: ignore[arg-type]
    others = {k: v for k, v in options.items() if k not in OSM_OPTIONS}
    if p.is_dir():
        return XYZFolderMap(p, **others)  # type: ignore[arg-type]
    if name.endswith(".mbtiles"):
        return MBTilesMap(p, **others)  # type: ignore[arg-type]
    if name.endswith(".pmtiles"):
        return PMTilesMap(p, **others)  # type: ignore[arg-type]
    return RasterMap(p, **others)  # type: ignore[arg-type]
