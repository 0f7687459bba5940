"""sociomap.viewer.view: what a viewer shows for one output folder (layers, counts, frame, backgrounds).

A ``RunView`` is read once from an output folder: the published set is resolved once (``OUT/current``
when it exists, else OUT itself) and everything else is read inside that set. Model runs, the OSM
baseline and ``sociomap labels`` folders are all viewable; the view says plainly which one it is.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyogrio

from sociomap.errors import InputError
from sociomap.pipeline.outputs import STATE_DIR
from sociomap.viewer.style import layer_colour

logger = logging.getLogger(__name__)

MANIFEST = "run.json"
VECTOR_ARCHIVE = "sociomap.pmtiles"  # written by `sociomap export --format pmtiles`
IMAGERY_ARCHIVE = "imagery.pmtiles"  # written by sociomap.viewer.tiles.write_imagery_tiles
BASEMAP_ARCHIVE = "basemap.pmtiles"  # written by sociomap.viewer.tiles.write_basemap_tiles
_COMBINED = "sociomap.gpkg"


@functools.cache
def _read_only_gdal() -> None:
    """Keep GDAL from writing ``.aux.xml`` sidecars beside GeoPackages it only reads (GDAL 3.12 does
    so for one with dataset metadata, e.g. `sociomap labels` output): a viewer never writes into a set."""
    pyogrio.set_gdal_config_options({"GDAL_PAM_ENABLED": "NO"})


def published_set(out: Path) -> Path:
    """The folder of OUT's published output set, resolved once (OUT itself for a plain folder of layers)."""
    from sociomap.pipeline.outputs import published_set as resolve

    return resolve(Path(out)) or Path(out)


@dataclass(frozen=True)
class Layer:
    """One socio-function layer of a run.

    Attributes:
        slug: layer name (file stem, MVT layer id).
        title: the socio-function as people read it ("Park and greenspace").
        path: its GeoPackage.
        count: number of features.
        colour: "#rrggbb" used for it everywhere (map, legend, pictures).
        bounds: (west, south, east, north) in EPSG:4326, None for an empty layer.
        fields: attribute names.
    """

    slug: str
    title: str
    path: Path
    count: int
    colour: str
    bounds: tuple[float, float, float, float] | None
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Background:
    """A raster shown under the layers: the satellite imagery or the map.

    Attributes:
        role: "imagery" or "map".
        label: what the legend calls it.
        attribution: credit line for the map corner.
        archive: a raster PMTiles archive in the set, served as is, or None.
        source: the mosaic / map path or URL read tile by tile when there is no archive.
        options: map-source options (``language``, ``bounds_wgs84``) for OSM files.
        bands, rescale: mosaic band selection and stretch, as the run used them.
    """

    role: str
    label: str
    attribution: str
    archive: Path | None = None
    source: str | None = None
    options: dict = field(default_factory=dict)
    bands: tuple[int, ...] | None = None
    rescale: tuple[float, float] | None = None


@dataclass(frozen=True)
class RunView:
    """Everything the page, the server and the pictures need from one output folder.

    Attributes:
        out: the output folder as given (its cache holds the model texts).
        set_dir: the published set read from (resolved once).
        kind: "model", "osm-baseline" or "labels".
        title, description: headline and one plain sentence on what the layers are.
        random_weights: the layers came from a random test checkpoint (meaningless).
        layers: the socio-function layers, in the run's order.
        bounds: the frame (west, south, east, north) in EPSG:4326.
        vector_archive: ``sociomap.pmtiles`` when present and not older than the layers.
        backgrounds: imagery and/or map, in drawing order (first is lowest).
        notes: plain statements shown on the page (what is missing and why).
    """

    out: Path
    set_dir: Path
    kind: str
    title: str
    description: str
    random_weights: bool
    layers: tuple[Layer, ...]
    bounds: tuple[float, float, float, float]
    vector_archive: Path | None
    backgrounds: tuple[Background, ...]
    notes: tuple[str, ...] = ()
    run_id: str | None = None

    def background(self, role: str) -> Background | None:
        """The imagery or map background, if the view has one."""
        return next((b for b in self.backgrounds if b.role == role), None)


