"""sociomap.viewer.pictures: PNG pictures of a run for reports: an overview and one thumbnail per layer.

The background (imagery, else the map) is assembled from the same 512 px web-map tiles the viewer
serves, at the zoom that gives enough pixels, cropped to the frame and resampled; layers are burnt in
with ``rasterio.features.rasterize`` (fill + outline) and a legend with per-class counts is drawn with
Pillow, in the layer colours used on the web map.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import mercantile
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sociomap.viewer.style import FILL_OPACITY, PAPER, rgb
from sociomap.viewer.tiles import TILE_SIZE, TileReader, open_background
from sociomap.viewer.view import Layer, RunView, read_features, write_bytes_atomic

logger = logging.getLogger(__name__)

PICTURES_DIR = "pictures"
OVERVIEW = "overview.png"
_EARTH = 20037508.342789244  # half the Web-Mercator world width, metres


@dataclass(frozen=True)
class Canvas:
    """A background picture and the Web-Mercator box it covers.

    Attributes:
        image: RGBA picture.
        bounds: (left, bottom, right, top) in EPSG:3857 metres, exactly the picture's edges.
    """

    image: Image.Image
    bounds: tuple[float, float, float, float]

    def lnglat_corners(self) -> list[list[float]]:
        """[[lon, lat] x 4]: top-left, top-right, bottom-right, bottom-left (a MapLibre image source)."""
        left, bottom, right, top = self.bounds
        corners = [(left, top), (right, top), (right, bottom), (left, bottom)]
        return [[round(c, 7) for c in mercantile.lnglat(x, y)] for x, y in corners]


def frame_metres(
    bounds: tuple[float, float, float, float], pad: float = 0.04
) -> tuple[float, float, float, float]:
    """(W, S, E, N) degrees -> a padded (left, bottom, right, top) box in EPSG:3857."""
    west, south, east, north = bounds
    left, bottom = mercantile.xy(west, south)
    right, top = mercantile.xy(east, north)
    dx, dy = max(right - left, 50.0) * pad, max(top - bottom, 50.0) * pad
    return left - dx, bottom - dy, right + dx, top + dy


def compose_background(
    reader: TileReader | None, frame: tuple[float, float, float, float], width: int, maxzoom: int = 19
) -> Canvas:
    """The background over ``frame`` (EPSG:3857 box) as a picture ``width`` px wide.

    Tiles are read at the shallowest zoom that gives at least ``width`` px across (at most ``maxzoom``),
    pasted on the global pixel grid, cropped to the frame and resampled. Without a reader the picture
    is the plain paper colour.
    """
    left, bottom, right, top = frame
    height = max(1, round(width * (top - bottom) / (right - left)))
    blank = Image.new("RGBA", (width, height), (*rgb(PAPER), 255))
    if reader is None:
        return Canvas(blank, frame)
    zoom = min(maxzoom, max(0, math.ceil(math.log2(width * 2 * _EARTH / ((right - left) * TILE_SIZE)))))
    res = 2 * _EARTH / (TILE_SIZE * 2**zoom)
    px0, py0 = (left + _EARTH) / res, (_EARTH - top) / res
    px1, py1 = (right + _EARTH) / res, (_EARTH - bottom) / res
    tx0, ty0, tx1, ty1 = (
        int(px0 // TILE_SIZE),
        int(py0 // TILE_SIZE),
        int(px1 // TILE_SIZE),
        int(py1 // TILE_SIZE),
    )
    mosaic = Image.new("RGBA", ((tx1 - tx0 + 1) * TILE_SIZE, (ty1 - ty0 + 1) * TILE_SIZE), (0, 0, 0, 0))
    limit = 2**zoom
    for tx in range(tx0, tx1 + 1):
        for ty in range(ty0, ty1 + 1):
            if not (0 <= tx < limit and 0 <= ty < limit):
                continue
            rgba = reader.read(mercantile.Tile(tx, ty, zoom), TILE_SIZE)
            if rgba is not None:
                mosaic.paste(Image.fromarray(rgba, "RGBA"), ((tx - tx0) * TILE_SIZE, (ty - ty0) * TILE_SIZE))
    box = (px0 - tx0 * TILE_SIZE, py0 - ty0 * TILE_SIZE, px1 - tx0 * TILE_SIZE, py1 - ty0 * TILE_SIZE)
    crop = mosaic.resize((width, height), Image.Resampling.LANCZOS, box=box)
    return Canvas(Image.alpha_composite(blank, crop), frame)


def draw_layers(canvas: Canvas, layers: list[tuple[Layer, object]], line_px: float = 2.0) -> Image.Image:
    """``canvas`` with each (layer, GeoDataFrame) burnt in: translucent fill and a solid outline."""
    import shapely
    from rasterio.features import rasterize
    from rasterio.transform import from_bounds
    from scipy.ndimage import binary_dilation

    image = canvas.image.copy()
    width, height = image.size
    transform = from_bounds(*canvas.bounds, width, height)
    metres_per_px = (canvas.bounds[2] - canvas.bounds[0]) / width
    for layer, frame in layers:
        geoms = np.asarray([g for g in frame.to_crs("EPSG:3857").geometry if g is not None and not g.is_empty])
        if not len(geoms):
            continue
        # Vertices closer than half a picture pixel change no pixel: a model mask traced at tile resolution has
        # 10-100x more, and rasterizing them (and buffered outlines) took ~50 s for 2,000 features.
        geoms = shapely.simplify(geoms, metres_per_px / 2)
        fill = rasterize(
            geoms, out_shape=(height, width), transform=transform, fill=0, default_value=1, dtype="uint8"
        ).astype(bool)
        outline = rasterize(
            shapely.boundary(geoms), out_shape=(height, width), transform=transform, fill=0, default_value=1,
            dtype="uint8", all_touched=True,
        ).astype(bool)
        if line_px > 1:  # a line_px-wide outline: the 1-px burnt boundary grown by the rest
            outline = binary_dilation(outline, iterations=max(1, round((line_px - 1) / 2)))
        overlay = np.zeros((height, width, 4), np.uint8)
        r, g, b = rgb(layer.colour)
        overlay[fill] = (r, g, b, round(255 * FILL_OPACITY))
        overlay[outline] = (r, g, b, 255)
        image = Image.alpha_composite(image, Image.fromarray(overlay, "RGBA"))
    return image


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans from the mapnik wheel (found without importing mapnik), else Pillow's own font."""
    import importlib.util

    spec = importlib.util.find_spec("mapnik")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "lib" / "mapnik" / "fonts" / "DejaVuSans.ttf"
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def _legend(image: Image.Image, view: RunView, layers: list[Layer], scale: float, credits: str) -> None:
    """Title, warning, one swatch + name + count per layer, top left; credits bottom right."""
    draw = ImageDraw.Draw(image, "RGBA")
    big, small = _font(round(17 * scale)), _font(round(13 * scale))
    pad, swatch = round(10 * scale), round(14 * scale)
    lines: list[tuple[str, object, str | None, str]] = [(view.title, big, None, "#222222")]
    if view.random_weights:
        lines.append(("RANDOM WEIGHTS: layers are meaningless", small, None, "#c00000"))
    for layer in layers:
        lines.append((f"{layer.title}  {layer.count:,}", small, layer.colour, "#222222"))
    heights = [draw.textbbox((0, 0), text, font=font)[3] + round(5 * scale) for text, font, _, _ in lines]
    width = max(
        draw.textbbox((0, 0), text, font=font)[2] + (swatch + pad if colour else 0)
        for text, font, colour, _ in lines
    )
    draw.rectangle((pad, pad, pad * 3 + width, pad * 3 + sum(heights)), fill=(255, 255, 255, 225))
    y = pad * 2
    for (text, font, colour, ink), h in zip(lines, heights, strict=True):
        x = pad * 2
        if colour:
            draw.rectangle(
                (x, y + 2, x + swatch, y + 2 + swatch), fill=(*rgb(colour), 255), outline="#333333"
            )
            x += swatch + pad
        draw.text((x, y), text, font=font, fill=ink)
        y += h
    if credits:
        box = draw.textbbox((0, 0), credits, font=small)
        x, y = image.width - box[2] - pad, image.height - box[3] - pad
        draw.rectangle((x - 4, y - 2, x + box[2] + 4, y + box[3] + 2), fill=(255, 255, 255, 200))
        draw.text((x, y), credits, font=small, fill="#333333")


