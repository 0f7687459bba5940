"""sociomap.maps.osm_render: ``OSMMap``, the map tile of any XYZ tile rendered from an OSM extract.

Rendering uses Mapnik (the PyPI 4.3.2 wheel): antialiased OSM-Carto-like cartography, curved street
names, one label collision detector per tile and ``avoid-edges`` so no label is cut at a tile edge.
Each tile is rendered on its own with a geometry buffer, so features crossing tile edges join up.
"""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import mercantile
import numpy as np
from PIL import Image

from sociomap.maps.mapnik_env import mapnik
from sociomap.maps.osm_data import cached_osm
from sociomap.maps.osm_mapnik import BUFFER_PX, LAYERS, build_layers, build_map
from sociomap.tiling.grid import tile_bounds_m

#: PNG encoder settings pinned for byte-identical output: Pillow, RGB, zlib level 1 (measured faster
#: than Mapnik's png32:z=1 on RGBA for a file of the same size; see docs/maps.md).
PNG_OPTIONS = {"format": "PNG", "compress_level": 1, "optimize": False}
#: Tiles are styled as 256-px tiles scaled by size/256 (a 768-px tile is the "@3x" tile).
BASE_SIZE = 256
#: Extra frame kept around ``bounds_wgs84`` (degrees), so tiles overlapping the edge are complete.
BOUNDS_PAD_DEG = 0.01


def encode_png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB as PNG bytes with the pinned encoder settings."""
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, **PNG_OPTIONS)
    return out.getvalue()


class _Renderer:
    """Per-process state: datasources built once, one Mapnik map per zoom."""

    def __init__(self, path: Path, language: str | None, bounds: tuple[float, ...] | None):
        self.layers = build_layers(cached_osm(path, bounds), language)
        self.maps: dict[int, mapnik.Map] = {}

    def render(self, tile: mercantile.Tile, size: int) -> mapnik.Image:
        m = self.maps.get(tile.z) or self.maps.setdefault(tile.z, build_map(tile.z, self.layers))
        scale = size / BASE_SIZE
        bounds = tile_bounds_m(tile, size)
        m.resize(size, size)
        m.buffer_size = int(BUFFER_PX * scale)
        m.zoom_to_box(mapnik.Box2d(*bounds))
        m.layers[LAYERS.index("area-labels")].datasource = self.layers.area_labels(bounds)
        image = mapnik.Image(size, size)
        mapnik.render(m, image, scale)
        return image


@functools.lru_cache(maxsize=4)
def _renderer(path: Path, stamp: tuple[int, int], language: str | None, bounds: tuple | None) -> _Renderer:
    return _Renderer(path, language, bounds)


def _padded(bounds: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
    if bounds is None:
        return None
    west, south, east, north = bounds
    return (west - BOUNDS_PAD_DEG, south - BOUNDS_PAD_DEG, east + BOUNDS_PAD_DEG, north + BOUNDS_PAD_DEG)


@dataclass(frozen=True)
class OSMMap:
    """Map tiles drawn from an OpenStreetMap extract (.osm.pbf / .osm / .osm.bz2).

    Args:
        path: the OSM file; read lazily, once per process (pickles as path + options).
        language: prefer ``name:<language>`` labels (e.g. "en", "sv"), falling back to ``name``.
        bounds_wgs84: (west, south, east, north) to keep from the file, padded by BOUNDS_PAD_DEG;
            pass the bounds of the tiles to render. None keeps the whole file.
    """

    path: Path
    language: str | None = None
    bounds_wgs84: tuple[float, float, float, float] | None = None

    def _image(self, tile: mercantile.Tile, size: int) -> mapnik.Image:
        path = Path(self.path).resolve()
        st = path.stat()
        bounds = _padded(tuple(self.bounds_wgs84) if self.bounds_wgs84 else None)
        return _renderer(path, (st.st_mtime_ns, st.st_size), self.language, bounds).render(tile, size)

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray:
        """The map of ``tile`` as (size, size, 3) uint8 RGB on the tile's EPSG:3857 pixel grid."""
        raw = self._image(tile, size).to_string()  # RGBA8, opaque (the map has a background colour)
        return np.frombuffer(raw, np.uint8).reshape(size, size, 4)[:, :, :3].copy()

    def read_png(self, tile: mercantile.Tile, size: int) -> bytes:
        """The same tile as PNG bytes; identical across runs and processes for the same input."""
        return encode_png(self.read(tile, size))

    def fingerprint(self) -> str:
        """OSM content, language, bounds, renderer version and the map code (style, data reading, fonts)."""
        from sociomap.fingerprint import code_fingerprint, content_id

        parts = [content_id(Path(self.path)), self.language, self.bounds_wgs84, mapnik.version_string(),
                 code_fingerprint("sociomap.maps")]
        return "osm:" + hashlib.sha256(repr(parts).encode()).hexdigest()

    def describe(self) -> dict[str, str]:
        """Kind, path and style options, for the run manifest."""
        return {"kind": "osm", "path": str(self.path), "language": self.language or "",
                "renderer": f"mapnik {mapnik.version_string()}", "style": "sociomap osm-carto-like v1"}
