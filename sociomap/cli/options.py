"""sociomap.cli.options: shared options, parameter types and the TOML config callback."""

from __future__ import annotations

import tomllib
from pathlib import Path

import click

from sociomap.errors import ConfigError


class CommaList(click.ParamType):
    """``park,school`` -> ("park", "school")."""

    name = "LIST"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, (list, tuple)):
            return tuple(str(v).strip() for v in value if str(v).strip())
        return tuple(v.strip() for v in str(value).split(",") if v.strip())


class NumberTuple(click.ParamType):
    """``0,3000`` -> (0.0, 3000.0); ``cast`` int for band lists."""

    def __init__(self, cast: type = float, length: int | None = None) -> None:
        self.cast, self.length = cast, length
        self.name = "N,N" if length == 2 else "N,..."

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple:
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        try:
            out = tuple(self.cast(v) for v in items)
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of numbers", param, ctx)
        if self.length and len(out) != self.length:
            self.fail(f"{value!r} needs exactly {self.length} numbers", param, ctx)
        return out


class ByteSize(click.ParamType):
    """``500MB``, ``20GiB``, ``1e9`` -> bytes."""

    name = "SIZE"
    UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
             "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower().replace(" ", "")
        number = text.rstrip("kmgtib")
        unit = text[len(number):]
        try:
            return int(float(number) * self.UNITS[unit])
        except (ValueError, KeyError):
            self.fail(f"{value!r} is not a size; e.g. 500MB, 20GB, 1TiB", param, ctx)


def format_bytes(n: int) -> str:
    """1234567 -> '1.2 MB'."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def load_toml_defaults(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Eager --config callback: TOML keys (option names, - or _) become defaults; the command line wins."""
    if not value:
        return value
    path = Path(value)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"{path}: cannot read TOML ({exc})", ctx=ctx, param=param) from exc
    data = data.get(ctx.command.name, data)  # a [run] table or top-level keys
    known = {p.name: p.name for p in ctx.command.params if p.name}  # arguments (image) by their name
    for p in ctx.command.params:  # options by the flag the user types: --tile-size -> tile_size
        known.update({o.lstrip("-").replace("-", "_"): p.name for o in p.opts if o.startswith("--")})
    defaults = {}
    for key, val in data.items():
        name = known.get(key.replace("-", "_"))
        if name is None or name == "config":
            raise click.BadParameter(f"{path}: unknown key {key!r}; keys are the option names of "
                                     f"`sociomap {ctx.command.name} --help`", ctx=ctx, param=param)
        defaults[name] = val
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


config_opt = click.option(
    "--config", type=click.Path(exists=True, dir_okay=False), is_eager=True, expose_value=False,
    callback=load_toml_defaults, help="TOML file whose keys are this command's options (the command line wins).",
)
classes_opt = click.option(
    "--classes", "-c", type=CommaList(), help="Socio-functions, class words or place names, comma-separated "
    "(e.g. park,school,'Kaivopuisto=park and greenspace').",
)
out_opt = click.option("--out", "-o", type=click.Path(path_type=Path),
                       help="Output directory (one GeoPackage per socio-function).")
crs_opt = click.option("--crs", default="EPSG:4326", show_default=True, help="CRS of the output layers.")
format_opt = click.option("--format", "formats", type=click.Choice(["geojson", "fgb"]), multiple=True,
                          help="Also write these formats beside the GeoPackages (repeatable).")
combined_opt = click.option("--combined/--no-combined", default=False, show_default=True,
                            help="Also write one multi-layer sociomap.gpkg.")


def fail(message: str) -> None:
    """Raise a ConfigError (exit 3) from a command body."""
    raise ConfigError(message)
