"""sociomap.maps.osm_mapnik: Mapnik building blocks shared by the map styles, and the ``carto`` style.

A style is an XML map per zoom (layers without datasources) plus a function that turns the index
features of ONE tile (tile + geometry buffer) into in-memory datasources, one per layer, in paint /
label priority order (Mapnik's memory datasource keeps insertion order, so paint order never depends
on a spatial index). Datasources are built per tile and per call and never shared between threads.
"""

from __future__ import annotations

import functools
import textwrap
import threading
from importlib import resources

import numpy as np
import shapely

from sociomap.maps.mapnik_env import mapnik
from sociomap.maps.osm_index import Features, OSMIndex
from sociomap.maps.osm_style import (
    AREA_COLOURS, AREA_RULES, AREA_TEXT, LAND, LINE_STYLE, NAMED_ROADS, POI_COLOURS, POI_RULES,
    ROAD_RULES, WATER_KINDS, classify, label_of, min_label_area_m2, zoom_scale,
)

SRS = "epsg:3857"
#: Geometry drawn this far (px at 256-px scale) beyond each tile edge, so edge features join up.
BUFFER_PX = 32
FIELDS = ("kind", "label", "area", "rank")
#: Fallback order of font faces: DejaVu (Latin, Greek, Cyrillic; shipped in the mapnik wheel),
#: then Droid Sans Fallback (CJK; bundled under fonts/, Apache-2.0).
FACES = {"sans": "DejaVu Sans Book", "sans-bold": "DejaVu Sans Bold", "sans-italic": "DejaVu Sans Oblique"}
CJK_FACE = "Droid Sans Fallback Regular"
#: Below this zoom only the major POI kinds are drawn (as OSM Carto does, to keep the map readable).
POI_MIN_ZOOM = 16
MAJOR_POIS = frozenset({"transport", "education", "health"})
POI_WRAP_CHARS = 16
LAYERS = ("landcover", "water", "waterways", "buildings", "roads", "area-labels", "road-labels", "pois")
#: Font registration and XML loading touch Mapnik's process-wide registries: one thread at a time.
MAPNIK_SETUP_LOCK = threading.Lock()


def register_fonts() -> None:
    """Make the bundled CJK face known to Mapnik (once per process, under the setup lock)."""
    with MAPNIK_SETUP_LOCK:
        _register_fonts()


@functools.cache
def _register_fonts() -> None:
    with resources.as_file(resources.files("sociomap.maps").joinpath("fonts")) as folder:
        mapnik.register_fonts(str(folder))


def fontsets() -> str:
    """The FontSet elements every style uses (DejaVu, then the CJK fallback per glyph)."""
    return "".join(f'<FontSet name="{name}"><Font face-name="{face}"/><Font face-name="{CJK_FACE}"/></FontSet>'
                   for name, face in FACES.items())


def text(fontset: str, size: float, fill: str, extra: str = "") -> str:
    """A TextSymbolizer printing [label], never cut at a tile edge."""
    return (f'<TextSymbolizer fontset-name="{fontset}" size="{size}" fill="{fill}" halo-fill="#ffffff" '
            f'halo-radius="1.5" avoid-edges="true" {extra}>[label]</TextSymbolizer>')


def rule(kind: str, body: str, extra_filter: str = "") -> str:
    """A Rule for one feature kind."""
    return f"<Rule><Filter>[kind]='{kind}'{extra_filter}</Filter>{body}</Rule>"


def layer_xml(name: str, styles: list[str]) -> str:
    """A Layer element (its datasource is attached per tile)."""
    return (f'<Layer name="{name}" srs="{SRS}">' + "".join(f"<StyleName>{s}</StyleName>" for s in styles)
            + "</Layer>")


def map_xml(background: str, styles: str, layers: str) -> str:
    """The whole Map element."""
    return f'<Map srs="{SRS}" background-color="{background}">{fontsets()}{styles}{layers}</Map>'


def datasource(kinds: list[str], labels: list[str], areas: list[float], ranks: list[int],
               geometries: np.ndarray) -> mapnik.MemoryDatasource:
    """Mapnik features (kind, label, area, rank) in the given order."""
    context = mapnik.Context()
    for name in FIELDS:
        context.push(name)
    source = mapnik.MemoryDatasource()
    for i, (kind, label, area, rank, wkb) in enumerate(
            zip(kinds, labels, areas, ranks, shapely.to_wkb(geometries), strict=True)):
        feature = mapnik.Feature(context, i + 1)
        feature.geometry = mapnik.Geometry.from_wkb(wkb)
        feature["kind"], feature["label"], feature["area"], feature["rank"] = kind, label, float(area), int(rank)
        source.add_feature(feature)
    return source