def open_run(
    out: Path,
    image: str | None = None,
    map_path: str | None = None,
    osm: str | None = None,
    map_language: str | None = None,
) -> RunView:
    """Read the view of output folder ``out``.

    ``image`` / ``map_path`` / ``osm`` name the satellite mosaic and the map when the folder does not
    record them (``sociomap labels`` output) or to override what ``run.json`` recorded.
    """
    _read_only_gdal()
    out = Path(out)
    if not out.is_dir():
        raise InputError(
            f"{out}: no such folder; pass the output folder of `sociomap run` or `sociomap labels`"
        )
    set_dir = published_set(out)
    manifest = _read_manifest(set_dir)
    layers = _read_layers(set_dir, manifest)
    notes: list[str] = []
    kind, random_weights = _kind(manifest, layers)
    imagery = _imagery(set_dir, manifest, image, notes)
    basemap = _basemap(set_dir, manifest, map_path, osm, map_language, notes)
    bounds = _frame(layers, imagery)
    if bounds is None:
        raise InputError(
            f"{out}: no features in any layer and no satellite imagery to frame the map; "
            "pass --image with the run's mosaic"
        )
    if (
        basemap is not None
        and basemap.source
        and basemap.options.get("bounds_wgs84") is None
        and _is_osm(basemap.source)
    ):
        basemap = Background(**{**basemap.__dict__, "options": {**basemap.options, "bounds_wgs84": bounds}})
    backgrounds = tuple(b for b in (imagery, basemap) if b is not None)
    if imagery is None and not (image or ((manifest or {}).get("config") or {}).get("image")):
        notes.append("No satellite imagery for this area: the layers are drawn over the map."
                     if basemap else "No satellite imagery or map for this area: the layers are drawn alone.")
    return RunView(
        out=out,
        set_dir=set_dir,
        kind=kind,
        title=_title(out, kind),
        random_weights=random_weights,
        description=_describe(kind, random_weights, manifest, layers),
        layers=layers,
        bounds=bounds,
        vector_archive=_vector_archive(set_dir, layers, notes),
        backgrounds=backgrounds,
        notes=tuple(notes),
        run_id=(manifest or {}).get("run_id") or _first_metadata(layers, "run_id"),
    )


def _read_manifest(set_dir: Path) -> dict | None:
    path = set_dir / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable run manifest ({exc}); rerun `sociomap run`") from exc


def _layer_files(set_dir: Path, manifest: dict | None) -> list[tuple[Path, str]]:
    """(GeoPackage, layer) pairs: the manifest's file list, else every per-function GeoPackage."""
    listed = ((manifest or {}).get("files") or {}).get("layers")
    if listed:
        return [(set_dir / name, slug) for slug, name in listed.items()]
    files = [(p, p.stem) for p in sorted(set_dir.glob("*.gpkg")) if p.name != _COMBINED]
    if not files and (set_dir / _COMBINED).exists():
        files = [(set_dir / _COMBINED, name) for name, _ in pyogrio.list_layers(set_dir / _COMBINED)]
    if manifest and manifest.get("layers"):  # keep the run's order
        order = list(manifest["layers"])
        files.sort(key=lambda f: order.index(f[1]) if f[1] in order else len(order))
    return files


def _read_layers(set_dir: Path, manifest: dict | None) -> tuple[Layer, ...]:
    files = _layer_files(set_dir, manifest)
    if not files:
        raise InputError(
            f"{set_dir}: no GeoPackage layers (*.gpkg); pass the output folder of `sociomap run` "
            "or `sociomap labels`"
        )
    titles = _titles_from_queries(manifest)
    layers = []
    for index, (path, slug) in enumerate(files):
        try:
            info = pyogrio.read_info(path, layer=slug, force_total_bounds=True)
        except Exception as exc:  # pyogrio's DataSourceError / DataLayerError
            raise InputError(
                f"{path}: cannot read layer {slug!r} ({exc}); rerun the command that wrote it"
            ) from exc
        bounds = info.get("total_bounds")
        if bounds is not None and info.get("crs") not in (None, "EPSG:4326"):
            from pyproj import Transformer

            bounds = Transformer.from_crs(info["crs"], "EPSG:4326", always_xy=True).transform_bounds(*bounds)
        layers.append(
            Layer(
                slug=slug,
                title=titles.get(slug) or _title_from_data(path, slug, info),
                path=path,
                count=int(info["features"]),
                colour=layer_colour(slug, index),
                bounds=tuple(float(v) for v in bounds) if bounds is not None and info["features"] else None,
                fields=tuple(str(f) for f in info["fields"]),
            )
        )
    return tuple(layers)


