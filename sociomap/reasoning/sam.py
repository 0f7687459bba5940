"""SAM adapters: embed the satellite image once, then decode best-of-3 masks for many object prompts per call.

Decoding is batched: the objects of every query of a tile that have the same number of points go through the mask
decoder in one call (objects are independent along the batch axis, so each gets what a call of its own gives;
padding objects to a common point count would add "not a point" tokens and change the masks, so it is not done).
On CUDA, SAM runs under bfloat16 autocast unless `sam_dtype` says float32 (the reference's SAM 2 runs in float32).

Three backends, picked from the weights (registry SAM_LOADERS):
- "hf-sam2": transformers Sam2Model (the reference's SAM 2 hiera-large is on the hub as facebook/sam2-hiera-large-hf);
  Sam2ImageProcessor needs torchvision, so the SAM2ImagePredictor preprocessing is done here by hand.
- "hf-sam": transformers SamModel (SAM v1 in HF format).
- "sa1": segment-anything 1.0 checkpoints (vit_b/l/h .pth or .safetensors), imported through a torchvision shim.
All coordinates are in model-input pixels (the square image passed to embed()).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sociomap.errors import ModelLoadError
from sociomap.reasoning.parse import ObjectPrompt
from sociomap.reasoning.weights import LOAD_ERRORS, read_config

logger = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SAM1_PIXEL_MEAN, SAM1_PIXEL_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
SAM1_VARIANTS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}  # image-encoder width -> registry key


CHUNK = 64  # objects per decoder call (bounds memory: 64 x 3 low-res logits + 64 upsampled masks)


@dataclass(frozen=True)
class SamEmbedding:
    """A backend's image features for one square image of `size` pixels (reused for every prompt on it)."""

    features: Any
    size: int


@dataclass
class Segmented:
    """One query's SAM result: union mask (S, S) bool, and per segmented object its index in the prompts and its
    predicted IoU (the best of the 3 multimask scores, the one the reference keeps)."""

    mask: np.ndarray
    kept: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


class SamBackend(Protocol):
    """set_image/predict split: embed() is the expensive call, decode() the cheap, batched one."""

    name: str

    def embed(self, image: np.ndarray) -> SamEmbedding: ...  # (S, S, 3) uint8 RGB, model-input size

    def decode(self, embedding: SamEmbedding, prompts: Sequence[ObjectPrompt]) -> tuple[np.ndarray, np.ndarray]:
        """Best-of-3 masks (N, S, S) bool and their scores (N,) float for N prompts with equal point counts."""
        ...


def sam_arrays(prompts: Sequence[ObjectPrompt], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) and points (N, n, 2) float64 of prompts with n points each, coordinates clipped to
    [-size, 2 * size]: one image beyond each edge is left as emitted (what the reference passes), farther ones
    are clipped (deviation: the reference passes them on, where SAM's positional encoding of a coordinate
    thousands of images away is noise, and beyond float32 range NaN)."""
    boxes = np.array([p.box for p in prompts], dtype=np.float64).reshape(-1, 4)
    points = np.array([p.points for p in prompts], dtype=np.float64).reshape(len(prompts), -1, 2)
    return np.clip(boxes, -size, 2 * size), np.clip(points, -size, 2 * size)


def segment_queries(backend: SamBackend, embedding: SamEmbedding,
                    prompt_lists: Sequence[Sequence[ObjectPrompt]]) -> list[Segmented]:
    """Per query, the union of each object's best-of-3 mask: every object of every query of the tile decoded in
    as few calls as the point counts allow. An object SAM fails on is skipped (reference rule)."""
    flat = [(q, i, p) for q, prompts in enumerate(prompt_lists) for i, p in enumerate(prompts)]
    groups: dict[int, list[tuple[int, int, ObjectPrompt]]] = {}
    for item in flat:
        groups.setdefault(len(item[2].points), []).append(item)
    decoded: dict[tuple[int, int], tuple[np.ndarray, float]] = {}
    for items in groups.values():
        for start in range(0, len(items), CHUNK):
            chunk = items[start:start + CHUNK]
            for (q, i, _), result in zip(chunk, _decode_or_skip(backend, embedding, [p for _, _, p in chunk])):
                if result is not None:
                    decoded[(q, i)] = result
    out = []
    for q, prompts in enumerate(prompt_lists):
        segmented = Segmented(np.zeros((embedding.size, embedding.size), dtype=bool))
        for i in range(len(prompts)):
            if (q, i) in decoded:
                mask, score = decoded[(q, i)]
                segmented.mask |= mask
                segmented.kept.append(i)
                segmented.scores.append(score)
        out.append(segmented)
    return out


def segment_objects(backend: SamBackend, embedding: SamEmbedding, prompts: Sequence[ObjectPrompt]) -> Segmented:
    """One query's union mask and scores (see segment_queries)."""
    return segment_queries(backend, embedding, [prompts])[0]