def styled(features: Features, rules: tuple, language: str | None, order: list[str],
           clip: tuple[float, float, float, float] | None = None) -> dict[str, list]:
    """Kind, label, full-geometry area and rank of every feature a rule classifies, plus its geometry
    clipped to ``clip`` (EPSG:3857) so that huge polygons (sea, forests) cost nothing outside the tile."""
    kinds = [classify(t, rules) for t in features.tags]
    keep = [i for i, k in enumerate(kinds) if k]
    rank = {kind: i for i, kind in enumerate(order)}
    geoms = features.geometry[keep] if keep else np.empty(0, object)
    out = {"kind": [kinds[i] for i in keep], "label": [label_of(features.tags[i], language) for i in keep],
           "area": list(shapely.area(geoms)) if len(geoms) else [], "osm_id": [features.osm_id[i] for i in keep],
           "tags": [features.tags[i] for i in keep],
           "geometry": shapely.clip_by_rect(geoms, *clip) if clip is not None and len(geoms) else geoms}
    out["rank"] = [rank.get(k, len(rank)) for k in out["kind"]]
    return out


def select(frame: dict[str, list], mask: list[bool] | np.ndarray, order: list[int] | None = None) -> dict:
    """The rows of a ``styled`` frame where ``mask`` holds, optionally re-ordered by ``order`` keys."""
    idx = [i for i, m in enumerate(mask) if m]
    if order is not None:
        idx = sorted(idx, key=lambda i: order[i])
    picked = {k: ([v[i] for i in idx] if not isinstance(v, np.ndarray) else v[idx]) for k, v in frame.items()}
    picked["geometry"] = np.asarray(frame["geometry"], dtype=object)[idx] if idx else np.empty(0, object)
    return picked


def as_datasource(frame: dict) -> mapnik.MemoryDatasource:
    """A ``styled``/``select`` frame as a Mapnik datasource, dropping geometries emptied by clipping."""
    keep = [i for i, g in enumerate(frame["geometry"]) if g is not None and not g.is_empty]
    return datasource([frame["kind"][i] for i in keep], [frame["label"][i] for i in keep],
                      [frame["area"][i] for i in keep], [frame["rank"][i] for i in keep],
                      np.asarray(frame["geometry"], dtype=object)[keep] if keep else np.empty(0, object))


def wrap(label: str) -> str:
    """POI names wrapped once in Python (Mapnik's wrap-width cost 7 ms on the densest Helsinki tile)."""
    return textwrap.fill(label, POI_WRAP_CHARS, break_long_words=False)


# --- the carto style (OSM-Carto-like: land cover, buildings, roads, labels) --------------------------


def _area_style(name: str, kinds: list[str]) -> str:
    rules = []
    for kind in kinds:
        fill, outline = AREA_COLOURS[kind]
        stroke = f'<LineSymbolizer stroke="{outline}" stroke-width="0.6"/>' if outline else ""
        rules.append(rule(kind, f'<PolygonSymbolizer fill="{fill}"/>{stroke}'))
    return f'<Style name="{name}">{"".join(rules)}</Style>'


def line_styles(zoom: int, line_style: dict) -> str:
    """Casing and fill styles of road/rail/river kinds, widths grown for ``zoom``."""
    grow = zoom_scale(zoom)
    casing, fill = [], []
    for kind, (width, colour, edge, dash) in line_style.items():
        w = round(width * grow, 2)
        if edge:
            casing.append(rule(kind, f'<LineSymbolizer stroke="{edge}" stroke-width="{w + 1.6}" '
                                     'stroke-linecap="round" stroke-linejoin="round"/>'))
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        body = (f'<LineSymbolizer stroke="{colour}" stroke-width="{w}" stroke-linecap="round" '
                f'stroke-linejoin="round"{dashes}/>')
        if kind == "rail":
            body += f'<LineSymbolizer stroke="#ffffff" stroke-width="{round(w * 0.5, 2)}" stroke-dasharray="6,6"/>'
        fill.append(rule(kind, body))
    return f'<Style name="casing">{"".join(casing)}</Style><Style name="lines">{"".join(fill)}</Style>'


def road_label_style(named_roads: tuple[str, ...]) -> str:
    """Street names along the line, major roads first."""
    road = text("sans", 9.5, "#333333", 'placement="line" max-char-angle-delta="25" spacing="400" '
                                        'upright="auto" margin="4" repeat-distance="150"')
    return f'<Style name="road-labels">{"".join(rule(kind, road) for kind in named_roads)}</Style>'


