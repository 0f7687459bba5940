"""Global-pixel-grid tile math."""

import mercantile
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sociomap.tiling.grid import ground_resolution_m, tile_bounds_m, tile_pixel_size_m, tile_transform

tiles = st.integers(1, 20).flatmap(
    lambda z: st.builds(mercantile.Tile, st.integers(0, 2**z - 2), st.integers(0, 2**z - 2), st.just(z))
)


@given(tiles, st.sampled_from([256, 512, 768]))
def test_neighbours_share_bit_identical_edges(tile, size):
    right = mercantile.Tile(tile.x + 1, tile.y, tile.z)
    below = mercantile.Tile(tile.x, tile.y + 1, tile.z)
    assert tile_bounds_m(tile, size)[2] == tile_bounds_m(right, size)[0]
    assert tile_bounds_m(tile, size)[1] == tile_bounds_m(below, size)[3]


@given(tiles, st.sampled_from([256, 768]))
def test_bounds_agree_with_mercantile(tile, size):
    ours = tile_bounds_m(tile, size)
    theirs = mercantile.xy_bounds(tile)
    assert ours == pytest.approx(tuple(theirs), abs=1e-6)


def test_transform_maps_pixel_corners_to_bounds():
    tile = mercantile.Tile(37335, 18960, 16)
    left, bottom, right, top = tile_bounds_m(tile, 768)
    tf = tile_transform(tile, 768)
    assert tf @ (0, 0) == (left, top)
    assert tf @ (768, 768) == pytest.approx((right, bottom))
    assert tf.a == tile_pixel_size_m(16, 768) == pytest.approx(0.7964, abs=1e-3)


def test_ground_resolution_shrinks_with_latitude():
    assert ground_resolution_m(16, 768, 60.0) == pytest.approx(tile_pixel_size_m(16, 768) / 2)
