"""SAM backends: best-of-3 per object, union over objects, batched decoding equal to one call per object,
embedding computed once and reusable."""

import numpy as np
import pytest
import torch

from sociomap.reasoning import build_tiny_checkpoint
from sociomap.reasoning.parse import ObjectPrompt
from sociomap.reasoning.sam import import_segment_anything, load_sam, sam_arrays, segment_objects, segment_queries
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


def best_mask(backend, emb, prompt):
    """One object, one decoder call (the reference's per-object form)."""
    masks, scores = backend.decode(emb, [prompt])
    return masks[0], float(scores[0])


def test_decode_gives_bool_masks_at_model_input_size_and_scores(backend):
    emb = backend.embed(image(0))
    masks, scores = backend.decode(emb, [PROMPTS[1]])
    assert masks.shape == (1, 112, 112) and masks.dtype == bool and scores.shape == (1,)


def test_union_over_objects_with_their_scores(backend):
    emb = backend.embed(image(0))
    union = segment_objects(backend, emb, PROMPTS)
    (m0, s0), (m1, s1) = best_mask(backend, emb, PROMPTS[0]), best_mask(backend, emb, PROMPTS[1])
    assert np.array_equal(union.mask, m0 | m1)
    assert union.kept == [0, 1] and union.scores == [s0, s1]
    assert not segment_objects(backend, emb, []).mask.any()


def test_batched_decoding_equals_one_call_per_object(backend):
    """All objects of several queries of a tile, decoded in one call per point count, give each object exactly
    the mask and score of its own call."""
    rng = np.random.default_rng(5)
    def prompt(n_points):
        x0, y0 = rng.integers(0, 60, 2)
        return ObjectPrompt((float(x0), float(y0), float(x0 + rng.integers(10, 50)), float(y0 + rng.integers(10, 50))),
                            tuple((float(x), float(y)) for x, y in rng.integers(0, 112, (n_points, 2))))
    queries = [[prompt(0), prompt(2), prompt(0)], [], [prompt(2), prompt(3), prompt(0), prompt(2)]]
    emb = backend.embed(image(4))
    calls = []
    original = backend.decode
    backend.decode = lambda e, ps: calls.append(len(ps)) or original(e, ps)
    try:
        batched = segment_queries(backend, emb, queries)
    finally:
        del backend.decode
    assert sorted(calls) == [1, 3, 3]  # 0 points: 3 objects, 2 points: 3, 3 points: 1
    for prompts, result in zip(queries, batched):
        singles = [best_mask(backend, emb, p) for p in prompts]
        expected = np.zeros((112, 112), bool)
        for mask, _ in singles:
            expected |= mask
        assert np.array_equal(result.mask, expected)
        assert result.scores == pytest.approx([s for _, s in singles], abs=1e-6)


def test_embedding_is_reusable_after_another_image(backend):
    first = backend.embed(image(0))
    before = best_mask(backend, first, PROMPTS[1])[0]
    backend.embed(image(1))
    assert np.array_equal(best_mask(backend, first, PROMPTS[1])[0], before)


def test_far_coordinates_are_clipped_one_image_beyond_the_edges():
    prompts = [ObjectPrompt((-5.0, 1e30, 300.0, 20.0), ((-1e9, 50.0), (224.0, 225.0)))]
    boxes, points = sam_arrays(prompts, 112)
    assert boxes.tolist() == [[-5.0, 224.0, 224.0, 20.0]]
    assert points.tolist() == [[[-112.0, 50.0], [224.0, 224.0]]]


def test_a_failing_object_is_skipped_alone(backend):
    emb = backend.embed(image(0))
    original = backend.decode

    def decode(e, prompts):
        if any(p.box[0] == 13.0 for p in prompts):
            raise RuntimeError("refused")
        return original(e, prompts)

    backend.decode = decode
    try:
        result = segment_objects(backend, emb, [PROMPTS[0], ObjectPrompt((13.0, 1.0, 20.0, 30.0), ())])
    finally:
        del backend.decode
    assert result.kept == [0] and np.array_equal(result.mask, best_mask(backend, emb, PROMPTS[0])[0])


def test_sa1_matches_reference_predictor_best_of_three(tmp_path):
    """The reference: SamPredictor.predict(multimask_output=True), keep masks[argmax(scores)]."""
    backend = load_sam(build_tiny_checkpoint(tmp_path, "sa1") / "sam1.safetensors", CPU)
    predictor = import_segment_anything().SamPredictor(backend.predictor.model)
    emb = backend.embed(image(2))
    predictor.set_image(image(2))
    masks, scores, _ = predictor.predict(point_coords=np.array([[70.0, 20.0], [80.0, 30.0]]),
                                         point_labels=np.array([1, 1]), box=np.array([50, 5, 100, 40]))
    assert masks.shape[0] == 3
    mask, score = best_mask(backend, emb, PROMPTS[1])
    assert np.array_equal(mask, masks[np.argmax(scores)]) and score == pytest.approx(float(scores.max()))


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
    mask, score = best_mask(backend, emb, PROMPTS[1])
    assert np.array_equal(mask, up[int(out.iou_scores[0, 0].argmax())].numpy())
    assert score == pytest.approx(float(out.iou_scores.max()))
