"""sociomap.maps.raster: a georeferenced map raster (any CRS) read through the satellite tiling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mercantile
import numpy as np

from sociomap.errors import MapSourceError, MosaicError
from sociomap.tiling.mosaic import Mosaic

#: Where the map raster has no data the tile is painted this light grey (an empty map, not black).
BLANK_RGB = (242, 239, 233)


@dataclass
class RasterMap:
    """A map raster such as an OSM-Carto GeoTIFF export; reuses the mosaic reader so pixels align."""

    path: Path

    def __post_init__(self) -> None:
        try:
            self._mosaic = Mosaic(Path(self.path))
        except MosaicError as exc:
            raise MapSourceError(str(exc).replace("satellite", "map")) from exc

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray:
        """The map tile as (size, size, 3) uint8; areas without map data are blank."""
        img = self._mosaic.read(tile, size)
        if img is None:
            return np.full((size, size, 3), BLANK_RGB, np.uint8)
        rgb = img.rgb.copy()
        rgb[~img.valid] = BLANK_RGB
        return rgb

    def fingerprint(self) -> str:
        """The map raster's tiles are the mosaic reader's tiles of this file, painted blank where empty."""
        from sociomap.fingerprint import code_fingerprint

        return f"raster:{self._mosaic.fingerprint()}:{code_fingerprint('sociomap.maps.raster')}"

    def describe(self) -> dict[str, str]:
        """Kind and path, for the run manifest."""
        return {"kind": "raster", "path": str(self.path)}
