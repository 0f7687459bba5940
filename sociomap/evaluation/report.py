"""sociomap.evaluation.report: summary tables of an evaluation (Markdown, CSV, JSON) and the per-sample CSV.

Rows: all samples, each task (name / class / function, the paper's Table 1 columns), each category (the class
or function a query names) and each socio-function, with sample counts; stage-1 and stage-2 metrics side by
side.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sociomap.evaluation.failures import FAILURE_IOU, MODES
from sociomap.evaluation.metrics import Summary, summarize

TASKS = ("name", "class", "function")
#: The paper's Table 1, SocioReasoner on the SocioSeg test split: cIoU / gIoU / F1 in %.
PAPER = {"name": (52.6, 55.7, 64.6), "class": (47.6, 52.8, 60.1), "function": (40.6, 46.9, 50.3),
         "all": (47.9, 52.8, 59.7)}
METRICS = ("ciou", "giou", "f1", "precision", "recall", "mf1")
NO_CONFIDENCE = "no confidence attribute"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's temporary files are 0600


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write a file under a temporary name in its folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class GroupRow:
    """Metrics of one group of samples: ``by`` all / task / category / function, ``name`` the group."""

    by: str
    name: str
    stage1: Summary
    stage2: Summary

    @property
    def n(self) -> int:
        """Samples in the group."""
        return self.stage2.n


def group_rows(records: Sequence[object]) -> list[GroupRow]:
    """All, per task (paper order), per category (by task, then most samples first) and per socio-function."""
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for r in records:
        groups[("task", r.info.task)].append(r)
        if r.info.task != "name":
            groups[("category", f"{r.info.task}: {r.info.category}")].append(r)
        if r.info.function:
            groups[("function", r.info.function)].append(r)
    tasks = [("task", t) for t in TASKS if ("task", t) in groups]
    categories = sorted((k for k in groups if k[0] == "category"),
                        key=lambda k: (TASKS.index(k[1].split(":")[0]), -len(groups[k]), k[1]))
    functions = sorted((k for k in groups if k[0] == "function"), key=lambda k: (-len(groups[k]), k[1]))
    ordered = [(("all", "all"), list(records))] + [(k, groups[k]) for k in tasks + categories + functions]
    return [GroupRow(by, name, summarize([r.stage1 for r in members]), summarize([r.stage2 for r in members]))
            for (by, name), members in ordered]


def failure_counts(records: Sequence[object]) -> dict[str, int]:
    """Samples per failure mode (stage-2 IoU < 0.1), every mode listed."""
    counts = Counter(r.failure for r in records if r.failure)
    return {mode: counts.get(mode, 0) for mode in MODES}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


CONFIDENCE_STEPS = tuple(i / 10 for i in range(10))


def sample_confidence_bins(records: Sequence[object], threshold: float) -> list[dict] | str:
    """For each t in 0.0, 0.1, ..., 0.9, the samples whose stage-2 mask has confidence >= t: how many, the share
    of them right (stage-2 IoU >= ``threshold``: precision) and the share of samples with a target found right
    among them (recall); NO_CONFIDENCE when no sample has a confidence (nothing found, or old cache entries)."""
    rated = [r for r in records if r.confidence is not None]
    if not rated:
        return NO_CONFIDENCE
    targets = sum(1 for r in records if r.gt_px > 0)
    bins = []
    for t in CONFIDENCE_STEPS:
        kept = [r for r in rated if r.confidence >= t]
        right = sum(1 for r in kept if r.gt_px > 0 and r.stage2.iou >= threshold)
        bins.append({"threshold": t, "kept": len(kept), "precision": right / len(kept) if kept else None,
                     "recall": right / targets if targets else None})
    return bins


def summary_json(evaluation: object, rows: Sequence[GroupRow]) -> dict:
    """The machine-readable report."""
    return {
        "dataset": evaluation.dataset,
        "identity": evaluation.identity,
        "random_weights": evaluation.random_weights,
        "counts": {"samples": len(evaluation.records), "computed": evaluation.computed,
                   "reused": evaluation.reused},
        "seconds": round(evaluation.seconds, 3),
        "definitions": {"iou_threshold": evaluation.threshold, "min_instance_px": evaluation.min_instance_px,
                        "failure_iou": FAILURE_IOU, "connectivity": 8},
        "groups": [{"by": r.by, "name": r.name, "n": r.n, "stage1": asdict(r.stage1),
                    "stage2": asdict(r.stage2)} for r in rows],
        "failures": failure_counts(evaluation.records),
        "confidence": sample_confidence_bins(evaluation.records, evaluation.threshold),
        "paper": {k: dict(zip(("ciou", "giou", "f1"), v, strict=True)) for k, v in PAPER.items()},
    }


def summary_csv(rows: Sequence[GroupRow]) -> str:
    """One line per group, stage-1 and stage-2 metrics as fractions."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["by", "name", "n", *(f"{s}_{m}" for s in ("stage1", "stage2") for m in METRICS)])
    for r in rows:
        values = [getattr(s, m) for s in (r.stage1, r.stage2) for m in METRICS]
        writer.writerow([r.by, r.name, r.n, *("" if v is None else f"{v:.6f}" for v in values)])
    return buf.getvalue()


