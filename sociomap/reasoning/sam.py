"""SAM adapters: embed the satellite image once, then decode best-of-3 masks per object prompt.

Three backends, picked from the weights (registry SAM_BACKENDS):
- "hf-sam2": transformers Sam2Model (the reference's SAM 2 hiera-large is on the hub as facebook/sam2-hiera-large-hf);
  Sam2ImageProcessor needs torchvision, so the SAM2ImagePredictor preprocessing is done here by hand.
- "hf-sam": transformers SamModel (SAM v1 in HF format).
- "sa1": segment-anything 1.0 checkpoints (vit_b/l/h .pth or .safetensors), imported through a torchvision shim.
All coordinates are in model-input pixels (the square image passed to embed()).
"""

from __future__ import annotations

import logging
import sys
import types
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sociomap.errors import ModelLoadError
from sociomap.reasoning.parse import ObjectPrompt
from sociomap.reasoning.weights import read_config

logger = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SAM1_PIXEL_MEAN, SAM1_PIXEL_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
SAM1_VARIANTS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}  # image-encoder width -> registry key


@dataclass(frozen=True)
class SamEmbedding:
    """A backend's image features for one square image of `size` pixels (reused for every prompt on it)."""

    features: Any
    size: int


class SamBackend(Protocol):
    """set_image/predict split: embed() is the expensive call, best_mask() the cheap one."""

    name: str

    def embed(self, image: np.ndarray) -> SamEmbedding: ...  # (S, S, 3) uint8 RGB, model-input size

    def best_mask(self, embedding: SamEmbedding, prompt: ObjectPrompt) -> np.ndarray: ...  # (S, S) bool


def segment_objects(backend: SamBackend, embedding: SamEmbedding, prompts: list[ObjectPrompt]) -> np.ndarray:
    """Union of each object's best-of-3 mask, (S, S) bool; an object SAM fails on is skipped (reference rule)."""
    mask = np.zeros((embedding.size, embedding.size), dtype=bool)
    for prompt in prompts:
        try:
            mask |= backend.best_mask(embedding, prompt)
        except (RuntimeError, ValueError, IndexError) as exc:
            logger.debug("SAM skipped object %s: %s", prompt, exc)
    return mask


def _prompt_tensors(prompt: ObjectPrompt, scale: float, device: torch.device) -> dict[str, torch.Tensor]:
    """HF Sam/Sam2 keyword tensors for one object: box (1,1,4) and points (1,1,n,2) scaled to the SAM input frame."""
    kwargs = {"input_boxes": torch.tensor([[prompt.box]], dtype=torch.float32, device=device) * scale}
    if prompt.points:
        kwargs["input_points"] = torch.tensor([[prompt.points]], dtype=torch.float32, device=device) * scale
        kwargs["input_labels"] = torch.ones((1, 1, len(prompt.points)), dtype=torch.long, device=device)
    return kwargs


def _best_upsampled(pred_masks: torch.Tensor, scores: torch.Tensor, size: int) -> np.ndarray:
    """Highest-scoring of the 3 low-res mask logits, upsampled bilinearly to (size, size) and thresholded at 0."""
    best = pred_masks.reshape(-1, *pred_masks.shape[-2:])[int(scores.reshape(-1).argmax())]
    up = F.interpolate(best[None, None].float(), size=(size, size), mode="bilinear", align_corners=False)
    return (up[0, 0] > 0).cpu().numpy()


class HFSam2Backend:
    """transformers Sam2Model with SAM2ImagePredictor's pre/post-processing (resize to 1024, ImageNet norm)."""

    name = "hf-sam2"

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.device = model.to(device).eval(), device
        self.input_size = int(model.config.prompt_encoder_config.image_size)

    @torch.inference_mode()
    def embed(self, image: np.ndarray) -> SamEmbedding:
        """SAM2Transforms: float [0,1] tensor, bilinear (antialiased) resize to 1024 square, ImageNet normalize."""
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear", align_corners=False, antialias=True)
        x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
        return SamEmbedding(self.model.get_image_embeddings(x.to(self.device)), image.shape[0])

    @torch.inference_mode()
    def best_mask(self, embedding: SamEmbedding, prompt: ObjectPrompt) -> np.ndarray:
        """Multimask decode (3 masks) for one object; keep the highest predicted IoU."""
        kwargs = _prompt_tensors(prompt, self.input_size / embedding.size, self.device)
        out = self.model(image_embeddings=embedding.features, multimask_output=True, **kwargs)
        return _best_upsampled(out.pred_masks, out.iou_scores, embedding.size)


