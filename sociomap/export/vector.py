"""sociomap.export.vector: layers -> one GeoPackage per socio-function (+ combined, GeoJSON, FlatGeobuf).

Written with pyogrio (GDAL): GeoPackages get an R-tree spatial index, the CRS and dataset metadata.
Every file is written under a temporary name in the same folder and renamed when complete, so a crash
or a reader never sees half a file. ``write_merged_layers`` streams a run's merge into them block by
block; ``write_geopackages`` writes small in-memory frames (``sociomap labels``, exports).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import geopandas as gpd
import pyogrio
import pyogrio.raw

from sociomap.errors import ExportError

logger = logging.getLogger(__name__)

#: format name -> (GDAL driver, file suffix)
FORMATS = {"gpkg": ("GPKG", ".gpkg"), "geojson": ("GeoJSON", ".geojson"), "fgb": ("FlatGeobuf", ".fgb")}
#: the multi-layer GeoPackage holding every layer
COMBINED_NAME = "sociomap.gpkg"


class MergedCounts(dict):
    """Layer slug -> features written (a plain dict), plus the seam-crossing features per layer and the
    files written (``crossing``, ``paths``)."""

    def __init__(self) -> None:
        super().__init__()
        self.crossing: dict[str, int] = {}
        self.paths: list[Path] = []


def write_merged_layers(
    store: object,
    config: object,
    out_dir: Path,
    layers: Iterable[str],
    crs: str = "EPSG:4326",
    metadata: dict[str, str] | None = None,
    workers: int | None = None,
    client: object | None = None,
    combined: bool = False,
    formats: Sequence[str] = (),
    progress: Callable[[str, int], None] | None = None,
) -> MergedCounts:
    """Merge each layer of ``store`` (a ``sociomap.merge.PieceStore``) and write ``out_dir/<slug>.gpkg``
    for every slug in ``layers`` (an empty layer with the schema when nothing was found).

    Finished objects are appended block by block as the merge yields them, so no layer is ever held
    in memory whole. ``workers`` merge processes (None: from the cores and memory) or the Dask
    ``client``'s workers do the merging. ``combined`` also writes every layer into one
    ``sociomap.gpkg``; ``formats`` ("fgb", "geojson") are converted from each finished GeoPackage by
    GDAL in batches. ``progress(slug, features)`` is called after each block.
    """
    from sociomap.merge.runner import MergeRunner

    extra = [f for f in formats if f != "gpkg"]
    _check_formats(extra)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = MergedCounts()
    combined_file = _LayerFile(out_dir / COMBINED_NAME, crs, metadata) if combined else None
    open_files = [combined_file] if combined_file else []
    try:
        with MergeRunner(workers, client) as runner:
            for slug in dict.fromkeys(layers):
                target = out_dir / f"{slug}.gpkg"
                layer_file = _LayerFile(target, crs, metadata)
                open_files.append(layer_file)
                batches = runner.run(store, slug, config, crs)
                counts.crossing[slug] = _stream_layer(slug, batches, [layer_file, combined_file], progress)
                counts[slug] = layer_file.count(slug)
                counts.paths.append(layer_file.publish())
                counts.paths.extend(_convert(target, slug, fmt, metadata) for fmt in extra)
                logger.info("Wrote %s: %d features (%d across seams)", target.name, counts[slug],
                            counts.crossing[slug])
        if combined_file is not None:
            counts.paths.append(combined_file.publish())
    except BaseException:
        for layer_file in open_files:  # nothing partial is left behind
            layer_file.tmp.unlink(missing_ok=True)
        raise
    return counts


def _stream_layer(slug: str, batches: Iterable, files: list, progress: Callable | None) -> int:
    """Append every batch of one layer to each file (None: skipped); return its seam-crossing features."""
    from sociomap.merge.features import ObjectBatch

    files = [f for f in files if f is not None]
    crossing = 0
    for batch in batches:
        for layer_file in files:
            layer_file.append(slug, batch)
        crossing += int(batch.columns["crosses_seam"].sum())
        if progress is not None:
            progress(slug, files[0].count(slug))
    for layer_file in files:
        layer_file.finish_layer(slug, ObjectBatch.empty(""))
    return crossing


class _LayerFile:
    """A GeoPackage being written under a temporary name: layers appended batch by batch, then renamed."""

    def __init__(self, target: Path, crs: str, metadata: dict[str, str] | None) -> None:
        self.target, self.crs, self.metadata = target, crs, metadata
        self.tmp = _temp_path(target)
        self.tmp.unlink(missing_ok=True)
        self._counts: dict[str, int] = {}

    def count(self, layer: str) -> int:
        return self._counts.get(layer, 0)

    def append(self, layer: str, batch: object) -> None:
        """Append a batch (``sociomap.merge.ObjectBatch``); the first one creates the layer."""
        if len(batch) == 0:
            return
        new_layer = layer not in self._counts
        self._write(layer, batch, append=not new_layer)
        self._counts[layer] = self.count(layer) + len(batch)

    def finish_layer(self, layer: str, empty: object) -> None:
        """Create ``layer`` with the schema and no features if no batch created it."""
        if layer not in self._counts:
            self._write(layer, empty, append=False)
            self._counts[layer] = 0

    def publish(self) -> Path:
        os.replace(self.tmp, self.target)
        return self.target

    def _write(self, layer: str, batch: object, append: bool) -> None:
        # Run metadata goes on the layer only: GeoPackage dataset metadata makes GDAL write a .aux.xml file
        # beside the file on every read.
        names = list(batch.columns)
        try:
            pyogrio.raw.write(
                self.tmp, batch.geometry, [batch.columns[c] for c in names], names, layer=layer, driver="GPKG",
                geometry_type="MultiPolygon", crs=self.crs, promote_to_multi=True, append=append,
                layer_options=None if append else {"SPATIAL_INDEX": "YES"},
                layer_metadata=None if append else (self.metadata or None),
            )
        except Exception as exc:  # pyogrio raises DataSourceError/FieldError/OSError variants
            self.tmp.unlink(missing_ok=True)
            raise ExportError(f"cannot write layer {layer!r} to {self.target.name} ({exc}); "
                              "check free space and permissions") from exc


def _convert(gpkg: Path, layer: str, fmt: str, metadata: dict[str, str] | None) -> Path:
    """``gpkg`` -> ``<stem>.<fmt>`` beside it, streamed through GDAL in Arrow batches (bounded memory)."""
    driver, suffix = FORMATS[fmt]
    target = gpkg.with_suffix(suffix)
    tmp = _temp_path(target)
    tmp.unlink(missing_ok=True)
    options = {"RFC7946": "YES"} if fmt == "geojson" else {"SPATIAL_INDEX": "YES"}  # RFC 7946: EPSG:4326
    try:
        with pyogrio.open_arrow(gpkg, layer=layer, use_pyarrow=False) as (meta, reader):
            pyogrio.write_arrow(reader, tmp, layer=layer, driver=driver, geometry_name=meta["geometry_name"],
                                geometry_type=meta["geometry_type"], crs=meta["crs"], layer_options=options,
                                dataset_metadata=(metadata or None) if fmt == "fgb" else None)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot convert {gpkg.name} to {fmt} ({exc}); check free space and permissions") from exc
    os.replace(tmp, target)
    return target


def _check_formats(formats: Sequence[str]) -> None:
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"unknown format(s) {unknown}; use any of {sorted(FORMATS)}")


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
    _check_formats(formats)
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
