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

    def fingerprint(self) -> str:
        """Digest of what determines the pixels (content, style, options, code), computed WITHOUT
        reading or rendering a tile: an unchanged fingerprint means unchanged map tiles."""
        ...


#: Options each kind of source understands; the others ignore them.
OSM_OPTIONS = ("language", "bounds_wgs84", "style", "index")
RASTER_OPTIONS = ("bounds_wgs84", "resampling")


def _pick(options: dict[str, object], names: tuple[str, ...]) -> dict[str, object]:
    return {k: v for k, v in options.items() if k in names and v is not None}


def open_map_source(path: str | Path, **options: object) -> MapSource:
    """Open a map source by what ``path`` is.

    A folder is an XYZ tile folder ``{z}/{x}/{y}.png``; ``.mbtiles`` / ``.pmtiles`` are raster tile
    archives; ``.osm.pbf`` / ``.osm`` / ``.osm.bz2`` are rendered with OSMMap (options ``language``,
    ``bounds_wgs84``, ``style``, ``index``); anything else, and any URL (``https://``, ``s3://``,
    ``/vsi...``), is a georeferenced map raster in any CRS (options ``bounds_wgs84``, ``resampling``).
    Options a kind of source does not understand are ignored; None means "default".
    """
    from sociomap.maps.archives import MBTilesMap, PMTilesMap, XYZFolderMap
    from sociomap.maps.osm_read import EXTENSIONS
    from sociomap.maps.raster import RasterMap
    from sociomap.tiling.paths import is_remote

    if is_remote(path):
        return RasterMap(str(path), **_pick(options, RASTER_OPTIONS))  # type: ignore[arg-type]
    p = Path(path)
    if not p.exists():
        raise MapSourceError(f"{p}: no such map file or folder; pass --map with a map raster or tile archive")
    name = p.name.lower()
    if name.endswith(EXTENSIONS):
        from sociomap.maps.osm_render import OSMMap

        return OSMMap(p, **_pick(options, OSM_OPTIONS))  # type: ignore[arg-type]
    if p.is_dir():
        return XYZFolderMap(p)
    if name.endswith(".mbtiles"):
        return MBTilesMap(p)
    if name.endswith(".pmtiles"):
        return PMTilesMap(p)
    return RasterMap(p, **_pick(options, RASTER_OPTIONS))  # type: ignore[arg-type]
