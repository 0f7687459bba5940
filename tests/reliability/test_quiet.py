"""Quiet and tidy: -q prints nothing on success (also with the Dask dashboard port taken), GeoPackages get no
.aux.xml beside them, PMTiles exports are byte-identical for identical inputs and declare every layer."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

from tests.conftest import HELSINKI_PBF
from tests.reliability.harness import TABLE, cli, env_with_tmpdir, tree

OSM = ("--reasoner", "osm", "--osm", str(HELSINKI_PBF), "--tile-size", "256", "--no-pictures")
CLASSES = "park,airport"  # airport: nothing in this area, an empty layer


def _pmtiles_digest(out: Path) -> tuple[str, dict]:
    from pmtiles.reader import MmapSource, Reader

    (path,) = (out / "current").resolve().glob("*.pmtiles")
    with open(path, "rb") as f:
        layers = {layer["id"] for layer in Reader(MmapSource(f)).metadata().get("vector_layers", [])}
    return hashlib.sha256(path.read_bytes()).hexdigest(), layers


def test_quiet_runs_print_nothing_and_leave_nothing_behind(utm_mosaic, tmp_path):
    out, env = tmp_path / "out", env_with_tmpdir(tmp_path / "tmp")
    with socket.socket() as taken:  # the port Dask's dashboard would warn about
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        except OSError:
            pass  # already taken by something else: the same situation
        outcome = cli("-q", "run", utm_mosaic, "-c", CLASSES, "-o", out, *OSM, "--workers", "2", env=env)
    TABLE.record("quiet-cluster", "quiet", "-q run on a local 2-worker cluster, port 8787 taken", outcome.exit,
                 "nothing on stdout or stderr" if not (outcome.stdout.strip() or outcome.stderr.strip())
                 else "OUTPUT", "nothing outside OUT" if tree(tmp_path / "tmp") == [] else "FILES OUTSIDE OUT")
    assert outcome.exit == 0 and outcome.stdout.strip() == "" and outcome.stderr.strip() == "", outcome.stderr
    assert tree(tmp_path / "tmp") == []

    first = cli("-q", "export", out, "--format", "pmtiles", "--engine", "tippecanoe", env=env)
    digest, layers = _pmtiles_digest(out)
    second = cli("-q", "export", out, "--format", "pmtiles", "--engine", "tippecanoe", env=env)
    again, _ = _pmtiles_digest(out)
    aux = [p for p in out.rglob("*.aux.xml")]
    TABLE.record("export-deterministic", "quiet", "the same set exported to PMTiles twice (tippecanoe)",
                 f"{first.exit}, {second.exit}", f"{'identical' if digest == again else 'DIFFERENT'} bytes; layers "
                 f"declared: {', '.join(sorted(layers))}", "no .aux.xml" if not aux else f"{len(aux)} .aux.xml")
    assert first.exit == second.exit == 0 and first.stderr.strip() == second.stderr.strip() == ""
    assert digest == again
    assert layers == {"park_and_greenspace", "transportation_stations"}  # the empty layer is declared too
    assert aux == [] and tree(tmp_path / "tmp") == []