def _scale_bar(image: Image.Image, canvas: Canvas, scale: float) -> None:
    """A ground-distance bar bottom left (Web-Mercator metres shrink by cos(latitude))."""
    left, bottom, right, top = canvas.bounds
    lat = mercantile.lnglat(0, (bottom + top) / 2).lat
    ground_per_px = (right - left) / image.width * math.cos(math.radians(lat))
    target = ground_per_px * image.width / 5
    nice = 10 ** math.floor(math.log10(target))
    nice *= next(m for m in (5, 2, 1) if nice * m <= target)
    length = round(nice / ground_per_px)
    draw = ImageDraw.Draw(image, "RGBA")
    pad, font = round(12 * scale), _font(round(12 * scale))
    x, y = pad, image.height - pad - round(8 * scale)
    label = f"{nice / 1000:g} km" if nice >= 1000 else f"{nice:g} m"
    draw.rectangle(
        (x - 4, y - round(20 * scale), x + length + 4, y + round(8 * scale) + 2), fill=(255, 255, 255, 200)
    )
    draw.rectangle((x, y, x + length, y + round(5 * scale)), fill="#222222")
    draw.text((x, y - round(18 * scale)), label, font=font, fill="#222222")


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "PNG", optimize=True)
    return buf.getvalue()


def picture_background(view: RunView) -> tuple[TileReader | None, str]:
    """The reader of the imagery if the view has it, else of the map (or None), and its credit line."""
    background = view.background("imagery") or view.background("map")
    if background is None:
        return None, ""
    return open_background(background), background.attribution


