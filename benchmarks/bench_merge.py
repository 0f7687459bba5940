"""Benchmark merge_layers on 10^4, 10^5 (default) and 10^6 (--big) synthetic per-tile pieces.

Pieces are real vectorize_mask output: random ellipses drawn on a 4 x 4 block of z16 768-px tiles at
Helsinki's latitude, cut into tiles and vectorized; the block is then repeated (translated by whole
blocks, which keeps shared seam edges bit-identical) until n pieces are stored. Each size runs in its own
process so the peak RSS (ru_maxrss) belongs to that size; the block workers' peak is reported apart.
Two baselines run on the same pieces after the timed merge, each reported as a ratio: the unpartitioned
path (``merge_table`` on the whole (layer, query) in one process, the design before blocks) up to
--unpartitioned-max, and the naive path (one union_all per query, then explode) up to --naive-max.

    python benchmarks/bench_merge.py            # 10^4 and 10^5
    python benchmarks/bench_merge.py --big      # also 10^6 (about 2 min; 5 with --unpartitioned-max 1000000)
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mercantile
import numpy as np
import shapely

from sociomap.merge import MergeConfig, PieceStore, merge_layers, merge_table, vectorize_mask
from sociomap.tiling.grid import tile_pixel_size_m

SIZE, ZOOM, BLOCK = 768, 16, 4
ORIGIN = mercantile.tile(24.90, 60.20, ZOOM)
CONFIG = MergeConfig()


def base_block(seed: int = 0) -> list[tuple[int, int, np.ndarray]]:
    """(dx, dy, pieces) per tile of one 4 x 4 block: ellipses of 5-250 px radius, some across seams."""
    rng = np.random.default_rng(seed)
    side = BLOCK * SIZE
    mask = np.zeros((side, side), dtype=bool)
    rows, cols = np.ogrid[:side, :side]
    for _ in range(BLOCK * BLOCK * 30):
        r = rng.uniform(5, 250) if rng.random() < 0.15 else rng.uniform(5, 40)
        cy, cx = rng.uniform(r, side - r, size=2)  # stays inside the block: copies need no partner
        ry, rx = r, r * rng.uniform(0.4, 1.0)
        y0, y1, x0, x1 = int(cy - ry), int(cy + ry) + 1, int(cx - rx), int(cx + rx) + 1
        mask[y0:y1, x0:x1] |= ((rows[y0:y1] - cy) / ry) ** 2 + ((cols[:, x0:x1] - cx) / rx) ** 2 <= 1
    block = []
    for dy in range(BLOCK):
        for dx in range(BLOCK):
            tile = mercantile.Tile(ORIGIN.x + dx, ORIGIN.y + dy, ZOOM)
            sub = mask[dy * SIZE:(dy + 1) * SIZE, dx * SIZE:(dx + 1) * SIZE]
            block.append((dx, dy, np.array(vectorize_mask(sub, tile, CONFIG), dtype=object)))
    return block


def fill_store(store: PieceStore, n: int) -> int:
    """Add block copies (side by side, rows of 64 blocks) until ``n`` pieces; return the pieces added."""
    block = base_block()
    per_block = sum(len(p) for _, _, p in block)
    step = BLOCK * SIZE * tile_pixel_size_m(ZOOM, SIZE)
    added, copy = 0, 0
    while added < n:
        bx, by = copy % 64, copy // 64
        for dx, dy, pieces in block:
            take = pieces[: n - added]
            moved = shapely.transform(take, lambda c: c + [bx * step, -by * step])
            tile = mercantile.Tile(ORIGIN.x + bx * BLOCK + dx, ORIGIN.y + by * BLOCK + dy, ZOOM)
            store.add("park_and_greenspace", tile, list(moved), {"query": "Park", "run_id": "bench"})
            added += len(take)
            if added >= n:
                break
        copy += 1
    assert per_block > 0
    return added


def naive_merge(store: PieceStore) -> int:
    """The baseline of docs/merge.md: one union_all per (layer, query), then explode."""
    n = 0
    for _, _, table in store.iter_tables():
        n += len(shapely.get_parts(shapely.union_all(table.geometry)))
    return n


def unpartitioned_merge(store: PieceStore) -> int:
    """The path before blocks: each whole (layer, query) read and merged at once in this process."""
    return sum(len(merge_table(query, table, CONFIG)) for _, query, table in store.iter_tables())


def run_one(n: int, workers: int, unpartitioned: bool, naive: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = PieceStore(Path(tmp))
        t0 = time.perf_counter()
        pieces = fill_store(store, n)
        t1 = time.perf_counter()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        objects = sum(len(frame) for _, frame in merge_layers(store, CONFIG, workers=workers))
        t2 = time.perf_counter()
        result = {"pieces": pieces, "objects": objects, "workers": workers, "store_s": round(t1 - t0, 2),
                  "merge_s": round(t2 - t1, 2), "peak_rss_mb_before_merge": round(rss_before),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "worker_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}
        if unpartitioned:
            t3 = time.perf_counter()
            result["unpartitioned_objects"] = unpartitioned_merge(store)
            result["unpartitioned_s"] = round(time.perf_counter() - t3, 2)
            result["unpartitioned_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            result["speedup_vs_unpartitioned"] = round(result["unpartitioned_s"] / result["merge_s"], 2)
        if naive:
            t3 = time.perf_counter()
            result["naive_objects"] = naive_merge(store)
            result["naive_s"] = round(time.perf_counter() - t3, 2)
            result["speedup"] = round(result["naive_s"] / result["merge_s"], 1)
        store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also run 10^6 pieces")
    parser.add_argument("--workers", type=int, default=2, help="merge_layers worker processes")
    parser.add_argument("--unpartitioned-max", type=int, default=10**5,
                        help="largest size that also runs the unpartitioned merge")
    parser.add_argument("--naive-max", type=int, default=10**4, help="largest size that also runs the naive merge")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.workers, args.child <= args.unpartitioned_max,
                                 args.child <= args.naive_max)))
        return
    sizes = [10**4, 10**5] + ([10**6] if args.big else [])
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--workers", str(args.workers),
                              "--unpartitioned-max", str(args.unpartitioned_max), "--naive-max", str(args.naive_max)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out))
        print(json.dumps(rows[-1]), flush=True)
    for small, big in zip(rows, rows[1:]):
        growth = big["merge_s"] / small["merge_s"]
        nlogn = big["pieces"] * math.log(big["pieces"]) / (small["pieces"] * math.log(small["pieces"]))
        print(f"{small['pieces']} -> {big['pieces']}: time x{growth:.1f} (n log n: x{nlogn:.1f}), "
              f"peak RSS x{big['peak_rss_mb'] / small['peak_rss_mb']:.1f}")


if __name__ == "__main__":
    main()
