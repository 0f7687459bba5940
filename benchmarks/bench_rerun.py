"""First run vs unchanged re-run vs resume after a kill, on one ~1,000-tile run with the tiny random model.

Each run is a real `sociomap run` subprocess (what cron starts) into the same --out:

1. first run: every tile read, drawn, segmented, vectorized, cached;
2. unchanged re-run: the memo and the cache answer every tile (target: <= 0.2 x the first run);
3. resume: a fresh --out, killed (SIGKILL, whole process group) once about half the results are cached,
   then run again to the end;
and reports the cache's bytes per entry.

    python benchmarks/bench_rerun.py                     # ~1,000 tiles (several minutes on 2 cores)
    python benchmarks/bench_rerun.py --side 12           # a quick 144-tile check

The mosaic (synthetic UTM over central Helsinki) and the map raster are generated; the model is
`sociomap model init-tiny` (random weights: the layers are meaningless, the work is real).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

REPO = Path(__file__).resolve().parents[1]
ZOOM, SIZE = 17, 128
ORIGIN = (385_100.0, 6_672_700.0)  # UTM 35N, central Helsinki


def _geotiff(path: Path, data: np.ndarray, crs: str, transform: object) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=3,
                       dtype="uint8", crs=crs, transform=transform, tiled=True, compress="deflate") as dst:
        dst.write(data)
    return path


def make_inputs(folder: Path, side_tiles: int) -> tuple[Path, Path]:
    """A UTM mosaic about ``side_tiles`` z17 tiles wide and a map raster over it (EPSG:4326)."""
    tile_m = 2 * math.pi * 6378137 / 2**ZOOM * math.cos(math.radians(60.17))
    px = int(side_tiles * tile_m / 2.0)
    rng = np.random.default_rng(0)
    mosaic = _geotiff(folder / "mosaic.tif", rng.integers(1, 255, (3, px, px), dtype=np.uint8), "EPSG:32635",
                      from_origin(*ORIGIN, 2.0, 2.0))
    with rasterio.open(mosaic) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    res = 2e-5
    w, h = int((east - west) / res) + 1, int((north - south) / res) + 1
    themap = _geotiff(folder / "map.tif", rng.integers(1, 255, (3, h, w), dtype=np.uint8), "EPSG:4326",
                      from_origin(west, north, res, res))
    return mosaic, themap


def sociomap_args(mosaic: Path, themap: Path, tiny: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "sociomap", "-q", "run", str(mosaic), "-c", "park", "-o", str(out),
            "--map", str(themap), "--model", str(tiny / "vlm"), "--sam", str(tiny / "sam2"), "--greedy",
            "--max-new-tokens", "8", "--zoom", str(ZOOM), "--tile-size", str(SIZE), "--workers", "0",
            "--tiles-per-task", "4", "--device", "cpu"]


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - start


def cached_results(out: Path) -> int:
    try:
        with sqlite3.connect(f"file:{out / '.sociomap' / 'cache.sqlite'}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM results").fetchone()[0]
    except sqlite3.Error:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=32, help="mosaic width in z17 tiles (32 -> ~1,000 tiles)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rerun-") as tmp:
        folder = Path(tmp)
        mosaic, themap = make_inputs(folder, args.side)
        tiny = folder / "tiny"
        subprocess.run([sys.executable, "-m", "sociomap", "model", "init-tiny", str(tiny)], check=True,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        out = folder / "out"
        first = timed(sociomap_args(mosaic, themap, tiny, out))
        manifest = json.loads((out / "run.json").read_text())
        rerun = timed(sociomap_args(mosaic, themap, tiny, out))
        again = json.loads((out / "run.json").read_text())
        cache = out / ".sociomap" / "cache.sqlite"
        with sqlite3.connect(cache) as db:
            entries = sum(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("results", "pieces", "memo"))
            result_bytes = db.execute("SELECT avg(length(body)), min(length(body)) FROM results").fetchone()
        size = cache.stat().st_size

        resumed_out = folder / "resumed"
        proc = subprocess.Popen(sociomap_args(mosaic, themap, tiny, resumed_out), start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        half = manifest["counts"]["results_computed"] // 2
        start = time.perf_counter()
        while proc.poll() is None and cached_results(resumed_out) < half:
            time.sleep(0.2)
        killed_after = time.perf_counter() - start
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        at_kill = cached_results(resumed_out)
        resume = timed(sociomap_args(mosaic, themap, tiny, resumed_out))
        resumed = json.loads((resumed_out / "run.json").read_text())
    report = {
        "tiles": manifest["counts"]["tiles_total"], "results": manifest["counts"]["results_computed"],
        "first_run_s": round(first, 1), "unchanged_rerun_s": round(rerun, 1),
        "rerun_over_first": round(rerun / first, 3),
        "rerun_tiles_read": again["counts"]["tiles_read"], "rerun_computed": again["counts"]["results_computed"],
        "killed_after_s": round(killed_after, 1), "results_cached_at_kill": at_kill,
        "resume_s": round(resume, 1), "resume_over_first": round(resume / first, 3),
        "resume_computed": resumed["counts"]["results_computed"], "resume_reused": resumed["counts"]["results_reused"],
        "cache_bytes": size, "cache_entries": entries, "bytes_per_entry": round(size / max(entries, 1)),
        "result_body_bytes_avg": round(result_bytes[0]), "result_body_bytes_min": result_bytes[1],
        "first_run_seconds_by_stage": manifest["seconds"], "load_average": os.getloadavg()[0],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
