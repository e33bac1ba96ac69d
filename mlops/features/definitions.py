"""`features.yaml`: entities, sources, feature views and feature services, in Feast's vocabulary.

```yaml
format: 1
timezone: Europe/Paris          # optional: the zone of naive timestamps; without it they are refused
online_store: redis://127.0.0.1:6379/0   # optional; default: SQLite in .mlops/features/online.sqlite
entities:
  customer:
    join_keys: [customer_id]    # one key per entity
    value_type: int64
sources:
  orders:
    path: data/orders.parquet   # a Parquet or CSV file, or a folder of them, tracked with `mlops add`
    timestamp_field: event_ts
    created_timestamp_column: created_ts   # optional
feature_views:
  customer_stats:
    entities: [customer]
    source: orders
    ttl: 30d                    # optional; 0 or absent: no limit
    schema:
      total_purchases: int64
      avg_order_value: float64
feature_services:
  churn_v2:
    features: [customer_stats:total_purchases, customer_stats]   # view:feature, or a whole view
```

The file comes through git from other people: every path goes through ``paths.relpath_problem``,
every name through one pattern, and every problem is reported with file:line:col before
anything runs. This module reads only YAML; the sources' schemas are checked in ``sources.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..formats import Position, check_format, display_path, parse_yaml_positions, read_text
from ..paths import relpath_problem

FEATURES_FILE = "features.yaml"
FEATURES_FORMAT = 1
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
TOP_KEYS = {"format", "project", "timezone", "online_store", "entities", "sources", "feature_views", "feature_services"}
ENTITY_KEYS = {"join_keys", "value_type", "description", "tags"}
SOURCE_KEYS = {"path", "file_format", "timestamp_field", "created_timestamp_column", "timezone", "description", "tags"}
VIEW_KEYS = {"entities", "source", "ttl", "schema", "online", "description", "tags"}
SERVICE_KEYS = {"features", "defaults", "allow_direct", "description", "tags"}
#: feature and key types; Feast's names (Int64, Float32, String, Bool, UnixTimestamp) are accepted too
TYPES = ("int32", "int64", "float32", "float64", "string", "bool", "timestamp")
TYPE_ALIASES = {"unixtimestamp": "timestamp", "str": "string", "int": "int64", "float": "float64", "double": "float64"}
FILE_FORMATS = ("parquet", "csv")
DURATION = re.compile(r"(\d+)\s*(s|m|h|d|w)?")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


REDIS_SCHEMES = ("redis://", "rediss://")  # online_store URLs served by Redis


@dataclass(frozen=True)
class Entity:
    name: str
    join_key: str
    value_type: str
    where: str = field(default="", compare=False)
    #: field -> 'file:line:col' of its own node (join_key), for problems found against the source
    places: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Source:
    name: str
    path: str  # repo-relative posix
    file_format: str  # parquet | csv
    timestamp_field: str
    created_timestamp_column: str = ""
    timezone: str = ""  # "" = the file's own zone (naive timestamps refused unless features.yaml names one)
    where: str = field(default="", compare=False)
    #: field -> 'file:line:col' of its own node (path, timestamp_field, created_timestamp_column)
    places: dict[str, str] = field(default_factory=dict, compare=False)

    def place(self, name: str) -> str:
        return self.places.get(name, self.where)


@dataclass(frozen=True)
class FeatureView:
    name: str
    entities: tuple[str, ...]
    source: str
    ttl_seconds: int  # 0 = no limit
    features: tuple[tuple[str, str], ...]  # (name, type) in the order written
    online: bool = True
    where: str = field(default="", compare=False)
    #: feature -> 'file:line:col' of its name in the schema
    places: dict[str, str] = field(default_factory=dict, compare=False)

    def place(self, feature: str) -> str:
        return self.places.get(feature, self.where)

    def feature_type(self, name: str) -> str | None:
        return dict(self.features).get(name)


@dataclass(frozen=True)
class FeatureRef:
    view: str
    feature: str

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}"


@dataclass(frozen=True)
class FeatureService:
    name: str
    features: tuple[FeatureRef, ...]
    where: str = field(default="", compare=False)
    #: serving's missing-feature policy: feature name -> the value used when the store has none
    #: (a feature without a default makes such a request a 400 that names it)
    defaults: dict[str, Any] = field(default_factory=dict)
    #: whether callers of a model served with this service may send its features themselves
    allow_direct: bool = False

    def views(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ref.view for ref in self.features))


@dataclass(frozen=True)
class Definitions:
    file: str  # as shown in messages
    project: str
    timezone: str
    online_store: str  # "" = SQLite under .mlops/features/
    entities: dict[str, Entity]
    sources: dict[str, Source]
    views: dict[str, FeatureView]
    services: dict[str, FeatureService]
    hash: str  # sha256 of the canonical definitions: a training set names the definitions it came from

    @property
    def redis_store(self) -> bool:
        """Whether the online store is Redis (a server anyone with the URL reaches), not the SQLite file."""
        return self.online_store.startswith(REDIS_SCHEMES)

    def service(self, name: str) -> FeatureService:
        if name not in self.services:
            from ..errors import UsageError

            known = ", ".join(sorted(self.services)) or "none"
            raise UsageError(f"no feature service '{name}' in {self.file}", hint=f"defined: {known}")
        return self.services[name]

    def zone_of(self, source: Source) -> str:
        return source.timezone or self.timezone


class _Problems:
    """Problems collected while reading, each 'file:line:col: message', reported together."""

    def __init__(self, source: str, positions: dict[tuple[Any, ...], Position]) -> None:
        self.source = source
        self.positions = positions
        self.items: list[str] = []

    def where(self, path: tuple[Any, ...], *, key: bool = False) -> str:
        at = self.positions.get((*path[:-1], "<key>", path[-1])) if key and path else None
        at = at or self.positions.get(path)
        while at is None and path:
            path = path[:-1]
            at = self.positions.get(path)
        return f"{self.source}:{at[0]}:{at[1]}" if at else self.source

    def add(self, path: tuple[Any, ...], message: str, *, key: bool = False) -> None:
        self.items.append(f"{self.where(path, key=key)}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            count = len(self.items)
            more = f" (and {count - 1} more)" if count > 1 else ""
            raise FormatError(
                self.items[0] + more,
                hint=f"fix {self.source} ('mlops features validate' lists every problem)",
                file=self.source,
                problems=list(self.items),
            )


def load_definitions(root: Path, *, file: str = FEATURES_FILE) -> Definitions:
    """Read and check ``features.yaml`` at the repository root (its own content only)."""
    path = root / file
    shown = display_path(path)
    try:
        text = read_text(path, source=shown)
    except FileNotFoundError:
        raise FormatError(
            f"{shown}: no feature definitions here", hint="write features.yaml (docs/features.md)", file=shown
        ) from None
    return parse_definitions(text, shown)


def parse_definitions(text: str, source: str) -> Definitions:
    data, positions = parse_yaml_positions(text, source)
    if data is None:
        data = {}
    check_format(data, source, supported=FEATURES_FORMAT, kind="feature definitions")
    problems = _Problems(source, positions)
    _unknown_keys(problems, data, (), TOP_KEYS, "features.yaml")
    timezone = _zone(problems, data.get("timezone"), ("timezone",))
    project = _text(problems, data.get("project", ""), ("project",), "project")
    online_store = _text(problems, data.get("online_store", ""), ("online_store",), "online_store")
    if online_store and not online_store.startswith((*REDIS_SCHEMES, "sqlite")):
        problems.add(("online_store",), f"unknown online store {online_store!r}: use sqlite or redis://HOST:PORT/DB")
    entities = {
        name: entity
        for name, body in _sections(problems, data, "entities")
        if (entity := _entity(problems, name, body)) is not None
    }
    sources = {
        name: src for name, body in _sections(problems, data, "sources") if (src := _source(problems, name, body))
    }
    views = {
        name: view
        for name, body in _sections(problems, data, "feature_views")
        if (view := _view(problems, name, body, entities, sources)) is not None
    }
    services = {
        name: service
        for name, body in _sections(problems, data, "feature_services")
        if (service := _service(problems, name, body, views, entities)) is not None
    }
    problems.raise_if_any()
    canonical = json.dumps(
        {"timezone": timezone, "entities": entities, "sources": sources, "views": views, "services": services},
        default=_plain,
        sort_keys=True,
    )
    return Definitions(
        file=source,
        project=project,
        timezone=timezone,
        online_store=online_store,
        entities=entities,
        sources=sources,
        views=views,
        services=services,
        hash="sha256:" + hashlib.sha256(canonical.encode()).hexdigest(),
    )


def view_hash(defs: Definitions, view: FeatureView) -> str:
    """sha256 of what a view's stored values depend on: the view (TTL, features and their types), its
    entities and its source's definition, with the zone naive times are read in."""
    source = defs.sources.get(view.source)
    canonical = json.dumps(
        {
            "view": view,
            "entities": [defs.entities.get(name) for name in view.entities],
            "source": source,
            "zone": defs.zone_of(source) if source else "",
        },
        default=_plain,
        sort_keys=True,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _plain(value: Any) -> Any:
    """A definition as JSON for the definitions' hash (positions left out: moving text changes nothing)."""
    doc = {k: v for k, v in vars(value).items() if k not in ("where", "places")}
    return {k: [list(f) for f in v] if k == "features" and v and isinstance(v[0], tuple) else v for k, v in doc.items()}


def _unknown_keys(problems: _Problems, body: dict[str, Any], path: tuple[Any, ...], allowed: set[str], what: str):
    for key in body:
        if key not in allowed:
            problems.add((*path, key), f"unknown key '{key}' in {what} (known: {', '.join(sorted(allowed))})", key=True)


def _sections(problems: _Problems, data: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    section = data.get(key) or {}
    if not isinstance(section, dict):
        problems.add((key,), f"'{key}' must be a mapping of names to definitions")
        return []
    out = []
    for name, body in section.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            problems.add(
                (key, name), f"name {name!r} must be letters, digits and _ (not starting with a digit)", key=True
            )
            continue
        if not isinstance(body, dict):
            problems.add((key, name), f"{key} '{name}' must be a mapping")
            continue
        out.append((name, body))
    return out


def _text(problems: _Problems, value: Any, path: tuple[Any, ...], what: str) -> str:
    if not isinstance(value, str):
        problems.add(path, f"'{what}' must be text, found {value!r}")
        return ""
    return value


def _zone(problems: _Problems, value: Any, path: tuple[Any, ...]) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        problems.add(path, f"a time zone must be text such as UTC or Europe/Paris, found {value!r}")
        return ""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        problems.add(path, f"unknown time zone {value!r} (an IANA name such as UTC or Europe/Paris)")
        return ""
    return value


def normalise_type(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    lowered = value.strip().lower()
    lowered = TYPE_ALIASES.get(lowered, lowered)
    return lowered if lowered in TYPES else None


def _type(problems: _Problems, value: Any, path: tuple[Any, ...]) -> str:
    kind = normalise_type(value)
    if kind is None:
        problems.add(path, f"unknown type {value!r} (known: {', '.join(TYPES)})")
        return ""
    return kind


def _entity(problems: _Problems, name: str, body: dict[str, Any]) -> Entity | None:
    path = ("entities", name)
    _unknown_keys(problems, body, path, ENTITY_KEYS, f"entity '{name}'")
    keys = body.get("join_keys", [name])
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list) or len(keys) != 1 or not isinstance(keys[0], str) or not NAME.fullmatch(keys[0]):
        problems.add((*path, "join_keys"), "join_keys must be one column name (entities with several keys: not yet)")
        return None
    value_type = _type(problems, body.get("value_type", "int64"), (*path, "value_type"))
    if value_type in ("float32", "float64", "timestamp"):
        problems.add((*path, "value_type"), f"a join key may not be {value_type}: use an integer or string key")
    join_keys = (*path, "join_keys")
    place = problems.where((*join_keys, 0) if isinstance(body.get("join_keys"), list) else join_keys)
    return Entity(name, keys[0], value_type, problems.where(path, key=True), {"join_key": place})


def _source(problems: _Problems, name: str, body: dict[str, Any]) -> Source | None:
    path = ("sources", name)
    _unknown_keys(problems, body, path, SOURCE_KEYS, f"source '{name}'")
    rel = body.get("path")
    problem = relpath_problem(rel) if rel is not None else "missing field 'path'"
    if problem:
        problems.add((*path, "path"), f"source '{name}': {problem}")
        return None
    rel = rel.rstrip("/")
    file_format = body.get("file_format") or ("csv" if rel.lower().endswith((".csv", ".csv.gz")) else "parquet")
    if file_format not in FILE_FORMATS:
        problems.add((*path, "file_format"), f"file_format must be one of {', '.join(FILE_FORMATS)}")
    stamp = body.get("timestamp_field")
    if not isinstance(stamp, str) or not stamp:
        problems.add((*path, "timestamp_field"), f"source '{name}' needs timestamp_field: the event time column")
        return None
    created = body.get("created_timestamp_column") or ""
    if not isinstance(created, str):
        problems.add((*path, "created_timestamp_column"), "created_timestamp_column must be a column name")
        created = ""
    zone = _zone(problems, body.get("timezone"), (*path, "timezone"))
    fields = ("path", "timestamp_field", "created_timestamp_column")
    places = {name: problems.where((*path, name)) for name in fields if name in body}
    return Source(name, rel, file_format, stamp, created, zone, problems.where(path, key=True), places)


def parse_ttl(value: Any) -> int | None:
    """Seconds in a TTL (``30d``, ``12h``, ``90m``, ``3600`` or ``3600s``, ``2w``); None if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    match = DURATION.fullmatch(value.strip())
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)] if match else None


def _view(
    problems: _Problems, name: str, body: dict[str, Any], entities: dict[str, Entity], sources: dict[str, Source]
) -> FeatureView | None:
    path = ("feature_views", name)
    _unknown_keys(problems, body, path, VIEW_KEYS, f"feature view '{name}'")
    names = body.get("entities", [])
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or len(names) != 1:
        problems.add((*path, "entities"), f"feature view '{name}' needs one entity (several: not yet)")
        return None
    for index, entity in enumerate(names):
        if entity not in entities:
            known = ", ".join(sorted(entities)) or "none defined"
            problems.add((*path, "entities", index), f"unknown entity {entity!r} (entities: {known})")
    source = body.get("source")
    if source not in sources:
        known = ", ".join(sorted(sources)) or "none defined"
        problems.add((*path, "source"), f"unknown source {source!r} (sources: {known})")
    ttl = parse_ttl(body.get("ttl", 0))
    if ttl is None:
        problems.add((*path, "ttl"), f"ttl must be a duration such as 30d, 12h, 90m or 3600s, found {body['ttl']!r}")
        ttl = 0
    schema = body.get("schema")
    if not isinstance(schema, dict) or not schema:
        problems.add((*path, "schema"), f"feature view '{name}' needs schema: a mapping of feature names to types")
        return None
    features = []
    for feature, kind in schema.items():
        if not isinstance(feature, str) or not NAME.fullmatch(feature):
            problems.add((*path, "schema", feature), f"feature name {feature!r} is not a plain name", key=True)
            continue
        features.append((feature, _type(problems, kind, (*path, "schema", feature))))
    online = body.get("online", True)
    if not isinstance(online, bool):
        problems.add((*path, "online"), "online must be true or false")
        online = True
    places = {feature: problems.where((*path, "schema", feature), key=True) for feature, _ in features}
    where = problems.where(path, key=True)
    return FeatureView(name, tuple(names), str(source), ttl, tuple(features), online, where, places)


def _service(
    problems: _Problems, name: str, body: dict[str, Any], views: dict[str, FeatureView], entities: dict[str, Entity]
) -> FeatureService | None:
    path = ("feature_services", name)
    _unknown_keys(problems, body, path, SERVICE_KEYS, f"feature service '{name}'")
    listed = body.get("features")
    if not isinstance(listed, list) or not listed:
        problems.add((*path, "features"), f"feature service '{name}' needs features: a list of view:feature or views")
        return None
    refs: list[FeatureRef] = []
    for index, item in enumerate(listed):
        where = (*path, "features", index)
        if not isinstance(item, str):
            problems.add(where, f"expected view:feature or a view name, found {item!r}")
            continue
        view_name, _, feature = item.partition(":")
        view = views.get(view_name)
        if view is None:
            problems.add(where, f"unknown feature view {view_name!r} (views: {', '.join(sorted(views)) or 'none'})")
            continue
        if not feature:
            refs.extend(FeatureRef(view_name, f) for f, _ in view.features)
        elif view.feature_type(feature) is None:
            problems.add(where, f"feature view '{view_name}' has no feature {feature!r}")
        else:
            refs.append(FeatureRef(view_name, feature))
    seen: dict[str, FeatureRef] = {}
    for ref in refs:
        if ref.feature in seen and seen[ref.feature] != ref:
            problems.add(
                (*path, "features"),
                f"two features named '{ref.feature}' ({seen[ref.feature]} and {ref}): training sets name columns "
                "by feature; rename one",
            )
        seen.setdefault(ref.feature, ref)
    keys = {entities[e].join_key for ref in refs for e in views[ref.view].entities if e in entities}
    for ref in refs:
        if ref.feature in keys:
            problems.add((*path, "features"), f"feature '{ref}' has the name of a join key")
    defaults = body.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.add((*path, "defaults"), "defaults must map feature names to values")
        defaults = {}
    for feature, value in defaults.items():
        if feature not in seen:
            problems.add(
                (*path, "defaults", feature), f"default for {feature!r}, not a feature of this service", key=True
            )
        elif isinstance(value, (dict, list)):
            problems.add((*path, "defaults", feature), f"the default of '{feature}' must be a single value")
    allow_direct = body.get("allow_direct", False)
    if not isinstance(allow_direct, bool):
        problems.add((*path, "allow_direct"), "allow_direct must be true or false")
        allow_direct = False
    return FeatureService(
        name, tuple(dict.fromkeys(refs)), problems.where(path, key=True), dict(defaults), allow_direct
    )


def service_document(defs: Definitions, service: str) -> dict[str, Any]:
    """A features.yaml holding one service and only what it reads (its views, their entities and
    sources) and the online store's settings: what a model bundle carries to look features up."""
    chosen = defs.service(service)
    views = {name: defs.views[name] for name in chosen.views()}
    entities = {name: defs.entities[name] for view in views.values() for name in view.entities}
    sources = {view.source: defs.sources[view.source] for view in views.values()}

    def given(**fields: Any) -> dict[str, Any]:  # the optional fields left out when empty, as a person writes them
        return {key: value for key, value in fields.items() if value not in ("", None)}

    return given(
        format=FEATURES_FORMAT,
        project=defs.project,
        timezone=defs.timezone,
        online_store=defs.online_store,
    ) | {
        "entities": {e.name: {"join_keys": [e.join_key], "value_type": e.value_type} for e in entities.values()},
        "sources": {
            s.name: given(
                path=s.path,
                file_format=s.file_format,
                timestamp_field=s.timestamp_field,
                created_timestamp_column=s.created_timestamp_column,
                timezone=s.timezone,
            )
            for s in sources.values()
        },
        "feature_views": {
            v.name: {
                "entities": list(v.entities),
                "source": v.source,
                "ttl": v.ttl_seconds,
                "schema": dict(v.features),
                "online": v.online,
            }
            for v in views.values()
        },
        "feature_services": {
            chosen.name: {
                "features": [str(ref) for ref in chosen.features],
                "defaults": dict(chosen.defaults),
                "allow_direct": chosen.allow_direct,
            }
        },
    }
