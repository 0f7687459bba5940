"""Decoding settings, from sociomap's own options only, for both engines; per-sample seeds.

The reference samples with explicit vLLM SamplingParams (temperature 1, top_p 0.8, top_k 100, no repetition
penalty, 2,048 tokens), so a checkpoint's generation_config.json (Qwen2.5-VL-Instruct ships repetition_penalty
1.05 and its own temperature/top_p/top_k) never applies. Here:
- hf engine: `generation_config(...)` is the ONLY GenerationConfig generate() sees (it also replaces the model's,
  since transformers fills every unset field from `model.generation_config`); only the stop tokens are taken from
  the checkpoint, which are the model's, not a sampling choice.
- openai engine: `request_fields(...)` sends every sampling field explicitly, so server defaults never decide.

Seeds: each (tile, query, stage) gets its own seed, derived from (seed, tile key, query, stage), so a sample never
depends on which other tiles and queries share its batch. transformers' batched sampling draws every row from one
global generator; `RowSampler` instead draws row r from its own torch.Generator, after transformers' own
temperature / top-k / top-p processors, and generate() then picks that token by argmax. vLLM and SGLang give each
request with a `seed` its own generator too.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

SEED_BITS = 63  # vLLM takes seeds in the int64 range; torch.Generator.manual_seed takes any of these


def stage_seed(seed: int | None, key: str, query: str, stage: int) -> int | None:
    """The seed of one (tile, query, stage) sample: a hash of all four, or None when the run is unseeded."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}\0{key}\0{query}\0{stage}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SEED_BITS)


def generation_config(max_new_tokens: int, stop_token_ids: Sequence[int], pad_token_id: int | None,
                      bos_token_id: int | None = None) -> GenerationConfig:
    """The explicit GenerationConfig of the hf engine: argmax over what the logits processors leave (sampling is
    done by RowSampler), no repetition penalty, no length or n-gram constraints, the model's stop tokens."""
    return GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, min_new_tokens=0,
                            repetition_penalty=1.0, no_repeat_ngram_size=0, length_penalty=1.0,
                            eos_token_id=list(stop_token_ids), pad_token_id=pad_token_id, bos_token_id=bos_token_id,
                            use_cache=True)


def stop_token_ids(checkpoint_config: GenerationConfig | None, tokenizer_eos: int | None) -> list[int]:
    """The tokens that end a completion: the checkpoint's eos_token_id (one or a list) and the tokenizer's EOS,
    as vLLM stops on both (Qwen2.5-VL-Instruct: <|im_end|> and <|endoftext|>)."""
    ids = getattr(checkpoint_config, "eos_token_id", None) if checkpoint_config is not None else None
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer_eos is not None and tokenizer_eos not in ids:
        ids.append(tokenizer_eos)
    return ids


class RowSampler(LogitsProcessor):
    """Draws each row's next token from softmax(scores[r]) with its own generator (seeded seeds[r]) by inverse
    transform sampling, and leaves only that token finite, so generate()'s argmax selects it.

    Row r's t-th token depends only on its seed and its own probabilities at step t, never on the other rows.
    Called once per decoding step, for every row (also rows that have finished: their draws are discarded).
    """

    def __init__(self, seeds: Sequence[int]):
        self.seeds = list(seeds)
        self.generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """scores (B, V) after temperature / top-k / top-p -> (B, V): 0 at the drawn token, -inf elsewhere."""
        if self.generators is None:
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        probs = torch.softmax(scores.float(), dim=-1).double()
        cdf = probs.cumsum(-1)
        u = torch.stack([torch.rand((), generator=g, device=scores.device, dtype=torch.float64)
                         for g in self.generators])
        pick = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0].clamp(max=scores.shape[-1] - 1)
        never = probs.gather(1, pick[:, None])[:, 0] == 0  # rounding at the top of the cdf: take the likeliest
        pick = torch.where(never, probs.argmax(-1), pick)
        out = torch.full_like(scores, -math.inf)
        return out.scatter_(1, pick[:, None], 0.0)


def logits_processors(greedy: bool, temperature: float, top_p: float, top_k: int,
                      seeds: Sequence[int | None]) -> LogitsProcessorList:
    """Greedy: none. Sampling: transformers' warpers in generate()'s own order and conditions (temperature,
    top-k, top-p; min_tokens_to_keep 1 as for num_beams 1), then RowSampler. Rows without a seed get a random one."""
    if greedy:
        return LogitsProcessorList()
    processors = LogitsProcessorList()
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_k != 0:
        processors.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    processors.append(RowSampler([s if s is not None else secrets.randbits(SEED_BITS) for s in seeds]))
    return processors


def request_fields(greedy: bool, temperature: float, top_p: float, top_k: int, max_new_tokens: int,
                   seed: int | None) -> tuple[dict, dict]:
    """(OpenAI fields, extra_body fields) of one chat-completions request: every sampling setting explicit.

    Greedy is temperature 0 (vLLM and SGLang then take the argmax); top_k 0 ("off" in sociomap, as in
    transformers) is sent as -1, which every vLLM and SGLang version reads as off.
    """
    fields = {"temperature": 0.0 if greedy else temperature, "top_p": 1.0 if greedy else top_p,
              "max_tokens": max_new_tokens, "n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0}
    if seed is not None:
        fields["seed"] = seed
    extra = {"top_k": -1 if greedy or top_k == 0 else top_k, "min_p": 0.0, "repetition_penalty": 1.0, "min_tokens": 0,
             "skip_special_tokens": False, "spaces_between_special_tokens": False}
    return fields, extra
