"""sociomap.merge.clean: drop small polygons and fill small holes by ground-area thresholds (m²)."""

from __future__ import annotations

import numpy as np
import shapely

from sociomap.merge.config import mercator_scale


def ground_area_m2(geoms: np.ndarray) -> np.ndarray:
    """Ground area (m²) of EPSG:3857 geometries, scaled at each geometry's own centroid latitude."""
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return np.zeros(0)
    y = shapely.get_y(shapely.centroid(geoms))
    return shapely.area(geoms) / mercator_scale(y) ** 2


def fill_small_holes(geoms: np.ndarray, min_hole_m2: float) -> np.ndarray:
    """Remove interior rings smaller than ``min_hole_m2`` (ground) from (Multi)Polygons in EPSG:3857."""
    geoms = np.asarray(geoms, dtype=object).copy()
    if min_hole_m2 <= 0 or len(geoms) == 0:
        return geoms
    # Only geometries with holes go through the Python loop; most pieces have none.
    with_holes = np.flatnonzero(_has_holes(geoms))
    for i in with_holes:
        geoms[i] = _fill_holes(geoms[i], min_hole_m2)
    return geoms


def _has_holes(geoms: np.ndarray) -> np.ndarray:
    multi = shapely.get_type_id(geoms) == shapely.GeometryType.MULTIPOLYGON
    if not multi.any():  # the common case: get_num_interior_rings is direct for Polygons
        return shapely.get_num_interior_rings(geoms) > 0
    parts, index = shapely.get_parts(geoms, return_index=True)
    counts = np.zeros(len(geoms), dtype=int)
    np.add.at(counts, index, shapely.get_num_interior_rings(parts))
    return counts > 0


def _fill_holes(geom: shapely.Geometry, min_hole_m2: float) -> shapely.Geometry:
    polys = []
    for poly in shapely.get_parts(geom):
        holes = np.asarray(poly.interiors, dtype=object)
        if len(holes):
            areas = ground_area_m2(shapely.polygons(holes))
            holes = holes[areas >= min_hole_m2]
        polys.append(shapely.Polygon(poly.exterior, holes))
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


def clean_polygons(
    geoms: np.ndarray, min_area_m2: float, min_hole_m2: float, keep: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fill small holes, then drop geometries under ``min_area_m2`` unless ``keep`` is True for them.

    Returns (cleaned geometries, index of each kept one in ``geoms``).
    """
    geoms = fill_small_holes(geoms, min_hole_m2)
    big = ground_area_m2(geoms) >= min_area_m2
    if keep is not None:
        big |= keep
    index = np.flatnonzero(big)
    return geoms[index], index
