"""Parameter files and dotted-key lookups into them.

A parameter file is read by its name (``formats.parse_params``): ``.json`` as JSON, ``.toml`` as
TOML, ``.py`` as Python (read, never run: see ``formats.parse_python``), anything else as YAML.
These are the formats DVC reads params from, so a DVC project's params files work as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..formats import display_path, parse_params, parse_python, read_text
from ..paths import check_readable

__all__ = ["MISSING", "ParamFiles", "flatten", "lookup", "parse_params", "parse_python"]

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
