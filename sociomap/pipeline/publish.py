"""sociomap.pipeline.publish: build a new output set from a run (or an export) and publish it atomically.

A run's set holds the layers it made, the layers of the previous set it did not ask for (kept, hard
links), the exports the previous set had (made again from the new layers, so they are never stale),
and run.json. Before the switch the shrink guard compares each new layer with the published one.
``sociomap export`` makes a new set too: the current files plus the new export, recorded in run.json.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from sociomap.errors import InputError, PublishRefusedError
from sociomap.pipeline.manifest import build_manifest, read_manifest, write_json_atomic
from sociomap.pipeline.outputs import (MANIFEST, carry_over, link_or_copy, prune_sets, publish_set, published_set,
                                       remove_leftovers, set_files, staging_dir, state_dir)

logger = logging.getLogger(__name__)

#: Export formats a set can record: name -> default options. "pictures": an overview PNG of every layer over
#: the imagery (or the map) and one thumbnail per layer, for reports (sociomap.viewer.pictures).
EXPORTS = {"pmtiles": {"minzoom": 10, "maxzoom": 16, "engine": "auto"}, "geojson": {}, "fgb": {}, "pictures": {}}


def publish_run(config: object, summary: object, store: object, staging: Path, started: float,
                reporter: object) -> Path:
    """Merge the run's pieces into a new set beside the published one, guard, publish; returns the set folder."""
    out = Path(config.out)
    previous = published_set(out)
    before = (read_manifest(previous / MANIFEST) if previous else None) or {}
    building = staging / "set"
    building.mkdir()
    start = time.perf_counter()
    logger.info("stage: merging and writing layers")
    counts = _write_layers(config, summary, store, building)
    summary.seconds["merge"] += time.perf_counter() - start
    _refuse_shrink(before.get("layers", {}), counts, config)
    reporter.stage("writing")
    start = time.perf_counter()
    summary.layers = dict(counts)
    earlier = {k: v for k, v in before.get("layers", {}).items() if k not in counts}
    for name in carry_over(previous, building, [f"{slug}.gpkg" for slug in earlier]):
        slug = Path(name).stem
        summary.layers[slug] = earlier[slug]
        summary.carried[slug] = before.get("carried", {}).get(slug, before.get("run_id", ""))
    wanted_exports = {**before.get("exports", {}), **{fmt: {} for fmt in config.formats}}
    if wanted_exports:
        logger.info("stage: exports %s", ", ".join(sorted(wanted_exports)))
    sources = {"image": config.image, "map_path": config.map, "osm": config.osm}
    summary.exports = {fmt: write_export(building, fmt, opts, sources) for fmt, opts in sorted(wanted_exports.items())}
    summary.seconds["write"] += time.perf_counter() - start
    summary.set_id = summary.run_id
    _finalize(out, building, summary, config, started)
    return out / "current"


def _write_layers(config: object, summary: object, store: object, folder: Path) -> dict[str, int]:
    """One GeoPackage per socio-function of the run's queries, streamed block by block as the merge
    finishes objects (an empty layer with the schema where nothing was found)."""
    from sociomap.export import write_merged_layers

    metadata = {"run_id": summary.run_id, "model": summary.identity.get("model", ""),
                "random_weights": str(summary.random_weights).lower()}
    workers = 1 if config.executor.workers == 0 else None  # --workers 0 stays in this process
    counts = write_merged_layers(store, config.merge, folder, sorted({q.layer for q in summary.queries}),
                                 crs=config.crs, metadata=metadata, workers=workers, combined=config.combined)
    summary.seam_features = sum(counts.crossing.values())
    return dict(counts)


def _refuse_shrink(published: dict[str, int], new: dict[str, int], config: object) -> None:
    """Keep the published set when a layer would lose all its features or more than ``max_shrink`` of them."""
    if config.allow_shrink:
        return
    for slug, n in sorted(new.items()):
        old = int(published.get(slug, 0))
        if old and (n == 0 or (old - n) / old > config.max_shrink):
            raise PublishRefusedError(
                f"layer {slug} would go from {old} to {n} features (more than {config.max_shrink:.0%} fewer); the "
                "published layers were kept; if this is right, re-run with --allow-shrink (results are cached)")


