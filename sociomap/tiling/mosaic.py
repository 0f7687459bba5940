"""sociomap.tiling.mosaic: stream a georeferenced satellite mosaic as Web-Mercator XYZ tiles.

Built on rio-tiler's ``Reader``: each tile is a warped window read (overviews used when present), so
a mosaic far larger than memory is never loaded whole. Local files and remote COGs (``https://``,
``s3://``, ``/vsi...``; see ``tiling.paths``) are read the same way. The chosen resampling is used for
both the overview/window read and the reprojection to Web Mercator; paletted mosaics are expanded to
RGB through their colour table; GCP-only rasters are warped by their GCPs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mercantile
import numpy as np

from sociomap.errors import ConfigError, MosaicError
from sociomap.tiling.grid import tile_pixel_size_m
from sociomap.tiling.paths import REMOTE_ENV, as_source, gdal_path, http_url, is_remote

logger = logging.getLogger(__name__)

#: Resampling kernels offered by ``--resampling``; GDAL's window reads and its warper both know them.
RESAMPLING = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average")
#: GDAL block cache per process, MB (GDAL's default, 5 % of RAM, let RSS grow to 1.1 GB on a 648-Mpx
#: mosaic). Set before the first read in the process; a GDAL_CACHEMAX in the environment wins.
GDAL_CACHE_MB = 256
#: Warn when tiles are upsampled more than this (zoom far finer than the mosaic's resolution).
MAX_UPSAMPLING = 4.0
#: Semi-major axes (m) accepted as Earth's: every terrestrial ellipsoid and sphere lies in this range.
EARTH_AXIS_M = (6.35e6, 6.40e6)


def _bound_gdal_cache() -> None:
    if "GDAL_CACHEMAX" not in os.environ:
        from rasterio.env import set_gdal_config

        set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_MB)


_bound_gdal_cache()


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


@dataclass(frozen=True)
class _Info:
    """What the mosaic's header says (read once, no pixels)."""

    crs_wkt: str
    count: int
    dtype: str
    width: int
    height: int
    palette: tuple[tuple[int, int, int, int], ...] | None  # 256 RGBA entries, or None
    native_m: float  # Web-Mercator metres per pixel at the mosaic's native resolution
    structure: str  # digest of size, transform/GCPs, CRS, dtype, blocks (remote identity fallback)


def _open_error(path: object, exc: Exception) -> MosaicError:
    return MosaicError(f"{path}: cannot open as a georeferenced raster ({exc}); pass a GeoTIFF/COG with a CRS")


def check_earth_crs(crs: object, path: object) -> None:
    """Refuse CRSs of other bodies (Mars, the Moon...): Web-Mercator tiles of them mean nothing."""
    from pyproj import CRS

    ellipsoid = CRS.from_user_input(crs.to_wkt()).ellipsoid
    axis = ellipsoid.semi_major_metre if ellipsoid is not None else None
    if axis is None or not EARTH_AXIS_M[0] <= axis <= EARTH_AXIS_M[1]:
        raise MosaicError(f"{path}: its CRS is not on Earth (ellipsoid {getattr(ellipsoid, 'name', '?')}, "
                          f"semi-major axis {axis} m); sociomap tiles Earth imagery in Web Mercator only")


def _palette(ds: object) -> tuple[tuple[int, int, int, int], ...] | None:
    from rasterio.enums import ColorInterp

    if ds.count != 1 or ds.colorinterp[0] != ColorInterp.palette:
        return None
    table = ds.colormap(1)
    return tuple(tuple(table.get(i, (0, 0, 0, 0))) for i in range(256))


def _native_m(ds: object, crs: object, transform: object) -> float:
    from rasterio.warp import calculate_default_transform

    dst, _, _ = calculate_default_transform(crs, "EPSG:3857", ds.width, ds.height,
                                            *_bounds_of(ds, transform))
    return abs(dst.a)


def _bounds_of(ds: object, transform: object) -> tuple[float, float, float, float]:
    from rasterio.transform import array_bounds

    left, bottom, right, top = array_bounds(ds.height, ds.width, transform)  # (west, south, east, north)
    return left, bottom, right, top


