"""One hasher for files, folders and sociomap's own code."""

from __future__ import annotations

import os

import sociomap.fingerprint as fingerprint
from sociomap.fingerprint import code_fingerprint, content_id, file_fingerprint, tree_sha256


def test_small_files_are_hashed_whole_and_by_content_only(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 1000)
    b.write_bytes(b"x" * 1000)
    os.utime(b, ns=(1, 1))
    assert file_fingerprint(a)["sha256"] == file_fingerprint(b)["sha256"]
    b.write_bytes(b"x" * 999 + b"y")
    assert content_id(a) != content_id(b)


def test_large_files_get_a_sampled_fingerprint_that_sees_rewrites(tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "FULL_HASH_LIMIT", 1 << 20)
    big = tmp_path / "big.tif"
    big.write_bytes(os.urandom(3 << 20))
    first = file_fingerprint(big)
    assert "sha256-sampled" in first and "sha256" not in first
    assert file_fingerprint(big) == first
    st = big.stat()
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # rewritten in place: new mtime
    assert file_fingerprint(big) != first


def test_tree_hash_sees_names_and_bytes(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    before = tree_sha256(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text('{"a": 1}')
    assert tree_sha256(tmp_path / "m") != before


def test_code_fingerprints_differ_per_stage_and_are_stable():
    assert code_fingerprint("sociomap.tiling") == code_fingerprint("sociomap.tiling")
    assert code_fingerprint("sociomap.tiling") != code_fingerprint("sociomap.maps")
    assert code_fingerprint("sociomap.merge.vectorize") != code_fingerprint("sociomap.merge")
