"""sociomap.evaluation.city: a finished run judged against reference layers (e.g. `sociomap labels` from OSM).

Per socio-function layer present on both sides (docs/evaluation.md):

- the **covered area** is where the run could see: the valid-data footprint of the run's mosaic (its
  ``run.json`` names the file; read from its mask at up to ``FOOTPRINT_PX`` px, so up to one coarse pixel of
  error at the border), or a polygon file given with ``--footprint``, optionally cut to a bounding box;
- both layers are cut to it and measured on the ground (a Lambert equal-area projection centred on it);
- **area IoU** = |M ∩ R| / |M ∪ R| of the union of model features M and of reference features R, with area
  precision |M ∩ R| / |M| and recall |M ∩ R| / |R|;
- **objects**: each model feature as published; reference features of one layer that overlap or lie within
  one run pixel of each other are one object (a binary mask per query cannot tell them apart), and reference
  objects smaller than the run's ``min_area_m2`` are left out (the run drops such objects). A model feature
  and a reference object match at IoU >= 0.5, one-to-one (``metrics.match_one_to_one``); precision, recall
  and F1 follow;
- unmatched model features and unmatched reference objects become two layers per function in
  ``disagreements.gpkg``: ``<slug>_model_only`` (candidate OSM edits, or model errors) and
  ``<slug>_reference_only`` (model misses);
- when the model layer has a ``confidence`` column, precision and recall per confidence bin and at each
  threshold (features with confidence >= t, matched again) let a user pick a threshold.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from sociomap.errors import InputError
from sociomap.evaluation.metrics import IOU_THRESHOLD, match_one_to_one, ratio

logger = logging.getLogger(__name__)

FOOTPRINT_PX = 4096  # longest side of the mask read to find the mosaic's valid-data footprint
CONFIDENCE_BINS = tuple(round(0.1 * i, 1) for i in range(11))
DISAGREEMENTS = "disagreements.gpkg"
MANIFEST = "run.json"


@dataclass(frozen=True)
class RunLayers:
    """A published run: its set folder, manifest and one GeoPackage per socio-function slug."""

    set_dir: Path
    manifest: dict
    layers: dict[str, Path]


def published_set(out: Path) -> Path:
    """The folder of a run's published set (``OUT/current``), or OUT itself for a folder of layers."""
    from sociomap.pipeline.outputs import published_set as find

    return find(Path(out)) or Path(out)