def _read_info(path: object) -> _Info:
    import rasterio
    from rasterio._err import CPLE_BaseError  # not re-exported by rasterio.errors
    from rasterio.transform import from_gcps

    source = gdal_path(path)
    if not is_remote(path) and not Path(path).exists():
        raise MosaicError(f"{path}: no such file; pass the path of your satellite GeoTIFF/COG")
    try:
        with rasterio.Env(**(REMOTE_ENV if is_remote(path) else {})), rasterio.open(source) as ds:
            crs, transform = ds.crs, ds.transform
            gcps, gcp_crs = ds.gcps
            if crs is None and gcps:
                crs, transform = gcp_crs, from_gcps(gcps)
            if crs is None:
                hint = ("georeference it first (gdal_translate -a_srs EPSG:xxxx -a_ullr ...), or give its GCPs "
                        "a CRS (gdal_translate -a_srs)" if not gcps else "its GCPs have no CRS: gdal_translate -a_srs")
                raise MosaicError(f"{path}: has no CRS; {hint}")
            check_earth_crs(crs, path)
            structure = json.dumps([ds.width, ds.height, ds.count, ds.dtypes, list(transform)[:6], crs.to_wkt(),
                                    [list(b) for b in ds.block_shapes], len(gcps)])
            return _Info(crs.to_wkt(), ds.count, ds.dtypes[0], ds.width, ds.height, _palette(ds),
                         _native_m(ds, crs, transform), hashlib.sha256(structure.encode()).hexdigest())
    except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:  # GDAL's own errors too
        raise _open_error(path, exc) from exc


def _http_identity(url: str) -> str:
    """ETag / Last-Modified / Content-Length of a remote file (one HEAD request), '' when unavailable."""
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10) as reply:
            return "|".join(reply.headers.get(h, "") for h in ("ETag", "Last-Modified", "Content-Length"))
    except OSError:
        return ""


