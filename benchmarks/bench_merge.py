"""Benchmark the seam merge on small-object sets and city-like contiguous districts, against a plain
R-tree + union-find baseline in the same run, with the raster ideal as the correctness check.

Cases (pieces are real ``vectorize_mask`` output of z16 768-px tiles at Helsinki's latitude):
* ``ellipses-N``: random ellipses on a 4 x 4 block of tiles (mean ~170 vertices per piece, some across
  seams), the block repeated side by side until N pieces. Ideal: the block's mask vectorized in one piece,
  cleaned like the merge, times the copies.
* ``district-N``: ONE contiguous district over N tiles (10 x 10, 32 x 32, 100 x 100): a ragged outline,
  courtyards on a 110-px lattice (holes, many cut by seams) with two kiosks each (separate small
  objects: ~100 pieces per tile) and large parks (holes of ~1 x 1 tile) every 2,600 px. Ideal, exact by
  construction: 1 district with (courtyards + parks) holes, 2 kiosks per courtyard, their total area;
  for 100 tiles also the mask vectorized in one piece, compared feature by feature.

Each measurement runs in its own process on a store filled once per case (store fill not timed):
* ``merge``: ``MergeRunner.run`` over every block, objects discarded (EPSG:3857): the merge alone;
* ``write``: ``write_merged_layers`` to a GeoPackage in EPSG:4326 (merge + reprojection + writing);
* ``baseline``: the plain method of shared/notes/merging.md: every piece in memory, an STRtree
  ``dwithin`` 0.5 px between pieces of different tiles, union-find, ``union_all`` per component.
Reported per measurement: wall seconds, CPU seconds (process + workers), the peak RSS of the whole
process tree (psutil, sampled every 20 ms: main + worker processes together), and the load average.

    python benchmarks/bench_merge.py                       # ellipses 10^4, 10^5; districts 10^2, 10^3 tiles
    python benchmarks/bench_merge.py --big                 # also ellipses 10^6 and the 10^4-tile district
    python benchmarks/bench_merge.py --cases district-10000 --skip baseline
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mercantile
import numpy as np
import rasterio.features
import shapely

from sociomap.merge import MergeConfig, MergeRunner, PieceStore, vectorize_mask
from sociomap.merge.vectorize import pixel_polygons, place_pixel_polygons
from sociomap.merge.clean import clean_polygons
from sociomap.merge.links import connected_labels
from sociomap.merge.runner import LayerStats
from sociomap.tiling.grid import global_pixel_to_m, tile_pixel_size_m

SIZE, ZOOM, BLOCK = 768, 16, 4
ORIGIN = mercantile.tile(24.90, 60.20, ZOOM)
CONFIG = MergeConfig()
LAYER = "park_and_greenspace"
SMALL = ["ellipses-10000", "ellipses-100000", "district-100", "district-1024"]
BIG = ["ellipses-1000000", "district-10000"]

# District geometry, global pixels from the district's first tile (all multiples chosen so some cross seams).
MARGIN, COURT_P, COURT_W, COURT_H = 100, 110, 50, 40
KIOSKS = ((5, 5, 14, 14), (30, 20, 14, 14))  # (col, row, width, height) inside a courtyard
PARK_P, PARK_OFF, PARK_W, PARK_H = 2600, 700, 900, 700


# ---------------------------------------------------------------- small objects
def ellipses_block(seed: int = 0) -> list[tuple[int, int, np.ndarray]]:
    """(dx, dy, pieces) per tile of one 4 x 4 block, and the block's whole mask."""
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
    return block, mask


def fill_ellipses(store: PieceStore, n: int) -> dict:
    """Whole block copies (rows of 64 blocks) until at least ``n`` pieces; the ideal from one block."""
    block, mask = ellipses_block()
    per_block = sum(len(p) for _, _, p in block)
    copies = math.ceil(n / per_block)
    step = BLOCK * SIZE * tile_pixel_size_m(ZOOM, SIZE)
    for copy in range(copies):
        bx, by = copy % 64, copy // 64
        for dx, dy, pieces in block:
            moved = shapely.transform(pieces, lambda c: c + [bx * step, -by * step])
            tile = mercantile.Tile(ORIGIN.x + bx * BLOCK + dx, ORIGIN.y + by * BLOCK + dy, ZOOM)
            store.add(LAYER, tile, list(moved), {"query": "Park", "query_kind": "class", "run_id": "bench"})
    shapes = rasterio.features.shapes(mask.view(np.uint8), mask=mask, connectivity=4)
    pixel = np.array([shapely.geometry.shape(g) for g, _ in shapes], dtype=object)
    ideal = shapely.transform(pixel, lambda c: np.column_stack(
        global_pixel_to_m(c[:, 0] + ORIGIN.x * SIZE, c[:, 1] + ORIGIN.y * SIZE, ZOOM, SIZE)))
    ideal, _ = clean_polygons(ideal, CONFIG.min_area_m2, CONFIG.min_hole_m2)
    return {"pieces": per_block * copies, "tiles": copies * BLOCK * BLOCK,
            "ideal_objects": len(ideal) * copies, "ideal_area_m3857": float(shapely.area(ideal).sum()) * copies}


