"""sociomap.evaluation.runner: SocioReasoner over SocioSeg samples, batched, cached, scored (no tiling).

Samples stream in windows; in each window the ones not in the cache are grouped by query and sent to
``SocioReasoner.segment`` ``batch_size`` at a time (its API crosses tiles with queries, so only samples that
share a query share a call). Every result is cached under a key of the sample's pixels, query, id and
``reasoner_identity(config)``, so an interrupted evaluation resumes and a re-run only rescores. Predicted
masks are written as the reference writes them (``masks/stage1|stage2/<id>.png``, 0/255), then the report.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from sociomap.errors import InputError
from sociomap.evaluation.datasets import QueryInfo, Sample
from sociomap.evaluation.failures import FAILURE_IOU, failure_mode
from sociomap.evaluation.metrics import IOU_THRESHOLD, MIN_INSTANCE_PX, MaskScore, score_mask
from sociomap.evaluation.report import write_atomic, write_report
from sociomap.reasoning.confidence import result_confidence  # numpy only: no model stack at import

if TYPE_CHECKING:  # the reasoning package imports torch; only annotations need it here
    from sociomap.evaluation.datasets import FolderDataset, ParquetDataset
    from sociomap.evaluation.gallery import Gallery
    from sociomap.reasoning import ReasonerConfig, SocioReasoner

logger = logging.getLogger(__name__)

STATE_DIR = ".sociomap"
WINDOW = 64  # samples decoded at once (memory: about 2.5 MB each at 768 px)


@dataclass(frozen=True)
class Prediction:
    """The reasoner's output for one sample: masks (H, W) bool, texts, final boxes/points in sample pixels."""

    mask: np.ndarray
    coarse_mask: np.ndarray
    stage1_text: str
    stage2_text: str
    boxes: list[list[float]]
    points: list[list[float]]
    scores: list[float] = field(default_factory=list)  # SAM's predicted IoU of each final mask


@dataclass(frozen=True)
class SampleRecord:
    """One scored sample (no pixels): what the report tables are built from."""

    id: str
    query: str
    info: QueryInfo
    stage1: MaskScore
    stage2: MaskScore
    n_boxes: int
    gt_px: int
    failure: str | None  # a failures.MODES entry when stage-2 IoU < 0.1
    failure_detail: str = ""
    confidence: float | None = None  # sociomap.reasoning.confidence of the stage-2 mask (None: nothing found)


@dataclass
class Evaluation:
    """Everything an evaluation produced."""

    dataset: str
    identity: dict[str, str]
    records: list[SampleRecord] = field(default_factory=list)
    computed: int = 0
    reused: int = 0
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    gallery: Gallery | None = None  # the failure cards kept for failures.html
    threshold: float = IOU_THRESHOLD  # instance IoU for a match
    min_instance_px: int = MIN_INSTANCE_PX  # smaller components are no instances

    @property
    def random_weights(self) -> bool:
        """True when a random-initialised test checkpoint made the predictions."""
        return self.identity.get("random_init") == "true"


class Reporter(Protocol):
    """Progress callbacks (the CLI draws them with rich; the library never prints)."""

    def start(self, total: int) -> None: ...
    def advance(self, samples: int, computed: int, reused: int) -> None: ...


class _Silent:
    def start(self, total: int) -> None:
        pass

    def advance(self, samples: int, computed: int, reused: int) -> None:
        pass


class ResultStore(Protocol):
    """The per-result store of runs (``sociomap.pipeline.cache``): get(key) -> entry | None, put(key, mask,
    meta)."""

    def get(self, key: str) -> object | None: ...
    def put(self, key: str, mask: np.ndarray, meta: dict) -> object: ...


def open_store(out: Path) -> ResultStore:
    """The result store of an evaluation folder, the same kind a run keeps (close it when done)."""
    from sociomap.pipeline.cache import CACHE_NAME, ResultCache

    return ResultCache(Path(out) / STATE_DIR / CACHE_NAME)


def sample_key(sample: Sample, identity_digest: str) -> str:
    """Cache key: the sample's pixels (map + satellite), query and id, and the reasoner's identity."""
    from sociomap.pipeline.cache import result_key, tile_input_digest

    return result_key(tile_input_digest(sample.satellite, sample.map), identity_digest, sample.query,
                      f"socioseg/{sample.id}")


