"""One run per output directory."""

import subprocess
import sys
import textwrap

import pytest

from sociomap.errors import RunLockedError
from sociomap.pipeline.lock import output_lock
from tests.conftest import subprocess_env


def test_second_holder_is_refused_and_lock_frees_on_exit(tmp_path):
    with output_lock(tmp_path / ".sociomap"):
        with pytest.raises(RunLockedError, match="another sociomap run"):
            with output_lock(tmp_path / ".sociomap"):
                pass
    with output_lock(tmp_path / ".sociomap"):  # released: can take it again
        pass


def test_lock_of_a_killed_process_is_released(tmp_path):
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from sociomap.pipeline.lock import output_lock
        with output_lock(Path({str(tmp_path / '.sociomap')!r})):
            os._exit(9)   # dies holding the lock, no cleanup
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=subprocess_env(), capture_output=True)
    assert proc.returncode == 9
    with output_lock(tmp_path / ".sociomap"):
        pass