def write_export(folder: Path, fmt: str, options: dict, sources: dict | None = None) -> dict:
    """Export the layers in ``folder`` to ``fmt`` inside it; returns the manifest entry (options + files).

    ``sources`` (image, map_path, osm) are the run's inputs, for pictures drawn over them before the set's
    run.json exists; without them the folder's run.json says.
    """
    from sociomap.export import export_run

    opts = {**EXPORTS[fmt], **{k: v for k, v in options.items() if k in EXPORTS[fmt]}}
    before = {p.name for p in folder.rglob("*")}
    if fmt == "pictures":
        from sociomap.viewer.pictures import write_pictures
        from sociomap.viewer.view import open_run

        given = {k: str(v) for k, v in (sources or {}).items() if v is not None}
        write_pictures(folder, open_run(folder, **given))
    else:
        export_run(folder, fmt, **opts)
    return {**opts, "files": sorted({str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - before)}


def _finalize(out: Path, building: Path, summary: object, config: object, started: float) -> None:
    """Write run.json into the set, publish it, prune old sets."""
    summary.files = {"layers": {slug: f"{slug}.gpkg" for slug in summary.layers},
                     "exports": {fmt: entry["files"] for fmt, entry in summary.exports.items()}}
    summary.outputs = [str(out / p.name) for p in sorted(building.iterdir())] + [str(out / MANIFEST)]
    write_json_atomic(building / MANIFEST, build_manifest("ok", summary, config, input_fingerprints(config), started))
    logger.info("stage: publishing set %s", summary.set_id)
    publish_set(out, building, summary.set_id)
    logger.info("stage: published %s", out / "current")
    prune_sets(out)


def input_fingerprints(config: object) -> dict:
    """Content fingerprints of the run's input files (mosaic, map, OSM) for the manifest."""
    from sociomap.fingerprint import file_fingerprint
    from sociomap.tiling.paths import is_remote

    inputs = {}
    for name, path in (("image", config.image), ("map", config.map), ("osm", config.osm)):
        if path is not None and is_remote(path):
            inputs[name] = {"url": str(path)}
        elif path is not None and Path(path).is_file():
            inputs[name] = file_fingerprint(Path(path))
    return inputs


def export_published(out: Path, fmt: str, **options: object) -> Path:
    """``sociomap export``: a new set = the published files + this export, recorded in run.json; under the lock."""
    from sociomap.pipeline.lock import output_lock
    from sociomap.pipeline.run import new_run_id

    out = Path(out)
    if fmt not in EXPORTS:
        raise InputError(f"export format {fmt!r} is not supported; use one of {', '.join(EXPORTS)}")
    with output_lock(state_dir(out)):
        remove_leftovers(out)  # what a killed run or export left in OUT/.sociomap/staging
        current = published_set(out)
        if current is None:
            raise InputError(f"{out}: nothing published yet; run `sociomap run ... --out {out}` first")
        manifest = read_manifest(current / MANIFEST) or {}
        set_id = new_run_id()
        staging = staging_dir(out, f"export-{set_id}")
        try:
            building = staging / "set"
            building.mkdir()
            old_files = set(manifest.get("exports", {}).get(fmt, {}).get("files", []))
            for name in set_files(current):
                if name not in old_files:
                    (building / name).parent.mkdir(parents=True, exist_ok=True)
                    link_or_copy(current / name, building / name)
            logger.info("stage: exporting %s into a new set", fmt)
            entry = write_export(building, fmt, options)
            manifest.setdefault("exports", {})[fmt] = entry
            manifest.setdefault("files", {}).setdefault("exports", {})[fmt] = entry["files"]
            manifest["set_id"] = set_id
            manifest["outputs"] = sorted({*manifest.get("outputs", []), *(str(out / f) for f in entry["files"])})
            write_json_atomic(building / MANIFEST, manifest)
            publish_set(out, building, set_id)
            prune_sets(out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # a failed export leaves no scratch
        return out / entry["files"][0]
