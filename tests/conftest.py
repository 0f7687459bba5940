"""Shared fixtures: real files built on the fly (GeoTIFFs in UTM and EPSG:4326, tiny random models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

DATA = Path(__file__).parent / "data"
HELSINKI_PBF = DATA / "helsinki.osm.pbf"
# Central Helsinki (the OSM extract's area) in UTM 35N: west, north of the synthetic mosaic.
UTM35N = "EPSG:32635"
HELSINKI_ORIGIN = (385_100.0, 6_672_700.0)


def write_geotiff(path: Path, data: np.ndarray, crs: str, transform: object, nodata: float | None = None) -> Path:
    """Write a tiled, compressed GeoTIFF with overviews, (bands, H, W)."""
    count, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype,
                       crs=crs, transform=transform, tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate", nodata=nodata) as dst:
        dst.write(data)
        dst.build_overviews([2, 4], rasterio.enums.Resampling.average)
    return path


def synthetic_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A textured uint8 RGB image (gradients + noise), (3, H, W)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)), (xx + yy) % 256])
    return np.clip(base + rng.integers(-20, 20, base.shape), 1, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def utm_mosaic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 m UTM-35N RGB mosaic over central Helsinki, 640x800 px, with a nodata (0) strip on the east."""
    data = synthetic_rgb(800, 640)
    data[:, :, 600:] = 0
    path = tmp_path_factory.mktemp("mosaic") / "helsinki_utm.tif"
    return write_geotiff(path, data, UTM35N, from_origin(*HELSINKI_ORIGIN, 2.0, 2.0), nodata=0)


@pytest.fixture(scope="session")
def map_4326(tmp_path_factory: pytest.TempPathFactory, utm_mosaic: Path) -> Path:
    """A map raster in EPSG:4326 covering the mosaic (synthetic pixels, 1e-5 degree grid)."""
    with rasterio.open(utm_mosaic) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    res = 1e-5
    width, height = int((east - west) / res) + 1, int((north - south) / res) + 1
    path = tmp_path_factory.mktemp("map") / "map_4326.tif"
    return write_geotiff(path, synthetic_rgb(height, width, seed=1), "EPSG:4326", from_origin(west, north, res, res))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random tiny Qwen2.5-VL + SAM 2 folders (built once per session)."""
    from sociomap.reasoning import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def runner() -> CliRunner:
    """A click test runner."""
    return CliRunner()


REPO = Path(__file__).resolve().parents[1]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: this checkout first on the path, quiet threads."""
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.update({"OMP_NUM_THREADS": "1", **extra})
    return env
