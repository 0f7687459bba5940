"""sociomap.taxonomy: socio-functions, socio-classes and their OSM tag rules, from ``taxonomy.toml``.

One table serves ``--classes`` (turning what a user types into model queries) and the OSM baseline
(which OSM objects count as which class), so the two can never disagree.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from sociomap.errors import QueryError, QuerySpellingError

#: The 82 socio-classes the paper names (Fig. 6d; ../shared/notes/socioreasoner.md section 1): each is a taxonomy
#: class (tests/test_taxonomy.py).
PAPER_CLASSES = (
    "Home Appliance and Electronics Store", "Golf Course", "Agricultural and Sideline Products Market", "Temple",
    "Scenic Spot", "Airport", "Disease Prevention", "Shopping Mall", "Park", "Square", "Zoo",
    "Financial and Insurance Institution", "Community Center", "Library", "Soccer Field",
    "Specialty Commercial Street", "Media Organization", "Cemetery", "Botanical Garden", "Art Gallery", "Factory",
    "Industrial Park", "Home Furnishing and Building Materials Market", "Fitness Center",
    "Business Office Building", "Church", "Entertainment Venue", "Comprehensive Gymnasium", "Basketball Arena",
    "Public Security Police", "Industrial Building", "Company", "Sanatorium", "Archives", "Train Station",
    "Memorial Hall", "Clothing, Shoes, Hats Store", "Parking Lot", "Government Agency", "Flower Market",
    "Used Car Trading", "Logistics and Express Delivery", "Hotel", "Tennis Court", "School", "Car Dealership",
    "Bank", "Science and Technology Museum", "Resort", "Long-distance Bus Station", "Toll Station",
    "Residential Area", "Social Organization", "Clinic", "Theater", "Swimming Pool", "Procuratorate",
    "Industrial and Commercial and Tax Authorities", "Picking Garden", "Service Area", "Concert Hall",
    "Fire Department", "Traffic and Vehicle Management", "Exhibition and Convention Center",
    "Training Institution", "Amusement Park", "Driving School", "Port and Dock", "Gas Station", "Badminton Court",
    "Hospital", "Cinema", "Guesthouse", "Post Office", "Insurance Company", "Literary and Art Troupe",
    "Cultural Palace", "Scientific Research Institution", "Museum", "Aquarium", "Court", "Water Sports Center",
)

QueryKind = Literal["function", "class", "name"]


@dataclass(frozen=True, slots=True)
class TagRule:
    """All of ``tags`` must match (AND); a class matches when any of its rules does (OR)."""

    tags: tuple[tuple[str, str], ...]

    def matches(self, tags: Mapping[str, str]) -> bool:
        """True when every key=value of the rule is in ``tags`` (value ``*`` matches any value)."""
        return all(k in tags and (v == "*" or tags[k] == v) for k, v in self.tags)

    @classmethod
    def parse(cls, text: str) -> TagRule:
        """Parse ``"leisure=garden&garden:type=botanical"``."""
        pairs = []
        for part in text.split("&"):
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ValueError(f"bad OSM tag rule {text!r}: expected key=value[&key=value]")
            pairs.append((key.strip(), value.strip()))
        return cls(tuple(pairs))


@dataclass(frozen=True, slots=True)
class SocioFunction:
    """One of the 10 SocioSeg socio-functions; ``slug`` names its output layer."""

    name: str
    aliases: tuple[str, ...]

    @property
    def slug(self) -> str:
        return slugify(self.name)


@dataclass(frozen=True, slots=True)
class SocioClass:
    """A socio-class: the query text the model sees, its socio-function, and its OSM tag rules."""

    name: str
    function: str
    aliases: tuple[str, ...]
    osm: tuple[TagRule, ...]
    socioseg: bool = True  # False: kept for OSM work, not one of SocioSeg's classes

    def matches(self, tags: Mapping[str, str]) -> bool:
        """True when the OSM tags satisfy any of this class's rules."""
        return any(rule.matches(tags) for rule in self.osm)


@dataclass(frozen=True, slots=True)
class Query:
    """What one ``--classes`` entry became: the text sent to the model and the layer it lands in.

    ``function`` is None for a free-text place name without an ``=function`` suffix; such a query
    gets its own layer named after the text.
    """

    text: str
    kind: QueryKind
    function: str | None
    classes: tuple[str, ...] = ()

    @property
    def layer(self) -> str:
        """Output layer (and GeoPackage file stem) for this query."""
        return slugify(self.function or self.text)


@dataclass(frozen=True, slots=True)
class Taxonomy:
    """The loaded table."""

    functions: tuple[SocioFunction, ...]
    classes: tuple[SocioClass, ...]

    def function(self, name: str) -> SocioFunction:
        """Look a socio-function up by its exact name."""
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(name)

    def classes_of(self, function: str) -> tuple[SocioClass, ...]:
        """All socio-classes of one socio-function."""
        return tuple(c for c in self.classes if c.function == function)

    def classify(self, tags: Mapping[str, str]) -> SocioClass | None:
        """The first socio-class (table order) whose OSM rules match these tags."""
        return next((c for c in self.classes if c.matches(tags)), None)

    def matching(self, tags: Mapping[str, str]) -> tuple[SocioClass, ...]:
        """Every socio-class whose OSM rules match these tags, in table order."""
        return tuple(c for c in self.classes if c.matches(tags))


def slugify(text: str) -> str:
    """Lower-case ASCII-safe layer name: ``"Park and greenspace"`` -> ``"park_and_greenspace"``."""
    slug = re.sub(r"[^\w]+", "_", text.strip().lower(), flags=re.UNICODE).strip("_")
    return slug or "query"


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


@functools.lru_cache(maxsize=1)
def load_taxonomy() -> Taxonomy:
    """Read the bundled ``taxonomy.toml`` once."""
    data = tomllib.loads(resources.files("sociomap").joinpath("taxonomy.toml").read_text("utf-8"))
    functions = tuple(SocioFunction(f["name"], tuple(f.get("aliases", ()))) for f in data["function"])
    names = {f.name for f in functions}
    classes = []
    for c in data["class"]:
        if c["function"] not in names:
            raise ValueError(f"taxonomy.toml: class {c['name']!r} has unknown function {c['function']!r}")
        rules = tuple(TagRule.parse(r) for r in c.get("osm", ()))
        classes.append(SocioClass(c["name"], c["function"], tuple(c.get("aliases", ())), rules,
                                  bool(c.get("socioseg", True))))
    return Taxonomy(functions, tuple(classes))


def _lookup(text: str, taxonomy: Taxonomy) -> Query | None:
    key = _norm(text)
    for f in taxonomy.functions:
        if key in {_norm(f.name), *map(_norm, f.aliases)}:
            return Query(f.name, "function", f.name, tuple(c.name for c in taxonomy.classes_of(f.name)))
    for c in taxonomy.classes:
        if key in {_norm(c.name), *map(_norm, c.aliases)}:
            # The alias the user typed is kept only when it is the class itself; otherwise the model
            # gets the SocioSeg class name it was trained on ("university" -> "College").
            return Query(c.name, "class", c.function, (c.name,))
    return None


#: How close (difflib ratio) a word must be to a known class word to be taken for a typo of it.
SPELLING_CUTOFF = 0.8


def _vocabulary(taxonomy: Taxonomy) -> dict[str, str]:
    """Every typed word (normalised) -> the function or class name it resolves to."""
    words = {}
    for entry in (*taxonomy.functions, *taxonomy.classes):
        for word in (entry.name, *entry.aliases):
            words[_norm(word)] = entry.name
    return words


def _check_spelling(text: str, taxonomy: Taxonomy) -> None:
    import difflib

    words = _vocabulary(taxonomy)
    near = difflib.get_close_matches(_norm(text), list(words), n=3, cutoff=SPELLING_CUTOFF)
    if near:
        options = " or ".join(repr(w) for w in dict.fromkeys(near))
        raise QuerySpellingError(
            f"--classes: {text!r} is no socio-function or class; did you mean {options}? If it is a place "
            f"name, mark it: {text + '=<function>'!r} (e.g. {text + '=park and greenspace'!r}) or --name {text!r}")


def resolve_query(spec: str, taxonomy: Taxonomy | None = None, name: bool = False) -> Query:
    """Turn one ``--classes`` entry into a Query.

    Accepted: a socio-function ("Educational", "medical"), a class word ("park", "university"),
    free text (a place name, "Kaivopuisto"), or free text with an explicit function
    ("Kaivopuisto=park and greenspace", "Oodi=sport"). Free text close to a known word ("parkk") raises
    QuerySpellingError (exit 2, "did you mean ...?") unless it is marked as a place name: with
    ``=function`` or ``name=True`` (``--name``).
    """
    taxonomy = taxonomy or load_taxonomy()
    text = spec.strip()
    if not text:
        raise QueryError("--classes: empty entry; give e.g. --classes park,school")
    place, sep, func = text.partition("=")
    if sep:
        target = _lookup(func, taxonomy)
        if target is None or target.function is None:
            known = ", ".join(f.name for f in taxonomy.functions)
            raise QueryError(f"--classes: {func.strip()!r} in {text!r} is no socio-function; use one of: {known}")
        return Query(place.strip(), "name", target.function)
    if name:
        return Query(text, "name", None)
    found = _lookup(text, taxonomy)
    if found is None:
        _check_spelling(text, taxonomy)
    return found or Query(text, "name", None)


def find_query(text: str, taxonomy: Taxonomy | None = None) -> Query | None:
    """The socio-function or socio-class a text names, or None (no spelling advice: for texts a dataset gives,
    not ones a user typed)."""
    return _lookup(text.strip(), taxonomy or load_taxonomy())


def resolve_queries(specs: Iterable[str], taxonomy: Taxonomy | None = None,
                    names: Iterable[str] = ()) -> list[Query]:
    """Resolve several entries (``names``: place names, never taken as classes), dropping exact
    duplicates but keeping order."""
    out: list[Query] = []
    for spec, is_name in [*((s, False) for s in specs), *((n, True) for n in names)]:
        q = resolve_query(spec, taxonomy, name=is_name)
        if q not in out:
            out.append(q)
    if not out:
        raise QueryError("--classes: no classes given; e.g. --classes park,school (or --name 'Kaivopuisto')")
    return out


def taxonomy_fingerprint() -> str:
    """sha256 of the table in force (every function, class, alias and rule, as loaded) and the code that
    matches tags with it (part of the OSM index key)."""
    import hashlib

    from sociomap.fingerprint import code_fingerprint

    table = repr(load_taxonomy()).encode()
    return hashlib.sha256(table + code_fingerprint("sociomap.taxonomy").encode()).hexdigest()
