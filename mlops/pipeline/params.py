"""Parameter files and dotted-key lookups into them.

A parameter file is read by its name: ``.json`` as JSON, ``.toml`` as TOML, ``.py`` as Python
(read, never run: see ``parse_python``), anything else as YAML. These are the formats DVC
reads params from, so a DVC project's params files work as they are.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..formats import check_depth, display_path, parse_json, parse_yaml, read_text
from ..paths import check_readable

MISSING = object()


class ParamFiles:
    """Parameter files read once per command, relative to the repo root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, Any] = {}

    def load(self, rel: str) -> Any:
        if rel not in self._cache:
            # its values are copied into pipeline.lock and pipeline.yaml: never read from outside
            path = check_readable(self.root, rel, where="a params file")
            if not path.is_file():
                self._cache[rel] = MISSING
            else:
                self._cache[rel] = parse_params(read_text(path, what="params file"), rel, display_path(path))
        return self._cache[rel]

    def exists(self, rel: str) -> bool:
        return self.load(rel) is not MISSING

    def value(self, rel: str, key: str) -> Any:
        """The value at a dotted key (``train.lr``), or MISSING."""
        return lookup(self.load(rel), key)


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


def lookup(data: Any, key: str) -> Any:
    node = data
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``: params compared key by key."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    return {prefix: value}
