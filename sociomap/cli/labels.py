"""``$ sociomap labels``: OSM reference layers, one GeoPackage per socio-function."""

from __future__ import annotations

from pathlib import Path

import click

from sociomap.cli import options


@click.command(short_help="OSM-derived reference layers (same schema as `run`).")
@click.argument("osm", type=click.Path(dir_okay=False, path_type=Path))
@options.classes_opt
@options.out_opt
@click.option("--bbox", type=options.NumberTuple(float, 4), help="Keep only WEST,SOUTH,EAST,NORTH (degrees).")
@options.crs_opt
def labels(osm: Path, classes: tuple[str, ...] | None, out: Path | None, bbox: tuple | None, crs: str) -> None:
    """Write reference layers of OSM objects tagged as the --classes, e.g. to evaluate a run.

    \b
    Example:
      sociomap labels helsinki.osm.pbf --classes park,school --out ref/
    """
    from sociomap.cli.progress import console
    from sociomap.pipeline.labels import write_labels

    if not classes or out is None:
        raise click.UsageError("--classes and --out are required")
    summary = write_labels(osm, classes, out, crs=crs, bounds_wgs84=bbox)
    for layer, n in summary.layers.items():
        console.print(f"{layer}: {n} features -> {out / (layer + '.gpkg')}")
