"""Missing or wrong weights give ModelLoadError with the fix; random weights are announced loudly."""

import dataclasses
import logging
import shutil

import pytest

from sociomap.errors import ModelLoadError
from sociomap.reasoning import ReasonerConfig, load_reasoner


def test_offline_unknown_hub_id_says_how_to_get_it(tiny_config):
    config = dataclasses.replace(tiny_config, model="nobody/no-such-model-xyz", offline=True)
    with pytest.raises(ModelLoadError, match=r"sociomap model pull nobody/no-such-model-xyz"):
        load_reasoner(config)


def test_default_models_offline_without_cache_fail_cleanly():
    with pytest.raises(ModelLoadError, match="offline"):
        load_reasoner(ReasonerConfig(offline=True, device="cpu"))


def test_missing_local_folder(tiny_config, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_reasoner(dataclasses.replace(tiny_config, model=str(tmp_path / "nope")))


def test_folder_without_weights(tiny_config, tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load Qwen2.5-VL weights"):
        load_reasoner(dataclasses.replace(tiny_config, model=str(tmp_path)))


def test_vlm_folder_given_as_sam(tiny_config, tiny_dir):
    with pytest.raises(ModelLoadError, match="Sam2Model or SamModel"):
        load_reasoner(dataclasses.replace(tiny_config, sam=str(tiny_dir / "vlm")))


def test_random_weights_warning(tiny_config, caplog):
    with caplog.at_level(logging.WARNING, logger="sociomap.reasoning"):
        load_reasoner(tiny_config)
    assert "RANDOM WEIGHTS: outputs are meaningless" in caplog.text


@pytest.mark.parametrize("part", ["vlm", "sam2"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_safetensors_is_a_weights_error(tiny_dir, tiny_config, tmp_path, part, damage):
    broken = tmp_path / part
    shutil.copytree(tiny_dir / part, broken)
    weights = broken / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * 64)
    field = "model" if part == "vlm" else "sam"
    with pytest.raises(ModelLoadError, match=r"SafetensorError.*re-download|cannot load .*SafetensorError"):
        load_reasoner(dataclasses.replace(tiny_config, **{field: str(broken)}))
