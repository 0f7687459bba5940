"""The OSM baseline with 1 vs 10 queries: one index query and one classification pass per tile serve
every query, so 10 socio-functions should cost about as much per (tile, query) as 1 class, or less.

    PYTHONPATH=. python benchmarks/bench_osm_baseline.py

In-process `OSMSegmenter.masks` on every z17 768-px tile of the bundled Helsinki extract's area, best of 3.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import mercantile

from sociomap.maps.osm_features import OSMSegmenter
from sociomap.maps.osm_index import prepare_osm_index
from sociomap.taxonomy import load_taxonomy, resolve_queries

PBF = Path(__file__).resolve().parents[1] / "tests" / "data" / "helsinki.osm.pbf"
BOUNDS = (24.9352, 60.1642, 24.9534, 60.1791)


def per_call_ms(segmenter: OSMSegmenter, tiles: list, queries: list, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for tile in tiles:
            segmenter.masks(tile, 768, queries)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / (len(tiles) * len(queries))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        index = prepare_osm_index(PBF, BOUNDS, Path(tmp))
        segmenter = OSMSegmenter(PBF, BOUNDS, index)
        tiles = list(mercantile.tiles(*BOUNDS, zooms=17))
        one = resolve_queries(["park"])
        ten = resolve_queries([f.name for f in load_taxonomy().functions])
        segmenter.masks(tiles[0], 768, ten)  # warm the reader
        report = {"tiles": len(tiles), "ms_per_tile_query_1_class": round(per_call_ms(segmenter, tiles, one), 2),
                  "ms_per_tile_query_10_functions": round(per_call_ms(segmenter, tiles, ten), 2),
                  "load_average": os.getloadavg()[0]}
    report["ratio_10_over_1"] = round(report["ms_per_tile_query_10_functions"] / report["ms_per_tile_query_1_class"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
