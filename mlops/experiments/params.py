"""What ``-S`` says: parameter changes, and the grid or random sample a sweep runs.

``-S [FILE:]KEY=VALUE``: KEY a dotted key of FILE (``params.yaml`` by default) that exists there;
VALUE a YAML scalar (``0.2``, ``true``, ``adam``), a comma list (``0.01,0.1,1``: one
experiment per value) or ``range(start,stop[,step])`` (integers, or numbers with a decimal
point, stop excluded, as Python's ``range``). Several ``-S`` make a grid (their product);
``--random N`` takes N points of that grid, drawn with ``--seed``.

Only YAML and JSON params files are changed (TOML and Python files are read by the pipeline but
not rewritten here): the file is parsed, the value set, and the file written again in the
experiment's own workspace, never in the user's.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..formats import dump_yaml, parse_params, parse_yaml, read_text
from ..paths import check_readable, relpath_problem

DEFAULT_PARAMS = "params.yaml"
MAX_POINTS = 10_000  # experiments one sweep may plan: far above any real grid, bounds a typo like range(0,10**9)
MAX_SET_TEXT = 4096
RANGE = re.compile(r"range\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*(?:,\s*([^,()]+?)\s*)?\)")
KEY = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")
EDITABLE = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class ParamSweep:
    """One ``-S``: a key of a params file and the values it takes."""

    file: str
    key: str
    values: tuple[Any, ...]

    @property
    def label(self) -> str:
        return self.key if self.file == DEFAULT_PARAMS else f"{self.file}:{self.key}"


def parse_set(text: str) -> ParamSweep:
    """``[FILE:]KEY=VALUE`` with VALUE a scalar, a comma list or ``range(...)``."""
    if len(text) > MAX_SET_TEXT or "=" not in text:
        raise UsageError(f"-S {text[:60]!r}: expected [FILE:]KEY=VALUE", hint="for example -S train.lr=0.1")
    target, _, raw = text.partition("=")
    file, _, key = target.rpartition(":")
    file = file or DEFAULT_PARAMS
    if not KEY.fullmatch(key):
        raise UsageError(f"-S {text[:60]!r}: {key!r} is not a dotted key", hint="for example -S train.lr=0.1")
    problem = relpath_problem(file)
    if problem:
        raise UsageError(f"-S {text[:60]!r}: params file {file!r} refused: {problem}")
    if not file.endswith(EDITABLE):
        raise UsageError(
            f"-S {text[:60]!r}: {file} is not a YAML or JSON file", hint="experiments change YAML and JSON params"
        )
    return ParamSweep(file, key, _values(raw.strip(), text))


def _values(raw: str, text: str) -> tuple[Any, ...]:
    found = RANGE.fullmatch(raw)
    if found:
        numbers = [_number(part, text) for part in found.groups() if part is not None]
        start, stop = numbers[0], numbers[1]
        step = numbers[2] if len(numbers) == 3 else 1
        if step == 0:
            raise UsageError(f"-S {text[:60]!r}: range step must not be 0")
        count = int(-(-(stop - start) // step)) if (stop - start) * step > 0 else 0
        if count > MAX_POINTS:
            raise UsageError(f"-S {text[:60]!r}: {count} values, more than {MAX_POINTS}")
        values = [start + i * step for i in range(count)]
        if all(isinstance(n, int) for n in numbers):
            return tuple(values)
        return tuple(round(v, 12) for v in values)
    if raw.startswith("range("):
        raise UsageError(f"-S {text[:60]!r}: expected range(start,stop) or range(start,stop,step)")
    parts = [p.strip() for p in raw.split(",")] if "," in raw and not raw.startswith(("[", "{")) else [raw]
    if len(parts) > MAX_POINTS:
        raise UsageError(f"-S {text[:60]!r}: more than {MAX_POINTS} values")
    return tuple(_scalar(part, text) for part in parts)


def _number(part: str, text: str) -> int | float:
    try:
        return int(part)
    except ValueError:
        pass
    try:
        return float(part)
    except ValueError:
        raise UsageError(f"-S {text[:60]!r}: {part!r} is not a number") from None


def _scalar(part: str, text: str) -> Any:
    if part == "":
        return ""
    value = parse_yaml(part, f"-S {text[:60]}")
    return value


Point = tuple[tuple[ParamSweep, Any], ...]  # one experiment: each -S with one of its values


def plan_points(sweeps: Sequence[ParamSweep], *, random_n: int | None = None, seed: int | None = None) -> list[Point]:
    """The grid of ``sweeps`` (their product, in order), or ``random_n`` distinct points of it."""
    labels = [s.label for s in sweeps]
    if len(set(labels)) != len(labels):
        raise UsageError("the same key is set twice with -S", hint="give each key one -S (a comma list sweeps it)")
    size = 1
    for sweep in sweeps:
        size *= len(sweep.values)
    if random_n is None and size > MAX_POINTS:
        raise UsageError(f"the grid has {size} points, more than {MAX_POINTS}", hint="use --random N to sample it")
    if random_n is not None:
        if random_n < 1:
            raise UsageError("--random needs a count of 1 or more")
        chooser = random.Random(seed)
        picked = sorted(chooser.sample(range(size), min(random_n, size)))
        return [_point_at(sweeps, index) for index in picked]
    return [tuple(zip(sweeps, combo, strict=True)) for combo in itertools.product(*(s.values for s in sweeps))]


def _point_at(sweeps: Sequence[ParamSweep], index: int) -> Point:
    chosen = []
    for sweep in reversed(sweeps):
        index, at = divmod(index, len(sweep.values))
        chosen.append((sweep, sweep.values[at]))
    return tuple(reversed(chosen))


def changes_of(point: Point) -> dict[str, Any]:
    """``{"train.lr": 0.1, "other.yaml:a.b": 2}``: what an experiment changed, as recorded."""
    return {sweep.label: value for sweep, value in point}


def split_label(label: str) -> tuple[str, str]:
    file, _, key = label.rpartition(":")
    return file or DEFAULT_PARAMS, key


def apply_changes(root: Path, changes: dict[str, Any]) -> list[str]:
    """Set each changed key in its params file under ``root`` (an experiment's workspace);
    returns the files written. A key the file does not have is a usage error (a typo would
    otherwise run an experiment that changes nothing)."""
    by_file: dict[str, dict[str, Any]] = {}
    for label, value in changes.items():
        file, key = split_label(label)
        by_file.setdefault(file, {})[key] = value
    written = []
    for file, values in by_file.items():
        path = check_readable(root, file, where="a params file")
        if not path.is_file():
            raise UsageError(f"-S: params file {file} does not exist", hint="name a params file of the pipeline")
        data = parse_params(read_text(path, what="params file"), file, file)
        for key, value in values.items():
            _set(data, key, value, file)
        if file.endswith(".json"):
            text = json.dumps(data, indent=2) + "\n"
        else:
            text = dump_yaml(data)
        path.write_text(text, encoding="utf-8")
        written.append(file)
    return written


def _set(data: Any, key: str, value: Any, file: str) -> None:
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, dict) and part in node:
            if last:
                node[part] = value
                return
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            if last:
                node[int(part)] = value
                return
            node = node[int(part)]
        else:
            raise UsageError(
                f"-S {key}: {file} has no key {'.'.join(parts[: depth + 1])}",
                hint=f"experiments change keys {file} has; check the spelling",
            )
