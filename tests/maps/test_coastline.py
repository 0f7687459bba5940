"""Sea polygons from coastline lines: water lies to the right of the way direction."""

from __future__ import annotations

import shapely

from sociomap.maps.coastline import sea_polygons

FRAME = (0.0, 0.0, 100.0, 100.0)


def test_west_to_east_coastline_puts_the_sea_south():
    sea = sea_polygons([shapely.LineString([(-10, 50), (110, 50)])], FRAME)
    assert len(sea) == 1
    assert sea[0].contains(shapely.Point(50, 10)) and not sea[0].contains(shapely.Point(50, 90))
    assert abs(sea[0].area - 5000) < 1e-6


def test_reversed_coastline_puts_the_sea_north():
    sea = sea_polygons([shapely.LineString([(110, 50), (-10, 50)])], FRAME)
    assert sea[0].contains(shapely.Point(50, 90))


def test_coastline_ending_just_short_of_the_frame_is_extended_to_it():
    # A clipped extract drops the nodes outside; the last kept node is 3 units inside the frame.
    sea = sea_polygons([shapely.LineString([(3, 50), (97, 50)])], FRAME)
    assert len(sea) == 1 and abs(sea[0].area - 5000) < 1e-6


def test_no_coastline_gives_no_sea():
    assert sea_polygons([], FRAME) == []
