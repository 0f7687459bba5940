"""One box used fully: the OSM baseline on the default local cluster (a worker per core) vs one worker.

Both runs take the same job (`--reasoner osm` on the real Helsinki extract over a synthetic UTM mosaic,
z18 256-px tiles), each into a fresh --out, in the same process run, and the ratio is reported.

    python benchmarks/bench_one_box.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
PBF = REPO / "tests" / "data" / "helsinki.osm.pbf"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-onebox-") as tmp:
        mosaic = Path(tmp) / "mosaic.tif"
        data = np.random.default_rng(0).integers(1, 255, (3, 800, 640), dtype=np.uint8)
        with rasterio.open(mosaic, "w", driver="GTiff", width=640, height=800, count=3, dtype="uint8",
                           crs="EPSG:32635", transform=from_origin(385_100.0, 6_672_700.0, 2.0, 2.0), tiled=True,
                           compress="deflate") as dst:
            dst.write(data)
        times = {}
        for label, workers in (("one worker", ["--workers", "1"]), ("every core (default)", [])):
            out = Path(tmp) / label.replace(" ", "_")
            args = [sys.executable, "-m", "sociomap", "-q", "run", str(mosaic), "-c", "park,school,hospital",
                    "-o", str(out), "--reasoner", "osm", "--osm", str(PBF), "--zoom", "18", "--tile-size", "256",
                    "--tiles-per-task", "4", *workers]
            start = time.perf_counter()
            subprocess.run(args, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            times[label] = time.perf_counter() - start
            manifest = json.loads((out / "run.json").read_text())
            times[label + " workers"] = len(manifest["work"]["read"])
            times["tiles"] = manifest["counts"]["tiles_total"]
    times["speed-up"] = round(times["one worker"] / times["every core (default)"], 2)
    times["cores"] = len(os.sched_getaffinity(0))
    times["load_average"] = os.getloadavg()[0]
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in times.items()}, indent=2))


if __name__ == "__main__":
    main()