@dataclass
class Mosaic:
    """A satellite mosaic opened for tiled reading; picklable (it re-opens lazily after pickling).

    Args:
        path: GeoTIFF / COG / any GDAL raster with a CRS or GCPs: a local path or a URL
            (``https://``, ``s3://``, ``/vsi...``).
        bands: 1-based band indexes to use as RGB (a single band is repeated as grey).
        rescale: (min, max) linear stretch to 0..255 for non-8-bit data; min < max.
        resampling: kernel for overview reads AND the reprojection to Web Mercator (one of RESAMPLING);
            paletted mosaics are always read with "nearest" (their pixels are colour-table indexes).
        nodata: pixel value that means "no data", for mosaics that do not declare one.
    """

    path: str | Path
    bands: tuple[int, ...] | None = None
    rescale: tuple[float, float] | None = None
    resampling: str = "bilinear"
    nodata: float | None = None
    _reader: object | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = as_source(self.path)
        if self.resampling not in RESAMPLING:
            raise ConfigError(f"--resampling {self.resampling!r}: choose one of {', '.join(RESAMPLING)}")
        if self.rescale is not None and not self.rescale[0] < self.rescale[1]:
            raise ConfigError(f"--rescale {self.rescale[0]:g},{self.rescale[1]:g}: MIN must be below MAX "
                              "(a reversed stretch blacks the image)")
        self._info = _read_info(self.path)
        self._validate()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader": None}

    def _validate(self) -> None:
        info = self._info
        bands = self.bands or ((1, 2, 3) if info.count >= 3 else (1,))
        if max(bands) > info.count or min(bands) < 1:
            raise MosaicError(f"{self.path}: has {info.count} band(s); --bands {bands} is out of range")
        if info.dtype != "uint8" and self.rescale is None:
            raise MosaicError(
                f"{self.path}: pixels are {info.dtype}, not 8-bit; pass --rescale MIN,MAX to stretch them to 0..255"
            )
        self.bands = tuple(bands)

    @property
    def reader(self):  # noqa: ANN201 - rio_tiler Reader, imported lazily
        """The open rio-tiler Reader (one per process)."""
        if self._reader is None:
            import rasterio
            from rio_tiler.errors import NoOverviewWarning
            from rio_tiler.io import Reader

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NoOverviewWarning)
                try:
                    with rasterio.Env(**(REMOTE_ENV if is_remote(self.path) else {})):
                        self._reader = Reader(gdal_path(self.path))
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

    def geographic_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in EPSG:4326."""
        from rasterio.crs import CRS

        return tuple(self.reader.get_geographic_bounds(CRS.from_epsg(4326)))

    def tiles(self, zoom: int) -> Iterator[mercantile.Tile]:
        """Candidate XYZ tiles at ``zoom`` over the mosaic's footprint, streamed in row order."""
        west, south, east, north = self.geographic_bounds()
        yield from mercantile.tiles(west, south, east, north, zooms=zoom)

    def count_tiles(self, zoom: int) -> int:
        """How many tiles ``tiles(zoom)`` yields, from the footprint's corner tiles: no pixel is read,
        and a world raster at z16 (4.3e9 tiles) is counted as fast as a city."""
        return count_tiles(self.geographic_bounds(), zoom)

    def upsampling(self, zoom: int, size: int) -> float:
        """How many tile pixels span one mosaic pixel at ``zoom`` / ``size`` (>1: tiles are upsampled)."""
        return self._info.native_m / tile_pixel_size_m(zoom, size)

    def native_zoom(self, size: int) -> int:
        """The zoom whose ``size``-px tiles best match the mosaic's native resolution."""
        return max(0, min(22, round(math.log2(2 * math.pi * 6378137.0 / (size * self._info.native_m)))))

    def check_zoom(self, zoom: int, size: int) -> str | None:
        """A warning (also logged) when ``zoom`` is far finer than the mosaic's resolution; else None."""
        factor = self.upsampling(zoom, size)
        if factor <= MAX_UPSAMPLING:
            return None
        message = (f"{self.path}: zoom {zoom} is far finer than the mosaic ({self._info.native_m:.2f} m per pixel "
                   f"in Web Mercator): every mosaic pixel is blown up {factor:.0f}x and the tile count grows "
                   f"{factor**2:.0f}x; about --zoom {self.native_zoom(size)} matches it")
        logger.warning(message)
        return message

    def fingerprint(self) -> str:
        """Digest of everything that determines the tiles' pixels, computed without reading a tile:
        the file's content (sha256, sampled above 1 GiB; a remote file's ETag/Last-Modified/size, or its
        structure where a server gives none), the read options, the tiling code and GDAL/rio-tiler versions."""
        import importlib.metadata

        import rasterio

        from sociomap.fingerprint import code_fingerprint, content_id

        if not is_remote(self.path):
            content = content_id(Path(self.path))
        else:
            url = http_url(self.path)
            content = f"{self.path}|{(_http_identity(url) if url else '') or self._info.structure}"
        parts = {"content": content, "bands": self.bands, "rescale": self.rescale, "resampling": self.resampling,
                 "nodata": self.nodata, "code": code_fingerprint("sociomap.tiling"),
                 "gdal": rasterio.__gdal_version__, "rio-tiler": importlib.metadata.version("rio-tiler")}
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def read(self, tile: mercantile.Tile, size: int) -> TileImage | None:
        """Read one tile at ``size`` px; None when the tile is outside the data or entirely nodata."""
        import rasterio
        from rio_tiler.errors import TileOutsideBounds

        palette = self._info.palette
        method = "nearest" if palette else self.resampling
        options = {"nodata": self.nodata} if self.nodata is not None else {}
        try:
            with rasterio.Env(**(REMOTE_ENV if is_remote(self.path) else {})):
                img = self.reader.tile(tile.x, tile.y, tile.z, tilesize=size, indexes=self.bands,
                                       resampling_method=method, reproject_method=method, **options)
        except TileOutsideBounds:
            return None
        valid = np.asarray(img.mask) > 0
        if not valid.any():
            return None
        if palette:
            rgb, valid = _expand_palette(np.asarray(img.data[0]), valid, palette)
        else:
            rgb = self._to_rgb(np.asarray(img.data))
        rgb[~valid] = 0
        return TileImage(tile, rgb, valid)

    def _to_rgb(self, data: np.ndarray) -> np.ndarray:
        """(bands, H, W) of any dtype -> (H, W, 3) uint8, stretched by ``rescale`` when given."""
        if self.rescale:
            lo, hi = self.rescale
            data = np.clip((data.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255)
        rgb = np.moveaxis(data.astype(np.uint8), 0, -1)
        if rgb.shape[-1] == 1:
            rgb = np.repeat(rgb, 3, axis=-1)
        return np.ascontiguousarray(rgb)


def _expand_palette(index: np.ndarray, valid: np.ndarray, palette: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) colour-table indexes -> (H, W, 3) RGB; entries with alpha 0 count as no data."""
    table = np.asarray(palette, np.uint8)  # (256, 4)
    idx = index.astype(np.intp)
    return np.ascontiguousarray(table[idx, :3]), valid & (table[idx, 3] > 0)


def count_tiles(bounds_wgs84: tuple[float, float, float, float], zoom: int) -> int:
    """Number of XYZ tiles ``mercantile.tiles`` yields for these bounds at ``zoom``, by arithmetic."""
    west, south, east, north = bounds_wgs84
    if west > east:  # across the antimeridian: mercantile splits the box in two
        return count_tiles((-180.0, south, east, north), zoom) + count_tiles((west, south, 180.0, north), zoom)
    west, south = max(-180.0, west), max(-85.051129, south)
    east, north = min(180.0, east), min(85.051129, north)
    upper_left = mercantile.tile(west, north, zoom)
    lower_right = mercantile.tile(east - mercantile.LL_EPSILON, south + mercantile.LL_EPSILON, zoom)
    return max(0, lower_right.x - upper_left.x + 1) * max(0, lower_right.y - upper_left.y + 1)
