"""``$ sociomap export``: convert a finished run's GeoPackages to PMTiles, GeoJSON or FlatGeobuf."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(short_help="Export a finished run's layers to PMTiles, GeoJSON or FlatGeobuf.")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["pmtiles", "geojson", "fgb", "pictures"]), default="pmtiles",
              show_default=True, help="Output format.")
@click.option("--minzoom", type=click.IntRange(0, 24), default=10, show_default=True, help="PMTiles lowest zoom.")
@click.option("--maxzoom", type=click.IntRange(0, 24), default=16, show_default=True, help="PMTiles highest zoom.")
@click.option("--engine", type=click.Choice(["auto", "tippecanoe", "python"]), default="auto", show_default=True,
              help="PMTiles writer: tippecanoe binary, pure Python, or tippecanoe with Python fallback.")
def export(out_dir: Path, fmt: str, minzoom: int, maxzoom: int, engine: str) -> None:
    """Export the published socio-function layers of OUT_DIR (a `sociomap run` output).

    The export becomes part of the published set (a new set, switched atomically, recorded in run.json),
    and later runs into OUT_DIR make it again from their layers, so it never goes stale.

    \b
    Example:
        sociomap export runs/helsinki --format pmtiles --maxzoom 17
    """
    from sociomap.pipeline.publish import export_published  # heavy imports only when the command runs

    options = {"minzoom": minzoom, "maxzoom": maxzoom, "engine": engine} if fmt == "pmtiles" else {}
    click.echo(str(export_published(out_dir, fmt, **options)))
