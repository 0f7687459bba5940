"""``$ sociomap reasoning``: print what the model said for a feature (its ``reasoning`` attribute)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command(short_help="Show the model's think/answer text behind a feature.")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("pointer")
def reasoning(out: Path, pointer: str) -> None:
    """Print the stage-1/stage-2 texts, boxes and points stored for POINTER, the ``reasoning`` value of a
    feature in OUT's layers (";"-separated for features merged from several tiles).

    \b
    Example:
      sociomap reasoning layers/ 3f/3f9c...e1.npz
    """
    from sociomap.pipeline.cache import read_entries

    for ref, meta in read_entries(out, pointer.split(";")):
        click.echo(json.dumps({"pointer": ref, **meta}, indent=2, ensure_ascii=False))
