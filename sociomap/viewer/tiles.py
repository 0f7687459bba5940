"""sociomap.viewer.tiles: raster web-map tiles of the imagery and the map, live or as PMTiles archives.

Both backgrounds are read through the same objects the pipeline uses (``sociomap.tiling.Mosaic`` for
the imagery, a ``MapSource`` for the map), so what the viewer shows is what the model was given.
Tiles are 512 px (MapLibre's ``tileSize: 512``): imagery as WebP with transparency outside the
mosaic, maps as PNG. A mosaic's low zooms come from its overviews (rio-tiler picks them).
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import mercantile
import numpy as np
from PIL import Image
from pmtiles.reader import MmapSource, Reader
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from sociomap.errors import ExportError, InputError

logger = logging.getLogger(__name__)

TILE_SIZE = 512
#: Deepest zoom written for a map (a 512 px z18 tile is 0.3 m/px at the equator).
MAP_MAXZOOM = 18
IMAGERY_FORMAT = "webp"
MAP_FORMAT = "png"
_TILE_TYPES = {"webp": TileType.WEBP, "png": TileType.PNG, "jpeg": TileType.JPEG}
_TYPE_NAMES = {
    TileType.MVT: "mvt",
    TileType.PNG: "png",
    TileType.JPEG: "jpeg",
    TileType.WEBP: "webp",
    TileType.AVIF: "avif",
}


class TileReader(Protocol):
    """Reads one background tile."""

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray | None:
        """(size, size, 4) uint8 RGBA, alpha 0 where there is no data; None when the tile is empty."""
        ...


class MosaicTiles:
    """Satellite tiles from a ``Mosaic``; transparent outside the data."""

    def __init__(self, mosaic: object) -> None:
        self.mosaic = mosaic

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray | None:
        """RGBA imagery, or None outside the mosaic."""
        img = self.mosaic.read(tile, size)
        if img is None:
            return None
        alpha = np.where(img.valid, 255, 0).astype(np.uint8)
        return np.dstack([img.rgb, alpha])

    def zoom_range(self) -> tuple[int, int]:
        """(coarsest, native) zooms for 512 px tiles; rio-tiler's zooms are for 256 px tiles."""
        reader = self.mosaic.reader
        return max(0, int(reader.minzoom) - 1), max(0, int(reader.maxzoom) - 1)


class MapTiles:
    """Map tiles from a ``MapSource`` (an OSM render, a map raster or a tile archive); opaque."""

    def __init__(self, source: object) -> None:
        self.source = source

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray | None:
        """RGBA map (alpha 255 everywhere)."""
        rgb = self.source.read(tile, size)
        return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


class ArchiveTiles:
    """Tiles decoded from a raster PMTiles archive written by this module (pictures, HTML pages)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray | None:
        """RGBA tile, or None when the archive has no such tile."""
        with open(self.path, "rb") as f:
            data = Reader(MmapSource(f)).get(tile.z, tile.x, tile.y)
        if not data:
            return None
        image = Image.open(io.BytesIO(data)).convert("RGBA")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(image)


class Locked:
    """Serialises reads of one reader across server threads (GDAL handles and Mapnik maps are not
    thread-safe)."""

    def __init__(self, reader: TileReader) -> None:
        self.reader, self._lock = reader, threading.Lock()

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray | None:
        """The wrapped reader's tile, one call at a time."""
        with self._lock:
            return self.reader.read(tile, size)


def open_background(background: object) -> TileReader:
    """A tile reader for a ``sociomap.viewer.view.Background``."""
    if background.archive is not None:
        return ArchiveTiles(background.archive)
    if background.role == "imagery":
        from sociomap.tiling import Mosaic

        return MosaicTiles(Mosaic(background.source, background.bands, background.rescale))
    from sociomap.maps.base import open_map_source

    return MapTiles(open_map_source(background.source, **background.options))


def background_zooms(reader: TileReader, bounds: tuple[float, float, float, float]) -> tuple[int, int]:
    """(minzoom, maxzoom) at which a live background has tiles worth requesting."""
    if isinstance(reader, MosaicTiles):
        low, high = reader.zoom_range()
        return min(low, fit_zoom(bounds)), high
    return fit_zoom(bounds), MAP_MAXZOOM


def fit_zoom(bounds: tuple[float, float, float, float]) -> int:
    """The deepest zoom at which ``bounds`` (W, S, E, N degrees) fit in about one 512 px tile."""
    west, south, east, north = bounds
    x0, y0 = mercantile.xy(west, north)
    x1, y1 = mercantile.xy(east, south)
    span = max(x1 - x0, y0 - y1, 1.0)
    return int(max(0, min(MAP_MAXZOOM, math.floor(math.log2(2 * 20037508.342789244 / span)))))


def encode_tile(rgba: np.ndarray, fmt: str) -> bytes:
    """Encode an RGBA tile: "webp" (lossy, quality 80, transparency kept) or "png" (lossless)."""
    image = Image.fromarray(rgba, "RGBA")
    if rgba[..., 3].min() == 255:
        image = image.convert("RGB")
    buf = io.BytesIO()
    if fmt == "webp":
        image.save(buf, "WEBP", quality=80, method=4)
    elif fmt == "png":
        image.save(buf, "PNG", compress_level=6)
    else:
        raise ExportError(f"tile format {fmt!r}: use webp or png")
    return buf.getvalue()


@functools.lru_cache(maxsize=8)
def empty_tile(fmt: str, size: int = TILE_SIZE) -> bytes:
    """A fully transparent tile (what the live server answers outside the data)."""
    return encode_tile(np.zeros((size, size, 4), np.uint8), fmt)


