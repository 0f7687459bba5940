"""sociomap.viewer.server: serve a run's web map on 127.0.0.1, with HTTP range requests for PMTiles.

The standard library's ``http.server`` answers every GET with the whole file; PMTiles clients read
an archive by byte ranges (header, directories, then single tiles), so the handler here implements
single-range ``Range: bytes=`` requests (206 / 416, ``Accept-Ranges``, ``ETag``) itself: it is about
forty lines, and the PyPI range servers are unmaintained single-file scripts. Everything else is
stdlib ``ThreadingHTTPServer``. Routes:

``/``                                the page
``/static/...``                      viewer.js/css and the vendored MapLibre + pmtiles builds
``/data/<archive>.pmtiles``          PMTiles archives of the set (ranges)
``/tiles/<role>/<z>/<x>/<y>.<ext>``  live background tiles read from the mosaic / map (no archive)
``/layers/<slug>.geojson``           a layer as GeoJSON (when the set has no vector PMTiles)
``/api/reasoning?pointers=a;b``      the model's stored texts behind a feature (``read_entries``)
"""

from __future__ import annotations

import errno
import json
import logging
import mimetypes
import re
import threading
from collections import Counter
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import mercantile

from sociomap.errors import InputError, ServeError
from sociomap.viewer.html import layer_geojson, served_page
from sociomap.viewer.tiles import TILE_SIZE, Locked, empty_tile, encode_tile, open_background
from sociomap.viewer.view import RunView

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
_TILE_PATH = re.compile(r"^/tiles/(imagery|map)/(\d{1,2})/(\d+)/(\d+)\.(webp|png)$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 1 << 16
_MAX_POINTERS = 64
_TYPES = {
    ".pmtiles": "application/octet-stream",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".geojson": "application/geo+json",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".webp": "image/webp",
}


def static_files() -> dict[str, Path]:
    """URL path under /static/ -> packaged file, for everything the page loads."""
    root = Path(str(resources.files("sociomap.viewer").joinpath("static")))
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file() and p.suffix != ".html"}


