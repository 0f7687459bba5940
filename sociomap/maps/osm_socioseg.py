"""sociomap.maps.osm_socioseg: the ``socioseg`` map style, drawn like SocioSeg's training maps.

SocioSeg's maps (Amap) "render only basic geospatial information, including roads and points of
interest", and the AOI polygons are the labels, not part of the map (docs/maps.md). So this style
draws: the background, water, building footprints (one neutral colour, whatever their use), roads
with casings and names, railways, rivers, and POIs as a coloured sign with the name beside it. Every
area that is a place of interest (a school, hospital, park, mall...) is drawn as a POI at a
representative point (``point_on_surface``, computed once in the index so every tile puts it at the
same place), never as a filled area; a hospital that is also a ``building`` is a building footprint
plus its hospital sign; a small named place keeps its name.
"""

from __future__ import annotations

import functools

import numpy as np

from sociomap.maps.mapnik_env import mapnik
from sociomap.maps.osm_index import OSMIndex
from sociomap.maps.osm_mapnik import (
    as_datasource, layer_xml, line_styles, map_xml, road_label_style, rule, select, styled, text, wrap,
)
from sociomap.maps.osm_style import ROAD_RULES, zoom_scale

BACKGROUND = "#f5f4f0"
WATER = "#a6cbef"
BUILDING = ("#e4e1dc", "#d3cec7")

AREA_RULES: tuple[tuple[str, frozenset[str] | None, str], ...] = (
    ("natural", frozenset({"sea", "water", "bay"}), "water"),
    ("waterway", frozenset({"riverbank", "dock", "canal"}), "water"),
    ("landuse", frozenset({"reservoir", "basin"}), "water"),
    ("building", None, "building"),
)
#: kind -> (width at z16 on a 256-px tile, fill, casing or "", dash array or ""), drawn in this order.
LINE_STYLE: dict[str, tuple[float, str, str, str]] = {
    "river": (5.0, WATER, "", ""), "stream": (1.5, WATER, "", ""),
    "footway": (1.0, "#ffffff", "", "2,1.5"), "cycleway": (1.0, "#ffffff", "", "2,1.5"),
    "service": (3.0, "#ffffff", "#d6d2cb", ""), "pedestrian": (4.0, "#ffffff", "#d6d2cb", ""),
    "minor": (6.0, "#ffffff", "#cfcac2", ""), "tertiary": (7.5, "#ffffff", "#c4beb4", ""),
    "secondary": (8.5, "#fff3b0", "#e2c76a", ""), "primary": (9.0, "#ffe28a", "#e0b44a", ""),
    "trunk": (9.5, "#ffc46b", "#e0963a", ""), "motorway": (10.0, "#ffb05a", "#de8a2c", ""),
    "tram": (1.2, "#a8a39b", "", ""), "rail": (2.2, "#b3aea6", "", ""),
}
NAMED_ROADS = ("motorway", "trunk", "primary", "secondary", "tertiary", "minor", "pedestrian")

#: (key, values or None for any, kind): what a POI is, first match wins (the order also sets label priority).
POI_RULES: tuple[tuple[str, frozenset[str] | None, str], ...] = (
    ("amenity", frozenset({"school", "university", "college", "kindergarten", "driving_school",
                           "research_institute", "training"}), "education"),
    ("amenity", frozenset({"hospital", "clinic", "doctors", "dentist", "pharmacy", "nursing_home"}), "health"),
    ("healthcare", None, "health"),
    ("amenity", frozenset({"townhall", "police", "courthouse", "fire_station", "post_office",
                           "community_centre"}), "government"),
    ("office", frozenset({"government"}), "government"),
    ("railway", frozenset({"station", "halt", "tram_stop", "subway_entrance"}), "transport"),
    ("public_transport", frozenset({"station"}), "transport"),
    ("amenity", frozenset({"bus_station", "ferry_terminal", "parking", "fuel"}), "transport"),
    ("leisure", frozenset({"park", "garden", "nature_reserve", "playground", "dog_park"}), "park"),
    ("tourism", frozenset({"zoo", "theme_park"}), "park"),
    ("amenity", frozenset({"grave_yard"}), "park"),
    ("leisure", frozenset({"stadium", "sports_centre", "sports_hall", "pitch", "track", "swimming_pool",
                           "golf_course", "fitness_centre", "water_park", "ice_rink"}), "sport"),
    ("tourism", frozenset({"museum", "gallery"}), "culture"),
    ("amenity", frozenset({"theatre", "cinema", "arts_centre", "library", "concert_hall", "exhibition_centre"}),
     "culture"),
    ("amenity", frozenset({"place_of_worship"}), "worship"),
    ("tourism", frozenset({"hotel", "guest_house", "hostel", "motel", "apartment"}), "hotel"),
    ("amenity", frozenset({"bank", "atm", "bureau_de_change"}), "finance"),
    ("shop", None, "shop"),
    ("amenity", frozenset({"restaurant", "cafe", "fast_food", "bar", "pub", "ice_cream", "food_court"}), "food"),
    ("office", None, "office"),
    ("tourism", None, "tourism"),
    ("historic", None, "tourism"),
    ("leisure", None, "leisure"),
    ("amenity", None, "amenity"),
    ("place", frozenset({"square", "neighbourhood", "quarter", "locality", "suburb", "village", "hamlet"}), "place"),
)
POI_COLOURS = {"education": "#3478c6", "health": "#e0413a", "government": "#5b6abf", "transport": "#1f93d1",
               "park": "#3a9a4f", "sport": "#2aa198", "culture": "#9b59b6", "worship": "#7d6b5d",
               "hotel": "#c2537f", "finance": "#c68a17", "shop": "#d9663b", "food": "#e08a1e",
               "office": "#6d7b8d", "tourism": "#0f9bb5", "leisure": "#4f9d69", "amenity": "#8a6d3b"}
