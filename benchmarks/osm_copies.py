"""Build an N-times larger OSM file: translated, re-id'ed copies of an extract, written with pyosmium.

    PYTHONPATH=. python benchmarks/osm_copies.py tests/data/helsinki.osm.pbf /tmp/x10.osm.pbf 10

Copy k is shifted by whole extract widths on a grid and its ids are offset by k * 10**10, so copy 0 is
the original area: the same frame reads the same features from the 1x and the Nx file.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import osmium

ID_OFFSET = 10**10


def write_copies(src: Path, dst: Path, copies: int) -> Path:
    """Write ``copies`` shifted copies of ``src`` to ``dst`` (nodes, then ways, then relations: sorted)."""
    box = osmium.io.Reader(str(src), osmium.osm.osm_entity_bits.NOTHING).header().box()
    west, south = box.bottom_left.lon, box.bottom_left.lat
    dx, dy = (box.top_right.lon - west) * 2.0, (box.top_right.lat - south) * 2.0  # gaps wider than the margin
    cols = math.ceil(math.sqrt(copies))
    writer = osmium.SimpleWriter(str(dst), overwrite=True)
    try:
        for kind in (osmium.osm.NODE, osmium.osm.WAY, osmium.osm.RELATION):
            for k in range(copies):
                ox, oy, base = (k % cols) * dx, (k // cols) * dy, k * ID_OFFSET
                for o in osmium.FileProcessor(str(src), kind):
                    if o.is_node():
                        loc = o.location
                        moved = (loc.lon + ox, loc.lat + oy) if loc.valid() else loc
                        writer.add_node(o.replace(id=o.id + base, location=moved))
                    elif o.is_way():
                        writer.add_way(o.replace(id=o.id + base, nodes=[n.ref + base for n in o.nodes]))
                    else:
                        writer.add_relation(o.replace(id=o.id + base, members=[(m.type, m.ref + base, m.role)
                                                                               for m in o.members]))
    finally:
        writer.close()
    return dst


if __name__ == "__main__":
    write_copies(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
