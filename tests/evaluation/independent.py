"""Metrics recomputed a second, independent way (OpenCV components, brute-force pairs) to check reports."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def read_png_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 0


def instances(mask: np.ndarray, min_px: int = 10) -> list[np.ndarray]:
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    parts = [labels == i for i in range(1, n)]
    return [p for p in parts if p.sum() > min_px]


def sample_counts(pred: np.ndarray, gt: np.ndarray) -> dict:
    """I, U, IoU and TP/FP/FN: disjoint components can pair at IoU >= 0.5 only one way, so count the pairs."""
    inter, union = int((pred & gt).sum()), int((pred | gt).sum())
    p, g = instances(pred), instances(gt)
    tp = sum(1 for a in p for b in g if (a & b).sum() / (a | b).sum() >= 0.5)
    return {"I": inter, "U": union, "iou": 1.0 if union == 0 else inter / union, "tp": tp, "fp": len(p) - tp,
            "fn": len(g) - tp}


def set_metrics(counts: list[dict]) -> dict:
    inter, union = sum(c["I"] for c in counts), sum(c["U"] for c in counts)
    tp, fp, fn = (sum(c[k] for c in counts) for k in ("tp", "fp", "fn"))
    return {"ciou": 1.0 if union == 0 else inter / union, "giou": float(np.mean([c["iou"] for c in counts])),
            "f1": 1.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)}


def recompute_from_outputs(out: Path, samples: list, classify) -> dict[tuple[str, str], dict[str, dict]]:
    """{(by, name): {stage: metrics}} from the mask PNGs the evaluation wrote and the fixture's truth."""
    per_stage: dict[str, dict[str, dict]] = {"stage1": {}, "stage2": {}}
    for s in samples:
        for stage in per_stage:
            pred = read_png_mask(out / "masks" / stage / f"{s.id}.png")
            per_stage[stage][s.id] = sample_counts(pred, s.mask > 0)
    groups: dict[tuple[str, str], list[str]] = {("all", "all"): [s.id for s in samples]}
    for s in samples:
        groups.setdefault(("task", classify(s.problem).task), []).append(s.id)
    return {key: {stage: set_metrics([per_stage[stage][i] for i in ids]) for stage in per_stage}
            for key, ids in groups.items()} | {("sample", s.id): {st: per_stage[st][s.id] for st in per_stage}
                                               for s in samples}


def read_samples_csv(out: Path) -> dict[str, dict]:
    with open(out / "samples.csv", newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f)}
