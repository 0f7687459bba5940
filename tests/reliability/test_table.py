"""docs/reliability.md's table is what this suite observed: the committed rows must match the rows the cases
recorded in this run. ``SOCIOMAP_UPDATE_DOCS=1 pytest tests/reliability`` rewrites the table.

This file runs after the cases (pytest runs a folder's files in name order)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.reliability.harness import TABLE, Row

DOC = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- begin generated table -->", "<!-- end generated table -->"
AREAS = ("mosaic", "map", "options", "output", "cluster", "model", "kill -9", "full disk", "model output", "quiet",
         "safe loading")
HEADER = "| id | area | fault or input | exit | what the user gets | left behind |\n|---|---|---|---|---|---|"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: dict[str, Row]) -> str:
    order = sorted(rows, key=lambda k: (AREAS.index(rows[k].area) if rows[k].area in AREAS else len(AREAS), k))
    lines = [HEADER] + [f"| {k} | {_cell(r.area)} | {_cell(r.case)} | {_cell(r.exit)} | {_cell(r.shows)} | "
                        f"{_cell(r.left)} |" for k, r in ((k, rows[k]) for k in order)]
    return "\n".join(lines)


def committed_rows(text: str) -> dict[str, str]:
    """id -> the committed table line."""
    table = text.split(BEGIN)[1].split(END)[0] if BEGIN in text else ""
    return {line.split("|")[1].strip(): line for line in table.strip().splitlines()[2:] if line.startswith("| ")}


def test_the_committed_table_is_what_the_suite_observed():
    if not TABLE.rows:
        pytest.skip("no reliability case ran in this session")
    text = DOC.read_text() if DOC.exists() else ""
    observed = {line.split("|")[1].strip(): line for line in render(TABLE.rows).splitlines()[2:]}
    if os.environ.get("SOCIOMAP_UPDATE_DOCS"):
        kept = {k: v for k, v in committed_rows(text).items() if k not in observed}  # cases not run this time
        rows = {**{k: _parse(v) for k, v in kept.items()}, **TABLE.rows}
        head, _, rest = text.partition(BEGIN)
        tail = rest.partition(END)[2]
        DOC.write_text(f"{head}{BEGIN}\n{render(rows)}\n{END}{tail}")
        return
    committed = committed_rows(text)
    differ = {k: (committed.get(k, "(not in docs/reliability.md)"), line) for k, line in observed.items()
              if committed.get(k) != line}
    assert not differ, ("docs/reliability.md differs from what was observed (SOCIOMAP_UPDATE_DOCS=1 to refresh):\n"
                        + "\n".join(f"{k}:\n  docs:     {a}\n  observed: {b}" for k, (a, b) in differ.items()))


def _parse(line: str) -> Row:
    cells = [c.strip().replace("\\|", "|") for c in line.strip().strip("|").split(" | ")]
    return Row(*cells[1:6])


def test_every_case_of_the_suite_is_in_the_table():
    """A case added to the suite but never written into the docs is caught even when the table was not run."""
    committed = committed_rows(DOC.read_text())
    assert len(committed) >= 50, f"docs/reliability.md holds {len(committed)} cases"
    assert Path(DOC).read_text().count(BEGIN) == 1
