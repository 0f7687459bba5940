"""Remote mosaics and map rasters: a COG served with HTTP range requests by a real local server."""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio.shutil

from sociomap.maps.base import open_map_source
from sociomap.tiling import Mosaic
from sociomap.tiling.paths import gdal_path


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range GET/HEAD support (http.server has none), counting bytes sent."""

    served: list[int] = []

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def send_head(self):  # noqa: ANN201
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return None
        size = path.stat().st_size
        match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        start, end = (int(match[1]), min(int(match[2] or size - 1), size - 1)) if match else (0, size - 1)
        self.send_response(206 if match else 200)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("ETag", f'"{size}"')
        if match:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        handle = open(path, "rb")
        handle.seek(start)
        self._left = end - start + 1
        return handle

    def copyfile(self, source, outputfile) -> None:  # noqa: ANN001
        data = source.read(self._left)
        self.served.append(len(data))
        outputfile.write(data)


@pytest.fixture(scope="module")
def cog_server(tmp_path_factory, utm_mosaic):
    root = tmp_path_factory.mktemp("www")
    rasterio.shutil.copy(utm_mosaic, root / "city.tif", driver="COG", compress="deflate", blocksize=256)
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root / "city.tif"
    server.shutdown()


def test_url_forms_become_gdal_paths():
    assert gdal_path("https://host/a.tif") == "/vsicurl/https://host/a.tif"
    assert gdal_path("s3://bucket/key/a.tif") == "/vsis3/bucket/key/a.tif"
    assert gdal_path("/vsis3/bucket/a.tif") == "/vsis3/bucket/a.tif" and gdal_path("a.tif") == "a.tif"


def test_remote_cog_reads_the_same_tiles_with_range_requests(cog_server):
    base, local = cog_server
    remote = Mosaic(f"{base}/city.tif")
    for tile in list(remote.tiles(17))[:4]:
        a, b = remote.read(tile, 256), Mosaic(local).read(tile, 256)
        assert (a is None and b is None) or np.array_equal(a.rgb, b.rgb)
    _RangeHandler.served.clear()
    one = Mosaic(f"{base}/city.tif?fresh=1")  # another URL: not in GDAL's process-wide curl cache
    one.read(list(one.tiles(19))[40], 256)  # one small tile: a few blocks, not the whole file
    assert 0 < sum(_RangeHandler.served) < local.stat().st_size / 3
    assert len(remote.fingerprint()) == 64 and remote.fingerprint() == Mosaic(f"{base}/city.tif").fingerprint()


def test_remote_map_raster_through_open_map_source(cog_server):
    base, local = cog_server
    source = open_map_source(f"{base}/city.tif")
    tile = next(Mosaic(local).tiles(17))
    assert source.read(tile, 128).shape == (128, 128, 3)
    assert len(source.fingerprint()) == 64


def test_missing_remote_file_is_one_clear_error(cog_server):
    from sociomap.errors import MosaicError

    base, _ = cog_server
    with pytest.raises(MosaicError, match="nope.tif"):
        Mosaic(f"{base}/nope.tif")
