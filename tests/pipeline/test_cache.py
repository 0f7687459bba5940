"""Content-addressed per-tile cache."""

import numpy as np

from sociomap.pipeline.cache import TileCache, identity_digest, result_key, tile_input_digest


def test_key_changes_with_every_input():
    sat = np.zeros((8, 8, 3), np.uint8)
    other = sat.copy()
    other[0, 0, 0] = 1
    d = tile_input_digest(sat, sat)
    seg = identity_digest({"model": "a"})
    base = result_key(d, seg, "Park", "16/1/2")
    assert base == result_key(tile_input_digest(sat.copy(), sat.copy()), identity_digest({"model": "a"}), "Park", "16/1/2")
    assert base != result_key(tile_input_digest(other, sat), seg, "Park", "16/1/2")
    assert base != result_key(tile_input_digest(sat, other), seg, "Park", "16/1/2")
    assert base != result_key(tile_input_digest(sat, None), seg, "Park", "16/1/2")
    assert base != result_key(d, identity_digest({"model": "b"}), "Park", "16/1/2")
    assert base != result_key(d, seg, "School", "16/1/2")
    assert base != result_key(d, seg, "Park", "16/1/3")  # same pixels, another tile


def test_round_trip_and_atomic_layout(tmp_path):
    cache = TileCache(tmp_path)
    mask = np.random.default_rng(0).random((37, 53)) > 0.5
    key = "ab" + "0" * 62
    assert not cache.has(key) and cache.get(key) is None
    cache.put(key, mask, {"stage1_text": "é", "boxes": [[1.0, 2.0, 3.0, 4.0]]})
    got = cache.get(key)
    assert np.array_equal(got.mask, mask) and got.meta["stage1_text"] == "é"
    assert [p.name for p in (tmp_path / "ab").iterdir()] == [f"{key}.npz"]  # no temp files left


def test_a_damaged_entry_reads_as_missing(tmp_path):
    cache = TileCache(tmp_path)
    key = "cd" + "1" * 62
    cache.put(key, np.ones((4, 4), bool), {})
    cache.path(key).write_bytes(b"truncated")
    assert cache.get(key) is None
