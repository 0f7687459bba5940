"""PieceStore: pieces and provenance go to disk and come back per layer and block of calls; a re-open appends."""

from __future__ import annotations

import json
import sqlite3

import mercantile
import pytest
import shapely

from sociomap.errors import InputError
from sociomap.merge import PieceStore

TILE = mercantile.Tile(37308, 18969, 16)


def test_pieces_come_back_per_layer_and_call(tmp_path):
    with PieceStore(tmp_path) as store:
        store.add("park", TILE, [shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)],
                  {"query": "Park", "query_kind": "class", "prompts": json.dumps({"boxes": [[1, 2, 3, 4]]}),
                   "reasoning": "cache/a.txt"})
        store.add("park", TILE, [], {"query": "Garden"})  # a processed tile with nothing found is recorded too
        store.add("school", TILE, [shapely.box(5, 5, 6, 6)], {"query": "School"})
        assert store.layers() == ["park", "school"]
        index = store.read_index("park")
        assert len(index.call_id) == 1 and index.n_pieces.tolist() == [2]  # the empty call is not planned
        assert index.tiles.tolist() == [[16, 37308, 18969]]
        rows = store.read_pieces(index.call_id)
        (call,) = store.read_calls(index.call_id).values()
    assert len(rows) == 2 and rows.bounds.tolist()[1] == [2, 2, 3, 3]
    assert shapely.from_wkb(rows.wkb[0]).equals(shapely.box(0, 0, 1, 1))
    assert (call.tile, call.query, call.query_kind, call.reasoning) == ("16/37308/18969", "Park", "class", "cache/a.txt")


def test_reopening_appends_and_workers_read_only(tmp_path):
    with PieceStore(tmp_path) as store:
        store.add("park", TILE, [shapely.box(0, 0, 1, 1)], {"query": "Park"})
    with PieceStore(tmp_path) as store:
        store.add("park", mercantile.Tile(TILE.x + 1, TILE.y, 16), [shapely.box(1, 0, 2, 1)], {"query": "Park"})
        store.read_index("park")  # the merge reads the index first: that commits what workers will read
        reader = PieceStore(tmp_path, readonly=True)
        assert len(reader.read_pieces(reader.read_index("park").call_id)) == 2
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._db.execute("DELETE FROM pieces")
        reader.close()


def test_a_store_of_the_previous_schema_is_upgraded(tmp_path):
    db = sqlite3.connect(tmp_path / "pieces.sqlite")
    db.executescript("""
        CREATE TABLE calls (call_id INTEGER PRIMARY KEY, layer TEXT NOT NULL, query TEXT NOT NULL, function TEXT,
            z INTEGER NOT NULL, x INTEGER NOT NULL, y INTEGER NOT NULL, run_id TEXT, model TEXT, prompts TEXT,
            reasoning TEXT);
        CREATE TABLE pieces (call_id INTEGER NOT NULL, layer TEXT NOT NULL, query TEXT NOT NULL,
            minx REAL, miny REAL, maxx REAL, maxy REAL, geom BLOB NOT NULL);""")
    db.execute("INSERT INTO calls (layer, query, z, x, y) VALUES ('park', 'Park', 16, 37308, 18969)")
    db.execute("INSERT INTO pieces VALUES (1, 'park', 'Park', 0, 0, 1, 1, ?)", (shapely.box(0, 0, 1, 1).wkb,))
    db.commit()
    db.close()
    with PieceStore(tmp_path) as store:
        assert store.read_index("park").n_pieces.tolist() == [1]


def test_bad_provenance_is_refused(tmp_path):
    with PieceStore(tmp_path) as store:
        with pytest.raises(InputError, match="query"):
            store.add("park", TILE, [], {"function": "Park and greenspace"})
        with pytest.raises(InputError, match="JSON"):
            store.add("park", TILE, [], {"query": "Park", "prompts": "boxes: 1,2"})
