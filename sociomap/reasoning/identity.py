"""reasoner_identity: what determines a reasoner's results, computed WITHOUT loading any weights.

The pipeline keys its per-tile cache on this, so a re-run can tell which tiles it already has (and a
dry run can count them) on any worker, without paying for a model load.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import lru_cache

import sociomap
from sociomap.reasoning.config import ReasonerConfig
from sociomap.reasoning.prompts import templates_sha256
from sociomap.reasoning.weights import is_random_init, resolve_weights

DECODING_FIELDS = ("temperature", "top_p", "top_k", "max_new_tokens", "greedy", "seed")


@lru_cache(maxsize=8)
def reasoner_identity(config: ReasonerConfig) -> dict[str, str]:
    """Model and SAM ids with resolved revisions (hub commit or sha256 of local files), prompt-template
    hash, decoding settings, resolved device type and dtype, code version, and the random-init flag."""
    from sociomap.reasoning.loading import pick_device, pick_dtype

    vlm = resolve_weights(config.model, config.revision, config.offline)
    sam = resolve_weights(config.sam, config.sam_revision, config.offline)
    device = pick_device(config.device)
    decoding = {k: str(v) for k, v in asdict(config).items() if k in DECODING_FIELDS}
    return {
        "model": vlm.spec, "model_revision": vlm.revision, "sam": sam.spec, "sam_revision": sam.revision,
        "prompts_sha256": templates_sha256(), "device_type": device.type,
        "dtype": str(pick_dtype(config.dtype, device)).removeprefix("torch."),
        "code_version": sociomap.__version__,
        "random_init": str(is_random_init(vlm.path) or is_random_init(sam.path)).lower(), **decoding,
    }
