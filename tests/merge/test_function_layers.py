"""End to end (OSM baseline, no model): a class and its socio-function asked together give one layer,
one entity set, no feature counted twice."""

from __future__ import annotations

import pyogrio
import pytest
import shapely

from tests.conftest import HELSINKI_PBF


def test_a_class_and_its_function_give_one_entity_set(utm_mosaic, tmp_path):
    from sociomap.merge import MergeConfig
    from sociomap.pipeline.executor import ExecutorConfig
    from sociomap.pipeline.run import RunConfig, run
    from sociomap.tiling import TilingConfig

    config = RunConfig(image=utm_mosaic, out=tmp_path / "out", classes=("park", "park and greenspace"),
                       osm=HELSINKI_PBF, reasoner_kind="osm", merge=MergeConfig(), executor=ExecutorConfig(workers=0),
                       tiling=TilingConfig(zoom=16, tile_size=384, tiles_per_task=3))
    summary = run(config)
    assert list(summary.layers) == ["park_and_greenspace"]
    parks = pyogrio.read_dataframe(config.out / "park_and_greenspace.gpkg").to_crs(3857)
    assert len(parks) == summary.layers["park_and_greenspace"] > 0
    geoms = parks.geometry.values
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = left < right
    assert (shapely.area(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]])) < 1e-3).all()
    both = parks[parks["query"] == "Park;Park and greenspace"]
    assert len(both) > 0 and set(both["query_kind"]) == {"class;function"}


def test_feature_confidence_averages_tiles_and_combines_queries():
    import math

    from sociomap.merge.features import feature_confidence
    from sociomap.merge.store import Call

    def call(query, x, c):
        return Call(16, x, 0, query, "class", "Park and greenspace", "r", "m", None, None, c)

    assert feature_confidence([call("Park", 1, 0.6), call("Park", 2, 0.8)]) == pytest.approx(0.7)  # one query: mean
    two = feature_confidence([call("Park", 1, 0.5), call("Garden", 1, 0.5)])
    assert two == pytest.approx(0.75)  # two queries found it: 1 - 0.5 * 0.5
    assert math.isnan(feature_confidence([call("Park", 1, None)]))
