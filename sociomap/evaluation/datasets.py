"""sociomap.evaluation.datasets: SocioSeg-format samples from disk, one at a time (docs/evaluation.md).

Two layouts, as the reference reads them (AMAP-ML/SocioReasoner roll/datasets/dataset.py, infer pipeline):

- folders: ``DATA/<split>/<id>/{map.png, sat.png, mask.png, question.json}`` with ``question.json`` =
  ``{"problem": ...}`` (``DATA`` may also be the split folder itself);
- the Hugging Face dataset ``vvangfaye/SocioSeg`` once downloaded: parquet files with columns ``id, problem,
  map_image, sat_image, mask_label``, each image a ``{bytes, path}`` struct (the ``datasets.Image`` feature).

The mask is read as the reference does (PIL ``convert("L")``, foreground = pixel > 0); ``ignore_value`` marks
pixels excluded from every metric. Each sample's task (name / class / function) and category come from its
query (``classify_query``), or from a ``--tasks`` CSV where the query alone cannot tell.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from sociomap.errors import InputError
from sociomap.taxonomy import PAPER_CLASSES

Task = Literal["name", "class", "function"]
COLUMNS = ("id", "problem", "map_image", "sat_image", "mask_label")
HF_DATASET = "vvangfaye/SocioSeg"
_DOWNLOAD = f"hf download {HF_DATASET} --repo-type dataset --local-dir SocioSeg"

# The SocioSeg data's class names: the paper's 82 (sociomap.taxonomy.PAPER_CLASSES) and a few more seen in its
# question texts. This list only lets a class query that the taxonomy lacks count as the class task.
SOCIOSEG_CLASSES = (*PAPER_CLASSES, "Others", "Gymnasium", "Playground", "Express Delivery")


@dataclass(frozen=True)
class QueryInfo:
    """What a query asks for: its task, the category it is reported under, and its socio-function if known."""

    task: Task
    category: str
    function: str | None


@dataclass(frozen=True)
class Sample:
    """One SocioSeg sample; images (H, W, 3) uint8 RGB, masks (H, W) bool on the same grid."""

    id: str
    query: str
    map: np.ndarray
    satellite: np.ndarray
    mask: np.ndarray  # ground truth foreground
    valid: np.ndarray | None  # False where the ground truth holds the ignore value; None = every pixel counts
    info: QueryInfo


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.casefold()).split())


_KNOWN_CLASSES = {_norm(c): c for c in SOCIOSEG_CLASSES}


def classify_query(query: str) -> QueryInfo:
    """Task and category of a SocioSeg query, decided from its text against sociomap's taxonomy.

    A socio-function name or alias is the function task (category: the function). A socio-class name or
    alias of the taxonomy, or a class the paper names, is the class task (category: the query's own class
    name, function: the taxonomy's). Anything else is a socio-name (category "socio-name", function unknown).
    """
    from sociomap.taxonomy import find_query

    text = query.strip()
    resolved = find_query(text) if text else None
    if resolved is not None and resolved.kind == "function":
        return QueryInfo("function", resolved.function, resolved.function)
    if resolved is not None and resolved.kind == "class":
        return QueryInfo("class", _KNOWN_CLASSES.get(_norm(text), text), resolved.function)
    if _norm(text) in _KNOWN_CLASSES:
        return QueryInfo("class", _KNOWN_CLASSES[_norm(text)], None)
    return QueryInfo("name", "socio-name", None)


def read_task_overrides(path: Path) -> dict[str, QueryInfo]:
    """``id,task[,category[,function]]`` rows (header required) -> per-sample QueryInfo overrides."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the --tasks CSV ({exc})") from exc
    out = {}
    for line, row in enumerate(rows, start=2):
        task = (row.get("task") or "").strip()
        if not row.get("id") or task not in ("name", "class", "function"):
            raise InputError(f"{path}:{line}: need columns id,task[,category,function] with task name, class "
                             f"or function; got {dict(row)}")
        category = (row.get("category") or "").strip() or ("socio-name" if task == "name" else "unknown")
        out[row["id"].strip()] = QueryInfo(task, category, (row.get("function") or "").strip() or None)
    return out


