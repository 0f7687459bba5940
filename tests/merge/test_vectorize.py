"""vectorize_mask: global-grid coordinates, ground-metre thresholds, border pieces kept."""

from __future__ import annotations

import mercantile
import numpy as np
import pytest
import shapely

from sociomap.errors import InputError
from sociomap.merge import MergeConfig
from sociomap.merge.clean import ground_area_m2
from sociomap.merge.vectorize import vectorize_mask
from sociomap.tiling.grid import tile_bounds_m

SIZE = 768
NO_CLEANING = MergeConfig(min_area_m2=0, min_hole_m2=0)


def helsinki_tile(zoom: int = 16) -> mercantile.Tile:
    return mercantile.tile(24.94, 60.17, zoom)


def test_neighbours_share_bit_identical_edges():
    left = helsinki_tile()
    right = mercantile.Tile(left.x + 1, left.y, left.z)
    mask = np.zeros((SIZE, 2 * SIZE), dtype=bool)
    mask[100:300, 700:900] = True
    (a,) = vectorize_mask(mask[:, :SIZE], left, NO_CLEANING)
    (b,) = vectorize_mask(mask[:, SIZE:], right, NO_CLEANING)
    seam_x = tile_bounds_m(right, SIZE)[0]
    assert a.bounds[2] == seam_x and b.bounds[0] == seam_x  # exact float equality, no tolerance
    assert shapely.union_all([a, b]).geom_type == "Polygon"


def test_distinct_regions_of_one_tile_stay_separate_polygons():
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[100:150, 100:150] = True
    mask[150:200, 150:200] = True  # touches the first only at a corner: 4-connectivity keeps them apart
    assert len(vectorize_mask(mask, helsinki_tile(), NO_CLEANING)) == 2


def test_thresholds_are_ground_m2_not_pixels():
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[300:310, 300:310] = True  # 100 px, away from the border
    config = MergeConfig(min_area_m2=30.0, min_hole_m2=0)
    equator = mercantile.tile(0.01, 0.01, 16)  # 0.80 m pixels on the ground -> 64 m²
    helsinki = helsinki_tile()  # 0.40 m pixels -> 16 m²
    assert len(vectorize_mask(mask, equator, config)) == 1
    assert vectorize_mask(mask, helsinki, config) == []


def test_small_holes_are_filled_and_large_ones_kept():
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[100:400, 100:400] = True
    mask[150:153, 150:153] = False  # 9 px ~ 1.4 m² hole
    mask[200:300, 200:300] = False  # 10^4 px ~ 1,600 m² hole
    (poly,) = vectorize_mask(mask, helsinki_tile(), MergeConfig(min_area_m2=0, min_hole_m2=25.0))
    assert len(poly.interiors) == 1
    assert ground_area_m2(np.array([shapely.Polygon(poly.interiors[0])]))[0] > 1000


def test_small_pieces_touching_the_border_are_kept():
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[300:302, SIZE - 2:] = True  # 4 px at the east edge: maybe the tip of a big object next door
    mask[400:402, 400:402] = True  # 4 px inside the tile: noise
    polys = vectorize_mask(mask, helsinki_tile(), MergeConfig(min_area_m2=25.0))
    assert len(polys) == 1 and polys[0].bounds[2] == tile_bounds_m(helsinki_tile(), SIZE)[2]


def test_empty_mask_gives_nothing_and_bad_shapes_are_refused():
    assert vectorize_mask(np.zeros((SIZE, SIZE), dtype=bool), helsinki_tile(), NO_CLEANING) == []
    with pytest.raises(InputError, match="square"):
        vectorize_mask(np.zeros((SIZE, SIZE - 1), dtype=bool), helsinki_tile(), NO_CLEANING)
