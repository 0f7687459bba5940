"""sociomap.maps.osm_style: the OSM-Carto-like map style: which OSM tags draw as what, per zoom.

Tags are reduced to one ``kind`` per feature in Python (first matching rule wins), so the Mapnik
style only compares one string attribute. Widths are given for 256-px tiles and grow with zoom; the
renderer multiplies everything by size/256 (a 768-px z16 tile is the "@3x" z16 tile).
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import escape

#: Background (OSM Carto land colour).
LAND = "#f2efe9"

# (key, values or None for any, kind), first match wins; order puts specific before generic.
AREA_RULES: tuple[tuple[str, frozenset[str] | None, str], ...] = (
    ("natural", frozenset({"sea", "water", "bay"}), "water"),
    ("waterway", frozenset({"riverbank", "dock", "canal"}), "water"),
    ("landuse", frozenset({"reservoir", "basin", "pond"}), "water"),
    ("building", None, "building"),
    ("amenity", frozenset({"school", "university", "college", "kindergarten", "research_institute"}), "education"),
    ("amenity", frozenset({"hospital", "clinic", "doctors"}), "hospital"),
    ("healthcare", frozenset({"hospital", "clinic"}), "hospital"),
    ("amenity", frozenset({"parking", "bicycle_parking"}), "parking"),
    ("amenity", frozenset({"place_of_worship"}), "worship"),
    ("amenity", frozenset({"grave_yard"}), "cemetery"),
    ("leisure", frozenset({"pitch", "track"}), "pitch"),
    ("leisure", frozenset({"playground"}), "playground"),
    ("leisure", frozenset({"stadium", "sports_centre"}), "sport"),
    ("leisure", frozenset({"park", "nature_reserve"}), "park"),
    ("leisure", frozenset({"garden"}), "garden"),
    ("tourism", frozenset({"zoo", "botanical_garden"}), "park"),
    ("landuse", frozenset({"cemetery"}), "cemetery"),
    ("landuse", frozenset({"forest"}), "wood"),
    ("natural", frozenset({"wood"}), "wood"),
    ("natural", frozenset({"scrub"}), "scrub"),
    ("natural", frozenset({"heath", "grassland"}), "heath"),
    ("natural", frozenset({"wetland"}), "wetland"),
    ("natural", frozenset({"beach", "sand", "shingle"}), "sand"),
    ("natural", frozenset({"bare_rock", "scree"}), "rock"),
    ("landuse", frozenset({"grass", "meadow", "village_green", "recreation_ground", "flowerbed"}), "grass"),
    ("landuse", frozenset({"residential"}), "residential"),
    ("landuse", frozenset({"commercial"}), "commercial"),
    ("landuse", frozenset({"retail"}), "retail"),
    ("landuse", frozenset({"industrial", "port", "railway"}), "industrial"),
    ("landuse", frozenset({"construction", "brownfield"}), "construction"),
    ("landuse", frozenset({"military"}), "military"),
    ("highway", frozenset({"pedestrian", "footway"}), "pedestrian"),
    ("place", frozenset({"square"}), "pedestrian"),
    ("man_made", frozenset({"pier"}), "pier"),
    ("railway", frozenset({"platform"}), "platform"),
    ("public_transport", frozenset({"platform"}), "platform"),
)

#: kind -> (fill, outline or ""), OSM Carto colours.
AREA_COLOURS: dict[str, tuple[str, str]] = {
    "water": ("#aad3df", ""), "building": ("#d9d0c9", "#c4b6ab"), "education": ("#ffffe5", "#d9c9a6"),
    "hospital": ("#ffffe5", "#e6b8b8"), "parking": ("#eeeeee", "#d8d8d8"), "worship": ("#d0d0d0", ""),
    "cemetery": ("#aacbaf", ""), "pitch": ("#aae0cb", "#88b8a5"), "playground": ("#dffce2", "#a5dcb0"),
    "sport": ("#dffce2", "#8ad3af"), "park": ("#c8facc", ""), "garden": ("#cdebb0", ""),
    "wood": ("#add19e", ""), "scrub": ("#c8d7ab", ""), "heath": ("#d6d99f", ""), "wetland": ("#d6e6cd", ""),
    "sand": ("#f5e9c6", ""), "rock": ("#eee5dc", ""), "grass": ("#cdebb0", ""),
    "residential": ("#e0dfdf", ""), "commercial": ("#f2dad9", ""), "retail": ("#ffd6d1", ""),
    "industrial": ("#ebdbe8", ""), "construction": ("#c7c7b4", ""), "military": ("#f3e3dd", ""),
    "pedestrian": ("#dddde8", "#c5c5d0"), "pier": ("#f2efe9", "#c8c8c8"), "platform": ("#bbbbbb", "#999999"),
}
#: Area kinds painted in the water pass / the building pass (everything else is land cover).
WATER_KINDS = frozenset({"water"})
#: Area-label text colour by kind (others: dark grey).
AREA_TEXT = {"park": "#1f7a3b", "garden": "#1f7a3b", "grass": "#1f7a3b", "wood": "#1f7a3b",
             "cemetery": "#1f7a3b", "pitch": "#1f7a3b", "water": "#3f6fa3", "education": "#6b5a2e",
             "hospital": "#a02020"}

ROAD_RULES: tuple[tuple[str, frozenset[str], str], ...] = (
    ("highway", frozenset({"motorway", "motorway_link"}), "motorway"),
    ("highway", frozenset({"trunk", "trunk_link"}), "trunk"),
    ("highway", frozenset({"primary", "primary_link"}), "primary"),
    ("highway", frozenset({"secondary", "secondary_link"}), "secondary"),
    ("highway", frozenset({"tertiary", "tertiary_link"}), "tertiary"),
    ("highway", frozenset({"residential", "unclassified", "living_street", "road"}), "minor"),
    ("highway", frozenset({"service"}), "service"),
    ("highway", frozenset({"pedestrian"}), "pedestrian"),
    ("highway", frozenset({"footway", "path", "steps", "bridleway", "track", "corridor"}), "footway"),
    ("highway", frozenset({"cycleway"}), "cycleway"),
    ("railway", frozenset({"rail", "light_rail", "narrow_gauge", "preserved"}), "rail"),
    ("railway", frozenset({"tram", "subway", "funicular", "monorail"}), "tram"),
    ("waterway", frozenset({"river", "canal"}), "river"),
    ("waterway", frozenset({"stream", "ditch", "drain"}), "stream"),
)
#: kind -> (width at z16 on a 256-px tile, fill, casing or "", dash array or ""), drawn in this order.
LINE_STYLE: dict[str, tuple[float, str, str, str]] = {
    "river": (5.0, "#aad3df", "", ""), "stream": (1.5, "#aad3df", "", ""),
    "footway": (1.0, "#fa8072", "", "2,1.5"), "cycleway": (1.0, "#2f2fff", "", "2,1.5"),
    "service": (3.0, "#ffffff", "#bbbbbb", ""), "pedestrian": (5.0, "#dddde8", "#999999", ""),
    "minor": (6.0, "#ffffff", "#bbbbbb", ""), "tertiary": (7.5, "#ffffff", "#8f8f8f", ""),
    "secondary": (8.5, "#f7fabf", "#707d05", ""), "primary": (9.0, "#fcd6a4", "#a06b00", ""),
    "trunk": (9.5, "#f9b29c", "#c84e2f", ""), "motorway": (10.0, "#e892a2", "#dc2a67", ""),
    "tram": (1.2, "#6e6e6e", "", ""), "rail": (2.2, "#707070", "", ""),
}
#: Road kinds whose names are labelled, in label priority order.
NAMED_ROADS = ("motorway", "trunk", "primary", "secondary", "tertiary", "minor", "pedestrian")

POI_RULES: tuple[tuple[str, frozenset[str] | None, str], ...] = (
    ("amenity", frozenset({"restaurant", "cafe", "fast_food", "bar", "pub", "ice_cream", "food_court"}), "food"),
    ("amenity", frozenset({"hospital", "clinic", "doctors", "dentist", "pharmacy"}), "health"),
    ("healthcare", None, "health"),
    ("amenity", frozenset({"school", "university", "college", "kindergarten", "library"}), "education"),
    ("amenity", frozenset({"place_of_worship"}), "worship"),
    ("railway", frozenset({"station", "halt", "tram_stop", "subway_entrance"}), "transport"),
    ("public_transport", frozenset({"station"}), "transport"),
    ("amenity", frozenset({"bus_station", "ferry_terminal", "parking", "fuel"}), "transport"),
    ("shop", None, "shop"),
    ("tourism", None, "tourism"),
    ("historic", None, "tourism"),
    ("leisure", None, "leisure"),
    ("amenity", None, "amenity"),
    ("office", None, "amenity"),
)
POI_COLOURS = {"food": "#c77400", "health": "#bf0000", "education": "#8a6a2f", "worship": "#5a5a5a",
               "transport": "#0078c8", "shop": "#ac39ac", "tourism": "#0092da", "leisure": "#2e8b57",
               "amenity": "#734a08"}


def classify(tags: Mapping[str, str], rules: tuple) -> str:
    """The kind of the first rule whose key=value (or key=*) is in ``tags``; "" for none."""
    for key, values, kind in rules:
        if key in tags and (values is None or tags[key] in values):
            return kind
    return ""


def label_of(tags: Mapping[str, str], language: str | None) -> str:
    """The name to print: ``name:<language>`` when asked for and present, else ``name``."""
    if language and tags.get(f"name:{language}"):
        return tags[f"name:{language}"]
    return tags.get("name", "")


def zoom_scale(zoom: int) -> float:
    """How much line widths grow from z16 (about 1.7x per zoom level, as OSM Carto roughly does)."""
    return 1.7 ** (zoom - 16)


def min_label_area_m2(zoom: int) -> float:
    """Named areas smaller than about 40x40 px (256-px tile) at this zoom go unlabelled."""
    metres_per_px = 40075016.686 / (256 * 2**zoom)
    return (40 * metres_per_px) ** 2
