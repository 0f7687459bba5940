"""sociomap.maps.coastline: sea polygons from ``natural=coastline`` ways inside a frame.

OSM has no sea polygons, only coastline ways with the water on their right. Hand-written because
no kept library builds them (osmcoastline is a separate C++ tool working on whole planets): the
frame is split along the coastlines and each face is voted sea or land by probe points just to the
right / left of every coastline segment.
"""

from __future__ import annotations

import numpy as np
import shapely

#: Distance of the probe points from the coastline, metres (EPSG:3857).
PROBE_M = 0.5
#: A coastline end this close to the frame edge (fraction of the frame's short side) is extended to it.
SNAP_FRACTION = 0.1


def _extend_to_frame(line: shapely.LineString, frame: shapely.Polygon) -> shapely.LineString:
    """Join open ends near the frame edge to it: clipped extracts drop the nodes just outside."""
    left, bottom, right, top = frame.bounds
    reach = SNAP_FRACTION * min(right - left, top - bottom)
    edge = frame.boundary
    coords = list(line.coords)
    for index in (0, -1):
        end = shapely.Point(coords[index])
        if 0 < edge.distance(end) <= reach:
            snapped = shapely.line_interpolate_point(edge, shapely.line_locate_point(edge, end))
            coords.insert(len(coords) if index == -1 else 0, (snapped.x, snapped.y))
    return shapely.LineString(coords)


def _probes(lines: list[shapely.LineString]) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) probe points, (N, 2) float64 in EPSG:3857, one pair per segment midpoint."""
    rights, lefts = [], []
    for line in lines:
        xy = shapely.get_coordinates(line)
        d = np.diff(xy, axis=0)
        length = np.hypot(d[:, 0], d[:, 1])
        keep = length > 2 * PROBE_M
        mid = (xy[:-1] + xy[1:])[keep] / 2
        normal = np.column_stack([d[keep, 1], -d[keep, 0]]) / length[keep, None] * PROBE_M
        rights.append(mid + normal)
        lefts.append(mid - normal)
    if not rights:
        return np.empty((0, 2)), np.empty((0, 2))
    return np.concatenate(rights), np.concatenate(lefts)


def sea_polygons(coastlines: object, bounds_m: tuple[float, float, float, float]) -> list[shapely.Polygon]:
    """Faces of the frame ``bounds_m`` that lie on the water side of the coastlines (EPSG:3857).

    A coastline that ends inside the frame (a clipped extract) cannot close a face; such faces get
    mixed votes and stay land when land wins.
    """
    frame = shapely.box(*bounds_m)
    geoms = [g for g in np.asarray(coastlines, dtype=object) if g is not None and not g.is_empty]
    if not geoms:
        return []
    clipped = shapely.intersection(shapely.line_merge(shapely.union_all(geoms)), frame)
    parts = [_extend_to_frame(g, frame) for g in shapely.get_parts(clipped) if g.geom_type == "LineString"]
    if not parts:
        return []
    noded = shapely.union_all([frame.boundary, *parts])
    faces = list(shapely.get_parts(shapely.polygonize(list(shapely.get_parts(noded)))))
    right, left = _probes(parts)
    tree = shapely.STRtree(faces)
    votes = np.zeros(len(faces))
    for probes, sign in ((right, 1), (left, -1)):
        if len(probes):
            _, face_idx = tree.query(shapely.points(probes), predicate="within")
            np.add.at(votes, face_idx, sign)
    return [face for face, vote in zip(faces, votes, strict=True) if vote > 0]
