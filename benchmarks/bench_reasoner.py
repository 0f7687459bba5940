"""Reasoner throughput on CPU, each figure a ratio of two paths timed in the same run on the same random model.

engine (default): SocioReasoner.segment() against a per-sample port of the reference loop (one generate() per
sample and stage, SAM set_image per sample and stage, one SAM call per object). Realistic by default: every query
gets its own stage-2 images, as on real data where stage 1 draws boxes (random weights find nothing, which would
let the queries of a tile share their stage-2 prefix; `--stage2 shared` measures that case). Greedy; the two paths
must give identical text. The box is shared and its load changes by the minute: each path runs --repeats times,
alternating with the other, and the best time of each is compared.

served: the openai engine against the test server (tests/reasoning/openai_server.py, a real HTTP server process
that batches the requests it has), --concurrency N against one request at a time; identical text required.

    python benchmarks/bench_reasoner.py                            # engine, short default
    python benchmarks/bench_reasoner.py --tile-size 768 --tiles 2 --queries 8    # real prompt shape
    python benchmarks/bench_reasoner.py served --concurrency 16
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from sociomap.reasoning import ReasonerConfig, TilePair, load_reasoner
from sociomap.reasoning import reasoner as reasoner_module
from sociomap.reasoning.parse import extract_answer, parse_object_prompts
from sociomap.reasoning.prompts import stage1_prompt, stage2_prompt
from sociomap.reasoning.render import render_stage2_images, resize_mask_nearest
from sociomap.reasoning.tiny import _tiny_sam2, build_tiny_vlm


def naive_generate(engine, text, images) -> tuple[str, str]:
    """One sample through processor + model.generate (no batching, no sharing)."""
    inputs = engine.processor(text=[engine.chat_text(text)], images=images, return_tensors="pt")
    with torch.inference_mode():
        out = engine.model.generate(**inputs, generation_config=engine.generation_config)
    new = out[:, inputs["input_ids"].shape[1]:]
    return (engine.processor.batch_decode(new, skip_special_tokens=True)[0],
            engine.processor.batch_decode(new, skip_special_tokens=False)[0])


def naive_mask(sam, image, prompts) -> np.ndarray:
    """The reference's SAM use: set_image for this sample and stage, then one predict per object."""
    embedding = sam.embed(np.asarray(image))
    mask = np.zeros((embedding.size, embedding.size), bool)
    for prompt in prompts:
        mask |= sam.decode(embedding, [prompt])[0][0]
    return mask


def naive_segment(reasoner, tiles, queries) -> list[tuple[str, str]]:
    """The reference's per-sample loop: generate, SAM, render, generate, SAM."""
    engine, sam, texts = reasoner.engine, reasoner.sam, []
    for tile in tiles:
        for query in queries:
            images = [engine.model_images(tile.map), engine.model_images(tile.satellite)]
            text1, raw1 = naive_generate(engine, stage1_prompt(query), images)
            coarse = naive_mask(sam, images[1], parse_object_prompts(text1))
            answer = extract_answer(raw1)
            rendered = render_stage2_images(images, answer, resize_mask_nearest(coarse, tile.size, tile.size))
            text2, _ = naive_generate(engine, stage2_prompt(query, answer), rendered)
            naive_mask(sam, images[1], parse_object_prompts(text2))
            texts.append((text1, text2))
    return texts


def own_stage2_images(images, answer, coarse):
    """Rendering as on real data: every query's stage-2 images are its own (boxes drawn), never the tile's."""
    return [image.copy() for image in render_stage2_images(images, answer, coarse)]


def stage1_prompt_split(engine, tile, queries) -> tuple[int, int]:
    """(tokens shared by the stage-1 prompts of one tile, longest own suffix) for the printed summary."""
    images = [engine.model_images(tile.map), engine.model_images(tile.satellite)]
    rows = [engine.processor(text=[engine.chat_text(stage1_prompt(q))], images=images)["input_ids"][0]
            for q in queries]
    shared = next((i for i, column in enumerate(zip(*rows)) if len(set(column)) > 1), min(map(len, rows)) - 1)
    return shared, max(len(r) for r in rows) - shared


def build(args: argparse.Namespace) -> tuple[Path, ReasonerConfig]:
    """The random model folder and a greedy config for it."""
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="bench_reasoner_"))
    build_tiny_vlm(folder / "vlm", hidden=args.hidden, layers=args.layers, kv_heads=args.kv_heads)
    _tiny_sam2(folder / "sam2")
    return folder, ReasonerConfig(model=str(folder / "vlm"), sam=str(folder / "sam2"), greedy=True, device="cpu",
                                  max_new_tokens=args.new_tokens, batch_size=args.batch_size, offline=True)


def make_tiles(args: argparse.Namespace) -> tuple[list[TilePair], list[str]]:
    rng = np.random.default_rng(0)
    tiles = [TilePair(*(rng.integers(0, 256, (args.tile_size,) * 2 + (3,), dtype=np.uint8) for _ in range(2)),
                      key=f"16/0/{i}") for i in range(args.tiles)]
    return tiles, [f"query {i} about parks" for i in range(args.queries)]


