"""sociomap.maps: the digital map image for each tile (map raster, tile archives, OSM rendering)."""

from sociomap.maps.base import MapSource, open_map_source

__all__ = ["MapSource", "open_map_source"]
