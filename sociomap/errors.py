"""sociomap.errors: the one error tree; the CLI maps each class to an exit code in one place.

Messages name the file or setting at fault and say what to do next.
"""


class SociomapError(Exception):
    """Base class of every error sociomap raises on purpose."""

    exit_code = 1


class InputError(SociomapError, ValueError):
    """An input file or value is missing, unreadable or unsuitable."""

    exit_code = 3


class MosaicError(InputError):
    """The satellite mosaic cannot be opened or used."""


class MapSourceError(InputError):
    """The map source (raster, tile archive, OSM file) cannot be opened or used."""


class OSMError(MapSourceError):
    """An OpenStreetMap file is missing, corrupt or empty."""


class QueryError(InputError):
    """A --classes entry cannot be understood."""


class ConfigError(InputError):
    """A config file or option combination is invalid."""


class ModelLoadError(SociomapError):
    """Model weights are missing, wrong or cannot be loaded."""

    exit_code = 4


class ModelServerError(ModelLoadError):
    """The model server cannot serve this run: it does not answer at start, lacks the model, refuses the API key,
    or rejects requests (e.g. a prompt longer than its context)."""


class RunLockedError(SociomapError):
    """Another run holds the lock on this output directory (cron: try again later)."""

    exit_code = 5


class TilesFailedError(SociomapError):
    """Some tiles kept failing after retries; the layers were not replaced."""

    exit_code = 6


class ExportError(SociomapError):
    """Writing or converting an output format failed."""