def samples_csv(records: Sequence[object]) -> str:
    """One line per sample: its groups, both stages' IoU and instance counts, and its failure mode."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "query", "task", "category", "function", "stage1_iou", "stage2_iou", "stage1_tp",
                     "stage1_fp", "stage1_fn", "stage2_tp", "stage2_fp", "stage2_fn", "n_boxes", "gt_px",
                     "failure", "failure_detail"])
    for r in records:
        writer.writerow([r.id, r.query, r.info.task, r.info.category, r.info.function or "",
                         f"{r.stage1.iou:.6f}", f"{r.stage2.iou:.6f}", r.stage1.tp, r.stage1.fp, r.stage1.fn,
                         r.stage2.tp, r.stage2.fp, r.stage2.fn, r.n_boxes, r.gt_px, r.failure or "",
                         r.failure_detail])
    return buf.getvalue()


def _table(rows: Sequence[GroupRow], label: str) -> list[str]:
    head = f"| {label} | n | " + " | ".join(f"{s} {m}" for s in ("s1", "s2")
                                             for m in ("cIoU", "gIoU", "F1", "P", "R")) + " |"
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        cells = [_pct(getattr(s, m)) for s in (r.stage1, r.stage2)
                 for m in ("ciou", "giou", "f1", "precision", "recall")]
        lines.append(f"| {r.name} | {r.n} | " + " | ".join(cells) + " |")
    return lines


def summary_markdown(evaluation: object, rows: Sequence[GroupRow]) -> str:
    """The human-readable report: headline, per task / category / function tables, failure counts."""
    lines = [f"# SocioSeg evaluation: {evaluation.dataset}", ""]
    if evaluation.random_weights:
        lines += ["**RANDOM WEIGHTS: a random-initialised test checkpoint made these masks; the numbers are "
                  "meaningless.**", ""]
    ident = evaluation.identity
    lines += [f"Model `{ident.get('model')}` @ `{ident.get('model_revision')}`, SAM `{ident.get('sam')}`; "
              f"{len(evaluation.records)} samples ({evaluation.computed} computed, {evaluation.reused} "
              "cached).", "",
              "Metrics in %, stage 1 (s1, coarse mask) and stage 2 (s2, final mask). "
              "cIoU = total I / total U, gIoU = mean per-sample IoU (1 when both masks are empty), "
              f"F1 / P / R over instances (8-connected components > {evaluation.min_instance_px} px, matched "
              f"one-to-one at IoU >= {evaluation.threshold}). See docs/evaluation.md.", ""]
    headline = [r for r in rows if r.by in ("all", "task")]
    lines += _table(headline, "task")
    paper = " · ".join(f"{k} {'/'.join(map(str, v))}" for k, v in PAPER.items())
    lines += ["", f"Paper (Table 1, SocioReasoner-3B, test split, cIoU/gIoU/F1): {paper}.", ""]
    for by, title in (("category", "Per category"), ("function", "Per socio-function")):
        part = [r for r in rows if r.by == by]
        if part:
            lines += [f"## {title}", ""] + _table(part, by) + [""]
    counts = failure_counts(evaluation.records)
    lines += [f"## Failures (stage-2 IoU < {FAILURE_IOU})", "", "| mode | samples |", "|---|---|"]
    lines += [f"| {mode} | {n} |" for mode, n in counts.items()]
    bins = sample_confidence_bins(evaluation.records, evaluation.threshold)
    lines += ["", "## Confidence bins (stage 2)", ""]
    if isinstance(bins, str):
        return "\n".join(lines + [f"{bins}.", ""])
    lines += [f"A sample is right when its stage-2 IoU >= {evaluation.threshold}; confidence = SAM's predicted IoU "
              "x stage-1/stage-2 agreement (docs/merge.md).", "", "| confidence >= | kept | P | R |", "|---|---|---|---|"]
    lines += [f"| {b['threshold']:.1f} | {b['kept']} | {_pct(b['precision'])} | {_pct(b['recall'])} |" for b in bins]
    return "\n".join(lines + [""])


def write_report(out: Path, evaluation: object, gallery: object) -> list[Path]:
    """summary.{md,csv,json}, samples.csv and failures.html in ``out``; returns the paths."""
    out = Path(out)
    rows = group_rows(evaluation.records)
    data = summary_json(evaluation, rows)
    paths = [
        write_atomic(out / "summary.json", json.dumps(data, indent=2) + "\n"),
        write_atomic(out / "summary.csv", summary_csv(rows)),
        write_atomic(out / "summary.md", summary_markdown(evaluation, rows)),
        write_atomic(out / "samples.csv", samples_csv(evaluation.records)),
        write_atomic(out / "failures.html", gallery.html(evaluation, rows)),
    ]
    return paths


CITY_COLUMNS = ("layer", "n_model", "n_reference", "model_area_m2", "reference_area_m2", "intersection_m2",
                "area_iou", "area_precision", "area_recall", "tp", "fp", "fn", "precision", "recall", "f1")
CONFIDENCE_COLUMNS = ("threshold", "kept", "precision", "recall", "f1", "in_bin", "bin_precision")


def _cell(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    return buf.getvalue()


def city_markdown(result: object) -> str:
    """The human-readable city report: one row per socio-function, then the confidence tables."""
    lines = [f"# City evaluation: {result.run}", "",
             f"Reference: {result.reference}. Covered area {result.covered_m2 / 1e6:.3f} km²; objects "
             f"match at IoU >= {result.threshold}, one-to-one; reference features within one run pixel "
             f"({result.pixel_m:.2f} m) are one object. See docs/evaluation.md.", "",
             "| layer | model | reference | area IoU | area P | area R | TP | FP | FN | P | R | F1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in result.scores:
        cells = [s.layer, s.n_model, s.n_reference, *map(_pct, (s.area_iou, s.area_precision, s.area_recall)),
                 s.tp, s.fp, s.fn, *map(_pct, (s.precision, s.recall, s.f1))]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "Areas and ratios in %; disagreements: `disagreements.gpkg` (`<layer>_model_only`, "
              "`<layer>_reference_only`).", ""]
    if result.missing_reference:
        lines += [f"No reference layer for: {', '.join(result.missing_reference)}.", ""]
    for s in result.scores:
        lines += [f"## Confidence: {s.layer}", ""]
        if isinstance(s.confidence, str):
            lines += [f"{s.confidence}.", ""]
            continue
        lines += ["| confidence >= | kept | P | R | F1 | in bin | bin P |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {c.threshold:.1f} | {c.kept} | {_pct(c.precision)} | {_pct(c.recall)} | {_pct(c.f1)} | "
                  f"{c.in_bin} | {_pct(c.bin_precision)} |" for c in s.confidence] + [""]
    return "\n".join(lines)


def write_city_report(out: Path, result: object) -> list[Path]:
    """city.{json,md,csv} (+ city_confidence.csv when a layer has a confidence column) in ``out``."""
    data = {"run": result.run, "reference": result.reference, "covered_m2": result.covered_m2,
            "pixel_m": result.pixel_m, "iou_threshold": result.threshold, "min_area_m2": result.min_area_m2,
            "layers": [asdict(s) for s in result.scores], "missing_reference": result.missing_reference}
    paths = [write_atomic(out / "city.json", json.dumps(data, indent=2) + "\n"),
             write_atomic(out / "city.md", city_markdown(result)),
             write_atomic(out / "city.csv", _csv(CITY_COLUMNS, [[getattr(s, c) for c in CITY_COLUMNS]
                                                                 for s in result.scores]))]
    confidence = [[s.layer, *(getattr(c, k) for k in CONFIDENCE_COLUMNS)] for s in result.scores
                  if not isinstance(s.confidence, str) for c in s.confidence]
    if confidence:
        table = _csv(("layer", *CONFIDENCE_COLUMNS), confidence)
        paths.append(write_atomic(out / "city_confidence.csv", table))
    return paths
