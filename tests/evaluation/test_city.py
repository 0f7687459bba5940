"""`sociomap eval city` on real OSM-derived layers: a `--reasoner osm` run over the Helsinki mosaic against
`sociomap labels` from the same file, then deliberately degraded copies of the run with known effects."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pyogrio
import pytest
import shapely
from shapely import affinity

from sociomap.cli import cli
from sociomap.pipeline.outputs import published_set
from tests.conftest import HELSINKI_PBF

LAYERS = ("educational", "park_and_greenspace")


@pytest.fixture(scope="module")
def osm_run(tmp_path_factory, utm_mosaic):
    """(run folder, reference folder): the OSM baseline run and OSM reference labels, same inputs."""
    from click.testing import CliRunner

    root = tmp_path_factory.mktemp("city")
    runner = CliRunner()
    result = runner.invoke(cli, ["run", str(utm_mosaic), "-c", "park,school", "-o", str(root / "run"),
                                 "--reasoner", "osm", "--osm", str(HELSINKI_PBF), "--workers", "0",
                                 "--tile-size", "256"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["labels", str(HELSINKI_PBF), "-c", "park,school", "-o", str(root / "ref")])
    assert result.exit_code == 0, result.output
    return root / "run", root / "ref"


def evaluate(runner, run: Path, ref: Path, out: Path, *extra: str) -> dict:
    result = runner.invoke(cli, ["eval", "city", str(run), "-r", str(ref), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return {layer["layer"]: layer for layer in json.loads((out / "city.json").read_text())["layers"]}


def degraded_copy(run: Path, dest: Path, change) -> Path:
    """A copy of the run's published files whose layers went through ``change(layer, frame) -> frame``."""
    shutil.copytree(published_set(run), dest)  # the set's files: layers and run.json
    for layer in LAYERS:
        path = dest / f"{layer}.gpkg"
        frame = change(layer, pyogrio.read_dataframe(path))
        path.unlink()
        pyogrio.write_dataframe(frame, path, layer=layer, promote_to_multi=True)
    return dest


def ground(frame):
    return frame.to_crs(frame.estimate_utm_crs())


@pytest.fixture(scope="module")
def baseline(osm_run, tmp_path_factory):
    from click.testing import CliRunner

    run, ref = osm_run
    out = tmp_path_factory.mktemp("eval_city")
    return evaluate(CliRunner(), run, ref, out), out


def test_osm_run_against_osm_labels_is_near_perfect(baseline):
    scores, out = baseline
    assert set(scores) == set(LAYERS)
    for s in scores.values():
        assert s["area_iou"] > 0.97 and s["area_precision"] > 0.98 and s["area_recall"] > 0.98
        assert s["tp"] == s["n_model"] == s["n_reference"] and s["fp"] == s["fn"] == 0
        assert s["precision"] == s["recall"] == s["f1"] == 1.0
        # every OSM-baseline feature has confidence 1.0: each bin keeps all of them, all right
        assert [b["kept"] for b in s["confidence"]] == [s["n_model"]] * len(s["confidence"])
        assert all(b["precision"] == 1.0 for b in s["confidence"])
    # 17 OSM parks: touching ones are one object, one is a 0.9 m² sliver, two lie outside the mosaic.
    assert scores["park_and_greenspace"]["n_reference"] == 13
    assert scores["educational"]["n_reference"] == 2  # the third school is outside the covered area
    layers = dict(pyogrio.list_layers(out / "disagreements.gpkg"))
    assert set(layers) == {f"{x}_{side}" for x in LAYERS for side in ("model_only", "reference_only")}
    for name in layers:
        assert pyogrio.read_info(out / "disagreements.gpkg", layer=name)["features"] == 0
    assert (out / "city.md").read_text().count("| park_and_greenspace | 13 | 13 |") == 1


