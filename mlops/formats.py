"""Versioned YAML read and write, with errors that name file:line:col.

Every mlops file carries ``format: N``. A file from a newer mlops stops the command
with a clear message instead of being misread.
"""

from __future__ import annotations

import ast
import json
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


#: Deepest nesting a file may have (mappings and lists, aliases expanded): mlops' own files
#: nest a few levels, and consumers that recurse (merges, copies, hashing) stay far from
#: Python's recursion limit.
MAX_DEPTH = 64
#: Most nodes that YAML aliases may add by expansion: a "billion laughs" document is a few
#: hundred bytes whose aliases expand to 10**9 nodes for whoever walks the loaded data.
MAX_ALIAS_NODES = 10_000


def _yaml_error(exc: yaml.YAMLError, source: str) -> FormatError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        return FormatError(f"{where}: not valid YAML: {exc.problem or exc.context}", file=source)
    return FormatError(f"{source}: not valid YAML: {_first_clause(exc)}", file=source)


def _may_nest_deeply(text: str) -> bool:
    """Whether ``text`` could nest MAX_DEPTH deep: every level of nesting needs one of
    ``[ { - : ?``. False for most small files, which then skip the node walk."""
    indicators = 0
    for char in "[{-:?":
        indicators += text.count(char)
        if indicators >= MAX_DEPTH:
            return True
    return False


def _too_deep(source: str) -> FormatError:
    return FormatError(f"{source}: nested deeper than {MAX_DEPTH} levels", file=source)


def _check_depth(root: yaml.Node, source: str) -> None:
    """Refuse a node tree (no aliases in it) that nests deeper than MAX_DEPTH, a scalar
    counting as one level; only collections go on the stack, so a large file costs little."""
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        items = node.value
        if not items:
            continue
        if depth >= MAX_DEPTH:
            raise _too_deep(source)
        for item in items if type(node) is yaml.SequenceNode else (part for pair in items for part in pair):
            if type(item) is not yaml.ScalarNode:
                stack.append((item, depth + 1))


def _check_aliases(root: yaml.Node, source: str) -> None:
    """Refuse a node graph that nests deeper than MAX_DEPTH or whose aliases expand past
    MAX_ALIAS_NODES (or refer to themselves), without expanding it: each distinct collection
    is visited once, its expanded size and depth memoised."""
    expanded: dict[int, tuple[int, int]] = {}  # id(collection) -> (nodes once expanded, depth)
    distinct = 0
    open_nodes: set[int] = set()  # the collections on the current path: a cycle if met again
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            size, depth = 1, 1
            for child in _children(node):
                child_size, child_depth = (1, 1) if type(child) is yaml.ScalarNode else expanded[id(child)]
                size += child_size
                depth = max(depth, child_depth + 1)
            if depth > MAX_DEPTH:
                raise _too_deep(source)
            if size - distinct > MAX_ALIAS_NODES:
                raise FormatError(
                    f"{source}: YAML aliases expand past {MAX_ALIAS_NODES} nodes (an alias bomb?)", file=source
                )
            expanded[key] = (size, depth)
            continue
        if key in expanded:
            continue
        if key in open_nodes:
            raise FormatError(f"{source}: a YAML alias refers to itself", file=source)
        open_nodes.add(key)
        if len(open_nodes) > MAX_DEPTH:
            raise _too_deep(source)
        stack.append((node, True))
        for child in _children(node):
            distinct += 1
            if type(child) is not yaml.ScalarNode and id(child) not in expanded:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return []


def _compose(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The loader and the document's checked node graph (None for an empty document)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None and not isinstance(node, yaml.ScalarNode):
            if "*" in text:  # every alias starts with one
                _check_aliases(node, source)
            elif _may_nest_deeply(text):
                _check_depth(node, source)
    except yaml.YAMLError as exc:
        loader.dispose()
        raise _yaml_error(exc, source) from None
    except BaseException:
        loader.dispose()
        raise
    return loader, node


def parse_yaml(text: str, source: str) -> Any:
    """Parse one YAML document, bounded: aliases may not expand past MAX_ALIAS_NODES nor
    nesting go past MAX_DEPTH; every problem is one FormatError naming ``source``."""
    loader, node = _compose(text, source)
    try:
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    except (ValueError, OverflowError, TypeError) as exc:
        # a scalar that matches a YAML type but cannot be built: 2024-13-45, an int of 5,000 digits
        raise FormatError(f"{source}: not valid YAML: {_first_clause(exc)}", file=source) from None
    finally:
        loader.dispose()


def _first_clause(exc: Exception) -> str:
    """An exception's message up to its first semicolon or line break: one short line."""
    return str(exc).split(";")[0].splitlines()[0] if str(exc) else type(exc).__name__


def read_text(path: str | os.PathLike[str], *, source: str | None = None, what: str = "file") -> str:
    """The UTF-8 text of ``path``; a folder in its place, bytes that are not UTF-8 or an
    unreadable file become one FormatError naming it. A missing file raises FileNotFoundError
    (callers decide whether it is optional)."""
    return decode_text(read_bytes(path, source=source, what=what), source or display_path(path), what=what)


def read_bytes(path: str | os.PathLike[str], *, source: str | None = None, what: str = "file") -> bytes:
    """The bytes of ``path``, with read_text's errors (FileNotFoundError passes through)."""
    source = source or display_path(path)
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise FormatError(
            f"{source}: is a folder, expected a {what}", hint="remove or rename the folder", file=source
        ) from None
    except OSError as exc:
        raise FormatError(f"{source}: cannot be read: {exc.strerror or exc}", file=source) from None


def decode_text(data: bytes, source: str, *, what: str = "file") -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{source}: not a text file (not UTF-8)", hint=f"restore the {what}", file=source) from None


def load_yaml(path: str | os.PathLike[str]) -> Any:
    source = display_path(path)
    return parse_yaml(read_text(path, source=source), source)


def parse_json(data: str | bytes, source: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a JSON document read from disk or a remote: garbage, non-UTF-8 bytes and
    nesting past ``max_depth`` are one FormatError naming ``source``, never a crash."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{source}: not valid JSON (not UTF-8)", file=source) from None
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{source}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}", file=source) from None
    except RecursionError:  # the C scanner's own guard, far past max_depth
        raise FormatError(f"{source}: nested deeper than {max_depth} levels", file=source) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise FormatError(f"{source}: not valid JSON: {_first_clause(exc)}", file=source) from None
    if data.count("[") + data.count("{") >= max_depth:
        check_depth(value, source, max_depth=max_depth)
    return value


