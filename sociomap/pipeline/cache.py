"""sociomap.pipeline.cache: content-addressed per-(tile, query) results, written atomically.

The key hashes everything that determines a result (tile pixels, map pixels, segmenter identity,
query, stage code version), so an unchanged tile is never recomputed and a crashed run resumes from
whatever entries reached the disk. Entries are small .npz files: a bit-packed mask plus JSON metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from sociomap.errors import InputError
from pathlib import Path

import numpy as np

#: Bump when tiling, vectorizing or cache layout changes in a way that alters results.
CACHE_FORMAT = "2"


def tile_input_digest(satellite: np.ndarray, map_rgb: np.ndarray | None) -> str:
    """sha256 of the two images a segmenter sees (shape + bytes)."""
    h = hashlib.sha256()
    for arr in (satellite, map_rgb):
        if arr is None:
            h.update(b"none")
            continue
        h.update(repr(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def identity_digest(identity: Mapping[str, str]) -> str:
    """sha256 of a segmenter identity mapping (order-independent)."""
    return hashlib.sha256(json.dumps(dict(identity), sort_keys=True).encode()).hexdigest()


def result_key(inputs_digest: str, segmenter_digest: str, query: str, tile: str) -> str:
    """The cache key of one (tile, query) result. The tile id is part of it: identical pixels on two tiles
    (water, haze) must not share a result, and the OSM baseline depends on where a tile is, not its pixels."""
    payload = "\0".join([CACHE_FORMAT, inputs_digest, segmenter_digest, query, tile])
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class CachedResult:
    """A stored (tile, query) result.

    Attributes:
        mask: (H, W) bool on the tile grid.
        meta: JSON-able dict (model texts, boxes/points in tile px, ...).
    """

    mask: np.ndarray
    meta: dict


@dataclass(frozen=True)
class TileCache:
    """A folder of cache entries, sharded by the first two hex digits of the key."""

    root: Path

    def path(self, key: str) -> Path:
        """Where the entry for ``key`` lives."""
        return Path(self.root) / key[:2] / f"{key}.npz"

    def has(self, key: str) -> bool:
        """True when a complete entry exists (writes are atomic, so existence means complete)."""
        return self.path(key).exists()

    def get(self, key: str) -> CachedResult | None:
        """Load an entry, or None when missing or unreadable (a damaged entry is recomputed)."""
        p = self.path(key)
        try:
            with np.load(p) as z:
                shape = tuple(int(v) for v in z["shape"])
                bits = np.unpackbits(z["mask"])[: shape[0] * shape[1]]
                meta = json.loads(bytes(z["meta"]).decode("utf-8"))
        except (OSError, ValueError, KeyError):
            return None
        return CachedResult(bits.reshape(shape).astype(bool), meta)

    def put(self, key: str, mask: np.ndarray, meta: dict) -> Path:
        """Write an entry atomically: temp file in the same folder, fsync, rename."""
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    shape=np.array(mask.shape, np.int64),
                    mask=np.packbits(mask.astype(bool).ravel()),
                    meta=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8),
                )
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return p


def read_entries(out: Path, pointers: list[str]) -> list[tuple[str, dict]]:
    """The stored model output behind ``reasoning`` pointers (paths relative to OUT's cache)."""
    root = Path(out) / ".sociomap" / "cache"
    found = []
    for ref in (p.strip() for p in pointers if p.strip()):
        entry = TileCache(root).get(Path(ref).stem) if Path(ref).name.endswith(".npz") else None
        if entry is None:
            raise InputError(f"{root / ref}: no cache entry; pass the `reasoning` value of a feature of this output")
        found.append((ref, entry.meta))
    return found
