"""Qwen2.5-VL adapter: load, size the inputs like the reference, and run batched, left-padded generation.

Shared work: rows of one generate() call that show the same image objects share the prefill of their common prompt
prefix (prefix.py), so the K stage-1 queries of a tile pay for one vision pass and one LLM pass over its map and
satellite images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
from transformers.processing_utils import ProcessorMixin

from sociomap.reasoning.prefix import generate_with_shared_prefixes
from sociomap.reasoning.prompts import chat_messages

logger = logging.getLogger(__name__)


class TileVLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without the video branch: the video processor needs torchvision, and
    ProcessorMixin refuses video_processor=None (stack.md §2). Attributes come from this __init__ signature."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def _process_images(self, images, **kwargs):
        """Preprocess each distinct image object once: a tile's map and satellite repeat for each of its queries,
        and at 756 px the image processor costs about 60 ms per image on CPU. Same output as processing all."""
        images = list(images)
        slot: dict[int, int] = {}
        for image in images:
            slot.setdefault(id(image), len(slot))
        if len(slot) == len(images):
            return super()._process_images(images, **kwargs)
        processed, replacements = super()._process_images(list({id(im): im for im in images}.values()), **kwargs)
        index = [slot[id(image)] for image in images]
        grid = torch.as_tensor(processed["image_grid_thw"])
        chunks = torch.split(torch.as_tensor(processed["pixel_values"]), grid.prod(-1).tolist())
        processed["pixel_values"] = torch.cat([chunks[i] for i in index])
        processed["image_grid_thw"] = grid[index]
        return processed, [replacements[i] for i in index]


@dataclass(frozen=True)
class Generation:
    """One decoded completion: `text` without special tokens (SAM parsing), `raw` with them (stage-2 prompt)."""

    text: str
    raw: str


def model_input_size(processor: ProcessorMixin, tile_size: int) -> int:
    """Square edge the VLM sees for a tile (Qwen smart_resize: 768 -> 756), from the processor's own limits."""
    ip = processor.image_processor
    size = getattr(ip, "size", None)
    min_pixels = getattr(ip, "min_pixels", None) or (size and size.get("shortest_edge")) or 56 * 56
    max_pixels = getattr(ip, "max_pixels", None) or (size and size.get("longest_edge")) or 28 * 28 * 1280
    height, width = smart_resize(tile_size, tile_size, factor=ip.patch_size * ip.merge_size,
                                 min_pixels=min_pixels, max_pixels=max_pixels)
    return int(height)


def resize_for_model(image: np.ndarray, processor: ProcessorMixin) -> Image.Image:
    """(H, W, 3) uint8 -> PIL at model-input size with the processor's resample (reference `process_image`)."""
    edge = model_input_size(processor, image.shape[0])
    resample = getattr(processor.image_processor, "resample", Image.BICUBIC)
    return Image.fromarray(image).resize((edge, edge), resample=resample)


class VLMEngine:
    """Batched generation over (user text, [map, satellite]) requests with the reference's chat template."""

    def __init__(self, model: torch.nn.Module, processor: ProcessorMixin, generate_kwargs: dict):
        self.model, self.processor, self.generate_kwargs = model, processor, generate_kwargs
        processor.tokenizer.padding_side = "left"

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return self.model.device

    def chat_text(self, user_text: str) -> str:
        """The full prompt string: chat template over [map image, satellite image, text], generation prompt on."""
        return self.processor.apply_chat_template(chat_messages(user_text), tokenize=False, add_generation_prompt=True)

    @torch.inference_mode()
    def generate(self, texts: Sequence[str], images: Sequence[Sequence[Image.Image]]) -> list[Generation]:
        """Generate for a batch of prompts; images[i] = [map, satellite] at model-input size. Rows given the same
        image objects (the queries of one tile) share the prefill of their common prompt prefix."""
        flat = [image for pair in images for image in pair]
        inputs = self.processor(text=[self.chat_text(t) for t in texts], images=flat, padding=True,
                                return_tensors="pt").to(self.device)
        keys = [tuple(id(image) for image in pair) for pair in images]
        new = generate_with_shared_prefixes(self.model, inputs, keys, self.processor.tokenizer.pad_token_id,
                                            self.generate_kwargs)
        texts_clean = self.processor.batch_decode(new, skip_special_tokens=True)
        texts_raw = self.processor.batch_decode(new, skip_special_tokens=False)
        return [Generation(text=c, raw=r) for c, r in zip(texts_clean, texts_raw)]


def generate_kwargs(greedy: bool, temperature: float, top_p: float, top_k: int, max_new_tokens: int,
                    pad_token_id: int | None) -> dict:
    """Keyword arguments for model.generate: the reference's sampling, or plain argmax when greedy."""
    if greedy:
        sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    else:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k}
    return {**sampling, "max_new_tokens": max_new_tokens, "num_beams": 1, "pad_token_id": pad_token_id}


def load_vlm(path: Path, device: torch.device, dtype: torch.dtype) -> tuple[torch.nn.Module, ProcessorMixin]:
    """Qwen2.5-VL model (safetensors only) and its processor from a local folder."""
    processor = TileVLProcessor.from_pretrained(path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=dtype, use_safetensors=True)
    return model.to(device).eval(), processor
