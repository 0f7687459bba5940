"""sociomap.pipeline.run: the whole job, from a mosaic to one GeoPackage per socio-function.

Tiles stream through the executor in small batches; their polygons stream into an on-disk piece
store; layers are merged per socio-function and published by atomic rename only when every tile
succeeded. Per-tile results live in a content-addressed cache, so re-runs and resumed runs compute
only what changed.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import mercantile

from sociomap.errors import ConfigError, TilesFailedError
from sociomap.maps.base import MapSource, open_map_source
from sociomap.pipeline.executor import ExecutorConfig, open_executor
from sociomap.pipeline.lock import output_lock
from sociomap.pipeline.manifest import build_manifest, file_fingerprint, read_manifest, write_json_atomic
from sociomap.pipeline.segmenters import SegmenterSpec
from sociomap.pipeline.tasks import BatchJob, BatchResult, finish_batch, prepare_batch
from sociomap.taxonomy import Query, resolve_queries
from sociomap.tiling import Mosaic, TilingConfig

logger = logging.getLogger(__name__)

STATE_DIR = ".sociomap"
MANIFEST = "run.json"
REASONERS = ("socioreasoner", "osm")


@dataclass(frozen=True)
class RunConfig:
    """Everything `sociomap run` takes; stage settings live in their stage's config object."""

    image: Path
    out: Path
    classes: tuple[str, ...]
    map: Path | None = None
    osm: Path | None = None
    map_language: str | None = None
    reasoner_kind: str = "socioreasoner"
    crs: str = "EPSG:4326"
    formats: tuple[str, ...] = ()
    combined: bool = False
    force: bool = False
    dry_run: bool = False
    tiling: TilingConfig = field(default_factory=TilingConfig)
    reasoner: object | None = None  # sociomap.reasoning.ReasonerConfig
    merge: object | None = None  # sociomap.merge.MergeConfig
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)


@dataclass
class RunSummary:
    """Counts, timings and outputs of a run (also written to the manifest)."""

    run_id: str
    queries: list[Query]
    tiles_total: int = 0
    tiles_empty: int = 0
    tiles_read: int = 0
    results_computed: int = 0
    results_reused: int = 0
    failed_tiles: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    layers: dict[str, int] = field(default_factory=dict)
    seam_features: int = 0
    outputs: list[str] = field(default_factory=list)
    identity: dict[str, str] = field(default_factory=dict)
    executor: str = ""
    estimate_seconds: float | None = None  # dry runs: model time still needed, from the last run's rate

    @property
    def random_weights(self) -> bool:
        """True when the model was a random-initialised test checkpoint."""
        return self.identity.get("random_init") == "true"

    def add(self, result: BatchResult) -> None:
        """Fold one batch's counters in."""
        self.tiles_empty += result.empty
        self.tiles_read += result.read
        self.results_computed += result.computed
        self.results_reused += result.reused
        for stage, s in result.seconds.items():
            self.seconds[stage] += s
        self.identity = self.identity or result.identity


class Reporter(Protocol):
    """Progress callbacks; the CLI implements them with rich, the library never prints."""

    def start(self, total_tiles: int, queries: list[Query]) -> None: ...
    def advance(self, tiles: int, result: BatchResult | None) -> None: ...
    def stage(self, name: str) -> None: ...


class _Silent:
    def start(self, total_tiles: int, queries: list[Query]) -> None:
        pass

    def advance(self, tiles: int, result: BatchResult | None) -> None:
        pass

    def stage(self, name: str) -> None:
        pass


def _check(config: RunConfig) -> None:
    if config.reasoner_kind not in REASONERS:
        raise ConfigError(f"--reasoner {config.reasoner_kind!r}: choose one of {', '.join(REASONERS)}")
    if config.reasoner_kind == "osm" and config.osm is None:
        raise ConfigError("--reasoner osm rasterizes OSM features: pass --osm city.osm.pbf")
    if config.reasoner_kind == "socioreasoner" and config.map is None and config.osm is None:
        raise ConfigError("SocioReasoner reads a map beside each satellite tile: pass --map MAP or --osm city.osm.pbf")
    if config.map is not None and config.osm is not None and config.reasoner_kind == "socioreasoner":
        logger.info("both --map and --osm given: the map comes from --map")


def _map_source(config: RunConfig, bounds: tuple[float, float, float, float]) -> MapSource | None:
    if config.map is not None:
        return open_map_source(config.map)
    if config.osm is not None and config.reasoner_kind == "socioreasoner":
        return open_map_source(config.osm, language=config.map_language, bounds_wgs84=bounds)
    return None


def _segmenter_spec(config: RunConfig, bounds: tuple[float, float, float, float]) -> SegmenterSpec:
    if config.reasoner_kind == "osm":
        return SegmenterSpec("osm", osm=Path(config.osm), osm_bounds=bounds)
    return SegmenterSpec("socioreasoner", reasoner=config.reasoner)


def _batches(mosaic: Mosaic, config: RunConfig, base: dict) -> Iterator[BatchJob]:
    tiles: list[mercantile.Tile] = []
    for tile in mosaic.tiles(config.tiling.zoom):
        tiles.append(tile)
        if len(tiles) == config.tiling.tiles_per_task:
            yield BatchJob(tiles=tuple(tiles), **base)
            tiles = []
    if tiles:
        yield BatchJob(tiles=tuple(tiles), **base)


