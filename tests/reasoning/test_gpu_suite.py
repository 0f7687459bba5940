"""benchmarks/gpu_suite.py keeps working where no GPU is: its whole code path on tiny models on CPU."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import subprocess_env

SUITE = Path(__file__).parents[2] / "benchmarks" / "gpu_suite.py"


def test_gpu_suite_runs_on_cpu_with_tiny_models(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(SUITE), "--tiny", "--device", "cpu", "--tile-size", "112",
                           "--new-tokens", "4", "--batches", "1,4", "--naive-samples", "2", "--out", str(out)],
                          env=subprocess_env(HF_HUB_OFFLINE="1"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["path"], r["batch"]) for r in rows] == [("naive", 1), ("engine", 1), ("engine", 4)]
    assert all(r["samples_per_s"] > 0 for r in rows) and "vs naive" in proc.stdout
