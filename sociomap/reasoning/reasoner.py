"""The two-stage SocioReasoner loop (localize -> render -> refine), batched over (tile, query) pairs.

Per call: each tile's images are resized to model-input size once; its SAM image embedding is computed once and
serves every query and both stages; generate() runs batch_size pairs at a time, tile-major, so the queries of a
tile share one vision-encoder pass in stage 1.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

import sociomap
from sociomap.reasoning.config import QueryResult, ReasonerConfig, TilePair
from sociomap.reasoning.parse import ObjectPrompt, extract_answer, parse_object_prompts
from sociomap.reasoning.prompts import stage1_prompt, stage2_prompt, templates_sha256
from sociomap.reasoning.render import render_stage2_images, resize_mask_nearest
from sociomap.reasoning.sam import SamBackend, SamEmbedding, segment_objects
from sociomap.reasoning.vlm import VLMEngine, resize_for_model
from sociomap.reasoning.weights import Weights, is_random_init

logger = logging.getLogger(__name__)


@dataclass
class _Tile:
    """Per-tile state for one segment() call: model-input images (map, satellite) and the SAM embedding."""

    size: int
    images: list[Image.Image]
    embedding: SamEmbedding


@dataclass
class _Pair:
    """Per-(tile, query) state between the stages."""

    tile: int
    query: str
    stage1: str = ""
    stage1_raw: str = ""
    coarse: np.ndarray | None = None
    stage2: str = ""
    final_prompts: list[ObjectPrompt] | None = None
    mask: np.ndarray | None = None


class SocioReasoner:
    """SocioReasoner inference: Qwen2.5-VL proposes boxes/points, SAM turns them into masks."""

    def __init__(self, config: ReasonerConfig, engine: VLMEngine, sam: SamBackend, vlm_weights: Weights,
                 sam_weights: Weights):
        self.config, self.engine, self.sam = config, engine, sam
        self.vlm_weights, self.sam_weights = vlm_weights, sam_weights

    def identity(self) -> dict[str, str]:
        """Everything that determines results (cache key + manifest); values are strings."""
        decoding = {k: str(v) for k, v in asdict(self.config).items()
                    if k in ("temperature", "top_p", "top_k", "max_new_tokens", "greedy", "seed")}
        random_init = is_random_init(self.vlm_weights.path) or is_random_init(self.sam_weights.path)
        return {
            "model": self.vlm_weights.spec, "model_revision": self.vlm_weights.revision,
            "sam": self.sam_weights.spec, "sam_revision": self.sam_weights.revision, "sam_backend": self.sam.name,
            "prompts_sha256": templates_sha256(), "dtype": str(self.engine.model.dtype).removeprefix("torch."),
            "code_version": sociomap.__version__, "random_init": str(random_init).lower(), **decoding,
        }

    def segment(self, tiles: Sequence[TilePair], queries: Sequence[str]) -> list[list[QueryResult]]:
        """result[i][j] for tile i and query j; bad model text gives empty masks, never an exception."""
        if self.config.seed is not None:
            torch.manual_seed(self.config.seed)
        prepared = [self._prepare(tile) for tile in tiles]
        pairs = [_Pair(tile=i, query=q) for i in range(len(tiles)) for q in queries]
        for batch in self._batches(pairs):
            self._stage1(batch, prepared)
        for batch in self._batches(pairs):
            self._stage2(batch, prepared)
        results = [self._result(pair, prepared[pair.tile]) for pair in pairs]
        return [results[i * len(queries):(i + 1) * len(queries)] for i in range(len(tiles))]

    def _prepare(self, tile: TilePair) -> _Tile:
        """Model-input images and the one SAM embedding of the (model-input size) satellite image."""
        processor = self.engine.processor
        images = [resize_for_model(tile.map, processor), resize_for_model(tile.satellite, processor)]
        return _Tile(size=tile.size, images=images, embedding=self.sam.embed(np.asarray(images[1])))

    def _batches(self, pairs: list[_Pair]) -> list[list[_Pair]]:
        """Consecutive (tile-major) chunks of batch_size pairs."""
        size = self.config.batch_size
        return [pairs[i:i + size] for i in range(0, len(pairs), size)]

    def _stage1(self, batch: list[_Pair], tiles: list[_Tile]) -> None:
        """Localization: generate boxes, then the coarse SAM mask at tile size."""
        outputs = self.engine.generate([stage1_prompt(p.query) for p in batch], [tiles[p.tile].images for p in batch])
        for pair, out in zip(batch, outputs):
            tile = tiles[pair.tile]
            pair.stage1, pair.stage1_raw = out.text, out.raw
            mask = segment_objects(self.sam, tile.embedding, parse_object_prompts(out.text))
            pair.coarse = resize_mask_nearest(mask, tile.size, tile.size)

    def _stage2(self, batch: list[_Pair], tiles: list[_Tile]) -> None:
        """Refinement: render stage-1 boxes + coarse mask on both images, generate boxes + points, final mask."""
        texts, images = [], []
        for pair in batch:
            answer = extract_answer(pair.stage1_raw)
            texts.append(stage2_prompt(pair.query, answer))
            images.append(render_stage2_images(tiles[pair.tile].images, answer, pair.coarse))
        for pair, out in zip(batch, self.engine.generate(texts, images)):
            tile = tiles[pair.tile]
            pair.stage2, pair.final_prompts = out.text, parse_object_prompts(out.text)
            mask = segment_objects(self.sam, tile.embedding, pair.final_prompts)
            pair.mask = resize_mask_nearest(mask, tile.size, tile.size)

    @staticmethod
    def _result(pair: _Pair, tile: _Tile) -> QueryResult:
        """Public record with boxes/points scaled from model-input to tile pixels."""
        scale = tile.size / tile.embedding.size
        return QueryResult(
            query=pair.query, mask=pair.mask, coarse_mask=pair.coarse, stage1_text=pair.stage1,
            stage2_text=pair.stage2, boxes=[[c * scale for c in p.box] for p in pair.final_prompts],
            points=[[x * scale, y * scale] for p in pair.final_prompts for x, y in p.points])
