"""sociomap.merge.store: an on-disk, append-only store of per-tile pieces (SQLite, one file per run).

Pieces arrive tile by tile (from Dask workers via the driver); keeping them on disk instead of in one
growing in-memory collection lets a city-scale run stop, resume and merge one layer/query at a time.
SQLite is in the standard library, survives crashes, and needs no extra dependency.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import mercantile
import numpy as np
import shapely

from sociomap.errors import InputError

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id INTEGER PRIMARY KEY, layer TEXT NOT NULL, query TEXT NOT NULL, function TEXT,
    z INTEGER NOT NULL, x INTEGER NOT NULL, y INTEGER NOT NULL,
    run_id TEXT, model TEXT, prompts TEXT, reasoning TEXT);
CREATE TABLE IF NOT EXISTS pieces (
    call_id INTEGER NOT NULL, layer TEXT NOT NULL, query TEXT NOT NULL,
    minx REAL, miny REAL, maxx REAL, maxy REAL, geom BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS pieces_layer_query_call ON pieces (layer, query, call_id);
"""
_CALL_COLUMNS = "call_id, z, x, y, function, run_id, model, prompts, reasoning"
_PIECE_COLUMNS = "rowid, call_id, minx, miny, maxx, maxy, geom"
_ATTRS = ("query", "function", "run_id", "model", "prompts", "reasoning")
_COMMIT_EVERY = 500


@dataclass(frozen=True)
class PieceTable:
    """All pieces of one (layer, query), column-wise; ``calls`` holds one row per ``add`` call.

    Pieces are in store order (by call, then as added); that order decides the order of the merged objects.

    Attributes:
        piece_id: (N,) int64, the piece's row id in the store (increasing in store order).
        call: (N,) int64, the ``add`` call each piece came from (index into ``calls``).
        geometry: (N,) shapely Polygons in EPSG:3857.
        bounds: (N, 4) float64 (minx, miny, maxx, maxy), EPSG:3857.
        calls: dict call_id -> (z, x, y, function, run_id, model, prompts, reasoning).
    """

    piece_id: np.ndarray
    call: np.ndarray
    geometry: np.ndarray
    bounds: np.ndarray
    calls: dict[int, tuple]


class PieceStore:
    """Collects vectorized pieces per (layer, query, tile) in ``directory/pieces.sqlite``.

    Re-opening the same directory appends to what is already there (a resumed run).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.directory / "pieces.sqlite")
            self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + _SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise InputError(f"piece store {self.directory}: cannot open ({exc}); pass a writable folder") from exc
        self._pending = 0

    def add(
        self, layer: str, tile: mercantile.Tile, geometries: Sequence[shapely.Polygon], attrs: dict[str, object]
    ) -> None:
        """Record one tile's pieces for one query; ``attrs`` carries the provenance.

        attrs keys: query (required), function, run_id, model, prompts (JSON text of the model's boxes and
        points in tile pixels), reasoning (a pointer to the model's text, e.g. a cache-file path).
        """
        if not attrs.get("query"):
            raise InputError(f"PieceStore.add: attrs for layer {layer!r}, tile {tile} lack 'query'; pass the query text")
        values = {key: (None if attrs.get(key) is None else str(attrs[key])) for key in _ATTRS}
        if values["prompts"] is not None:
            try:
                json.loads(values["prompts"])
            except json.JSONDecodeError as exc:
                raise InputError(f"PieceStore.add: prompts for tile {tile} are not JSON ({exc}); pass json.dumps(...)")
        cursor = self._db.execute(
            "INSERT INTO calls (layer, query, function, z, x, y, run_id, model, prompts, reasoning)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (layer, values["query"], values["function"], tile.z, tile.x, tile.y,
             values["run_id"], values["model"], values["prompts"], values["reasoning"]),
        )
        geoms = np.asarray(geometries, dtype=object)
        if len(geoms):
            bounds = shapely.bounds(geoms)
            blobs = shapely.to_wkb(geoms)
            rows = [(cursor.lastrowid, layer, values["query"], *b, blob) for b, blob in zip(bounds.tolist(), blobs)]
            self._db.executemany("INSERT INTO pieces VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self._pending += 1
        if self._pending >= _COMMIT_EVERY:
            self._commit()

    def layers(self) -> list[tuple[str, str]]:
        """Every (layer, query) with at least one recorded tile, sorted."""
        self._commit()
        return [tuple(r) for r in self._db.execute("SELECT DISTINCT layer, query FROM calls ORDER BY layer, query")]

    def read(self, layer: str, query: str) -> PieceTable:
        """All pieces of one (layer, query); ``read_calls`` + ``read_block`` read them in parts instead."""
        calls = self.read_calls(layer, query)
        return self._pieces(calls, "layer = ? AND query = ?", (layer, query))

    def read_calls(self, layer: str, query: str) -> dict[int, tuple]:
        """call_id -> (z, x, y, function, run_id, model, prompts, reasoning) of one (layer, query)."""
        self._commit()
        return {row[0]: tuple(row[1:]) for row in self._db.execute(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE layer = ? AND query = ?", (layer, query))}

    def count_pieces(self, layer: str, query: str) -> dict[int, int]:
        """call_id -> number of pieces, for the calls of one (layer, query) that have any (index only)."""
        self._commit()
        return dict(self._db.execute("SELECT call_id, COUNT(*) FROM pieces WHERE layer = ? AND query = ?"
                                     " GROUP BY call_id", (layer, query)))

    def read_block(self, layer: str, query: str, calls: dict[int, tuple]) -> PieceTable:
        """The pieces of the given calls of one (layer, query): an indexed lookup, not a table scan."""
        ids = json.dumps(sorted(calls))
        return self._pieces(calls, "layer = ? AND query = ? AND call_id IN (SELECT value FROM json_each(?))",
                            (layer, query, ids))

    def _pieces(self, calls: dict[int, tuple], where: str, params: tuple) -> PieceTable:
        self._commit()
        rows = self._db.execute(
            f"SELECT {_PIECE_COLUMNS} FROM pieces WHERE {where} ORDER BY call_id, rowid", params).fetchall()
        piece_id = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        call = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        bounds = np.array([r[2:6] for r in rows], dtype=float).reshape(-1, 4)
        blobs = np.array([r[6] for r in rows], dtype=object)
        del rows
        geometry = shapely.from_wkb(blobs) if len(blobs) else np.empty(0, dtype=object)
        return PieceTable(piece_id, call, np.asarray(geometry, dtype=object), bounds, calls)

    def iter_tables(self) -> Iterator[tuple[str, str, PieceTable]]:
        """(layer, query, table) for every recorded (layer, query), one at a time."""
        for layer, query in self.layers():
            yield layer, query, self.read(layer, query)

    def _commit(self) -> None:
        self._db.commit()
        self._pending = 0

    def close(self) -> None:
        """Commit and close the database."""
        self._commit()
        self._db.close()

    def __enter__(self) -> PieceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
