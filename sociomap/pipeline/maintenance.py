"""sociomap.pipeline.maintenance: report on and prune an output folder's cache and old output sets.

``cache_gc`` is a mark and sweep: every entry carries the sequence number of the last run that used it,
so keeping what the last N good runs used is one comparison per entry (plus the runs whose layers the
published set still carries); ``max_bytes`` then drops the oldest runs' entries until the file fits,
never the latest good run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sociomap.errors import InputError
from sociomap.pipeline.cache import CACHE_NAME, CacheInfo, GcReport, ResultCache
from sociomap.pipeline.lock import output_lock
from sociomap.pipeline.manifest import read_manifest
from sociomap.pipeline.outputs import MANIFEST, prune_sets, published_set, published_sets, remove_leftovers, state_dir


@dataclass
class CacheReport:
    """The cache file and the published sets of an output folder."""

    cache: CacheInfo
    sets: list[str] = field(default_factory=list)
    current: str | None = None


def _cache_path(out: Path) -> Path:
    path = state_dir(Path(out)) / CACHE_NAME
    if not path.exists():
        raise InputError(f"{out}: no sociomap cache here ({path} is missing); pass the --out folder of a run")
    return path


def cache_info(out: Path) -> CacheReport:
    """Entries, bytes and runs of OUT's cache, and its published sets (read-only, no lock)."""
    with ResultCache(_cache_path(out), readonly=True) as cache:
        info = cache.info()
    current = published_set(Path(out))
    return CacheReport(info, [p.name for p in published_sets(Path(out))], current.name if current else None)


def cache_gc(out: Path, keep_last: int = 3, max_bytes: int | None = None) -> GcReport:
    """Keep what the last ``keep_last`` good runs (and the published set's kept layers) use; remove the rest,
    old output sets and leftovers of killed runs; shrink to ``max_bytes`` if given. Takes the run lock."""
    if keep_last < 1:
        raise InputError("--keep-last must be at least 1 (the published set's run)")
    out = Path(out)
    path = _cache_path(out)
    with output_lock(state_dir(out)):
        remove_leftovers(out)
        with ResultCache(path) as cache:
            good = [r for r in reversed(cache.info().runs) if r["status"] == "ok"]
            if not good:
                return GcReport()
            kept = good[:keep_last]
            current = published_set(out)
            carried = (read_manifest(current / MANIFEST) or {}).get("carried", {}).values() if current else []
            seqs = [r["seq"] for r in kept] + list(cache.run_seqs(carried).values())
            report = cache.gc(min(seqs), max_bytes=max_bytes, floor_seq=good[0]["seq"])
            report.kept_from_run = kept[-1]["run_id"]
        prune_sets(out, keep=keep_last - 1)
        return report
