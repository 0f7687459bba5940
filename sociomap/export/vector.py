"""sociomap.export.vector: layers -> one GeoPackage per socio-function (+ combined, GeoJSON, FlatGeobuf).

Written with pyogrio (GDAL): GeoPackages get an R-tree spatial index, the CRS and dataset metadata.
Every file is written under a temporary name in the same folder and renamed when complete, so a crash
or a reader never sees half a file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import geopandas as gpd
import pyogrio

from sociomap.errors import ExportError

logger = logging.getLogger(__name__)

#: format name -> (GDAL driver, file suffix)
FORMATS = {"gpkg": ("GPKG", ".gpkg"), "geojson": ("GeoJSON", ".geojson"), "fgb": ("FlatGeobuf", ".fgb")}
#: the multi-layer GeoPackage holding every layer
COMBINED_NAME = "sociomap.gpkg"


def write_geopackages(
    layers: Iterable[tuple[str, gpd.GeoDataFrame]],
    out_dir: Path,
    crs: str = "EPSG:4326",
    metadata: dict[str, str] | None = None,
    combined: bool = False,
    formats: Sequence[str] = ("gpkg",),
) -> list[Path]:
    """Write each (layer slug, frame) as ``out_dir/<slug>.<format>``; return the paths written.

    ``crs`` is the output CRS (GeoJSON is always EPSG:4326, RFC 7946); ``metadata`` goes into each file's
    dataset metadata (GPKG/FGB); ``combined`` also writes every layer into one ``sociomap.gpkg``.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"write_geopackages: unknown format(s) {unknown}; use any of {sorted(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    combined_tmp = _temp_path(out_dir / COMBINED_NAME) if combined else None
    written = []
    for name, frame in layers:
        frame = frame.to_crs(crs)
        for fmt in formats:
            target = out_dir / f"{name}{FORMATS[fmt][1]}"
            out = frame.to_crs("EPSG:4326") if fmt == "geojson" else frame
            _write_atomic(out, target, name, fmt, metadata)
            written.append(target)
        if combined_tmp is not None:
            _write(frame, combined_tmp, name, "gpkg", metadata, append_layer=combined_tmp.exists())
    if combined_tmp is not None and combined_tmp.exists():
        os.replace(combined_tmp, out_dir / COMBINED_NAME)
        written.append(out_dir / COMBINED_NAME)
    logger.info("Wrote %d files to %s", len(written), out_dir)
    return written


def _temp_path(target: Path) -> Path:
    return target.with_name(f".{target.stem}.partial{target.suffix}")  # GDAL picks options by suffix


def _write_atomic(frame: gpd.GeoDataFrame, target: Path, layer: str, fmt: str, metadata: dict | None) -> None:
    tmp = _temp_path(target)
    tmp.unlink(missing_ok=True)
    _write(frame, tmp, layer, fmt, metadata, append_layer=False)
    os.replace(tmp, target)


def _write(frame: gpd.GeoDataFrame, path: Path, layer: str, fmt: str, metadata: dict | None,
           append_layer: bool) -> None:
    """One layer into ``path`` (a new layer in an existing GeoPackage when ``append_layer``)."""
    driver = FORMATS[fmt][0]
    options = {"SPATIAL_INDEX": "YES"} if fmt in ("gpkg", "fgb") else {}
    try:
        # Run metadata goes on the GeoPackage layer (gpkg_metadata, shown by QGIS), never as GeoPackage
        # dataset metadata: GDAL mirrors that into a .gpkg.aux.xml file beside the file on every read.
        pyogrio.write_dataframe(
            frame, path, layer=layer, driver=driver, promote_to_multi=True, layer_options=options,
            dataset_metadata=None,
            layer_metadata=(metadata or None) if fmt == "gpkg" else None,
            geometry_type="MultiPolygon" if frame.empty else None,
        )
    except Exception as exc:  # pyogrio raises DataSourceError/FieldError/OSError variants
        if not append_layer:
            path.unlink(missing_ok=True)
        raise ExportError(f"cannot write layer {layer!r} to {path.name} ({exc}); check free space and permissions") from exc
