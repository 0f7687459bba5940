"""SocioSeg readers: the folder and Hugging Face parquet layouts give the same samples; tasks from queries."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sociomap.errors import InputError
from sociomap.evaluation.datasets import (
    FolderDataset,
    ParquetDataset,
    QueryInfo,
    classify_query,
    open_dataset,
    read_task_overrides,
)
from tests.evaluation.conftest import png, write_folder_layout, write_parquet_layout


def test_folder_and_parquet_layouts_read_the_same_samples(folder_data, parquet_data, samples):
    folders, parquet = open_dataset(folder_data), open_dataset(parquet_data)
    assert isinstance(folders, FolderDataset) and isinstance(parquet, ParquetDataset)
    assert len(folders) == len(parquet) == len(samples)
    for a, b, want in zip(folders, parquet, samples, strict=True):
        assert a.id == b.id == want.id and a.query == b.query == want.problem
        for x in (a, b):
            assert np.array_equal(x.satellite, want.satellite) and np.array_equal(x.map, want.map)
            assert np.array_equal(x.mask, want.mask > 0) and x.valid is None
    # The split folder itself and a single parquet file work too.
    assert len(open_dataset(folder_data / "test")) == len(samples)
    assert len(open_dataset(next((parquet_data / "data").glob("*.parquet")))) == len(samples)


@pytest.mark.parametrize("query, task, category, function", [
    ("Park and greenspace", "function", "Park and greenspace", "Park and greenspace"),
    ("educational", "function", "Educational", "Educational"),
    ("School", "class", "School", "Educational"),
    ("Temple", "class", "Temple", "Sport and cultural"),  # a taxonomy alias: the dataset's class name is kept
    ("Toll Station", "class", "Toll Station", None),  # named by the paper, not in the taxonomy
    ("Peach Blossom Park", "name", "socio-name", None),
    ("Wuhan University", "name", "socio-name", None),
    ("Kaivopuisto=park", "name", "socio-name", None),  # "=" is no pin syntax in a dataset query
])
def test_task_and_category_come_from_the_query(query, task, category, function):
    info = classify_query(query)
    assert (info.task, info.category) == (task, category)
    if function is not None or task != "class":
        assert info.function == function


def test_task_overrides_from_csv(tmp_path, folder_data):
    table = tmp_path / "tasks.csv"
    table.write_text("id,task,category,function\ns003,class,Park,Park and greenspace\n")
    overrides = read_task_overrides(table)
    assert overrides == {"s003": QueryInfo("class", "Park", "Park and greenspace")}
    infos = {s.id: s.info for s in open_dataset(folder_data, overrides=overrides)}
    assert infos["s003"] == QueryInfo("class", "Park", "Park and greenspace")
    assert infos["s002"].task == "class"
    table.write_text("id,task\ns003,landmark\n")
    with pytest.raises(InputError, match="tasks.csv:2"):
        read_task_overrides(table)


def test_ignore_value_removes_pixels_from_the_ground_truth(tmp_path, samples):
    sample = samples[1]
    mask = sample.mask.copy()
    mask[:10, :] = 200  # a band marked "ignore"
    marked = type(sample)(sample.id, sample.problem, sample.satellite, sample.map, mask)
    root = write_folder_layout(tmp_path, [marked])
    (read,) = list(open_dataset(root, ignore_value=200))
    assert not read.valid[:10].any() and read.valid[10:].all()
    assert not read.mask[:10].any() and np.array_equal(read.mask[10:], sample.mask[10:] > 0)
    (plain,) = list(open_dataset(root))
    assert plain.mask[:10].all()  # without --ignore-value every nonzero pixel is foreground (reference rule)


def test_parquet_split_selection_and_missing_columns(tmp_path, samples):
    root = write_parquet_layout(tmp_path / "hf", samples[:2], split="val")
    write_parquet_layout(tmp_path / "hf", samples[2:5], split="test")
    assert len(open_dataset(root, split="val")) == 2 and len(open_dataset(root)) == 3
    with pytest.raises(InputError, match="split 'train'"):
        open_dataset(root, split="train")
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = tmp_path / "bad" / "test-0.parquet"
    bad.parent.mkdir()
    pq.write_table(pa.table({"id": ["x"], "problem": ["Park"]}), bad)
    with pytest.raises(InputError, match="map_image"):
        open_dataset(bad)


def test_bad_inputs_name_the_file_and_the_fix(tmp_path, samples):
    with pytest.raises(InputError, match="hf download vvangfaye/SocioSeg"):
        open_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no SocioSeg samples"):
        open_dataset(tmp_path / "empty")
    root = write_folder_layout(tmp_path / "broken", samples[:1])
    (root / "test" / samples[0].id / "sat.png").write_bytes(png(np.zeros((50, 50, 3), np.uint8)))
    with pytest.raises(InputError, match="one square size"):
        list(open_dataset(root))
    (root / "test" / samples[0].id / "sat.png").write_bytes(png(samples[0].satellite))
    (root / "test" / samples[0].id / "question.json").write_text(json.dumps({"problem": "  "}))
    with pytest.raises(InputError, match="empty problem"):
        list(open_dataset(root))
    (root / "test" / samples[0].id / "mask.png").unlink()
    with pytest.raises(InputError, match="incomplete sample"):
        list(open_dataset(root))


def test_hub_id_not_downloaded_offline_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(InputError, match="hf download"):
        open_dataset("vvangfaye/SocioSeg", offline=True)
