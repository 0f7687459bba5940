"""Benchmark OSMMap: ms per map tile on one core, against a naive rasterize-the-polygons render.

    PYTHONPATH=. python benchmarks/bench_render.py         # Helsinki z16, 768 px, every tile
    PYTHONPATH=. python benchmarks/bench_render.py --zoom 17 --repeat 9 --osm city.osm.pbf

Prints cold start (read + style build), per-tile render (array) and render + PNG for every tile of
the extract at the zoom (median, p95, densest tile), and the naive path (areas and lines burnt with
rasterio.features.rasterize, no style, no labels) on the densest tile, as a ratio in the same run.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from pathlib import Path

import mercantile
import numpy as np
import shapely
from rasterio.features import rasterize

from sociomap.maps.osm_data import cached_osm
from sociomap.maps.osm_render import OSMMap, encode_png
from sociomap.tiling.grid import tile_bounds_m, tile_transform

HELSINKI = Path(__file__).resolve().parents[1] / "tests" / "data" / "helsinki.osm.pbf"


def best_ms(fn, repeat: int) -> float:
    """Fastest of ``repeat`` calls, ms (the shared machine adds noise, never speed)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def naive_png(osm, tile: mercantile.Tile, size: int) -> bytes:
    """The recipe's naive map: areas and 3-m-buffered lines burnt with rasterio, no labels, Pillow PNG."""
    left, bottom, right, top = tile_bounds_m(tile, size)
    box = shapely.box(left, bottom, right, top)
    rgb = np.full((size, size, 3), (242, 239, 233), np.uint8)
    transform = tile_transform(tile, size)
    layers = ((osm.areas.geometry, (217, 208, 201)), (osm.lines.geometry.buffer(3), (255, 255, 255)))
    for geoms, colour in layers:
        hits = list(geoms[geoms.intersects(box)])
        if hits:
            mask = rasterize(hits, out_shape=(size, size), transform=transform).astype(bool)
            rgb[mask] = colour
    return encode_png(rgb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--osm", type=Path, default=HELSINKI)
    parser.add_argument("--zoom", type=int, default=16)
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--style", default="socioseg", choices=["socioseg", "carto"])
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    source = OSMMap(args.osm, style=args.style)
    start = time.perf_counter()
    osm = cached_osm(args.osm)
    west, south, east, north = mercantile.lnglat(*osm.bounds_m[:2]) + mercantile.lnglat(*osm.bounds_m[2:])
    tiles = list(mercantile.tiles(west, south, east, north, args.zoom))
    source.read(tiles[0], args.size)
    print(f"cold start (read {args.osm.name}, build style and datasources, first tile): "
          f"{1000 * (time.perf_counter() - start):.0f} ms")

    render = {t: best_ms(lambda t=t: source.read(t, args.size), args.repeat) for t in tiles}
    png = {t: best_ms(lambda t=t: source.read_png(t, args.size), args.repeat) for t in tiles}
    densest = max(tiles, key=lambda t: sum(
        int(frame.intersects(shapely.box(*tile_bounds_m(t, args.size))).sum())
        for frame in (osm.areas.geometry, osm.lines.geometry, osm.points.geometry)))
    naive = best_ms(lambda: naive_png(osm, densest, args.size), max(1, args.repeat // 2))

    def p95(values):
        return sorted(values)[int(0.95 * (len(values) - 1))]

    print(f"style {args.style}: {len(tiles)} tiles z{args.zoom} at {args.size} px, one core, best of {args.repeat}:")
    print(f"  render (array):  median {statistics.median(render.values()):.1f} ms, p95 {p95(render.values()):.1f} ms,"
          f" densest {densest} {render[densest]:.1f} ms")
    print(f"  render + PNG:    median {statistics.median(png.values()):.1f} ms, p95 {p95(png.values()):.1f} ms,"
          f" densest {png[densest]:.1f} ms")
    print(f"  naive rasterize + PNG (no style, no labels), densest: {naive:.1f} ms"
          f" -> OSMMap render + PNG / naive = {png[densest] / naive:.2f}")


if __name__ == "__main__":
    main()
