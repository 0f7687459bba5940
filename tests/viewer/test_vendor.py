"""The vendored MapLibre GL JS and pmtiles builds: pinned, unmodified, licensed, shipped in the package."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

from sociomap.viewer.server import static_files

VENDOR = Path(__file__).resolve().parents[2] / "sociomap" / "viewer" / "static" / "vendor"


def test_vendored_files_match_the_recorded_npm_builds():
    record = json.loads((VENDOR / "VENDORED.json").read_text())
    names = {p["name"]: p for p in record["packages"]}
    assert set(names) == {"maplibre-gl", "pmtiles"}
    for package in record["packages"]:
        assert package["tarball"].startswith("https://registry.npmjs.org/") and package[
            "integrity"
        ].startswith("sha512-")
        assert package["licence"] == "BSD-3-Clause"
        assert any(name.startswith("LICENSE") for name in package["files"])
        for name, digest in package["files"].items():
            assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, f"{name} was modified"
    head = (VENDOR / "maplibre-gl.js").read_text("utf-8")[:400]
    assert f"v{names['maplibre-gl']['version']}" in head  # the build's own licence banner names its version
    total = sum((VENDOR / n).stat().st_size for p in record["packages"] for n in p["files"])
    assert total < 1_300_000  # minified dist builds only, no source maps


def test_every_static_file_is_package_data():
    pyproject = tomllib.loads((VENDOR.parents[3] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["sociomap.viewer"]
    root = VENDOR.parent.parent
    shipped = {p for pattern in patterns for p in root.glob(pattern)}
    assert {p for p in (VENDOR.parent).rglob("*") if p.is_file()} <= shipped
    assert {"viewer.js", "viewer.css", "vendor/maplibre-gl.js", "vendor/pmtiles.js"} <= set(static_files())
