"""`sociomap model` commands through click's CliRunner."""

from click.testing import CliRunner

from sociomap.cli.model import model
from sociomap.errors import ModelLoadError


def test_init_tiny_then_info(tmp_path):
    runner = CliRunner()
    result = runner.invoke(model, ["init-tiny", str(tmp_path / "ck"), "--sam-backend", "sa1"])
    assert result.exit_code == 0, result.output
    assert "RANDOM WEIGHTS" in result.output
    info = runner.invoke(model, ["info", str(tmp_path / "ck" / "vlm")])
    assert info.exit_code == 0, info.output
    assert "architecture: Qwen2_5_VLForConditionalGeneration" in info.output
    assert "random_init: true" in info.output and "dtype: F32" in info.output
    sam = runner.invoke(model, ["info", str(tmp_path / "ck" / "sam1.safetensors")])
    assert "architecture: segment-anything v1" in sam.output


def test_pull_without_network_raises_model_load_error():
    result = CliRunner().invoke(model, ["pull", "nobody/no-such-model-xyz"])
    assert isinstance(result.exception, ModelLoadError)
    assert "sociomap model pull" in str(result.exception)


def test_info_unknown_offline_raises_model_load_error():
    result = CliRunner().invoke(model, ["info", "nobody/no-such-model-xyz"])
    assert isinstance(result.exception, ModelLoadError)
