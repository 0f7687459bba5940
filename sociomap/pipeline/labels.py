"""sociomap.pipeline.labels: OSM reference layers in the same schema as a run, to evaluate runs against.

Every OSM object whose tags match a query's socio-classes (``taxonomy.toml``) becomes one feature of
its socio-function's layer, written with the same writer and columns as ``sociomap run``.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import geopandas as gpd

from sociomap.pipeline.run import new_run_id
from sociomap.taxonomy import resolve_queries

logger = logging.getLogger(__name__)


@dataclass
class LabelsSummary:
    """Per-layer feature counts and the files written."""

    run_id: str
    layers: dict[str, int] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)


def _ground_area_m2(frame: gpd.GeoDataFrame) -> list[float]:
    if frame.empty:
        return []
    return list(frame.geometry.to_crs(frame.estimate_utm_crs()).area)


def _as_run_schema(frame: gpd.GeoDataFrame, run_id: str, source: str) -> gpd.GeoDataFrame:
    """The run's columns (query, function, area_m2, ..., crosses_seam) plus the OSM name, class and id."""
    out = frame.copy()
    out["area_m2"] = _ground_area_m2(frame)
    out["n_tiles"] = 0
    out["n_pieces"] = 1
    out["tiles"] = ""
    out["run_id"] = run_id
    out["model"] = source
    out["prompts"] = ""
    out["reasoning"] = ""
    out["crosses_seam"] = False
    out["confidence"] = 1.0  # reference labels: what OSM says, not a prediction
    cols = ["query", "function", "area_m2", "n_tiles", "n_pieces", "tiles", "run_id", "model", "prompts",
            "reasoning", "crosses_seam", "confidence", "socio_class", "name", "osm_id"]
    return out[cols + ["geometry"]]


def write_labels(osm: Path, classes: tuple[str, ...], out: Path, crs: str = "EPSG:4326",
                 bounds_wgs84: tuple[float, float, float, float] | None = None,
                 index_dir: Path | None = None) -> LabelsSummary:
    """Publish ``OUT/<socio-function>.gpkg`` reference layers from an OSM file, as one output set.

    Like a run's layers, they are assembled in ``OUT/.sociomap/staging`` and published in one atomic step
    with a run.json, under the output lock, so ``sociomap export``, ``view`` and ``eval city`` read them as
    they read a run. The file is read once into an OSM index (``index_dir``, default ``OUT/.sociomap/osm``)
    and its areas are streamed from it in chunks: memory stays bounded on a country-sized extract.
    """
    import time

    import pyogrio

    from sociomap.export import write_geopackages
    from sociomap.fingerprint import file_fingerprint
    from sociomap.maps.osm_features import iter_socio_features
    from sociomap.maps.osm_index import prepare_osm_index
    from sociomap.pipeline.lock import output_lock
    from sociomap.pipeline.manifest import versions, write_json_atomic
    from sociomap.pipeline.outputs import (MANIFEST, check_user_files, prune_sets, publish_set, remove_leftovers,
                                           staging_dir, state_dir)

    queries = resolve_queries(classes)
    out = Path(out)
    summary = LabelsSummary(new_run_id())
    source = f"osm:{Path(osm).name}"
    by_layer = {layer: {q.text for q in queries if q.layer == layer} for layer in dict.fromkeys(q.layer for q in queries)}
    check_user_files(out, [f"{layer}.gpkg" for layer in by_layer], overwrite=False)
    started = time.time()
    with output_lock(state_dir(out)):
        remove_leftovers(out)
        index = prepare_osm_index(osm, bounds_wgs84, index_dir or state_dir(out) / "osm")
        staging = staging_dir(out, f"labels-{summary.run_id}")
        building = staging / "set"
        building.mkdir()
        try:
            stage = {layer: staging / f"{layer}.fgb" for layer in by_layer}
            for chunk in iter_socio_features(index, queries):
                for layer, texts in by_layer.items():
                    part = _as_run_schema(chunk[chunk["query"].isin(texts)], summary.run_id, source)
                    if len(part):
                        pyogrio.write_dataframe(part, stage[layer], driver="FlatGeobuf",
                                                append=stage[layer].exists())
                        summary.layers[layer] = summary.layers.get(layer, 0) + len(part)
            metadata = {"run_id": summary.run_id, "source": source, "kind": "osm reference labels"}
            for layer in by_layer:
                summary.layers.setdefault(layer, 0)
                if stage[layer].exists():
                    _copy_in_chunks(stage[layer], building, layer, crs, metadata)
                else:  # asked for, nothing found: an empty layer with the schema
                    write_geopackages([(layer, _as_run_schema(_empty_features(), summary.run_id, source))],
                                      building, crs=crs, metadata=metadata)
            manifest = {
                "status": "ok", "kind": "osm reference labels", "run_id": summary.run_id, "set_id": summary.run_id,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "inputs": {"osm": file_fingerprint(Path(osm))},
                "config": {"osm": str(osm), "classes": list(classes), "crs": crs,
                           "bbox": list(bounds_wgs84) if bounds_wgs84 else None},
                "queries": [asdict(q) for q in queries], "segmenter": {"segmenter": "osm-labels", "model": source},
                "versions": versions(), "layers": summary.layers, "carried": {}, "exports": {},
                "files": {"layers": {layer: f"{layer}.gpkg" for layer in by_layer}, "exports": {}},
                "outputs": [str(out / f"{layer}.gpkg") for layer in by_layer] + [str(out / MANIFEST)],
            }
            write_json_atomic(building / MANIFEST, manifest)
            publish_set(out, building, summary.run_id)
            prune_sets(out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    summary.outputs = [out / f"{layer}.gpkg" for layer in by_layer]
    return summary


def _copy_in_chunks(stage: Path, out: Path, layer: str, crs: str, metadata: dict, chunk: int = 50_000) -> Path:
    """Staged features -> ``out/<layer>.gpkg`` (temp name + rename), CHUNK rows in memory at a time."""
    import os

    import pyogrio

    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{layer}.gpkg"
    tmp = target.with_name(f".{layer}.partial.gpkg")
    tmp.unlink(missing_ok=True)
    total = pyogrio.read_info(stage)["features"]
    for start in range(0, total, chunk):  # metadata on the layer only: dataset metadata makes GDAL write .aux.xml
        part = pyogrio.read_dataframe(stage, skip_features=start, max_features=chunk).to_crs(crs)
        pyogrio.write_dataframe(part, tmp, layer=layer, driver="GPKG", promote_to_multi=True, append=start > 0,
                                layer_options={"SPATIAL_INDEX": "YES"}, layer_metadata=metadata)
    os.replace(tmp, target)
    return target


def _empty_features() -> gpd.GeoDataFrame:
    from sociomap.maps.osm_features import COLUMNS

    return gpd.GeoDataFrame({c: [] for c in COLUMNS if c != "geometry"}, geometry=gpd.GeoSeries([], crs=3857),
                            crs=3857)
