"""`mlops import feast`: a Feast feature repository of file sources, converted to features.yaml.

The repository's Python definitions are read with ``ast`` and never imported or run: a feature
repository is code from elsewhere. Module-level assignments of ``Entity(...)``, ``FileSource(...)``,
``FeatureView(...)`` (and ``BatchFeatureView``) and ``FeatureService(...)`` are understood when
their arguments are literals, ``timedelta(...)``, ``ValueType.X``, Feast types (``Int64``,
``Float32``, ...), ``Field(name=..., dtype=...)``, names of other definitions, and projections
(``view[["a", "b"]]``). Everything else is named in the result's notes, never dropped silently.
"""

from __future__ import annotations

import ast
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError, UsageError
from ..formats import dump_yaml, parse_yaml
from ..fsio import atomic_write
from ..paths import relpath_problem
from ..repo.repo import Repo
from .definitions import FEATURES_FILE, FEATURES_FORMAT, NAME, parse_definitions

MAX_FILE_BYTES = 2 * 2**20
MAX_FILES = 2000
SKIPPED_DIRS = {"__pycache__", ".git", ".venv", "venv", "node_modules", ".mlops"}
FEAST_TYPES = {
    "int32": "int32",
    "int64": "int64",
    "float32": "float32",
    "float64": "float64",
    "float": "float32",
    "double": "float64",
    "string": "string",
    "bool": "bool",
    "unixtimestamp": "timestamp",
}
KINDS = {"Entity", "FileSource", "FeatureView", "BatchFeatureView", "FeatureService", "Field"}
NOT_CARRIED = {
    "OnDemandFeatureView": "on-demand feature views (transformations at request time)",
    "StreamFeatureView": "stream feature views",
    "PushSource": "push sources",
    "RequestSource": "request sources",
    "KafkaSource": "Kafka sources",
    "KinesisSource": "Kinesis sources",
    "BigQuerySource": "BigQuery sources",
    "SnowflakeSource": "Snowflake sources",
    "RedshiftSource": "Redshift sources",
    "SparkSource": "Spark sources",
    "PostgreSQLSource": "PostgreSQL sources",
    "TrinoSource": "Trino sources",
}


@dataclass(frozen=True)
class FeastImport:
    written: bool
    path: str  # features.yaml, repo-relative
    entities: int
    sources: int
    feature_views: int
    feature_services: int
    notes: tuple[str, ...] = ()  # what could not be carried, each naming file:line
    untracked: tuple[str, ...] = ()  # sources to track with `mlops add`


@dataclass
class _Call:
    kind: str
    where: str
    args: dict[str, Any]


