"""Huge-but-sparse mosaic: seconds and peak RSS of a dry-run count and of reading tiles across it.

    PYTHONPATH=. python benchmarks/bench_mosaic_memory.py [--zoom 16] [--reads 200]

Writes a 36000x18000 world raster (0.01 degree, sparse: 64 blocks of data) to a temp folder, then
counts its tiles at --zoom with ``Mosaic.count_tiles`` (no pixel read) and reads --reads tiles over the
data blocks; prints RSS after each step (GDAL's block cache is bounded by GDAL_CACHE_MB).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import mercantile
import numpy as np
import rasterio
from rasterio.transform import from_origin


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoom", type=int, default=16)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    from sociomap.tiling import Mosaic

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "world.tif"
        rng = np.random.default_rng(0)
        with rasterio.open(path, "w", driver="GTiff", width=36000, height=18000, count=3, dtype="uint8", nodata=0,
                           crs="EPSG:4326", transform=from_origin(-180, 90, 0.01, 0.01), tiled=True,
                           blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True) as dst:
            for i in range(64):
                window = rasterio.windows.Window(512 * (i % 64 + 2), 512 * (i // 8 + 3), 512, 512)
                dst.write(rng.integers(1, 255, (3, 512, 512), dtype=np.uint8), window=window)
        print(f"raster written: {path.stat().st_size / 1e6:.1f} MB on disk, RSS {rss_mb():.0f} MB")
        start = time.perf_counter()
        mosaic = Mosaic(path)
        n = mosaic.count_tiles(args.zoom)
        print(f"dry-run count z{args.zoom}: {n} tiles in {time.perf_counter() - start:.3f} s, peak RSS {rss_mb():.0f} MB")
        start = time.perf_counter()
        got = 0
        for i in range(args.reads):
            col, row = 512 * (i % 64 + 2) + 256, 512 * ((i % 64) // 8 + 3) + 256
            tile = mercantile.tile(-180 + col * 0.01, 90 - row * 0.01, 12)
            got += mosaic.read(tile, 256) is not None
        print(f"read {args.reads} z12 tiles ({got} with data) in {time.perf_counter() - start:.1f} s, "
              f"peak RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