def test_dropping_a_third_of_the_features_costs_exactly_that_recall(osm_run, baseline, tmp_path, runner):
    run, ref = osm_run
    base, _ = baseline
    dropped = {}

    def drop(layer, frame):
        dropped[layer] = frame.iloc[::3]
        return frame.drop(index=frame.index[::3])

    copy = degraded_copy(run, tmp_path / "dropped", drop)
    scores = evaluate(runner, copy, ref, tmp_path / "out")
    for layer in LAYERS:
        s, b, k = scores[layer], base[layer], len(dropped[layer])
        assert (s["tp"], s["fp"], s["fn"]) == (b["tp"] - k, 0, k)
        assert s["recall"] == pytest.approx((b["n_reference"] - k) / b["n_reference"])
        assert s["precision"] == 1.0
        lost = ground(dropped[layer]).area.sum() / b["reference_area_m2"]
        assert s["area_recall"] == pytest.approx(b["area_recall"] - lost, abs=0.01)
        assert s["area_precision"] == pytest.approx(b["area_precision"], abs=0.01)
        missed = pyogrio.read_dataframe(tmp_path / "out" / "disagreements.gpkg",
                                        layer=f"{layer}_reference_only")
        assert len(missed) == k
        # Each reference object reported missing is one of the dropped features.
        for geom in ground(missed).geometry:
            best = max(shapely.intersection(geom, d).area / shapely.union(geom, d).area
                       for d in ground(dropped[layer]).geometry)
            assert best > 0.9
    assert scores["park_and_greenspace"]["fn"] == 5 and scores["educational"]["fn"] == 1


def shrink(frame, every: int = 2, factor: float = 0.3):
    """Every ``every``-th feature scaled about its centroid to ``factor`` of its area (so IoU <= factor)."""
    frame = frame.copy()
    s = math.sqrt(factor)
    picked = frame.index[::every]
    frame.loc[picked, "geometry"] = [affinity.scale(g, s, s, origin="centroid")
                                     for g in frame.loc[picked].geometry]
    return frame, set(picked)


def test_shrunk_features_become_a_false_positive_and_a_miss_each(osm_run, baseline, tmp_path, runner):
    run, ref = osm_run
    base, _ = baseline
    picked, shrunk_area = {}, {}

    def change(layer, frame):
        frame, picked[layer] = shrink(frame)
        shrunk_area[layer] = ground(frame.loc[sorted(picked[layer])]).area.sum() / 0.3  # before shrinking
        return frame

    copy = degraded_copy(run, tmp_path / "shrunk", change)
    scores = evaluate(runner, copy, ref, tmp_path / "out")
    for layer in LAYERS:
        s, n, k = scores[layer], base[layer]["n_reference"], len(picked[layer])
        assert (s["tp"], s["fp"], s["fn"]) == (n - k, k, k)
        assert s["precision"] == s["recall"] == s["f1"] == pytest.approx((n - k) / n)
        # 70 % of each picked feature's area is gone (the scaled copy stays inside its original, nearly).
        lost = 0.7 * shrunk_area[layer] / base[layer]["reference_area_m2"]
        assert s["area_recall"] == pytest.approx(base[layer]["area_recall"] - lost, abs=0.02)
        wrong = pyogrio.read_dataframe(tmp_path / "out" / "disagreements.gpkg", layer=f"{layer}_model_only")
        assert len(wrong) == k and (wrong["best_iou"] < 0.31).all() and (wrong["best_iou"] > 0).all()
    assert scores["park_and_greenspace"]["tp"] == 6 and scores["park_and_greenspace"]["fp"] == 7
    # At a looser threshold the shrunk copies (IoU about 0.3) match again.
    loose = evaluate(runner, copy, ref, tmp_path / "loose", "--iou-threshold", "0.25")
    assert all(loose[x]["tp"] == base[x]["n_reference"] and loose[x]["fp"] == 0 for x in LAYERS)
    assert json.loads((tmp_path / "loose" / "city.json").read_text())["iou_threshold"] == 0.25


