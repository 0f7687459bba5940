"""sociomap.tiling.paths: local files and remote rasters (HTTP(S) COGs, S3 objects) as GDAL paths.

GDAL reads remote COGs with HTTP range requests through its virtual file systems: ``https://...`` and
``http://...`` become ``/vsicurl/...``, ``s3://bucket/key`` becomes ``/vsis3/bucket/key`` (credentials,
region and endpoint come from the usual ``AWS_*`` environment variables, which GDAL reads itself), and
``gs://`` / ``az://`` map to ``/vsigs/`` / ``/vsiaz/``. Any ``/vsi...`` path is passed through as is.
"""

from __future__ import annotations

from pathlib import Path

#: URL schemes and the GDAL virtual file system that reads them.
SCHEMES = {"https://": "/vsicurl/https://", "http://": "/vsicurl/http://", "s3://": "/vsis3/",
           "gs://": "/vsigs/", "az://": "/vsiaz/"}
#: GDAL settings for remote reads: no directory listing per open (one request instead of many), retries.
REMOTE_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "3",
              "GDAL_HTTP_RETRY_DELAY": "1", "VSI_CACHE": "TRUE"}


def is_remote(path: str | Path) -> bool:
    """True for URLs and GDAL virtual-file-system paths (nothing to ``stat`` on this machine)."""
    text = str(path)
    return text.startswith(("/vsi", *SCHEMES))


def gdal_path(path: str | Path) -> str:
    """The path GDAL opens: URLs rewritten to their ``/vsi*`` form, local paths unchanged."""
    text = str(path)
    for scheme, prefix in SCHEMES.items():
        if text.startswith(scheme):
            return prefix + text[len(scheme):]
    return text


def http_url(path: str | Path) -> str | None:
    """The plain http(s) URL behind a path, when there is one (for HEAD requests); else None."""
    text = str(path).removeprefix("/vsicurl/")
    return text if text.startswith(("http://", "https://")) else None


def as_source(path: str | Path) -> str | Path:
    """A user's input as this package keeps it: URLs as strings, local files as ``Path``."""
    return str(path) if is_remote(path) else Path(path)
