"""GPU suite: the in-process engine on real-size random models, both stages, a batch sweep, vs naive generate.

Real sizes: Qwen2.5-VL-3B (36 x 2048 text layers, 16 query / 2 KV heads, 151,936-token vocabulary, 32-block
vision tower) in bfloat16 and SAM 2 hiera-large (blocks 2-6-36-4, widths 144-1152) under bfloat16 autocast, both
random and built on the device (no download: the figures are speed, not quality). Each (tile, query) runs the
whole two-stage loop of SocioReasoner.segment(): stage 1 with the tile's prompt prefix shared, SAM on every
object of the tile in batched decoder calls, stage-2 images rendered per query (boxes and coarse mask drawn, so
nothing is shared, as on real data), stage 2, SAM. Random weights answer nothing parsable, so every answer is
read as a fixed two-object answer with two points each (what SAM and the renderer then do is the real work).
Each stage generates exactly --new-tokens tokens (EOS ignored) with the reference sampling (temperature 1,
top_p 0.8, top_k 100, per-sample seeds). The naive baseline is the reference's loop: one generate() per sample
and stage, SAM set_image per sample and stage, one SAM call per object.

Needs only torch + transformers (+ this checkout on PYTHONPATH); finishes in under 8 minutes on one H100/H200
(--budget stops the sweep early otherwise). Prints a table; --out writes the figures as JSON.

    PYTHONPATH=. python benchmarks/gpu_suite.py                          # CUDA, real sizes
    PYTHONPATH=. python benchmarks/gpu_suite.py --tiny --device cpu      # the same code path, tiny sizes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from sociomap.reasoning import ReasonerConfig, SocioReasoner, TilePair
from sociomap.reasoning import reasoner as reasoner_module
from sociomap.reasoning import vlm as vlm_module
from sociomap.reasoning.parse import ObjectPrompt
from sociomap.reasoning.prompts import stage1_prompt, stage2_prompt
from sociomap.reasoning.render import render_stage2_images, resize_mask_nearest
from sociomap.reasoning.sam import HFSam2Backend
from sociomap.reasoning.tiny import SPECIAL_TOKENS, TINY_CHAT_TEMPLATE, _tokenizer
from sociomap.reasoning.vlm import MAX_PIXELS, MIN_PIXELS, TileVLProcessor, VLMEngine
from sociomap.reasoning.weights import Weights

# A plausible answer in 756-px model-input pixels: two objects, two points each.
ANSWER = '[{"bbox_2d": [120, 140, 360, 380], "points": [[200, 220], [300, 320]]}, ' \
         '{"bbox_2d": [420, 300, 640, 560], "points": [[500, 400], [560, 480]]}]'


def answer_prompts(size: int) -> list[ObjectPrompt]:
    """ANSWER's objects scaled to a model-input image of `size` pixels."""
    scale = size / 756
    return [ObjectPrompt(tuple(c * scale for c in box), tuple((x * scale, y * scale) for x, y in pts))
            for box, pts in (((120, 140, 360, 380), ((200, 220), (300, 320))),
                             ((420, 300, 640, 560), ((500, 400), (560, 480))))]


def answer_text(size: int) -> str:
    """ANSWER as stage-1 answer text at `size` pixels (what stage 2's prompt and rendering get)."""
    return json.dumps([{"bbox_2d": list(p.box), "points": [list(q) for q in p.points]} for p in answer_prompts(size)])


