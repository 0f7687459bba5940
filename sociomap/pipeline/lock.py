"""sociomap.pipeline.lock: one run per output directory at a time.

An OS-level ``flock`` on ``OUT/.sociomap/lock``: the kernel drops it when the process dies, so a
crashed run never leaves a stale lock behind, and a second run exits at once with RunLockedError.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sociomap.errors import RunLockedError


@contextmanager
def output_lock(state_dir: Path) -> Iterator[None]:
    """Hold the lock of an output's state folder for the duration of the block."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(path).read_text().strip() or "another process"
            raise RunLockedError(
                f"{state_dir.parent}: another sociomap run ({holder}) is writing here; wait for it or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        yield
    finally:
        os.close(fd)
