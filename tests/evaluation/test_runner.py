"""evaluate_socioseg on the fixture with a real (tiny) SocioReasoner whose VLM answers from a script, so masks
are non-empty and every failure mode can occur; the report is checked against an independent recomputation."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from sociomap.evaluation import classify_query, evaluate_socioseg, open_dataset
from sociomap.evaluation.failures import MODES
from sociomap.reasoning import SocioReasoner, load_reasoner
from sociomap.reasoning.vlm import Generation
from tests.evaluation.independent import read_samples_csv, recompute_from_outputs

STAGE1 = '<think>look at <b>the map</b> & <script>alert(1)</script></think><answer>[{"bbox_2d": %s}]</answer>'
STAGE2 = '<think>refine</think><answer>[{"bbox_2d": %s, "points": [[%d, %d]]}]</answer>'
BOXES = {"Park and greenspace": [18, 14, 88, 80], "Hospital": [60, 60, 100, 100],
         "Toll Station": [50, 10, 76, 30], "Educational": [0, 0, 111, 111]}
BROKEN = {"School": '<think>?</think><answer>[{"bbox_2d": [1, 2, oops</answer>',  # not JSON
          "Peach Blossom Park": "<think>nothing here</think><answer>[]</answer>"}  # no objects


class ScriptedVLM:
    """The VLM's place in a real SocioReasoner: answers per query from a script, records each call."""

    def __init__(self, real):
        self.processor, self.model, self.calls = real.processor, real.model, []
        self.model_images = real.model_images  # the real engine's resizing: only the answers are scripted

    def generate(self, texts, images, seeds=None):
        found = [re.search(r"find '(.*?)' with bboxs|for \"(.*?)\" have been", t).group(1, 2) for t in texts]
        queries = [a or b for a, b in found]
        stage = 1 if "Please find" in texts[0] else 2
        self.calls.append((stage, queries))
        out = []
        for q in queries:
            if q in BROKEN:
                text = BROKEN[q]
            else:
                box = BOXES[q]
                cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
                text = STAGE1 % box if stage == 1 else STAGE2 % (box, cx, cy)
            out.append(Generation(text=text, raw=text + "<|im_end|>"))
        return out


class Refuse:
    """A VLM that must not be called (everything should come from the cache)."""

    processor = model = None

    def generate(self, texts, images, seeds=None):
        raise AssertionError("the model ran although every sample was cached")


@pytest.fixture(scope="module")
def tiny_reasoner(tiny_config):
    return load_reasoner(tiny_config)


def scripted(reasoner, vlm):
    return SocioReasoner(reasoner.config, vlm, reasoner.sam, reasoner.vlm_weights, reasoner.sam_weights)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, folder_data, tiny_config, tiny_reasoner):
    out = tmp_path_factory.mktemp("eval")
    vlm = ScriptedVLM(tiny_reasoner.engine)
    evaluation = evaluate_socioseg(open_dataset(folder_data), tiny_config, out,
                                   reasoner=scripted(tiny_reasoner, vlm))
    return out, evaluation, vlm


def test_report_matches_an_independent_recomputation(evaluated, samples):
    out, evaluation, _ = evaluated
    assert evaluation.computed == len(samples) and evaluation.reused == 0
    expected = recompute_from_outputs(out, samples, classify_query)
    summary = json.loads((out / "summary.json").read_text())
    groups = {(g["by"], g["name"]): g for g in summary["groups"]}
    for key, stages in expected.items():
        if key[0] == "sample":
            continue
        for stage, metrics in stages.items():
            for name, value in metrics.items():
                assert groups[key][stage][name] == pytest.approx(value), (key, stage, name)
        assert groups[key]["n"] == len([s for s in samples if key == ("all", "all")
                                        or classify_query(s.problem).task == key[1]])
    rows = read_samples_csv(out)
    for s in samples:
        for stage in ("stage1", "stage2"):
            want = expected[("sample", s.id)][stage]
            assert float(rows[s.id][f"{stage}_iou"]) == pytest.approx(want["iou"], abs=1e-6)
            counts = [int(rows[s.id][f"{stage}_{k}"]) for k in ("tp", "fp", "fn")]
            assert counts == [want[k] for k in ("tp", "fp", "fn")]
    # The predictions are real SAM masks, not all empty: the numbers are not trivially zero.
    assert expected[("all", "all")]["stage2"]["ciou"] > 0
    assert summary["random_weights"] is True
    # Confidence bins: every sample with a non-empty stage-2 mask (read back from its PNG) is rated; the bins
    # only ever keep fewer samples as the threshold rises.
    import numpy as np
    from PIL import Image

    found = sum(bool(np.asarray(Image.open(p)).any()) for p in (out / "masks" / "stage2").glob("*.png"))
    bins = summary["confidence"]
    assert [b["threshold"] for b in bins] == pytest.approx([i / 10 for i in range(10)])
    assert bins[0]["kept"] == found > 0
    assert all(a["kept"] >= b["kept"] for a, b in zip(bins, bins[1:]))