def _decode_or_skip(backend: SamBackend, embedding: SamEmbedding,
                    prompts: list[ObjectPrompt]) -> list[tuple[np.ndarray, float] | None]:
    """decode() on a batch; if it raises, one object at a time so that only the failing ones are skipped."""
    try:
        masks, scores = backend.decode(embedding, prompts)
        return [(m, float(s)) for m, s in zip(masks, scores)]
    except (RuntimeError, ValueError, IndexError) as exc:
        if len(prompts) == 1:
            logger.debug("SAM skipped object %s: %s", prompts[0], exc)
            return [None]
    return [r for p in prompts for r in _decode_or_skip(backend, embedding, [p])]


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bfloat16/float16 autocast on CUDA when asked; nothing (float32) otherwise."""
    if device.type == "cuda" and dtype != torch.float32:
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


def _hf_prompt_tensors(prompts: Sequence[ObjectPrompt], size: int, scale: float,
                       device: torch.device) -> dict[str, torch.Tensor]:
    """HF Sam/Sam2 keyword tensors for N objects of one image: boxes (1, N, 4), points (1, N, n, 2) and labels
    (1, N, n) in the SAM input frame (`scale` = SAM input size / model-input size)."""
    boxes, points = sam_arrays(prompts, size)
    kwargs = {"input_boxes": torch.from_numpy(boxes).float()[None].to(device) * scale}
    if points.shape[1]:
        kwargs["input_points"] = torch.from_numpy(points).float()[None].to(device) * scale
        kwargs["input_labels"] = torch.ones(points.shape[:2], dtype=torch.long, device=device)[None]
    return kwargs


def _best_upsampled(pred_masks: torch.Tensor, scores: torch.Tensor, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per object the highest-scoring of its 3 low-res mask logits, upsampled bilinearly to (size, size) and
    thresholded at 0: masks (N, size, size) bool and scores (N,) float32. pred_masks (1, N, 3, h, w)."""
    logits, scores = pred_masks[0].float(), scores[0].float()
    best = scores.argmax(-1)
    chosen = logits[torch.arange(len(best)), best]
    up = F.interpolate(chosen[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return (up > 0).cpu().numpy(), scores.max(-1).values.cpu().numpy()


class HFSam2Backend:
    """transformers Sam2Model with SAM2ImagePredictor's pre/post-processing (resize to 1024, ImageNet norm)."""

    name = "hf-sam2"

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype = torch.float32):
        self.model, self.device, self.dtype = model.to(device).eval(), device, dtype
        self.input_size = int(model.config.prompt_encoder_config.image_size)

    @torch.inference_mode()
    def embed(self, image: np.ndarray) -> SamEmbedding:
        """SAM2Transforms: float [0,1] tensor, bilinear (antialiased) resize to 1024 square, ImageNet normalize."""
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear", align_corners=False, antialias=True)
        x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
        with _autocast(self.device, self.dtype):
            return SamEmbedding(self.model.get_image_embeddings(x.to(self.device)), image.shape[0])

    @torch.inference_mode()
    def decode(self, embedding: SamEmbedding, prompts: Sequence[ObjectPrompt]) -> tuple[np.ndarray, np.ndarray]:
        """Multimask decode (3 masks per object) in one call; keep each object's highest predicted IoU."""
        kwargs = _hf_prompt_tensors(prompts, embedding.size, self.input_size / embedding.size, self.device)
        with _autocast(self.device, self.dtype):
            out = self.model(image_embeddings=embedding.features, multimask_output=True, **kwargs)
        return _best_upsampled(out.pred_masks, out.iou_scores, embedding.size)


class HFSamBackend:
    """transformers SamModel (SAM v1) with segment-anything's ResizeLongestSide(1024) preprocessing."""

    name = "hf-sam"

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype = torch.float32):
        self.model, self.device, self.dtype = model.to(device).eval(), device, dtype
        self.input_size = int(model.config.prompt_encoder_config.image_size)

    @torch.inference_mode()
    def embed(self, image: np.ndarray) -> SamEmbedding:
        """PIL bilinear resize of the square image to 1024, SAM pixel mean/std normalization."""
        resized = np.asarray(Image.fromarray(image).resize((self.input_size,) * 2, Image.BILINEAR), np.float32)
        x = (resized - np.array(SAM1_PIXEL_MEAN, np.float32)) / np.array(SAM1_PIXEL_STD, np.float32)
        pixels = torch.from_numpy(x).permute(2, 0, 1)[None].to(self.device)
        with _autocast(self.device, self.dtype):
            return SamEmbedding(self.model.get_image_embeddings(pixels), image.shape[0])

    @torch.inference_mode()
    def decode(self, embedding: SamEmbedding, prompts: Sequence[ObjectPrompt]) -> tuple[np.ndarray, np.ndarray]:
        """Multimask decode for N objects in one call; square input, so no padding crop before upsampling."""
        kwargs = _hf_prompt_tensors(prompts, embedding.size, self.input_size / embedding.size, self.device)
        with _autocast(self.device, self.dtype):
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

    def __init__(self, sam: torch.nn.Module, device: torch.device, dtype: torch.dtype = torch.float32):
        predictor_cls = import_segment_anything().SamPredictor
        self.predictor = predictor_cls(sam.to(device).eval())
        self.device, self.dtype = device, dtype

    @torch.inference_mode()
    def embed(self, image: np.ndarray) -> SamEmbedding:
        """SamPredictor.set_image (ResizeLongestSide 1024, normalize, pad), keeping the features for reuse."""
        with _autocast(self.device, self.dtype):
            self.predictor.set_image(image, image_format="RGB")
        p = self.predictor
        return SamEmbedding((p.features, p.original_size, p.input_size), image.shape[0])

    @torch.inference_mode()
    def decode(self, embedding: SamEmbedding, prompts: Sequence[ObjectPrompt]) -> tuple[np.ndarray, np.ndarray]:
        """SamPredictor.predict_torch (multimask) for N objects on the restored embedding, each object's
        coordinates transformed as SamPredictor.predict does it (numpy, float64 -> float32); highest score wins."""
        p = self.predictor
        p.features, p.original_size, p.input_size = embedding.features
        p.is_image_set = True
        boxes, points = sam_arrays(prompts, embedding.size)
        box_t = torch.as_tensor(p.transform.apply_boxes(boxes, p.original_size), dtype=torch.float, device=p.device)
        coords_t = labels_t = None
        if points.shape[1]:
            coords = np.stack([p.transform.apply_coords(pts, p.original_size) for pts in points])
            coords_t = torch.as_tensor(coords, dtype=torch.float, device=p.device)
            labels_t = torch.ones(points.shape[:2], dtype=torch.int, device=p.device)
        with _autocast(self.device, self.dtype):
            masks, scores, _ = p.predict_torch(coords_t, labels_t, box_t, multimask_output=True)
        best = scores.float().argmax(-1)
        index = torch.arange(len(best))
        return masks[index, best].cpu().numpy(), scores.float()[index, best].cpu().numpy()


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
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's message is a page long; the first line says what it met
        first = next((line for line in str(exc).splitlines() if "GLOBAL" in line), "not plain tensors").strip()
        raise ModelLoadError(f"{path}: refused, the checkpoint holds more than tensors ({first}); use the official "
                             "weights, or convert them to .safetensors") from None


