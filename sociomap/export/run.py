"""sociomap.export.run: convert a finished run's GeoPackages to PMTiles, GeoJSON or FlatGeobuf."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import pyogrio

from sociomap.errors import ExportError, InputError
from sociomap.export.pmtiles import Engine, write_pmtiles
from sociomap.export.vector import COMBINED_NAME, write_geopackages

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("pmtiles", "geojson", "fgb")
PMTILES_NAME = "sociomap.pmtiles"


def export_run(out_dir: Path, fmt: str, minzoom: int = 10, maxzoom: int = 16, engine: Engine = "auto") -> Path:
    """Export every socio-function layer of ``out_dir`` to ``fmt``; return the file (PMTiles) or folder written.

    Layers are read from the per-function ``<slug>.gpkg`` files (or, if there are none, from the layers of
    ``sociomap.gpkg``). PMTiles go to ``out_dir/sociomap.pmtiles``; GeoJSON / FlatGeobuf files go beside
    the GeoPackages as ``<slug>.geojson`` / ``<slug>.fgb``.
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"export format {fmt!r} is not supported; use one of {', '.join(EXPORT_FORMATS)}")
    out_dir = Path(out_dir)
    layers = read_run_layers(out_dir)
    if fmt == "pmtiles":
        path = write_pmtiles(layers, out_dir / PMTILES_NAME, minzoom, maxzoom, engine)
        logger.info("Wrote %s with layers %s", path, ", ".join(layers))
        return path
    write_geopackages(layers.items(), out_dir, crs="EPSG:4326", formats=(fmt,))
    return out_dir


def read_run_layers(out_dir: Path) -> dict[str, gpd.GeoDataFrame]:
    """Layer slug -> frame for every socio-function GeoPackage in ``out_dir``."""
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: no such folder; pass the output folder of a finished `sociomap run`")
    sources = [(p, p.stem) for p in sorted(out_dir.glob("*.gpkg")) if p.name != COMBINED_NAME]
    combined = out_dir / COMBINED_NAME
    if not sources and combined.exists():
        sources = [(combined, name) for name, _ in pyogrio.list_layers(combined)]
    if not sources:
        raise InputError(f"{out_dir}: no GeoPackage layers (*.gpkg); pass the output folder of a finished `sociomap run`")
    layers = {}
    for path, layer in sources:
        try:
            layers[layer] = pyogrio.read_dataframe(path, layer=layer)
        except Exception as exc:  # pyogrio's DataSourceError / DataLayerError
            raise InputError(f"{path}: cannot read layer {layer!r} ({exc}); rerun `sociomap run` to rewrite it") from exc
    return layers
