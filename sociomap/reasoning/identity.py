"""reasoner_identity: what determines a reasoner's results, computed WITHOUT loading any weights.

The pipeline keys its per-tile cache on this, so a re-run can tell which tiles it already has (and a
dry run can count them) on any worker, without paying for a model load. For the openai engine it is also the
start-up check: the server must answer and serve the named model (ModelServerError, exit 4, otherwise), and the
identity records the served model id and the weights the server names as its root, never the API key.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import lru_cache

import sociomap
from sociomap.reasoning.config import ReasonerConfig
from sociomap.reasoning.prompts import templates_sha256
from sociomap.reasoning.weights import Weights, is_random_init, resolve_weights

DECODING_FIELDS = ("temperature", "top_p", "top_k", "max_new_tokens", "greedy", "seed")
SAMPLER = "per-sample-seed-v1"  # how seeds become tokens (sampling.py); bump when that changes


def _common(config: ReasonerConfig, sam: Weights, device_type: str) -> dict[str, str]:
    """Keys both engines share: SAM, prompts, decoding, pixel limits, code version."""
    from sociomap.reasoning.loading import pick_sam_dtype
    from sociomap.reasoning.vlm import MAX_PIXELS, MIN_PIXELS

    decoding = {k: str(v) for k, v in asdict(config).items() if k in DECODING_FIELDS}
    return {"engine": config.engine, "sam": sam.spec, "sam_revision": sam.revision,
            "sam_dtype": str(pick_sam_dtype(config.sam_dtype, device_type)).removeprefix("torch."),
            "prompts_sha256": templates_sha256(), "device_type": device_type, "pixels": f"{MIN_PIXELS}-{MAX_PIXELS}",
            "sampler": SAMPLER, "code_version": sociomap.__version__, **decoding}


@lru_cache(maxsize=8)
def reasoner_identity(config: ReasonerConfig) -> dict[str, str]:
    """Model and SAM ids with resolved revisions (hub commit or sha256 of local files; for the openai engine the
    served id and root), prompt-template hash, decoding settings, resolved device type and dtypes, code version,
    and the random-init flag."""
    from sociomap.reasoning.loading import pick_device, pick_dtype

    device = pick_device(config.device)
    if config.engine == "openai":
        from sociomap.reasoning.served import check_server

        served = check_server(config)
        model, vlm_random = {"model": served.id, "model_revision": f"served:{served.root}", "dtype": "server"}, False
    else:
        vlm = resolve_weights(config.model, config.revision, config.offline)
        model = {"model": vlm.spec, "model_revision": vlm.revision,
                 "dtype": str(pick_dtype(config.dtype, device)).removeprefix("torch.")}
        vlm_random = is_random_init(vlm.path)
    sam = resolve_weights(config.sam, config.sam_revision, config.offline)
    random_init = str(vlm_random or is_random_init(sam.path)).lower()
    return {**model, "random_init": random_init, **_common(config, sam, device.type)}


def loaded_identity(config: ReasonerConfig, vlm: Weights, sam: Weights, sam_backend: str, dtype: str) -> dict[str, str]:
    """The identity of a loaded hf-engine reasoner (adds the SAM backend; dtype as loaded)."""
    from sociomap.reasoning.loading import pick_device

    random_init = is_random_init(vlm.path) or is_random_init(sam.path)
    return {"model": vlm.spec, "model_revision": vlm.revision, "dtype": dtype, "random_init": str(random_init).lower(),
            "sam_backend": sam_backend, **_common(config, sam, pick_device(config.device).type)}
