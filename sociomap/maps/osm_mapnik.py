"""sociomap.maps.osm_mapnik: the Mapnik map (style XML per zoom + in-memory layers) for OSMData.

Layers are split by draw group (land cover, water, buildings, roads, labels) so paint order never
depends on a spatial index's order; within a layer features are added in paint/label priority order
and Mapnik's memory datasource keeps that order.
"""

from __future__ import annotations

import functools
import textwrap
from dataclasses import dataclass
from importlib import resources

import geopandas as gpd
import numpy as np
import shapely

from sociomap.maps.mapnik_env import mapnik
from sociomap.maps.osm_data import OSMData
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


@functools.cache
def register_fonts() -> None:
    """Make the bundled CJK face known to Mapnik (once per process)."""
    with resources.as_file(resources.files("sociomap.maps").joinpath("fonts")) as folder:
        mapnik.register_fonts(str(folder))


def _fontsets() -> str:
    return "".join(f'<FontSet name="{name}"><Font face-name="{face}"/><Font face-name="{CJK_FACE}"/></FontSet>'
                   for name, face in FACES.items())


def _text(fontset: str, size: float, fill: str, extra: str = "") -> str:
    return (f'<TextSymbolizer fontset-name="{fontset}" size="{size}" fill="{fill}" halo-fill="#ffffff" '
            f'halo-radius="1.5" avoid-edges="true" {extra}>[label]</TextSymbolizer>')


def _rule(kind: str, body: str, extra_filter: str = "") -> str:
    return f"<Rule><Filter>[kind]='{kind}'{extra_filter}</Filter>{body}</Rule>"


def _area_style(name: str, kinds: list[str]) -> str:
    rules = []
    for kind in kinds:
        fill, outline = AREA_COLOURS[kind]
        stroke = f'<LineSymbolizer stroke="{outline}" stroke-width="0.6"/>' if outline else ""
        rules.append(_rule(kind, f'<PolygonSymbolizer fill="{fill}"/>{stroke}'))
    return f'<Style name="{name}">{"".join(rules)}</Style>'


def _line_styles(zoom: int) -> str:
    grow = zoom_scale(zoom)
    casing, fill = [], []
    for kind, (width, colour, edge, dash) in LINE_STYLE.items():
        w = round(width * grow, 2)
        if edge:
            casing.append(_rule(kind, f'<LineSymbolizer stroke="{edge}" stroke-width="{w + 1.6}" '
                                      'stroke-linecap="round" stroke-linejoin="round"/>'))
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        body = (f'<LineSymbolizer stroke="{colour}" stroke-width="{w}" stroke-linecap="round" '
                f'stroke-linejoin="round"{dashes}/>')
        if kind == "rail":
            body += f'<LineSymbolizer stroke="#ffffff" stroke-width="{round(w * 0.5, 2)}" stroke-dasharray="6,6"/>'
        fill.append(_rule(kind, body))
    return f'<Style name="casing">{"".join(casing)}</Style><Style name="lines">{"".join(fill)}</Style>'


def _label_styles(zoom: int) -> str:
    min_area = min_label_area_m2(zoom)
    area_rules = "".join(
        _rule(kind, _text("sans-italic" if kind in AREA_TEXT else "sans", 10.5, AREA_TEXT.get(kind, "#4a4a4a"),
                          'placement="interior" wrap-width="80" margin="6" repeat-distance="150" clip="true"'),
              f" and [area] >= {min_area}")
        for kind in AREA_COLOURS)
    road = _text("sans", 9.5, "#333333", 'placement="line" max-char-angle-delta="25" spacing="400" '
                                          'upright="auto" margin="4" repeat-distance="150"')
    road_rules = "".join(_rule(kind, road) for kind in NAMED_ROADS)
    poi_rules = "".join(_rule(kind, (
        f'<MarkersSymbolizer marker-type="ellipse" width="6" height="6" fill="{colour}" stroke="#ffffff" '
        'stroke-width="1" allow-overlap="false" placement="point"/>'
        + _text("sans", 9, colour, 'dy="7" margin="3" repeat-distance="150"')))
        for kind, colour in POI_COLOURS.items() if zoom >= POI_MIN_ZOOM or kind in MAJOR_POIS)
    return (f'<Style name="area-labels">{area_rules}</Style><Style name="road-labels">{road_rules}</Style>'
            f'<Style name="pois">{poi_rules}</Style>')


@functools.lru_cache(maxsize=8)
def style_xml(zoom: int) -> str:
    """The whole Mapnik map XML for one zoom level (layers without datasources)."""
    land = [k for k in AREA_COLOURS if k not in WATER_KINDS and k != "building"]
    styles = (_area_style("landcover", land) + _area_style("water", sorted(WATER_KINDS))
              + _area_style("buildings", ["building"]) + _line_styles(zoom) + _label_styles(zoom))
    layer_styles = {"landcover": ["landcover"], "water": ["water"], "waterways": ["lines"],
                    "buildings": ["buildings"], "roads": ["casing", "lines"], "area-labels": ["area-labels"],
                    "road-labels": ["road-labels"], "pois": ["pois"]}
    layers = "".join(
        f'<Layer name="{name}" srs="{SRS}">'
        + "".join(f"<StyleName>{s}</StyleName>" for s in layer_styles[name]) + "</Layer>"
        for name in LAYERS)
    return (f'<Map srs="{SRS}" background-color="{LAND}">{_fontsets()}{styles}{layers}</Map>')


