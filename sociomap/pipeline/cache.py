"""sociomap.pipeline.cache: the results store of an output folder, one SQLite file that heals itself.

Three kinds of entries, all content-addressed:
- results: one (tile, query) segmentation (mask cut to the tile's data, model texts, boxes, points);
- pieces: the polygons vectorized from a result under given merge thresholds;
- memo: which input digest a tile had under given input fingerprints, so an unchanged re-run neither
  reads nor renders it (a tile without data is remembered too).
Each entry's body carries its own key and is stored with its sha256, so a truncated, garbled or
misplaced entry reads as missing and is recomputed and rewritten. Only the driver process writes
(workers send results back), so one file with SQLite transactions is safe and atomic. Entries are
marked with the sequence number of the last run that used them; ``gc`` keeps what the last runs used.

SQLite is the standard library's, survives crashes (WAL journal) and packs ~10^6 entries into one file
instead of 10^6 small files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sociomap.errors import InputError

logger = logging.getLogger(__name__)

#: Bump when the meaning of stored results or keys changes in a way code fingerprints do not cover.
CACHE_FORMAT = "3"
CACHE_NAME = "cache.sqlite"
#: Writes are committed in transactions of this many operations (and at every flush).
_COMMIT_EVERY = 2000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, body BLOB NOT NULL, sha256 TEXT NOT NULL,
                                    last_used INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pieces (key TEXT PRIMARY KEY, body BLOB NOT NULL, sha256 TEXT NOT NULL,
                                   last_used INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS memo (key TEXT PRIMARY KEY, body BLOB NOT NULL, sha256 TEXT NOT NULL,
                                 last_used INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT UNIQUE NOT NULL,
                                 status TEXT NOT NULL, started TEXT NOT NULL, finished TEXT);
"""
TABLES = ("results", "pieces", "memo")


