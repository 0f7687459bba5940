"""sociomap.pipeline.run: the whole job, from a mosaic to one published set of socio-function layers.

1. Check what can be checked before heavy work: option combinations, the mosaic, user files in OUT.
2. Take the output lock, remove what killed runs left behind, open the cache, register the run.
3. Start or connect the executor (its workers are checked), resolve the segmenter identity where the
   model runs, and build the keys.
4. Drive every tile through the cache and the workers (``schedule.Driver``) into an on-disk piece store.
5. Guards: failed tiles (exit 6), a mosaic with no data (3), a map that shows nothing over it (3).
6. Merge per socio-function into a new output set and publish it atomically (``publish``), unless the
   shrink guard refuses (exit 7). Anything but success leaves the published set as it was and writes
   ``OUT/.sociomap/failed-<run_id>.json``.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from sociomap.errors import (ConfigError, DiskFullError, MapSourceError, ModelLoadError, MosaicError, OSMError,
                             SociomapError, TilesFailedError)
from sociomap.maps.base import MapSource, open_map_source
from sociomap.pipeline.checks import check_run_inputs, is_disk_full
from sociomap.pipeline.cache import CACHE_NAME, ResultCache, identity_digest, memo_key, pieces_key
from sociomap.pipeline.executor import ExecutorConfig, open_executor
from sociomap.pipeline.identity import inputs_fingerprint, query_digest, vectorize_digest
from sociomap.pipeline.lock import output_lock
from sociomap.pipeline.manifest import build_manifest, read_manifest, write_json_atomic
from sociomap.pipeline.outputs import (MANIFEST, check_user_files, published_set, remove_leftovers, staging_dir,
                                       state_dir)
from sociomap.pipeline.schedule import Driver, Keys, Progress, Tally, tile_id
from sociomap.pipeline.segmenters import SegmenterSpec, needs_map, segmenter_identity
from sociomap.pipeline.tasks import ReadJob
from sociomap.taxonomy import Query, resolve_queries
from sociomap.tiling import Mosaic, TilingConfig, cover_bounds
from sociomap.tiling.paths import is_remote

logger = logging.getLogger(__name__)

REASONERS = ("socioreasoner", "osm")


@dataclass(frozen=True)
class RunConfig:
    """Everything `sociomap run` takes; stage settings live in their stage's config object.

    ``overwrite`` lets a run replace a user's own file at one of its output paths; ``allow_shrink``
    publishes layers that lost more than ``max_shrink`` of the published layer's features (or all).
    """

    image: str | Path  # a local path or a URL (https://, s3://, /vsi...)
    out: Path
    classes: tuple[str, ...]
    names: tuple[str, ...] = ()  # --name: place names, never read as classes
    map: str | Path | None = None
    osm: Path | None = None
    map_language: str | None = None
    map_style: str = "socioseg"
    reasoner_kind: str = "socioreasoner"
    crs: str = "EPSG:4326"
    formats: tuple[str, ...] = ()
    combined: bool = False
    force: bool = False
    dry_run: bool = False
    overwrite: bool = False
    allow_shrink: bool = False
    max_shrink: float = 0.5
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
    tiles_from_memo: int = 0
    results_computed: int = 0
    results_reused: int = 0
    failed_tiles: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    layers: dict[str, int] = field(default_factory=dict)
    carried: dict[str, str] = field(default_factory=dict)  # layer kept from an earlier run -> its run id
    seam_features: int = 0
    outputs: list[str] = field(default_factory=list)
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    exports: dict[str, dict] = field(default_factory=dict)
    identity: dict[str, str] = field(default_factory=dict)
    executor: str = ""
    work: dict[str, dict[str, int]] = field(default_factory=dict)  # step -> worker -> tasks
    max_window: int = 0
    cache_damaged: int = 0
    set_id: str = ""
    estimate_seconds: float | None = None  # dry runs: model time still needed, from the last run's rate
    error: str | None = None

    @property
    def random_weights(self) -> bool:
        """True when the model was a random-initialised test checkpoint."""
        return self.identity.get("random_init") == "true"

    def add(self, tally: Tally) -> None:
        """Fold the driver's tally in."""
        self.tiles_empty += tally.tiles_empty
        self.tiles_read += tally.tiles_read
        self.tiles_from_memo += tally.tiles_from_memo
        self.results_computed += tally.computed
        self.results_reused += tally.reused
        self.failed_tiles.update(tally.failed)
        for stage, seconds in tally.seconds.items():
            self.seconds[stage] += seconds
        self.work = {step: dict(workers) for step, workers in tally.work.items()}


