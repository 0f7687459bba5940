"""The socio-function taxonomy table: loading, query resolution and OSM tag rules."""

from __future__ import annotations

import pytest

from sociomap.errors import QueryError
from sociomap.taxonomy import TagRule, _norm, load_taxonomy, resolve_queries, resolve_query, slugify


def test_table_has_the_ten_socioseg_functions_and_every_class_has_a_reason_to_be_there():
    taxonomy = load_taxonomy()
    assert len(taxonomy.functions) == 10
    assert {f.name for f in taxonomy.functions} >= {"Educational", "Medical", "Park and greenspace", "Residential"}
    # A SocioSeg class may lack OSM rules (no clear tagging: the model is still asked for it by name); a class
    # kept only for OSM work must have them.
    assert all(c.osm or c.socioseg for c in taxonomy.classes)
    assert all(taxonomy.classes_of(f.name) for f in taxonomy.functions)


def test_every_class_the_paper_names_is_a_taxonomy_class():
    from sociomap.taxonomy import PAPER_CLASSES, find_query

    for name in PAPER_CLASSES:
        query = find_query(name)
        assert query is not None and query.kind == "class" and query.text == name, name


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
    ({"place": "square"}, "Square"),
    ({"highway": "pedestrian", "area": "yes"}, None),  # a pedestrian area or street is not a square
    ({"amenity": "place_of_worship", "religion": "christian"}, "Church"),
    ({"leisure": "pitch", "sport": "basketball"}, "Basketball Arena"),
    ({"leisure": "pitch", "sport": "soccer"}, "Soccer Field"),
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


#: The paper's socio-classes (socioreasoner.md section 1) that have an OSM counterpart, and its top 20.
PAPER_TOP20 = ["Basketball Arena", "Business Office Building", "Soccer Field", "Scenic Spot", "School", "Shopping Mall",
               "Car Dealership", "Comprehensive Gymnasium", "Logistics and Express Delivery", "Square", "Parking Lot",
               "Government Agency", "Home Furnishing and Building Materials Market", "Hospital", "Driving School",
               "Public Security Police", "Exhibition and Convention Center", "Park", "Library", "Hotel",
               "Industrial Park"]
PAPER_CLASSES = ["Golf Course", "Temple", "Scenic Spot", "Airport", "Shopping Mall", "Park", "Square", "Zoo", "Cemetery",
                 "Botanical Garden", "Art Gallery", "Factory", "Industrial Park", "Fitness Center", "Church", "Court",
                 "Train Station", "Hotel", "Tennis Court", "School", "Bank", "Clinic", "Theater", "Swimming Pool",
                 "Concert Hall", "Fire Department", "Hospital", "Cinema", "Guesthouse", "Post Office",
                 "Insurance Company", "Museum", "Flower Market", "Sanatorium", "Community Center",
                 "Financial and Insurance Institution", "Long-distance Bus Station", "Residential Area",
                 "Port and Dock", "Gas Station", "Training Institution", *PAPER_TOP20]


def test_the_papers_top20_and_classes_are_present_and_every_class_word_names_its_class():
    taxonomy = load_taxonomy()
    names = {c.name for c in taxonomy.classes}
    assert set(PAPER_TOP20) <= names and set(PAPER_CLASSES) <= names
    for name in PAPER_CLASSES:
        query = resolve_query(name.lower())
        assert (query.kind, query.text) == ("class", name), name


@pytest.mark.parametrize(("word", "expected"), [
    ("bank", "Bank"), ("art gallery", "Art Gallery"), ("concert hall", "Concert Hall"), ("guesthouse", "Guesthouse"),
    ("factory", "Factory"), ("church", "Church"), ("temple", "Temple"), ("cathedral", "Church")])
def test_socioseg_class_words_reach_the_model_as_that_class(word, expected):
    assert resolve_query(word).text == expected


def test_nothing_outside_socioseg_is_presented_as_a_socioseg_class():
    taxonomy = load_taxonomy()
    outside = {c.name for c in taxonomy.classes if not c.socioseg}
    assert "Place of Worship" not in {c.name for c in taxonomy.classes}
    assert outside == {"Kindergarten", "Supermarket", "Market", "Retail Area"}
    assert not outside & set(PAPER_CLASSES)


@pytest.mark.parametrize("typo", ["parkk", "shcool", "hospitl", "Educatonal"])
def test_near_misses_ask_did_you_mean_with_exit_2(typo):
    from sociomap.errors import QuerySpellingError

    with pytest.raises(QuerySpellingError, match="did you mean") as err:
        resolve_query(typo)
    assert err.value.exit_code == 2 and typo in str(err.value)


def test_marked_place_names_are_never_spelling_errors():
    assert resolve_query("Parkk=park").kind == "name"
    assert resolve_query("parkk", name=True) == resolve_queries([], names=["parkk"])[0]
    assert resolve_query("Kaivopuisto").kind == "name"  # far from every class word: a place name