def best_of(repeats: int, *paths) -> list[tuple[float, object]]:
    """(best seconds, last result) of each path, the paths run in turn `repeats` times (order alternating)."""
    best, results = [float("inf")] * len(paths), [None] * len(paths)
    for repeat in range(repeats):
        order = range(len(paths)) if repeat % 2 == 0 else reversed(range(len(paths)))
        for index in order:
            start = time.perf_counter()
            results[index] = paths[index]()
            best[index] = min(best[index], time.perf_counter() - start)
    return list(zip(best, results))


def bench_engine(args: argparse.Namespace) -> None:
    """Engine vs naive, same run."""
    _, config = build(args)
    reasoner = load_reasoner(config)
    params = sum(p.numel() for p in reasoner.engine.model.parameters())
    tiles, queries = make_tiles(args)
    reasoner.segment(tiles[:1], queries[:1])  # warm-up
    render = own_stage2_images if args.stage2 == "own" else render_stage2_images

    def engine_texts():
        with mock.patch.object(reasoner_module, "render_stage2_images", render):
            return [(r.stage1_text, r.stage2_text) for row in reasoner.segment(tiles, queries) for r in row]

    (t_naive, naive), (t_engine, engine) = best_of(args.repeats, lambda: naive_segment(reasoner, tiles, queries),
                                                   engine_texts)
    n = args.tiles * args.queries
    same = sum(a == b for a, b in zip(naive, engine))
    text = reasoner.engine.model.config.text_config
    print(f"model {params / 1e6:.1f} M params ({text.num_attention_heads} query / {text.num_key_value_heads} kv "
          f"heads), {args.tiles} tiles x {args.queries} queries = {n} samples, tile {args.tile_size} px, "
          f"{args.new_tokens} new tokens/stage, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"stage-2 images: {args.stage2}")
    shared, own = stage1_prompt_split(reasoner.engine, tiles[0], queries)
    print(f"stage-1 prompt: {shared} tokens shared per tile + up to {own} own tokens per query")
    print(f"naive  {n / t_naive:7.3f} samples/s ({t_naive:.1f} s, best of {args.repeats})")
    print(f"engine {n / t_engine:7.3f} samples/s ({t_engine:.1f} s, best of {args.repeats})")
    print(f"ratio  {t_naive / t_engine:.2f}x   identical greedy outputs: {same}/{n}")


def bench_served(args: argparse.Namespace) -> None:
    """The openai engine against the test server: --concurrency N vs 1, same server, same run."""
    from tests.reasoning.conftest import openai_server

    folder, config = build(args)
    tiles, queries = make_tiles(args)
    n = args.tiles * args.queries
    with openai_server(folder / "vlm", "--max-batch", str(args.max_batch), "--threads", str(args.threads)) as (url, _):
        served = dataclasses.replace(config, engine="openai", endpoint=url, model="tiny", request_retries=0)
        reasoners = {c: load_reasoner(dataclasses.replace(served, concurrency=c)) for c in (1, args.concurrency)}
        reasoners[1].segment(tiles[:1], queries[:1])  # warm-up

        def texts(concurrency):
            rows = reasoners[concurrency].segment(tiles, queries)
            return [(r.stage1_text, r.stage2_text) for row in rows for r in row]

        (t_one, one), (t_many, many) = best_of(args.repeats, lambda: texts(1), lambda: texts(args.concurrency))
        seconds = {1: t_one, args.concurrency: t_many}
        tokens = reasoners[args.concurrency].completion_tokens / args.repeats  # per run (both runs: same text)
        for reasoner in reasoners.values():
            reasoner.close()
    same = sum(a == b for a, b in zip(one, many))
    print(f"openai engine vs the test server (max batch {args.max_batch}), {n} samples, tile {args.tile_size} px, "
          f"{args.new_tokens} new tokens/stage, {args.threads} torch thread(s) per process")
    for concurrency in (1, args.concurrency):
        print(f"concurrency {concurrency:3d}: {n / seconds[concurrency]:7.3f} samples/s "
              f"({seconds[concurrency]:.1f} s best of {args.repeats}, {tokens / seconds[concurrency]:.1f} generated "
              "tokens/s)")
    print(f"ratio  {seconds[1] / seconds[args.concurrency]:.2f}x   identical greedy outputs: {same}/{n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=["engine", "served"], default="engine")
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
    parser.add_argument("--stage2", choices=["own", "shared"], default="own",
                        help="own: each query renders its own stage-2 images (real data); shared: as random weights "
                             "allow (nothing drawn, the tile's images reused)")
    parser.add_argument("--concurrency", type=int, default=16, help="served: requests in flight")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path; the best time counts")
    parser.add_argument("--max-batch", type=int, default=8, help="served: the test server's batch size")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 by default because OpenMP spin-waits make small batched matmuls "
                             "100x slower on a loaded shared 2-core box")
    args = parser.parse_args()
    (bench_served if args.mode == "served" else bench_engine)(args)


if __name__ == "__main__":
    main()
