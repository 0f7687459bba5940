"""sociomap.pipeline.manifest: the JSON record of a run (inputs with hashes, versions, counts, timings)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import tempfile
from pathlib import Path

#: Files larger than this get a quick fingerprint (size, mtime, first and last MiB) instead of a full sha256.
FULL_HASH_LIMIT = 256 * 2**20


def file_fingerprint(path: Path) -> dict[str, object]:
    """A content hash of an input file; a sampled one (marked so) for very large files."""
    p = Path(path)
    st = p.stat()
    h = hashlib.sha256()
    with open(p, "rb") as f:
        if st.st_size <= FULL_HASH_LIMIT:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            kind = "sha256"
        else:
            h.update(f.read(1 << 20))
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
            h.update(str(st.st_size).encode())
            kind = "sha256-head-tail"
    return {"path": str(p), "bytes": st.st_size, kind: h.hexdigest()}


def versions() -> dict[str, str]:
    """Versions of the packages that shape results."""
    out = {"python": platform.python_version()}
    for pkg in ("sociomap", "torch", "transformers", "rasterio", "rio-tiler", "shapely", "pyogrio", "dask",
                "distributed", "osmium"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON via a temp file + rename, so readers never see half a manifest."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


def read_manifest(path: Path) -> dict | None:
    """The previous run's manifest, or None."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
