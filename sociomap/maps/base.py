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


def open_map_source(path: str | Path, **options: object) -> MapSource:
    """Open a map source by what ``path`` is: a georeferenced raster in any CRS (.tif, .vrt, ...)."""
    from sociomap.maps.raster import RasterMap

    p = Path(path)
    if not p.exists():
        raise MapSourceError(f"{p}: no such map file or folder; pass --map with a map raster or tile archive")
    return RasterMap(p, **options)  # type: ignore[arg-type]
