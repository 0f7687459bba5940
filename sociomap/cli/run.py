"""``$ sociomap run``: a mosaic (+ map or OSM) -> one GeoPackage per socio-function."""

from __future__ import annotations

from pathlib import Path

import click

from sociomap.cli import options

REASONER_FIELDS = ("model", "revision", "sam", "device", "dtype", "sam_dtype", "temperature", "top_p", "top_k",
                   "max_new_tokens", "greedy", "seed", "batch_size", "offline", "engine", "endpoint", "api_key_env",
                   "concurrency", "request_timeout", "request_retries")


@click.command(short_help="Segment a city mosaic into socio-function layers.")
@options.config_opt
@click.argument("image", required=False)  # a path or URL; checked by the library (exit 3, one line)
@options.classes_opt
@click.option("--name", "names", multiple=True, help="A place name to find (repeatable); never read as a class.")
@options.out_opt
@click.option("--map", "map_path", type=click.Path(),
              help="Map for every tile: a georeferenced map raster (any CRS; a path or an https:// / s3:// URL), "
                   "an XYZ tile folder, .mbtiles or .pmtiles.")
@click.option("--osm", type=click.Path(path_type=Path),
              help="OpenStreetMap file (.osm.pbf/.osm/.osm.bz2): maps are rendered from it.")
@click.option("--map-language", help="Prefer OSM name:xx labels in this language (e.g. en, fi, zh).")
@click.option("--map-style", type=click.Choice(["socioseg", "carto"]), default="socioseg", show_default=True,
              help="OSM map style: socioseg (roads and POIs, as the model's training maps) or carto (filled areas).")
@click.option("--reasoner", "reasoner_kind", type=click.Choice(["socioreasoner", "osm"]), default="socioreasoner",
              show_default=True, help="socioreasoner: the model; osm: masks from OSM tags (no model, a baseline).")
# Tiling.
@click.option("--zoom", "-z", type=click.IntRange(1, 22), default=16, show_default=True, help="XYZ zoom.")
@click.option("--tile-size", type=click.IntRange(64, 4096), default=768, show_default=True,
              help="Tile size in px (768 = SocioReasoner's training size).")
@click.option("--bands", type=options.NumberTuple(int), help="1-based mosaic bands to use as R,G,B.")
@click.option("--rescale", type=options.NumberTuple(float, 2), help="MIN,MAX stretch for non-8-bit mosaics.")
@click.option("--resampling", type=click.Choice(["nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average"]),
              default="bilinear", show_default=True, help="Resampling for overviews and reprojection to Web Mercator.")
@click.option("--nodata", type=float, help="Pixel value meaning 'no data', for mosaics that declare none.")
# Model.
@click.option("--model", default="vvangfaye/SocioReasoner-3B", show_default=True,
              help="SocioReasoner weights: HF hub id or local folder; with --engine openai the served model id.")
@click.option("--revision", help="Hub revision (tag, branch or commit) to pin.")
@click.option("--sam", default="facebook/sam2-hiera-large-hf", show_default=True,
              help="SAM weights: HF hub id or folder (SAM 2 / SAM), or a segment-anything .pth.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--dtype", type=click.Choice(["auto", "bfloat16", "float16", "float32"]), default="auto",
              show_default=True, help="Model dtype; auto = bfloat16 on GPU, float32 on CPU.")
@click.option("--sam-dtype", type=click.Choice(["auto", "bfloat16", "float16", "float32"]), default="auto",
              show_default=True, help="SAM autocast dtype on GPU; auto = bfloat16 (float32 = the reference's).")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-p", type=float, default=0.8, show_default=True)
@click.option("--top-k", type=int, default=100, show_default=True)
@click.option("--max-new-tokens", type=int, default=2048, show_default=True)
@click.option("--greedy", is_flag=True, help="Greedy decoding instead of the reference sampling.")
@click.option("--seed", type=int, help="Sampling seed (reproducible outputs).")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True,
              help="(tile, query) pairs per generate call.")
@click.option("--offline", is_flag=True, help="Never contact the hub; use cached or local weights only.")
@click.option("--engine", type=click.Choice(["hf", "openai"]), default="hf", show_default=True,
              help="hf: the VLM in this process (transformers); openai: an OpenAI-compatible server at --endpoint "
                   "(vllm serve, SGLang; docs/serving.md). SAM runs here either way.")
@click.option("--endpoint", help="--engine openai: the server's API base URL, e.g. http://127.0.0.1:8000/v1.")
@click.option("--api-key-env", metavar="NAME",
              help="--engine openai: environment variable holding the API key [default: SOCIOMAP_API_KEY, then "
                   "OPENAI_API_KEY].")
@click.option("--concurrency", type=click.IntRange(1), default=32, show_default=True,
              help="--engine openai: requests in flight per worker.")
@click.option("--request-timeout", type=click.FloatRange(0, min_open=True), default=600.0, show_default=True,
              help="--engine openai: seconds a request may take before it is retried.")
@click.option("--request-retries", type=click.IntRange(0), default=4, show_default=True,
              help="--engine openai: retries of a request on 429, 5xx, timeouts and lost connections.")
# Merge and output.
@click.option("--min-area", "min_area_m2", type=float, help="Drop polygons smaller than this, m².")
@click.option("--min-hole", "min_hole_m2", type=float, help="Fill holes smaller than this, m².")
@options.crs_opt
@options.format_opt
@options.combined_opt
@click.option("--pictures/--no-pictures", default=True, show_default=True,
              help="Also write pictures/overview.png (every layer over the imagery) and one thumbnail per layer.")
# Execution.
@click.option("--workers", type=click.IntRange(0),
              help="Local CPU worker processes (0 = in-process; default: from the cores; GPUs get one each).")
