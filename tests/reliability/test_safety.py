"""Safe loading: weights are tensors, never code. A pickle that would run a command is refused before it runs,
and the package builds no shell strings and never trusts a checkpoint's remote code."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

import sociomap
from tests.reliability.harness import TABLE, cli, error_line

PACKAGE = Path(sociomap.__file__).parent


class Payload:
    """Unpickling this runs ``touch MARKER``: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _evil_pickle(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"model": Payload(marker)}, path)
    return path


@pytest.mark.parametrize("where", ["sam-pth", "vlm-bin"])
def test_a_pickled_checkpoint_that_runs_code_is_refused_before_it_runs(where, tiny_checkpoint, utm_mosaic, map_4326,
                                                                        tmp_path):
    marker = tmp_path / "PWNED"
    vlm, sam = tiny_checkpoint / "vlm", tiny_checkpoint / "sam2"
    if where == "sam-pth":
        sam = _evil_pickle(tmp_path / "sam_vit_b.pth", marker)
    else:  # a model folder whose weights are a pickle (pytorch_model.bin) instead of safetensors
        vlm = tmp_path / "vlm"
        shutil.copytree(tiny_checkpoint / "vlm", vlm, ignore=shutil.ignore_patterns("*.safetensors*"))
        _evil_pickle(vlm / "pytorch_model.bin", marker)
    outcome = cli("run", utm_mosaic, "-c", "park", "-o", tmp_path / "out", "--map", map_4326, "--model", vlm,
                  "--sam", sam, "--workers", "0", "--tile-size", "112", "--no-pictures")
    TABLE.record(f"pickle-{where}", "safe loading",
                 {"sam-pth": "--sam is a .pth pickle that runs a command when unpickled",
                  "vlm-bin": "--model folder holds pytorch_model.bin (a pickle) instead of safetensors"}[where],
                 outcome.exit, error_line(outcome, tmp_path), "the command never ran" if not marker.exists()
                 else "THE COMMAND RAN")
    assert not marker.exists(), "the pickle's code ran"
    assert outcome.exit == 4 and len(outcome.error_lines) == 1, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr


def _calls(tree: ast.AST):
    return (n for n in ast.walk(tree) if isinstance(n, ast.Call))


def _name(func: ast.expr) -> str:
    return ast.unparse(func)


def _sources():
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(PACKAGE.rglob("*.py"))]


def test_no_shell_strings_and_no_remote_code_in_the_package():
    shell, remote, pickles = [], [], []
    for path, tree in _sources():
        where = str(path.relative_to(PACKAGE))
        for call in _calls(tree):
            name, kw = _name(call.func), {k.arg: k.value for k in call.keywords}
            if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
                shell.append(f"{where}:{call.lineno} {name}")
            if "shell" in kw and not (isinstance(kw["shell"], ast.Constant) and kw["shell"].value is False):
                shell.append(f"{where}:{call.lineno} shell=")
            if name.startswith("subprocess.") and call.args and not isinstance(call.args[0], (ast.List, ast.Name)):
                shell.append(f"{where}:{call.lineno} {name} with a string command")
            if "trust_remote_code" in kw:
                remote.append(f"{where}:{call.lineno}")
            if name.endswith("torch.load") and not (isinstance(kw.get("weights_only"), ast.Constant)
                                                      and kw["weights_only"].value is True):
                pickles.append(f"{where}:{call.lineno}")
            if name in ("pickle.load", "pickle.loads"):
                pickles.append(f"{where}:{call.lineno} {name}")
    TABLE.record("code-scan", "safe loading", "the package's code, scanned: shell strings, trust_remote_code, "
                 "torch.load without weights_only, pickle.load", "-",
                 f"{len(shell)} shell string(s), {len(remote)} trust_remote_code, {len(pickles)} unsafe load(s)",
                 "nothing")
    assert shell == [] and remote == [] and pickles == [], (shell, remote, pickles)
