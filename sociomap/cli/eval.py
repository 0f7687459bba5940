"""``$ sociomap eval``: the paper's metrics on SocioSeg data, and a finished run judged against references."""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path

import click

from sociomap.cli import options


class ReasonerOptionsCommand(click.Command):
    """A command that takes one option per ``ReasonerConfig`` field, spelled as ``sociomap run`` spells it.

    The options are added on first use, so the reasoning package (torch) is imported only when this command
    runs or shows its help, never for ``sociomap --help``; a field added to ReasonerConfig becomes an option
    here too.
    """

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not getattr(self, "_reasoner_options", False):
            self.params.extend(reasoner_params())
            self._reasoner_options = True
        return super().get_params(ctx)


def reasoner_params() -> list[click.Parameter]:
    """Copies of `run`'s options for the ReasonerConfig fields it has; a generic option for any other."""
    from sociomap.cli.run import run
    from sociomap.reasoning import ReasonerConfig

    known = {p.name: p for p in run.params}
    hints = typing.get_type_hints(ReasonerConfig)
    params = []
    for f in dataclasses.fields(ReasonerConfig):
        params.append(copy.copy(known[f.name]) if f.name in known else _generic_option(f, hints[f.name]))
    return params


def _generic_option(f: dataclasses.Field, hint: object) -> click.Option:
    """An option for a ReasonerConfig field `run` does not expose: its type from the annotation."""
    kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    flag = "--" + f.name.replace("_", "-")
    if kind is bool:
        return click.Option([flag], is_flag=True, default=f.default, help=f"ReasonerConfig.{f.name}.")
    return click.Option([flag], type=kind if kind in (int, float) else str, default=f.default,
                        show_default=f.default is not None, help=f"ReasonerConfig.{f.name}.")


@click.group("eval", short_help="Measure accuracy: SocioSeg metrics, or a run against reference layers.")
def eval_group() -> None:
    """Measure how good the layers are: the paper's metrics on SocioSeg data (`socioseg`), or a finished run
    compared with reference layers such as `sociomap labels` from OSM (`city`)."""


@eval_group.command("socioseg", cls=ReasonerOptionsCommand)
@options.config_opt
@click.argument("data")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Report folder (also holds the per-sample cache: re-run with the same --out to resume).")
@click.option("--split", default="test", show_default=True, help="Dataset split (folder or parquet prefix).")
@click.option("--limit", type=click.IntRange(1), help="Only the first N samples.")
@click.option("--tasks", "tasks_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV id,task[,category,function] overriding the task read from each query.")
@click.option("--ignore-value", type=click.IntRange(0, 255),
              help="Ground-truth mask value excluded from scoring.")
@click.option("--gallery-max", type=click.IntRange(0), default=30, show_default=True,
              help="Failed samples shown per failure mode in failures.html.")
@click.option("--force", is_flag=True, help="Ignore cached results and run the model on every sample.")
@click.pass_context
def socioseg(ctx: click.Context, data: str, out: Path, split: str, limit: int | None, tasks_csv: Path | None,
             ignore_value: int | None, gallery_max: int, force: bool, **reasoner_kw: object) -> None:
    """Run SocioReasoner on SocioSeg samples in DATA and write the paper's metrics, per task / category /
    socio-function, stage 1 beside stage 2, and a failure gallery.

    DATA: a folder of split/<id>/{map,sat,mask}.png + question.json, the downloaded Hugging Face dataset
    (parquet), or the hub id vvangfaye/SocioSeg.

    \b
    Examples:
      hf download vvangfaye/SocioSeg --repo-type dataset --local-dir SocioSeg
      sociomap eval socioseg SocioSeg --out eval-test/
      sociomap eval socioseg SocioSeg --split val --limit 100 --greedy --out eval-val/
    """
    from sociomap.cli.progress import console
    from sociomap.evaluation import evaluate_socioseg, open_dataset
    from sociomap.evaluation.datasets import read_task_overrides
    from sociomap.reasoning import ReasonerConfig

    quiet = ctx.obj.get("quiet", False) if ctx.obj else False
    config = ReasonerConfig(**{f.name: reasoner_kw[f.name] for f in dataclasses.fields(ReasonerConfig)})
    overrides = read_task_overrides(tasks_csv) if tasks_csv else None
    dataset = open_dataset(data, split, ignore_value, overrides, offline=config.offline)
    with SampleProgress(enabled=not quiet) as progress:
        evaluation = evaluate_socioseg(dataset, config, out, force=force, limit=limit, reporter=progress,
                                       gallery_max=gallery_max)
    if not quiet:
        console.print(headline_table(evaluation))
        if evaluation.random_weights:
            console.print("[bold red]RANDOM WEIGHTS: a random-initialised test checkpoint made these masks. "
                          "The numbers are meaningless.[/]")
    click.echo(f"{len(evaluation.records)} samples ({evaluation.computed} computed, {evaluation.reused} "
               f"cached); report: {out / 'summary.md'}, gallery: {out / 'failures.html'}")


