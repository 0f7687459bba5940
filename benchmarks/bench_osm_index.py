"""Benchmark building the OSM index: seconds and peak RSS for the same frame from 1x and Nx files.

    PYTHONPATH=. python benchmarks/bench_osm_index.py FILE [--bounds W,S,E,N] [--cut-above BYTES]

Run each file in its own process (peak RSS is per process). Nx files come from benchmarks/osm_copies.py.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import sociomap.maps.osm_read as osm_read
from sociomap.maps.osm_index import prepare_osm_index

HELSINKI_CENTRE = (24.9351762, 60.1641550, 24.9534145, 60.1791130)  # the extract's own box (copy 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("osm", type=Path)
    parser.add_argument("--bounds", default=",".join(map(str, HELSINKI_CENTRE)))
    parser.add_argument("--cut-above", type=int, default=osm_read.CUT_ABOVE_BYTES)
    args = parser.parse_args()
    osm_read.CUT_ABOVE_BYTES = args.cut_above
    bounds = tuple(float(v) for v in args.bounds.split(","))
    import geopandas  # noqa: F401 - imported before timing, as in a run
    import pyogrio  # noqa: F401

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        index = prepare_osm_index(args.osm, bounds, folder)
        size = index.stat().st_size
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    path = "cut" if args.osm.stat().st_size > args.cut_above else "direct"
    print(f"{args.osm.name}: {args.osm.stat().st_size / 1e6:.1f} MB, {path} read, index {size / 1e6:.1f} MB, "
          f"{seconds:.2f} s, peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