class HFSamBackend:
    """transformers SamModel (SAM v1) with segment-anything's ResizeLongestSide(1024) preprocessing."""

    name = "hf-sam"

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.device = model.to(device).eval(), device
        self.input_size = int(model.config.prompt_encoder_config.image_size)

    @torch.inference_mode()
    def embed(self, image: np.ndarray) -> SamEmbedding:
        """PIL bilinear resize of the square image to 1024, SAM pixel mean/std normalization."""
        resized = np.asarray(Image.fromarray(image).resize((self.input_size,) * 2, Image.BILINEAR), np.float32)
        x = (resized - np.array(SAM1_PIXEL_MEAN, np.float32)) / np.array(SAM1_PIXEL_STD, np.float32)
        pixels = torch.from_numpy(x).permute(2, 0, 1)[None].to(self.device)
        return SamEmbedding(self.model.get_image_embeddings(pixels), image.shape[0])

    @torch.inference_mode()
    def best_mask(self, embedding: SamEmbedding, prompt: ObjectPrompt) -> np.ndarray:
        """Multimask decode for one object; square input, so no padding crop is needed before upsampling."""
        kwargs = _prompt_tensors(prompt, self.input_size / embedding.size, self.device)
        out = self.model(image_embeddings=embedding.features, multimask_output=True, **kwargs)
        return _best_upsampled(out.pred_masks, out.iou_scores, embedding.size)


def _unused_nms(*args: object, **kwargs: object) -> torch.Tensor:
    """segment_anything's automatic mask generator needs NMS; sociomap only uses SamPredictor."""
    raise NotImplementedError("batched_nms is not available without torchvision")


def _torchvision_standins() -> dict[str, types.ModuleType]:
    """Modules holding the 4 torchvision names segment_anything imports (resize/to_pil_image do real work)."""
    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.ops",
             "torchvision.ops.boxes")
    stubs = {name: types.ModuleType(name) for name in names}
    functional = stubs["torchvision.transforms.functional"]
    functional.resize = lambda img, size: img.resize((size[1], size[0]), Image.BILINEAR)  # PIL path, as torchvision
    functional.to_pil_image = lambda pic: Image.fromarray(np.asarray(pic))
    stubs["torchvision.ops.boxes"].batched_nms = _unused_nms
    stubs["torchvision.ops.boxes"].box_area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return stubs


def import_segment_anything() -> types.ModuleType:
    """Import segment_anything without torchvision: stand-ins sit in sys.modules only while it imports.

    torchvision cannot be installed beside the CPU torch wheel (stack.md §3); a working torchvision (GPU
    machines) is used as is.
    """
    try:
        import segment_anything

        return segment_anything
    except (ImportError, RuntimeError):  # no torchvision, or a CUDA torchvision wheel on CPU torch
        for key in [k for k in sys.modules if k.startswith(("torchvision", "segment_anything"))]:
            del sys.modules[key]
    stubs = _torchvision_standins()
    sys.modules.update(stubs)
    try:
        import segment_anything
    finally:
        for name in stubs:
            sys.modules.pop(name, None)
    return segment_anything


