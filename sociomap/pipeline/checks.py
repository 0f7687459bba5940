"""sociomap.pipeline.checks: what can be checked about a run before any heavy work, in seconds.

No torch import, no cluster start, no lock, nothing created on disk: each problem is one line naming the
file or option and what to do (ConfigError / InputError, exit 3). ``check_run_inputs`` runs first in
``pipeline.run``; the CLI reaches it before it imports the model stack.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
from pathlib import Path

from sociomap.errors import ConfigError, InputError, MapSourceError, MosaicError, OSMError

#: Errors that mean the disk (or the user's quota) is full, whatever layer raised them.
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_BELOW = 1 << 20  # a file system with less than 1 MiB free counts as full
_FULL_MESSAGES = ("no space left on device", "database or disk is full", "disk quota exceeded")


def _utf8(path: str | Path, what: str, error: type[InputError]) -> None:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"{os.fsdecode(os.fsencode(str(path)))!r}: the {what} name is not valid UTF-8 (GDAL and "
                    "SQLite need UTF-8 names); rename it") from None


def check_input_file(path: str | Path | None, what: str, error: type[InputError], folder_ok: bool = False) -> None:
    """A local input exists, is a file (or a folder where allowed), can be read, and has a UTF-8 name."""
    from sociomap.tiling.paths import is_remote

    if path is None or is_remote(path):
        return
    _utf8(path, what, error)
    p = Path(path)
    if not p.exists():
        raise error(f"{p}: no such file; pass the path of your {what}")
    if p.is_dir() and not folder_ok:
        raise error(f"{p}: is a folder; pass the {what} file itself")
    if not os.access(p, os.R_OK):
        raise error(f"{p}: cannot be read (permissions); make the {what} readable by this user")


def check_output_folder(out: Path) -> None:
    """OUT is a folder (or can be created) in a writable place, with a UTF-8 name; probes leave nothing."""
    _utf8(out, "output folder", InputError)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; pass --out a folder (it is created if missing)")
    existing = _nearest_existing(out)
    try:
        probe = tempfile.mkdtemp(prefix=".sociomap-probe-", dir=existing)
    except OSError as exc:
        raise InputError(f"{out}: cannot write in {existing} ({exc.strerror or exc}); choose a writable --out") from None
    os.rmdir(probe)


def check_memory_limit(value: str) -> None:
    """``auto``, a fraction of the machine (0.5) or a size (12GiB), as Dask takes it."""
    from dask.utils import parse_bytes

    if value == "auto":
        return
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None and 0 < number <= 1:
        return
    try:
        if parse_bytes(value) > 0:
            return
    except ValueError:
        pass
    raise ConfigError(f"--memory-limit {value!r}: give auto, a share of the machine's memory (0.5) or a size "
                      "(e.g. 12GiB)")


def check_scheduler(address: str | None) -> None:
    """A scheduler file that exists, or an address Dask can dial (tcp://host:port, tls://..., host:port), and,
    for TCP, something listening there (a refused connection says so in a second, not after 30)."""
    if address is None:
        return
    given = address
    if os.path.exists(address):
        if not os.path.isfile(address):
            raise ConfigError(f"--scheduler {address}: is a folder; pass a scheduler file or tcp://host:8786")
        try:
            address = json.loads(Path(address).read_text())["address"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"--scheduler {given}: not a Dask scheduler file (no address in it); pass the file "
                              "`dask scheduler --scheduler-file FILE` wrote, or tcp://host:8786") from None
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    host, colon, port = rest.rpartition(":")
    if scheme not in ("tcp", "tls", "ws", "wss", "ucx", "inproc") or (scheme != "inproc" and not (
            colon and host and port.isdigit())):
        raise ConfigError(f"--scheduler {given!r}: not a scheduler file nor an address; pass tcp://host:8786 or "
                          "the scheduler file (dask scheduler --scheduler-file FILE)")
    if scheme in ("tcp", "tls"):
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
        except OSError as exc:
            raise ConfigError(f"--scheduler {given}: cannot connect to {host}:{port} ({exc.strerror or exc}); is "
                              "the scheduler running?") from None


def check_weights(reasoner: object, on_this_machine: bool) -> None:
    """Model folders given as paths exist; with --offline, hub models are in this machine's cache (when the
    model runs here). Checked before the lock; the full resolution happens where the model runs. With
    ``--engine openai`` the VLM is the server's model id (checked by asking the server), so only SAM is local."""
    from sociomap.reasoning.weights import looks_like_path, resolve_weights

    local = [(reasoner.sam, reasoner.sam_revision)]
    if reasoner.engine != "openai":
        local.insert(0, (reasoner.model, reasoner.revision))
    for spec, revision in local:
        if looks_like_path(spec) and not Path(spec).expanduser().exists():
            resolve_weights(spec, revision, offline=True)  # raises the one-line ModelLoadError with the fix
        elif not looks_like_path(spec) and not Path(spec).exists() and on_this_machine and reasoner.offline:
            resolve_weights(spec, revision, offline=True)  # a cache lookup, no download, no hashing


def check_workers(workers: int | None, scheduler: str | None) -> None:
    """Local worker processes are bounded by this machine's cores (a cluster is for more)."""
    from sociomap.pipeline.executor import machine_cores

    cores = machine_cores()
    if scheduler is None and workers is not None and workers > cores:
        raise ConfigError(f"--workers {workers}: this machine has {cores} cores; use at most {cores}, or "
                          "--scheduler to run on a cluster")


def check_run_inputs(config: object) -> None:
    """Everything about a RunConfig that can be known before the lock, the cluster or the model."""
    check_input_file(config.image, "satellite mosaic (GeoTIFF/COG)", MosaicError)
    check_input_file(config.map, "map raster or tile archive", MapSourceError, folder_ok=True)
    check_input_file(config.osm, "OpenStreetMap extract (.osm.pbf)", OSMError)
    if not config.dry_run:
        check_output_folder(Path(config.out))
    check_memory_limit(config.executor.memory_limit)
    check_scheduler(config.executor.scheduler)
    check_workers(config.executor.workers, config.executor.scheduler)
    if config.reasoner_kind == "socioreasoner" and config.reasoner is not None:
        check_weights(config.reasoner, on_this_machine=config.executor.scheduler is None)


def is_disk_full(exc: BaseException, folder: Path | None = None) -> bool:
    """True when ``exc`` (an OSError, an SQLite error, a GDAL error wrapped by pyogrio, ...) says the disk is full,
    or when ``folder``'s file system has no room left (GDAL drivers often report ENOSPC as a vague I/O error,
    e.g. FlatGeobuf's "Unexpected I/O failure: seeking to temp feature location")."""
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    if any(m in str(exc).lower() for m in _FULL_MESSAGES):
        return True
    return folder is not None and _free_bytes(folder) < _FULL_BELOW


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (where a folder to be created would live)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _free_bytes(folder: Path) -> int:
    """Free bytes for an unprivileged writer on ``folder``'s file system (its nearest existing parent's)."""
    try:
        st = os.statvfs(_nearest_existing(folder))
    except OSError:
        return _FULL_BELOW  # cannot tell: not full
    return st.f_bavail * st.f_frsize
