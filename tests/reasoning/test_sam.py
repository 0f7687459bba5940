"""SAM backends: best-of-3 per object, union over objects, embedding computed once and reusable."""

import numpy as np
import pytest
import torch

from sociomap.reasoning import build_tiny_checkpoint
from sociomap.reasoning.parse import ObjectPrompt
from sociomap.reasoning.sam import import_segment_anything, load_sam, segment_objects
from sociomap.reasoning.tiny import TINY_SAM_DIRS

CPU = torch.device("cpu")
PROMPTS = [ObjectPrompt((10.0, 20.0, 60.0, 90.0), ()), ObjectPrompt((50.0, 5.0, 100.0, 40.0), ((70.0, 20.0), (80.0, 30.0)))]


@pytest.fixture(scope="module", params=["sam2", "sam", "sa1"])
def backend(request, tmp_path_factory):
    folder = build_tiny_checkpoint(tmp_path_factory.mktemp(request.param), request.param)
    return load_sam(folder / TINY_SAM_DIRS[request.param], CPU)


def image(seed: int, size: int = 112) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_backend_names_follow_the_weights(backend):
    assert backend.name in {"hf-sam2", "hf-sam", "sa1"}


def test_best_mask_is_bool_at_model_input_size(backend):
    emb = backend.embed(image(0))
    mask = backend.best_mask(emb, PROMPTS[1])
    assert mask.shape == (112, 112) and mask.dtype == bool


def test_union_over_objects(backend):
    emb = backend.embed(image(0))
    union = segment_objects(backend, emb, PROMPTS)
    assert np.array_equal(union, backend.best_mask(emb, PROMPTS[0]) | backend.best_mask(emb, PROMPTS[1]))
    assert not segment_objects(backend, emb, []).any()


def test_embedding_is_reusable_after_another_image(backend):
    first = backend.embed(image(0))
    before = backend.best_mask(first, PROMPTS[1])
    backend.embed(image(1))
    assert np.array_equal(backend.best_mask(first, PROMPTS[1]), before)


def test_sa1_matches_reference_predictor_best_of_three(tmp_path):
    """The reference: SamPredictor.predict(multimask_output=True), keep masks[argmax(scores)]."""
    backend = load_sam(build_tiny_checkpoint(tmp_path, "sa1") / "sam1.safetensors", CPU)
    predictor = import_segment_anything().SamPredictor(backend.predictor.model)
    emb = backend.embed(image(2))
    predictor.set_image(image(2))
    masks, scores, _ = predictor.predict(point_coords=np.array([[70.0, 20.0], [80.0, 30.0]]),
                                         point_labels=np.array([1, 1]), box=np.array([50, 5, 100, 40]))
    assert masks.shape[0] == 3
    assert np.array_equal(backend.best_mask(emb, PROMPTS[1]), masks[np.argmax(scores)])


def test_hf_sam2_keeps_highest_scoring_of_three(tmp_path):
    backend = load_sam(build_tiny_checkpoint(tmp_path, "sam2") / "sam2", CPU)
    emb = backend.embed(image(3))
    scale = backend.input_size / 112
    with torch.inference_mode():
        out = backend.model(image_embeddings=emb.features, multimask_output=True,
                            input_boxes=torch.tensor([[[50.0, 5.0, 100.0, 40.0]]]) * scale,
                            input_points=torch.tensor([[[[70.0, 20.0], [80.0, 30.0]]]]) * scale,
                            input_labels=torch.ones((1, 1, 2), dtype=torch.long))
        assert out.pred_masks.shape[2] == 3
        up = torch.nn.functional.interpolate(out.pred_masks[0, 0][:, None], size=(112, 112), mode="bilinear",
                                             align_corners=False)[:, 0] > 0
    assert np.array_equal(backend.best_mask(emb, PROMPTS[1]), up[int(out.iou_scores[0, 0].argmax())].numpy())