def test_precision_and_recall_per_confidence_bin(osm_run, baseline, tmp_path, runner):
    run, ref = osm_run
    base, _ = baseline

    def change(layer, frame):
        frame, picked = shrink(frame)
        frame["confidence"] = [0.15 if i in picked else 0.85 for i in frame.index]
        return frame

    copy = degraded_copy(run, tmp_path / "scored", change)
    scores = evaluate(runner, copy, ref, tmp_path / "out")
    park = scores["park_and_greenspace"]
    n, k = base["park_and_greenspace"]["n_reference"], 7
    rows = {round(r["threshold"], 1): r for r in park["confidence"]}
    assert (rows[0.0]["kept"], rows[0.0]["precision"], rows[0.0]["recall"]) == (n, (n - k) / n, (n - k) / n)
    assert (rows[0.1]["kept"], rows[0.1]["in_bin"], rows[0.1]["bin_precision"]) == (n, k, 0.0)
    for t in (0.2, 0.5, 0.8):  # the wrong ones are gone: every kept feature is right
        assert (rows[t]["kept"], rows[t]["precision"], rows[t]["recall"]) == (n - k, 1.0, (n - k) / n)
    assert (rows[0.8]["in_bin"], rows[0.8]["bin_precision"]) == (n - k, 1.0)
    assert (rows[0.9]["kept"], rows[0.9]["precision"], rows[0.9]["recall"]) == (0, None, 0.0)
    table = (tmp_path / "out" / "city_confidence.csv").read_text().splitlines()
    assert table[0] == "layer,threshold,kept,precision,recall,f1,in_bin,bin_precision"
    assert len(table) == 1 + 2 * 10
    assert "| 0.5 | 6 | 100.0 |" in (tmp_path / "out" / "city.md").read_text()


def test_footprint_bbox_and_output_set_layout(osm_run, baseline, tmp_path, runner, utm_mosaic):
    import geopandas as gpd
    import rasterio
    from rasterio.warp import transform_bounds

    run, ref = osm_run
    with rasterio.open(utm_mosaic) as ds:
        west, south, east, north = transform_bounds(ds.crs, 4326, *ds.bounds)
    half = gpd.GeoDataFrame(geometry=[shapely.box(west, south, (west + east) / 2, north)], crs=4326)
    half.to_file(tmp_path / "half.gpkg")
    scores = evaluate(runner, run, ref, tmp_path / "a", "--footprint", str(tmp_path / "half.gpkg"))
    covered = json.loads((tmp_path / "a" / "city.json").read_text())["covered_m2"]
    full = json.loads((baseline[1] / "city.json").read_text())["covered_m2"]
    assert full == pytest.approx(1200 * 1600, rel=0.01)  # 600 x 800 valid pixels of 2 m
    assert covered < 0.6 * full
    assert scores["park_and_greenspace"]["n_reference"] < 13 and scores["park_and_greenspace"]["fn"] == 0
    bbox = ",".join(map(str, (west, (south + north) / 2, east, north)))
    evaluate(runner, run, ref, tmp_path / "b", "--bbox", bbox)
    assert json.loads((tmp_path / "b" / "city.json").read_text())["covered_m2"] < 0.6 * full
    # An output-set folder (OUT/current -> .sociomap/sets/<id>) is read through `current`.
    sets = tmp_path / "set_layout"
    shutil.copytree(published_set(run), sets / ".sociomap" / "sets" / "r1")
    (sets / "current").symlink_to(Path(".sociomap") / "sets" / "r1")
    again = evaluate(runner, sets, ref, tmp_path / "c")
    assert again["park_and_greenspace"]["tp"] == 13


def test_bad_inputs_are_exit_3_with_the_fix(osm_run, tmp_path, runner):
    run, ref = osm_run
    moved = tmp_path / "moved"
    shutil.copytree(published_set(run), moved)
    manifest = json.loads((moved / "run.json").read_text())
    manifest["config"]["image"] = manifest["inputs"]["image"]["path"] = str(tmp_path / "gone.tif")
    (moved / "run.json").write_text(json.dumps(manifest))
    result = runner.invoke(cli, ["eval", "city", str(moved), "-r", str(ref), "-o", str(tmp_path / "o")])
    assert result.exit_code == 3 and "gone.tif" in result.output and "--footprint" in result.output
    other = tmp_path / "other_ref"
    other.mkdir()
    shutil.copy(ref / "educational.gpkg", other / "medical.gpkg")
    result = runner.invoke(cli, ["eval", "city", str(run), "-r", str(other), "-o", str(tmp_path / "o")])
    assert result.exit_code == 3 and "no layer matches" in result.output
    result = runner.invoke(cli, ["eval", "city", str(tmp_path), "-r", str(ref), "-o", str(tmp_path / "o")])
    assert result.exit_code == 3 and "run.json" in result.output
    assert not (tmp_path / "o").exists()
