"""sociomap.viewer.style: one colour per socio-function, and the MapLibre style of a view.

The colours are fixed per socio-function (so a park is green in every run, on the map, in the legend
and in the pictures) and chosen to stay apart on imagery and on a light map; other layers (place-name
queries) take the next colour of a fallback palette.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sociomap.viewer.view import RunView

#: The 10 SocioSeg socio-functions, by layer slug.
FUNCTION_COLOURS = {
    "park_and_greenspace": "#2ca02c",
    "educational": "#1f77b4",
    "medical": "#d62728",
    "residential": "#ff7f0e",
    "commercial_service": "#e377c2",
    "sport_and_cultural": "#9467bd",
    "administrative": "#8c564b",
    "business_office": "#17becf",
    "transportation_stations": "#bcbd22",
    "industrial": "#7f7f7f",
}
_FALLBACK = ("#00a6a6", "#f4a261", "#6a4c93", "#e63946", "#2a9d8f", "#ffb703", "#8338ec", "#3a86ff")
FILL_OPACITY = 0.38
LINE_WIDTH = 2.0
#: The page background where no raster covers the map (the light-map colour of sociomap's maps).
PAPER = "#f2efe9"


def layer_colour(slug: str, index: int) -> str:
    """The layer's "#rrggbb": its socio-function's colour, else the ``index``-th fallback colour."""
    return FUNCTION_COLOURS.get(slug) or _FALLBACK[index % len(_FALLBACK)]


def rgb(colour: str) -> tuple[int, int, int]:
    """ "#rrggbb" -> (r, g, b)."""
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def fill_layer_id(slug: str) -> str:
    """MapLibre id of a socio-function's fill layer (the one clicks are queried on)."""
    return f"{slug}-fill"


def line_layer_id(slug: str) -> str:
    """MapLibre id of a socio-function's outline layer."""
    return f"{slug}-line"


def build_style(view: RunView, raster_sources: dict[str, dict], vector_sources: dict[str, dict]) -> dict:
    """A MapLibre style: the paper colour, the backgrounds, then each layer as fill + outline.

    ``raster_sources``: background role -> MapLibre source (raster or image); ``vector_sources``:
    ``{"sociomap": vector source}`` (one PMTiles archive, a source-layer per slug) or slug -> GeoJSON
    source. No symbol layers, so the style needs no glyphs and works offline.
    """
    layers: list[dict] = [{"id": "paper", "type": "background", "paint": {"background-color": PAPER}}]
    for background in view.backgrounds:
        if background.role in raster_sources:
            layers.append(
                {
                    "id": f"bg-{background.role}",
                    "type": "raster",
                    "source": f"bg-{background.role}",
                    "paint": {"raster-fade-duration": 0},
                    "layout": {"visibility": "visible" if background is view.backgrounds[0] else "none"},
                }
            )
    for layer in view.layers:
        source = (
            {"source": "sociomap", "source-layer": layer.slug}
            if "sociomap" in vector_sources
            else {"source": f"layer-{layer.slug}"}
        )
        layers.append(
            {
                "id": fill_layer_id(layer.slug),
                "type": "fill",
                **source,
                "paint": {"fill-color": layer.colour, "fill-opacity": FILL_OPACITY},
            }
        )
        layers.append(
            {
                "id": line_layer_id(layer.slug),
                "type": "line",
                **source,
                "paint": {"line-color": layer.colour, "line-width": LINE_WIDTH},
            }
        )
    sources = {f"bg-{role}": spec for role, spec in raster_sources.items()}
    sources.update(
        vector_sources
        if "sociomap" in vector_sources
        else {f"layer-{slug}": spec for slug, spec in vector_sources.items()}
    )
    return {"version": 8, "name": view.title, "sources": sources, "layers": layers}