def test_failure_modes(evaluated, samples):
    out, evaluation, _ = evaluated
    by_id = {r.id: r for r in evaluation.records}
    assert by_id["s002"].failure == "unparsable answer"  # "School": broken JSON
    assert by_id["s003"].failure == "no boxes"  # "Peach Blossom Park": []
    assert by_id["s007"].failure is None and by_id["s007"].stage2.iou == 1.0  # empty GT, empty prediction
    truth = {s.id: s.mask > 0 for s in samples}
    from tests.evaluation.independent import read_png_mask

    for r in evaluation.records:
        assert (r.failure is not None) == (r.stage2.iou < 0.1)
        if r.failure in ("wrong place", "wrong extent"):
            pred, gt = read_png_mask(out / "masks" / "stage2" / f"{r.id}.png"), truth[r.id]
            overlap = (pred & gt).sum() / min(pred.sum(), gt.sum())
            assert (r.failure == "wrong place") == (overlap < 0.5)
    counts = json.loads((out / "summary.json").read_text())["failures"]
    assert list(counts) == list(MODES)
    assert sum(counts.values()) == sum(r.failure is not None for r in evaluation.records)


def test_gallery_is_self_contained_and_escapes_model_text(evaluated):
    out, evaluation, _ = evaluated
    html = (out / "failures.html").read_text()
    failed = [r for r in evaluation.records if r.failure]
    assert failed and all(f"<b>{r.id}</b>" in html for r in failed)
    assert html.count('src="data:image/jpeg;base64,') == 5 * len(failed)
    assert "src=\"http" not in html and "<link" not in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for mode in MODES:
        assert f'id="{mode.replace(" ", "-")}"' in html
    assert "RANDOM WEIGHTS" in html


def test_samples_sharing_a_query_share_generate_calls(evaluated):
    _, _, vlm = evaluated
    stage1 = [queries for stage, queries in vlm.calls if stage == 1]
    assert ["School", "School"] in stage1  # s002 and s007 in one call (batch_size 4)
    assert all(len(set(q)) == 1 for q in stage1)
    assert sum(len(q) for q in stage1) == 7


def test_rerun_uses_the_cache_and_resumes_after_a_partial_run(evaluated, folder_data, tiny_config,
                                                              tiny_reasoner, tmp_path):
    out, first, _ = evaluated
    data = open_dataset(folder_data)
    again = evaluate_socioseg(data, tiny_config, out, reasoner=scripted(tiny_reasoner, Refuse()))
    assert (again.computed, again.reused) == (0, 7)
    assert [r.stage2 for r in again.records] == [r.stage2 for r in first.records]
    # A first run that stopped after 3 samples: the next one computes only the other 4.
    vlm = ScriptedVLM(tiny_reasoner.engine)
    part = evaluate_socioseg(data, tiny_config, tmp_path, reasoner=scripted(tiny_reasoner, vlm), limit=3)
    assert (part.computed, len(part.records)) == (3, 3)
    rest = evaluate_socioseg(data, tiny_config, tmp_path, reasoner=scripted(tiny_reasoner, vlm))
    assert (rest.computed, rest.reused) == (4, 3)
    forced = evaluate_socioseg(data, tiny_config, tmp_path, reasoner=scripted(tiny_reasoner, vlm), force=True,
                               limit=2)
    assert (forced.computed, forced.reused) == (2, 0)
    # Another reasoner identity (here: other decoding settings) is a cache miss.
    other = dataclasses.replace(tiny_config, max_new_tokens=13)
    changed = evaluate_socioseg(data, other, tmp_path, reasoner=scripted(tiny_reasoner, vlm), limit=1)
    assert (changed.computed, changed.reused) == (1, 0)
