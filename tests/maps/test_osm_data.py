"""load_osm on the real Helsinki extract and on broken files."""

from __future__ import annotations

import bz2
from pathlib import Path

import geopandas as gpd
import mercantile
import pytest
import shapely

from sociomap.errors import OSMError
from sociomap.maps.osm_data import load_osm
from sociomap.maps.osm_index import padded
from sociomap.tiling.grid import tile_transform


def _by_id(frame, osm_id):
    return frame[frame.osm_id == osm_id].iloc[0]


def test_layers_hold_real_features_in_web_mercator(helsinki):
    assert len(helsinki.areas) > 900 and len(helsinki.lines) > 2000 and len(helsinki.points) > 2000
    left, bottom, right, top = helsinki.bounds_m
    assert 2.775e6 < left < right < 2.779e6 and 8.436e6 < bottom < top < 8.440e6  # EPSG:3857 metres
    assert helsinki.areas.crs.to_epsg() == 3857


def test_multipolygon_relation_keeps_its_hole_and_localised_names(helsinki):
    park = _by_id(helsinki.areas, "r6627217")  # Kaisaniemen puisto: outer way + inner way
    assert park.tags["name"] == "Kaisaniemen puisto"
    assert sum(len(p.interiors) for p in park.geometry.geoms) == 1
    garden = _by_id(helsinki.areas, "w122869882")
    assert garden.tags["name:en"] == "Kaisaniemi Botanical Garden"


def test_closed_way_cut_by_the_extract_edge_is_kept_partially(helsinki):
    # Töölönlahden puisto lost its nodes outside the extract; libosmium builds no area from it.
    park = _by_id(helsinki.areas, "w440426433")
    assert park.tags["name"] == "Töölönlahden puisto" and park.geometry.area > 100_000


def test_coastline_becomes_sea_on_its_right_side(helsinki):
    sea = helsinki.areas[helsinki.areas.osm_id == "coastline"]
    assert len(sea) >= 1
    # Kaisaniemenlahti bay (north edge of the extract) is water; the central station is land.
    bay = shapely.Point(tile_transform(mercantile.Tile(18654, 9483, 15), 512) @ (250, 200))
    station = shapely.Point(mercantile.xy(24.9414, 60.1712))
    assert sea.geometry.contains(bay).any() and not sea.geometry.contains(station).any()


def test_bounds_keep_only_features_touching_the_padded_frame(helsinki_path, helsinki, tmp_path):
    bounds = (24.9352, 60.1642, 24.9360, 60.1646)  # the extract's south-west corner
    small = load_osm(helsinki_path, bounds, tmp_path)
    assert 0 < len(small.areas) < len(helsinki.areas) / 3 and 0 < len(small.lines) < len(helsinki.lines) / 3
    frame = gpd.GeoSeries([shapely.box(*padded(bounds))], crs=4326).to_crs(3857).iloc[0].buffer(1.0)  # 1e-7 deg
    nodes = small.points[small.points.osm_id.str.startswith("n")]  # area POIs sit wherever their area is
    for layer in (small.areas, small.lines, nodes):
        assert layer.geometry.envelope.intersects(frame).all()  # a node inside, or the box crossing it
    # Complete ways: a kept street keeps its nodes outside the frame too.
    assert (small.lines.geometry.bounds.maxy > frame.bounds[3]).any()


def test_osm_xml_and_bz2_read_the_same(small_osm, tmp_path):
    packed = tmp_path / "small.osm.bz2"
    packed.write_bytes(bz2.compress(small_osm.read_bytes()))
    plain, compressed = load_osm(small_osm), load_osm(packed)
    assert list(plain.areas.osm_id) == list(compressed.areas.osm_id) == ["w100"]
    assert plain.points.tags.iloc[0]["name"] == "咖啡馆"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("garbage.osm.pbf", b"not a pbf at all", "cannot read as OpenStreetMap data"),
    ("empty.osm.pbf", b"", "empty"),
    ("bare.osm", b'<osm version="0.6"></osm>', "no tagged OSM objects"),
    ("city.txt", b"x", "not an OSM file name"),
])
def test_broken_files_raise_osm_error_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(OSMError, match=message) as info:
        load_osm(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_pbf_raises_osm_error(helsinki_path, tmp_path):
    cut = tmp_path / "cut.osm.pbf"
    cut.write_bytes(helsinki_path.read_bytes()[:300_000])
    with pytest.raises(OSMError, match="re-download"):
        load_osm(cut)


def test_missing_file_raises_osm_error(tmp_path):
    with pytest.raises(OSMError, match="no such OSM file"):
        load_osm(Path(tmp_path / "nowhere.osm.pbf"))
