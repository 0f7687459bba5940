"""sociomap.maps.archives: map tiles from an XYZ folder, an MBTiles file or a raster PMTiles archive.

Web-map tiles and satellite tiles share the XYZ grid, so the map tile (z, x, y) covers exactly the
satellite tile (z, x, y) whatever the pixel sizes: it is decoded and resampled to ``size``. Only the
requested zoom is read; a tile absent at that zoom (another zoom, outside the archive) is blank.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import io
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import mercantile
import numpy as np
from PIL import Image, UnidentifiedImageError
from pmtiles.reader import MmapSource, Reader
from pmtiles.tile import Compression, MagicNumberNotFound, SpecVersionUnsupported, TileType

from sociomap.errors import MapSourceError
from sociomap.maps.raster import BLANK_RGB

logger = logging.getLogger(__name__)

#: Tile file suffixes looked for in an XYZ folder, in this order.
XYZ_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
RASTER_TILE_TYPES = {TileType.PNG, TileType.JPEG, TileType.WEBP, TileType.AVIF}


def decode_tile(data: bytes, size: int, where: str) -> np.ndarray:
    """Encoded tile bytes as (size, size, 3) uint8 RGB; transparency shows the blank map colour."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise MapSourceError(f"{where}: not a readable image tile ({exc}); rebuild the tile set") from exc
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (*BLANK_RGB, 255))
    rgb = Image.alpha_composite(canvas, rgba).convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(rgb, np.uint8).copy()


def _blank(size: int) -> np.ndarray:
    return np.full((size, size, 3), BLANK_RGB, np.uint8)


def _digest(kind: str, content: str) -> str:
    from sociomap.fingerprint import code_fingerprint

    return hashlib.sha256(f"{kind}|{content}|{code_fingerprint('sociomap.maps.archives')}".encode()).hexdigest()


def _file_fingerprint(kind: str, path: Path) -> str:
    from sociomap.fingerprint import content_id

    return _digest(kind, content_id(path))


@dataclass(frozen=True)
class XYZFolderMap:
    """A folder of ``{z}/{x}/{y}.png`` (or .jpg/.webp) tiles of any pixel size, XYZ (not TMS) rows."""

    path: Path

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray:
        """The map tile as (size, size, 3) uint8; blank when the folder has no such tile."""
        stem = Path(self.path) / str(tile.z) / str(tile.x) / str(tile.y)
        for suffix in XYZ_SUFFIXES:
            file = stem.with_suffix(suffix)
            if file.is_file():
                return decode_tile(file.read_bytes(), size, str(file))
        return _blank(size)

    def describe(self) -> dict[str, str]:
        """Kind and path, for the run manifest."""
        return {"kind": "xyz", "path": str(self.path)}

    def fingerprint(self) -> str:
        """Names, sizes and mtimes of every tile file (a stat walk; no tile is read)."""
        root = Path(self.path)
        entries = sorted(
            f"{Path(folder, name).relative_to(root)}:{st.st_size}:{st.st_mtime_ns}"
            for folder, _, names in os.walk(root) for name in names
            if (st := Path(folder, name).stat()))
        return _digest("xyz", hashlib.sha256("\n".join(entries).encode()).hexdigest())


@dataclass
class MBTilesMap:
    """An MBTiles 1.3 raster archive (SQLite, TMS rows); opened lazily per process."""

    path: Path
    _db: sqlite3.Connection | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        tile_format = self._metadata().get("format", "png")
        if tile_format in ("pbf", "mvt"):
            raise MapSourceError(f"{self.path}: holds vector tiles; pass a raster MBTiles (png/jpg/webp)")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_db": None}

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
                self._db.execute("SELECT 1 FROM tiles LIMIT 1")
            except sqlite3.Error as exc:
                self._db = None
                raise MapSourceError(f"{self.path}: not an MBTiles file ({exc}); pass a raster .mbtiles") from exc
        return self._db

    def _metadata(self) -> dict[str, str]:
        try:
            return dict(self._connection().execute("SELECT name, value FROM metadata").fetchall())
        except sqlite3.Error:
            return {}

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray:
        """The map tile as (size, size, 3) uint8; blank when the archive has no such tile."""
        tms_row = (1 << tile.z) - 1 - tile.y
        row = self._connection().execute(
            "SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
            (tile.z, tile.x, tms_row)).fetchone()
        return decode_tile(bytes(row[0]), size, f"{self.path} tile {tile}") if row else _blank(size)

    def describe(self) -> dict[str, str]:
        """Kind and path, for the run manifest."""
        return {"kind": "mbtiles", "path": str(self.path)}

    def fingerprint(self) -> str:
        """The archive's content id (sha256; sampled above 1 GiB)."""
        return _file_fingerprint("mbtiles", self.path)


@dataclass
class PMTilesMap:
    """A PMTiles v3 raster archive read with the ``pmtiles`` package (memory-mapped, lazily per process)."""

    path: Path
    _reader: Reader | None = field(default=None, init=False, repr=False, compare=False)
    _head: dict | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        tile_type = self._header()["tile_type"]
        if tile_type not in RASTER_TILE_TYPES:
            raise MapSourceError(f"{self.path}: holds {tile_type.name} tiles; pass a raster PMTiles (png/jpg/webp)")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader": None, "_head": None}

    def _header(self) -> dict:
        if self._head is None:
            try:
                with open(self.path, "rb") as handle:  # the memory map stays valid after closing
                    reader = Reader(MmapSource(handle))
                self._head, self._reader = reader.header(), reader
            except (OSError, ValueError, MagicNumberNotFound, SpecVersionUnsupported) as exc:
                raise MapSourceError(f"{self.path}: not a PMTiles v3 archive ({exc}); pass a raster .pmtiles") from exc
        return self._head

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray:
        """The map tile as (size, size, 3) uint8; blank when the archive has no such tile."""
        header = self._header()
        data = self._reader.get(tile.z, tile.x, tile.y)
        if not data:
            return _blank(size)
        if header["tile_compression"] == Compression.GZIP:
            data = gzip.decompress(data)
        return decode_tile(data, size, f"{self.path} tile {tile}")

    def describe(self) -> dict[str, str]:
        """Kind and path, for the run manifest."""
        return {"kind": "pmtiles", "path": str(self.path)}

    def fingerprint(self) -> str:
        """The archive's content id (sha256; sampled above 1 GiB)."""
        return _file_fingerprint("pmtiles", self.path)