# ---------------------------------------------------------------- districts
def district_layout(side_tiles: int) -> dict:
    """Which courtyards and parks exist (lattice tables) for a district of side_tiles x side_tiles tiles."""
    side = side_tiles * SIZE
    lo, hi = MARGIN, side - MARGIN
    pc = np.arange(math.ceil(side / PARK_P)) * PARK_P + PARK_OFF
    park_ok = (pc + PARK_W <= hi - 10) & (pc >= lo + 10)
    parks = [(c, r) for c in pc[park_ok] for r in pc[park_ok]]
    n = side // COURT_P + 1
    cc = np.arange(n) * COURT_P + 30
    inside = (cc >= lo + 50) & (cc + COURT_W <= hi - 50)  # clear of the outline's notches
    cr = np.arange(n) * COURT_P + 30
    inside_r = (cr >= lo + 50) & (cr + COURT_H <= hi - 50)
    court = inside[:, None] & inside_r[None, :]  # [col index, row index]
    for c, r in parks:  # no courtyard within 3 px of a park (it would join the park)
        ci = (cc + COURT_W + 3 > c) & (cc - 3 < c + PARK_W)
        ri = (cr + COURT_H + 3 > r) & (cr - 3 < r + PARK_H)
        court[np.ix_(ci, ri)] = False
    return {"side": side, "court": court, "parks": parks}


