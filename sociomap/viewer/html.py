"""sociomap.viewer.html: the viewer page, for the server or as one self-contained offline file.

Both pages are the same template, ``static/viewer.js`` and a JSON config holding a MapLibre style.
Served: the layers come from the set's vector PMTiles (or GeoJSON), the backgrounds from raster
PMTiles or live tiles, the model texts from ``/api/reasoning``. Offline (``--html``): MapLibre, the
CSS, the layers (GeoJSON), the model texts and one picture per background are inlined, so the file
opens from disk with no server and no network; detail is limited to the embedded pictures.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from importlib import resources
from pathlib import Path

import shapely

from sociomap.errors import InputError
from sociomap.viewer.style import build_style, fill_layer_id, line_layer_id
from sociomap.viewer.view import Layer, RunView, read_features, write_bytes_atomic

logger = logging.getLogger(__name__)

#: Offline pages: longest side of each embedded background picture, px.
HTML_PICTURE_PX = 2048
#: Offline pages: model texts are embedded up to this many bytes in all (beyond, a note says so).
HTML_TEXT_BUDGET = 8_000_000
_PRECISION_DEG = 1e-6  # ~0.1 m: coordinates of the inlined GeoJSON
_TEMPLATE = "viewer.html"


def _static(name: str) -> str:
    return resources.files("sociomap.viewer").joinpath("static", name).read_text("utf-8")


def layer_geojson(layer: Layer) -> dict:
    """A layer as a GeoJSON FeatureCollection in EPSG:4326, coordinates rounded to ~0.1 m."""
    frame = read_features(layer)
    if len(frame):
        frame = frame.set_geometry(shapely.set_precision(frame.geometry.values, _PRECISION_DEG))
    return json.loads(frame.to_json(drop_id=True, na="drop"))


def page_config(view: RunView, style: dict, reasoning: str, texts: dict | None = None) -> dict:
    """What viewer.js reads: the style plus titles, counts, colours and where the model texts are.

    ``reasoning``: "api" (ask the server), "inline" (``texts``: pointer -> entry) or "none".
    """
    return {
        "title": view.title,
        "description": view.description,
        "kind": view.kind,
        "randomWeights": view.random_weights,
        "notes": list(view.notes),
        "bounds": list(view.bounds),
        "runId": view.run_id,
        "reasoning": reasoning,
        "texts": texts or {},
        "backgrounds": [
            {"id": f"bg-{b.role}", "role": b.role, "label": b.label, "credit": b.attribution}
            for b in view.backgrounds
            if f"bg-{b.role}" in style["sources"]
        ],
        "layers": [
            {
                "slug": layer.slug,
                "title": layer.title,
                "count": layer.count,
                "colour": layer.colour,
                "bounds": list(layer.bounds) if layer.bounds else None,
                "fill": fill_layer_id(layer.slug),
                "line": line_layer_id(layer.slug),
            }
            for layer in view.layers
        ],
        "style": style,
    }


def render_page(config: dict, inline: bool) -> str:
    """The HTML page: linked assets (served) or every asset inlined (offline)."""
    if inline:  # an inlined "</script" or "</style" would end the element early
        css = "".join(
            "<style>\n" + _static(n).replace("</style", "<\\/style") + "\n</style>\n"
            for n in ("vendor/maplibre-gl.css", "viewer.css")
        )
        js = "".join(
            "<script>\n" + _static(n).replace("</script", "<\\/script") + "\n</script>\n"
            for n in ("vendor/maplibre-gl.js", "viewer.js")
        )
    else:
        css = (
            '<link rel="stylesheet" href="/static/vendor/maplibre-gl.css">\n'
            '<link rel="stylesheet" href="/static/viewer.css">\n'
        )
        js = (
            '<script src="/static/vendor/maplibre-gl.js"></script>\n'
            '<script src="/static/vendor/pmtiles.js"></script>\n<script src="/static/viewer.js"></script>\n'
        )
    # JSON inside <script>: escape "<" so no "</script>" in the data can end the element.
    data = json.dumps(config, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    parts = {"TITLE": html.escape(config["title"]), "STYLES": css, "CONFIG": data, "SCRIPTS": js}
    # One pass, so text in the data ("__SCRIPTS__" as a place name) is never substituted again.
    return re.sub(r"__(TITLE|STYLES|CONFIG|SCRIPTS)__", lambda m: parts[m[1]], _static(_TEMPLATE))


def _attribution(view: RunView, role: str) -> str:
    background = view.background(role)
    return background.attribution if background else ""


def served_page(view: RunView, live: dict[str, dict]) -> str:
    """The page ``sociomap view`` serves; ``live``: role -> {minzoom, maxzoom, format} of live tiles."""
    rasters: dict[str, dict] = {}
    for background in view.backgrounds:
        # 512 px tiles drawn as 256 px @2x: the map's labels at their designed size, crisp on any screen.
        spec = {"type": "raster", "tileSize": 256, "attribution": background.attribution}
        if background.archive is not None:
            spec["url"] = f"pmtiles:///data/{background.archive.name}"
        elif background.role in live:
            info = live[background.role]
            spec.update(
                tiles=[f"/tiles/{background.role}/{{z}}/{{x}}/{{y}}.{info['format']}"],
                minzoom=info["minzoom"],
                maxzoom=info["maxzoom"],
                bounds=list(view.bounds),
            )
        else:
            continue
        rasters[background.role] = spec
    if view.vector_archive is not None:
        vectors = {"sociomap": {"type": "vector", "url": f"pmtiles:///data/{view.vector_archive.name}"}}
    else:
        vectors = {
            layer.slug: {"type": "geojson", "data": f"/layers/{layer.slug}.geojson"} for layer in view.layers
        }
    reasoning = "api" if view.kind == "model" else "none"
    return render_page(page_config(view, build_style(view, rasters, vectors), reasoning), inline=False)


def _inline_texts(view: RunView, collections: dict[str, dict]) -> tuple[dict, list[str]]:
    """pointer -> stored model entry for every feature's ``reasoning``, within HTML_TEXT_BUDGET."""
    from sociomap.pipeline.cache import read_entries

    pointers = dict.fromkeys(
        p
        for fc in collections.values()
        for f in fc["features"]
        for p in str(f["properties"].get("reasoning") or "").split(";")
        if p.strip()
    )
    texts, used, missing, notes = {}, 0, 0, []
    for pointer in pointers:
        try:
            ((_, meta),) = read_entries(view.out, [pointer])
        except InputError:
            missing += 1
            continue
        size = len(json.dumps(meta))
        if used + size > HTML_TEXT_BUDGET:
            notes.append(
                f"Model texts embedded for {len(texts)} of {len(pointers)} tile results "
                f"(size budget); `sociomap view` serves them all."
            )
            break
        texts[pointer], used = meta, used + size
    if missing:
        notes.append(f"{missing} model texts are not in this folder's cache; they cannot be shown.")
    return texts, notes


