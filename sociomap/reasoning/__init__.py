"""sociomap.reasoning: SocioReasoner inference (Qwen2.5-VL + SAM, two stages), needing only torch + transformers."""

from sociomap.reasoning.config import QueryResult, ReasonerConfig, TilePair
from sociomap.reasoning.identity import reasoner_identity
from sociomap.reasoning.loading import load_reasoner
from sociomap.reasoning.reasoner import SocioReasoner
from sociomap.reasoning.tiny import build_tiny_checkpoint

__all__ = ["QueryResult", "ReasonerConfig", "SocioReasoner", "TilePair", "build_tiny_checkpoint", "load_reasoner",
           "reasoner_identity"]
