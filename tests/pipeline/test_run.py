"""The whole pipeline on real OSM data (no model): layers, seams, cache, failures, dry runs."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio

from sociomap.errors import ConfigError, RunLockedError, TilesFailedError
from sociomap.pipeline.lock import output_lock
from sociomap.pipeline.manifest import read_manifest
from sociomap.pipeline.run import run


def layer_wkbs(path: Path) -> list[bytes]:
    """Sorted WKB of a GeoPackage layer, for exact comparisons between runs."""
    gdf = pyogrio.read_dataframe(path)
    return sorted(g.wkb for g in gdf.geometry.normalize())


def test_layers_are_written_per_socio_function(osm_run_config):
    summary = run(osm_run_config)
    out = osm_run_config.out
    park, school = out / "park_and_greenspace.gpkg", out / "educational.gpkg"
    assert park.exists() and school.exists()
    info = pyogrio.read_info(park)
    assert info["crs"] == "EPSG:4326" and info["geometry_type"] in ("Polygon", "MultiPolygon")
    assert [name for name, _ in pyogrio.list_layers(park)] == ["park_and_greenspace"]
    gdf = pyogrio.read_dataframe(park)
    assert len(gdf) == summary.layers["park_and_greenspace"] > 0
    for col in ("query", "function", "area_m2", "n_tiles", "run_id", "confidence"):
        assert col in gdf.columns
    assert (gdf["confidence"] == 1.0).all()  # the OSM baseline's rules are exact
    assert set(gdf["query"]) == {"Park"} and set(gdf["function"]) == {"Park and greenspace"}
    assert (gdf["run_id"] == summary.run_id).all()
    assert summary.tiles_empty > 0, "tiles over the nodata strip must be skipped and counted"
    manifest = read_manifest(out / "run.json")
    assert manifest["status"] == "ok" and manifest["counts"]["tiles_total"] == summary.tiles_total
    assert manifest["inputs"]["image"]["sha256"] and manifest["inputs"]["osm"]["sha256"]


def _valid_footprint_3857(image: Path):
    """The mosaic's data area (west of the nodata strip) as a Web-Mercator polygon."""
    import shapely
    from pyproj import Transformer

    with rasterio.open(image) as ds:
        left, bottom, _, top = ds.bounds
        right = left + 600 * ds.res[0]  # columns 600+ are nodata (conftest)
        to_3857 = Transformer.from_crs(ds.crs, "EPSG:3857", always_xy=True)
    ring = shapely.box(left, bottom, right, top).segmentize(10)
    return shapely.transform(ring, lambda xy: np.column_stack(to_3857.transform(xy[:, 0], xy[:, 1])))


def test_an_object_cut_by_a_seam_comes_back_whole(osm_run_config):
    import mercantile

    from sociomap.maps.osm_features import socio_features
    from sociomap.taxonomy import resolve_query
    from sociomap.tiling.grid import tile_bounds_m

    summary = run(osm_run_config)
    parks = pyogrio.read_dataframe(osm_run_config.out / "park_and_greenspace.gpkg").to_crs(3857)
    footprint = _valid_footprint_3857(osm_run_config.image).buffer(-5)
    osm = socio_features(osm_run_config.osm, [resolve_query("park")]).to_crs(3857)
    inside = [g for g in osm.geometry.union_all().geoms if footprint.contains(g) and g.area > 2000] \
        if osm.geometry.union_all().geom_type == "MultiPolygon" else []

    def tiles_hit(geom):
        lon0, lat0 = mercantile.lnglat(geom.bounds[0], geom.bounds[1])
        lon1, lat1 = mercantile.lnglat(geom.bounds[2], geom.bounds[3])
        cands = mercantile.tiles(lon0, lat0, lon1, lat1, zooms=16)
        from shapely import box
        return [t for t in cands if geom.intersection(box(*tile_bounds_m(t, 384))).area > 50]

    cut = [g for g in inside if len(tiles_hit(g)) >= 2]
    assert cut, "the fixture area must contain OSM parks cut by a z16 seam"
    for park in cut:
        hits = parks[parks.intersects(park.buffer(-1))]
        assert len(hits) == 1, f"a park cut by a seam came back as {len(hits)} features"
        feature = hits.geometry.iloc[0]
        iou = feature.intersection(park).area / feature.union(park).area
        assert iou > 0.97 and hits["n_tiles"].iloc[0] >= 2
    assert summary.seam_features >= len(cut)