class ViewerApp:
    """What the server answers for one RunView; shared by the handler threads."""

    def __init__(self, view: RunView) -> None:
        self.view = view
        self.archives = {
            p.name: p for p in [view.vector_archive, *(b.archive for b in view.backgrounds)] if p
        }
        self.static = static_files()
        self.live = {b.role: (b, Locked(open_background(b))) for b in view.backgrounds if b.archive is None}
        self.live_info = self.live_sources()
        self.page = served_page(view, self.live_info).encode("utf-8")
        self.layers = {layer.slug: layer for layer in view.layers}
        self.stats: Counter[str] = Counter()  # "status kind" -> count, for tests and the log
        self._lock = threading.Lock()
        self.tile = lru_cache(maxsize=2048)(self._tile)  # panning back does not re-render
        self.geojson = lru_cache(maxsize=64)(self._geojson)

    def live_sources(self) -> dict[str, dict]:
        """role -> (minzoom, maxzoom, format) of the backgrounds read tile by tile."""
        from sociomap.viewer.tiles import IMAGERY_FORMAT, MAP_FORMAT, background_zooms

        out = {}
        for role, (_, reader) in self.live.items():
            low, high = background_zooms(reader.reader, self.view.bounds)
            out[role] = {
                "minzoom": low,
                "maxzoom": high,
                "format": IMAGERY_FORMAT if role == "imagery" else MAP_FORMAT,
            }
        return out

    def count(self, key: str) -> None:
        """Count one answer (thread-safe)."""
        with self._lock:
            self.stats[key] += 1

    def _tile(self, role: str, z: int, x: int, y: int) -> bytes:
        """A live tile; transparent, without a read, coarser than the source's lowest zoom or outside
        the frame (a zoomed-out mosaic without overviews would be read whole)."""
        fmt = self.live_info[role]["format"]
        tile = mercantile.Tile(x, y, z)
        west, south, east, north = self.view.bounds
        box = mercantile.bounds(tile)
        if (
            z < self.live_info[role]["minzoom"]
            or box.west > east
            or box.east < west
            or box.south > north
            or box.north < south
        ):
            return empty_tile(fmt)
        rgba = self.live[role][1].read(tile, TILE_SIZE)
        return empty_tile(fmt) if rgba is None else encode_tile(rgba, fmt)

    def _geojson(self, slug: str) -> bytes:
        return json.dumps(layer_geojson(self.layers[slug]), ensure_ascii=False).encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    """Routes GET/HEAD requests to the ViewerApp of the server."""

    server: ViewerServer
    protocol_version = "HTTP/1.1"  # keep-alive: a PMTiles client makes many small requests

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("%s %s", self.address_string(), format % args)

    def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's name
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:  # noqa: N802 - the stdlib's name
        app = self.server.app
        url = urlsplit(self.path)
        path = url.path
        try:
            if path in ("/", "/index.html"):
                return self._send_bytes(app.page, "text/html; charset=utf-8", head, "page")
            if path.startswith("/static/") and path[8:] in app.static:
                return self._send_file(app.static[path[8:]], head, "static", cache="max-age=3600")
            if path.startswith("/data/") and path[6:] in app.archives:
                return self._send_file(app.archives[path[6:]], head, "data")
            match = _TILE_PATH.match(path)
            if match and match[1] in app.live and match[5] == app.live_info[match[1]]["format"]:
                role, z, x, y, fmt = match[1], int(match[2]), int(match[3]), int(match[4]), match[5]
                if not (0 <= x < 2**z and 0 <= y < 2**z):
                    return self._error(HTTPStatus.NOT_FOUND, "tile outside the world")
                return self._send_bytes(
                    app.tile(role, z, x, y), _TYPES[f".{fmt}"], head, f"tile-{role}", cache="max-age=600"
                )
            if path.startswith("/layers/") and path.endswith(".geojson") and path[8:-8] in app.layers:
                return self._send_bytes(app.geojson(path[8:-8]), _TYPES[".geojson"], head, "geojson")
            if path == "/api/reasoning":
                return self._reasoning(parse_qs(url.query).get("pointers", [""])[0], head)
            return self._error(HTTPStatus.NOT_FOUND, f"no such path: {path}")
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception:  # a bug or a broken input: answer 500 and keep serving
            logger.exception("viewer: failed to answer %s", self.path)
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the sociomap log")

    def _reasoning(self, pointers: str, head: bool) -> None:
        from sociomap.pipeline.cache import read_entries

        refs = [p for p in pointers.split(";") if p.strip()][:_MAX_POINTERS]
        try:
            entries = read_entries(self.server.app.view.out, refs)
        except InputError as exc:
            return self._error(HTTPStatus.NOT_FOUND, str(exc))
        body = json.dumps([{"pointer": ref, **meta} for ref, meta in entries], ensure_ascii=False).encode(
            "utf-8"
        )
        return self._send_bytes(body, "application/json", head, "reasoning")

    def _headers(
        self, status: int, ctype: str, length: int, cache: str = "no-cache", extra: dict | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", cache)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def _send_bytes(self, body: bytes, ctype: str, head: bool, kind: str, cache: str = "no-cache") -> None:
        self._headers(HTTPStatus.OK, ctype, len(body), cache)
        self.server.app.count(f"200 {kind}")
        if not head:
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str) -> None:
        body = json.dumps({"error": message}).encode("utf-8")
        self._headers(status, "application/json", len(body))
        self.server.app.count(f"{int(status)} error")
        self.wfile.write(body)

    def _send_file(self, path: Path, head: bool, kind: str, cache: str = "no-cache") -> None:
        """The file, or the one byte range asked for (206), or 416 when the range is outside it."""
        stat = path.stat()
        size = stat.st_size
        ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        common = {"Accept-Ranges": "bytes", "ETag": f'"{stat.st_mtime_ns:x}-{size:x}"'}
        span = _parse_range(self.headers.get("Range"), size)
        if span == "unsatisfiable":
            self._headers(
                HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                ctype,
                0,
                cache,
                {**common, "Content-Range": f"bytes */{size}"},
            )
            self.server.app.count(f"416 {kind}")
            return
        start, end = span or (0, size - 1)
        length = max(0, end - start + 1)
        if span:
            self._headers(
                HTTPStatus.PARTIAL_CONTENT,
                ctype,
                length,
                cache,
                {**common, "Content-Range": f"bytes {start}-{end}/{size}"},
            )
            self.server.app.count(f"206 {kind}")
        else:
            self._headers(HTTPStatus.OK, ctype, length, cache, common)
            self.server.app.count(f"200 {kind}")
        if head:
            return
        with open(path, "rb") as f:
            f.seek(start)
            while length > 0:
                chunk = f.read(min(_CHUNK, length))
                if not chunk:
                    break
                self.wfile.write(chunk)
                length -= len(chunk)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> (start, end) inclusive; None for no or a multi-range
    header (answered with the whole file, as RFC 9110 allows); "unsatisfiable" past the end."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # the last n bytes
        n = int(match[2])
        return (max(0, size - n), size - 1) if n and size else "unsatisfiable"
    start = int(match[1])
    end = min(int(match[2]), size - 1) if match[2] else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end


class ViewerServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer bound to 127.0.0.1 that serves one ViewerApp."""

    daemon_threads = True

    def __init__(self, app: ViewerApp, port: int, host: str = HOST) -> None:
        self.app = app
        try:
            super().__init__((host, port), Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(
                    f"port {port} on {host} is in use (another viewer?); pass --port N for another "
                    "port or --port 0 for a free one"
                ) from exc
            raise ServeError(
                f"cannot listen on {host}:{port} ({exc}); pass --port 0 for a free port"
            ) from exc

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>/"""
        host = self.server_address[0]
        return f"http://{HOST if host == '0.0.0.0' else host}:{self.server_address[1]}/"


def make_server(view: RunView, port: int, host: str = HOST) -> ViewerServer:
    """A server for ``view`` on ``host``:``port`` (0: a free port), not yet serving.

    ``host`` stays 127.0.0.1 unless the page must be reached from elsewhere (``0.0.0.0`` in a container).

    Call ``serve_forever()`` (blocking) or run it in a thread; ``shutdown()`` then ``server_close()``.
    """
    if host not in (HOST, "localhost", "::1"):
        logger.warning("Serving on %s: anyone who can reach this machine can read these layers", host)
    return ViewerServer(ViewerApp(view), port, host)
