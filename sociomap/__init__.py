"""sociomap: city-wide socio-function layers from satellite mosaics, maps and SocioReasoner."""

__version__ = "0.1.0"
