"""sociomap.tiling.grid: pure Web-Mercator pixel-grid math for XYZ tiles rendered at any pixel size.

Every tile's transform is derived from ONE global pixel grid per zoom, so two neighbouring tiles put
their shared edge at bit-identical coordinates (per-tile ``mercantile.xy_bounds`` can leave 1e-9 m
gaps that break seam merging; see docs/merge.md).
"""

from __future__ import annotations

import math

import mercantile
from affine import Affine

#: Half the side of the Web-Mercator square, metres (EPSG:3857).
HALF_WORLD_M = math.pi * 6378137.0


def tile_pixel_size_m(zoom: int, size: int) -> float:
    """Side of one pixel in Web-Mercator metres for tiles of ``size`` px at ``zoom``."""
    return 2 * HALF_WORLD_M / (size * 2**zoom)


def global_pixel_to_m(col: float, row: float, zoom: int, size: int) -> tuple[float, float]:
    """Web-Mercator (x, y) of a global pixel-grid position; the same integer gives the same float."""
    res = tile_pixel_size_m(zoom, size)
    return -HALF_WORLD_M + col * res, HALF_WORLD_M - row * res


def tile_bounds_m(tile: mercantile.Tile, size: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a tile in EPSG:3857, from the global grid."""
    left, top = global_pixel_to_m(tile.x * size, tile.y * size, tile.z, size)
    right, bottom = global_pixel_to_m((tile.x + 1) * size, (tile.y + 1) * size, tile.z, size)
    return left, bottom, right, top


def tile_transform(tile: mercantile.Tile, size: int) -> Affine:
    """Affine transform from tile pixel (col, row) to EPSG:3857 metres."""
    left, _, _, top = tile_bounds_m(tile, size)
    res = tile_pixel_size_m(tile.z, size)
    return Affine(res, 0.0, left, 0.0, -res, top)


def ground_resolution_m(zoom: int, size: int, lat: float) -> float:
    """True ground size of one pixel at latitude ``lat`` (Mercator scale is 1/cos(lat))."""
    return tile_pixel_size_m(zoom, size) * math.cos(math.radians(lat))


def cover_bounds(bounds_wgs84: tuple[float, float, float, float], zoom: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of the XYZ tiles at ``zoom`` that cover ``bounds_wgs84``: what edge
    tiles show beyond the mosaic's own footprint (maps and OSM data are needed that far)."""
    west, south, east, north = bounds_wgs84
    if west > east:  # across the antimeridian: keep the box as given
        return bounds_wgs84
    south, north = max(-85.051129, south), min(85.051129, north)
    upper_left = mercantile.tile(max(-180.0, west), north, zoom)
    lower_right = mercantile.tile(min(180.0, east) - mercantile.LL_EPSILON, south + mercantile.LL_EPSILON, zoom)
    w, n = mercantile.ul(upper_left)
    e, s = mercantile.ul(lower_right.x + 1, lower_right.y + 1, zoom)
    return w, s, e, n