def _titles_from_queries(manifest: dict | None) -> dict[str, str]:
    from sociomap.taxonomy import slugify

    titles: dict[str, str] = {}
    for q in (manifest or {}).get("queries", []):
        name = q.get("function") or q.get("text")
        if name:
            titles.setdefault(slugify(name), name)
    return titles


def _title_from_data(path: Path, slug: str, info: dict) -> str:
    if info["features"] and "function" in info["fields"]:
        first = pyogrio.read_dataframe(
            path, layer=slug, columns=["function"], max_features=1, read_geometry=False
        )
        value = first["function"].iloc[0]
        if isinstance(value, str) and value:
            return value
    return slug.replace("_", " ").capitalize()


def _first_metadata(layers: tuple[Layer, ...], key: str) -> str | None:
    for layer in layers:
        meta = pyogrio.read_info(layer.path, layer=layer.slug).get("layer_metadata") or {}
        if meta.get(key):
            return str(meta[key])
    return None


def _kind(manifest: dict | None, layers: tuple[Layer, ...]) -> tuple[str, bool]:
    if manifest is None or "kind" in manifest:  # `sociomap labels` sets record their kind
        kind = (manifest or {}).get("kind") or _first_metadata(layers, "kind") or ""
        return ("labels" if "label" in kind else "model"), _first_metadata(layers, "random_weights") == "true"
    segmenter = (manifest.get("segmenter") or {}).get("segmenter") or manifest.get("config", {}).get(
        "reasoner_kind"
    )
    return ("osm-baseline" if segmenter == "osm" else "model"), bool(manifest.get("random_weights"))


def _features(n: int) -> str:
    return f"{n:,} feature{'' if n == 1 else 's'}"


def _describe(kind: str, random_weights: bool, manifest: dict | None, layers: tuple[Layer, ...]) -> str:
    """One plain sentence on where the layers come from (the random-weights warning is shown apart)."""
    total = _features(sum(layer.count for layer in layers))
    if kind == "labels":
        source = _first_metadata(layers, "source") or "an OSM file"
        return (
            f"OpenStreetMap reference layers ({source.removeprefix('osm:')}): OSM objects whose tags match "
            f"each socio-function; no model involved. {total}."
        )
    if kind == "osm-baseline":
        return (
            f"Weights-free baseline: each tile's mask drawn from OSM tags, merged like a model run. {total}."
        )
    model = ((manifest or {}).get("segmenter") or {}).get("model", "")
    checkpoint = " (a random test checkpoint from `sociomap model init-tiny`)" if random_weights else ""
    return f"SocioReasoner run, model {Path(model).name or 'unknown'}{checkpoint}: {total}."


def _title(out: Path, kind: str) -> str:
    names = {"labels": "OSM reference layers", "osm-baseline": "OSM baseline run", "model": "sociomap run"}
    return f"{names[kind]}: {_output_name(out)}"


def _output_name(folder: Path) -> str:
    """The user's output folder name, also for a set inside it (OUT/.sociomap/sets/<id>, a set being built)."""
    resolved = Path(folder).resolve()
    for parent in (resolved, *resolved.parents):
        if parent.name == STATE_DIR:
            return parent.parent.name
    return resolved.name


def _exists(source: str) -> bool:
    return "://" in source or source.startswith("/vsi") or Path(source).exists()


def _is_osm(source: str) -> bool:
    from sociomap.maps.osm_data import EXTENSIONS

    return source.lower().endswith(EXTENSIONS)


