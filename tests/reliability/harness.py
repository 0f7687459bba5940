"""The reliability suite's harness: run the real CLI in a subprocess, observe, and record a table row.

Every case records what a user saw: the exit code, the one error line (paths normalised), what was left
behind, and which heavy modules had been imported when the command ended. ``test_table.py`` turns the
rows into docs/reliability.md and fails when the committed table differs from what was observed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO, subprocess_env

FAULT_ENV = "SOCIOMAP_TEST_FAULT"  # a Fault as JSON, for the runner
#: Modules whose import means heavy work began (seconds of start-up before a bad input is noticed).
HEAVY = ("torch", "transformers", "distributed")
_RUNNER = f"""
import json, os, sys
if os.environ.get({FAULT_ENV!r}):
    from tests.reliability.harness import install_fault
    install_fault()
from sociomap.cli import cli
code = 0
try:
    cli(sys.argv[1:], prog_name="sociomap")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
print("\\n@@" + json.dumps({{"exit": code, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""


@dataclass
class Outcome:
    """What one CLI invocation did."""

    exit: int
    heavy: list[str]
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """Lines a user reads as errors (click's ``Error: ...``, tracebacks)."""
        return [line for line in self.stderr.splitlines() if line.startswith("Error") or "Traceback" in line]


@dataclass(frozen=True)
class Fault:
    """A real fault injected at one call inside the CLI process: ``kill`` (SIGKILL to itself), ``fill`` (grow
    ``ballast`` until its file system is full, then go on) or ``enospc`` (raise ENOSPC there, for machines where
    no tmpfs can be mounted). The code under test is not changed; the test's runner wraps one attribute."""

    target: str  # "package.module:Name.attr"; a module attribute ("m:os.replace") is wrapped in m only
    action: str  # kill | fill | enospc
    nth: int = 1  # the nth matching call
    when: str = "before"  # before | after the call
    match: str = ""  # only calls whose arguments' repr contains this
    ballast: str = ""

    def env(self, base: dict | None = None) -> dict:
        return {**(base or subprocess_env()), FAULT_ENV: json.dumps(self.__dict__)}



def install_fault() -> None:
    """In the runner: wrap the attribute named by ``$SOCIOMAP_TEST_FAULT`` (a no-op without it)."""
    import importlib
    import types

    if not os.environ.get(FAULT_ENV):
        return
    fault = Fault(**json.loads(os.environ[FAULT_ENV]))
    module_name, _, path = fault.target.partition(":")
    parent = importlib.import_module(module_name)
    *owners, name = path.split(".")
    for i, owner in enumerate(owners):
        child = getattr(parent, owner)
        if isinstance(child, types.ModuleType):  # e.g. manifest's `os`: a private copy, so only that module sees it
            child = types.SimpleNamespace(**vars(child))
            setattr(parent, owner, child)
        parent = child
    original, calls = getattr(parent, name), [0]

    def wrapper(*args: object, **kwargs: object) -> object:
        hit = fault.match in repr((args, kwargs))
        calls[0] += hit
        if hit and calls[0] == fault.nth and fault.when == "before":
            _strike(fault)
        result = original(*args, **kwargs)
        if hit and calls[0] == fault.nth and fault.when == "after":
            _strike(fault)
        return result

    setattr(parent, name, wrapper)


def _strike(fault: Fault) -> None:
    import errno
    import signal

    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault.action == "enospc":
        raise OSError(errno.ENOSPC, "No space left on device", fault.ballast)
    elif fault.action == "fill":
        fill_disk(Path(fault.ballast))


def fill_disk(ballast: Path) -> None:
    """Grow ``ballast`` until its file system refuses another byte (a real ENOSPC for whatever writes next)."""
    import errno

    with open(ballast, "ab", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise


def cli(*args: object, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> Outcome:
    """``sociomap ARGS`` in a fresh Python process (so imports and start-up are real)."""
    proc = subprocess.run([sys.executable, "-c", _RUNNER, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env or subprocess_env())
    stdout, _, tail = proc.stdout.rpartition("\n@@")
    if not tail:  # the process died before reporting
        return Outcome(proc.returncode, [], proc.stdout, proc.stderr)
    report = json.loads(tail)
    return Outcome(report["exit"], report["heavy"], stdout, proc.stderr)


@dataclass
class Row:
    """One line of the reliability table."""

    area: str
    case: str
    exit: str
    shows: str
    left: str


@dataclass
class Table:
    """Rows recorded by the suite's tests, keyed by case id."""

    rows: dict[str, Row] = field(default_factory=dict)

    def record(self, key: str, area: str, case: str, exit: int | str, shows: str, left: str) -> None:
        self.rows[key] = Row(area, case, str(exit), shows, left)


TABLE = Table()


def normalise(text: str, *paths: Path) -> str:
    """A message with machine-specific parts replaced, so the table is the same on every machine."""
    for path in sorted({str(p) for p in paths if p} | {str(REPO)}, key=len, reverse=True):
        text = text.replace(path, "<tmp>" if path != str(REPO) else "<repo>")
    text = re.sub(r"\d{8}T\d{6}Z-[0-9a-f]{6}", "<run_id>", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    text = re.sub(r"\(pid \d+\)", "(pid <pid>)", text)
    # How many tiles of a cut-short mosaic fail depends on which worker read which neighbour first (GDAL's
    # block cache): 12 or 13 were seen. The behaviour under test is the one line, not the count.
    text = re.sub(r"\b\d+ tile\(s\) failed", "<n> tile(s) failed", text)
    text = re.sub(r"has \d+ cores; use at most \d+", "has <n> cores; use at most <n>", text)
    text = re.sub(r"/tmp/pytest-of-[^/\s]+/pytest-\d+/", "<tmp>/", text)
    text = re.sub(r"\b[0-9a-f]{12,64}\b", "<hash>", text)
    return " ".join(text.split())


def error_line(outcome: Outcome, *paths: Path) -> str:
    """The user-facing error line of an outcome, normalised (empty when there is none)."""
    lines = outcome.error_lines
    return normalise(lines[0], *paths) if lines else ""


def tree(folder: Path) -> list[str]:
    """Every path under ``folder`` (relative), to compare before and after a fault."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def published(out: Path) -> tuple[str, dict]:
    """(set folder name, run.json) of the published set."""
    current = (out / "current").resolve()
    return current.name, json.loads((current / "run.json").read_text())


def env_with_tmpdir(tmpdir: Path) -> dict:
    """The CLI's environment with its own, initially empty, TMPDIR (to see what a run leaves in temp)."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    return subprocess_env(TMPDIR=str(tmpdir), TMP=str(tmpdir), TEMP=str(tmpdir))


def mount_tmpfs(folder: Path, size: str, readonly: bool = False) -> bool:
    """Mount a small tmpfs at ``folder`` (needs root and CAP_SYS_ADMIN); False where that is not possible."""
    folder.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True).returncode == 0


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True, capture_output=True)


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize
