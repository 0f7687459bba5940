"""`sociomap eval socioseg` end to end with the tiny random model, on the folder and parquet fixtures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sociomap.cli import cli
from sociomap.evaluation import classify_query
from tests.conftest import subprocess_env
from tests.evaluation.independent import read_samples_csv, recompute_from_outputs


def tiny_args(tiny_checkpoint) -> list[str]:
    return ["--model", str(tiny_checkpoint / "vlm"), "--sam", str(tiny_checkpoint / "sam2"), "--greedy",
            "--max-new-tokens", "12", "--device", "cpu", "--offline", "--batch-size", "4"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, folder_data, tiny_checkpoint):
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("cli_eval")
    result = CliRunner().invoke(cli, ["eval", "socioseg", str(folder_data), "--out", str(out),
                                      *tiny_args(tiny_checkpoint)])
    return out, result


def test_writes_a_complete_report_that_matches_the_masks(cli_run, samples):
    out, result = cli_run
    assert result.exit_code == 0, result.output
    assert "RANDOM WEIGHTS" in result.output and "7 samples (7 computed, 0 cached)" in result.output
    for name in ("summary.md", "summary.csv", "summary.json", "samples.csv", "failures.html"):
        assert (out / name).stat().st_size > 0
    for stage in ("stage1", "stage2"):
        assert sorted(p.stem for p in (out / "masks" / stage).glob("*.png")) == [s.id for s in samples]
    expected = recompute_from_outputs(out, samples, classify_query)
    summary = json.loads((out / "summary.json").read_text())
    groups = {(g["by"], g["name"]): g for g in summary["groups"]}
    for key in (("all", "all"), ("task", "name"), ("task", "class"), ("task", "function")):
        for stage in ("stage1", "stage2"):
            for metric, value in expected[key][stage].items():
                assert groups[key][stage][metric] == pytest.approx(value)
    rows = read_samples_csv(out)
    assert {s.id: float(rows[s.id]["stage2_iou"]) for s in samples} == pytest.approx(
        {s.id: expected[("sample", s.id)]["stage2"]["iou"] for s in samples})
    # Every sample is in one breakdown row per kind, with its count.
    assert groups[("category", "class: School")]["n"] == 2
    assert groups[("function", "Educational")]["n"] == 3  # School x2 (class) + Educational (function)
    assert summary["counts"] == {"samples": 7, "computed": 7, "reused": 0}
    md = (out / "summary.md").read_text()
    assert "| all | 7 |" in md and "## Per category" in md and "## Failures" in md
    header = (out / "summary.csv").read_text().splitlines()[0]
    assert header.startswith("by,name,n,stage1_ciou,stage1_giou,stage1_f1")
    failed = sum(1 for r in rows.values() if r["failure"])
    assert (out / "failures.html").read_text().count('class="card"') == failed


def test_second_run_reuses_everything_and_parquet_hits_the_same_cache(cli_run, parquet_data, tiny_checkpoint,
                                                                      runner):
    out, first = cli_run
    before = (out / "summary.json").read_text()
    result = runner.invoke(cli, ["eval", "socioseg", str(parquet_data), "--out", str(out),
                                 *tiny_args(tiny_checkpoint)])
    assert result.exit_code == 0, result.output
    assert "7 samples (0 computed, 7 cached)" in result.output
    a, b = json.loads(before), json.loads((out / "summary.json").read_text())
    assert a["groups"] == b["groups"]


def test_reasoner_options_from_a_toml_config(cli_run, folder_data, tiny_checkpoint, runner, tmp_path):
    out, _ = cli_run
    config = tmp_path / "eval.toml"
    config.write_text(f'[socioseg]\nmodel = "{tiny_checkpoint / "vlm"}"\nsam = "{tiny_checkpoint / "sam2"}"\n'
                      'greedy = true\nmax-new-tokens = 12\ndevice = "cpu"\noffline = true\nbatch-size = 4\n')
    args = ["eval", "socioseg", str(folder_data), "--out", str(out), "--config", str(config)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "7 samples (0 computed, 7 cached)" in result.output  # the same reasoner identity as the options


def test_bad_data_is_exit_3_with_the_fix(runner, tmp_path, tiny_checkpoint):
    result = runner.invoke(cli, ["eval", "socioseg", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                                 *tiny_args(tiny_checkpoint)])
    assert result.exit_code == 3 and "hf download vvangfaye/SocioSeg" in result.output
    assert not (tmp_path / "o").exists()


def test_an_evaluation_in_progress_locks_its_output(runner, folder_data, tiny_checkpoint, tmp_path):
    from sociomap.pipeline.lock import output_lock

    with output_lock(tmp_path / "o" / ".sociomap"):
        result = runner.invoke(cli, ["eval", "socioseg", str(folder_data), "--out", str(tmp_path / "o"),
                                     *tiny_args(tiny_checkpoint)])
    assert result.exit_code == 5 and "another sociomap run" in result.output
    assert not (tmp_path / "o" / "summary.json").exists()


def test_missing_weights_is_exit_4(runner, folder_data, tmp_path):
    result = runner.invoke(cli, ["eval", "socioseg", str(folder_data), "--out", str(tmp_path / "o"),
                                 "--model", "nobody/no-such-model", "--offline"])
    assert result.exit_code == 4 and "no-such-model" in result.output


def test_every_reasoner_field_is_an_option():
    import dataclasses

    import click

    from sociomap.cli.eval import socioseg
    from sociomap.reasoning import ReasonerConfig

    names = {p.name for p in socioseg.get_params(click.Context(socioseg))}
    assert {f.name for f in dataclasses.fields(ReasonerConfig)} <= names


def test_group_help_imports_no_model_stack():
    code = ("import sys; from sociomap.cli import cli\n"
            "try:\n    cli(['eval', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'geopandas' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "socioseg" in proc.stdout and "city" in proc.stdout