def _imagery(set_dir: Path, manifest: dict | None, image: str | None, notes: list[str]) -> Background | None:
    archive = set_dir / IMAGERY_ARCHIVE
    config = (manifest or {}).get("config") or {}
    source = image or config.get("image")
    tiling = config.get("tiling") or {}
    label = f"Satellite: {Path(source).name}" if source else "Satellite imagery"
    if archive.exists() and image is None:
        return Background("imagery", label, label, archive=archive)
    if not source:
        return None
    if image is not None and not _exists(image):
        raise InputError(f"{image}: no such file; pass --image with the satellite mosaic to show")
    if not _exists(str(source)):
        notes.append(
            f"Satellite imagery not shown: {source} (recorded in run.json) does not exist from here; "
            "pass --image."
        )
        return None
    bands = tuple(tiling["bands"]) if tiling.get("bands") and image is None else None
    rescale = tuple(tiling["rescale"]) if tiling.get("rescale") and image is None else None
    return Background("imagery", label, label, source=str(source), bands=bands, rescale=rescale)


def _basemap(
    set_dir: Path,
    manifest: dict | None,
    map_path: str | None,
    osm: str | None,
    map_language: str | None,
    notes: list[str],
) -> Background | None:
    archive = set_dir / BASEMAP_ARCHIVE
    config = (manifest or {}).get("config") or {}
    given = map_path or osm
    source = given or config.get("map") or config.get("osm")
    if archive.exists() and given is None:
        return Background("map", "Map", _map_attribution(source), archive=archive)
    if not source:
        notes.append("No map recorded for this output: pass --osm or --map to show one.")
        return None
    if given is not None and not _exists(given):
        raise InputError(f"{given}: no such file; pass --{'osm' if osm else 'map'} with the map to show")
    if not _exists(str(source)):
        notes.append(f"Map not shown: {source} does not exist from here; pass --osm or --map.")
        return None
    language = map_language or (config.get("map_language") if given is None else None)
    options = {"language": language} if _is_osm(str(source)) and language else {}
    label = f"Map: {'OpenStreetMap, rendered locally' if _is_osm(str(source)) else Path(source).name}"
    return Background("map", label, _map_attribution(source), source=str(source), options=options)


def _map_attribution(source: str | None) -> str:
    if source and _is_osm(str(source)):
        return "© OpenStreetMap contributors"
    return f"Map: {Path(source).name}" if source else "Map"


def _frame(layers: tuple[Layer, ...], imagery: Background | None) -> tuple[float, float, float, float] | None:
    boxes = [layer.bounds for layer in layers if layer.bounds is not None]
    if imagery is not None:
        boxes.append(_imagery_bounds(imagery))
    if not boxes:
        return None
    west, south, east, north = (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
    return west, south, east, north


def _imagery_bounds(imagery: Background) -> tuple[float, float, float, float]:
    if imagery.archive is not None:
        from sociomap.viewer.tiles import archive_info

        return archive_info(imagery.archive)["bounds"]
    from sociomap.tiling import Mosaic

    mosaic = Mosaic(imagery.source, imagery.bands, imagery.rescale)
    try:
        return mosaic.geographic_bounds()
    finally:
        mosaic.close()


def _vector_archive(set_dir: Path, layers: tuple[Layer, ...], notes: list[str]) -> Path | None:
    """``sociomap.pmtiles`` unless it is older than a layer or misses one (then GeoJSON is served)."""
    path = set_dir / VECTOR_ARCHIVE
    if not path.exists():
        return None
    if any(layer.path.stat().st_mtime > path.stat().st_mtime for layer in layers):
        notes.append(
            f"{VECTOR_ARCHIVE} is older than the layers; showing the GeoPackages instead "
            "(re-run `sociomap export --format pmtiles`)."
        )
        return None
    from sociomap.viewer.tiles import archive_info

    info = archive_info(path)
    if info["tile_type"] != "mvt" or not {layer.slug for layer in layers if layer.count} <= set(
        info["layers"]
    ):
        notes.append(f"{VECTOR_ARCHIVE} does not hold every layer; showing the GeoPackages instead.")
        return None
    return path


def read_features(layer: Layer):  # noqa: ANN201 - geopandas.GeoDataFrame, imported lazily
    """A layer's features as a GeoDataFrame in EPSG:4326."""
    _read_only_gdal()
    frame = pyogrio.read_dataframe(layer.path, layer=layer.slug)
    return frame.to_crs("EPSG:4326") if frame.crs is not None and frame.crs.to_epsg() != 4326 else frame


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary name in the same folder and a rename; return ``path``."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".partial{path.suffix}")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600; pictures and pages are for sharing
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