def covering_tiles(bounds: tuple[float, float, float, float], zoom: int) -> list[mercantile.Tile]:
    """The tiles of ``zoom`` over ``bounds`` in PMTiles (Hilbert) order, for a clustered archive."""
    tiles = list(mercantile.tiles(*bounds, zooms=zoom))
    return sorted(tiles, key=lambda t: zxy_to_tileid(t.z, t.x, t.y))


def write_raster_pmtiles(
    path: Path,
    reader: TileReader,
    bounds: tuple[float, float, float, float],
    minzoom: int,
    maxzoom: int,
    fmt: str,
    name: str,
    attribution: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the tiles of ``reader`` over ``bounds`` at ``minzoom..maxzoom`` to a raster PMTiles archive.

    Written under a temporary name beside ``path`` and renamed when complete; empty tiles are left out.
    ``progress(done, total)`` is called after every tile. Returns ``path``.
    """
    if not 0 <= minzoom <= maxzoom <= 24:
        raise ExportError(f"{path.name}: zooms {minzoom}..{maxzoom}; need 0 <= min <= max <= 24")
    path = Path(path)
    zooms = {z: covering_tiles(bounds, z) for z in range(minzoom, maxzoom + 1)}
    total, done, written = sum(len(t) for t in zooms.values()), 0, 0
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        with open(tmp, "wb") as f:
            writer = Writer(f)
            for z in range(minzoom, maxzoom + 1):  # tile ids grow with zoom, then along the Hilbert curve
                for tile in zooms[z]:
                    rgba = reader.read(tile, TILE_SIZE)
                    if rgba is not None and rgba[..., 3].any():
                        writer.write_tile(zxy_to_tileid(tile.z, tile.x, tile.y), encode_tile(rgba, fmt))
                        written += 1
                    done += 1
                    if progress is not None:
                        progress(done, total)
            if written == 0:
                raise ExportError(
                    f"{path.name}: no tile of the source has data over {bounds}; nothing to write"
                )
            e7 = lambda v: int(round(v * 1e7))  # noqa: E731
            west, south, east, north = bounds
            writer.finalize(
                {
                    "tile_type": _TILE_TYPES[fmt],
                    "tile_compression": Compression.NONE,
                    "min_zoom": minzoom,
                    "max_zoom": maxzoom,
                    "min_lon_e7": e7(west),
                    "min_lat_e7": e7(south),
                    "max_lon_e7": e7(east),
                    "max_lat_e7": e7(north),
                    "center_zoom": minzoom,
                    "center_lon_e7": e7((west + east) / 2),
                    "center_lat_e7": e7((south + north) / 2),
                },
                {
                    "name": name,
                    "format": fmt,
                    "type": "baselayer",
                    "attribution": attribution,
                    "tileSize": TILE_SIZE,
                },
            )
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("Wrote %s: %d of %d tiles at z%d-%d", path, written, total, minzoom, maxzoom)
    return path


def write_imagery_tiles(
    set_dir: Path,
    mosaic: object,
    maxzoom: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write ``set_dir/imagery.pmtiles`` from a ``sociomap.tiling.Mosaic``; return the paths written.

    Zooms run from where the mosaic fits in one tile to its native resolution (or ``maxzoom``).
    """
    from sociomap.viewer.view import IMAGERY_ARCHIVE

    reader = MosaicTiles(mosaic)
    bounds = mosaic.geographic_bounds()
    low, high = reader.zoom_range()
    high = high if maxzoom is None else min(high, maxzoom)
    low = min(low, fit_zoom(bounds), high)
    name = Path(str(getattr(mosaic, "path", "imagery"))).name
    return [
        write_raster_pmtiles(
            Path(set_dir) / IMAGERY_ARCHIVE,
            reader,
            bounds,
            low,
            high,
            IMAGERY_FORMAT,
            name=f"imagery {name}",
            attribution=f"Satellite: {name}",
            progress=progress,
        )
    ]


def write_basemap_tiles(
    set_dir: Path,
    map_source: object,
    bounds_wgs84: tuple[float, float, float, float],
    maxzoom: int = 17,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write ``set_dir/basemap.pmtiles`` from a ``MapSource`` over ``bounds_wgs84``; return the paths."""
    from sociomap.viewer.view import BASEMAP_ARCHIVE

    describe = map_source.describe()
    osm = describe.get("kind") == "osm"
    low = min(fit_zoom(bounds_wgs84), maxzoom)
    return [
        write_raster_pmtiles(
            Path(set_dir) / BASEMAP_ARCHIVE,
            MapTiles(map_source),
            bounds_wgs84,
            low,
            maxzoom,
            MAP_FORMAT,
            name=f"map {Path(describe.get('path', 'map')).name}",
            attribution="© OpenStreetMap contributors" if osm else "",
            progress=progress,
        )
    ]


def archive_info(path: Path) -> dict:
    """Header facts of a PMTiles archive: tile_type name, zooms, bounds, vector layer ids."""
    try:
        with open(path, "rb") as f:
            reader = Reader(MmapSource(f))
            header, meta = reader.header(), reader.metadata()
    except Exception as exc:  # pmtiles raises plain Exceptions on a corrupt archive
        raise InputError(f"{path}: not a readable PMTiles archive ({exc}); rebuild it") from exc
    d = 1e7
    return {
        "tile_type": _TYPE_NAMES.get(header["tile_type"], "unknown"),
        "min_zoom": header["min_zoom"],
        "max_zoom": header["max_zoom"],
        "bounds": (
            header["min_lon_e7"] / d,
            header["min_lat_e7"] / d,
            header["max_lon_e7"] / d,
            header["max_lat_e7"] / d,
        ),
        "layers": [layer["id"] for layer in meta.get("vector_layers", [])],
    }
