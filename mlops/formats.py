"""Versioned YAML read and write, with errors that name file:line:col.

Every mlops file carries ``format: N``. A file from a newer mlops stops the command
with a clear message instead of being misread.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .errors import FormatError, NewerFormatError
from .fsio import atomic_write

try:  # the C loader is several times faster; fall back where libyaml is missing
    _Loader: type = yaml.CSafeLoader
    _Dumper: type = yaml.CSafeDumper
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader
    _Dumper = yaml.SafeDumper


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as a user would type it: relative to the working folder when inside it."""
    try:
        return os.path.relpath(path)
    except ValueError:  # pragma: no cover - other drive on Windows
        return str(path)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise FormatError(f"{where}: not valid YAML: {exc.problem or exc.context}", file=source) from None
    except yaml.YAMLError as exc:
        raise FormatError(f"{source}: not valid YAML: {exc}", file=source) from None


def load_yaml(path: str | os.PathLike[str]) -> Any:
    source = display_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{source}: not a text file (not UTF-8)", file=source) from None
    return parse_yaml(text, source)


Position = tuple[int, int]  # 1-based line and column


def parse_yaml_positions(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], Position]]:
    """Parse YAML and also return where each value starts, keyed by its path of keys/indexes.

    ``positions[("stages", "train", "cmd")] == (12, 10)``; a mapping key's own position is
    under its path plus ``"<key>"`` so that "unknown key" errors can point at the key.
    """
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise FormatError(f"{where}: not valid YAML: {exc.problem or exc.context}", file=source) from None
    positions: dict[tuple[Any, ...], Position] = {}
    if node is None:
        return None, positions

    def build(n: yaml.Node, path: tuple[Any, ...]) -> Any:
        positions[path] = (n.start_mark.line + 1, n.start_mark.column + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                key = (
                    yaml.load(yaml.serialize(key_node), Loader=_Loader)
                    if not isinstance(key_node, yaml.ScalarNode)
                    else _scalar(key_node)
                )
                positions[(*path, "<key>", key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in out:
                    line, col = positions[(*path, "<key>", key)]
                    raise FormatError(f"{source}:{line}:{col}: duplicate key '{key}'", file=source)
                out[key] = build(value_node, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, (*path, index)) for index, item in enumerate(n.value)]
        return _scalar(n)

    return build(node, ()), positions


def _scalar(node: yaml.Node) -> Any:
    constructor = yaml.SafeLoader("")  # resolves tags (int, float, bool, null) like safe_load
    return constructor.construct_object(node, deep=True)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def write_yaml(path: str | os.PathLike[str], data: Any, *, header: str = "") -> None:
    atomic_write(path, header + dump_yaml(data))


def check_format(data: Any, source: str, *, supported: int, kind: str) -> dict[str, Any]:
    """Require a mapping with a ``format`` this mlops can read."""
    if not isinstance(data, dict):
        raise FormatError(f"{source}: expected a YAML mapping for a {kind}, found {type(data).__name__}", file=source)
    version = data.get("format", 1)
    if not isinstance(version, int):
        raise FormatError(f"{source}: 'format' must be a whole number, found {version!r}", file=source)
    if version > supported:
        raise NewerFormatError(
            f"{source}: written by a newer mlops ({kind} format {version}; this mlops reads up to {supported})",
            hint="upgrade mlops (pip install -U mlops)",
            file=source,
        )
    return data


def require_field(data: dict[str, Any], key: str, types: type | tuple[type, ...], source: str) -> Any:
    if key not in data:
        raise FormatError(f"{source}: missing field '{key}'", file=source, field=key)
    value = data[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        names = " or ".join(t.__name__ for t in _as_tuple(types))
        raise FormatError(f"{source}: field '{key}' must be {names}, found {value!r}", file=source, field=key)
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)