class SegmentAnythingBackend:
    """segment-anything 1.0 SamPredictor; the embedding is the predictor state after set_image()."""

    name = "sa1"

    def __init__(self, sam: torch.nn.Module, device: torch.device):
        predictor_cls = import_segment_anything().SamPredictor
        self.predictor = predictor_cls(sam.to(device).eval())

    @torch.inference_mode()
    def embed(self, image: np.ndarray) -> SamEmbedding:
        """SamPredictor.set_image (ResizeLongestSide 1024, normalize, pad), keeping the features for reuse."""
        self.predictor.set_image(image, image_format="RGB")
        p = self.predictor
        return SamEmbedding((p.features, p.original_size, p.input_size), image.shape[0])

    @torch.inference_mode()
    def best_mask(self, embedding: SamEmbedding, prompt: ObjectPrompt) -> np.ndarray:
        """SamPredictor.predict with multimask_output=True on the restored embedding; highest score wins."""
        p = self.predictor
        p.features, p.original_size, p.input_size = embedding.features
        p.is_image_set = True
        coords = np.array(prompt.points, dtype=np.float32) if prompt.points else None
        labels = np.ones(len(prompt.points), dtype=np.int64) if prompt.points else None
        masks, scores, _ = p.predict(point_coords=coords, point_labels=labels, box=np.array(prompt.box),
                                     multimask_output=True)
        return masks[int(np.argmax(scores))]


def build_sam1(embed_dim: int, depth: int, num_heads: int, global_attn_indexes: list[int], img_size: int = 1024,
               prompt_dim: int = 256, decoder_mlp_dim: int = 2048) -> torch.nn.Module:
    """A segment-anything Sam of any size (vit_b/l/h use their registry values; tests use a tiny one)."""
    modeling = import_segment_anything().modeling
    grid = img_size // 16
    return modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            depth=depth, embed_dim=embed_dim, img_size=img_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=num_heads, patch_size=16, qkv_bias=True,
            use_rel_pos=True, global_attn_indexes=tuple(global_attn_indexes), window_size=14, out_chans=prompt_dim),
        prompt_encoder=modeling.PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                                              input_image_size=(img_size, img_size), mask_in_chans=16),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3, transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=256,
            transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=decoder_mlp_dim,
                                                   num_heads=8)),
        pixel_mean=list(SAM1_PIXEL_MEAN), pixel_std=list(SAM1_PIXEL_STD))


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Checkpoint tensors from safetensors, or a .pth read with weights_only=True (no arbitrary pickles)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_sa1(path: Path, device: torch.device) -> SamBackend:
    """segment-anything checkpoint: registry variant from the encoder width, or sizes from a JSON sidecar."""
    state = _load_state_dict(path)
    sidecar = read_config(path)
    if "sam1_builder" in sidecar:
        sam = build_sam1(**sidecar["sam1_builder"])
    else:
        width = state["image_encoder.patch_embed.proj.weight"].shape[0]
        if width not in SAM1_VARIANTS:
            raise ModelLoadError(f"{path}: unknown SAM v1 encoder width {width}; expected vit_b/l/h weights")
        sam = import_segment_anything().sam_model_registry[SAM1_VARIANTS[width]](checkpoint=None)
    sam.load_state_dict(state)
    return SegmentAnythingBackend(sam, device)


def _load_hf(path: Path, device: torch.device) -> SamBackend:
    """transformers Sam2Model / SamModel folder, chosen by config.json model_type (safetensors only)."""
    model_type = read_config(path).get("model_type")
    if model_type == "sam2":
        from transformers import Sam2Model

        return HFSam2Backend(Sam2Model.from_pretrained(path, use_safetensors=True), device)
    if model_type == "sam":
        from transformers import SamModel

        return HFSamBackend(SamModel.from_pretrained(path, use_safetensors=True), device)
    raise ModelLoadError(f"{path}/config.json has model_type {model_type!r}; --sam needs a Sam2Model or SamModel folder")


SAM_LOADERS = {"hf": _load_hf, "sa1": _load_sa1}


def sam_format(path: Path) -> str:
    """Which loader reads `path`: a checkpoint file is segment-anything v1, a folder is transformers format."""
    if path.is_file():
        return "sa1"
    if (path / "config.json").is_file():
        return "hf"
    raise ModelLoadError(f"{path} is neither a SAM checkpoint file nor a folder with config.json: pass --sam correctly")


def load_sam(path: Path, device: torch.device) -> SamBackend:
    """The SAM backend for local weights at `path` (file or folder)."""
    try:
        return SAM_LOADERS[sam_format(path)](path, device)
    except ModelLoadError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"cannot load SAM weights from {path} ({exc}): check --sam") from exc