def _pack(prediction: Prediction) -> tuple[np.ndarray, dict]:
    """One store entry per sample: final and coarse masks side by side (H, 2W), texts and prompts as meta."""
    meta = {"stage1_text": prediction.stage1_text, "stage2_text": prediction.stage2_text,
            "boxes": prediction.boxes, "points": prediction.points, "scores": prediction.scores,
            "layout": "final|coarse"}
    return np.concatenate([prediction.mask, prediction.coarse_mask], axis=1), meta


def _unpack(entry: object, size: int) -> Prediction | None:
    """The cached prediction, or None when the entry is not one of ours at this size (it is recomputed)."""
    mask, meta = entry.mask, entry.meta
    if meta.get("layout") != "final|coarse" or mask.shape != (size, 2 * size):
        return None
    return Prediction(mask[:, :size], mask[:, size:], meta["stage1_text"], meta["stage2_text"],
                      meta["boxes"], meta["points"], meta.get("scores", []))


def _tile_pair(sample: Sample) -> object:
    """The sample as a reasoner tile; its id is the tile key where TilePair has one (per-sample seeds)."""
    from sociomap.reasoning import TilePair

    has_key = "key" in {f.name for f in dataclasses.fields(TilePair)}
    extra = {"key": f"socioseg/{sample.id}"} if has_key else {}
    return TilePair(map=sample.map, satellite=sample.satellite, **extra)


def _as_prediction(result: object) -> Prediction:
    return Prediction(np.asarray(result.mask, bool), np.asarray(result.coarse_mask, bool), result.stage1_text,
                      result.stage2_text, [list(map(float, b)) for b in result.boxes],
                      [list(map(float, p)) for p in result.points], [float(s) for s in result.scores])


def predict(reasoner: SocioReasoner, samples: Sequence[Sample], batch_size: int) -> list[Prediction]:
    """Predictions for samples, in order: grouped by query, ``batch_size`` samples per segment() call."""
    by_query: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_query[s.query].append(i)
    out: list[Prediction | None] = [None] * len(samples)
    for query, indexes in by_query.items():
        for start in range(0, len(indexes), batch_size):
            chunk = indexes[start:start + batch_size]
            rows = reasoner.segment([_tile_pair(samples[i]) for i in chunk], [query])
            for i, row in zip(chunk, rows, strict=True):
                out[i] = _as_prediction(row[0])
    return out


def score_sample(sample: Sample, prediction: Prediction, threshold: float = IOU_THRESHOLD,
                 min_instance_px: int = MIN_INSTANCE_PX) -> SampleRecord:
    """Both stages' counts and, when stage 2 failed (IoU < 0.1), the failure mode."""
    stage1 = score_mask(prediction.coarse_mask, sample.mask, sample.valid, threshold, min_instance_px)
    stage2 = score_mask(prediction.mask, sample.mask, sample.valid, threshold, min_instance_px)
    mode, detail = None, ""
    if stage2.iou < FAILURE_IOU:
        pred = prediction.mask if sample.valid is None else prediction.mask & sample.valid
        mode, detail = failure_mode(pred, sample.mask, prediction.stage2_text, len(prediction.boxes))
    return SampleRecord(sample.id, sample.query, sample.info, stage1, stage2, len(prediction.boxes),
                        int(np.count_nonzero(sample.mask)), mode, detail,
                        result_confidence(prediction.mask, prediction.coarse_mask, prediction.scores))


def safe_name(sample_id: str) -> str:
    """A file name for a sample id (ids are folder names or dataset strings)."""
    return re.sub(r"[^\w.-]+", "_", sample_id).strip("._") or "sample"


def _png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def write_masks(out: Path, sample_id: str, prediction: Prediction) -> None:
    """``masks/stage1/<id>.png`` and ``masks/stage2/<id>.png``, 0/255, as the reference's result folders."""
    for stage, mask in (("stage1", prediction.coarse_mask), ("stage2", prediction.mask)):
        write_atomic(Path(out) / "masks" / stage / f"{safe_name(sample_id)}.png", _png(mask))