@click.option("--gpus", type=click.IntRange(0), help="GPUs of this machine to use, one worker each (default: all).")
@click.option("--scheduler", help="Run on an existing Dask cluster: tcp://host:8786 or a scheduler file.")
@click.option("--min-workers", type=click.IntRange(1), default=1, show_default=True,
              help="With --scheduler: wait until this many workers joined (adaptive clusters).")
@click.option("--memory-limit", default="auto", show_default=True, help="Per-worker memory limit (e.g. 12GiB).")
@click.option("--tiles-per-task", type=click.IntRange(1), default=2, show_default=True)
@click.option("--retries", type=click.IntRange(0), default=2, show_default=True, help="Retries of a failing batch.")
@click.option("--force", is_flag=True, help="Ignore the per-tile cache and recompute everything.")
@click.option("--overwrite", is_flag=True, help="Replace files in --out that sociomap did not write.")
@click.option("--allow-shrink", is_flag=True,
              help="Publish even when a layer loses more than --max-shrink of its published features.")
@click.option("--max-shrink", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Share of a published layer's features a run may lose before publishing is refused.")
@click.option("--dry-run", is_flag=True, help="Count tiles and model calls (and cache hits); write nothing.")
@click.pass_context
def run(ctx: click.Context, image: str | None, classes: tuple[str, ...] | None, out: Path | None,
        **kw: object) -> None:
    """Cut IMAGE into XYZ tiles, segment every (tile, class), merge across seams, write layers.

    \b
    Examples:
      sociomap run city.tif --osm city.osm.pbf --classes park,school --out layers/
      sociomap run city.tif --map map.tif -c educational,medical -o layers/ --scheduler tcp://gpu1:8786
      sociomap run --config city.toml          # every option can live in a TOML file (cron)
    """
    from sociomap.cli.progress import RichReporter, console, query_table, summary_table
    from sociomap.pipeline.run import run as run_pipeline
    from sociomap.taxonomy import resolve_query

    names = tuple(kw.pop("names") or ())
    if image is None or not (classes or names) or out is None:
        raise click.UsageError("IMAGE, --classes (or --name) and --out are required (on the command line or in --config)")
    config = build_run_config(image, tuple(classes or ()), out, {**kw, "names": names})
    quiet = ctx.obj.get("quiet", False) if ctx.obj else False
    if not quiet:
        console.print(query_table([(c, resolve_query(c)) for c in classes or ()]
                                  + [(n, resolve_query(n, name=True)) for n in names]))
    with RichReporter(enabled=not quiet) as reporter:
        summary = run_pipeline(config, reporter)
    if not quiet:
        console.print(summary_table(summary))
        if summary.random_weights:
            console.print("[bold red]RANDOM WEIGHTS: this run used a random-initialised test checkpoint. "
                          "The layers are meaningless and are NOT results.[/]")
    if config.dry_run:
        estimate = ("unknown until a first run" if summary.estimate_seconds is None
                    else f"about {summary.estimate_seconds / 60:.1f} worker-minutes of model time")
        click.echo(f"dry run: {summary.tiles_total} tiles ({summary.tiles_empty} known without data), at most "
                   f"{summary.results_computed} model calls needed, {summary.results_reused} already cached; "
                   f"estimate: {estimate}")


def build_run_config(image: str | Path, classes: tuple[str, ...], out: Path, kw: dict) -> object:
    """Assemble the stage configs from the command's keyword arguments."""
    from sociomap.merge import MergeConfig
    from sociomap.pipeline.executor import ExecutorConfig
    from sociomap.pipeline.run import RunConfig
    from sociomap.reasoning import ReasonerConfig
    from sociomap.tiling import TilingConfig

    _check_crs(kw["crs"])

    merge_kw = {k: kw.pop(k) for k in ("min_area_m2", "min_hole_m2") if kw.get(k) is not None}
    kw.pop("min_area_m2", None)
    kw.pop("min_hole_m2", None)
    reasoner = ReasonerConfig(**{k: kw.pop(k) for k in REASONER_FIELDS})
    tiling = TilingConfig(zoom=kw.pop("zoom"), tile_size=kw.pop("tile_size"), bands=kw.pop("bands"),
                          rescale=kw.pop("rescale"), tiles_per_task=kw.pop("tiles_per_task"),
                          resampling=kw.pop("resampling"), nodata=kw.pop("nodata"))
    executor = ExecutorConfig(workers=kw.pop("workers"), scheduler=kw.pop("scheduler"), gpus=kw.pop("gpus"),
                              memory_limit=kw.pop("memory_limit"), retries=kw.pop("retries"),
                              min_workers=kw.pop("min_workers"))
    return RunConfig(image=image, out=out, classes=tuple(classes), names=tuple(kw.pop("names", ())),
                     map=kw.pop("map_path"), osm=kw.pop("osm"), map_language=kw.pop("map_language"),
                     map_style=kw.pop("map_style"), reasoner_kind=kw.pop("reasoner_kind"),
                     crs=kw.pop("crs"), formats=tuple(kw.pop("formats")) + (("pictures",) * kw.pop("pictures")),
                     combined=kw.pop("combined"),
                     force=kw.pop("force"), dry_run=kw.pop("dry_run"), overwrite=kw.pop("overwrite"),
                     allow_shrink=kw.pop("allow_shrink"), max_shrink=kw.pop("max_shrink"), tiling=tiling,
                     reasoner=reasoner, merge=MergeConfig(**merge_kw), executor=executor)


def _check_crs(crs: str) -> None:
    """Fail before any tile is computed when --crs is not a CRS."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        CRS.from_user_input(crs)
    except CRSError as exc:
        raise click.BadParameter(f"{crs!r} is not a CRS ({exc}); e.g. EPSG:4326 or EPSG:3067",
                                 param_hint="--crs") from exc
