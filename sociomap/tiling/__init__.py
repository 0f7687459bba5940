"""sociomap.tiling: which Web-Mercator XYZ tiles cover a mosaic, and their pixels."""

from sociomap.tiling.config import TilingConfig
from sociomap.tiling.grid import cover_bounds, tile_bounds_m, tile_pixel_size_m, tile_transform
from sociomap.tiling.mosaic import Mosaic, TileImage, count_tiles

__all__ = ["Mosaic", "TileImage", "TilingConfig", "count_tiles", "cover_bounds", "tile_bounds_m",
           "tile_pixel_size_m", "tile_transform"]
