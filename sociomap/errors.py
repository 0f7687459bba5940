"""sociomap.errors: the one error tree; the CLI maps each class to an exit code in one place.

Messages name the file or setting at fault and say what to do next. Exit codes: 1 internal error, 2 usage,
3 bad input, 4 model weights, 5 output locked, 6 tiles failed, 7 publishing refused by a guard.
"""


class SociomapError(Exception):
    """Base class of every error sociomap raises on purpose.

    Pickles as its class and message only, so an error raised on a Dask worker arrives intact, exit code
    included. Its cause and context read as None: Dask pickles an error's whole chain (tblib), and a
    library cause such as rasterio's CPLE_OpenFailedError does not unpickle, which turned bad inputs into
    plain Exceptions (exit 6 after retries). Messages carry the cause's text instead.
    """

    exit_code = 1

    def __reduce__(self) -> tuple:
        return type(self), (str(self),)

    @property
    def __cause__(self) -> None:
        return None

    @__cause__.setter
    def __cause__(self, value: BaseException | None) -> None:
        pass

    @property
    def __context__(self) -> None:
        return None

    @__context__.setter
    def __context__(self, value: BaseException | None) -> None:
        pass


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


class QuerySpellingError(QueryError):
    """A --classes word is close to a known class but not one ("parkk"): a usage error, with the fix."""

    exit_code = 2


class ConfigError(InputError):
    """A config file or option combination is invalid."""


class DiskFullError(InputError):
    """The output's disk (or quota) is full; what was published is kept."""


class ServeError(InputError):
    """The viewer cannot listen on the requested address (port taken or not allowed)."""


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


class PublishRefusedError(SociomapError):
    """A guard kept the published layers: the new ones would shrink them (``--allow-shrink`` to publish)."""

    exit_code = 7


class ExportError(SociomapError):
    """Writing or converting an output format failed."""
