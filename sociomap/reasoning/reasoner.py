"""The two-stage SocioReasoner loop (localize -> render -> refine), batched over (tile, query) pairs.

Per call: each tile's images are resized to model-input size once; its SAM image embedding is computed once and
serves every query and both stages; generate() runs batch_size pairs at a time, tile-major, so the queries of a
tile share one vision-encoder pass in stage 1; SAM decodes all objects of all queries of a tile per stage in as
few calls as their point counts allow.

This is the in-process (hf) engine. served.py runs the same steps per (tile, query) against a model server.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sociomap.reasoning.config import QueryResult, ReasonerConfig, TilePair
from sociomap.reasoning.parse import ObjectPrompt, extract_answer, parse_object_prompts
from sociomap.reasoning.prompts import stage1_prompt, stage2_prompt
from sociomap.reasoning.render import render_stage2_images, resize_mask_nearest
from sociomap.reasoning.sam import SamBackend, SamEmbedding, Segmented, segment_queries
from sociomap.reasoning.sampling import stage_seed
from sociomap.reasoning.vlm import VLMEngine
from sociomap.reasoning.weights import Weights

logger = logging.getLogger(__name__)


@dataclass
class PreparedTile:
    """Per-tile state for one segment() call: model-input images (map, satellite) and the SAM embedding."""

    size: int
    key: str
    images: list[Image.Image]
    embedding: SamEmbedding


@dataclass
class PairState:
    """Per-(tile, query) state between the stages."""

    tile: int
    query: str
    stage1: str = ""
    stage1_raw: str = ""
    coarse_prompts: list[ObjectPrompt] | None = None
    coarse: Segmented | None = None
    stage2: str = ""
    final_prompts: list[ObjectPrompt] | None = None
    final: Segmented | None = None


def stage2_inputs(pair: PairState, tile: PreparedTile) -> tuple[str, list[Image.Image]]:
    """The stage-2 user text and images: stage 1's raw answer in the prompt, its boxes and coarse mask drawn."""
    answer = extract_answer(pair.stage1_raw)
    coarse = resize_mask_nearest(pair.coarse.mask, tile.size, tile.size)
    return stage2_prompt(pair.query, answer), render_stage2_images(tile.images, answer, coarse)


def query_result(pair: PairState, tile: PreparedTile) -> QueryResult:
    """Public record: masks at tile size, boxes/points/scores of the objects SAM segmented, in tile pixels."""
    scale = tile.size / tile.embedding.size
    kept = [pair.final_prompts[i] for i in pair.final.kept]
    return QueryResult(
        query=pair.query, mask=resize_mask_nearest(pair.final.mask, tile.size, tile.size),
        coarse_mask=resize_mask_nearest(pair.coarse.mask, tile.size, tile.size), stage1_text=pair.stage1,
        stage2_text=pair.stage2, boxes=[[c * scale for c in p.box] for p in kept],
        points=[[x * scale, y * scale] for p in kept for x, y in p.points], scores=list(pair.final.scores),
        coarse_scores=list(pair.coarse.scores))


def segment_tile_pairs(sam: SamBackend, tiles: Sequence[PreparedTile], pairs: Sequence[PairState],
                       stage: int) -> None:
    """SAM for one stage of many pairs: per tile, all its pairs' objects in one segment_queries call."""
    by_tile: dict[int, list[PairState]] = {}
    for pair in pairs:
        by_tile.setdefault(pair.tile, []).append(pair)
    for index, members in by_tile.items():
        prompts = [p.coarse_prompts if stage == 1 else p.final_prompts for p in members]
        for pair, segmented in zip(members, segment_queries(sam, tiles[index].embedding, prompts)):
            if stage == 1:
                pair.coarse = segmented
            else:
                pair.final = segmented


class SocioReasoner:
    """SocioReasoner inference: Qwen2.5-VL proposes boxes/points, SAM turns them into masks."""

    def __init__(self, config: ReasonerConfig, engine: VLMEngine, sam: SamBackend, vlm_weights: Weights,
                 sam_weights: Weights):
        self.config, self.engine, self.sam = config, engine, sam
        self.vlm_weights, self.sam_weights = vlm_weights, sam_weights

    def identity(self) -> dict[str, str]:
        """Everything that determines results (cache key + manifest); values are strings."""
        from sociomap.reasoning.identity import loaded_identity

        return loaded_identity(self.config, self.vlm_weights, self.sam_weights, self.sam.name,
                               str(self.engine.model.dtype).removeprefix("torch."))

    def segment(self, tiles: Sequence[TilePair], queries: Sequence[str]) -> list[list[QueryResult]]:
        """result[i][j] for tile i and query j; bad model text gives empty masks, never an exception."""
        prepared = [self._prepare(tile) for tile in tiles]
        pairs = [PairState(tile=i, query=q) for i in range(len(tiles)) for q in queries]
        for batch in self._batches(pairs):
            self._stage1(batch, prepared)
        segment_tile_pairs(self.sam, prepared, pairs, stage=1)
        for batch in self._batches(pairs):
            self._stage2(batch, prepared)
        segment_tile_pairs(self.sam, prepared, pairs, stage=2)
        results = [query_result(pair, prepared[pair.tile]) for pair in pairs]
        return [results[i * len(queries):(i + 1) * len(queries)] for i in range(len(tiles))]

    def _prepare(self, tile: TilePair) -> PreparedTile:
        """Model-input images and the one SAM embedding of the (model-input size) satellite image."""
        images = [self.engine.model_images(tile.map), self.engine.model_images(tile.satellite)]
        return PreparedTile(tile.size, tile.key, images, self.sam.embed(np.asarray(images[1])))

    def _batches(self, pairs: list[PairState]) -> list[list[PairState]]:
        """Consecutive (tile-major) chunks of batch_size pairs."""
        size = self.config.batch_size
        return [pairs[i:i + size] for i in range(0, len(pairs), size)]

    def _seeds(self, batch: list[PairState], tiles: list[PreparedTile], stage: int) -> list[int | None]:
        """Each row's own seed, from (seed, tile key, query, stage): independent of the batch."""
        return [stage_seed(self.config.seed, tiles[p.tile].key, p.query, stage) for p in batch]

    def _stage1(self, batch: list[PairState], tiles: list[PreparedTile]) -> None:
        """Localization: generate boxes (SAM follows for all pairs of each tile)."""
        outputs = self.engine.generate([stage1_prompt(p.query) for p in batch], [tiles[p.tile].images for p in batch],
                                       self._seeds(batch, tiles, 1))
        for pair, out in zip(batch, outputs):
            pair.stage1, pair.stage1_raw = out.text, out.raw
            pair.coarse_prompts = parse_object_prompts(out.text)

    def _stage2(self, batch: list[PairState], tiles: list[PreparedTile]) -> None:
        """Refinement: render stage-1 boxes + coarse mask on both images, generate boxes + points."""
        texts, images = zip(*(stage2_inputs(pair, tiles[pair.tile]) for pair in batch))
        for pair, out in zip(batch, self.engine.generate(texts, images, self._seeds(batch, tiles, 2))):
            pair.stage2, pair.final_prompts = out.text, parse_object_prompts(out.text)
