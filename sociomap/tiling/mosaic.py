"""sociomap.tiling.mosaic: stream a georeferenced satellite mosaic as Web-Mercator XYZ tiles.

Built on rio-tiler's ``Reader``: each tile is a warped window read (overviews used when present), so
a mosaic far larger than memory is never loaded whole.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mercantile
import numpy as np

from sociomap.errors import MosaicError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileImage:
    """One tile's pixels.

    Attributes:
        tile: the XYZ tile.
        rgb: (H, W, 3) uint8 RGB.
        valid: (H, W) bool, True where the source had data.
    """

    tile: mercantile.Tile
    rgb: np.ndarray
    valid: np.ndarray

    @property
    def coverage(self) -> float:
        """Fraction of pixels with data, 0..1."""
        return float(self.valid.mean())


def _open_error(path: Path, exc: Exception) -> MosaicError:
    return MosaicError(f"{path}: cannot open as a georeferenced raster ({exc}); pass a GeoTIFF/COG with a CRS")


@dataclass
class Mosaic:
    """A satellite mosaic opened for tiled reading; picklable (it re-opens lazily after pickling).

    Args:
        path: GeoTIFF / COG / any GDAL raster with a CRS.
        bands: 1-based band indexes to use as RGB (a single band is repeated as grey).
        rescale: (min, max) linear stretch to 0..255 for non-8-bit data.
    """

    path: Path
    bands: tuple[int, ...] | None = None
    rescale: tuple[float, float] | None = None
    _reader: object | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._validate()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader": None}

    def _validate(self) -> None:
        import rasterio

        if not self.path.exists():
            raise MosaicError(f"{self.path}: no such file; pass the path of your satellite GeoTIFF/COG")
        try:
            with rasterio.open(self.path) as ds:
                crs, count, dtype = ds.crs, ds.count, ds.dtypes[0]
        except rasterio.errors.RasterioError as exc:
            raise _open_error(self.path, exc) from exc
        if crs is None:
            raise MosaicError(f"{self.path}: has no CRS; georeference it first (e.g. gdal_translate -a_srs)")
        bands = self.bands or ((1, 2, 3) if count >= 3 else (1,))
        if max(bands) > count or min(bands) < 1:
            raise MosaicError(f"{self.path}: has {count} band(s); --bands {bands} is out of range")
        if dtype != "uint8" and self.rescale is None:
            raise MosaicError(
                f"{self.path}: pixels are {dtype}, not 8-bit; pass --rescale MIN,MAX to stretch them to 0..255"
            )
        self.bands = bands

    @property
    def reader(self):  # noqa: ANN201 - rio_tiler Reader, imported lazily
        """The open rio-tiler Reader (one per process)."""
        if self._reader is None:
            from rio_tiler.errors import NoOverviewWarning
            from rio_tiler.io import Reader

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NoOverviewWarning)
                try:
                    self._reader = Reader(str(self.path))
                except Exception as exc:  # rio-tiler wraps GDAL errors in several types
                    raise _open_error(self.path, exc) from exc
            if any(issubclass(w.category, NoOverviewWarning) for w in caught):
                logger.info("%s has no overviews: fine at full resolution; add them (gdaladdo) for low zooms",
                            self.path)
        return self._reader

    def close(self) -> None:
        """Close the underlying dataset."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def fingerprint(self) -> str:
        """What determines this mosaic's tiles, without reading any: file content, bands, stretch, tiling code
        and the GDAL stack's versions."""
        import hashlib
        import importlib.metadata

        import rasterio

        from sociomap.fingerprint import code_fingerprint, content_id

        parts = [content_id(self.path), self.bands, self.rescale, code_fingerprint("sociomap.tiling"),
                 rasterio.__gdal_version__, importlib.metadata.version("rio-tiler")]
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def geographic_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in EPSG:4326."""
        from rasterio.crs import CRS

        return tuple(self.reader.get_geographic_bounds(CRS.from_epsg(4326)))

    def tiles(self, zoom: int) -> Iterator[mercantile.Tile]:
        """Candidate XYZ tiles at ``zoom`` over the mosaic's footprint, streamed in row order."""
        west, south, east, north = self.geographic_bounds()
        yield from mercantile.tiles(west, south, east, north, zooms=zoom)

    def read(self, tile: mercantile.Tile, size: int) -> TileImage | None:
        """Read one tile at ``size`` px; None when the tile is outside the data or entirely nodata."""
        from rio_tiler.errors import TileOutsideBounds

        try:
            img = self.reader.tile(tile.x, tile.y, tile.z, tilesize=size, indexes=self.bands,
                                   resampling_method="bilinear")
        except TileOutsideBounds:
            return None
        valid = np.asarray(img.mask) > 0
        if not valid.any():
            return None
        data = np.asarray(img.data, dtype=np.float32 if self.rescale else img.data.dtype)
        if self.rescale:
            lo, hi = self.rescale
            data = np.clip((data - lo) * (255.0 / max(hi - lo, 1e-9)), 0, 255)
        rgb = np.moveaxis(data.astype(np.uint8), 0, -1)
        if rgb.shape[-1] == 1:
            rgb = np.repeat(rgb, 3, axis=-1)
        rgb = np.ascontiguousarray(rgb)
        rgb[~valid] = 0
        return TileImage(tile, rgb, valid)
