"""Find model weights (local folder, file or HF hub cache) and fingerprint them; one clear error when missing."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError

from sociomap.errors import ModelLoadError
from sociomap.fingerprint import tree_sha256

logger = logging.getLogger(__name__)

# Files a model folder needs; pickled weights (*.bin, *.pt) are never fetched or loaded from the hub.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"]
RANDOM_INIT_KEY = "sociomap_random_init"
# What loading a broken model folder raises: missing or unreadable files (OSError), a truncated or garbage
# .safetensors (SafetensorError, which derives from Exception only), configs and shapes that do not fit.
LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError)


@dataclass(frozen=True)
class Weights:
    """Where a model's files are and which exact version they are."""

    spec: str  # what the user gave: hub id, folder or file
    path: Path  # local folder (or file, for segment-anything checkpoints)
    revision: str  # hub commit hash, or "sha256:<hex>" of the local files


def how_to_get(spec: str) -> str:
    """The one-line fix for missing weights."""
    return f"run `sociomap model pull {spec}` (needs network) or pass a local folder, e.g. --model /path/to/folder"


def looks_like_path(spec: str) -> bool:
    """A local path rather than a hub id (``owner/name``)."""
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1


def resolve_weights(spec: str, revision: str | None = None, offline: bool = False) -> Weights:
    """Local path as is, else the hub snapshot (downloaded unless offline); ModelLoadError when unavailable."""
    local = Path(spec).expanduser()
    if local.exists():
        return Weights(spec=spec, path=local, revision="sha256:" + tree_sha256(local.resolve()))
    if looks_like_path(spec):
        raise ModelLoadError(f"model path {spec!r} does not exist: {how_to_get(spec)}")
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(spec, revision=revision, local_files_only=offline, allow_patterns=HUB_PATTERNS)
    except Exception as exc:  # hub errors span several classes (offline, 404, auth, network); all mean "not here"
        mode = "offline, not in the HF cache" if offline else type(exc).__name__
        raise ModelLoadError(f"cannot get model {spec!r} ({mode}): {how_to_get(spec)}") from exc
    return Weights(spec=spec, path=Path(folder), revision=Path(folder).name)


def read_config(path: Path) -> dict:
    """config.json of a model folder, or of the JSON sidecar beside a checkpoint file; {} when absent."""
    config = path / "config.json" if path.is_dir() else path.with_suffix(".json")
    try:
        return json.loads(config.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{config} is not readable JSON ({exc}): re-download the model") from exc


def is_random_init(path: Path) -> bool:
    """True when build_tiny_checkpoint made these weights (it marks the config)."""
    return bool(read_config(path).get(RANDOM_INIT_KEY))


def warn_if_random(weights: Weights) -> None:
    """Log the loud warning that random weights give meaningless masks."""
    if is_random_init(weights.path):
        logger.warning("RANDOM WEIGHTS: outputs are meaningless (%s was made by `sociomap model init-tiny`)", weights.path)
