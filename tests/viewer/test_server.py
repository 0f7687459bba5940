"""sociomap.viewer.server: byte ranges a PMTiles client can read, live tiles, GeoJSON, model texts, ports."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import socket
import urllib.error
import urllib.request

import mapbox_vector_tile as mvt
import pytest
from PIL import Image
from pmtiles.reader import MmapSource, Reader

from sociomap.errors import ServeError
from sociomap.viewer import open_run
from sociomap.viewer.server import _parse_range, make_server
from tests.viewer.conftest import cache_pointers, serving
from tests.viewer.conftest import copy_set
from sociomap.pipeline.outputs import published_set


def get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-99", 1000, (0, 99)),
        ("bytes=990-", 1000, (990, 999)),
        ("bytes=-10", 1000, (990, 999)),
        ("bytes=500-5000", 1000, (500, 999)),
        ("bytes=1000-", 1000, "unsatisfiable"),
        ("bytes=9-3", 1000, "unsatisfiable"),
        ("bytes=-0", 1000, "unsatisfiable"),
        ("bytes=0-1,5-9", 1000, None),
        ("items=0-1", 1000, None),
        (None, 1000, None),
    ],
)
def test_range_header_parsing(header, size, expected):
    assert _parse_range(header, size) == expected


def test_pmtiles_archive_reads_over_http_ranges_like_from_disk(baseline_run):
    archive = published_set(baseline_run) / "sociomap.pmtiles"
    with serving(open_run(baseline_run)) as server:
        url = server.url + "data/sociomap.pmtiles"
        size = archive.stat().st_size
        status, headers, body = get(url, {"Range": "bytes=0-126"})
        assert status == 206 and len(body) == 127 and body == archive.read_bytes()[:127]
        assert headers["Content-Range"] == f"bytes 0-126/{size}" and headers["Accept-Ranges"] == "bytes"
        status, headers, body = get(url, {"Range": f"bytes={size}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
        status, headers, body = get(url)
        assert status == 200 and body == archive.read_bytes() and headers["ETag"]

        def over_http(offset: int, length: int) -> bytes:
            return get(url, {"Range": f"bytes={offset}-{offset + length - 1}"})[2]

        remote = Reader(over_http)  # the pmtiles client, fed only by the server's ranges
        with open(archive, "rb") as f:
            local = Reader(MmapSource(f))
            assert remote.header() == local.header() and remote.metadata() == local.metadata()
            z = local.header()["max_zoom"]
            from sociomap.viewer.tiles import covering_tiles

            bounds = open_run(baseline_run).bounds
            tile = next(t for t in covering_tiles(bounds, z) if local.get(t.z, t.x, t.y))
            data = remote.get(tile.z, tile.x, tile.y)
            assert data == local.get(tile.z, tile.x, tile.y)
        assert set(mvt.decode(gzip.decompress(data))) <= {"park_and_greenspace", "educational"}
        assert server.app.stats["206 data"] >= 4


def test_live_imagery_tiles_come_from_the_mosaic(baseline_run):
    import mercantile
    import numpy as np

    from sociomap.tiling import Mosaic
    from sociomap.viewer.tiles import MosaicTiles

    view = open_run(baseline_run)
    mosaic = Mosaic(view.background("imagery").source)
    west, south, east, north = mosaic.geographic_bounds()
    reader = MosaicTiles(mosaic)
    tile = mercantile.tile((west + east) / 2, (south + north) / 2, 16)
    with serving(view) as server:
        status, headers, body = get(f"{server.url}tiles/imagery/{tile.z}/{tile.x}/{tile.y}.webp")
        assert status == 200 and headers["Content-Type"] == "image/webp"
        served = Image.open(io.BytesIO(body)).convert("RGBA")
        assert served.size == (512, 512)
        expected = reader.read(tile, 512)
        got = np.asarray(served)
        assert (got[..., 3] > 0).sum() == pytest.approx((expected[..., 3] > 0).sum(), rel=0.02)
        valid = expected[..., 3] > 0
        assert (
            np.corrcoef(got[valid][:, :3].ravel(), expected[valid][:, :3].ravel())[0, 1] > 0.95
        )  # lossy WebP
        status, _, body = get(f"{server.url}tiles/imagery/3/0/0.webp")  # far outside: transparent
        assert status == 200 and Image.open(io.BytesIO(body)).convert("RGBA").getextrema()[3] == (0, 0)
        assert get(f"{server.url}tiles/imagery/3/9/0.webp")[0] == 404  # outside the world
        status, _, body = get(f"{server.url}tiles/map/{tile.z}/{tile.x}/{tile.y}.png")
        assert status == 200 and Image.open(io.BytesIO(body)).size == (512, 512)


def test_layers_are_geojson_without_a_vector_archive_and_no_path_escapes(baseline_run, tmp_path):
    out = tmp_path / "out"
    copy_set(baseline_run, out)
    (out / "sociomap.pmtiles").unlink()
    view = open_run(out)
    with serving(view) as server:
        page = get(server.url)[2].decode()
        assert "/layers/park_and_greenspace.geojson" in page and "pmtiles:///data" not in page
        status, headers, body = get(server.url + "layers/park_and_greenspace.geojson")
        assert status == 200 and headers["Content-Type"] == "application/geo+json"
        collection = json.loads(body)
        parks = next(layer for layer in view.layers if layer.slug == "park_and_greenspace")
        assert len(collection["features"]) == parks.count > 0
        assert {"query", "area_m2", "tiles"} <= set(collection["features"][0]["properties"])
        for path in (
            "data/run.json",
            "data/../run.json",
            "static/../view.py",
            "static/viewer.html",
            "layers/nope.geojson",
            "tiles/imagery/1/0/0.png",
        ):
            assert get(server.url + path)[0] == 404, path
        assert get(server.url + "static/vendor/maplibre-gl.js")[0] == 200


def test_model_texts_are_served_from_the_run_cache(tiny_model_run):
    pointers = cache_pointers(tiny_model_run)[:2]
    view = open_run(tiny_model_run)
    assert view.kind == "model" and view.random_weights
    with serving(view) as server:
        status, _, body = get(
            server.url + "api/reasoning?pointers=" + urllib.request.quote(";".join(pointers))
        )
        assert status == 200
        entries = json.loads(body)
        assert [e["pointer"] for e in entries] == pointers and all("stage1_text" in e for e in entries)
        status, _, body = get(server.url + "api/reasoning?pointers=ab/" + "0" * 64 + ".npz")
        assert status == 404 and "no cache entry" in json.loads(body)["error"]


def test_a_taken_port_is_a_clear_error(baseline_run):
    view = open_run(baseline_run)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"port {port} .* in use.*--port 0"):
            make_server(view, port)
