"""sociomap.pipeline.manifest: the JSON record of a run (inputs with hashes, versions, counts, timings)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path


def versions() -> dict[str, str]:
    """Versions of the packages that shape results."""
    out = {"python": platform.python_version()}
    for pkg in ("sociomap", "torch", "transformers", "rasterio", "rio-tiler", "shapely", "pyogrio", "dask",
                "distributed", "osmium"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON via a temp file + fsync + rename, so readers never see half a manifest; mode 0644."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(path: Path) -> dict | None:
    """The previous run's manifest, or None."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def build_manifest(status: str, summary: object, config: object, inputs: dict, started: float) -> dict:
    """The run.json record of a RunSummary and its RunConfig (also the failed-<run_id>.json record)."""
    return {
        "status": status,
        "run_id": summary.run_id,
        "set_id": summary.set_id,
        "error": summary.error,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds_total": round(time.time() - started, 3),
        "inputs": inputs,
        "config": _jsonable(asdict(config)),
        "queries": [asdict(q) for q in summary.queries],
        "segmenter": summary.identity,
        "random_weights": summary.random_weights,
        "versions": versions(),
        "executor": summary.executor,
        "work": summary.work,
        "max_window": summary.max_window,
        "counts": {
            "tiles_total": summary.tiles_total, "tiles_empty": summary.tiles_empty,
            "tiles_read": summary.tiles_read, "tiles_from_memo": summary.tiles_from_memo,
            "results_computed": summary.results_computed, "results_reused": summary.results_reused,
            "tiles_failed": len(summary.failed_tiles), "seam_features": summary.seam_features,
            "cache_damaged": summary.cache_damaged,
        },
        "failed_tiles": summary.failed_tiles,
        "seconds": {k: round(v, 3) for k, v in summary.seconds.items()},
        "layers": summary.layers,
        "carried": summary.carried,
        "exports": summary.exports,
        "files": summary.files,
        "outputs": summary.outputs,
    }


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