def new_run_id() -> str:
    """Sortable, unique run id: UTC time plus 6 random hex digits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def run(config: RunConfig, reporter: Reporter | None = None) -> RunSummary:
    """Run the pipeline; see the module docstring. Raises SociomapError subclasses on bad input."""
    from sociomap.merge import PieceStore

    reporter = reporter or _Silent()
    _check(config)
    queries = resolve_queries(config.classes)
    out = Path(config.out)
    state = out / STATE_DIR
    summary = RunSummary(new_run_id(), queries)
    started = time.time()
    with output_lock(state):
        mosaic = Mosaic(Path(config.image), config.tiling.bands, config.tiling.rescale)
        bounds = mosaic.geographic_bounds()
        base = dict(mosaic=mosaic, map_source=_map_source(config, bounds), segmenter=_segmenter_spec(config, bounds),
                    queries=tuple(queries), size=config.tiling.tile_size, cache_root=state / "cache",
                    merge=config.merge, force=config.force, dry_run=config.dry_run)
        summary.tiles_total = sum(1 for _ in mosaic.tiles(config.tiling.zoom))
        reporter.start(summary.tiles_total, queries)
        staging = state / "staging" / summary.run_id
        try:
            with PieceStore(staging) as store:
                _execute(config, summary, store, _batches(mosaic, config, base), reporter)
                if config.dry_run:
                    summary.estimate_seconds = estimate_model_seconds(out / MANIFEST, summary.results_computed)
                    return summary
                if summary.failed_tiles:
                    _write_manifest(config, summary, started, status="failed")
                    raise TilesFailedError(
                        f"{len(summary.failed_tiles)} tile(s) failed after retries "
                        f"(see {state / f'failed-{summary.run_id}.json'}); "
                        "the previous layers were kept; re-run to retry only those tiles"
                    )
                reporter.stage("merging")
                _merge_and_publish(config, summary, store, state, reporter)
            _write_manifest(config, summary, started, status="ok")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return summary


def _execute(config: RunConfig, summary: RunSummary, store: object, jobs: Iterator[BatchJob],
             reporter: Reporter) -> None:
    executor_config = replace(config.executor, use_gpus=config.reasoner_kind != "osm")
    with open_executor(executor_config) as executor:
        summary.executor = executor.name
        for job, result, error in executor.map_unordered(prepare_batch, finish_batch, jobs):
            if error is not None:
                logger.error("tiles %s failed: %s", [f"{t.z}/{t.x}/{t.y}" for t in job.tiles], error)
                summary.failed_tiles.extend(f"{t.z}/{t.x}/{t.y}" for t in job.tiles)
                reporter.advance(len(job.tiles), None)
                continue
            summary.add(result)
            model = result.identity.get("model", result.identity.get("segmenter", ""))
            for piece in result.pieces:
                store.add(piece.layer, piece.tile, piece.geometries,
                          {**piece.attrs, "run_id": summary.run_id, "model": model})
            reporter.advance(len(job.tiles), result)


def estimate_model_seconds(manifest: Path, calls: int) -> float | None:
    """Model seconds for ``calls`` (tile, query) results at the previous run's per-result rate, if known."""
    previous = read_manifest(manifest) or {}
    done = previous.get("counts", {}).get("results_computed", 0)
    spent = previous.get("seconds", {}).get("model")
    if not done or not spent:
        return None
    return calls * spent / done


def _merge_and_publish(config: RunConfig, summary: RunSummary, store: object, state: Path,
                       reporter: Reporter) -> None:
    from sociomap.export import write_merged_layers

    start = time.perf_counter()
    pending = state / "pending" / summary.run_id
    metadata = {"run_id": summary.run_id, "model": summary.identity.get("model", ""),
                "random_weights": str(summary.random_weights).lower()}
    workers = 1 if config.executor.workers == 0 else None  # --workers 0 stays in this process
    counts = write_merged_layers(store, config.merge, pending, [q.layer for q in summary.queries], crs=config.crs,
                                 metadata=metadata, workers=workers, combined=config.combined,
                                 formats=config.formats)
    summary.layers.update(counts)
    summary.seam_features = sum(counts.crossing.values())
    summary.seconds["merge"] += time.perf_counter() - start  # merge and GeoPackage writing are one stream
    reporter.stage("writing")
    start = time.perf_counter()
    summary.outputs = [str(_publish(p, Path(config.out))) for p in counts.paths]
    _remove_stale_layers(Path(config.out), summary.outputs)
    shutil.rmtree(pending, ignore_errors=True)
    summary.seconds["write"] += time.perf_counter() - start


def _publish(path: Path, out: Path) -> Path:
    target = out / path.name
    os.replace(path, target)  # atomic per file: readers see the old or the new layer, never a mix
    return target


def _remove_stale_layers(out: Path, current: list[str]) -> None:
    previous = read_manifest(out / MANIFEST) or {}
    for old in previous.get("outputs", []):
        if old not in current and Path(old).parent == out:
            Path(old).unlink(missing_ok=True)


def _write_manifest(config: RunConfig, summary: RunSummary, started: float, status: str) -> None:
    inputs = {"image": file_fingerprint(Path(config.image))}
    for name in ("map", "osm"):
        p = getattr(config, name)
        if p is not None and Path(p).is_file():
            inputs[name] = file_fingerprint(Path(p))
    data = build_manifest(status, summary, config, inputs, started)
    if status != "ok":  # keep the last good manifest; record the failure beside it
        write_json_atomic(Path(config.out) / STATE_DIR / f"failed-{summary.run_id}.json", data)
        return
    write_json_atomic(Path(config.out) / MANIFEST, data)