def _datasource(frame: gpd.GeoDataFrame) -> mapnik.MemoryDatasource:
    """Mapnik features from a frame with kind/label/area_m2/rank columns, in frame order."""
    context = mapnik.Context()
    for field in FIELDS:
        context.push(field)
    source = mapnik.MemoryDatasource()
    for i, (kind, label, area, rank, wkb) in enumerate(zip(
            frame.kind, frame.label, frame.area_m2, frame["rank"], shapely.to_wkb(frame.geometry.values), strict=True)):
        feature = mapnik.Feature(context, i + 1)
        feature.geometry = mapnik.Geometry.from_wkb(wkb)
        feature["kind"], feature["label"], feature["area"], feature["rank"] = kind, label, float(area), int(rank)
        source.add_feature(feature)
    return source


@dataclass(frozen=True)
class MapLayers:
    """The datasources shared by every tile, plus the named areas whose labels are placed per tile."""

    sources: dict[str, mapnik.MemoryDatasource]
    named_areas: gpd.GeoDataFrame
    tree: shapely.STRtree

    def area_labels(self, bounds_m: tuple[float, float, float, float]) -> mapnik.MemoryDatasource:
        """Named areas clipped to the tile: Mapnik's "interior" placement then puts each name at the
        pole of inaccessibility of the visible part, so every tile that shows a park names it."""
        frame = self.named_areas.iloc[np.sort(self.tree.query(shapely.box(*bounds_m)))]
        clipped = shapely.clip_by_rect(frame.geometry.values, *bounds_m)
        visible = ~shapely.is_empty(clipped)
        frame = frame[visible].assign(area_m2=shapely.area(clipped[visible]))
        return _datasource(frame.set_geometry(clipped[visible]))


def _styled(frame: gpd.GeoDataFrame, rules: tuple, language: str | None, order: list[str]) -> gpd.GeoDataFrame:
    out = frame.assign(kind=[classify(t, rules) for t in frame.tags],
                       label=[label_of(t, language) for t in frame.tags],
                       area_m2=frame.geometry.area)
    out = out[out.kind != ""]
    rank = {kind: i for i, kind in enumerate(order)}
    return out.assign(rank=[rank.get(k, len(rank)) for k in out.kind])


def build_layers(osm: OSMData, language: str | None) -> MapLayers:
    """One datasource per layer of ``LAYERS`` (area labels per tile), in paint / label priority order."""
    areas = _styled(osm.areas, AREA_RULES, language, list(AREA_COLOURS))
    areas = areas.sort_values("area_m2", ascending=False, kind="stable")
    above_ground = np.array([t.get("tunnel", "no") == "no" for t in osm.lines.tags], bool)
    lines = _styled(osm.lines.loc[above_ground], ROAD_RULES, language, list(LINE_STYLE))
    lines = lines.sort_values("rank", kind="stable")
    pois = _styled(osm.points, POI_RULES, language, list(POI_COLOURS)).sort_values("rank", kind="stable")
    pois = pois[pois.label != ""]  # unnamed benches, switches, bins: clutter that tells the model nothing
    # Wrapped here once, not by Mapnik's wrap-width per tile (7 ms of 35 on the densest Helsinki tile).
    pois = pois.assign(label=[textwrap.fill(t, POI_WRAP_CHARS, break_long_words=False) for t in pois.label])
    named_roads = lines[lines.kind.isin(NAMED_ROADS) & (lines.label != "")]
    road_rank = {k: i for i, k in enumerate(NAMED_ROADS)}
    named_roads = named_roads.assign(rank=named_roads.kind.map(road_rank)).sort_values("rank", kind="stable")
    is_water, is_building = areas.kind.isin(WATER_KINDS), areas.kind == "building"
    frames = {
        "landcover": areas[~is_water & ~is_building], "water": areas[is_water], "buildings": areas[is_building],
        "waterways": lines[lines.kind.isin(["river", "stream"])], "roads": lines[~lines.kind.isin(["river", "stream"])],
        "road-labels": named_roads, "pois": pois,
    }
    named_areas = areas[areas.label != ""].set_geometry(shapely.make_valid(areas[areas.label != ""].geometry.values))
    return MapLayers({name: _datasource(frame) for name, frame in frames.items()}, named_areas,
                     shapely.STRtree(named_areas.geometry.values))


def build_map(zoom: int, layers: MapLayers) -> mapnik.Map:
    """A Mapnik map for one zoom with the shared datasources attached (area labels: per tile)."""
    register_fonts()
    m = mapnik.Map(256, 256)
    mapnik.load_map_from_string(m, style_xml(zoom))
    for layer in m.layers:
        if layer.name in layers.sources:
            layer.datasource = layers.sources[layer.name]
    return m
