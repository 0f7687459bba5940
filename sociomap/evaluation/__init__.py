"""sociomap.evaluation: the paper's metrics on SocioSeg-format data, and a finished run judged against
reference layers (docs/evaluation.md)."""

from sociomap.evaluation.datasets import QueryInfo, Sample, classify_query, open_dataset
from sociomap.evaluation.metrics import MaskScore, Summary, match_one_to_one, score_mask, summarize
from sociomap.evaluation.runner import Evaluation, evaluate_socioseg

__all__ = ["Evaluation", "MaskScore", "QueryInfo", "Sample", "Summary", "classify_query", "evaluate_socioseg",
           "match_one_to_one", "open_dataset", "score_mask", "summarize"]