def _load_sa1(path: Path, device: torch.device, dtype: torch.dtype) -> SamBackend:
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
    return SegmentAnythingBackend(sam, device, dtype)


def _load_hf(path: Path, device: torch.device, dtype: torch.dtype) -> SamBackend:
    """transformers Sam2Model / SamModel folder, chosen by config.json model_type (safetensors only)."""
    model_type = read_config(path).get("model_type")
    if model_type == "sam2":
        from transformers import Sam2Model

        return HFSam2Backend(Sam2Model.from_pretrained(path, use_safetensors=True), device, dtype)
    if model_type == "sam":
        from transformers import SamModel

        return HFSamBackend(SamModel.from_pretrained(path, use_safetensors=True), device, dtype)
    raise ModelLoadError(f"{path}/config.json has model_type {model_type!r}; --sam needs a Sam2Model or SamModel folder")


SAM_LOADERS = {"hf": _load_hf, "sa1": _load_sa1}


def sam_format(path: Path) -> str:
    """Which loader reads `path`: a checkpoint file is segment-anything v1, a folder is transformers format."""
    if path.is_file():
        return "sa1"
    if (path / "config.json").is_file():
        return "hf"
    raise ModelLoadError(f"{path} is neither a SAM checkpoint file nor a folder with config.json: pass --sam correctly")


def load_sam(path: Path, device: torch.device, dtype: torch.dtype = torch.float32) -> SamBackend:
    """The SAM backend for local weights at `path` (file or folder); `dtype` is the CUDA autocast dtype."""
    try:
        return SAM_LOADERS[sam_format(path)](path, device, dtype)
    except ModelLoadError:
        raise
    except LOAD_ERRORS as exc:
        raise ModelLoadError(f"cannot load SAM weights from {path} ({type(exc).__name__}: {exc}): "
                             "re-download them or check --sam") from exc
