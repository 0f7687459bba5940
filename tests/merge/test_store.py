"""PieceStore: pieces and provenance go to disk and come back per (layer, query); a re-open appends."""

from __future__ import annotations

import json

import mercantile
import pytest
import shapely

from sociomap.errors import InputError
from sociomap.merge import PieceStore

TILE = mercantile.Tile(37308, 18969, 16)


def test_pieces_come_back_per_layer_and_query(tmp_path):
    with PieceStore(tmp_path) as store:
        store.add("park", TILE, [shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)],
                  {"query": "Park", "prompts": json.dumps({"boxes": [[1, 2, 3, 4]]}), "reasoning": "cache/a.txt"})
        store.add("park", TILE, [], {"query": "Garden"})  # a processed tile with nothing found is recorded too
        store.add("school", TILE, [shapely.box(5, 5, 6, 6)], {"query": "School"})
        assert store.layers() == [("park", "Garden"), ("park", "Park"), ("school", "School")]
        table = store.read("park", "Park")
    assert len(table.geometry) == 2 and table.bounds.tolist()[1] == [2, 2, 3, 3]
    (call,) = table.calls.values()
    assert call[:3] == (16, 37308, 18969) and call[-1] == "cache/a.txt"


def test_reopening_appends(tmp_path):
    with PieceStore(tmp_path) as store:
        store.add("park", TILE, [shapely.box(0, 0, 1, 1)], {"query": "Park"})
    with PieceStore(tmp_path) as store:
        store.add("park", mercantile.Tile(TILE.x + 1, TILE.y, 16), [shapely.box(1, 0, 2, 1)], {"query": "Park"})
        assert len(store.read("park", "Park").geometry) == 2


def test_bad_provenance_is_refused(tmp_path):
    with PieceStore(tmp_path) as store:
        with pytest.raises(InputError, match="query"):
            store.add("park", TILE, [], {"function": "Park and greenspace"})
        with pytest.raises(InputError, match="JSON"):
            store.add("park", TILE, [], {"query": "Park", "prompts": "boxes: 1,2"})
