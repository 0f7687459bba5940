"""sociomap.maps.osm_render: ``OSMMap``, the map tile of any XYZ tile rendered from an OSM extract.

Rendering uses Mapnik (the PyPI 4.3.2 wheel): antialiased cartography, curved street names, one label
collision detector per tile and ``avoid-edges`` so no label is cut at a tile edge. Each tile is
rendered on its own with a geometry buffer, so features crossing tile edges join up.

Thread safety: a ``mapnik.Map`` is mutable render state (size, extent, datasources), so each thread
has its own maps (one per style and zoom, in a ``threading.local``) and every tile gets freshly built
datasources from the OSM index (``osm_index``: one SQLite connection per thread). Nothing Mapnik
owns is shared between threads; font registration and XML loading, which touch Mapnik's process-wide
registries, run under one lock. Processes share nothing but the index file.
"""

from __future__ import annotations

import functools
import hashlib
import io
import threading
from dataclasses import dataclass
from pathlib import Path

import mercantile
import numpy as np
from PIL import Image

from sociomap.maps.mapnik_env import mapnik
from sociomap.maps.osm_index import OSMIndex, prepare_osm_index
from sociomap.maps.osm_mapnik import BUFFER_PX, CartoStyle, build_map
from sociomap.maps.osm_socioseg import SociosegStyle
from sociomap.tiling.grid import tile_bounds_m, tile_pixel_size_m

#: PNG encoder settings pinned for byte-identical output: Pillow, RGB, zlib level 1 (measured faster
#: than Mapnik's png32:z=1 on RGBA for a file of the same size; see docs/maps.md).
PNG_OPTIONS = {"format": "PNG", "compress_level": 1, "optimize": False}
#: Tiles are styled as 256-px tiles scaled by size/256 (a 768-px tile is the "@3x" tile).
BASE_SIZE = 256
#: Map styles by the name ``--map-style`` takes; ``socioseg`` (what the model was trained on) is the default.
STYLES = {"socioseg": SociosegStyle(), "carto": CartoStyle()}
DEFAULT_STYLE = "socioseg"

_local = threading.local()


def encode_png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB as PNG bytes with the pinned encoder settings."""
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, **PNG_OPTIONS)
    return out.getvalue()


def _thread_map(style: str, zoom: int) -> mapnik.Map:
    """This thread's Mapnik map for (style, zoom), built on first use."""
    maps = getattr(_local, "maps", None)
    if maps is None:
        maps = _local.maps = {}
    key = (style, zoom)
    if key not in maps:
        maps[key] = build_map(STYLES[style].xml(zoom), BASE_SIZE)
    return maps[key]


@functools.lru_cache(maxsize=8)
def _own_index(path: Path, stamp: tuple[int, int], bounds: tuple | None) -> Path:
    return prepare_osm_index(path, bounds)


def render(index: OSMIndex, style: str, tile: mercantile.Tile, size: int, language: str | None) -> mapnik.Image:
    """Render one tile (thread-safe: this thread's map, this call's datasources)."""
    m = _thread_map(style, tile.z)
    scale = size / BASE_SIZE
    bounds = tile_bounds_m(tile, size)
    pad = BUFFER_PX * scale * tile_pixel_size_m(tile.z, size)
    query = (bounds[0] - pad, bounds[1] - pad, bounds[2] + pad, bounds[3] + pad)
    sources = STYLES[style].layers(index, bounds, query, language)
    m.resize(size, size)
    m.buffer_size = int(BUFFER_PX * scale)
    m.zoom_to_box(mapnik.Box2d(*bounds))
    for layer in m.layers:
        layer.datasource = sources[layer.name]
    image = mapnik.Image(size, size)
    try:
        mapnik.render(m, image, scale)
    finally:
        for layer in m.layers:  # drop this tile's features now, not when the next tile replaces them
            layer.datasource = mapnik.MemoryDatasource()
    return image


@dataclass(frozen=True)
class OSMMap:
    """Map tiles drawn from an OpenStreetMap extract (.osm.pbf / .osm / .osm.bz2).

    Args:
        path: the OSM file.
        language: prefer ``name:<language>`` labels (e.g. "en", "sv"), falling back to ``name``.
        bounds_wgs84: (west, south, east, north) to keep from the file (plus a margin); pass the bounds
            of the tiles to render. None keeps the whole file.
        style: "socioseg" (default: the training maps' content) or "carto" (OSM-Carto-like fills).
        index: an index built by ``prepare_osm_index`` (the pipeline builds it once in the driver);
            None builds or reuses one in ``osm_index.DEFAULT_DIR`` on first use, once per process.
    """

    path: Path
    language: str | None = None
    bounds_wgs84: tuple[float, float, float, float] | None = None
    style: str = DEFAULT_STYLE
    index: Path | None = None

    def __post_init__(self) -> None:
        from sociomap.errors import ConfigError

        if self.style not in STYLES:
            raise ConfigError(f"--map-style {self.style!r}: choose one of {', '.join(STYLES)}")

    def _index(self) -> OSMIndex:
        if self.index is not None:
            return _reader(Path(self.index))
        path = Path(self.path).resolve()
        st = path.stat()
        bounds = tuple(self.bounds_wgs84) if self.bounds_wgs84 else None
        return _reader(_own_index(path, (st.st_mtime_ns, st.st_size), bounds))

    def read(self, tile: mercantile.Tile, size: int) -> np.ndarray:
        """The map of ``tile`` as (size, size, 3) uint8 RGB on the tile's EPSG:3857 pixel grid."""
        raw = render(self._index(), self.style, tile, size, self.language).to_string()  # RGBA8, opaque
        return np.frombuffer(raw, np.uint8).reshape(size, size, 4)[:, :, :3].copy()

    def read_png(self, tile: mercantile.Tile, size: int) -> bytes:
        """The same tile as PNG bytes; identical across runs, threads and processes for the same input."""
        return encode_png(self.read(tile, size))

    def describe(self) -> dict[str, str]:
        """Kind, path and style options, for the run manifest."""
        return {"kind": "osm", "path": str(self.path), "language": self.language or "",
                "renderer": f"mapnik {mapnik.version_string()}", "style": STYLES[self.style].version}

    def fingerprint(self) -> str:
        """The OSM file's content id, frame, style, language, renderer and code (no tile is rendered)."""
        from sociomap.fingerprint import code_fingerprint
        from sociomap.maps.osm_index import osm_index_key

        parts = [osm_index_key(Path(self.path), self.bounds_wgs84), self.style, STYLES[self.style].version,
                 self.language or "", mapnik.version_string(), Image.__version__,
                 code_fingerprint("sociomap.maps")]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()


@functools.lru_cache(maxsize=8)
def _reader(path: Path) -> OSMIndex:
    return OSMIndex(path)