class Reporter(Protocol):
    """Progress callbacks; the CLI implements them with rich, the library never prints."""

    def start(self, total_tiles: int, queries: list[Query]) -> None: ...
    def advance(self, tiles: int, progress: Progress) -> None: ...
    def stage(self, name: str) -> None: ...


class _Silent:
    def start(self, total_tiles: int, queries: list[Query]) -> None:
        pass

    def advance(self, tiles: int, progress: Progress) -> None:
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
    if not 0 <= config.max_shrink <= 1:
        raise ConfigError(f"--max-shrink {config.max_shrink}: give a share between 0 and 1 (0.5 = half)")


def absolute_paths(config: RunConfig) -> RunConfig:
    """Every local path made absolute here, so workers started in other folders see the same files (URLs and
    GDAL /vsi paths are kept as given)."""
    def absolute(p: str | Path | None) -> str | Path | None:
        return p if p is None or is_remote(p) else Path(p).expanduser().absolute()

    return replace(config, image=absolute(config.image), out=absolute(config.out), map=absolute(config.map),
                   osm=absolute(config.osm))


def _osm_index(config: RunConfig, bounds: tuple[float, float, float, float]) -> Path | None:
    """The OSM index, built once here in the driver (reused while unchanged), read by every worker."""
    if config.osm is None or (config.map is not None and config.reasoner_kind == "socioreasoner"):
        return None
    from sociomap.maps.osm_index import prepare_osm_index

    return prepare_osm_index(config.osm, bounds, state_dir(Path(config.out)) / "osm")


def _map_source(config: RunConfig, bounds: tuple[float, float, float, float],
                index: Path | None = None) -> MapSource | None:
    if config.map is not None:
        return open_map_source(config.map, bounds_wgs84=bounds, resampling=config.tiling.resampling)
    if config.osm is not None and config.reasoner_kind == "socioreasoner":
        return open_map_source(config.osm, language=config.map_language, bounds_wgs84=bounds,
                               style=config.map_style, index=index)
    return None


def _segmenter_spec(config: RunConfig, bounds: tuple[float, float, float, float],
                    index: Path | None = None) -> SegmenterSpec:
    if config.reasoner_kind == "osm":
        return SegmenterSpec("osm", osm=Path(config.osm), osm_bounds=bounds, osm_index=index)
    if config.reasoner is None:
        from sociomap.reasoning.config import ReasonerConfig

        return SegmenterSpec("socioreasoner", reasoner=ReasonerConfig())
    return SegmenterSpec("socioreasoner", reasoner=config.reasoner)


def _check_osm_covers(osm: Path, bounds: tuple[float, float, float, float]) -> None:
    """An OSM extract whose header box misses the mosaic would give empty layers: refuse it up front."""
    from sociomap.maps.osm_read import check_path, header_bounds

    check_path(osm)
    try:
        box = header_bounds(osm)
    except (RuntimeError, ValueError, OSError) as exc:
        raise OSMError(f"{osm}: cannot read as OpenStreetMap data ({exc}); re-download the extract or check it "
                       "with `osmium fileinfo`") from None
    if box is None:
        return
    west, south, east, north = bounds
    if box[2] < west or box[0] > east or box[3] < south or box[1] > north:
        raise OSMError(f"{osm}: covers {tuple(round(v, 4) for v in box)} (lon/lat), not the mosaic's "
                       f"{tuple(round(v, 4) for v in bounds)}; pass an extract of the mosaic's area")


def _layer_files(queries: list[Query]) -> list[str]:
    return sorted({f"{q.layer}.gpkg" for q in queries})


