"""build_tiny_checkpoint: random, tiny Qwen2.5-VL + SAM folders in the real formats (tests and the README demo).

The weights are random, so outputs are meaningless; the configs carry a marker that makes load_reasoner log a
loud warning and identity() report random_init=true.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sociomap.reasoning.prompts import STAGE1_TEMPLATE, STAGE2_TEMPLATE
from sociomap.reasoning.weights import RANDOM_INIT_KEY

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
# Qwen2.5-VL's template reduced to what the prompts use (images and text of user turns, generation prompt).
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TINY_SAM_DIRS = {"sam2": "sam2", "sam": "sam", "sa1": "sam1.safetensors"}


def _tokenizer(vocab_size: int = 600):
    """Byte-level BPE trained on the prompts (never <unk>), left padding, the tiny chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([STAGE1_TEMPLATE, STAGE2_TEMPLATE, '<think>park</think><answer>[{"bbox_2d": [1, 2, 3, 4]'
                             ', "points": [[5, 6]]}]</answer>'], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=TINY_CHAT_TEMPLATE, padding_side="left")


def build_tiny_vlm(directory: Path, hidden: int = 64, layers: int = 2, vision_depth: int = 2, seed: int = 0,
                   kv_heads: int | None = None, answer: str | None = None) -> Path:
    """Random Qwen2.5-VL (text `hidden` wide, `layers` deep, `kv_heads` key/value heads, default half the query
    heads) + processor with Qwen's real pixel limits (768 -> 756).

    With `answer`, the model is rewired to reply exactly `answer` to any prompt (greedy): demos and end-to-end
    tests get non-empty layers from a random SAM (see `_always_answer`).
    """
    from tokenizers import AddedToken
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers import Qwen2VLImageProcessorPil

    from sociomap.reasoning.vlm import TileVLProcessor

    tokenizer = _tokenizer()
    if answer is not None:
        tokenizer.add_tokens([AddedToken(answer, special=False, normalized=False)])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    heads = max(4, hidden // 32)
    half = hidden // heads // 2  # mrope sections must sum to head_dim / 2
    text = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv_heads or max(1, heads // 2),
                max_position_embeddings=8192,
                rope_scaling={"type": "mrope", "mrope_section": [half - 2 * (half // 3), half // 3, half // 3]},
                rms_norm_eps=1e-6, rope_theta=10000.0, bos_token_id=ids["<|im_start|>"],
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision = dict(depth=vision_depth, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=hidden,
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                  fullatt_block_indexes=[vision_depth - 1], tokens_per_second=2)
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False,
                              **{RANDOM_INIT_KEY: True})
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    if answer is not None:
        _always_answer(model, tokenizer.convert_tokens_to_ids(answer), tokenizer.encode("assistant\n")[-1],
                       ids["<|im_end|>"])
    model.generation_config = GenerationConfig(eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                                               bos_token_id=ids["<|im_start|>"])
    processor = TileVLProcessor(image_processor=Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=12845056),
                                tokenizer=tokenizer, chat_template=TINY_CHAT_TEMPLATE)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@torch.no_grad()
def _always_answer(model: torch.nn.Module, answer_id: int, prompt_end_id: int, eos_id: int) -> None:
    """Make greedy decoding reply [answer token, EOS] to any prompt ending the chat template's way.

    Every decoder layer's output projections are zeroed, so each position's hidden state is its own token
    embedding; the embedding of the prompt's last token ("\n" after "assistant") points along axis 0, the answer
    token's along axis 1, and only the answer token's (EOS's) output row reads axis 0 (axis 1).
    """
    text = model.model.language_model
    for layer in text.layers:
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
    embed, head = text.embed_tokens.weight, model.lm_head.weight
    for token, axis in ((prompt_end_id, 0), (answer_id, 1)):
        embed[token] = 0.0
        embed[token, axis] = 10.0
    head[:, :2] = 0.0
    head[answer_id, 0] = head[eos_id, 1] = 100.0


def _tiny_sam2(directory: Path) -> None:
    """transformers Sam2Model, hiera backbone 16-128 wide, 256 px input."""
    from transformers import Sam2Config, Sam2Model

    dims, size = [16, 32, 64, 128], 256
    f = size // 4
    config = Sam2Config(
        vision_config=dict(backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=dims[0],
                                                image_size=[size, size], blocks_per_stage=[1, 1, 2, 1],
                                                embed_dim_per_stage=dims, num_attention_heads_per_stage=[1, 1, 1, 1],
                                                global_attention_blocks=[3], window_size_per_stage=[8, 4, 14, 7]),
                           backbone_channel_list=dims[::-1], fpn_hidden_size=32,
                           backbone_feature_sizes=[[f, f], [f // 2, f // 2], [f // 4, f // 4]]),
        prompt_encoder_config=dict(hidden_size=32, image_size=size),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        **{RANDOM_INIT_KEY: True})
    Sam2Model(config).eval().save_pretrained(directory)


def _tiny_hf_sam(directory: Path) -> None:
    """transformers SamModel (SAM v1 format), 64-wide 2-layer ViT at 256 px."""
    from transformers import SamConfig, SamModel

    config = SamConfig(
        vision_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, mlp_dim=128, image_size=256,
                           global_attn_indexes=[1], output_channels=32, num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32, image_size=256, image_embedding_size=16),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        **{RANDOM_INIT_KEY: True})
    SamModel(config).eval().save_pretrained(directory)


def _tiny_sa1(path: Path) -> None:
    """segment-anything Sam (32-wide, 1 block, 256 px) as safetensors + a JSON sidecar with its sizes."""
    from safetensors.torch import save_file

    from sociomap.reasoning.sam import build_sam1

    builder = dict(embed_dim=32, depth=1, num_heads=2, global_attn_indexes=[0], img_size=256, prompt_dim=32,
                   decoder_mlp_dim=64)
    save_file({k: v.contiguous() for k, v in build_sam1(**builder).state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"sam1_builder": builder, RANDOM_INIT_KEY: True}, indent=1))


_SAM_BUILDERS = {"sam2": _tiny_sam2, "sam": _tiny_hf_sam, "sa1": _tiny_sa1}


def build_tiny_checkpoint(directory: Path, sam_backend: str = "sam2", answer: str | None = None) -> Path:
    """Write directory/"vlm" and the SAM weights (directory/"sam2", "sam" or "sam1.safetensors"); return directory.
    With `answer`, the VLM replies exactly that to every prompt (greedy decoding)."""
    if sam_backend not in _SAM_BUILDERS:
        raise ValueError(f"sam_backend must be one of {sorted(_SAM_BUILDERS)}, got {sam_backend!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    build_tiny_vlm(directory / "vlm", answer=answer)
    torch.manual_seed(0)
    _SAM_BUILDERS[sam_backend](directory / TINY_SAM_DIRS[sam_backend])
    return directory
