"""Benchmark the viewer's heavy parts on the bundled data: raster archives, live tiles, pictures, pages.

    PYTHONPATH=. python benchmarks/bench_viewer.py            # writes scratch/bench-viewer/

Berkeley (examples/berkeley): imagery archive from the NAIP mosaic and the map raster; Helsinki
(tests/data): the OSM reference labels, a basemap archive rendered with Mapnik, the pictures and the
offline page. Live tiles: first request (read + encode) against a repeat (the server's tile cache),
as a ratio in the same run. The machine is shared: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request
from pathlib import Path

from sociomap.maps.base import open_map_source
from sociomap.tiling import Mosaic
from sociomap.viewer import Background, RunView, open_run
from sociomap.viewer.html import write_html
from sociomap.viewer.pictures import write_pictures
from sociomap.viewer.server import make_server
from sociomap.viewer.tiles import archive_info, covering_tiles, write_basemap_tiles, write_imagery_tiles

ROOT = Path(__file__).resolve().parents[1]
NAIP = ROOT / "examples" / "berkeley" / "naip_ucb_campus.tif"
CARTO = ROOT / "examples" / "berkeley" / "osm_carto_ucb_campus.tif"
HELSINKI = ROOT / "tests" / "data" / "helsinki.osm.pbf"
OUT = ROOT / "scratch" / "bench-viewer"


def timed(label: str, fn):  # noqa: ANN001, ANN201 - a tiny harness
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    print(f"{label:<46} {seconds:7.2f} s")
    return value, seconds


def archive_line(path: Path, seconds: float) -> None:
    from pmtiles.reader import MmapSource, Reader, all_tiles

    with open(path, "rb") as f:
        n = sum(1 for _ in all_tiles(Reader(MmapSource(f)).get_bytes))
    info = archive_info(path)
    print(f"    {path.name}: {n} tiles z{info['min_zoom']}-{info['max_zoom']}, "
          f"{path.stat().st_size / 1e6:.1f} MB, {1000 * seconds / max(n, 1):.0f} ms/tile")


def live_tiles(view, role: str, zoom: int) -> None:
    server = make_server(view, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fmt = server.app.live_info[role]["format"]
    tiles = covering_tiles(view.bounds, zoom)[:12]
    cold, warm = [], []
    for tile in tiles:
        for bucket in (cold, warm):
            start = time.perf_counter()
            urllib.request.urlopen(f"{server.url}tiles/{role}/{tile.z}/{tile.x}/{tile.y}.{fmt}").read()
            bucket.append(1000 * (time.perf_counter() - start))
    server.shutdown()
    server.server_close()
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"live {role} tiles z{zoom} ({len(tiles)}): first {c:.0f} ms, repeat {w:.1f} ms (x{c / w:.0f})")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    berkeley = OUT / "berkeley"
    berkeley.mkdir(exist_ok=True)
    mosaic = Mosaic(NAIP)
    (path,), s = timed("Berkeley imagery.pmtiles (NAIP, native zoom)",
                       lambda: write_imagery_tiles(berkeley, mosaic))
    archive_line(path, s)
    bounds = mosaic.geographic_bounds()
    (path,), s = timed("Berkeley basemap.pmtiles (map raster, z..17)",
                       lambda: write_basemap_tiles(berkeley, open_map_source(CARTO), bounds, maxzoom=17))
    archive_line(path, s)

    from sociomap.export import export_run
    from sociomap.pipeline.labels import write_labels

    labels = OUT / "helsinki"
    classes = ("park", "school", "hospital", "sport and cultural", "residential", "commercial")
    timed("Helsinki labels (6 classes)", lambda: write_labels(HELSINKI, classes, labels))
    timed("Helsinki vector PMTiles export", lambda: export_run(labels, "pmtiles"))
    view, _ = timed("open_run", lambda: open_run(labels, osm=str(HELSINKI)))
    source = open_map_source(HELSINKI, bounds_wgs84=view.bounds)
    (path,), s = timed("Helsinki basemap.pmtiles (Mapnik, z..17)",
                       lambda: write_basemap_tiles(OUT, source, view.bounds, maxzoom=17))
    archive_line(path, s)
    pictures, _ = timed("pictures (overview 1600 px + 6 thumbnails)", lambda: write_pictures(labels, view))
    for p in pictures[:1]:
        print(f"    {p.name}: {p.stat().st_size / 1e6:.1f} MB")
    page, _ = timed("offline page (2048 px map picture)", lambda: write_html(view, labels / "viewer.html"))
    print(f"    {page.name}: {page.stat().st_size / 1e6:.1f} MB")
    live_tiles(view, "map", 16)
    imagery = Background("imagery", "NAIP", "NAIP", source=str(NAIP))
    bare = RunView(out=OUT, set_dir=OUT, kind="model", title="bench", description="", random_weights=False,
                   layers=(), bounds=bounds, vector_archive=None, backgrounds=(imagery,))
    live_tiles(bare, "imagery", 16)


if __name__ == "__main__":
    main()
