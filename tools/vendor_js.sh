#!/usr/bin/env bash
# Refresh the viewer's vendored JavaScript from the npm registry (no CDN at run time).
# Usage: tools/vendor_js.sh            (the pinned versions below; edit them to upgrade)
# Copies only the minified dist builds and the licences into sociomap/viewer/static/vendor/ and
# writes VENDORED.json (versions, tarball integrity, sha256 of every file; checked by tests/viewer).
set -euo pipefail
MAPLIBRE=5.24.1   # the last major with a single UMD build (6.x is ES modules with a separate worker file)
PMTILES=4.5.0
cd "$(dirname "$0")/.."
dest=sociomap/viewer/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
( cd "$work" && npm pack --silent "maplibre-gl@$MAPLIBRE" "pmtiles@$PMTILES" >/dev/null )
mkdir -p "$work/m" "$work/p" "$dest"
tar xzf "$work/maplibre-gl-$MAPLIBRE.tgz" -C "$work/m"
tar xzf "$work/pmtiles-$PMTILES.tgz" -C "$work/p"
cp "$work/m/package/dist/maplibre-gl.js" "$work/m/package/dist/maplibre-gl.css" "$dest/"
cp "$work/m/package/LICENSE.txt" "$dest/LICENSE.maplibre-gl.txt"
cp "$work/p/package/dist/pmtiles.js" "$dest/"
# The pmtiles npm tarball carries no licence file; package.json says BSD-3-Clause. The text below is
# protomaps/PMTiles' LICENSE, which covers this JavaScript reference implementation.
[ -s "$dest/LICENSE.pmtiles.txt" ] || { echo "$dest/LICENSE.pmtiles.txt missing: copy protomaps/PMTiles' LICENSE" >&2; exit 1; }
python3 - "$dest" "$MAPLIBRE" "$PMTILES" "$(cd "$work" && npm view "maplibre-gl@$MAPLIBRE" dist.integrity)" \
    "$(cd "$work" && npm view "pmtiles@$PMTILES" dist.integrity)" <<'PY'
import hashlib, json, pathlib, sys
dest, mv, pv, mi, pi = sys.argv[1:]
sha = lambda n: hashlib.sha256((pathlib.Path(dest) / n).read_bytes()).hexdigest()
packages = [
    {"name": "maplibre-gl", "version": mv, "licence": "BSD-3-Clause", "integrity": mi,
     "tarball": f"https://registry.npmjs.org/maplibre-gl/-/maplibre-gl-{mv}.tgz",
     "files": {n: sha(n) for n in ("maplibre-gl.js", "maplibre-gl.css", "LICENSE.maplibre-gl.txt")}},
    {"name": "pmtiles", "version": pv, "licence": "BSD-3-Clause", "integrity": pi,
     "tarball": f"https://registry.npmjs.org/pmtiles/-/pmtiles-{pv}.tgz",
     "files": {n: sha(n) for n in ("pmtiles.js", "LICENSE.pmtiles.txt")}},
]
(pathlib.Path(dest) / "VENDORED.json").write_text(json.dumps({"packages": packages}, indent=2) + "\n")
PY
ls -l "$dest"
