"""sociomap.pipeline.labels: OSM reference layers in the same schema as a run, to evaluate runs against.

Every OSM object whose tags match a query's socio-classes (``taxonomy.toml``) becomes one feature of
its socio-function's layer, written with the same writer and columns as ``sociomap run``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
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
    cols = ["query", "function", "area_m2", "n_tiles", "n_pieces", "tiles", "run_id", "model", "prompts",
            "reasoning", "crosses_seam", "socio_class", "name", "osm_id"]
    return out[cols + ["geometry"]]


def write_labels(osm: Path, classes: tuple[str, ...], out: Path, crs: str = "EPSG:4326",
                 bounds_wgs84: tuple[float, float, float, float] | None = None) -> LabelsSummary:
    """Write ``OUT/<socio-function>.gpkg`` reference layers from an OSM file."""
    from sociomap.export import write_geopackages
    from sociomap.maps.osm_data import load_osm
    from sociomap.maps.osm_features import socio_features

    queries = resolve_queries(classes)
    summary = LabelsSummary(new_run_id())
    features = socio_features(load_osm(osm, bounds_wgs84), queries)
    source = f"osm:{Path(osm).name}"
    layers = []
    for layer in dict.fromkeys(q.layer for q in queries):
        texts = {q.text for q in queries if q.layer == layer}
        frame = _as_run_schema(features[features["query"].isin(texts)], summary.run_id, source)
        layers.append((layer, frame))
        summary.layers[layer] = len(frame)
    metadata = {"run_id": summary.run_id, "source": source, "kind": "osm reference labels"}
    summary.outputs = write_geopackages(layers, out, crs=crs, metadata=metadata)
    return summary
