"""sociomap.reasoning: SocioReasoner inference (Qwen2.5-VL + SAM, two stages), needing only torch + transformers.

Names are imported on first use (PEP 562), so ``from sociomap.reasoning import ReasonerConfig`` or the weight
helpers cost no torch import: a run with a bad input says so before the model stack loads.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "QueryResult": "config", "ReasonerConfig": "config", "TilePair": "config",
    "reasoner_identity": "identity", "load_reasoner": "loading", "SocioReasoner": "reasoner",
    "build_tiny_checkpoint": "tiny",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module 'sociomap.reasoning' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sociomap.reasoning.{_WHERE[name]}"), name)