def new_run_id() -> str:
    """Sortable, unique run id: UTC time plus 6 random hex digits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def run(config: RunConfig, reporter: Reporter | None = None) -> RunSummary:
    """Run the pipeline; see the module docstring. Raises SociomapError subclasses on bad input."""
    reporter = reporter or _Silent()
    config = absolute_paths(config)
    _check(config)
    check_run_inputs(config)
    queries = resolve_queries(config.classes, names=config.names)
    mosaic = Mosaic(config.image, config.tiling.bands, config.tiling.rescale, config.tiling.resampling,
                    config.tiling.nodata)
    mosaic.check_zoom(config.tiling.zoom, config.tiling.tile_size)
    if config.osm is not None:
        _check_osm_covers(Path(config.osm), mosaic.geographic_bounds())
    if config.map is not None:  # opened once here to refuse a bad or non-overlapping map before the lock
        _map_source(config, cover_bounds(mosaic.geographic_bounds(), config.tiling.zoom))
    if config.dry_run:
        return dry_run(config, queries, mosaic)
    out = Path(config.out)
    check_user_files(out, _layer_files(queries), config.overwrite)
    summary = RunSummary(new_run_id(), queries)
    try:
        _locked_run(config, queries, mosaic, summary, reporter)
    except Exception as exc:
        if is_disk_full(exc, out) and not isinstance(exc, DiskFullError):
            raise DiskFullError(f"{out}: the disk is full ({exc}); the published layers were kept; free space "
                                f"(e.g. `sociomap cache gc {out}`) or use another --out") from None
        raise
    finally:
        mosaic.close()
    return summary


def _locked_run(config: RunConfig, queries: list[Query], mosaic: Mosaic, summary: RunSummary,
                reporter: Reporter) -> None:
    """Under the output lock: tidy up after killed runs, run, record how it ended (failed-<run_id>.json)."""
    out = Path(config.out)
    started = time.time()
    state = state_dir(out)
    with output_lock(state):
        remove_leftovers(out)
        staging = staging_dir(out, f"run-{summary.run_id}")
        cache = ResultCache(state / CACHE_NAME)
        status = "failed"
        try:
            cache.begin_run(summary.run_id)
            _execute(config, queries, mosaic, summary, cache, staging, reporter)
            status = "ok"
        except SociomapError as exc:
            status = "refused" if exc.exit_code == 7 else "failed"
            summary.error = str(exc)
            raise
        except Exception as exc:
            summary.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            _close(cache, status)
            if status != "ok":
                _write_failure(config, summary, started, status)
            shutil.rmtree(staging, ignore_errors=True)


def _execute(config: RunConfig, queries: list[Query], mosaic: Mosaic, summary: RunSummary, cache: ResultCache,
             staging: Path, reporter: Reporter) -> None:
    from sociomap.merge import PieceStore
    from sociomap.pipeline.publish import publish_run

    started = time.time()
    bounds = cover_bounds(mosaic.geographic_bounds(), config.tiling.zoom)
    index = _osm_index(config, bounds)
    if index is not None:
        logger.info("stage: OSM index ready (%s)", index.name)
    map_source = _map_source(config, bounds, index)
    spec = _segmenter_spec(config, bounds, index)
    needs_model = spec.kind == "socioreasoner"
    model_on_gpu = needs_model and spec.reasoner.device != "cpu"
    paths = [Path(p) for p in (config.image, config.map, config.osm, index) if p is not None and not is_remote(p)]
    executor_config = replace(config.executor, worker_dir=staging / "workers")
    with open_executor(executor_config, needs_model, model_on_gpu, paths) as executor:
        summary.executor = executor.name
        start = time.perf_counter()
        summary.identity = (executor.call_on_model_worker(segmenter_identity, spec) if needs_model
                            else segmenter_identity(spec))
        summary.seconds["identity"] += time.perf_counter() - start
        logger.info("stage: segmenter identity resolved on %s", executor.name)
        uses_map = map_source if needs_map(spec) else None
        keys = Keys(identity_digest(summary.identity), tuple(query_digest(q, spec.kind == "osm") for q in queries),
                    inputs_fingerprint(mosaic, uses_map, config.tiling.tile_size), vectorize_digest(config.merge))
        summary.tiles_total = mosaic.count_tiles(config.tiling.zoom)
        logger.info("stage: tiles: %d candidate tiles x %d queries", summary.tiles_total, len(queries))
        reporter.start(summary.tiles_total, queries)
        provenance = {"run_id": summary.run_id,
                      "model": summary.identity.get("model", f"osm:{Path(config.osm).name}" if config.osm else "")}
        with PieceStore(staging / "pieces") as store:
            driver = Driver(ReadJob((), mosaic, uses_map, spec, config.tiling.tile_size), tuple(queries), keys,
                            executor, cache, store, provenance, config.merge, config.tiling.tiles_per_task,
                            config.executor.retries, config.force, reporter)
            summary.add(driver.run(mosaic.tiles(config.tiling.zoom)))
            summary.max_window, summary.cache_damaged = executor.max_window, cache.damaged
            _guard_inputs(config, summary, driver.tally, mosaic, uses_map)
            reporter.stage("merging")
            publish_run(config, summary, store, staging, started, reporter)


def _guard_inputs(config: RunConfig, summary: RunSummary, tally: Tally, mosaic: Mosaic,
                  map_source: MapSource | None) -> None:
    """Stop before publishing when tiles failed or the inputs cannot have given real layers."""
    state = state_dir(Path(config.out))
    if summary.failed_tiles:
        raise TilesFailedError(f"{len(summary.failed_tiles)} tile(s) failed after retries (see "
                               f"{state / f'failed-{summary.run_id}.json'}); the published layers were kept; "
                               "re-run to retry only those tiles")
    if tally.data_tiles == 0:
        raise MosaicError(f"{config.image}: none of its {summary.tiles_total} tiles at zoom {config.tiling.zoom} "
                          "holds data (all nodata or outside); the published layers were kept; check the mosaic")
    if map_source is not None and tally.map_blank == tally.data_tiles:
        source = config.map or config.osm
        raise MapSourceError(f"{source}: its map is blank on all {tally.data_tiles} tiles of the mosaic (it does "
                             "not cover the mosaic's area); the published layers were kept; pass the map of this area")


def _close(cache: ResultCache, status: str) -> None:
    """Record how the run ended and close the cache; a full or failing disk must not hide the run's own error."""
    try:
        cache.end_run(status)
        cache.close()
    except Exception as exc:  # sqlite3 errors, OSError: logged, the original outcome stands
        _log_secondary("could not record the run's end in the cache: %s", exc)


