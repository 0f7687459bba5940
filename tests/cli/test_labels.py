"""`sociomap labels`: OSM reference layers with the run's schema."""

import pyogrio

from sociomap.cli import cli
from tests.conftest import HELSINKI_PBF

RUN_COLUMNS = ["query", "function", "area_m2", "n_tiles", "n_pieces", "tiles", "run_id", "model", "prompts",
               "reasoning", "crosses_seam"]


def test_labels_write_one_layer_per_function_in_the_run_schema(runner, tmp_path):
    out = tmp_path / "ref"
    result = runner.invoke(cli, ["labels", str(HELSINKI_PBF), "--classes", "park,school", "--out", str(out)])
    assert result.exit_code == 0, result.output
    schools = pyogrio.read_dataframe(out / "educational.gpkg")
    parks = pyogrio.read_dataframe(out / "park_and_greenspace.gpkg")
    assert len(schools) == 3 and set(schools["query"]) == {"School"}
    assert len(parks) == 17 and set(parks["function"]) == {"Park and greenspace"}
    assert list(parks.columns[: len(RUN_COLUMNS)]) == RUN_COLUMNS
    assert {"name", "osm_id", "socio_class"} <= set(parks.columns)
    assert "Esplanadinpuisto" in set(parks["name"])
    assert pyogrio.read_info(out / "educational.gpkg")["crs"] == "EPSG:4326"
    assert (parks["area_m2"] > 0).all()


def test_labels_bbox_keeps_only_that_area(runner, tmp_path):
    out = tmp_path / "ref"
    bbox = "24.9440,60.1660,24.9560,60.1700"  # around Esplanadi, south of the school area
    result = runner.invoke(cli, ["labels", str(HELSINKI_PBF), "-c", "park", "-o", str(out), "--bbox", bbox])
    assert result.exit_code == 0, result.output
    parks = pyogrio.read_dataframe(out / "park_and_greenspace.gpkg")
    assert 0 < len(parks) < 17


def test_labels_on_a_missing_file_is_exit_3(runner, tmp_path):
    result = runner.invoke(cli, ["labels", str(tmp_path / "none.osm.pbf"), "-c", "park", "-o", str(tmp_path / "o")])
    assert result.exit_code == 3 and "none.osm.pbf" in result.output