def district_mask(layout: dict, col0: int, row0: int, size: int) -> np.ndarray:
    """(size, size) mask of the district at global-in-district pixel (col0, row0)."""
    rows, cols = np.ogrid[row0:row0 + size, col0:col0 + size]
    side = layout["side"]
    notch = ((cols // 300) % 3 == 0) & (rows < MARGIN + 40) | ((rows // 250) % 4 == 1) & (cols < MARGIN + 30)
    mask = (cols >= MARGIN) & (cols < side - MARGIN) & (rows >= MARGIN) & (rows < side - MARGIN) & ~notch
    ci, cj = (cols - 30) // COURT_P, (rows - 30) // COURT_P
    oc, orow = (cols - 30) % COURT_P, (rows - 30) % COURT_P
    court = layout["court"]
    valid = (ci >= 0) & (cj >= 0) & (ci < court.shape[0]) & (cj < court.shape[1])
    has = np.zeros(np.broadcast(ci, cj).shape, dtype=bool)
    ci_b, cj_b = np.broadcast_arrays(ci, cj)
    has[valid] = court[ci_b[valid], cj_b[valid]]
    in_court = has & (oc < COURT_W) & (orow < COURT_H)
    kiosk = np.zeros_like(in_court)
    for kc, kr, kw, kh in KIOSKS:
        kiosk |= in_court & (oc >= kc) & (oc < kc + kw) & (orow >= kr) & (orow < kr + kh)
    mask &= ~in_court | kiosk
    for c, r in layout["parks"]:
        mask[max(0, r - row0):max(0, r + PARK_H - row0), max(0, c - col0):max(0, c + PARK_W - col0)] = False
    return mask


def _phase(layout: dict, dx: int, dy: int) -> tuple[int, int] | None:
    """The courtyard-lattice phase of a tile whose mask is a pure lattice (no outline, park), else None."""
    c0, r0, c1, r1 = dx * SIZE, dy * SIZE, (dx + 1) * SIZE, (dy + 1) * SIZE
    edge = MARGIN + 200
    if c0 < edge or r0 < edge or c1 > layout["side"] - edge or r1 > layout["side"] - edge:
        return None
    for c, r in layout["parks"]:
        if c < c1 + COURT_P and c + PARK_W > c0 - COURT_P and r < r1 + COURT_P and r + PARK_H > r0 - COURT_P:
            return None
    return (c0 - 30) % COURT_P, (r0 - 30) % COURT_P


def fill_district(store: PieceStore, n_tiles: int) -> dict:
    side_tiles = math.isqrt(n_tiles)
    layout = district_layout(side_tiles)
    pieces, area_px, cache = 0, 0, {}
    for dy in range(side_tiles):
        for dx in range(side_tiles):
            tile = mercantile.Tile(ORIGIN.x + dx, ORIGIN.y + dy, ZOOM)
            # Tiles clear of the outline and the parks repeat with the courtyard lattice's phase: their
            # masks (and pixel polygons) are computed once per phase and placed on each tile's own grid.
            key = _phase(layout, dx, dy)
            if key is None or key not in cache:
                mask = district_mask(layout, dx * SIZE, dy * SIZE, SIZE)
                entry = (pixel_polygons(mask), int(mask.sum()))
                if key is not None:
                    cache[key] = entry
            else:
                entry = cache[key]
            polys = place_pixel_polygons(entry[0], tile, SIZE, CONFIG)
            store.add(LAYER, tile, polys, {"query": "Residential", "query_kind": "class", "run_id": "bench"})
            pieces += len(polys)
            area_px += entry[1]
    res = tile_pixel_size_m(ZOOM, SIZE)
    n_court = int(layout["court"].sum())
    info = {"pieces": pieces, "tiles": side_tiles ** 2, "ideal_objects": 1 + len(KIOSKS) * n_court,
            "ideal_holes": n_court + len(layout["parks"]), "ideal_area_m3857": area_px * res * res}
    if side_tiles <= 10:  # the whole mask vectorized once, kept for a feature-by-feature comparison
        mask = district_mask(layout, 0, 0, layout["side"])
        shapes = rasterio.features.shapes(mask.view(np.uint8), mask=mask, connectivity=4)
        pixel = np.array([shapely.geometry.shape(g) for g, _ in shapes], dtype=object)
        ideal = shapely.transform(pixel, lambda c: np.column_stack(
            global_pixel_to_m(c[:, 0] + ORIGIN.x * SIZE, c[:, 1] + ORIGIN.y * SIZE, ZOOM, SIZE)))
        Path(store.directory, "ideal.wkb").write_bytes(shapely.to_wkb(ideal[np.argmax(shapely.area(ideal))]))
    return info


# ---------------------------------------------------------------- measurements
class TreePeak:
    """Peak RSS of this process plus all its descendants, sampled every 20 ms in a thread."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for proc in [self._me, *self._me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except Exception:  # a worker that just exited
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds() -> float:
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


def measure(mode: str, store_dir: Path, workers: int) -> dict:
    store = PieceStore(store_dir)
    load0 = os.getloadavg()[0]
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    with TreePeak() as peak:
        if mode == "merge":
            out = run_merge(store, workers)
        elif mode == "write":
            out = run_write(store, workers, store_dir)
        else:
            out = run_baseline(store)
    result = {"mode": mode, "wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(cpu_seconds() - cpu0, 1),
              "tree_peak_rss_mb": round(peak.peak / 2**20), "load": [round(load0, 1), round(os.getloadavg()[0], 1)],
              **out}
    store.close()
    return result


def run_merge(store: PieceStore, workers: int) -> dict:
    objects, area, big = 0, 0.0, None
    stats = LayerStats()
    with MergeRunner(workers) as runner:
        for batch in runner.run(store, LAYER, CONFIG, "EPSG:3857", stats=stats):
            objects += len(batch)
            geoms = shapely.from_wkb(batch.geometry)
            areas = shapely.area(geoms)
            area += float(areas.sum())
            if len(batch) and (big is None or areas.max() > big[0]):
                k = int(np.argmax(areas))
                big = (float(areas[k]), geoms[k], int(batch.columns["n_tiles"][k]))
    leaves = [t for t in stats.steps if t.kind == "leaf"]
    joins = [t for t in stats.steps if t.kind == "node"]
    out = {"objects": objects, "area_m3857": area, "leaves": len(leaves), "joins": len(joins),
           "leaf_s": round(sum(t.seconds for t in leaves), 1), "join_s": round(sum(t.seconds for t in joins), 1),
           "slowest_join_s": round(max((t.seconds for t in joins), default=0), 1),
           "max_leaf_pieces": stats.max_leaf_pieces, "max_join_intervals": stats.max_node_intervals,
           "max_join_partial_mb": round(max((t.partial_bytes for t in joins), default=0) / 2**20, 1),
           "worker_peak_rss_mb": max((t.peak_rss_mb for t in stats.steps), default=0)}
    if big is not None:
        out.update(largest_tiles=big[2], largest_holes=int(shapely.get_num_interior_rings(big[1])),
                   largest_vertices=int(shapely.get_num_coordinates(big[1])))
        ideal_path = store.directory / "ideal.wkb"
        if ideal_path.exists():
            out["largest_equals_ideal"] = bool(shapely.equals(big[1], shapely.from_wkb(ideal_path.read_bytes())))
    return out


def run_write(store: PieceStore, workers: int, store_dir: Path) -> dict:
    from sociomap.export import write_merged_layers

    out_dir = store_dir / "out"
    counts = write_merged_layers(store, CONFIG, out_dir, [LAYER], crs="EPSG:4326", workers=workers)
    size = (out_dir / f"{LAYER}.gpkg").stat().st_size
    shutil.rmtree(out_dir)
    return {"objects": counts[LAYER], "gpkg_mb": round(size / 2**20)}


def run_baseline(store: PieceStore) -> dict:
    """Plain method: all pieces in memory; STRtree dwithin 0.5 px across tiles; union-find; union_all per group."""
    index = store.read_index(LAYER)
    rows = store.read_pieces(index.call_id)
    geoms = shapely.from_wkb(rows.wkb)
    del rows
    calls = np.repeat(index.call_id, index.n_pieces)  # pieces come back by call, in call order
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms, predicate="dwithin", distance=0.5 * tile_pixel_size_m(ZOOM, SIZE))
    keep = (i < j) & (calls[i] != calls[j])
    labels = connected_labels(len(geoms), np.column_stack([i[keep], j[keep]]))
    del tree, i, j
    order = np.argsort(labels, kind="stable")
    _, starts = np.unique(labels[order], return_index=True)
    objects, area = 0, 0.0
    for group in np.split(order, starts[1:]):
        merged = geoms[group[0]] if len(group) == 1 else shapely.union_all(geoms[group])
        parts, _ = clean_polygons(shapely.get_parts(merged), CONFIG.min_area_m2, CONFIG.min_hole_m2)
        objects += len(parts)
        area += float(shapely.area(parts).sum())
    return {"objects": objects, "area_m3857": area}


def fill(case: str, store_dir: Path) -> dict:
    kind, n = case.split("-")
    t0 = time.perf_counter()
    with PieceStore(store_dir) as store:
        info = fill_ellipses(store, int(n)) if kind == "ellipses" else fill_district(store, int(n))
    return {"case": case, "store_s": round(time.perf_counter() - t0, 1), **info}


def child(args: list[str]) -> str:
    return subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also the 10^6-piece ellipses and 10^4-tile district")
    parser.add_argument("--cases", nargs="*", help=f"cases to run (default {SMALL}, + {BIG} with --big)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["merge", "write", "baseline"])
    parser.add_argument("--workers", type=int, default=None, help="merge workers (default: from the cores)")
    parser.add_argument("--keep", help="keep the filled stores in this folder and reuse them on the next run")
    parser.add_argument("--fill", help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill:
        print(json.dumps(fill(args.fill, Path(args.store))))
        return
    if args.measure:
        print(json.dumps(measure(args.measure, Path(args.store), args.workers)))
        return
    cases = args.cases or (SMALL + (BIG if args.big else []))
    workers = [] if args.workers is None else ["--workers", str(args.workers)]
    for case in cases:
        with tempfile.TemporaryDirectory(prefix="bench_merge_") as tmp:
            store = Path(args.keep, case) if args.keep else Path(tmp)
            saved = store / "info.json"
            if saved.exists():  # a store kept by an earlier run (--keep): filling a 10^4-tile one takes minutes
                info = json.loads(saved.read_text())
            else:
                store.mkdir(parents=True, exist_ok=True)
                info = json.loads(child(["--fill", case, "--store", str(store)]))
                saved.write_text(json.dumps(info))
            print(json.dumps(info), flush=True)
            for mode in ("merge", "write", "baseline"):
                if mode not in args.skip:
                    row = json.loads(child(["--measure", mode, "--store", str(store), *workers]))
                    row["matches_ideal"] = _matches(info, row)
                    print(json.dumps({"case": case, **row}), flush=True)


def _matches(info: dict, row: dict) -> bool:
    same = row["objects"] == info["ideal_objects"]
    if "area_m3857" in row:
        same &= abs(row["area_m3857"] - info["ideal_area_m3857"]) <= 1e-6 * info["ideal_area_m3857"]
    if "largest_holes" in row and "ideal_holes" in info:
        same &= row["largest_holes"] == info["ideal_holes"] and row["largest_tiles"] == info["tiles"]
    if "largest_equals_ideal" in row:
        same &= row["largest_equals_ideal"]
    return bool(same)


if __name__ == "__main__":
    main()