def _write_failure(config: RunConfig, summary: RunSummary, started: float, status: str) -> None:
    """``OUT/.sociomap/failed-<run_id>.json``: what the failed run did and each failed tile's error."""
    data = build_manifest(status, summary, config, {}, started)
    try:
        write_json_atomic(state_dir(Path(config.out)) / f"failed-{summary.run_id}.json", data)
    except OSError as exc:  # a full or read-only disk must not hide the original error
        _log_secondary("could not write the failure record: %s", exc)


def _log_secondary(message: str, exc: BaseException) -> None:
    """A failure while recording a failure: on a full disk it is the same error the user is about to read
    (one line), so only -v shows it; anything else is an error of its own."""
    logger.log(logging.INFO if is_disk_full(exc) else logging.ERROR, message, exc)


def dry_run(config: RunConfig, queries: list[Query], mosaic: Mosaic) -> RunSummary:
    """Count tiles, cached results and model calls from the footprint and the cache: no tile is read,
    nothing is written, no lock is taken (``OUT/.sociomap`` is not created)."""
    summary = RunSummary(new_run_id(), queries)
    bounds = cover_bounds(mosaic.geographic_bounds(), config.tiling.zoom)
    spec = _segmenter_spec(config, bounds)
    if spec.kind == "socioreasoner":
        spec = replace(spec, reasoner=replace(spec.reasoner, offline=True))
    try:
        summary.identity = segmenter_identity(spec)
    except ModelLoadError as exc:
        logger.warning("weights are not available locally (%s); every result counts as needed", exc)
    map_source = _map_source(config, bounds) if needs_map(spec) else None
    keys = Keys(identity_digest(summary.identity), tuple(query_digest(q, spec.kind == "osm") for q in queries),
                inputs_fingerprint(mosaic, map_source, config.tiling.tile_size), vectorize_digest(config.merge))
    n = len(queries)
    with ResultCache(state_dir(Path(config.out)) / CACHE_NAME, readonly=True) as cache:
        for tile in mosaic.tiles(config.tiling.zoom):
            summary.tiles_total += 1
            memo = None if (config.force or not summary.identity) else cache.get_memo(
                memo_key(keys.inputs, tile_id(tile)))
            if memo is not None and memo.digest is None:
                summary.tiles_empty += 1
                continue
            if memo is None:
                summary.results_computed += n
                continue
            from sociomap.pipeline.cache import result_key

            for j in range(n):
                key = result_key(memo.digest, keys.segmenter, keys.queries[j], tile_id(tile))
                stored = cache.get_pieces(pieces_key(key, keys.vectorize)) is not None or cache.has(key)
                summary.results_reused += stored
                summary.results_computed += not stored
    previous = published_set(Path(config.out))
    summary.estimate_seconds = estimate_model_seconds(previous / MANIFEST if previous else None,
                                                      summary.results_computed)
    mosaic.close()
    return summary


def estimate_model_seconds(manifest: Path | None, calls: int) -> float | None:
    """Model seconds for ``calls`` (tile, query) results at the previous run's per-result rate, if known."""
    previous = (read_manifest(manifest) if manifest else None) or {}
    done = previous.get("counts", {}).get("results_computed", 0)
    spent = previous.get("seconds", {}).get("model")
    if not done or not spent:
        return None
    return calls * spent / done
