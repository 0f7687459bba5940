"""sociomap.maps.mapnik_env: import mapnik without breaking rasterio in the same process.

On import the mapnik wheel sets PROJ_LIB and GDAL_DATA to folders inside itself (which hold no
proj.db); rasterio's PROJ then finds no EPSG database and every ``CRS.from_epsg`` fails. Sociomap
draws in EPSG:3857 only, so Mapnik never reprojects and the two variables are put back as they
were (ICU_DATA, which Mapnik's text layout needs, is kept). Import mapnik only through this module.
"""

import os

_LEAKED = ("PROJ_LIB", "GDAL_DATA")
_before = {key: os.environ.get(key) for key in _LEAKED}

import mapnik  # noqa: E402

for _key, _value in _before.items():
    if _value is None:
        os.environ.pop(_key, None)
    else:
        os.environ[_key] = _value

__all__ = ["mapnik"]