class SampleProgress:
    """Samples done/total with computed and cached counts (rich), as a context manager."""

    def __init__(self, enabled: bool = True) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from sociomap.cli.progress import console

        self._progress = Progress(TextColumn("[bold]samples"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                  console=console, disable=not enabled)
        self._task = None
        self._counts = [0, 0]

    def __enter__(self) -> SampleProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def start(self, total: int) -> None:
        self._task = self._progress.add_task("samples", total=total, info="")

    def advance(self, samples: int, computed: int, reused: int) -> None:
        self._counts[0] += computed
        self._counts[1] += reused
        self._progress.update(self._task, advance=samples,
                              info=f"computed {self._counts[0]} cached {self._counts[1]}")


def headline_table(evaluation: object) -> object:
    """All + per-task cIoU / gIoU / F1, stage 1 and stage 2 (rich)."""
    from rich.table import Table

    from sociomap.evaluation.report import group_rows

    table = Table(title="SocioSeg metrics (%)", title_justify="left")
    for col in ("task", "n", "s1 cIoU", "s1 gIoU", "s1 F1", "s2 cIoU", "s2 gIoU", "s2 F1"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for r in group_rows(evaluation.records):
        if r.by in ("all", "task"):
            table.add_row(r.name, str(r.n), *(f"{100 * getattr(s, m):.1f}" for s in (r.stage1, r.stage2)
                                              for m in ("ciou", "giou", "f1")))
    return table


@eval_group.command("city")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--reference", "-r", required=True, type=click.Path(exists=True, path_type=Path),
              help="Reference layers: <slug>.gpkg files (e.g. `sociomap labels` output) or a GeoPackage.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Report folder: city.md/.csv/.json and disagreements.gpkg.")
@click.option("--footprint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Polygons of the covered area (default: the valid-data area of the run's mosaic).")
@click.option("--bbox", type=options.NumberTuple(float, 4), help="Only WEST,SOUTH,EAST,NORTH (degrees).")
@click.option("--iou-threshold", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="Object IoU at which a model feature and a reference object match.")
@click.option("--min-area", "min_area_m2", type=click.FloatRange(0),
              help="Reference objects smaller than this (m²) are not expected (default: the run's min area).")
@click.pass_context
def city(ctx: click.Context, run_dir: Path, reference: Path, out: Path, footprint: Path | None,
         bbox: tuple | None, iou_threshold: float, min_area_m2: float | None) -> None:
    """Compare the layers of the finished run in RUN_DIR with reference layers, per socio-function: area IoU
    over the covered area, object precision / recall / F1, and where they disagree.

    \b
    Example:
      sociomap labels city.osm.pbf --classes park,school --out ref/
      sociomap eval city layers/ --reference ref/ --out eval-city/
    """
    from sociomap.cli.progress import console
    from sociomap.evaluation.city import evaluate_city

    result = evaluate_city(run_dir, reference, out, footprint=footprint, bbox=bbox, threshold=iou_threshold,
                           min_area_m2=min_area_m2)
    if not (ctx.obj or {}).get("quiet", False):
        console.print(city_table(result))
    for slug in result.missing_reference:
        click.echo(f"warning: the reference has no {slug} layer; not evaluated", err=True)
    click.echo(f"report: {out / 'city.md'}, disagreements: {out / 'disagreements.gpkg'}")


def city_table(result: object) -> object:
    """One row per socio-function (rich)."""
    from rich.table import Table

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}"

    title = f"run vs reference, covered {result.covered_m2 / 1e6:.3f} km² (%)"
    table = Table(title=title, title_justify="left")
    for col in ("layer", "model", "ref", "area IoU", "P", "R", "F1", "TP", "FP", "FN"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for s in result.scores:
        table.add_row(s.layer, str(s.n_model), str(s.n_reference), pct(s.area_iou), pct(s.precision),
                      pct(s.recall), pct(s.f1), str(s.tp), str(s.fp), str(s.fn))
    return table