def write_pictures(set_dir: Path, view: RunView, width: int = 1600, thumb_width: int = 480) -> list[Path]:
    """Write ``set_dir/pictures/overview.png`` (all layers) and ``set_dir/pictures/<slug>.png`` (one each).

    The overview is ``width`` px wide with a legend (per-class counts), scale bar and credits; the
    thumbnails share its frame (so they compare like small multiples) at ``thumb_width`` px, captioned
    with the class and its count. Files are written atomically; returns their paths.
    """
    folder = Path(set_dir) / PICTURES_DIR
    frame = frame_metres(view.bounds)
    reader, credits = picture_background(view)
    canvas = compose_background(reader, frame, width)
    features = [(layer, read_features(layer)) for layer in view.layers]
    overview = draw_layers(canvas, features, line_px=2.0)
    scale = max(1.0, width / 1600 * 1.3)  # legend text stays readable on small pictures
    _legend(overview, view, list(view.layers), scale, credits)
    _scale_bar(overview, canvas, scale)
    written = [write_bytes_atomic(folder / OVERVIEW, _png(overview))]
    small = Canvas(
        canvas.image.resize(
            (thumb_width, max(1, round(canvas.image.height * thumb_width / width))), Image.Resampling.LANCZOS
        ),
        canvas.bounds,
    )
    for layer, frame_ in features:
        thumb = draw_layers(small, [(layer, frame_)], line_px=1.5)
        written.append(write_bytes_atomic(folder / f"{layer.slug}.png", _png(_caption(thumb, layer))))
    logger.info("Wrote %d pictures to %s", len(written), folder)
    return written


def _caption(image: Image.Image, layer: Layer) -> Image.Image:
    """The thumbnail with a strip below it: colour swatch, class name and count."""
    font = _font(15)
    strip = 30
    out = Image.new("RGBA", (image.width, image.height + strip), (255, 255, 255, 255))
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    draw.rectangle(
        (8, image.height + 8, 22, image.height + 22), fill=(*rgb(layer.colour), 255), outline="#333333"
    )
    noun = "feature" if layer.count == 1 else "features"
    draw.text((30, image.height + 6), f"{layer.title} · {layer.count:,} {noun}", font=font, fill="#222222")
    return out