def _sha(*parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()


def tile_input_digest(satellite: np.ndarray, map_rgb: np.ndarray | None, valid: np.ndarray | None = None) -> str:
    """sha256 of what a segmenter sees of a tile: satellite and map pixels and the valid-data mask."""
    h = hashlib.sha256()
    for arr in (satellite, map_rgb, valid):
        if arr is None:
            h.update(b"none")
            continue
        h.update(repr((arr.shape, str(arr.dtype))).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def identity_digest(identity: Mapping[str, str]) -> str:
    """sha256 of an identity mapping (order-independent)."""
    return hashlib.sha256(json.dumps(dict(identity), sort_keys=True).encode()).hexdigest()


def result_key(inputs_digest: str, segmenter_digest: str, query_digest: str, tile: str) -> str:
    """The key of one (tile, query) result. The tile id is part of it: identical pixels on two tiles
    (water, haze) must not share a result, and the OSM baseline depends on where a tile is."""
    return _sha("result", CACHE_FORMAT, inputs_digest, segmenter_digest, query_digest, tile)


def pieces_key(result: str, vectorize_digest: str) -> str:
    """The key of the polygons of ``result`` under vectorizing settings and code ``vectorize_digest``."""
    return _sha("pieces", CACHE_FORMAT, result, vectorize_digest)


def memo_key(inputs_fingerprint: str, tile: str) -> str:
    """The key of a tile's input digest under the fingerprints of the mosaic, the map and the tiling."""
    return _sha("memo", CACHE_FORMAT, inputs_fingerprint, tile)


@dataclass(frozen=True)
class CachedResult:
    """A stored (tile, query) result.

    Attributes:
        mask: (H, W) bool on the tile grid, already cut to the tile's valid data.
        meta: JSON-able dict (model texts, boxes/points in tile px, ...).
    """

    mask: np.ndarray
    meta: dict


@dataclass(frozen=True)
class CachedPieces:
    """A result's polygons as WKB (EPSG:3857) and the attributes its features carry (prompts, reasoning)."""

    wkb: list[bytes]
    attrs: dict


@dataclass(frozen=True)
class MemoEntry:
    """What reading a tile gave last time: its input digest (None: no data there) and whether the map was blank."""

    digest: str | None
    map_blank: bool = False


@dataclass
class CacheInfo:
    """Entries and bytes of a cache file, and the runs it knows."""

    path: Path
    bytes: int
    entries: dict[str, int]
    runs: list[dict]


@dataclass
class GcReport:
    """What ``ResultCache.gc`` removed."""

    removed: dict[str, int] = field(default_factory=dict)
    bytes_before: int = 0
    bytes_after: int = 0
    kept_from_run: str | None = None


def _encode(key: str, header: dict, payload: bytes) -> bytes:
    head = json.dumps({"key": key, **header}, separators=(",", ":")).encode("utf-8")
    return zlib.compress(head + b"\n" + payload, 6)


def _decode(key: str, body: bytes, sha: str) -> tuple[dict, bytes] | None:
    """(header, payload) of a sound entry for ``key``; None for a damaged or misplaced one."""
    try:
        if hashlib.sha256(body).hexdigest() != sha:
            return None
        raw = zlib.decompress(body)
        head, _, payload = raw.partition(b"\n")
        header = json.loads(head.decode("utf-8"))
    except (zlib.error, ValueError, TypeError):
        return None
    if not isinstance(header, dict) or header.get("key") != key:
        return None
    return header, payload


class ResultCache:
    """The results store of one output folder (``OUT/.sociomap/cache.sqlite``).

    Args:
        path: the SQLite file.
        readonly: open an existing file for lookups only (dry runs); a missing file is an empty cache.
        run_seq: sequence number stamped on entries used or written (``begin_run``); 0 for none.
    """

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.run_seq = 0
        self.damaged = 0
        self._ops = 0
        self._db = self._open()

    def _open(self) -> sqlite3.Connection | None:
        if self.readonly:
            if not self.path.exists():
                return None
            return self._connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return self._connect(str(self.path))
        except sqlite3.DatabaseError as exc:  # not a database / malformed: set it aside, start afresh
            aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            logger.warning("%s is damaged (%s); moved to %s and starting an empty cache", self.path, exc, aside.name)
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            return self._connect(str(self.path))

    def _connect(self, target: str, uri: bool = False) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(target, uri=uri, timeout=60)
            if not self.readonly:
                db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + _SCHEMA)
            db.execute("SELECT count(*) FROM runs").fetchone()
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc) or "unable to open" in str(exc):
                raise InputError(f"{self.path}: cannot open the cache ({exc}); check permissions of the output folder") from exc
            raise sqlite3.DatabaseError(str(exc)) from exc
        return db

    # -- runs ---------------------------------------------------------------------------------------
    def begin_run(self, run_id: str) -> int:
        """Register a run; entries it uses or writes are stamped with the returned sequence number."""
        cur = self._db.execute("INSERT INTO runs (run_id, status, started) VALUES (?, 'running', ?)",
                               (run_id, _now()))
        self._db.commit()
        self.run_seq = int(cur.lastrowid)
        return self.run_seq

    def end_run(self, status: str) -> None:
        """Record how the current run ended ("ok", "failed", "refused")."""
        self.flush()
        self._db.execute("UPDATE runs SET status = ?, finished = ? WHERE seq = ?", (status, _now(), self.run_seq))
        self._db.commit()

    def run_seqs(self, run_ids: Iterable[str]) -> dict[str, int]:
        """Sequence numbers of known runs."""
        ids = list(run_ids)
        if self._db is None or not ids:
            return {}
        rows = self._db.execute(f"SELECT run_id, seq FROM runs WHERE run_id IN ({','.join('?' * len(ids))})", ids)
        return dict(rows.fetchall())

    # -- entries ------------------------------------------------------------------------------------
    def _read(self, table: str, key: str) -> tuple[dict, bytes] | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute(f"SELECT body, sha256 FROM {table} WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            self._note_damage(table, key, exc)
            return None
        if row is None:
            return None
        decoded = _decode(key, bytes(row[0]), row[1])
        if decoded is None:
            self._note_damage(table, key, "checksum or key mismatch")
            return None
        if self.run_seq and not self.readonly:
            self._execute(f"UPDATE {table} SET last_used = ? WHERE key = ?", (self.run_seq, key))
        return decoded

    def _note_damage(self, table: str, key: str, why: object) -> None:
        if self.damaged == 0:
            logger.warning("%s: damaged %s entry %s (%s); it is recomputed (further ones are counted, not logged)",
                           self.path, table, key[:12], why)
        self.damaged += 1

    def _write(self, table: str, key: str, body: bytes) -> None:
        self._execute(f"INSERT OR REPLACE INTO {table} (key, body, sha256, last_used) VALUES (?, ?, ?, ?)",
                      (key, body, hashlib.sha256(body).hexdigest(), self.run_seq))

    def _execute(self, sql: str, args: tuple) -> None:
        self._db.execute(sql, args)
        self._ops += 1
        if self._ops >= _COMMIT_EVERY:
            self.flush()

    def flush(self) -> None:
        """Commit pending writes."""
        if self._db is not None and not self.readonly:
            self._db.commit()
        self._ops = 0

    def get(self, key: str) -> CachedResult | None:
        """A stored result, or None when missing or damaged."""
        decoded = self._read("results", key)
        if decoded is None:
            return None
        header, payload = decoded
        h, w = header["shape"]
        bits = np.unpackbits(np.frombuffer(payload, np.uint8))[: h * w]
        if bits.size != h * w:
            self._note_damage("results", key, "short mask")
            return None
        return CachedResult(bits.reshape(h, w).astype(bool), header["meta"])

    def has(self, key: str) -> bool:
        """True when a sound result is stored under ``key``."""
        return self._read("results", key) is not None

    def put(self, key: str, mask: np.ndarray, meta: dict) -> None:
        """Store a result (mask bit-packed and compressed: ~100 bytes for an empty 768-px mask)."""
        mask = np.asarray(mask, dtype=bool)
        self._write("results", key, _encode(key, {"shape": list(mask.shape), "meta": meta},
                                            np.packbits(mask.ravel()).tobytes()))

    def get_pieces(self, key: str) -> CachedPieces | None:
        """Stored polygons (WKB, EPSG:3857) and their provenance attributes, or None."""
        decoded = self._read("pieces", key)
        if decoded is None:
            return None
        header, payload = decoded
        sizes = np.asarray(header["sizes"], dtype=np.int64)
        if sizes.sum() != len(payload):
            self._note_damage("pieces", key, "short payload")
            return None
        ends = np.cumsum(sizes)
        return CachedPieces([payload[a:b] for a, b in zip(ends - sizes, ends)], header["attrs"])

    def put_pieces(self, key: str, wkb: Sequence[bytes], attrs: dict) -> None:
        """Store a result's polygons (WKB) with the provenance attributes its features carry."""
        self._write("pieces", key, _encode(key, {"sizes": [len(b) for b in wkb], "attrs": attrs}, b"".join(wkb)))

    def get_memo(self, key: str) -> MemoEntry | None:
        """What reading a tile gave under the same input fingerprints, or None."""
        decoded = self._read("memo", key)
        return None if decoded is None else MemoEntry(decoded[0]["digest"], bool(decoded[0].get("map_blank")))

    def put_memo(self, key: str, entry: MemoEntry) -> None:
        """Remember a tile's input digest (or that it has no data)."""
        self._write("memo", key, _encode(key, {"digest": entry.digest, "map_blank": entry.map_blank}, b""))

    # -- maintenance --------------------------------------------------------------------------------
    def info(self) -> CacheInfo:
        """Entry counts per kind, file size (with the WAL) and the runs table."""
        entries = {t: self._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES} if self._db else {}
        runs = [] if self._db is None else [
            dict(zip(("seq", "run_id", "status", "started", "finished"), row))
            for row in self._db.execute("SELECT seq, run_id, status, started, finished FROM runs ORDER BY seq")]
        return CacheInfo(self.path, _file_bytes(self.path), entries, runs)

    def gc(self, keep_seq: int, max_bytes: int | None = None, floor_seq: int | None = None) -> GcReport:
        """Remove entries last used before run ``keep_seq``; with ``max_bytes``, drop older runs' entries
        (never those of run ``floor_seq`` or later) until the file fits; then compact the file."""
        report = GcReport(bytes_before=_file_bytes(self.path))
        self._delete_before(keep_seq, report)
        self._compact()
        if max_bytes is not None:
            later = [s for (s,) in self._db.execute("SELECT DISTINCT last_used FROM results WHERE last_used > ? "
                                                   "ORDER BY last_used", (keep_seq,))]
            for seq in later:
                if _file_bytes(self.path) <= max_bytes or (floor_seq is not None and seq >= floor_seq):
                    break
                self._delete_before(seq + 1, report)
                self._compact()
        report.bytes_after = _file_bytes(self.path)
        return report

    def _delete_before(self, seq: int, report: GcReport) -> None:
        for table in TABLES:
            n = self._db.execute(f"DELETE FROM {table} WHERE last_used < ?", (seq,)).rowcount
            report.removed[table] = report.removed.get(table, 0) + n
        self._db.commit()

    def _compact(self) -> None:
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Commit and close."""
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def read_entries(out: Path, pointers: list[str]) -> list[tuple[str, dict]]:
    """The stored model output behind a feature's ``reasoning`` pointers (result keys in OUT's cache)."""
    path = Path(out) / ".sociomap" / CACHE_NAME
    found = []
    with ResultCache(path, readonly=True) as cache:
        for ref in (p.strip() for p in pointers if p.strip()):
            entry = cache.get(Path(ref).stem)
            if entry is None:
                raise InputError(f"{path}: no cache entry {ref!r}; pass the `reasoning` value of a feature of this "
                                 "output (entries of runs removed by `sociomap cache gc` are gone)")
            found.append((ref, entry.meta))
    return found
