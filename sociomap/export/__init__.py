"""sociomap.export: GeoPackage per socio-function, GeoJSON / FlatGeobuf, and vector PMTiles."""

from sociomap.export.pmtiles import tippecanoe_binary, verify_pmtiles, write_pmtiles
from sociomap.export.run import EXPORT_FORMATS, export_run, read_run_layers
from sociomap.export.vector import write_geopackages

__all__ = ["EXPORT_FORMATS", "export_run", "read_run_layers", "tippecanoe_binary", "verify_pmtiles",
           "write_geopackages", "write_pmtiles"]
