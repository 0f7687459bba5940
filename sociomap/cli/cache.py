"""``$ sociomap cache info|gc``: what an output folder's cache holds, and pruning it."""

from __future__ import annotations

from pathlib import Path

import click

from sociomap.cli import options


@click.group("cache")
def cache() -> None:
    """Inspect and prune the per-tile results cache of a run's output folder."""


@cache.command("info")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
def info(out: Path) -> None:
    """Entries, size and runs of OUT's cache, and its published output sets."""
    from sociomap.pipeline.maintenance import cache_info

    report = cache_info(out)
    click.echo(f"cache: {report.cache.path} ({options.format_bytes(report.cache.bytes)})")
    for kind, n in report.cache.entries.items():
        click.echo(f"  {kind}: {n} entries")
    click.echo(f"runs: {len(report.cache.runs)}")
    for run in report.cache.runs[-10:]:
        click.echo(f"  {run['seq']:>4} {run['run_id']} {run['status']}")
    click.echo(f"published sets: {len(report.sets)} (current: {report.current})")


@cache.command("gc")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--keep-last", type=click.IntRange(1), default=3, show_default=True,
              help="Keep what the last N good runs used (and their output sets).")
@click.option("--max-size", type=options.ByteSize(), help="Then drop older runs' entries until the cache fits (e.g. 20GB).")
def gc(out: Path, keep_last: int, max_size: int | None) -> None:
    """Remove cache entries and output sets no recent run uses; compact the cache file.

    \b
    Example (weekly cron):
      sociomap cache gc layers/ --keep-last 3 --max-size 50GB
    """
    from sociomap.pipeline.maintenance import cache_gc

    report = cache_gc(out, keep_last=keep_last, max_bytes=max_size)
    removed = ", ".join(f"{n} {kind}" for kind, n in report.removed.items()) or "nothing"
    click.echo(f"removed {removed}; cache {options.format_bytes(report.bytes_before)} -> "
               f"{options.format_bytes(report.bytes_after)} (kept from run {report.kept_from_run})")