def _decode_rgb(data: bytes, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{where}: not a readable image ({exc})") from exc


def _decode_mask(data: bytes, where: str, ignore_value: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            gray = np.asarray(img.convert("L"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{where}: not a readable mask image ({exc})") from exc
    if ignore_value is None:
        return gray > 0, None
    valid = gray != ignore_value
    return (gray > 0) & valid, valid


def make_sample(sample_id: str, query: str, map_png: bytes, sat_png: bytes, mask_png: bytes, where: str,
                ignore_value: int | None, info: QueryInfo | None = None) -> Sample:
    """Decode one sample's three images; sizes must agree (the reference compares masks pixel for pixel)."""
    map_rgb = _decode_rgb(map_png, f"{where} map")
    sat_rgb = _decode_rgb(sat_png, f"{where} satellite")
    mask, valid = _decode_mask(mask_png, f"{where} mask", ignore_value)
    square = mask.shape[0] == mask.shape[1]
    if not (map_rgb.shape == sat_rgb.shape and mask.shape == sat_rgb.shape[:2] and square):
        raise InputError(f"{where}: map {map_rgb.shape[:2]}, satellite {sat_rgb.shape[:2]} and mask "
                         f"{mask.shape} must be one square size")
    if not query.strip():
        raise InputError(f"{where}: empty problem (query) text")
    return Sample(sample_id, query, map_rgb, sat_rgb, mask, valid, info or classify_query(query))


class FolderDataset:
    """``<split folder>/<id>/{map.png, sat.png, mask.png, question.json}``, samples in id order."""

    def __init__(self, root: Path, ignore_value: int | None = None,
                 overrides: Mapping[str, QueryInfo] | None = None) -> None:
        self.root, self.ignore_value, self.overrides = Path(root), ignore_value, dict(overrides or {})
        self.dirs = sorted(d for d in self.root.iterdir() if (d / "question.json").is_file())

    def __len__(self) -> int:
        return len(self.dirs)

    def describe(self) -> str:
        """One line for reports."""
        return f"SocioSeg folders {self.root} ({len(self)} samples)"

    def __iter__(self) -> Iterator[Sample]:
        for d in self.dirs:
            try:
                problem = json.loads((d / "question.json").read_text("utf-8")).get("problem", "")
                images = [(d / name).read_bytes() for name in ("map.png", "sat.png", "mask.png")]
            except (OSError, ValueError, AttributeError) as exc:
                raise InputError(f"{d}: incomplete sample; need map.png, sat.png, mask.png and question.json "
                                 f"with a 'problem' ({exc})") from exc
            yield make_sample(d.name, str(problem), *images, where=str(d), ignore_value=self.ignore_value,
                              info=self.overrides.get(d.name))


class ParquetDataset:
    """The Hugging Face layout: parquet files with ``id, problem, map_image, sat_image, mask_label``."""

    def __init__(self, files: list[Path], ignore_value: int | None = None,
                 overrides: Mapping[str, QueryInfo] | None = None, rows_per_read: int = 64) -> None:
        import pyarrow.parquet as pq

        self.files, self.ignore_value, self.overrides = list(files), ignore_value, dict(overrides or {})
        self.rows_per_read = rows_per_read
        self._rows = 0
        for f in self.files:
            try:
                meta = pq.ParquetFile(f)
            except Exception as exc:  # pyarrow raises ArrowInvalid/OSError variants
                raise InputError(f"{f}: not a readable parquet file ({exc})") from exc
            missing = [c for c in COLUMNS if c not in meta.schema_arrow.names]
            if missing:
                raise InputError(f"{f}: lacks SocioSeg columns {missing} (has {meta.schema_arrow.names})")
            self._rows += meta.metadata.num_rows

    def __len__(self) -> int:
        return self._rows

    def describe(self) -> str:
        """One line for reports."""
        return f"SocioSeg parquet {', '.join(f.name for f in self.files)} ({len(self)} samples)"

    def __iter__(self) -> Iterator[Sample]:
        import pyarrow.parquet as pq

        for f in self.files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=self.rows_per_read, columns=list(COLUMNS)):
                for row in batch.to_pylist():
                    where = f"{f.name} id {row['id']}"
                    images = [_image_bytes(row[c], f, where) for c in COLUMNS[2:]]
                    sample_id = str(row["id"])
                    yield make_sample(sample_id, str(row["problem"] or ""), *images, where=where,
                                      ignore_value=self.ignore_value, info=self.overrides.get(sample_id))


def _image_bytes(cell: object, parquet: Path, where: str) -> bytes:
    """The PNG bytes of a ``datasets.Image`` cell: embedded bytes, else the file at its path."""
    if isinstance(cell, dict) and cell.get("bytes"):
        return cell["bytes"]
    path = Path(cell["path"]) if isinstance(cell, dict) and cell.get("path") else None
    for candidate in (path, parquet.parent / path if path else None):
        if candidate is not None and candidate.is_file():
            return candidate.read_bytes()
    raise InputError(f"{where}: image cell has neither bytes nor a readable path ({str(cell)[:80]})")


def _parquet_files(root: Path, split: str) -> list[Path] | None:
    """Parquet files of ``split`` under root (``test-*.parquet``, ``test/*.parquet``...), None if none."""
    files = sorted(root.rglob("*.parquet"))
    if not files:
        return None
    chosen = [f for f in files if f.stem == split or f.stem.startswith(f"{split}-") or f.parent.name == split]
    if not chosen:
        found = ", ".join(f.name for f in files)
        raise InputError(f"{root}: no parquet files of split {split!r} (found {found}); pass --split")
    return chosen


def _snapshot(repo_id: str, offline: bool) -> Path:
    """A local copy of a Hugging Face dataset repo (downloaded unless offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=offline,
                                      allow_patterns=["*.parquet", "*.md", "*.json"]))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        raise InputError(f"{repo_id}: dataset not available{' offline' if offline else ''} ({exc}); "
                         f"download it with `{_DOWNLOAD}` and pass the folder") from exc


def open_dataset(data: str | Path, split: str = "test", ignore_value: int | None = None,
                 overrides: Mapping[str, QueryInfo] | None = None,
                 offline: bool = False) -> FolderDataset | ParquetDataset:
    """Open SocioSeg data: a folder layout, parquet files (a file or a folder), or a hub id such as
    ``vvangfaye/SocioSeg`` (read from the local Hugging Face cache, downloaded first unless ``offline``)."""
    path = Path(data)
    if not path.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", str(data)):
        path = _snapshot(str(data), offline)
    if path.is_file() and path.suffix == ".parquet":
        return ParquetDataset([path], ignore_value, overrides)
    if not path.is_dir():
        raise InputError(f"{data}: no such SocioSeg folder or parquet file; get the data with `{_DOWNLOAD}`")
    files = _parquet_files(path, split)
    if files:
        return ParquetDataset(files, ignore_value, overrides)
    for root in (path / split, path):
        if root.is_dir() and any((d / "question.json").is_file() for d in root.iterdir()):
            return FolderDataset(root, ignore_value, overrides)
    raise InputError(f"{path}: no SocioSeg samples (expected {split}/<id>/{{map.png,sat.png,mask.png,"
                     f"question.json}} or {split}-*.parquet); get the data with `{_DOWNLOAD}`")
