"""`sociomap model pull|info|init-tiny`: get, inspect and fake SocioReasoner / SAM weights."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("model")
def model() -> None:
    """Fetch and inspect model weights (Qwen2.5-VL SocioReasoner, SAM / SAM 2)."""


@model.command("pull")
@click.argument("model_id")
@click.option("--revision", default=None, help="Hub branch, tag or commit to pin.")
def pull(model_id: str, revision: str | None) -> None:
    """Download MODEL_ID (safetensors + configs) into the Hugging Face cache."""
    from sociomap.reasoning.weights import resolve_weights

    weights = resolve_weights(model_id, revision, offline=False)
    click.echo(f"{model_id} @ {weights.revision} -> {weights.path}")


@model.command("info")
@click.argument("model")
@click.option("--revision", default=None, help="Hub branch, tag or commit.")
@click.option("--offline/--online", default=True, show_default=True, help="Only look in the local HF cache.")
def info(model: str, revision: str | None, offline: bool) -> None:
    """What MODEL (hub id, folder or SAM checkpoint) is: architecture, parameters, dtype, revision, random_init."""
    from sociomap.reasoning.inspect import describe_weights

    for key, value in describe_weights(model, revision, offline).items():
        click.echo(f"{key}: {value}")


@model.command("init-tiny")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--sam-backend", type=click.Choice(["sam2", "sam", "sa1"]), default="sam2", show_default=True)
def init_tiny(directory: Path, sam_backend: str) -> None:
    """Write a tiny RANDOM checkpoint (DIRECTORY/vlm + SAM) for demos and tests; its masks are meaningless."""
    from sociomap.reasoning import build_tiny_checkpoint
    from sociomap.reasoning.tiny import TINY_SAM_DIRS

    build_tiny_checkpoint(directory, sam_backend)
    click.echo(f"--model {directory / 'vlm'} --sam {directory / TINY_SAM_DIRS[sam_backend]}  (RANDOM WEIGHTS)")
