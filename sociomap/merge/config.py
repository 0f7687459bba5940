"""sociomap.merge.config: merge thresholds in ground metres and their conversion to Web-Mercator units.

Thresholds are given on the ground (metres, m²) so they mean the same thing at every zoom and latitude;
Web-Mercator stretches lengths by ``cosh(y / R)`` (= 1 / cos(latitude)), so they are converted per geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sociomap.errors import ConfigError
from sociomap.tiling.grid import HALF_WORLD_M

#: Earth radius of the Web-Mercator sphere, metres.
EARTH_RADIUS_M = HALF_WORLD_M / np.pi


@dataclass(frozen=True)
class MergeConfig:
    """How per-tile pieces become whole objects; all lengths/areas are on the ground (metres, m²).

    Attributes:
        min_area_m2: objects smaller than this are dropped (after merging; before it only for pieces
            that do not touch their tile's border, since a border piece may be part of a bigger object).
        min_hole_m2: holes smaller than this are filled.
        min_overlap_ratio: two pieces from overlapping tiles (re-runs, overlapping context) are the same
            object when their intersection covers at least this share of the smaller one.
        min_seam_share_m: two pieces on either side of a tile seam are one cut object when the boundary
            they share along the seam is longer than this; a corner contact (length 0) never links.
        seam_tolerance_m: how far a piece edge may lie from the tile edge and still count as on the seam
            (absorbs the 1e-9 m gaps of per-tile transforms from other sources; our grid has none).
    """

    min_area_m2: float = 25.0
    min_hole_m2: float = 25.0
    min_overlap_ratio: float = 0.5
    min_seam_share_m: float = 0.0
    seam_tolerance_m: float = 0.01

    def __post_init__(self) -> None:
        for name in ("min_area_m2", "min_hole_m2", "min_seam_share_m", "seam_tolerance_m"):
            if getattr(self, name) < 0:
                raise ConfigError(f"merge.{name} = {getattr(self, name)} is negative; use a value >= 0")
        if not 0 < self.min_overlap_ratio <= 1:
            raise ConfigError(f"merge.min_overlap_ratio = {self.min_overlap_ratio}; use a value in (0, 1]")


def mercator_scale(y: np.ndarray | float) -> np.ndarray | float:
    """Web-Mercator length distortion at northing ``y`` (EPSG:3857 metres): mercator = ground * scale."""
    return np.cosh(np.asarray(y, dtype=float) / EARTH_RADIUS_M)