PLACE_COLOUR = "#5f5a53"
#: Below this zoom only the major POI kinds are drawn.
POI_MIN_ZOOM = 16
MAJOR_POIS = frozenset({"education", "health", "government", "transport", "park"})
LAYERS = ("water", "waterways", "buildings", "roads", "road-labels", "places", "pois")


def _poi_styles(zoom: int) -> str:
    size = round(6 * min(1.0, zoom_scale(zoom) ** 0.25), 2)
    rules = "".join(rule(kind, (
        f'<MarkersSymbolizer marker-type="ellipse" width="{size + 1}" height="{size + 1}" fill="{colour}" '
        'stroke="#ffffff" stroke-width="1.2" allow-overlap="false" placement="point"/>'
        + text("sans", 9, colour, 'dx="6" margin="3" repeat-distance="150"')))
        for kind, colour in POI_COLOURS.items() if zoom >= POI_MIN_ZOOM or kind in MAJOR_POIS)
    places = rule("place", text("sans-bold", 10, PLACE_COLOUR, 'margin="8" repeat-distance="300"'))
    return f'<Style name="pois">{rules}</Style><Style name="places">{places}</Style>'


def _area_styles() -> str:
    water = rule("water", f'<PolygonSymbolizer fill="{WATER}"/>')
    building = rule("building", f'<PolygonSymbolizer fill="{BUILDING[0]}"/>'
                                f'<LineSymbolizer stroke="{BUILDING[1]}" stroke-width="0.5"/>')
    return f'<Style name="water">{water}</Style><Style name="buildings">{building}</Style>'


class SociosegStyle:
    """Roads and POIs with names, water and building footprints; no AOI is filled (``--map-style socioseg``)."""

    name = "socioseg"
    version = "sociomap socioseg v1"

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one instance per process, keyed by zoom
    def xml(self, zoom: int) -> str:
        """The whole Mapnik map XML for one zoom level (layers without datasources)."""
        styles = _area_styles() + line_styles(zoom, LINE_STYLE) + road_label_style(NAMED_ROADS) + _poi_styles(zoom)
        layer_styles = {"water": ["water"], "waterways": ["lines"], "buildings": ["buildings"],
                        "roads": ["casing", "lines"], "road-labels": ["road-labels"], "places": ["places"],
                        "pois": ["pois"]}
        return map_xml(BACKGROUND, styles, "".join(layer_xml(name, layer_styles[name]) for name in LAYERS))

    def layers(self, index: OSMIndex, tile_m: tuple[float, ...], query_m: tuple[float, ...],
               language: str | None) -> dict[str, mapnik.MemoryDatasource]:
        """Datasources for one tile: ``tile_m`` its bounds, ``query_m`` the bounds with the buffer."""
        areas = styled(index.query("areas", query_m), AREA_RULES, language, ["water", "building"], query_m)
        by_size = list(-np.asarray(areas["area"]))
        lines = styled(index.query("lines", query_m), ROAD_RULES, language, list(LINE_STYLE), query_m)
        above = [t.get("tunnel", "no") == "no" for t in lines["tags"]]
        rivers = [k in ("river", "stream") for k in lines["kind"]]
        pois = styled(index.query("points", query_m), POI_RULES, language, list(POI_COLOURS) + ["place"])
        pois["label"] = [wrap(t) for t in pois["label"]]
        named = [bool(lab) for lab in pois["label"]]
        road_rank = {k: i for i, k in enumerate(NAMED_ROADS)}
        road_named = [a and k in road_rank and bool(lab)
                      for a, k, lab in zip(above, lines["kind"], lines["label"], strict=True)]
        return {
            "water": as_datasource(select(areas, [k == "water" for k in areas["kind"]], by_size)),
            "buildings": as_datasource(select(areas, [k == "building" for k in areas["kind"]], by_size)),
            "waterways": as_datasource(select(lines, [a and r for a, r in zip(above, rivers, strict=True)],
                                              lines["rank"])),
            "roads": as_datasource(select(lines, [a and not r for a, r in zip(above, rivers, strict=True)],
                                          lines["rank"])),
            "road-labels": as_datasource(select(lines, road_named, [road_rank.get(k, 99) for k in lines["kind"]])),
            "places": as_datasource(select(pois, [n and k == "place" for n, k in zip(named, pois["kind"],
                                                                                     strict=True)])),
            "pois": as_datasource(select(pois, [n and k != "place" for n, k in zip(named, pois["kind"], strict=True)],
                                         pois["rank"])),
        }
