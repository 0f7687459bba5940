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

#: Modules whose import means heavy work began (seconds of start-up before a bad input is noticed).
HEAVY = ("torch", "transformers", "distributed")
_RUNNER = f"""
import json, sys
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
