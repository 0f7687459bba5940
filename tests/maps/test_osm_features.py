"""socio_features and OSMSegmenter on the Helsinki extract, driven by the taxonomy table."""

from __future__ import annotations

import pickle

import mercantile
import numpy as np
import shapely
from rasterio.features import rasterize

from sociomap.maps.osm_features import COLUMNS, OSMSegmenter, socio_features
from sociomap.taxonomy import resolve_query
from sociomap.tiling.grid import tile_bounds_m, tile_transform

SCHOOLS = {"Ressun lukio", "Kruununhaan yläasteen koulu", "Kaisaniemen ala-aste"}


def test_schools_are_the_three_amenity_school_areas(helsinki):
    schools = socio_features(helsinki, [resolve_query("school")])
    assert list(schools.columns) == COLUMNS and schools.crs.to_epsg() == 3857
    assert set(schools.name) == SCHOOLS
    assert set(schools.function) == {"Educational"} and set(schools.socio_class) == {"School"}


def test_parks_are_16_leisure_parks_plus_one_garden(helsinki):
    # The README counts 17 leisure=park objects; one (Tähtitornin vuori) has a single node inside the
    # extract, so 16 have a footprint. leisure=garden (the botanical garden) is also a Park rule.
    parks = socio_features(helsinki, [resolve_query("park")])
    assert len(parks) == 17
    tags = dict(zip(helsinki.areas.osm_id, helsinki.areas.tags, strict=True))
    leisure = sorted(tags[i]["leisure"] for i in parks.osm_id)
    assert leisure.count("park") == 16 and leisure.count("garden") == 1
    assert {"Esplanadinpuisto", "Kaisaniemen puisto", "Vanha kirkkopuisto"} <= set(parks.name)
    assert parks.geometry.geom_type.isin(["Polygon", "MultiPolygon"]).all()


def test_function_query_takes_every_class_of_the_function(helsinki):
    edu = socio_features(helsinki, [resolve_query("Educational")])
    assert {"School", "College"} <= set(edu.socio_class) and SCHOOLS <= set(edu.name)


def test_name_query_matches_any_name_tag(helsinki):
    by_sv = socio_features(helsinki, [resolve_query("Esplanadparken=park")])  # name:sv
    assert list(by_sv.name) == ["Esplanadinpuisto"] and list(by_sv.function) == ["Park and greenspace"]
    free = socio_features(helsinki, [resolve_query("Kaisaniemen puisto")])
    assert list(free.socio_class) == ["Park"] and list(free["query"]) == ["Kaisaniemen puisto"]
    assert socio_features(helsinki, [resolve_query("No Such Place")]).empty


def test_segmenter_masks_cover_exactly_the_park_pixels(helsinki_path, helsinki):
    parks = socio_features(helsinki, [resolve_query("park")])
    espa = parks[parks.name == "Esplanadinpuisto"].geometry.iloc[0]
    x, y = shapely.get_coordinates(espa.representative_point())[0]
    tile = mercantile.tile(*mercantile.lnglat(x, y), 17)
    segmenter = pickle.loads(pickle.dumps(OSMSegmenter(helsinki_path)))
    park_mask, school_mask = segmenter.masks(tile, 512, [resolve_query("park"), resolve_query("school")])
    assert park_mask.shape == (512, 512) and park_mask.dtype == bool
    col, row = (~tile_transform(tile, 512)) @ (x, y)
    assert park_mask[int(row), int(col)]
    footprint = rasterize([espa], out_shape=(512, 512), transform=tile_transform(tile, 512)).astype(bool)
    assert (park_mask & footprint).sum() == footprint.sum() > 1000
    assert not school_mask.any()
    assert 0.05 < park_mask.mean() < 0.9


def test_neighbouring_tile_masks_add_up_to_the_footprint(helsinki_path, helsinki):
    query = resolve_query("Esplanadinpuisto=park")
    espa = socio_features(helsinki, [query]).geometry.iloc[0]
    tiles = list(mercantile.tiles(*_lnglat_bounds(espa), 17))
    segmenter = OSMSegmenter(helsinki_path)
    pixel_area = (tile_bounds_m(tiles[0], 256)[2] - tile_bounds_m(tiles[0], 256)[0]) / 256
    covered = sum(int(segmenter.masks(t, 256, [query])[0].sum()) for t in tiles) * pixel_area**2
    assert abs(covered - espa.area) / espa.area < 0.03


def _lnglat_bounds(geom):
    west, south = mercantile.lnglat(*shapely.total_bounds(geom)[:2])
    east, north = mercantile.lnglat(*shapely.total_bounds(geom)[2:])
    return west, south, east, north
