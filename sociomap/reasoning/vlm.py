"""Qwen2.5-VL adapter: load, size the inputs like the reference, and run batched, left-padded generation.

Shared work: rows of one generate() call that show the same image objects share the prefill of their common prompt
prefix (prefix.py), so the K stage-1 queries of a tile pay for one vision pass and one LLM pass over its map and
satellite images.

Image size: the reference sets the processor's pixel limits to max 768*768, min 56*56 (its `getattr(...,
"max_pixels", 768 * 768)` fallback, rlvr_socioseg_vlm_pipeline.py ~l.459) and resizes each image with smart_resize
and the processor's resample before the processor sees it: 768 px tiles -> 756, 1024 -> 756, 512 -> 504.
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

from sociomap.reasoning.config import ReasonerConfig
from sociomap.reasoning.prefix import generate_with_shared_prefixes
from sociomap.reasoning.prompts import chat_messages
from sociomap.reasoning.sampling import generation_config, logits_processors, stop_token_ids

logger = logging.getLogger(__name__)

MIN_PIXELS, MAX_PIXELS = 56 * 56, 768 * 768  # the reference's image pixel limits
QWEN_FACTOR = 28  # Qwen2.5-VL: patch 14 x spatial merge 2; image sides are multiples of it
QWEN_RESAMPLE = Image.BICUBIC  # Qwen2-VL image processor's resample


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


def model_input_size(tile_size: int, factor: int = QWEN_FACTOR) -> int:
    """Square edge the VLM sees for a tile: smart_resize under the reference's pixel limits (768 -> 756)."""
    height, _ = smart_resize(tile_size, tile_size, factor=factor, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    return int(height)


def resize_for_model(image: np.ndarray, factor: int = QWEN_FACTOR, resample: int = QWEN_RESAMPLE) -> Image.Image:
    """(H, W, 3) uint8 -> PIL at model-input size with the processor's resample (reference `process_image`)."""
    edge = model_input_size(image.shape[0], factor)
    return Image.fromarray(image).resize((edge, edge), resample=resample)


def use_reference_pixel_limits(processor: ProcessorMixin) -> None:
    """Set the image processor's limits to the reference's, so it keeps the model-input images as they are."""
    processor.image_processor.size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}


class VLMEngine:
    """Batched generation over (user text, [map, satellite]) requests with the reference's chat template and
    sociomap's own decoding settings (never the checkpoint's generation_config, see sampling.py)."""

    def __init__(self, model: torch.nn.Module, processor: ProcessorMixin, config: ReasonerConfig):
        self.model, self.processor, self.config = model, processor, config
        processor.tokenizer.padding_side = "left"
        tokenizer = processor.tokenizer
        stops = stop_token_ids(model.generation_config, tokenizer.eos_token_id)
        self.generation_config = generation_config(config.max_new_tokens, stops, tokenizer.pad_token_id,
                                                   getattr(model.generation_config, "bos_token_id", None))
        # generate() fills every field its config leaves unset from model.generation_config: make that ours too
        model.generation_config = self.generation_config

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return self.model.device

    @property
    def factor(self) -> int:
        """Pixels per merged vision token along an edge (28 for Qwen2.5-VL)."""
        return self.processor.image_processor.patch_size * self.processor.image_processor.merge_size

    def model_images(self, image: np.ndarray) -> Image.Image:
        """A tile image at model-input size, resized as the reference does."""
        return resize_for_model(image, self.factor, getattr(self.processor.image_processor, "resample", QWEN_RESAMPLE))

    def chat_text(self, user_text: str) -> str:
        """The full prompt string: chat template over [map image, satellite image, text], generation prompt on."""
        return self.processor.apply_chat_template(chat_messages(user_text), tokenize=False, add_generation_prompt=True)

    @torch.inference_mode()
    def generate(self, texts: Sequence[str], images: Sequence[Sequence[Image.Image]],
                 seeds: Sequence[int | None] | None = None) -> list[Generation]:
        """Generate for a batch of prompts; images[i] = [map, satellite] at model-input size; seeds[i] seeds row
        i's sampling (sampling.RowSampler; ignored when greedy). Rows given the same image objects (the queries of
        one tile) share the prefill of their common prompt prefix."""
        config = self.config
        flat = [image for pair in images for image in pair]
        inputs = self.processor(text=[self.chat_text(t) for t in texts], images=flat, padding=True,
                                return_tensors="pt").to(self.device)
        keys = [tuple(id(image) for image in pair) for pair in images]
        processors = logits_processors(config.greedy, config.temperature, config.top_p, config.top_k,
                                       seeds if seeds is not None else [None] * len(texts))
        new = generate_with_shared_prefixes(self.model, inputs, keys, self.processor.tokenizer.pad_token_id,
                                            {"generation_config": self.generation_config,
                                             "logits_processor": processors})
        texts_clean = self.processor.batch_decode(new, skip_special_tokens=True)
        texts_raw = self.processor.batch_decode(new, skip_special_tokens=False)
        return [Generation(text=c, raw=r) for c, r in zip(texts_clean, texts_raw)]


def load_vlm(path: Path, device: torch.device, dtype: torch.dtype) -> tuple[torch.nn.Module, ProcessorMixin]:
    """Qwen2.5-VL model (safetensors only) and its processor (with the reference's pixel limits), local folder."""
    processor = TileVLProcessor.from_pretrained(path)
    use_reference_pixel_limits(processor)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=dtype, use_safetensors=True)
    return model.to(device).eval(), processor
