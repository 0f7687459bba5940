"""The OSM index: frame-first reading of larger files, the cut path, streaming labels, one query per tile."""

from __future__ import annotations

import mercantile
import pytest

from benchmarks.osm_copies import write_copies
from sociomap.maps.osm_data import load_index
from sociomap.maps.osm_features import OSMSegmenter, iter_socio_features, socio_features
from sociomap.maps.osm_index import OSMIndex, osm_index_key, prepare_osm_index
from sociomap.maps.osm_read import header_bounds, read_osm
from sociomap.taxonomy import resolve_query

CENTRE = (24.940, 60.167, 24.946, 60.172)  # central Helsinki, inside copy 0


@pytest.fixture(scope="module")
def copies3(tmp_path_factory, helsinki_path):
    return write_copies(helsinki_path, tmp_path_factory.mktemp("big") / "x3.osm.pbf", 3)


def _ids(index):
    data = load_index(index)
    return {layer: set(getattr(data, layer).osm_id) for layer in ("areas", "lines", "points")}


def test_the_same_frame_gives_the_same_features_from_a_larger_file(helsinki_path, copies3, tmp_path):
    one = _ids(prepare_osm_index(helsinki_path, CENTRE, tmp_path / "a"))
    three = _ids(prepare_osm_index(copies3, CENTRE, tmp_path / "b"))
    assert one == three and len(one["areas"]) > 100


def test_the_cut_path_keeps_every_feature_with_a_vertex_in_the_frame(copies3):
    import shapely

    from sociomap.maps.osm_index import kept_keys

    direct = {(r.layer, r.osm_id): r.geometry for r in read_osm(copies3, CENTRE, kept_keys())}
    cut = {(r.layer, r.osm_id) for r in read_osm(copies3, CENTRE, kept_keys(), cut_above=0)}
    assert cut <= set(direct) and len(cut) > 1000
    frame = shapely.box(*CENTRE)
    # What only the direct read keeps touches the frame by its bounding box alone (a long segment, a
    # ring around it): the cut is node-based (see osm_read's docstring).
    for key in set(direct) - cut:
        assert not shapely.intersects(shapely.points(shapely.get_coordinates(direct[key])), frame).any(), key


def test_index_is_built_once_and_keyed_by_content_and_frame(helsinki_path, tmp_path):
    first = prepare_osm_index(helsinki_path, CENTRE, tmp_path)
    stamp = first.stat().st_mtime_ns
    assert prepare_osm_index(helsinki_path, CENTRE, tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert osm_index_key(helsinki_path, CENTRE) != osm_index_key(helsinki_path, (24.94, 60.167, 24.95, 60.172))
    assert header_bounds(helsinki_path) is not None


def test_labels_stream_in_chunks_and_match_the_in_memory_features(helsinki_path, tmp_path, helsinki):
    index = prepare_osm_index(helsinki_path, None, tmp_path)
    queries = [resolve_query("park"), resolve_query("school")]
    chunks = list(iter_socio_features(index, queries, chunk=50))
    assert len(chunks) > 1
    streamed = sorted((q, i) for c in chunks for q, i in zip(c["query"], c.osm_id, strict=True))
    whole = socio_features(helsinki, queries)
    assert streamed == sorted(zip(whole["query"], whole.osm_id, strict=True))


def test_segmenter_queries_the_index_once_per_tile_for_all_queries(helsinki_path, tmp_path):
    index = prepare_osm_index(helsinki_path, None, tmp_path)
    calls = []

    class Counting(OSMIndex):
        def query(self, *args, **kwargs):
            calls.append(args[0])
            return super().query(*args, **kwargs)

    import sociomap.maps.osm_features as features

    segmenter = OSMSegmenter(helsinki_path, index=index)
    features._reader.cache_clear()
    features._reader.cache_info()
    original = features._reader
    features._reader = lambda path: Counting(path)
    try:
        queries = [resolve_query(w) for w in ("park", "school", "hospital", "library", "hotel", "bank", "museum",
                                               "church", "parking lot", "residential area")]
        masks = segmenter.masks(mercantile.Tile(37308, 18969, 16), 256, queries)
    finally:
        features._reader = original
    assert len(masks) == 10 and calls == ["areas"]
