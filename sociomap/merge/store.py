"""sociomap.merge.store: an on-disk, append-only store of per-tile pieces (SQLite, one file per run).

Pieces arrive tile by tile (from Dask workers via the driver); keeping them on disk instead of in one
growing in-memory collection lets a city-scale run stop, resume and merge one block of tiles at a time.
SQLite is in the standard library, survives crashes, and needs no extra dependency.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
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
"""
#: Columns added after the first release; an older store gets them on open (a resumed run).
_ADDED_CALL_COLUMNS = {"query_kind": "TEXT", "n_pieces": "INTEGER", "confidence": "REAL"}
_INDEXES = """
CREATE INDEX IF NOT EXISTS calls_layer ON calls (layer);
CREATE INDEX IF NOT EXISTS pieces_call ON pieces (call_id);
"""
#: What ``read_calls`` returns per call, in this order (``Call`` fields).
_CALL_COLUMNS = "call_id, z, x, y, query, query_kind, function, run_id, model, prompts, reasoning, confidence"
_ATTRS = ("query", "query_kind", "function", "run_id", "model", "prompts", "reasoning")
_COMMIT_EVERY = 500


@dataclass(frozen=True)
class Call:
    """One ``add`` call: the tile, the query and the provenance its pieces carry into the features."""

    z: int
    x: int
    y: int
    query: str
    query_kind: str | None
    function: str | None
    run_id: str | None
    model: str | None
    prompts: str | None
    reasoning: str | None
    confidence: float | None = None  # of this (tile, query) result, 0..1 (sociomap.reasoning.confidence)

    @property
    def tile(self) -> str:
        """``"z/x/y"``."""
        return f"{self.z}/{self.x}/{self.y}"


@dataclass(frozen=True)
class CallIndex:
    """The calls of one layer that have pieces, column-wise, without provenance (for planning blocks).

    Attributes:
        call_id: (M,) int64, increasing.  tiles: (M, 3) int64 z, x, y.  n_pieces: (M,) int64.
    """

    call_id: np.ndarray
    tiles: np.ndarray
    n_pieces: np.ndarray


@dataclass(frozen=True)
class PieceRows:
    """Pieces as stored: WKB not yet decoded, in store order (by call, then as added).

    Attributes:
        piece_id: (N,) int64 row id in the store.  call: (N,) int64 call id.
        bounds: (N, 4) float64 (minx, miny, maxx, maxy), EPSG:3857.  wkb: (N,) bytes.
    """

    piece_id: np.ndarray
    call: np.ndarray
    bounds: np.ndarray
    wkb: np.ndarray

    def __len__(self) -> int:
        return len(self.piece_id)