def _label_styles(zoom: int) -> str:
    min_area = min_label_area_m2(zoom)
    area_rules = "".join(
        rule(kind, text("sans-italic" if kind in AREA_TEXT else "sans", 10.5, AREA_TEXT.get(kind, "#4a4a4a"),
                        'placement="interior" wrap-width="80" margin="6" repeat-distance="150" clip="true"'),
             f" and [area] >= {min_area}")
        for kind in AREA_COLOURS)
    poi_rules = "".join(rule(kind, (
        f'<MarkersSymbolizer marker-type="ellipse" width="6" height="6" fill="{colour}" stroke="#ffffff" '
        'stroke-width="1" allow-overlap="false" placement="point"/>'
        + text("sans", 9, colour, 'dy="7" margin="3" repeat-distance="150"')))
        for kind, colour in POI_COLOURS.items() if zoom >= POI_MIN_ZOOM or kind in MAJOR_POIS)
    return (f'<Style name="area-labels">{area_rules}</Style>{road_label_style(NAMED_ROADS)}'
            f'<Style name="pois">{poi_rules}</Style>')


class CartoStyle:
    """The OSM-Carto-like style: land use, leisure and amenity areas filled by kind (``--map-style carto``)."""

    name = "carto"
    version = "sociomap carto v2"

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one instance per process, keyed by zoom
    def xml(self, zoom: int) -> str:
        """The whole Mapnik map XML for one zoom level (layers without datasources)."""
        land = [k for k in AREA_COLOURS if k not in WATER_KINDS and k != "building"]
        styles = (_area_style("landcover", land) + _area_style("water", sorted(WATER_KINDS))
                  + _area_style("buildings", ["building"]) + line_styles(zoom, LINE_STYLE) + _label_styles(zoom))
        layer_styles = {"landcover": ["landcover"], "water": ["water"], "waterways": ["lines"],
                        "buildings": ["buildings"], "roads": ["casing", "lines"], "area-labels": ["area-labels"],
                        "road-labels": ["road-labels"], "pois": ["pois"]}
        return map_xml(LAND, styles, "".join(layer_xml(name, layer_styles[name]) for name in LAYERS))

    def layers(self, index: OSMIndex, tile_m: tuple[float, ...], query_m: tuple[float, ...],
               language: str | None) -> dict[str, mapnik.MemoryDatasource]:
        """Datasources for one tile: ``tile_m`` its bounds, ``query_m`` the bounds with the buffer."""
        areas = styled(index.query("areas", query_m), AREA_RULES, language, list(AREA_COLOURS), query_m)
        by_size = list(-np.asarray(areas["area"]))  # largest first, the same order in every tile
        is_water = [k in WATER_KINDS for k in areas["kind"]]
        is_building = [k == "building" for k in areas["kind"]]
        lines = styled(index.query("lines", query_m), ROAD_RULES, language, list(LINE_STYLE), query_m)
        above = [t.get("tunnel", "no") == "no" for t in lines["tags"]]
        rivers = [k in ("river", "stream") for k in lines["kind"]]
        points = index.query("points", query_m, "substr(f.osm_id, 1, 1) = 'n'")  # nodes only: areas are filled
        pois = styled(points, POI_RULES, language, list(POI_COLOURS))
        pois["label"] = [wrap(t) for t in pois["label"]]
        road_rank = {k: i for i, k in enumerate(NAMED_ROADS)}
        named = [a and k in road_rank and bool(lab) for a, k, lab in zip(above, lines["kind"], lines["label"],
                                                                             strict=True)]
        return {
            "landcover": as_datasource(select(areas, [not w and not b for w, b in zip(is_water, is_building,
                                                                                       strict=True)], by_size)),
            "water": as_datasource(select(areas, is_water, by_size)),
            "buildings": as_datasource(select(areas, is_building, by_size)),
            "waterways": as_datasource(select(lines, [a and r for a, r in zip(above, rivers, strict=True)],
                                              lines["rank"])),
            "roads": as_datasource(select(lines, [a and not r for a, r in zip(above, rivers, strict=True)],
                                          lines["rank"])),
            "area-labels": _area_labels(areas, tile_m),
            "road-labels": as_datasource(select(lines, named, [road_rank.get(k, 99) for k in lines["kind"]])),
            "pois": as_datasource(select(pois, [bool(lab) for lab in pois["label"]], pois["rank"])),
        }


def _area_labels(areas: dict, tile_m: tuple[float, ...]) -> mapnik.MemoryDatasource:
    """Named areas clipped to the tile: Mapnik's "interior" placement then puts each name at the pole
    of inaccessibility of the visible part, so every tile that shows a park names it."""
    named = select(areas, [bool(lab) for lab in areas["label"]], list(-np.asarray(areas["area"])))
    geoms = np.asarray(named["geometry"], dtype=object)
    if len(geoms):
        geoms = shapely.clip_by_rect(shapely.make_valid(geoms), *tile_m)
        named["area"] = list(shapely.area(geoms))
    named["geometry"] = geoms
    return as_datasource(named)


def build_map(xml: str, size: int) -> mapnik.Map:
    """A Mapnik map from a style's XML (under the setup lock: XML loading uses process-wide registries)."""
    register_fonts()
    with MAPNIK_SETUP_LOCK:
        m = mapnik.Map(size, size)
        mapnik.load_map_from_string(m, xml)
    return m
