"""sociomap.maps.raster: a georeferenced map raster (any CRS, local or remote) read through the satellite tiling."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import mercantile
import numpy as np

from sociomap.errors import MapSourceError, MosaicError
from sociomap.tiling.mosaic import Mosaic

#: Where the map raster has no data the tile is painted this light grey (an empty map, not black).
BLANK_RGB = (242, 239, 233)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass
class RasterMap:
    """A map raster such as an OSM-Carto GeoTIFF export; reuses the mosaic reader so pixels align.

    Args:
        path: the map raster, a local path or a URL (``https://``, ``s3://``, ``/vsi...``).
        bounds_wgs84: the mosaic's (west, south, east, north); a map that does not overlap it is refused
            (it would give flat blank map tiles for every satellite tile).
        resampling: kernel for warping the map onto the tile grid (see ``Mosaic``).
    """

    path: str | Path
    bounds_wgs84: tuple[float, float, float, float] | None = None
    resampling: str = "bilinear"

    def __post_init__(self) -> None:
        try:
            self._mosaic = Mosaic(self.path, resampling=self.resampling)
        except MosaicError as exc:
            raise MapSourceError(str(exc).replace("satellite", "map")) from exc
        self.path = self._mosaic.path
        if self.bounds_wgs84 is not None:
            mine = self._mosaic.geographic_bounds()
            if not _overlaps(mine, tuple(self.bounds_wgs84)):
                raise MapSourceError(
                    f"{self.path}: the map covers {_fmt(mine)} but the mosaic covers {_fmt(self.bounds_wgs84)}; "
                    "they do not overlap, so every map tile would be blank: pass the map of the mosaic's area")

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray:
        """The map tile as (size, size, 3) uint8; areas without map data are blank."""
        img = self._mosaic.read(tile, size)
        if img is None:
            return np.full((size, size, 3), BLANK_RGB, np.uint8)
        rgb = img.rgb.copy()
        rgb[~img.valid] = BLANK_RGB
        return rgb

    def describe(self) -> dict[str, str]:
        """Kind and path, for the run manifest."""
        return {"kind": "raster", "path": str(self.path)}

    def fingerprint(self) -> str:
        """The raster's content and read options (see ``Mosaic.fingerprint``) plus this module's code."""
        from sociomap.fingerprint import code_fingerprint

        parts = f"raster|{self._mosaic.fingerprint()}|{code_fingerprint('sociomap.maps.raster')}"
        return hashlib.sha256(parts.encode()).hexdigest()


def _fmt(bounds: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in bounds) + ")"