def test_rerun_reuses_the_cache_and_recomputes_only_changed_tiles(osm_run_config, utm_mosaic, tmp_path):
    first = run(osm_run_config)
    assert first.results_computed > 0 and first.results_reused == 0
    again = run(osm_run_config)
    assert again.results_computed == 0 and again.results_reused == first.results_computed
    assert layer_wkbs(osm_run_config.out / "park_and_greenspace.gpkg")  # still there, same content below

    edited = tmp_path / "edited.tif"
    shutil.copy(utm_mosaic, edited)
    with rasterio.open(edited, "r+") as ds:  # repaint a 40x40 px block in the north-west corner
        block = ds.read(window=((0, 40), (0, 40)))
        ds.write(255 - block, window=((0, 40), (0, 40)))
    third = run(replace(osm_run_config, image=edited))
    n_queries = len(osm_run_config.classes)
    assert 0 < third.results_computed <= 4 * n_queries, "only tiles touching the edited block recompute"
    assert third.results_reused == first.results_computed - third.results_computed
    forced = run(replace(osm_run_config, image=edited, force=True))
    assert forced.results_reused == 0


def test_dry_run_reads_no_tile_and_writes_nothing(osm_run_config):
    summary = run(replace(osm_run_config, dry_run=True))
    assert summary.tiles_total > 0 and summary.tiles_read == 0
    assert summary.results_computed == summary.tiles_total * 2  # nothing known yet: an upper bound
    assert not osm_run_config.out.exists(), "a dry run creates nothing, not even the state folder"
    assert summary.estimate_seconds is None  # no previous run to take a rate from
    done = run(osm_run_config)
    again = run(replace(osm_run_config, dry_run=True))
    assert again.results_computed == 0 and again.results_reused == done.results_computed
    assert again.tiles_empty == done.tiles_empty and again.tiles_read == 0
    assert again.estimate_seconds == 0.0
    forced = run(replace(osm_run_config, dry_run=True, force=True))
    assert forced.results_computed == summary.results_computed and forced.estimate_seconds > 0


def test_a_second_run_on_the_same_output_is_refused(osm_run_config):
    with output_lock(osm_run_config.out / ".sociomap"):
        with pytest.raises(RunLockedError):
            run(osm_run_config)


def test_failing_tiles_are_reported_and_previous_layers_kept(osm_run_config, tmp_path):
    run(osm_run_config)
    before = layer_wkbs(osm_run_config.out / "park_and_greenspace.gpkg")
    broken = tmp_path / "broken.tif"  # the mosaic cut short: its header opens, reads of its later blocks fail
    data = Path(osm_run_config.image).read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(TilesFailedError, match="failed after retries") as caught:
        run(replace(osm_run_config, image=broken))
    assert layer_wkbs(osm_run_config.out / "park_and_greenspace.gpkg") == before
    run_id = str(caught.value).split("failed-")[1].split(".json")[0]
    record = read_manifest(osm_run_config.out / ".sociomap" / f"failed-{run_id}.json")
    assert record["status"] == "failed" and record["failed_tiles"]
    assert all("broken.tif" in text or "Read" in text or "read" in text for text in record["failed_tiles"].values())


def test_bad_combinations_fail_before_any_work(osm_run_config):
    with pytest.raises(ConfigError, match="--osm"):
        run(replace(osm_run_config, osm=None))
    with pytest.raises(ConfigError, match="--map"):
        run(replace(osm_run_config, reasoner_kind="socioreasoner", osm=None))
    assert not (osm_run_config.out / "run.json").exists()


def test_masks_are_cut_to_the_mosaic_footprint(osm_run_config):
    run(osm_run_config)
    with rasterio.open(osm_run_config.image) as ds:
        from rasterio.warp import transform_bounds

        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    parks = pyogrio.read_dataframe(osm_run_config.out / "park_and_greenspace.gpkg")
    minx, miny, maxx, maxy = parks.total_bounds
    assert minx >= west - 1e-6 and maxx <= east + 1e-6 and miny >= south - 1e-6 and maxy <= north + 1e-6
    assert np.isfinite(parks["area_m2"]).all() and (parks["area_m2"] > 0).all()


def test_identical_pixels_on_different_tiles_do_not_share_results(osm_run_config, tmp_path):
    from rasterio.transform import from_origin

    from tests.conftest import HELSINKI_ORIGIN, UTM35N, write_geotiff

    flat = write_geotiff(tmp_path / "flat.tif", np.full((3, 800, 640), 90, np.uint8), UTM35N,
                         from_origin(*HELSINKI_ORIGIN, 2.0, 2.0))
    summary = run(replace(osm_run_config, image=flat))
    data_tiles = summary.tiles_read - summary.tiles_empty
    assert summary.results_reused == 0 and summary.results_computed == data_tiles * 2
    parks = pyogrio.read_dataframe(osm_run_config.out / "park_and_greenspace.gpkg")
    assert len(parks) > 1 and parks.geometry.normalize().to_wkb().nunique() == len(parks)
