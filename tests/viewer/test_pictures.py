"""sociomap.viewer.pictures: the overview and per-class thumbnails show the layers where they are."""

from __future__ import annotations

import mercantile
import numpy as np
from PIL import Image

from sociomap.viewer import open_run
from sociomap.viewer.pictures import (
    Canvas,
    compose_background,
    draw_layers,
    frame_metres,
    picture_background,
    write_pictures,
)
from sociomap.viewer.style import rgb
from sociomap.viewer.view import read_features
from tests.conftest import HELSINKI_PBF


def _pixel(canvas_bounds, size, lon, lat):
    left, bottom, right, top = canvas_bounds
    x, y = mercantile.xy(lon, lat)
    return int((x - left) / (right - left) * size[0]), int((top - y) / (top - bottom) * size[1])


def _inside(layer):
    frame = read_features(layer)
    geom = max(frame.geometry, key=lambda g: g.area)
    point = geom.representative_point()
    return point.x, point.y


def test_overview_and_thumbnails_show_each_layer_in_its_colour(baseline_run, tmp_path):
    view = open_run(baseline_run)
    written = write_pictures(tmp_path, view, width=800, thumb_width=320)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert names == sorted(
        ["pictures/overview.png"] + [f"pictures/{layer.slug}.png" for layer in view.layers]
    )
    overview = Image.open(tmp_path / "pictures" / "overview.png").convert("RGB")
    assert overview.width == 800
    frame = frame_metres(view.bounds)
    reader, _ = picture_background(view)
    background = compose_background(reader, frame, 800)  # the same imagery without layers
    for layer in view.layers:
        lon, lat = _inside(layer)
        x, y = _pixel(frame, overview.size, lon, lat)
        r, g, b = rgb(layer.colour)
        pixel = np.asarray(overview.getpixel((x, y)), float)
        # The fill pulls the imagery towards the layer colour: closer to it than the plain background is.
        assert np.linalg.norm(pixel - (r, g, b)) < np.linalg.norm(
            np.asarray(background.image.getpixel((x, y))[:3]) - (r, g, b)
        )
        thumb = Image.open(tmp_path / "pictures" / f"{layer.slug}.png").convert("RGB")
        assert thumb.width == 320 and thumb.height > 320 * overview.height / overview.width  # + caption strip
        colours = np.asarray(thumb)[:-30].reshape(-1, 3)  # the map, without the caption strip
        assert (np.abs(colours - (r, g, b)).sum(axis=1) < 6).sum() > 20  # its outline is drawn
        others = [o for o in view.layers if o.slug != layer.slug]
        for other in others:  # a thumbnail shows its own class only
            assert (
                np.abs(colours - rgb(other.colour)).sum(axis=1) < 6
            ).sum() < 20


def test_labels_overview_is_drawn_over_the_rendered_map_with_a_legend(helsinki_labels, tmp_path):
    view = open_run(helsinki_labels, osm=str(HELSINKI_PBF))
    (overview, *_thumbs) = write_pictures(tmp_path, view, width=600, thumb_width=200)
    image = np.asarray(Image.open(overview).convert("RGB"))
    assert image.std() > 20  # a map, not a blank page
    legend = image[10:40, 10:200]
    assert (legend.min(axis=2) > 200).mean() > 0.5  # the white legend box, top left


def test_draw_layers_burns_polygons_on_the_canvas_grid(baseline_run):
    view = open_run(baseline_run)
    layer = next(layer for layer in view.layers if layer.count)
    frame = frame_metres(view.bounds)
    blank = Canvas(Image.new("RGBA", (400, 300), (255, 255, 255, 255)), frame)
    drawn = np.asarray(draw_layers(blank, [(layer, read_features(layer))]).convert("RGB"))
    changed = (drawn != 255).any(axis=2)
    left, bottom, right, top = frame
    for geom in read_features(layer).to_crs("EPSG:3857").geometry:
        x0, y0, x1, y1 = geom.bounds
        cols = slice(int((x0 - left) / (right - left) * 400), int((x1 - left) / (right - left) * 400) + 1)
        rows = slice(int((top - y1) / (top - bottom) * 300), int((top - y0) / (top - bottom) * 300) + 1)
        assert changed[rows, cols].any()
    assert not changed[:, :5].any() and not changed[:5, :].any()  # the padding stays untouched
