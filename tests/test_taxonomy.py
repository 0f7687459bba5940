"""The socio-function taxonomy table: loading, query resolution and OSM tag rules."""

from __future__ import annotations

import pytest

from sociomap.errors import QueryError
from sociomap.taxonomy import TagRule, _norm, load_taxonomy, resolve_queries, resolve_query, slugify


def test_table_has_the_ten_socioseg_functions_and_every_class_has_osm_rules():
    taxonomy = load_taxonomy()
    assert len(taxonomy.functions) == 10
    assert {f.name for f in taxonomy.functions} >= {"Educational", "Medical", "Park and greenspace", "Residential"}
    assert all(c.osm for c in taxonomy.classes)
    assert all(taxonomy.classes_of(f.name) for f in taxonomy.functions)


def test_every_typed_word_resolves_to_exactly_one_entry():
    taxonomy = load_taxonomy()
    owner: dict[str, str] = {}
    for entry in (*taxonomy.functions, *taxonomy.classes):
        for word in (entry.name, *entry.aliases):
            assert owner.setdefault(_norm(word), entry.name) == entry.name, word


@pytest.mark.parametrize(("spec", "kind", "text", "function"), [
    ("park", "class", "Park", "Park and greenspace"),
    ("university", "class", "College", "Educational"),
    ("Educational", "function", "Educational", "Educational"),
    ("health", "function", "Medical", "Medical"),
    ("  Green-Space ", "function", "Park and greenspace", "Park and greenspace"),
    ("Kaivopuisto", "name", "Kaivopuisto", None),
    ("Oodi=sport", "name", "Oodi", "Sport and cultural"),
])
def test_resolve_query(spec, kind, text, function):
    query = resolve_query(spec)
    assert (query.kind, query.text, query.function) == (kind, text, function)


def test_function_query_lists_its_classes_and_names_its_layer():
    query = resolve_query("education")
    assert {"School", "College", "Kindergarten"} <= set(query.classes)
    assert query.layer == "educational" and resolve_query("Kaivopuisto").layer == "kaivopuisto"
    assert slugify("Park and greenspace") == "park_and_greenspace"


@pytest.mark.parametrize("spec", ["", "   ", "Oodi=nonsense"])
def test_bad_entries_raise_query_error(spec):
    with pytest.raises(QueryError):
        resolve_query(spec)


def test_resolve_queries_drops_duplicates_keeping_order():
    queries = resolve_queries(["school", "park", "schools", "park"])
    assert [q.text for q in queries] == ["School", "Park"]
    with pytest.raises(QueryError):
        resolve_queries([])


@pytest.mark.parametrize(("tags", "expected"), [
    ({"amenity": "school", "name": "Ressun lukio"}, "School"),
    ({"leisure": "park"}, "Park"),
    ({"leisure": "garden", "garden:type": "botanical"}, "Botanical Garden"),
    ({"healthcare": "hospital"}, "Hospital"),
    ({"landuse": "commercial"}, "Business Office Building"),
    ({"landuse": "retail"}, "Retail Area"),
    ({"highway": "pedestrian", "area": "yes"}, "Square"),
    ({"highway": "pedestrian"}, None),
    ({"building": "yes"}, None),
])
def test_tag_rules_classify_osm_tags(tags, expected):
    found = load_taxonomy().classify(tags)
    assert (found.name if found else None) == expected


def test_tag_rule_parsing():
    rule = TagRule.parse("leisure=garden & garden:type=botanical")
    assert rule.tags == (("leisure", "garden"), ("garden:type", "botanical"))
    assert TagRule.parse("shop=*").matches({"shop": "bakery"}) and not TagRule.parse("shop=*").matches({})
    for bad in ("leisure", "=park", "leisure="):
        with pytest.raises(ValueError):
            TagRule.parse(bad)