def open_run(run_dir: Path) -> RunLayers:
    """Read a finished run's manifest and locate its layer files (``files.layers``, else ``<slug>.gpkg``)."""
    set_dir = published_set(run_dir)
    try:
        manifest = json.loads((set_dir / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{run_dir}: no readable {MANIFEST}; pass the --out folder of a finished "
                         f"`sociomap run` ({exc})") from exc
    if manifest.get("status") != "ok":
        raise InputError(f"{set_dir / MANIFEST}: status {manifest.get('status')!r}; only a finished run "
                         "can be evaluated")
    files = (manifest.get("files", {}).get("layers")
             or {slug: f"{slug}.gpkg" for slug in manifest.get("layers", {})})
    layers = {slug: set_dir / name for slug, name in files.items()}
    missing = [str(p) for p in layers.values() if not p.is_file()]
    if missing:
        raise InputError(f"{set_dir}: layer files named in {MANIFEST} are missing: {', '.join(missing)}")
    return RunLayers(set_dir, manifest, layers)


def reference_layers(reference: Path) -> dict[str, tuple[Path, str]]:
    """slug -> (file, layer) of reference layers: a folder of ``<slug>.gpkg`` (``sociomap labels`` output, or
    another run) or one GeoPackage whose layers are named by slug."""
    import pyogrio

    reference = Path(reference)
    if reference.is_dir():
        folder = published_set(reference)
        files = sorted(p for p in folder.glob("*.gpkg") if p.name != "sociomap.gpkg")
        found = {}
        for path in files:
            layer = pyogrio.list_layers(path)[0][0]
            found[path.stem] = (path, layer)
    elif reference.is_file():
        try:
            found = {name: (reference, name) for name, _ in pyogrio.list_layers(reference)}
        except Exception as exc:  # pyogrio raises DataSourceError variants
            raise InputError(f"{reference}: not a readable GeoPackage ({exc})") from exc
    else:
        raise InputError(f"{reference}: no such reference folder or GeoPackage")
    if not found:
        raise InputError(f"{reference}: no reference layers (*.gpkg); make them with `sociomap labels`")
    return found


def mosaic_footprint(path: Path, max_px: int = FOOTPRINT_PX) -> shapely.Geometry:
    """The valid-data area of a raster (its dataset mask: nodata, alpha, internal masks), in EPSG:4326."""
    import rasterio
    from rasterio.features import shapes

    try:
        with rasterio.open(path) as ds:
            scale = max(1.0, max(ds.width, ds.height) / max_px)
            shape = (max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
            mask = ds.dataset_mask(out_shape=shape)
            transform = ds.transform * ds.transform.scale(ds.width / shape[1], ds.height / shape[0])
            crs = ds.crs
    except rasterio.errors.RasterioError as exc:
        raise InputError(f"{path}: cannot read the run's mosaic to find the covered area ({exc}); "
                         "pass --footprint") from exc
    polygons = [shapely.geometry.shape(g) for g, v in shapes(mask, mask=mask > 0, transform=transform)
                if v > 0]
    if not polygons:
        raise InputError(f"{path}: the mosaic has no valid pixels; nothing was covered")
    return gpd.GeoSeries([shapely.union_all(polygons)], crs=crs).to_crs(4326).iloc[0]


def run_footprint(run: RunLayers, footprint: Path | None = None) -> shapely.Geometry:
    """The covered area in EPSG:4326: ``footprint`` (any vector file) if given, else the run's mosaic."""
    if footprint is not None:
        try:
            frame = gpd.read_file(footprint, engine="pyogrio")
        except Exception as exc:  # pyogrio/GDAL errors
            raise InputError(f"{footprint}: cannot read the --footprint file ({exc})") from exc
        if frame.crs is None or frame.empty:
            raise InputError(f"{footprint}: --footprint needs polygons with a CRS")
        return shapely.union_all(frame.to_crs(4326).geometry.values)
    inputs = run.manifest.get("inputs", {}).get("image", {})
    image = run.manifest.get("config", {}).get("image") or inputs.get("path")
    if not image or not Path(image).is_file():
        raise InputError(f"{run.set_dir / MANIFEST}: the run's mosaic {image!r} is not readable here; "
                         "pass --footprint with a polygon of the covered area")
    recorded = inputs.get("bytes")
    if recorded is not None and Path(image).stat().st_size != recorded:
        logger.warning("%s changed size since the run; its footprint may not be the covered area", image)
    return mosaic_footprint(Path(image))


def equal_area_crs(area_wgs84: shapely.Geometry) -> str:
    """A Lambert azimuthal equal-area CRS centred on an area: true m² anywhere on it."""
    c = area_wgs84.centroid
    return f"+proj=laea +lat_0={c.y:.6f} +lon_0={c.x:.6f} +datum=WGS84 +units=m +no_defs"


def run_pixel_m(run: RunLayers, lat: float) -> float:
    """Ground size of one run pixel (from the run's zoom and tile size)."""
    from sociomap.tiling.grid import ground_resolution_m

    tiling = run.manifest.get("config", {}).get("tiling", {})
    return ground_resolution_m(int(tiling.get("zoom", 16)), int(tiling.get("tile_size", 768)), lat)


def _cut(frame: gpd.GeoDataFrame, crs: str, covered: shapely.Geometry) -> gpd.GeoDataFrame:
    """Features in ``crs`` cut to the covered area (polygon parts only); features left without area go."""
    frame = frame.to_crs(crs)
    geoms = shapely.make_valid(frame.geometry.values)
    shapely.prepare(covered)
    inside = shapely.contains_properly(covered, geoms)  # most features: no cutting needed
    cut = geoms.copy()
    cut[~inside] = shapely.intersection(geoms[~inside], covered)
    keep, kept = [], []
    for i, geom in enumerate(cut):
        parts = [p for p in shapely.get_parts(geom) if shapely.area(p) > 0]  # drop lines/points of the cut
        if parts:
            keep.append(i)
            kept.append(parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts))
    out = frame.iloc[keep].reset_index(drop=True)
    return out.set_geometry(gpd.GeoSeries(kept, crs=crs))


def reference_objects(frame: gpd.GeoDataFrame, tolerance_m: float) -> gpd.GeoDataFrame:
    """Reference features that overlap or lie within ``tolerance_m`` of each other, unioned into one object
    each, with their names and OSM ids joined by ";"."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    geoms = frame.geometry.values
    n = len(geoms)
    if n == 0:
        return gpd.GeoDataFrame({"names": [], "osm_ids": [], "n_features": []}, geometry=[], crs=frame.crs)
    a, b = shapely.STRtree(geoms).query(geoms, predicate="dwithin", distance=tolerance_m)
    _, group = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    order = np.argsort(group, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(group[order])) + 1)
    names, ids = (frame[c].to_numpy() if c in frame else np.full(n, None) for c in ("name", "osm_id"))
    return gpd.GeoDataFrame({
        "names": [_joined(names[m]) for m in members], "osm_ids": [_joined(ids[m]) for m in members],
        "n_features": [len(m) for m in members],
        "geometry": [geoms[m[0]] if len(m) == 1 else shapely.union_all(geoms[m]) for m in members],
    }, geometry="geometry", crs=frame.crs)


def _joined(values: np.ndarray) -> str:
    return ";".join(dict.fromkeys(str(v) for v in values if isinstance(v, str) and v))


def object_ious(model: np.ndarray, reference: np.ndarray) -> list[tuple[int, int, float]]:
    """(model index, reference index, IoU) for every intersecting pair of polygons."""
    if len(model) == 0 or len(reference) == 0:
        return []
    m, r = shapely.STRtree(reference).query(model, predicate="intersects")
    inter = shapely.area(shapely.intersection(model[m], reference[r]))
    union = shapely.area(model[m]) + shapely.area(reference[r]) - inter
    iou = inter / np.maximum(union, 1e-12)
    return [(int(i), int(j), float(v)) for i, j, v in zip(m, r, iou, strict=True)]


@dataclass(frozen=True)
class ObjectCounts:
    """Object-level matching outcome."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float | None:
        return ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


@dataclass(frozen=True)
class ConfidenceRow:
    """Precision / recall of the model features at or above a confidence threshold, and within its bin."""

    threshold: float
    kept: int
    precision: float | None
    recall: float | None
    f1: float | None
    in_bin: int  # features with threshold <= confidence < next threshold (the last bin includes 1.0)
    bin_precision: float | None


@dataclass
class FunctionScore:
    """One socio-function layer, run vs reference."""

    layer: str
    n_model: int
    n_reference: int
    model_area_m2: float
    reference_area_m2: float
    intersection_m2: float
    area_iou: float | None
    area_precision: float | None
    area_recall: float | None
    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None
    confidence: list[ConfidenceRow] | str = "no confidence attribute"


@dataclass
class CityEvaluation:
    """The whole comparison."""

    run: str
    reference: str
    covered_m2: float
    pixel_m: float
    threshold: float
    min_area_m2: float
    scores: list[FunctionScore] = field(default_factory=list)
    missing_reference: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


def _counts(edges: list[tuple[int, int, float]], model_ids: np.ndarray, n_reference: int,
            threshold: float) -> tuple[ObjectCounts, list[tuple[int, int, float]]]:
    keep = {int(i) for i in model_ids}
    matches = match_one_to_one([e for e in edges if e[0] in keep], threshold)
    return ObjectCounts(len(matches), len(keep) - len(matches), n_reference - len(matches)), matches


def confidence_table(confidence: np.ndarray, edges: list[tuple[int, int, float]], n_reference: int,
                     threshold: float, matched: set[int]) -> list[ConfidenceRow]:
    """Per threshold t: model features with confidence >= t matched again; per bin: the share of its features
    matched in the full matching (``matched``)."""
    rows = []
    for k, t in enumerate(CONFIDENCE_BINS[:-1]):
        counts, _ = _counts(edges, np.flatnonzero(confidence >= t), n_reference, threshold)
        upper = CONFIDENCE_BINS[k + 1]
        in_bin = np.flatnonzero((confidence >= t) & ((confidence < upper) | (upper == 1.0)))
        bin_precision = ratio(sum(int(i) in matched for i in in_bin), len(in_bin))
        rows.append(ConfidenceRow(t, counts.tp + counts.fp, counts.precision, counts.recall, counts.f1,
                                  len(in_bin), bin_precision))
    return rows


def compare_layer(layer: str, model: gpd.GeoDataFrame, reference: gpd.GeoDataFrame, tolerance_m: float,
                  min_area_m2: float, threshold: float = IOU_THRESHOLD
                  ) -> tuple[FunctionScore, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Score one layer; both frames already cut to the covered area in an equal-area CRS.

    Returns (score, model features not matched, reference objects not matched)."""
    m_union = shapely.union_all(model.geometry.values) if len(model) else shapely.Polygon()
    r_union = shapely.union_all(reference.geometry.values) if len(reference) else shapely.Polygon()
    inter = shapely.area(shapely.intersection(m_union, r_union))
    m_area, r_area = shapely.area(m_union), shapely.area(r_union)
    objects = reference_objects(reference, tolerance_m)
    objects = objects[objects.area >= min_area_m2].reset_index(drop=True)
    edges = object_ious(model.geometry.values, objects.geometry.values)
    counts, matches = _counts(edges, np.arange(len(model)), len(objects), threshold)
    matched_model, matched_ref = {i for i, _, _ in matches}, {j for _, j, _ in matches}
    best_for_model, best_for_ref = _best(edges, 0), _best(edges, 1)
    model_only = model[[i not in matched_model for i in range(len(model))]].copy()
    model_only["best_iou"] = [best_for_model.get(i, 0.0) for i in model_only.index]
    reference_only = objects[[j not in matched_ref for j in range(len(objects))]].copy()
    reference_only["best_iou"] = [best_for_ref.get(j, 0.0) for j in reference_only.index]
    for frame in (model_only, reference_only):
        frame["area_m2"] = frame.geometry.area
    score = FunctionScore(
        layer=layer, n_model=len(model), n_reference=len(objects), model_area_m2=m_area,
        reference_area_m2=r_area, intersection_m2=inter, area_iou=ratio(inter, m_area + r_area - inter),
        area_precision=ratio(inter, m_area), area_recall=ratio(inter, r_area), tp=counts.tp, fp=counts.fp,
        fn=counts.fn, precision=counts.precision, recall=counts.recall, f1=counts.f1)
    if "confidence" in model.columns:
        confidence = pd.to_numeric(model["confidence"], errors="coerce").fillna(0.0).to_numpy()
        score.confidence = confidence_table(confidence, edges, len(objects), threshold, matched_model)
    return score, model_only, reference_only


def _best(edges: list[tuple[int, int, float]], side: int) -> dict[int, float]:
    best: dict[int, float] = {}
    for edge in edges:
        best[edge[side]] = max(best.get(edge[side], 0.0), edge[2])
    return best


def evaluate_city(run_dir: Path, reference: Path, out: Path, footprint: Path | None = None,
                  bbox: tuple[float, float, float, float] | None = None, threshold: float = IOU_THRESHOLD,
                  min_area_m2: float | None = None) -> CityEvaluation:
    """Compare a run's layers with reference layers over the covered area; write the report to ``out``."""
    import pyogrio

    from sociomap.evaluation.report import write_city_report

    run = open_run(run_dir)
    references = reference_layers(reference)
    covered = run_footprint(run, footprint)
    if bbox is not None:
        covered = shapely.intersection(covered, shapely.box(*bbox))
    if covered.is_empty:
        raise InputError("the covered area is empty (check --bbox / --footprint against the run's mosaic)")
    crs = equal_area_crs(covered)
    covered_m = gpd.GeoSeries([covered], crs=4326).to_crs(crs).iloc[0]
    pixel = run_pixel_m(run, covered.centroid.y)
    if min_area_m2 is None:
        min_area_m2 = float(run.manifest.get("config", {}).get("merge", {}).get("min_area_m2", 0.0))
    result = CityEvaluation(str(run.set_dir), str(reference), float(covered_m.area), pixel, threshold,
                            min_area_m2)
    disagreements = []
    for slug, path in run.layers.items():
        if slug not in references:
            result.missing_reference.append(slug)
            continue
        ref_path, ref_layer = references[slug]
        model = _cut(pyogrio.read_dataframe(path), crs, covered_m)
        ref = _cut(pyogrio.read_dataframe(ref_path, layer=ref_layer), crs, covered_m)
        score, model_only, reference_only = compare_layer(slug, model, ref, pixel, min_area_m2, threshold)
        result.scores.append(score)
        disagreements += [(f"{slug}_model_only", model_only), (f"{slug}_reference_only", reference_only)]
    if not result.scores:
        raise InputError(f"{reference}: no layer matches the run's layers {sorted(run.layers)} "
                         f"(reference has {sorted(references)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.outputs = write_city_report(out, result)
    result.outputs.append(write_disagreements(out / DISAGREEMENTS, disagreements))
    return result


def write_disagreements(path: Path, layers: list[tuple[str, gpd.GeoDataFrame]], crs: str = "EPSG:4326"
                        ) -> Path:
    """All disagreement layers in one GeoPackage, written under a temporary name and renamed when complete."""
    import os

    import pyogrio

    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")  # GDAL picks the driver by suffix
    tmp.unlink(missing_ok=True)
    try:
        for name, frame in layers:
            frame = frame.to_crs(crs)
            pyogrio.write_dataframe(frame, tmp, layer=name, driver="GPKG", promote_to_multi=True,
                                    geometry_type="MultiPolygon" if frame.empty else None,
                                    layer_options={"SPATIAL_INDEX": "YES"})
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
