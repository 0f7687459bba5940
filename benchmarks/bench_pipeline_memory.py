"""Driver memory vs number of tiles: peak RSS of the `sociomap run` driver for N and 100*N tiles.

The pipeline streams tiles through a bounded window and spills polygons to disk, so the driver's peak
RSS should stay flat as the tile count grows 100x. Workers run in their own processes (a LocalCluster)
and are not counted. Each size runs in a fresh subprocess so peaks do not mix.

    python benchmarks/bench_pipeline_memory.py                 # 100 vs 10,000 tiles (~5-10 min on 2 cores)
    python benchmarks/bench_pipeline_memory.py --sizes 100 1000

Uses `--reasoner osm` on the real Helsinki extract (real polygons flow through merge), zoom 21,
64-px tiles, over a synthetic UTM mosaic sized to give about N tiles.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np, rasterio
from rasterio.transform import from_origin
sys.path.insert(0, {repo!r})
from sociomap.merge import MergeConfig
from sociomap.pipeline.executor import ExecutorConfig
from sociomap.pipeline.run import RunConfig, run
from sociomap.tiling import TilingConfig

side_px = {side_px}
tmp = Path({tmp!r})
data = np.random.default_rng(0).integers(1, 255, (3, side_px, side_px), dtype=np.uint8)
path = tmp / "mosaic.tif"
with rasterio.open(path, "w", driver="GTiff", width=side_px, height=side_px, count=3, dtype="uint8",
                   crs="EPSG:32635", transform=from_origin(385450.0, 6673100.0, {res}, {res}), tiled=True,
                   compress="deflate") as dst:
    dst.write(data)
cfg = RunConfig(image=path, out=tmp / "out", classes=("park", "school"), osm=Path({pbf!r}), reasoner_kind="osm",
                tiling=TilingConfig(zoom=21, tile_size=64, tiles_per_task=16), merge=MergeConfig(),
                executor=ExecutorConfig(workers=2))
t0 = time.perf_counter()
summary = run(cfg)
print(json.dumps(dict(tiles=summary.tiles_total, seconds=round(time.perf_counter() - t0, 1),
                      peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      features=summary.layers)))
"""


def measure(n_tiles: int) -> dict:
    """Run the child for about ``n_tiles`` z21 tiles and return its JSON line."""
    tile_m = 2 * math.pi * 6378137 / 2**21 * math.cos(math.radians(60.17))  # ground metres per z21 tile
    side_m = math.sqrt(n_tiles) * tile_m
    res = 2.0
    with tempfile.TemporaryDirectory() as tmp:
        code = CHILD.format(repo=str(REPO), side_px=int(side_m / res), res=res, tmp=tmp,
                            pbf=str(REPO / "tests/data/helsinki.osm.pbf"))
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-2000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000])
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        start = time.perf_counter()
        row = measure(n)
        rows.append(row)
        print(f"~{n:>6} tiles: {row['tiles']:>6} tiles, driver peak RSS {row['peak_rss_mib']:7.1f} MiB, "
              f"{row['seconds']:6.1f} s run ({time.perf_counter() - start:.0f} s with mosaic), {row['features']}")
    first, last = rows[0], rows[-1]
    print(f"tiles x{last['tiles'] / first['tiles']:.0f} -> driver peak RSS x{last['peak_rss_mib'] / first['peak_rss_mib']:.2f}")


if __name__ == "__main__":
    main()
