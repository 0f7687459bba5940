"""Pipeline fixtures: run configs on the synthetic Helsinki mosaic with real OSM data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import HELSINKI_PBF


@pytest.fixture
def osm_run_config(utm_mosaic: Path, tmp_path: Path):
    """``--reasoner osm`` over central Helsinki, in-process, z16, 384 px tiles (fast, deterministic)."""
    from sociomap.merge import MergeConfig
    from sociomap.pipeline.executor import ExecutorConfig
    from sociomap.pipeline.run import RunConfig
    from sociomap.tiling import TilingConfig

    return RunConfig(image=utm_mosaic, out=tmp_path / "out", classes=("park", "school"), osm=HELSINKI_PBF,
                     reasoner_kind="osm", tiling=TilingConfig(zoom=16, tile_size=384, tiles_per_task=3),
                     merge=MergeConfig(), executor=ExecutorConfig(workers=0))


def with_executor(config, **kw):
    """The same run config with other executor settings."""
    return replace(config, executor=replace(config.executor, **kw))
