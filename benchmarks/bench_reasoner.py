"""Engine vs naive throughput: SocioReasoner.segment() against a per-sample port of the reference loop.

Naive = what the reference does per (tile, query): one generate() per sample and stage, SAM set_image per sample
and stage. Engine = batched left-padded generation, the prompt prefix (both images) prefilled once per tile for
the queries that share it, one SAM embedding per tile. Both run greedy on the same random mid-size model on CPU,
and must give identical text.

    python benchmarks/bench_reasoner.py                     # short default (about 20 s on 2 cores)
    python benchmarks/bench_reasoner.py --hidden 768 --layers 8 --new-tokens 128
    python benchmarks/bench_reasoner.py --tile-size 768 --tiles 2    # real prompt shape: 2 x 729 image tokens
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sociomap.reasoning import ReasonerConfig, TilePair, load_reasoner
from sociomap.reasoning.parse import extract_answer, parse_object_prompts, render_boxes
from sociomap.reasoning.prompts import stage1_prompt, stage2_prompt
from sociomap.reasoning.render import render_stage2_images, resize_mask_nearest
from sociomap.reasoning.sam import segment_objects
from sociomap.reasoning.tiny import _tiny_sam2, build_tiny_vlm
from sociomap.reasoning.vlm import resize_for_model


def naive_generate(engine, text, images) -> tuple[str, str]:
    """One sample through processor + model.generate (no batching, no sharing)."""
    inputs = engine.processor(text=[engine.chat_text(text)], images=images, return_tensors="pt")
    with torch.inference_mode():
        out = engine.model.generate(**inputs, **engine.generate_kwargs)
    new = out[:, inputs["input_ids"].shape[1]:]
    return (engine.processor.batch_decode(new, skip_special_tokens=True)[0],
            engine.processor.batch_decode(new, skip_special_tokens=False)[0])


def naive_segment(reasoner, tiles, queries) -> tuple[list[tuple[str, str]], int]:
    """The reference's per-sample loop: generate, SAM (set_image each time), render, generate, SAM.

    Also returns how many samples had nothing to draw for stage 2 (their stage-2 prefix is shared by the engine).
    """
    engine, sam, texts, nothing_drawn = reasoner.engine, reasoner.sam, [], 0
    for tile in tiles:
        for query in queries:
            images = [resize_for_model(tile.map, engine.processor), resize_for_model(tile.satellite, engine.processor)]
            text1, raw1 = naive_generate(engine, stage1_prompt(query), images)
            coarse = segment_objects(sam, sam.embed(np.asarray(images[1])), parse_object_prompts(text1))
            answer = extract_answer(raw1)
            nothing_drawn += not render_boxes(answer) and not coarse.any()
            rendered = render_stage2_images(images, answer, resize_mask_nearest(coarse, tile.size, tile.size))
            text2, _ = naive_generate(engine, stage2_prompt(query, answer), rendered)
            segment_objects(sam, sam.embed(np.asarray(images[1])), parse_object_prompts(text2))
            texts.append((text1, text2))
    return texts, nothing_drawn


def stage1_prompt_split(engine, tile, queries) -> tuple[int, int]:
    """(tokens shared by the stage-1 prompts of one tile, longest own suffix) for the printed summary."""
    images = [resize_for_model(tile.map, engine.processor), resize_for_model(tile.satellite, engine.processor)]
    rows = [engine.processor(text=[engine.chat_text(stage1_prompt(q))], images=images)["input_ids"][0]
            for q in queries]
    shared = next((i for i, column in enumerate(zip(*rows)) if len(set(column)) > 1), min(map(len, rows)) - 1)
    return shared, max(len(r) for r in rows) - shared


def main() -> None:
    """Build the random model, time both paths, check equal outputs, print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--tile-size", type=int, default=224)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--kv-heads", type=int, default=None,
                        help="key/value heads of the random model (default half the query heads; the real 3B model "
                             "has 2 for 16 query heads, which makes its KV cache small next to its weights)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 by default because OpenMP spin-waits make small batched matmuls "
                             "100x slower on a loaded shared 2-core box")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="bench_reasoner_"))
    build_tiny_vlm(folder / "vlm", hidden=args.hidden, layers=args.layers, kv_heads=args.kv_heads)
    _tiny_sam2(folder / "sam2")
    config = ReasonerConfig(model=str(folder / "vlm"), sam=str(folder / "sam2"), greedy=True, device="cpu",
                            max_new_tokens=args.new_tokens, batch_size=args.batch_size, offline=True)
    reasoner = load_reasoner(config)
    params = sum(p.numel() for p in reasoner.engine.model.parameters())
    rng = np.random.default_rng(0)
    tiles = [TilePair(*(rng.integers(0, 256, (args.tile_size,) * 2 + (3,), dtype=np.uint8) for _ in range(2)))
             for _ in range(args.tiles)]
    queries = [f"query {i} about parks" for i in range(args.queries)]
    reasoner.segment(tiles[:1], queries[:1])  # warm-up

    start = time.perf_counter()
    naive, nothing_drawn = naive_segment(reasoner, tiles, queries)
    t_naive = time.perf_counter() - start
    start = time.perf_counter()
    engine = [(r.stage1_text, r.stage2_text) for row in reasoner.segment(tiles, queries) for r in row]
    t_engine = time.perf_counter() - start

    n = args.tiles * args.queries
    same = sum(a == b for a, b in zip(naive, engine))
    text = reasoner.engine.model.config.text_config
    print(f"model {params / 1e6:.1f} M params ({text.num_attention_heads} query / {text.num_key_value_heads} kv "
          f"heads), {args.tiles} tiles x {args.queries} queries = {n} samples, "
          f"tile {args.tile_size} px, {args.new_tokens} new tokens/stage, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    shared, own = stage1_prompt_split(reasoner.engine, tiles[0], queries)
    print(f"stage-1 prompt: {shared} tokens shared per tile + up to {own} own tokens per query; "
          f"stage 2: {nothing_drawn}/{n} samples had nothing to draw (they share too; random weights find nothing)")
    print(f"naive  {n / t_naive:7.3f} samples/s ({t_naive:.1f} s)")
    print(f"engine {n / t_engine:7.3f} samples/s ({t_engine:.1f} s)")
    print(f"ratio  {t_naive / t_engine:.2f}x   identical greedy outputs: {same}/{n}")


if __name__ == "__main__":
    main()