def vlm_config(tokenizer, tiny: bool):
    """Qwen2.5-VL-3B's architecture (or a tiny one), with the test tokenizer's special token ids."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    if tiny:
        text = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
        vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64,
                      fullatt_block_indexes=[1])
    else:  # Qwen/Qwen2.5-VL-3B-Instruct config.json
        text = dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                    num_attention_heads=16, num_key_value_heads=2, rope_theta=1000000.0,
                    rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]})
        vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                      fullatt_block_indexes=[7, 15, 23, 31])
    text.update(max_position_embeddings=32768, rms_norm_eps=1e-6, bos_token_id=ids["<|im_start|>"],
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision.update(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112, tokens_per_second=2)
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                            video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                            vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=not tiny)


def sam2_config(tiny: bool):
    """SAM 2 hiera-large (facebook/sam2-hiera-large-hf sizes), or a tiny one."""
    from transformers import Sam2Config

    if tiny:
        dims, blocks, heads, globals_, windows, size = [16, 32, 64, 128], [1, 1, 2, 1], [1, 1, 1, 1], [3], \
            [8, 4, 14, 7], 256
        hidden, mlp = 32, 64
    else:
        dims, blocks, heads, globals_, windows, size = [144, 288, 576, 1152], [2, 6, 36, 4], [2, 4, 8, 16], \
            [23, 33, 43], [8, 4, 16, 8], 1024
        hidden, mlp = 256, 2048
    f = size // 4
    return Sam2Config(
        vision_config=dict(backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=dims[0],
                                                image_size=[size, size], blocks_per_stage=blocks,
                                                embed_dim_per_stage=dims, num_attention_heads_per_stage=heads,
                                                global_attention_blocks=globals_, window_size_per_stage=windows),
                           backbone_channel_list=dims[::-1], fpn_hidden_size=hidden,
                           backbone_feature_sizes=[[f, f], [f // 2, f // 2], [f // 4, f // 4]]),
        prompt_encoder_config=dict(hidden_size=hidden, image_size=size),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=mlp, num_attention_heads=8 if not tiny else 2,
                                 iou_head_hidden_dim=256 if not tiny else 32))


def build(args: argparse.Namespace) -> SocioReasoner:
    """Random models built on the device; the engine and SAM backend sociomap uses."""
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil, Sam2Model

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = _tokenizer()
    processor = TileVLProcessor(image_processor=Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
                                tokenizer=tokenizer, chat_template=TINY_CHAT_TEMPLATE)
    torch.manual_seed(0)
    with torch.device(device):
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            model = Qwen2_5_VLForConditionalGeneration(vlm_config(tokenizer, args.tiny)).eval()
        finally:
            torch.set_default_dtype(default)
        sam_model = Sam2Model(sam2_config(args.tiny)).eval()
    config = ReasonerConfig(model="random-qwen2.5-vl-3b", sam="random-sam2-hiera-large", device=args.device,
                            temperature=1.0, top_p=0.8, top_k=100, max_new_tokens=args.new_tokens, seed=0)
    engine = VLMEngine(model, processor, config)
    engine.generation_config.min_new_tokens = args.new_tokens  # fixed length: EOS never ends a sample early
    sam = HFSam2Backend(sam_model, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    dummy = Weights(spec="random", path=Path("."), revision="random")
    return SocioReasoner(config, engine, sam, dummy, dummy)


def tiles_for(n: int, size: int, seed: int) -> list[TilePair]:
    rng = np.random.default_rng(seed)
    return [TilePair(*(rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2)), key=f"16/{seed}/{i}")
            for i in range(n)]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_engine(reasoner: SocioReasoner, batch: int, samples: int, queries: list[str], size: int, seed: int) -> float:
    """Seconds for `samples` (tile, query) pairs through segment() at this batch size; checks that every stage
    generated exactly --new-tokens tokens."""
    reasoner.config = dataclasses.replace(reasoner.config, batch_size=batch)
    tiles = tiles_for(math.ceil(samples / len(queries)), size, seed)
    edge = reasoner.engine.model_images(tiles[0].map).size[0]
    lengths = []
    real = vlm_module.generate_with_shared_prefixes

    def counted(*args, **kwargs):
        new = real(*args, **kwargs)
        lengths.append(new.shape[1])
        return new

    with mock.patch.object(reasoner_module, "parse_object_prompts", lambda text: answer_prompts(edge)), \
         mock.patch.object(reasoner_module, "extract_answer", lambda text: answer_text(edge)), \
         mock.patch.object(vlm_module, "generate_with_shared_prefixes", counted):
        synchronize(reasoner.config.device)
        start = time.perf_counter()
        reasoner.segment(tiles, queries)
        synchronize(reasoner.config.device)
    seconds = time.perf_counter() - start
    assert set(lengths) == {reasoner.config.max_new_tokens}, lengths
    return seconds


@torch.inference_mode()
def run_naive(reasoner: SocioReasoner, samples: int, queries: list[str], size: int, new_tokens: int) -> float:
    """Seconds for `samples` pairs through the reference's per-sample loop (HF sampling, batch 1)."""
    from transformers import GenerationConfig

    engine, sam = reasoner.engine, reasoner.sam
    sampling = GenerationConfig(do_sample=True, temperature=1.0, top_p=0.8, top_k=100, max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, eos_token_id=engine.generation_config.eos_token_id,
                                pad_token_id=engine.generation_config.pad_token_id)
    tiles = tiles_for(math.ceil(samples / len(queries)), size, seed=99)
    pairs = [(tile, query) for tile in tiles for query in queries][:samples]

    def generate(text, images):
        inputs = engine.processor(text=[engine.chat_text(text)], images=images, return_tensors="pt").to(engine.device)
        return engine.model.generate(**inputs, generation_config=sampling)

    def masks(image):
        embedding = sam.embed(np.asarray(image))
        mask = np.zeros((embedding.size,) * 2, bool)
        for prompt in answer_prompts(embedding.size):
            mask |= sam.decode(embedding, [prompt])[0][0]
        return mask

    synchronize(reasoner.config.device)
    start = time.perf_counter()
    for tile, query in pairs:
        images = [engine.model_images(tile.map), engine.model_images(tile.satellite)]
        generate(stage1_prompt(query), images)
        coarse = masks(images[1])
        answer = answer_text(images[0].size[0])
        rendered = render_stage2_images(images, answer, resize_mask_nearest(coarse, tile.size, tile.size))
        generate(stage2_prompt(query, answer), rendered)
        masks(images[1])
    synchronize(reasoner.config.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny random models: check the code path, no figures")
    parser.add_argument("--tile-size", type=int, default=768)
    parser.add_argument("--queries", type=int, default=4, help="queries per tile (they share the stage-1 prefix)")
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens generated per stage, exactly")
    parser.add_argument("--batches", default="1,4,8,16,32", help="batch sizes of the sweep")
    parser.add_argument("--rounds", type=int, default=2, help="batches per sweep point")
    parser.add_argument("--naive-samples", type=int, default=4)
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; later sweep points are skipped")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    started = time.perf_counter()
    reasoner = build(args)
    built = time.perf_counter() - started
    queries = [f"Query {i} about parks and schools" for i in range(args.queries)]
    params = sum(p.numel() for p in reasoner.engine.model.parameters())
    sam_params = sum(p.numel() for p in reasoner.sam.model.parameters())
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"device {device_name}; VLM {params / 1e9:.2f} B params, SAM {sam_params / 1e6:.0f} M params, "
          f"built in {built:.0f} s; tile {args.tile_size} px, {args.queries} queries/tile, "
          f"{args.new_tokens} new tokens/stage")
    run_engine(reasoner, 2, 2, queries[:2], args.tile_size, seed=1)  # warm-up: kernels, allocator
    t_naive = run_naive(reasoner, args.naive_samples, queries, args.tile_size, args.new_tokens)
    naive = args.naive_samples / t_naive
    rows = [{"path": "naive", "batch": 1, "samples": args.naive_samples, "seconds": t_naive, "samples_per_s": naive,
             "tokens_per_s": naive * 2 * args.new_tokens}]
    print(f"{'path':8} {'batch':>5} {'samples':>7} {'s':>7} {'samples/s':>9} {'tokens/s':>9} {'vs naive':>8}")
    print(f"{'naive':8} {1:5d} {args.naive_samples:7d} {t_naive:7.1f} {naive:9.3f} {naive * 2 * args.new_tokens:9.1f}"
          f" {1.0:8.2f}")
    for batch in (int(b) for b in args.batches.split(",")):
        if time.perf_counter() - started > args.budget:
            print(f"{'engine':8} {batch:5d} skipped: --budget {args.budget:.0f} s reached")
            continue
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        samples = batch * args.rounds
        seconds = run_engine(reasoner, batch, samples, queries, args.tile_size, seed=batch)
        rate = samples / seconds
        peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else float("nan")
        rows.append({"path": "engine", "batch": batch, "samples": samples, "seconds": seconds, "samples_per_s": rate,
                     "tokens_per_s": rate * 2 * args.new_tokens, "vs_naive": rate / naive, "peak_gib": peak})
        print(f"{'engine':8} {batch:5d} {samples:7d} {seconds:7.1f} {rate:9.3f} {rate * 2 * args.new_tokens:9.1f} "
              f"{rate / naive:8.2f}" + (f"   peak {peak:.1f} GiB" if peak == peak else ""))
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({"device": device_name, "args": {k: str(v) for k, v in vars(args).items()},
                                        "vlm_params": params, "sam_params": sam_params, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
