"""The results store: keys, compact entries, self-healing reads, a damaged file, mark and sweep."""

from __future__ import annotations

import sqlite3

import numpy as np
import shapely

from sociomap.pipeline.cache import (MemoEntry, ResultCache, identity_digest, memo_key, pieces_key, result_key,
                                     tile_input_digest)


def test_key_changes_with_every_input():
    sat = np.zeros((8, 8, 3), np.uint8)
    other = sat.copy()
    other[0, 0, 0] = 1
    valid = np.ones((8, 8), bool)
    d = tile_input_digest(sat, sat, valid)
    seg = identity_digest({"model": "a"})
    base = result_key(d, seg, "q-park", "16/1/2")
    assert base == result_key(tile_input_digest(sat.copy(), sat.copy(), valid.copy()), identity_digest({"model": "a"}),
                              "q-park", "16/1/2")
    assert base != result_key(tile_input_digest(other, sat, valid), seg, "q-park", "16/1/2")
    assert base != result_key(tile_input_digest(sat, other, valid), seg, "q-park", "16/1/2")
    assert base != result_key(tile_input_digest(sat, None, valid), seg, "q-park", "16/1/2")
    assert base != result_key(tile_input_digest(sat, sat, ~valid), seg, "q-park", "16/1/2")  # same pixels, no data
    assert base != result_key(d, identity_digest({"model": "b"}), "q-park", "16/1/2")
    assert base != result_key(d, seg, "q-school", "16/1/2")
    assert base != result_key(d, seg, "q-park", "16/1/3")  # same pixels, another tile
    assert pieces_key(base, "v1") != pieces_key(base, "v2") and memo_key("f1", "16/1/2") != memo_key("f2", "16/1/2")


def test_round_trip_is_compact(tmp_path):
    path = tmp_path / "cache.sqlite"
    mask = np.random.default_rng(0).random((37, 53)) > 0.5
    with ResultCache(path) as cache:
        cache.begin_run("r1")
        assert not cache.has("k1") and cache.get("k1") is None
        cache.put("k1", mask, {"stage1_text": "é", "boxes": [[1.0, 2.0, 3.0, 4.0]]})
        cache.put("empty", np.zeros((768, 768), bool), {"stage1_text": "<answer>[]</answer>", "stage2_text": ""})
        polys = [shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 4)]
        cache.put_pieces("p1", list(shapely.to_wkb(polys)), {"reasoning": "k1"})
        cache.put_memo("m1", MemoEntry(None))
    with ResultCache(path) as cache:
        got = cache.get("k1")
        assert np.array_equal(got.mask, mask) and got.meta["stage1_text"] == "é"
        pieces = cache.get_pieces("p1")
        assert [shapely.from_wkb(b).equals(p) for b, p in zip(pieces.wkb, polys)] == [True, True]
        assert pieces.attrs == {"reasoning": "k1"} and cache.get_memo("m1") == MemoEntry(None)
        body = cache._db.execute("SELECT length(body) FROM results WHERE key = 'empty'").fetchone()[0]
    assert body < 300, f"an empty 768-px mask takes {body} bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.sqlite"]  # one file, no per-entry files


def test_truncated_garbled_and_foreign_entries_read_as_missing(tmp_path):
    path = tmp_path / "cache.sqlite"
    with ResultCache(path) as cache:
        for key in ("a", "b", "c", "d"):
            cache.put(key, np.ones((4, 4), bool), {"key": key})
    db = sqlite3.connect(path)
    db.execute("UPDATE results SET body = substr(body, 1, 10) WHERE key = 'a'")  # truncated
    db.execute("UPDATE results SET body = randomblob(64) WHERE key = 'b'")  # garbage
    db.execute("UPDATE results SET body = (SELECT body FROM results WHERE key = 'd'), "
               "sha256 = (SELECT sha256 FROM results WHERE key = 'd') WHERE key = 'c'")  # well-formed, other key
    db.commit()
    db.close()
    with ResultCache(path) as cache:
        assert [cache.get(k) is None for k in "abcd"] == [True, True, True, False]
        assert cache.damaged == 3
        cache.put("a", np.zeros((4, 4), bool), {})  # recomputed and rewritten
        assert cache.get("a") is not None


def test_a_damaged_cache_file_is_set_aside(tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not an sqlite database at all" * 100)
    with ResultCache(path) as cache:
        cache.put("k", np.ones((2, 2), bool), {})
        assert cache.get("k") is not None
    assert any(p.name.startswith("cache.sqlite.damaged-") for p in tmp_path.iterdir())
    assert "damaged" in caplog.text


def test_gc_keeps_what_the_kept_runs_used(tmp_path):
    path = tmp_path / "cache.sqlite"
    with ResultCache(path) as cache:
        for run, keys in (("r1", ["old", "shared"]), ("r2", ["shared", "new"])):
            cache.begin_run(run)
            for key in keys:
                if cache.get(key) is None:
                    cache.put(key, np.ones((64, 64), bool), {"run": run})
            cache.end_run("ok")
        seqs = cache.run_seqs(["r1", "r2"])
        report = cache.gc(keep_seq=seqs["r2"])
        assert report.removed["results"] == 1
        assert cache.get("old") is None and cache.get("shared") is not None and cache.get("new") is not None