def _picture_source(view: RunView, role: str, max_px: int) -> dict | None:
    """An image source with the background pictured over the frame, as an embedded JPEG/PNG."""
    from sociomap.viewer.pictures import compose_background, frame_metres
    from sociomap.viewer.tiles import open_background

    background = view.background(role)
    if background is None:
        return None
    frame = frame_metres(view.bounds, pad=0.02)
    wide = (frame[2] - frame[0]) >= (frame[3] - frame[1])
    width = max_px if wide else max(1, round(max_px * (frame[2] - frame[0]) / (frame[3] - frame[1])))
    canvas = compose_background(open_background(background), frame, width)
    buf = io.BytesIO()
    if role == "imagery":
        canvas.image.convert("RGB").save(buf, "JPEG", quality=85)
        mime = "image/jpeg"
    else:
        canvas.image.convert("RGB").save(buf, "PNG", optimize=True)
        mime = "image/png"
    url = f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"
    return {"type": "image", "url": url, "coordinates": canvas.lnglat_corners()}


def standalone_page(view: RunView, max_px: int = HTML_PICTURE_PX) -> str:
    """One HTML file that works offline: everything inlined (see the module docstring for its limits)."""
    rasters = {
        role: spec for role in ("imagery", "map") if (spec := _picture_source(view, role, max_px)) is not None
    }
    collections = {layer.slug: layer_geojson(layer) for layer in view.layers}
    vectors = {slug: {"type": "geojson", "data": fc} for slug, fc in collections.items()}
    texts, notes = _inline_texts(view, collections) if view.kind == "model" else ({}, [])
    offline = (
        f"Offline page: backgrounds are pictures of at most {max_px} px; run `sociomap view` "
        "for full-resolution tiles."
    )
    view_notes = RunView(**{**view.__dict__, "notes": (*view.notes, *notes, offline)})
    config = page_config(
        view_notes, build_style(view, rasters, vectors), "inline" if texts else "none", texts
    )
    return render_page(config, inline=True)


def write_html(view: RunView, path: Path, max_px: int = HTML_PICTURE_PX) -> Path:
    """Write the offline page to ``path`` (atomically); return ``path``."""
    page = standalone_page(view, max_px)
    logger.info("Offline page %s: %.1f MB", path, len(page.encode("utf-8")) / 1e6)
    return write_bytes_atomic(Path(path), page.encode("utf-8"))
