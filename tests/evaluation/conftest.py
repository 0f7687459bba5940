"""SocioSeg-format fixtures built on the fly: a few samples with real-looking images and masks, written in the
folder layout and as Hugging Face parquet, plus the tiny reasoner config."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

SIZE = 112  # the tiny model's input size (smart_resize keeps 112); SocioSeg itself is 768


@dataclass(frozen=True)
class FixtureSample:
    id: str
    problem: str
    satellite: np.ndarray
    map: np.ndarray
    mask: np.ndarray  # uint8 0/255 (255 also used as the ignore value in one test)


# id, problem, ground-truth shapes (polygons in pixels); one sample with two instances, one with none.
SPECS = [
    ("s001", "Park and greenspace", [[(20, 18), (70, 14), (88, 50), (60, 80), (18, 66)]]),
    ("s002", "School", [[(30, 30), (80, 30), (80, 70), (30, 70)]]),
    ("s003", "Peach Blossom Park", [[(10, 60), (50, 60), (50, 100), (10, 100)]]),
    ("s004", "Hospital", [[(8, 8), (40, 8), (40, 36), (8, 36)],
                          [(64, 64), (100, 64), (100, 104), (64, 104)]]),
    ("s005", "Toll Station", [[(50, 10), (76, 10), (76, 30), (50, 30)]]),
    ("s006", "Educational", [[(20, 20), (90, 20), (90, 40), (40, 40), (40, 90), (20, 90)]]),
    ("s007", "School", []),
]


def _satellite(rng: np.random.Generator) -> np.ndarray:
    """Green-grey texture with two light roads, like an aerial image."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    base = np.stack([90 + 30 * np.sin(xx / 9), 110 + 25 * np.cos(yy / 7), 80 + 20 * np.sin((xx + yy) / 11)],
                    -1)
    img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    img[50:56, :] = (200, 200, 195)
    img[:, 44:49] = (205, 203, 198)
    return img


def _map(rng: np.random.Generator, shapes: list) -> np.ndarray:
    """A light map with roads, the target area filled and a POI dot, like the SocioSeg map tiles."""
    image = Image.new("RGB", (SIZE, SIZE), (242, 239, 233))
    draw = ImageDraw.Draw(image)
    for shape in shapes:
        draw.polygon(shape, fill=(205, 235, 200))
    draw.rectangle([0, 50, SIZE, 55], fill=(255, 255, 255), outline=(200, 190, 170))
    draw.rectangle([44, 0, 48, SIZE], fill=(255, 220, 140))
    x, y = (int(v) for v in rng.integers(10, SIZE - 10, 2))
    draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(60, 120, 200))
    return np.asarray(image)


def _mask(shapes: list) -> np.ndarray:
    image = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(image)
    for shape in shapes:
        draw.polygon(shape, fill=255)
    return np.asarray(image)


def fixture_samples() -> list[FixtureSample]:
    """The SocioSeg-format fixture samples (deterministic)."""
    out = []
    for i, (sid, problem, shapes) in enumerate(SPECS):
        rng = np.random.default_rng(i)
        out.append(FixtureSample(sid, problem, _satellite(rng), _map(rng, shapes), _mask(shapes)))
    return out


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_folder_layout(root: Path, samples: list[FixtureSample], split: str = "test") -> Path:
    """root/<split>/<id>/{map.png, sat.png, mask.png, question.json} (the reference's SocioSegDataset)."""
    for s in samples:
        d = root / split / s.id
        d.mkdir(parents=True)
        (d / "map.png").write_bytes(png(s.map))
        (d / "sat.png").write_bytes(png(s.satellite))
        (d / "mask.png").write_bytes(png(s.mask))
        (d / "question.json").write_text(json.dumps({"problem": s.problem}))
    return root


def write_parquet_layout(root: Path, samples: list[FixtureSample], split: str = "test") -> Path:
    """root/data/<split>-00000-of-00001.parquet with datasets.Image-style {bytes, path} struct columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("id", pa.string()), ("problem", pa.string()), ("map_image", image),
                        ("sat_image", image), ("mask_label", image)])
    rows = {"id": [s.id for s in samples], "problem": [s.problem for s in samples],
            "map_image": [{"bytes": png(s.map), "path": f"{s.id}/map.png"} for s in samples],
            "sat_image": [{"bytes": png(s.satellite), "path": f"{s.id}/sat.png"} for s in samples],
            "mask_label": [{"bytes": png(s.mask), "path": f"{s.id}/mask.png"} for s in samples]}
    (root / "data").mkdir(parents=True, exist_ok=True)
    path = root / "data" / f"{split}-00000-of-00001.parquet"
    pq.write_table(pa.table(rows, schema=schema), path, row_group_size=3)
    return root


@pytest.fixture(scope="session")
def samples() -> list[FixtureSample]:
    return fixture_samples()


@pytest.fixture(scope="session")
def folder_data(tmp_path_factory: pytest.TempPathFactory, samples: list[FixtureSample]) -> Path:
    return write_folder_layout(tmp_path_factory.mktemp("socioseg_folders"), samples)


@pytest.fixture(scope="session")
def parquet_data(tmp_path_factory: pytest.TempPathFactory, samples: list[FixtureSample]) -> Path:
    return write_parquet_layout(tmp_path_factory.mktemp("socioseg_parquet"), samples)


@pytest.fixture(scope="session")
def tiny_config(tiny_checkpoint: Path):
    """Greedy, short generations on the tiny random checkpoint (the shared session fixture)."""
    from sociomap.reasoning import ReasonerConfig

    return ReasonerConfig(model=str(tiny_checkpoint / "vlm"), sam=str(tiny_checkpoint / "sam2"), greedy=True,
                          max_new_tokens=12, offline=True, device="cpu", batch_size=4)