def _windows(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    it = iter(samples)
    while chunk := list(islice(it, size)):
        yield chunk


@dataclass(frozen=True)
class _Settings:
    """What one evaluation is asked to do, besides the data and the model."""

    force: bool
    limit: int | None
    threshold: float
    min_instance_px: int
    gallery_max: int


def evaluate_socioseg(dataset: FolderDataset | ParquetDataset, config: ReasonerConfig, out: Path, *,
                      reasoner: SocioReasoner | None = None, force: bool = False, limit: int | None = None,
                      reporter: Reporter | None = None, threshold: float = IOU_THRESHOLD,
                      min_instance_px: int = MIN_INSTANCE_PX, gallery_max: int = 30) -> Evaluation:
    """Run ``config`` on ``dataset`` (``open_dataset``); write the masks and the report to ``out``.

    ``reasoner``: an already loaded SocioReasoner (else loaded from ``config`` at the first cache miss);
    ``force``: recompute cached samples; ``limit``: only the first N samples. One evaluation writes to an
    ``out`` at a time (the run lock: RunLockedError, exit 5, otherwise).
    """
    from sociomap.pipeline.lock import output_lock
    from sociomap.reasoning import reasoner_identity

    started = time.perf_counter()
    identity = reasoner_identity(config)  # before anything is written: bad weights fail here (exit 4)
    settings = _Settings(force, limit, threshold, min_instance_px, gallery_max)
    out = Path(out)
    with output_lock(out / STATE_DIR):
        evaluation = _evaluate(dataset, config, out, identity, reasoner, settings, reporter or _Silent())
        evaluation.seconds = time.perf_counter() - started
        evaluation.outputs = write_report(out, evaluation, evaluation.gallery)
    return evaluation


def _evaluate(dataset: FolderDataset | ParquetDataset, config: ReasonerConfig, out: Path,
              identity: dict[str, str], reasoner: SocioReasoner | None, settings: _Settings,
              reporter: Reporter) -> Evaluation:
    """The sample loop: cache lookups, model calls for the misses, scores, masks, gallery cards."""
    from sociomap.pipeline.cache import identity_digest

    digest = identity_digest(identity)
    with open_store(out) as store:
        return _evaluate_samples(dataset, config, out, digest, identity, reasoner, settings, reporter, store)


def _evaluate_samples(dataset: FolderDataset | ParquetDataset, config: ReasonerConfig, out: Path, digest: str,
                      identity: dict[str, str], reasoner: SocioReasoner | None, settings: _Settings,
                      reporter: Reporter, store: ResultStore) -> Evaluation:
    from sociomap.evaluation.gallery import Gallery
    from sociomap.reasoning import load_reasoner

    evaluation = Evaluation(dataset.describe(), dict(identity), gallery=Gallery(settings.gallery_max),
                            threshold=settings.threshold, min_instance_px=settings.min_instance_px)
    limit = settings.limit
    reporter.start(len(dataset) if limit is None else min(limit, len(dataset)))
    for window in _windows(dataset if limit is None else islice(dataset, limit), WINDOW):
        keys = [sample_key(s, digest) for s in window]
        found = [None if settings.force else store.get(k) for k in keys]
        predictions = [None if e is None else _unpack(e, s.mask.shape[0])
                       for s, e in zip(window, found, strict=True)]
        todo = [i for i, p in enumerate(predictions) if p is None]
        if todo:
            reasoner = reasoner or load_reasoner(config)
            fresh = predict(reasoner, [window[i] for i in todo], config.batch_size)
            for i, prediction in zip(todo, fresh, strict=True):
                store.put(keys[i], *_pack(prediction))
                predictions[i] = prediction
        for sample, prediction in zip(window, predictions, strict=True):
            record = score_sample(sample, prediction, settings.threshold, settings.min_instance_px)
            evaluation.records.append(record)
            write_masks(out, sample.id, prediction)
            evaluation.gallery.offer(sample, prediction, record)
        evaluation.computed += len(todo)
        evaluation.reused += len(window) - len(todo)
        reporter.advance(len(window), len(todo), len(window) - len(todo))
    if not evaluation.records:
        raise InputError(f"{dataset.describe()}: no samples to evaluate")
    return evaluation
