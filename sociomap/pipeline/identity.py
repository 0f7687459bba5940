"""sociomap.pipeline.identity: the digests cache keys are built from, one function per input.

Each digest covers everything that can change what it stands for: the content of input files, the
options, and a fingerprint of the code of the stage that uses them (``sociomap.fingerprint``), so a
code or taxonomy change invalidates exactly the results it could change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import astuple

from sociomap.fingerprint import code_fingerprint
from sociomap.taxonomy import Query, load_taxonomy


def _sha(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def taxonomy_rules(query: Query) -> list:
    """The OSM rules in force for a query: its classes' rules, or the whole table for a place name (the
    OSM baseline classifies a named object with every rule)."""
    taxonomy = load_taxonomy()
    classes = taxonomy.classes if query.kind == "name" else [c for c in taxonomy.classes if c.name in query.classes]
    return [[c.name, c.function, [list(rule.tags) for rule in c.osm]] for c in classes]


def query_digest(query: Query, with_rules: bool) -> str:
    """A query as the segmenter sees it; ``with_rules`` for segmenters that read the taxonomy's OSM rules."""
    return _sha(["query", list(astuple(query)), taxonomy_rules(query) if with_rules else None])


def inputs_fingerprint(mosaic: object, map_source: object | None, size: int) -> str:
    """What determines a tile's pixels, known without reading it: mosaic, map source, tile size."""
    return _sha(["inputs", mosaic.fingerprint(), map_source.fingerprint() if map_source is not None else None, size])


def vectorize_digest(merge: object) -> str:
    """What turns a mask into pieces: the vectorizing code and the thresholds it applies per tile."""
    code = code_fingerprint("sociomap.merge.vectorize", "sociomap.merge.clean", "sociomap.merge.config",
                            "sociomap.tiling.grid")
    return _sha(["vectorize", code, merge.min_area_m2, merge.min_hole_m2])
