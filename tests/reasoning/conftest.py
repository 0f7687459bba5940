"""Tiny random checkpoints (built once per session) and small tiles for the reasoning tests."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from sociomap.reasoning import ReasonerConfig, TilePair, build_tiny_checkpoint, load_reasoner
from sociomap.reasoning.tiny import TINY_SAM_DIRS
from tests.conftest import subprocess_env


@pytest.fixture(scope="session", autouse=True)
def _quiet_hub(tmp_path_factory):
    """No progress bars, never the network, one torch thread (OpenMP spin-waits make a shared 2-core box 5x
    slower with two)."""
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Tiny VLM + HF Sam2 folder."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), "sam2")


@pytest.fixture(scope="session")
def tiny_config(tiny_dir):
    """Greedy, short-generation config on the tiny checkpoint."""
    return ReasonerConfig(model=str(tiny_dir / "vlm"), sam=str(tiny_dir / TINY_SAM_DIRS["sam2"]), greedy=True,
                          max_new_tokens=8, offline=True, device="cpu")


@pytest.fixture(scope="session")
def reasoner(tiny_config):
    """The loaded tiny reasoner (shared; tests must not mutate it)."""
    return load_reasoner(tiny_config)


def make_tiles(n: int, size: int = 112, seed: int = 0) -> list[TilePair]:
    """n random tile pairs of size x size."""
    rng = np.random.default_rng(seed)
    return [TilePair(rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                     rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


SERVER = Path(__file__).with_name("openai_server.py")
# What the answering tiny VLM replies to every prompt (model-input pixels of a 256 px tile: 252).
ANSWER = '<think>a park</think><answer>[{"bbox_2d": [30, 40, 200, 210], "points": [[100, 110], [150, 160]]}]</answer>'


@pytest.fixture(scope="session")
def answer_dir(tmp_path_factory):
    """Tiny VLM that always answers ANSWER (greedy) + HF Sam2: non-empty masks end to end."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("answering"), "sam2", answer=ANSWER)


@contextmanager
def openai_server(model_dir: Path, *args: str, name: str = "tiny") -> Iterator[tuple[str, subprocess.Popen]]:
    """Start tests/reasoning/openai_server.py on 127.0.0.1, a free port; yield (base URL, process); stop it."""
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, str(SERVER), str(model_dir), "--served-model-name", name, *args],
                            stdout=subprocess.PIPE, stderr=log, text=True, env=subprocess_env(HF_HUB_OFFLINE="1"))
    try:
        line = proc.stdout.readline()
        if not line.startswith("READY "):
            log.seek(0)
            raise RuntimeError(f"test server did not start: {line!r} {log.read()[-3000:]}")
        yield line.split()[1], proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