def parse_json_lines(lines: list[str], source: str, *, max_depth: int = MAX_DEPTH) -> list[Any]:
    """Each line's JSON value, None where a line is not valid JSON or nests past ``max_depth``
    (a torn tail, a damaged record). One parse for the whole list when every line is plainly
    within the bound: about ten times faster than a parse per line."""
    if all(line.count("[") + line.count("{") < max_depth for line in lines):
        try:
            return list(json.loads("[" + ",".join(lines) + "]"))
        except (ValueError, RecursionError):
            pass  # some line is damaged: find which, one by one
    out: list[Any] = []
    for line in lines:
        try:
            out.append(parse_json(line, source, max_depth=max_depth))
        except FormatError:
            out.append(None)
    return out


def check_depth(value: Any, source: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse loaded data that nests deeper than ``max_depth`` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise FormatError(f"{source}: nested deeper than {max_depth} levels", file=source)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))


def load_json(path: str | os.PathLike[str], *, what: str = "file") -> Any:
    source = display_path(path)
    return parse_json(read_bytes(path, source=source, what=what), source)


Position = tuple[int, int]  # 1-based line and column


def parse_yaml_positions(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], Position]]:
    """Parse YAML and also return where each value starts, keyed by its path of keys/indexes.

    ``positions[("stages", "train", "cmd")] == (12, 10)``; a mapping key's own position is
    under its path plus ``"<key>"`` so that "unknown key" errors can point at the key.
    """
    loader, node = _compose(text, source)
    loader.dispose()
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

    try:
        return build(node, ()), positions
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    except (ValueError, OverflowError, TypeError) as exc:
        raise FormatError(f"{source}: not valid YAML: {_first_clause(exc)}", file=source) from None


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


# --- parameter files: by their name, as DVC reads them ----------------------------------------


def parse_params(text: str, name: str, source: str) -> Any:
    """The content of a parameter file, by the format its ``name`` says; errors name ``source``:line."""
    if name.endswith(".json"):
        return parse_json(text, source)
    if name.endswith(".toml"):
        return _parse_toml(text, source)
    if name.endswith(".py"):
        return parse_python(text, source)
    return parse_yaml(text, source) or {}


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise FormatError(
                f"{source}: TOML parameter files need Python 3.11+ or the 'tomli' package",
                hint="pip install tomli",
            ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FormatError(f"{source}: not valid TOML: {exc}") from None
    except (RecursionError, MemoryError):  # tomllib recurses once per nested array or inline table
        raise FormatError(f"{source}: not valid TOML: nested too deep") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise FormatError(f"{source}: not valid TOML: {str(exc).split(';')[0]}") from None
    check_depth(data, source)
    return data


def parse_python(text: str, source: str) -> dict[str, Any]:
    """Constants of a Python parameter file, read with ``ast``: the file is never executed.

    As DVC reads them: module-level assignments (``LR = 0.1``), class attributes
    (``class Train: epochs = 10`` -> ``Train.epochs``) and ``self.x = ...`` in a class's
    ``__init__``. Only literal values count (numbers, strings, booleans, None, and lists,
    tuples, dicts and sets of them); any other assignment is not a parameter and is skipped.
    """
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as exc:
        raise FormatError(f"{source}:{exc.lineno or 1}:{exc.offset or 1}: not valid Python: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        # the parser's own limits: an expression nested or chained past what it builds (``x = 1+1+...``)
        raise FormatError(f"{source}: not valid Python: an expression too deeply nested to read") from None
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members: dict[str, Any] = {}
            for item in node.body:
                _assign(item, members)
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    for statement in ast.walk(item):
                        _assign(statement, members, attribute_of="self")
            out[node.name] = members
        else:
            _assign(node, out)
    return out


def _assign(node: ast.AST, into: dict[str, Any], *, attribute_of: str | None = None) -> None:
    """Record ``name = literal`` (or ``self.name = literal`` when ``attribute_of`` is "self")."""
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets, value = [node.target], node.value
    else:
        return
    try:
        literal = _plain(ast.literal_eval(value))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return
    for target in targets:
        if attribute_of is None and isinstance(target, ast.Name):
            into[target.id] = literal
        elif (
            attribute_of is not None
            and isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == attribute_of
        ):
            into[target.attr] = literal


_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """A literal as YAML and JSON can hold it (tuples and sets become lists); ValueError for
    what they cannot (``1j``, ``b"..."``, a tuple as a key): such an assignment is no parameter,
    and it would stop pipeline.lock or a run record from being written."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, _SCALARS) for key in value):
            raise ValueError("a key that is not a scalar")
        return {key: _plain(item) for key, item in value.items()}
    raise ValueError(f"{type(value).__name__} is not a parameter value")
