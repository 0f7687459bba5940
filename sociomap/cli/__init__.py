"""sociomap.cli: the thin click layer. Commands parse, call one library function, and report."""

from __future__ import annotations

import logging
import os

import click

from sociomap import __version__
from sociomap.errors import SociomapError


class _SociomapException(click.ClickException):
    """A SociomapError shown as ``Error: <message>`` with the error's own exit code."""

    def __init__(self, error: SociomapError) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code


class SociomapGroup(click.Group):
    """Maps every SociomapError to a one-line message and its exit code, in one place; lists the commands in
    pipeline order (the order they are registered), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SociomapError as exc:
            raise _SociomapException(exc) from exc


def configure_logging(verbosity: int, json_logs: bool = False) -> None:
    """stderr logging: -v INFO, -vv DEBUG, -q ERROR; ``json_logs`` for cron/log shippers."""
    from sociomap.cli.logs import JsonFormatter
    from rich.logging import RichHandler

    level = max(logging.DEBUG, logging.WARNING - 10 * verbosity)
    # Dask configures its own loggers when imported (also in worker processes, which inherit the env):
    # keep its chatter at WARNING unless -vv asks for debug output.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "info" if verbosity >= 2 else "warning")
    if verbosity < 1:  # our progress bar is the one to watch; no per-file weight-loading bars
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if json_logs:
        handler: logging.Handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
    else:
        from sociomap.cli.progress import console

        # The progress bar's own console: rich prints log lines above a live bar (a second console on
        # stderr would be swallowed by the bar's redirection when stderr is not a terminal, e.g. under cron).
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
    logging.basicConfig(level=level, handlers=[handler], force=True, format="%(message)s")
    logging.captureWarnings(True)  # third-party warnings go through logging too: -q hides them
    for noisy in ("distributed", "rasterio", "fiona", "pyogrio", "numexpr", "urllib3", "httpx", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@click.group(cls=SociomapGroup)
@click.version_option(__version__, prog_name="sociomap")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.option("-q", "--quiet", count=True, help="Less output: no progress bar, errors only.")
@click.option("--json-logs", is_flag=True, help="Log as JSON lines on stderr (for cron and log shippers).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int, json_logs: bool) -> None:
    """Map the social function of a city from above: parks, schools, hospitals... as GeoPackage layers."""
    configure_logging(verbose - quiet, json_logs)
    ctx.obj = {"quiet": quiet > 0 or json_logs}


def _register() -> None:
    # Pipeline order, as a user meets them.
    from sociomap.cli.cache import cache
    from sociomap.cli.eval import eval_group
    from sociomap.cli.export import export
    from sociomap.cli.labels import labels
    from sociomap.cli.model import model
    from sociomap.cli.reasoning import reasoning
    from sociomap.cli.run import run
    from sociomap.cli.view import view

    for command in (run, labels, export, view, eval_group, reasoning, cache, model):
        cli.add_command(command)


_register()