class PieceStore:
    """Collects vectorized pieces per (layer, tile, query) in ``directory/pieces.sqlite``.

    Re-opening the same directory appends to what is already there (a resumed run); ``readonly``
    opens it for the merge workers, which only read.
    """

    def __init__(self, directory: Path, readonly: bool = False) -> None:
        self.directory = Path(directory)
        path = self.directory / "pieces.sqlite"
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            else:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(path)
                self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + _SCHEMA)
                self._migrate()
                self._db.executescript(_INDEXES)
        except (OSError, sqlite3.Error) as exc:
            raise InputError(f"piece store {self.directory}: cannot open ({exc}); pass a writable folder") from exc
        self._pending = 0

    def _migrate(self) -> None:
        have = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
        for name, kind in _ADDED_CALL_COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE calls ADD COLUMN {name} {kind}")
        if "n_pieces" not in have:
            self._db.execute("UPDATE calls SET n_pieces = (SELECT COUNT(*) FROM pieces p"
                             " WHERE p.call_id = calls.call_id)")
        self._db.commit()

    def add(
        self, layer: str, tile: mercantile.Tile, geometries: Sequence[shapely.Polygon], attrs: dict[str, object]
    ) -> None:
        """Record one tile's pieces for one query; ``attrs`` carries the provenance.

        attrs keys: query (required), query_kind (function/class/name), function, run_id, model,
        prompts (JSON text of the model's boxes and points in tile pixels), reasoning (a pointer to the
        model's text, e.g. a cache-file path), confidence (0..1, of this tile's result). Several queries
        may share a layer (a socio-function): their pieces are reconciled into one entity set.
        """
        if not attrs.get("query"):
            raise InputError(f"PieceStore.add: attrs for layer {layer!r}, tile {tile} lack 'query'; pass the query text")
        values = {key: (None if attrs.get(key) is None else str(attrs[key])) for key in _ATTRS}
        if values["prompts"] is not None:
            try:
                json.loads(values["prompts"])
            except json.JSONDecodeError as exc:
                raise InputError(f"PieceStore.add: prompts for tile {tile} are not JSON ({exc}); pass json.dumps(...)")
        geoms = np.asarray(geometries, dtype=object).reshape(-1)
        cursor = self._db.execute(
            "INSERT INTO calls (layer, query, query_kind, function, z, x, y, run_id, model, prompts, reasoning,"
            " n_pieces, confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (layer, values["query"], values["query_kind"], values["function"], tile.z, tile.x, tile.y,
             values["run_id"], values["model"], values["prompts"], values["reasoning"], len(geoms),
             None if attrs.get("confidence") is None else float(attrs["confidence"])),
        )
        if len(geoms):
            bounds = shapely.bounds(geoms)
            blobs = shapely.to_wkb(geoms)
            rows = [(cursor.lastrowid, layer, values["query"], *b, blob) for b, blob in zip(bounds.tolist(), blobs)]
            self._db.executemany("INSERT INTO pieces VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self._pending += 1
        if self._pending >= _COMMIT_EVERY:
            self._commit()

    def layers(self) -> list[str]:
        """Every layer with at least one recorded tile, sorted."""
        self._commit()
        return [r[0] for r in self._db.execute("SELECT DISTINCT layer FROM calls ORDER BY layer")]

    def read_index(self, layer: str) -> CallIndex:
        """The calls of ``layer`` that have pieces: ids, tiles and piece counts (no provenance, no pieces)."""
        self._commit()
        rows = np.array(self._db.execute(
            "SELECT call_id, z, x, y, n_pieces FROM calls WHERE layer = ? AND n_pieces > 0 ORDER BY call_id",
            (layer,)).fetchall(), dtype=np.int64).reshape(-1, 5)
        return CallIndex(rows[:, 0], rows[:, 1:4], rows[:, 4])

    def read_calls(self, call_ids: Sequence[int]) -> dict[int, Call]:
        """call id -> ``Call`` (tile, query and provenance) for the given calls."""
        self._commit()
        rows = self._db.execute(f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_id IN"
                                " (SELECT value FROM json_each(?))", (_ids_json(call_ids),))
        return {row[0]: Call(*row[1:]) for row in rows}

    def read_pieces(self, call_ids: Sequence[int]) -> PieceRows:
        """The pieces of the given calls, in store order: an indexed lookup, not a table scan."""
        self._commit()
        rows = self._db.execute(
            "SELECT rowid, call_id, minx, miny, maxx, maxy, geom FROM pieces WHERE call_id IN"
            " (SELECT value FROM json_each(?)) ORDER BY call_id, rowid", (_ids_json(call_ids),)).fetchall()
        n = len(rows)
        piece_id = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
        call = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
        bounds = np.array([r[2:6] for r in rows], dtype=float).reshape(-1, 4)
        wkb = np.empty(n, dtype=object)
        wkb[:] = [r[6] for r in rows]
        return PieceRows(piece_id, call, bounds, wkb)

    def _commit(self) -> None:
        if self._db.in_transaction:
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


def _ids_json(call_ids: Sequence[int]) -> str:
    return json.dumps(sorted(int(c) for c in call_ids))
