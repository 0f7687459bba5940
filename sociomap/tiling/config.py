"""sociomap.tiling.config: how a mosaic is cut into tiles."""

from __future__ import annotations

from dataclasses import dataclass

from sociomap.errors import ConfigError


@dataclass(frozen=True)
class TilingConfig:
    """XYZ zoom, rendered tile size (768 px = SocioReasoner's training size) and band handling.

    ``resampling`` is used for overview reads and for the reprojection to Web Mercator alike;
    ``nodata`` marks a no-data value for mosaics that do not declare one.
    """

    zoom: int = 16
    tile_size: int = 768
    bands: tuple[int, ...] | None = None
    rescale: tuple[float, float] | None = None
    tiles_per_task: int = 2
    resampling: str = "bilinear"
    nodata: float | None = None

    def __post_init__(self) -> None:
        from sociomap.tiling.mosaic import RESAMPLING

        if not 1 <= self.zoom <= 22:
            raise ConfigError(f"zoom {self.zoom} is outside 1..22; SocioReasoner tiles are usually z16-z17")
        if not 64 <= self.tile_size <= 4096:
            raise ConfigError(f"tile size {self.tile_size} is outside 64..4096 px; the model was trained on 768")
        if self.tiles_per_task < 1:
            raise ConfigError("tiles per task must be >= 1")
        if self.rescale is not None and not self.rescale[0] < self.rescale[1]:
            raise ConfigError(f"--rescale {self.rescale[0]:g},{self.rescale[1]:g}: MIN must be below MAX "
                              "(a reversed stretch blacks the image)")
        if self.resampling not in RESAMPLING:
            raise ConfigError(f"--resampling {self.resampling!r}: choose one of {', '.join(RESAMPLING)}")
