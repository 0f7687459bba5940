"""Shared-prefix generation for Qwen2.5-VL: prefill each distinct prompt prefix once, then decode all rows.

Rows of one batch that show the same images with the same tokens up to them (the K stage-1 queries of a tile)
share the longest common token prefix: system turn, both images, and the prompt text up to the query. That prefix
is prefilled once (one vision pass, one LLM pass per tile), its KV cache is copied to every row of the group
(`Cache.reorder_cache`), and `model.generate` continues from the cache with each row's own suffix. Row layout:

    [pad | shared prefix | pad | own suffix | generated tokens]

Pads are masked, and every real token gets the 3-D mRoPE position that `get_rope_index` gives its unpadded row, so
each token sees the same keys at the same positions as in one-sample-at-a-time `generate`. Decoding (sampling,
stopping, logits processors) stays transformers' own. Hand-written: transformers only continues generation from a
cache the caller built, and vLLM's prefix caching is GPU-only.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from transformers import BatchFeature, DynamicCache

IMAGE_TOKEN_TYPE = 1  # mm_token_type_ids value of image placeholder tokens


@dataclass(frozen=True)
class PrefixGroups:
    """Rows grouped by shared prefix: row_group[r] is row r's group, leader[g] one row of group g, length[g] the
    number of leading tokens all rows of group g share (at least all image tokens, at most each row's length - 1)."""

    row_group: list[int]
    leader: list[int]
    length: list[int]


def group_prefixes(rows: Sequence[torch.Tensor], keys: Sequence[Hashable], image_end: Sequence[int]) -> PrefixGroups:
    """Group rows (1-D token ids) with equal key and equal tokens before image_end[r]; each group shares its rows'
    longest common prefix, cut so that every row keeps at least one token of its own (its first logits)."""
    index: dict[tuple, int] = {}
    members: list[list[int]] = []
    for r, (ids, key) in enumerate(zip(rows, keys)):
        group = index.setdefault((key, tuple(ids[:image_end[r]].tolist())), len(members))
        if group == len(members):
            members.append([])
        members[group].append(r)
    row_group = [0] * len(rows)
    for group, rs in enumerate(members):
        for r in rs:
            row_group[r] = group
    return PrefixGroups(row_group=row_group, leader=[rs[0] for rs in members],
                        length=[_common_prefix_length([rows[r] for r in rs]) for rs in members])


def _common_prefix_length(rows: list[torch.Tensor]) -> int:
    """Tokens shared by all rows from the start, at most the shortest length - 1."""
    shortest = min(len(ids) for ids in rows) - 1
    same = torch.stack([ids[:shortest] for ids in rows]).eq(rows[0][:shortest]).all(0)
    return int(same.long().cumprod(0).sum())


def left_pad(seqs: Sequence[torch.Tensor], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., n_i) tensors -> (..., B, N) padded on the left with value, and the (B, N) long mask of real entries."""
    width = max(s.shape[-1] for s in seqs)
    padded = torch.stack([torch.nn.functional.pad(s, (width - s.shape[-1], 0), value=value) for s in seqs], dim=-2)
    mask = torch.stack([torch.arange(width) >= width - s.shape[-1] for s in seqs]).long()
    return padded, mask.to(padded.device)


def _leader_images(inputs: BatchFeature, images_per_row: Sequence[int], leaders: list[int]) -> dict:
    """pixel_values / image_grid_thw of the leader rows only (the processor output holds every row's images)."""
    grid = inputs["image_grid_thw"]
    chunks = torch.split(inputs["pixel_values"], grid.prod(-1).tolist())
    first = [sum(images_per_row[:r]) for r in range(len(images_per_row))]
    picked = [i for r in leaders for i in range(first[r], first[r] + images_per_row[r])]
    return {"pixel_values": torch.cat([chunks[i] for i in picked]), "image_grid_thw": grid[picked]}


@torch.inference_mode()
def generate_with_shared_prefixes(model: torch.nn.Module, inputs: BatchFeature, image_keys: Sequence[tuple],
                                  pad_token_id: int, generate_kwargs: dict) -> torch.Tensor:
    """New tokens (B, T) for a left-padded processor batch; image_keys[r] names row r's images in prompt order, and
    rows with equal keys prefill their common prefix once. Same tokens as per-row generate under greedy decoding."""
    mask = inputs["attention_mask"].bool()
    positions, _ = model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                              image_grid_thw=inputs["image_grid_thw"],
                                              attention_mask=inputs["attention_mask"])
    rows = [ids[m] for ids, m in zip(inputs["input_ids"], mask)]
    row_positions = [positions[:, r, m] for r, m in enumerate(mask)]
    image_end = [int((types[m] == IMAGE_TOKEN_TYPE).nonzero().max()) + 1
                 for types, m in zip(inputs["mm_token_type_ids"], mask)]
    groups = group_prefixes(rows, image_keys, image_end)

    prefix_ids, prefix_mask = left_pad([rows[r][:n] for r, n in zip(groups.leader, groups.length)], pad_token_id)
    prefix_positions, _ = left_pad([row_positions[r][:, :n] for r, n in zip(groups.leader, groups.length)], 0)
    cache = DynamicCache(config=model.config)
    model.model(input_ids=prefix_ids, attention_mask=prefix_mask, position_ids=prefix_positions, use_cache=True,
                **_leader_images(inputs, [len(k) for k in image_keys], groups.leader), cache=cache)
    select = torch.tensor(groups.row_group, device=prefix_ids.device)
    cache.reorder_cache(select)

    starts = [groups.length[g] for g in groups.row_group]
    suffix_ids, suffix_mask = left_pad([ids[n:] for ids, n in zip(rows, starts)], pad_token_id)
    suffix_positions, _ = left_pad([pos[:, n:] for pos, n in zip(row_positions, starts)], 0)
    input_ids = torch.cat([prefix_ids[select], suffix_ids], dim=1)
    attention_mask = torch.cat([prefix_mask[select], suffix_mask], dim=1)
    text_positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # what generate derives from the mask
    mrope_positions = torch.cat([prefix_positions[:, select], suffix_positions], dim=-1)
    position_ids = torch.cat([text_positions[None], mrope_positions])  # (4, B, N), as generate builds them
    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         cache=cache, **generate_kwargs)
    return out[:, input_ids.shape[1]:]
