"""`sociomap reasoning`: the model's stored texts behind a feature."""

import json
import sqlite3

from sociomap.cli import cli


def test_stored_model_texts_can_be_read_back(runner, utm_mosaic, map_4326, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    args = ["run", str(utm_mosaic), "-c", "park", "-o", str(out), "--map", str(map_4326), "--model",
            str(tiny_checkpoint / "vlm"), "--sam", str(tiny_checkpoint / "sam2"), "--greedy", "--max-new-tokens", "12",
            "--zoom", "15", "--tile-size", "256", "--workers", "0"]
    assert runner.invoke(cli, args).exit_code == 0
    with sqlite3.connect(out / ".sociomap" / "cache.sqlite") as db:  # every model result has its texts
        pointers = sorted(key for (key,) in db.execute("SELECT key FROM results"))
    assert pointers
    result = runner.invoke(cli, ["reasoning", str(out), ";".join(pointers[:2])])
    assert result.exit_code == 0, result.output
    assert result.output.count('"stage1_text"') == min(2, len(pointers)) and '"stage2_text"' in result.output
    first = json.loads(result.output[: result.output.index("}\n") + 1])
    assert first["pointer"] == pointers[0] and isinstance(first["boxes"], list)


def test_unknown_pointer_is_exit_3(runner, tmp_path):
    result = runner.invoke(cli, ["reasoning", str(tmp_path), "0" * 64])
    assert result.exit_code == 3 and "no cache entry" in result.output
