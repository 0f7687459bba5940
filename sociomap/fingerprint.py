"""sociomap.fingerprint: content fingerprints of input files, folders and sociomap's own code.

One hasher for the whole project: run manifests, cache keys and weight revisions all call these, so a
file is identified the same way everywhere. Pure standard library (``sociomap.reasoning`` uses it too).
"""

from __future__ import annotations

import functools
import hashlib
import os
from importlib import resources
from pathlib import Path

#: Files up to this size are hashed whole; larger ones get a sampled fingerprint (see ``file_fingerprint``).
FULL_HASH_LIMIT = 1 << 30
#: Blocks read from a file above FULL_HASH_LIMIT, evenly spaced, first and last included.
SAMPLED_BLOCKS = 64
_BLOCK = 1 << 20
#: Source files that make up a stage's behaviour.
CODE_SUFFIXES = (".py", ".toml", ".xml", ".json")


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, streamed in 1 MiB blocks; memoized per (path, size, mtime, inode)."""
    return _file_sha256(_stat_key(Path(path)))


@functools.lru_cache(maxsize=256)
def _file_sha256(key: tuple) -> str:
    h = hashlib.sha256()
    with open(key[0], "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _sampled_sha256(path: Path, size: int, mtime_ns: int) -> str:
    """Size, mtime and SAMPLED_BLOCKS blocks spread over the file: seconds, not minutes, for a 100 GB mosaic."""
    h = hashlib.sha256(f"{size}:{mtime_ns}".encode())
    step = max((size - _BLOCK) // (SAMPLED_BLOCKS - 1), 1)
    with open(path, "rb") as f:
        for i in range(SAMPLED_BLOCKS):
            f.seek(min(i * step, max(size - _BLOCK, 0)))
            h.update(f.read(_BLOCK))
    return h.hexdigest()


def file_fingerprint(path: Path) -> dict[str, object]:
    """``{"path", "bytes", "sha256"}``, or ``"sha256-sampled"`` (size + mtime + 64 MiB of samples) above 1 GiB.

    The sampled form changes when the file is rewritten (new mtime) even if its pixels did not; callers use it
    to skip work on unchanged inputs, never to prove two different files equal.
    """
    p = Path(path)
    st = p.stat()
    if st.st_size <= FULL_HASH_LIMIT:
        return {"path": str(p), "bytes": st.st_size, "sha256": file_sha256(p)}
    return {"path": str(p), "bytes": st.st_size, "sha256-sampled": _sampled_sha256(p, st.st_size, st.st_mtime_ns)}


def content_id(path: Path) -> str:
    """The digest part of ``file_fingerprint`` (what goes into cache keys)."""
    fp = file_fingerprint(path)
    return str(fp.get("sha256") or "sampled:" + str(fp["sha256-sampled"]))


def tree_sha256(path: Path) -> str:
    """sha256 over the relative names and bytes of every file under ``path`` (or of the file itself)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts)
    for file in files:
        digest.update(str(file.relative_to(path.parent if path.is_file() else path)).encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=32)
def code_fingerprint(*modules: str) -> str:
    """sha256 of the source files of sociomap modules or packages (e.g. ``"sociomap.tiling"``).

    Part of every cache key: a change to a stage's code invalidates exactly the results that stage shaped,
    where a static package version would let stale results through.
    """
    digest = hashlib.sha256()
    root = resources.files("sociomap")
    for module in sorted(set(modules)):
        relative = module.removeprefix("sociomap").lstrip(".").replace(".", os.sep)
        target = Path(str(root.joinpath(relative))) if relative else Path(str(root))
        files = ([target.with_suffix(".py")] if target.with_suffix(".py").is_file() else
                 sorted(p for p in target.rglob("*") if p.suffix in CODE_SUFFIXES and "__pycache__" not in p.parts))
        if not files:
            raise ValueError(f"code_fingerprint: no source files for module {module!r}")
        for file in files:
            digest.update(str(file.relative_to(Path(str(root)))).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()
