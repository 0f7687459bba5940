"""Fixtures for the merge tests: real Helsinki OSM areas rasterized on the run's tiling, and small masks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import mercantile
import numpy as np
import osmium
import pytest
import rasterio.features
import shapely
from affine import Affine
from osmium.geom import WKBFactory

from sociomap.merge import MergeConfig, PieceStore, merge_layers, vectorize_mask
from sociomap.taxonomy import load_taxonomy, slugify
from sociomap.tiling.grid import global_pixel_to_m, tile_pixel_size_m

HELSINKI_PBF = Path(__file__).parents[1] / "data" / "helsinki.osm.pbf"
TILE_PX = 768  # the run's tile size


@pytest.fixture(scope="session")
def helsinki_areas() -> gpd.GeoDataFrame:
    """Every OSM area of the Helsinki extract that the taxonomy classifies: cls, function, geometry (EPSG:3857)."""
    taxonomy, wkb, rows = load_taxonomy(), WKBFactory(), []
    processor = osmium.FileProcessor(str(HELSINKI_PBF)).with_areas().with_filter(osmium.filter.EmptyTagFilter())
    for obj in processor:
        if obj.is_area():
            cls = taxonomy.classify(dict(obj.tags))
            if cls is not None:
                rows.append((cls.name, cls.function, shapely.from_wkb(wkb.create_multipolygon(obj))))
    return gpd.GeoDataFrame(rows, columns=["cls", "function", "geometry"], crs="EPSG:4326").to_crs("EPSG:3857")


@dataclass
class RoundTrip:
    """One zoom's round trip, per socio-function: the merged layer, the raster ideal and the OSM entities."""

    zoom: int
    n_tiles: int
    merged: dict[str, np.ndarray]
    ideal: dict[str, np.ndarray]
    osm: dict[str, np.ndarray]
    layers: dict[str, gpd.GeoDataFrame]


def global_window(tiles: list[mercantile.Tile]) -> tuple[int, int, int, int]:
    """(first tile x, first tile y, tiles across, tiles down) of the block covering ``tiles``."""
    xs, ys = [t.x for t in tiles], [t.y for t in tiles]
    return min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1


def pixel_polygons_to_m(polys: np.ndarray, col0: int, row0: int, zoom: int, size: int = TILE_PX) -> np.ndarray:
    """Polygons in window pixel coordinates -> EPSG:3857 through the global pixel grid."""
    return shapely.transform(polys, lambda c: np.column_stack(global_pixel_to_m(c[:, 0] + col0, c[:, 1] + row0,
                                                                                  zoom, size)))


def raster_ideal(raster: np.ndarray, col0: int, row0: int, zoom: int, size: int = TILE_PX) -> np.ndarray:
    """The raster vectorized in one piece (4-connectivity) on the global grid: the best any seam merge can give."""
    shapes = rasterio.features.shapes(raster.view(np.uint8), mask=raster, connectivity=4)
    pixel = np.array([shapely.geometry.shape(g) for g, _ in shapes], dtype=object)
    return pixel_polygons_to_m(pixel, col0, row0, zoom, size)


def run_round_trip(areas: gpd.GeoDataFrame, zoom: int, directory: Path) -> RoundTrip:
    """Per socio-function: rasterize each of its classes on the global grid (one query each, as a run
    does), cut the masks into the run's tiles, vectorize, store and merge the function's layer.

    The raster ideal is the function's raster (any of its classes) vectorized in one piece.
    """
    config = MergeConfig(min_area_m2=0, min_hole_m2=0)  # compare geometry only, no cleaning
    res = tile_pixel_size_m(zoom, TILE_PX)
    store, ideal, osm, n_tiles = PieceStore(directory), {}, {}, 0
    for function, group in areas.groupby("function"):
        layer = slugify(function)
        osm[layer] = shapely.get_parts(shapely.union_all(group.geometry.values))  # touching areas dissolved
        west, south, east, north = gpd.GeoSeries([shapely.box(*group.total_bounds)], crs=3857).to_crs(4326).total_bounds
        tiles = list(mercantile.tiles(west, south, east, north, zooms=zoom))
        tx, ty, nx, ny = global_window(tiles)
        x0, y0 = global_pixel_to_m(tx * TILE_PX, ty * TILE_PX, zoom, TILE_PX)
        transform = Affine(res, 0, x0, 0, -res, y0)
        any_class = np.zeros((ny * TILE_PX, nx * TILE_PX), dtype=bool)
        for cls, members in group.groupby("cls"):
            raster = rasterio.features.rasterize(members.geometry.values, out_shape=any_class.shape,
                                                 transform=transform, dtype="uint8").astype(bool)
            any_class |= raster
            for tile in tiles:
                rows, cols = (tile.y - ty) * TILE_PX, (tile.x - tx) * TILE_PX
                mask = raster[rows:rows + TILE_PX, cols:cols + TILE_PX]
                attrs = {"query": cls, "query_kind": "class", "function": function, "run_id": "roundtrip",
                         "model": "osm-raster"}
                store.add(layer, tile, vectorize_mask(mask, tile, config), attrs)
                n_tiles += 1
        ideal[layer] = raster_ideal(any_class, tx * TILE_PX, ty * TILE_PX, zoom)
    layers = dict(merge_layers(store, config))
    store.close()
    merged = {layer: frame.geometry.values for layer, frame in layers.items()}
    return RoundTrip(zoom, n_tiles, merged, ideal, osm, layers)


@pytest.fixture(scope="module", params=[16, 17], ids=["z16", "z17"])
def round_trip(request, helsinki_areas, tmp_path_factory) -> RoundTrip:
    """The Helsinki round trip at the run's default zoom (16) and one finer (17), 768 px tiles."""
    return run_round_trip(helsinki_areas, request.param, tmp_path_factory.mktemp(f"store{request.param}"))


def best_iou(geom: shapely.Geometry, candidates: np.ndarray) -> tuple[float, int]:
    """(IoU, index) of the candidate overlapping ``geom`` most."""
    inter = shapely.area(shapely.intersection(geom, candidates))
    k = int(np.argmax(inter))
    return float(inter[k] / shapely.area(shapely.union(geom, candidates[k]))), k
