"""sociomap.merge.vectorize: one tile's boolean mask -> polygons on the global Web-Mercator pixel grid."""

from __future__ import annotations

import mercantile
import numpy as np
import rasterio.features
import shapely
from affine import Affine

from sociomap.errors import InputError
from sociomap.merge.clean import clean_polygons
from sociomap.merge.config import MergeConfig
from sociomap.tiling.grid import global_pixel_to_m


def vectorize_mask(mask: np.ndarray, tile: mercantile.Tile, config: MergeConfig) -> list[shapely.Polygon]:
    """Polygons (EPSG:3857) of the 4-connected True regions of ``mask``.

    Args:
        mask: (H, W) bool, H == W == the tile's pixel size, row 0 at the tile's north edge.
        tile: the XYZ tile the mask covers.
        config: small-hole / small-object thresholds (ground m²); pieces touching the tile border are
            kept whatever their size, because they may be parts of an object cut by a seam.

    Coordinates are integer global pixel positions mapped through ``sociomap.tiling.grid``, so two
    neighbouring tiles put their shared edge at bit-identical coordinates.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise InputError(f"vectorize_mask: mask of tile {tile} has shape {mask.shape}; pass a square (H, W) array")
    return place_pixel_polygons(pixel_polygons(mask), tile, mask.shape[0], config)


def pixel_polygons(mask: np.ndarray) -> np.ndarray:
    """(N,) Polygons of the 4-connected True regions of a (H, W) mask, in tile pixel coordinates."""
    mask = np.asarray(mask).astype(bool, copy=False)
    if not mask.any():
        return np.empty(0, dtype=object)
    shapes = rasterio.features.shapes(mask.view(np.uint8), mask=mask, connectivity=4, transform=Affine.identity())
    return np.array([shapely.geometry.shape(geom) for geom, _ in shapes], dtype=object)


def place_pixel_polygons(pixel_polys: np.ndarray, tile: mercantile.Tile, size: int,
                         config: MergeConfig) -> list[shapely.Polygon]:
    """``pixel_polygons`` of a ``size``-px tile -> EPSG:3857 on the global grid, small holes/pieces cleaned."""
    if len(pixel_polys) == 0:
        return []
    bounds = shapely.bounds(pixel_polys)
    on_border = (bounds[:, :2] <= 0).any(axis=1) | (bounds[:, 2:] >= size).any(axis=1)

    def to_mercator(coords: np.ndarray) -> np.ndarray:
        col = coords[:, 0] + tile.x * size
        row = coords[:, 1] + tile.y * size
        return np.column_stack(global_pixel_to_m(col, row, tile.z, size))

    polys = shapely.transform(pixel_polys, to_mercator)
    kept, _ = clean_polygons(polys, config.min_area_m2, config.min_hole_m2, keep=on_border)
    return list(kept)
