"""Reasoner configuration and the records it takes and returns (frozen where they are values)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sociomap.errors import ConfigError, InputError

DEFAULT_MODEL = "vvangfaye/SocioReasoner-3B"
DEFAULT_SAM = "facebook/sam2-hiera-large-hf"


@dataclass(frozen=True)
class ReasonerConfig:
    """Everything that picks weights and decoding; each field maps 1:1 to a `sociomap run` option / TOML key.

    Sampling defaults are the reference's inference settings (temperature 1, top_p 0.8, top_k 100, 2048 tokens).
    """

    model: str = DEFAULT_MODEL  # HF hub id or local folder (Qwen2.5-VL format)
    revision: str | None = None  # hub revision pin (branch, tag or commit) of `model`
    sam: str = DEFAULT_SAM  # hub id / folder (HF Sam2Model or SamModel) or a segment-anything v1 checkpoint file
    sam_revision: str | None = None  # hub revision pin of `sam`
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    dtype: str = "auto"  # VLM dtype: "auto" (bf16 on GPU, fp32 on CPU), "bfloat16", "float16", "float32"
    temperature: float = 1.0
    top_p: float = 0.8
    top_k: int = 100
    max_new_tokens: int = 2048
    greedy: bool = False  # argmax decoding instead of sampling (deterministic)
    seed: int | None = None  # torch seed set at the start of each segment() call
    batch_size: int = 8  # (tile, query) pairs per generate call, both stages
    offline: bool = False  # local_files_only: never touch the network

    def __post_init__(self) -> None:
        """Reject values generate() would fail on later, naming the option."""
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.greedy and (self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0):
            raise ConfigError("sampling needs temperature > 0, 0 < top_p <= 1, top_k >= 0 (or set greedy)")
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ConfigError(f"dtype must be auto, bfloat16, float16 or float32, got {self.dtype!r}")


@dataclass(frozen=True)
class TilePair:
    """One tile's two co-registered images, same square size (768x768 by default)."""

    map: np.ndarray  # (H, W, 3) uint8 RGB, the rendered map
    satellite: np.ndarray  # (H, W, 3) uint8 RGB

    def __post_init__(self) -> None:
        """Both images must be square RGB uint8 arrays of one size."""
        for name, img in (("map", self.map), ("satellite", self.satellite)):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.shape[0] != img.shape[1]:
                raise InputError(f"TilePair.{name} must be a square (H, W, 3) uint8 array, got {img.shape} {img.dtype}")
        if self.map.shape != self.satellite.shape:
            raise InputError(f"TilePair map {self.map.shape} and satellite {self.satellite.shape} differ in size")

    @property
    def size(self) -> int:
        """Tile edge in pixels."""
        return self.satellite.shape[0]


@dataclass
class QueryResult:
    """The outcome of one (tile, query) pair; pixel coordinates are in the INPUT tile's pixels."""

    query: str
    mask: np.ndarray  # (H, W) bool, final stage-2 mask at tile size
    coarse_mask: np.ndarray  # (H, W) bool, stage-1 mask at tile size
    stage1_text: str  # full decoded stage-1 output (think + answer)
    stage2_text: str  # full decoded stage-2 output
    boxes: list[list[float]] = field(default_factory=list)  # final (stage-2) boxes, x1, y1, x2, y2
    points: list[list[float]] = field(default_factory=list)  # final positive points, x, y
