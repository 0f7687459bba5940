"""sociomap.cli.progress: rich progress bar and end-of-run report for `sociomap run`."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from sociomap.taxonomy import Query

console = Console(stderr=True)


class RichReporter:
    """Tiles done/total, rate, ETA and cache hits while a run goes; a context manager."""

    def __init__(self, enabled: bool = True) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9}"), TextColumn("ETA"), TimeRemainingColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
            console=console, disable=not enabled, transient=False,
        )
        self._task = None
        self._stats = {"computed": 0, "reused": 0, "empty": 0, "failed": 0}

    def __enter__(self) -> RichReporter:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def start(self, total_tiles: int, queries: list[Query]) -> None:
        self._task = self._progress.add_task(f"tiles x {len(queries)} queries", total=total_tiles,
                                             rate="", info="")

    def advance(self, tiles: int, progress: object) -> None:
        for name in self._stats:
            self._stats[name] += getattr(progress, name)
        task = self._progress.tasks[0]
        speed = task.speed or 0.0
        self._progress.update(self._task, advance=tiles, rate=f"{speed:.2f} t/s" if speed else "",
                              info="computed {computed} reused {reused} empty {empty} failed {failed}"
                              .format(**self._stats))

    def stage(self, name: str) -> None:
        self._progress.update(self._task, description=name)


def query_table(queries: list[Query]) -> Table:
    """The --classes -> socio-function mapping, shown before a run starts."""
    table = Table(title="queries", title_justify="left")
    for col in ("you asked", "model query", "kind", "socio-function", "layer"):
        table.add_column(col)
    from sociomap.taxonomy import load_taxonomy

    outside = {c.name for c in load_taxonomy().classes if not c.socioseg}
    for spec, q in queries:
        kind = "class (not in SocioSeg: zero-shot)" if q.kind == "class" and q.text in outside else q.kind
        table.add_row(spec, q.text, kind, q.function or "(none: own layer)", q.layer)
    return table


def summary_table(summary: object) -> Table:
    """Counts, per-stage seconds and layers at the end of a run."""
    table = Table(title=f"run {summary.run_id}", title_justify="left", show_header=False)
    table.add_row("tiles", f"{summary.tiles_total} candidate, {summary.tiles_read} read, "
                           f"{summary.tiles_from_memo} unchanged (not read), {summary.tiles_empty} without data, "
                           f"{len(summary.failed_tiles)} failed")
    table.add_row("results", f"{summary.results_computed} computed, {summary.results_reused} reused from cache"
                  + (f", {summary.cache_damaged} damaged cache entries recomputed" if summary.cache_damaged else ""))
    table.add_row("seconds", ", ".join(f"{k} {v:.2f}" for k, v in sorted(summary.seconds.items())))
    for name, n in summary.layers.items():
        kept = f" (kept from run {summary.carried[name]})" if name in summary.carried else ""
        table.add_row(f"layer {name}", f"{n} features{kept}")
    table.add_row("features crossing a tile seam", str(summary.seam_features))
    table.add_row("executor", summary.executor)
    return table