class _Unknown:
    """A value the converter cannot carry (kept with a description for the notes)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


@dataclass
class _Reader:
    files: dict[str, str] = field(default_factory=dict)  # display name -> text
    objects: dict[str, _Call] = field(default_factory=dict)  # variable -> definition
    notes: list[str] = field(default_factory=list)

    def value(self, node: ast.AST, where: str) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.value(item, where) for item in node.elts]
        if isinstance(node, ast.Dict):
            return {self.value(k, where): self.value(v, where) for k, v in zip(node.keys, node.values, strict=True)}
        if isinstance(node, ast.Name):
            if node.id in self.objects:
                return self.objects[node.id]
            if node.id.lower() in FEAST_TYPES:
                return ("type", FEAST_TYPES[node.id.lower()])
            return _Unknown(node.id)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "ValueType":
                kind = FEAST_TYPES.get(node.attr.lower())
                return ("type", kind) if kind else _Unknown(f"ValueType.{node.attr}")
            if node.attr.lower() in FEAST_TYPES:  # types.Int64
                return ("type", FEAST_TYPES[node.attr.lower()])
            return _Unknown(ast.unparse(node))
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in self.objects:
            picked = self.value(node.slice, where)
            if isinstance(picked, list) and all(isinstance(p, str) for p in picked):
                return ("projection", self.objects[node.value.id], picked)
            return _Unknown(ast.unparse(node))
        if isinstance(node, ast.Call):
            name = _call_name(node.func)
            if name == "timedelta":
                units = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
                total = 0.0
                for kw in node.keywords:
                    amount = self.value(kw.value, where)
                    if kw.arg not in units or not isinstance(amount, (int, float)):
                        return _Unknown(ast.unparse(node))
                    total += amount * units[kw.arg]
                if node.args:
                    amount = self.value(node.args[0], where)
                    if not isinstance(amount, (int, float)):
                        return _Unknown(ast.unparse(node))
                    total += amount * 86400
                return ("seconds", int(total))
            if name in ("Field", "Feature"):
                return self.call(name, node, where)
            return _Unknown(ast.unparse(node))
        return _Unknown(ast.unparse(node))

    def call(self, kind: str, node: ast.Call, where: str) -> _Call:
        args: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                self.notes.append(f"{where}: {kind}(**...) not carried (keyword arguments must be written out)")
                continue
            args[kw.arg] = self.value(kw.value, where)
        if node.args:
            args["_positional"] = [self.value(a, where) for a in node.args]
        return _Call(kind, where, args)


def _call_name(func: ast.AST) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _python_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".py"):
                found.append(Path(current) / name)
                if len(found) > MAX_FILES:
                    raise UsageError(
                        f"{folder}: more than {MAX_FILES} Python files; name the feature repository itself"
                    )
    return found


def read_feast_repo(folder: Path, shown: str) -> _Reader:
    reader = _Reader()
    for path in _python_files(folder):
        rel = posixpath.join(shown, path.relative_to(folder).as_posix())
        if path.stat().st_size > MAX_FILE_BYTES:
            reader.notes.append(f"{rel}: larger than {MAX_FILE_BYTES} bytes, not read")
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            tree = ast.parse(text, filename=rel)
        except SyntaxError as exc:
            raise FormatError(f"{rel}:{exc.lineno or 1}:{exc.offset or 1}: not valid Python: {exc.msg}") from None
        except (RecursionError, MemoryError, ValueError):
            raise FormatError(f"{rel}: not valid Python: nested too deeply to read") from None
        for node in tree.body:
            if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Call):
                continue
            name = _call_name(node.value.func)
            where = f"{rel}:{node.lineno}"
            if name in NOT_CARRIED:
                reader.notes.append(f"{where}: {NOT_CARRIED[name]} are not carried ({name})")
                continue
            if name not in KINDS or len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
                continue
            reader.objects[node.targets[0].id] = reader.call(name, node.value, where)
    return reader


def convert(reader: _Reader, *, feature_repo: str, repo_root: Path, project: str) -> dict[str, Any]:
    """The features.yaml document; what cannot be carried goes to ``reader.notes``."""
    notes = reader.notes
    entities: dict[str, Any] = {}
    sources: dict[str, Any] = {}
    views: dict[str, Any] = {}
    services: dict[str, Any] = {}
    names: dict[int, str] = {}  # id(call) -> its name in features.yaml

    def named(call: _Call) -> str | None:
        name = call.args.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            notes.append(f"{call.where}: {call.kind} name {name!r} is not a plain name; not carried")
            return None
        names[id(call)] = name
        return name

    for call in reader.objects.values():
        if call.kind != "Entity" or (name := named(call)) is None:
            continue
        keys = call.args.get("join_keys") or ([call.args["join_key"]] if "join_key" in call.args else [name])
        if not isinstance(keys, list) or len(keys) != 1 or not isinstance(keys[0], str):
            notes.append(f"{call.where}: entity '{name}' has several join keys {keys!r}; not carried")
            continue
        body: dict[str, Any] = {"join_keys": keys}
        value_type = call.args.get("value_type")
        if isinstance(value_type, tuple) and value_type[0] == "type":
            body["value_type"] = value_type[1]
        elif value_type is not None:
            notes.append(f"{call.where}: entity '{name}': value_type {value_type!r} not carried (int64 assumed)")
        _describe(call, body)
        entities[name] = body
    for call in reader.objects.values():
        if call.kind != "FileSource" or (name := named(call)) is None:
            continue
        path = call.args.get("path")
        rel = _source_path(path, feature_repo, repo_root)
        if rel is None:
            notes.append(f"{call.where}: source '{name}': path {path!r} is not a file inside this repository")
            continue
        body = {
            "path": rel,
            "timestamp_field": call.args.get("timestamp_field") or call.args.get("event_timestamp_column"),
        }
        if not isinstance(body["timestamp_field"], str):
            notes.append(f"{call.where}: source '{name}' has no timestamp_field; not carried")
            continue
        created = call.args.get("created_timestamp_column")
        if isinstance(created, str) and created:
            body["created_timestamp_column"] = created
        for unsupported in ("field_mapping", "file_format", "s3_endpoint_override", "date_partition_column"):
            if call.args.get(unsupported):
                notes.append(f"{call.where}: source '{name}': {unsupported} not carried")
        _describe(call, body)
        sources[name] = body
    for call in reader.objects.values():
        if call.kind not in ("FeatureView", "BatchFeatureView") or (name := named(call)) is None:
            continue
        view = _view(call, name, entities, sources, names, notes)
        if view is not None:
            views[name] = view
    for call in reader.objects.values():
        if call.kind != "FeatureService" or (name := named(call)) is None:
            continue
        features: list[str] = []
        for item in call.args.get("features") or []:
            if isinstance(item, _Call) and names.get(id(item)) in views:
                features.append(names[id(item)])
            elif isinstance(item, tuple) and item[0] == "projection" and names.get(id(item[1])) in views:
                features.extend(f"{names[id(item[1])]}:{f}" for f in item[2])
            else:
                notes.append(f"{call.where}: service '{name}': feature reference {item!r} not carried")
        if call.args.get("logging_config") is not None:
            notes.append(f"{call.where}: service '{name}': logging_config not carried (mlops serve logs requests)")
        if features:
            body = {"features": features}
            _describe(call, body)
            services[name] = body
    doc: dict[str, Any] = {"format": FEATURES_FORMAT}
    if project:
        doc["project"] = project
    doc.update({"entities": entities, "sources": sources, "feature_views": views, "feature_services": services})
    return doc


def _view(
    call: _Call, name: str, entities: dict, sources: dict, names: dict[int, str], notes: list[str]
) -> dict[str, Any] | None:
    listed = call.args.get("entities") or []
    entity_names = [names.get(id(e)) if isinstance(e, _Call) else e for e in listed]
    if len(entity_names) != 1 or entity_names[0] not in entities:
        notes.append(f"{call.where}: feature view '{name}': entities {listed!r} (one known entity needed); not carried")
        return None
    source = call.args.get("source") or call.args.get("batch_source")
    source_name = names.get(id(source)) if isinstance(source, _Call) else None
    if source_name not in sources:
        notes.append(f"{call.where}: feature view '{name}': its source is not a carried file source; not carried")
        return None
    schema: dict[str, str] = {}
    for item in call.args.get("schema") or call.args.get("features") or []:
        field_name = item.args.get("name") if isinstance(item, _Call) else None
        dtype = item.args.get("dtype") or item.args.get("value_type") if isinstance(item, _Call) else None
        if isinstance(field_name, str) and isinstance(dtype, tuple) and dtype[0] == "type":
            if field_name != entities[entity_names[0]]["join_keys"][0]:  # Feast lists the key in schema too
                schema[field_name] = dtype[1]
        else:
            notes.append(f"{call.where}: feature view '{name}': field {item!r} not carried (type not understood)")
    if not schema:
        notes.append(f"{call.where}: feature view '{name}' has no schema mlops can read; not carried")
        return None
    body: dict[str, Any] = {"entities": entity_names, "source": source_name}
    ttl = call.args.get("ttl")
    if isinstance(ttl, tuple) and ttl[0] == "seconds":
        body["ttl"] = f"{ttl[1]}s" if ttl[1] % 86400 else f"{ttl[1] // 86400}d"
    elif ttl is not None:
        notes.append(f"{call.where}: feature view '{name}': ttl {ttl!r} not carried (no limit)")
    body["schema"] = schema
    if call.args.get("online") is False:
        body["online"] = False
    _describe(call, body)
    return body


def _describe(call: _Call, body: dict[str, Any]) -> None:
    description = call.args.get("description")
    if isinstance(description, str) and description:
        body["description"] = description
    tags = call.args.get("tags")
    if isinstance(tags, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        body["tags"] = tags


def _source_path(path: Any, feature_repo: str, repo_root: Path) -> str | None:
    if not isinstance(path, str) or "://" in path:
        return None
    if os.path.isabs(path):
        try:
            rel = Path(path).resolve().relative_to(repo_root.resolve()).as_posix()
        except ValueError:
            return None
    else:
        rel = posixpath.normpath(posixpath.join(feature_repo, path)) if feature_repo else posixpath.normpath(path)
    return None if relpath_problem(rel) else rel


def import_feast(repo: Repo, folder: str | os.PathLike[str], *, force: bool = False) -> FeastImport:
    """Convert the Feast repository at ``folder`` into features.yaml at the repository root."""
    rel = repo.check_user_path(folder)
    absolute = repo.abs(rel)
    if not absolute.is_dir():
        raise UsageError(f"{rel}: not a folder", hint="name the Feast feature repository (where feature_store.yaml is)")
    project = ""
    store_file = absolute / "feature_store.yaml"
    if store_file.is_file():
        config = parse_yaml(store_file.read_text(encoding="utf-8", errors="replace"), f"{rel}/feature_store.yaml")
        if isinstance(config, dict) and isinstance(config.get("project"), str):
            project = config["project"]
    reader = read_feast_repo(absolute, rel)
    doc = convert(reader, feature_repo=rel, repo_root=repo.root, project=project)
    text = f"# converted from the Feast repository {rel} by `mlops import feast`; review, then commit\n" + dump_yaml(
        doc
    )
    parse_definitions(text, FEATURES_FILE)  # what it writes, it can read
    target = repo.root / FEATURES_FILE
    written = False
    if not target.exists() or force:
        atomic_write(target, text)
        written = True
    elif target.read_text(encoding="utf-8", errors="replace") != text:
        raise UsageError(f"{FEATURES_FILE} exists already", hint="move it away, or pass --force to replace it")
    untracked = tuple(
        body["path"] for body in doc["sources"].values() if not (repo.root / (body["path"] + ".mlops")).is_file()
    )
    return FeastImport(
        written,
        FEATURES_FILE,
        len(doc["entities"]),
        len(doc["sources"]),
        len(doc["feature_views"]),
        len(doc["feature_services"]),
        tuple(reader.notes),
        untracked,
    )
