"""load_reasoner: resolve weights, pick device and dtype, build the VLM engine (in-process or served) and SAM."""

from __future__ import annotations

import logging

import torch

from sociomap.errors import ModelLoadError
from sociomap.reasoning.config import ReasonerConfig
from sociomap.reasoning.reasoner import SocioReasoner
from sociomap.reasoning.sam import load_sam
from sociomap.reasoning.vlm import VLMEngine, load_vlm
from sociomap.reasoning.weights import LOAD_ERRORS, how_to_get, resolve_weights, warn_if_random

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


def pick_sam_dtype(name: str, device_type: str) -> torch.dtype:
    """SAM's autocast dtype: "auto" -> bfloat16 on CUDA; always float32 on CPU (no autocast there)."""
    if device_type != "cuda":
        return torch.float32
    return torch.bfloat16 if name == "auto" else getattr(torch, name)


def load_reasoner(config: ReasonerConfig) -> SocioReasoner:
    """A ready reasoner from hub ids or local folders (safetensors / weights_only loading only); with
    engine "openai" the VLM is the server's (checked first: exit 4 when it is not usable) and SAM is local."""
    device = pick_device(config.device)
    if config.engine == "openai":
        from sociomap.reasoning.served import ServedReasoner, check_server

        served = check_server(config)  # before SAM loads: a missing server is said in a second
        sam_weights = resolve_weights(config.sam, config.sam_revision, config.offline)
        warn_if_random(sam_weights)
        sam = load_sam(sam_weights.path, device, pick_sam_dtype(config.sam_dtype, device.type))
        logger.info("Model server %s serves %s (root %s); sam=%s backend=%s device=%s", served.endpoint, served.id,
                    served.root or "?", config.sam, sam.name, device)
        return ServedReasoner(config, sam, sam_weights, served)
    vlm_weights = resolve_weights(config.model, config.revision, config.offline)
    sam_weights = resolve_weights(config.sam, config.sam_revision, config.offline)
    for weights in (vlm_weights, sam_weights):
        warn_if_random(weights)
    try:
        model, processor = load_vlm(vlm_weights.path, device, pick_dtype(config.dtype, device))
    except LOAD_ERRORS as exc:
        raise ModelLoadError(f"cannot load Qwen2.5-VL weights from {vlm_weights.path} ({type(exc).__name__}: "
                             f"{exc}): {how_to_get(config.model)}") from exc
    sam = load_sam(sam_weights.path, device, pick_sam_dtype(config.sam_dtype, device.type))
    logger.info("Loaded reasoner: model=%s sam=%s backend=%s device=%s", config.model, config.sam, sam.name, device)
    return SocioReasoner(config, VLMEngine(model, processor, config), sam, vlm_weights, sam_weights)
