"""describe_weights: what a model folder, hub id or SAM checkpoint is, read from its config and safetensors headers."""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path

from sociomap.errors import ModelLoadError
from sociomap.reasoning.weights import is_random_init, read_config, resolve_weights


def _safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file (tensor dtypes and shapes) without reading the tensors."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(min(length, path.stat().st_size)))
    except (struct.error, ValueError, OSError) as exc:
        raise ModelLoadError(f"{path} is not a readable .safetensors file ({exc}): re-download the model") from exc
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path} has no safetensors header: re-download the model")
    header.pop("__metadata__", None)
    return header


def describe_weights(spec: str, revision: str | None = None, offline: bool = True) -> dict[str, str]:
    """Architecture, parameter count, stored dtype, revision and random_init of local or cached weights."""
    weights = resolve_weights(spec, revision, offline)
    files = [weights.path] if weights.path.is_file() else sorted(weights.path.glob("*.safetensors"))
    tensors = [t for f in files if f.suffix == ".safetensors" for t in _safetensors_header(f).values()]
    params = sum(_numel(t["shape"]) for t in tensors)
    dtypes = Counter(t["dtype"] for t in tensors)
    config = read_config(weights.path)
    architecture = ",".join(config.get("architectures", [])) or ("segment-anything v1" if weights.path.is_file() else "?")
    return {"model": spec, "path": str(weights.path), "revision": weights.revision, "architecture": architecture,
            "model_type": str(config.get("model_type", "")), "parameters": f"{params:,}",
            "dtype": ",".join(dtypes) or "?", "random_init": str(is_random_init(weights.path)).lower()}


def _numel(shape: list[int]) -> int:
    """Number of elements of a tensor shape."""
    count = 1
    for dim in shape:
        count *= dim
    return count
