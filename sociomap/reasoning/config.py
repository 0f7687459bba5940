"""Reasoner configuration and the records it takes and returns (frozen where they are values)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sociomap.errors import ConfigError, InputError

DEFAULT_MODEL = "vvangfaye/SocioReasoner-3B"
DEFAULT_SAM = "facebook/sam2-hiera-large-hf"
ENGINES = ("hf", "openai")
DTYPES = ("auto", "bfloat16", "float16", "float32")
API_KEY_ENVS = ("SOCIOMAP_API_KEY", "OPENAI_API_KEY")  # read in this order when --api-key-env is not given


@dataclass(frozen=True)
class ReasonerConfig:
    """Everything that picks weights and decoding; each field maps 1:1 to a `sociomap run` option / TOML key.

    Sampling defaults are the reference's inference settings (temperature 1, top_p 0.8, top_k 100, 2048 tokens).
    """

    model: str = DEFAULT_MODEL  # HF hub id or local folder (Qwen2.5-VL format); openai: the served model id
    revision: str | None = None  # hub revision pin (branch, tag or commit) of `model`
    sam: str = DEFAULT_SAM  # hub id / folder (HF Sam2Model or SamModel) or a segment-anything v1 checkpoint file
    sam_revision: str | None = None  # hub revision pin of `sam`
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    dtype: str = "auto"  # VLM dtype: "auto" (bf16 on GPU, fp32 on CPU), "bfloat16", "float16", "float32"
    sam_dtype: str = "auto"  # SAM autocast dtype on CUDA: "auto" = bfloat16; "float32" as the reference; CPU: fp32
    temperature: float = 1.0
    top_p: float = 0.8
    top_k: int = 100
    max_new_tokens: int = 2048
    greedy: bool = False  # argmax decoding instead of sampling (deterministic)
    seed: int | None = None  # sampling seed; each (tile, query, stage) derives its own from it (sampling.py)
    batch_size: int = 8  # hf engine: (tile, query) pairs per generate call, both stages
    offline: bool = False  # local_files_only: never touch the network (hub)
    engine: str = "hf"  # "hf": transformers in this process; "openai": an OpenAI-compatible server (vLLM, SGLang)
    endpoint: str | None = None  # openai engine: base URL of the server's API, e.g. http://127.0.0.1:8000/v1
    api_key_env: str | None = None  # openai engine: environment variable holding the API key (default API_KEY_ENVS)
    concurrency: int = 32  # openai engine: requests in flight per worker process
    request_timeout: float = 600.0  # openai engine: seconds one request may take before it is retried
    request_retries: int = 4  # openai engine: retries of a request (429, 5xx, timeouts, lost connections)

    def __post_init__(self) -> None:
        """Reject values generate() would fail on later, naming the option."""
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.greedy and (self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0):
            raise ConfigError("sampling needs temperature > 0, 0 < top_p <= 1, top_k >= 0 (or set greedy)")
        for name in ("dtype", "sam_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ConfigError(f"{name} must be one of {', '.join(DTYPES)}, got {getattr(self, name)!r}")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "openai" and not (self.endpoint or "").startswith(("http://", "https://")):
            raise ConfigError(f"--engine openai needs --endpoint http(s)://HOST:PORT/v1 (got {self.endpoint!r}), "
                              "e.g. http://127.0.0.1:8000/v1 for `vllm serve` (docs/serving.md)")
        if self.concurrency < 1 or self.request_timeout <= 0 or self.request_retries < 0:
            raise ConfigError("concurrency must be >= 1, request_timeout > 0 and request_retries >= 0")


@dataclass(frozen=True)
class TilePair:
    """One tile's two co-registered images, same square size (768x768 by default)."""

    map: np.ndarray  # (H, W, 3) uint8 RGB, the rendered map
    satellite: np.ndarray  # (H, W, 3) uint8 RGB
    key: str = ""  # opaque tile id set by the caller ("16/37308/18969"): with the query it seeds the samples

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
    scores: list[float] = field(default_factory=list)  # SAM predicted IoU of each final object (as boxes)
    coarse_scores: list[float] = field(default_factory=list)  # SAM predicted IoU of each stage-1 object
