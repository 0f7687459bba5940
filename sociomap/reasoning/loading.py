"""load_reasoner: resolve weights, pick device and dtype, build the VLM engine and the SAM backend."""

from __future__ import annotations

import logging

import torch

from sociomap.errors import ModelLoadError
from sociomap.reasoning.config import ReasonerConfig
from sociomap.reasoning.reasoner import SocioReasoner
from sociomap.reasoning.sam import load_sam
from sociomap.reasoning.vlm import VLMEngine, generate_kwargs, load_vlm
from sociomap.reasoning.weights import how_to_get, resolve_weights, warn_if_random

logger = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ModelLoadError(f"--device {name!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from exc


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """"auto" -> bfloat16 on GPU, float32 on CPU; otherwise the named torch dtype."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def load_reasoner(config: ReasonerConfig) -> SocioReasoner:
    """A ready SocioReasoner from hub ids or local folders (safetensors / weights_only loading only)."""
    device = pick_device(config.device)
    vlm_weights = resolve_weights(config.model, config.revision, config.offline)
    sam_weights = resolve_weights(config.sam, config.sam_revision, config.offline)
    for weights in (vlm_weights, sam_weights):
        warn_if_random(weights)
    try:
        model, processor = load_vlm(vlm_weights.path, device, pick_dtype(config.dtype, device))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot load Qwen2.5-VL weights from {vlm_weights.path} ({exc}): "
                             f"{how_to_get(config.model)}") from exc
    kwargs = generate_kwargs(config.greedy, config.temperature, config.top_p, config.top_k, config.max_new_tokens,
                             processor.tokenizer.pad_token_id)
    sam = load_sam(sam_weights.path, device)
    logger.info("Loaded reasoner: model=%s sam=%s backend=%s device=%s", config.model, config.sam, sam.name, device)
    return SocioReasoner(config, VLMEngine(model, processor, kwargs), sam, vlm_weights, sam_weights)
