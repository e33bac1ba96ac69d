"""Data schemas: inferred from data into YAML a person edits, then used to validate new data.

```yaml
format: 1
extra_columns: warn        # allow | warn | error: columns the schema does not list
columns:
  tenure:
    type: integer          # integer | float | boolean | string | datetime | any
    nullable: false        # false: no missing values (null, and NaN in float columns)
    min: 1                 # numeric and datetime columns: the observed range
    max: 72
  plan:
    type: string
    nullable: false
    allowed: [basic, premium, standard]   # strings with at most 50 distinct values
  customer_id:
    type: integer
    nullable: false
    unique: true           # integer and string columns whose values were all distinct
```

Validation streams the data in record batches (only the schema's columns are read) and
reports every violation as column, rule, count of offending rows and up to five examples.
Rules: ``present`` (a listed column is missing), ``type``, ``nullable``, ``min``, ``max``
(infinite values are out of any range), ``allowed``, ``unique``, and ``extra_columns``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..formats import check_format, display_path, dump_yaml, load_yaml
from .io import Source, family

SCHEMA_FORMAT = 1
TYPES = ("integer", "float", "boolean", "string", "datetime", "any")
ALLOWED_MAX = 50  # strings with at most this many distinct values get an `allowed` list
EXAMPLES = 5
EXTRA = ("allow", "warn", "error")
COLUMN_KEYS = {"type", "nullable", "min", "max", "allowed", "unique", "description"}


def _type_name(fam: str) -> str:
    return {
        "integer": "integer",
        "float": "float",
        "boolean": "boolean",
        "string": "string",
        "datetime": "datetime",
    }.get(fam, "any")


def _scalar(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


def infer_schema(source: Source) -> dict[str, Any]:
    """A schema from the data: types, nullability, ranges, allowed categories, uniqueness."""
    import pyarrow.compute as pc

    names = source.columns
    source.want(names)
    columns: dict[str, Any] = {}
    for name in names:
        array = source.column(name)
        fam = family(array.type)
        entry: dict[str, Any] = {"type": _type_name(fam)}
        missing = array.null_count
        if fam == "float":
            missing += int(pc.sum(pc.is_nan(array)).as_py() or 0)
        entry["nullable"] = missing > 0
        valid = len(array) - missing
        if fam in ("integer", "float", "datetime") and valid:
            values = array
            if fam == "float":
                values = pc.filter(array, pc.invert(pc.is_nan(array)))
            bounds = pc.min_max(values)
            lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
            entry["min"], entry["max"] = _scalar(lo), _scalar(hi)
        if fam in ("string", "integer") and valid:
            distinct = len(pc.unique(array.drop_null() if hasattr(array, "drop_null") else pc.drop_null(array)))
            if fam == "string" and distinct <= ALLOWED_MAX and distinct < valid:
                entry["allowed"] = sorted(pc.unique(pc.drop_null(array)).to_pylist())
            if distinct == valid and valid > 1 and not (fam == "string" and "allowed" in entry):
                entry["unique"] = True
        if fam == "null":
            entry = {"type": "any", "nullable": True}
        columns[name] = entry
        source.release(name)
        del array
    return {
        "format": SCHEMA_FORMAT,
        "inferred_from": source.describe()["files"] or [source.described],
        "rows": source.rows,
        "extra_columns": "warn",
        "columns": columns,
    }


def schema_yaml(schema: dict[str, Any]) -> str:
    header = (
        "# mlops data schema: inferred from data; edit it freely (docs/drift.md, 'Schemas').\n"
        "# types: integer, float, boolean, string, datetime, any; rules: nullable, min, max, allowed, unique.\n"
        "# extra_columns: allow | warn | error (columns the schema does not list).\n"
    )
    return header + dump_yaml(schema)


def load_schema(path: str | Path) -> dict[str, Any]:
    source = display_path(path)
    if not Path(path).is_file():
        raise ConfigError(f"{source}: no such schema file", hint="mlops schema infer DATA > schema.yaml", file=source)
    data = check_format(load_yaml(path), source, supported=SCHEMA_FORMAT, kind="schema")
    columns = data.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise ConfigError(f"{source}: 'columns' must map column names to rules", file=source)
    if data.get("extra_columns", "warn") not in EXTRA:
        raise ConfigError(f"{source}: extra_columns must be one of {', '.join(EXTRA)}", file=source)
    for name, rules in columns.items():
        where = f"{source}: columns.{name}"
        if rules is None:
            columns[name] = rules = {}
        if not isinstance(rules, dict):
            raise ConfigError(f"{where} must be a mapping of rules", file=source)
        unknown = set(rules) - COLUMN_KEYS
        if unknown:
            raise ConfigError(
                f"{where}: unknown rule '{sorted(unknown)[0]}'",
                hint="rules: " + ", ".join(sorted(COLUMN_KEYS)),
                file=source,
            )
        if rules.get("type", "any") not in TYPES:
            raise ConfigError(
                f"{where}.type must be one of {', '.join(TYPES)}, found {rules.get('type')!r}", file=source
            )
        if "allowed" in rules and not isinstance(rules["allowed"], list):
            raise ConfigError(f"{where}.allowed must be a list", file=source)
        for key in ("nullable", "unique"):
            if key in rules and not isinstance(rules[key], bool):
                raise ConfigError(f"{where}.{key} must be true or false", file=source)
    return data


@dataclass
class Violation:
    column: str
    rule: str
    count: int
    message: str
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "rule": self.rule,
            "count": self.count,
            "message": self.message,
            "examples": self.examples,
        }


@dataclass(frozen=True)
class ValidationReport:
    source: dict[str, Any]
    rows: int
    violations: tuple[Violation, ...]
    warnings: tuple[str, ...]
    checked_columns: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "source": self.source,
            "checked_columns": list(self.checked_columns),
            "violations": [v.to_dict() for v in self.violations],
            "warnings": list(self.warnings),
        }


class _Tally:
    """Counts and a few examples of one column's violations of one rule."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def add(self, count: int, examples: list[str]) -> None:
        self.count += count
        for e in examples:
            if len(self.examples) < EXAMPLES:
                self.examples.append(e)


def _rows_where(mask: Any, file: str, offset: int, values: Any = None, limit: int = EXAMPLES) -> tuple[int, list[str]]:
    """How many rows a boolean mask marks, and examples 'file row N' (N 1-based within the file) with the value."""
    import numpy as np
    import pyarrow.compute as pc

    flags = (
        mask
        if isinstance(mask, np.ndarray)
        else np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)
    )
    where = np.flatnonzero(flags)
    examples = []
    for i in where[:limit]:
        shown = f"{file} row {offset + int(i) + 1}"
        if values is not None:
            shown += f": {values[int(i)].as_py()!r}"
        examples.append(shown)
    return len(where), examples


def _csv_type(declared: Any) -> Any:
    """The Arrow type a CSV column declared ``declared`` is read as (None: pyarrow's guess)."""
    import pyarrow as pa

    return {"string": pa.large_string(), "integer": pa.int64(), "float": pa.float64()}.get(declared)


def _type_ok(declared: str, actual: str) -> bool:
    if declared == "any" or actual == "null":
        return True
    if declared == "float":
        return actual in ("float", "integer")
    return declared == actual


def validate(source: Source, schema: dict[str, Any]) -> ValidationReport:
    """Check every row of ``source`` against ``schema``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    declared: dict[str, dict[str, Any]] = schema["columns"]
    present = [c for c in declared if c in source.columns]
    violations: list[Violation] = []
    warnings: list[str] = []
    for name in declared:
        if name not in source.columns:
            violations.append(Violation(name, "present", 1, f"column '{name}' is missing from the data"))
    extra = [c for c in source.columns if c not in declared]
    policy = schema.get("extra_columns", "warn")
    if extra and policy == "error":
        for name in extra:
            violations.append(
                Violation(name, "extra_columns", 1, f"column '{name}' is not in the schema (extra_columns: error)")
            )
    elif extra and policy == "warn":
        warnings.append(f"{len(extra)} column(s) not in the schema, not checked: {', '.join(extra[:10])}")
    tallies: dict[tuple[str, str], _Tally] = {}
    type_seen: dict[str, set[str]] = {}
    uniques: dict[str, list[Any]] = {}
    rows = 0

    def tally(column: str, rule: str) -> _Tally:
        return tallies.setdefault((column, rule), _Tally())

    # CSV columns are read as the schema declares them, not as pyarrow guesses from the values:
    # digit-only text (zip codes 02345) stays text with its leading zeros
    csv_types = {name: t for name in present if (t := _csv_type((declared[name] or {}).get("type"))) is not None}
    for file, offset, batch in source.iter_batches(present, csv_types=csv_types):
        rows += batch.num_rows
        for name in present:
            rules = declared[name] or {}
            array = batch.column(name)
            fam = family(array.type)
            want = rules.get("type", "any")
            if fam == "null":
                array = pa.nulls(len(array))
            type_seen.setdefault(name, set()).add(fam)
            missing = pc.is_null(array)
            if fam == "float":
                missing = pc.or_kleene(missing, pc.is_nan(array))
            if rules.get("nullable") is False:
                count, examples = _rows_where(missing, file, offset)
                if count:
                    tally(name, "nullable").add(count, examples)
            numeric = array
            if not _type_ok(want, fam):
                if want in ("integer", "float") and fam == "string":
                    parsed = _parse_numbers(array)
                    bad = pc.and_kleene(pc.is_valid(array), pc.is_null(parsed))
                    if want == "integer":
                        bad = pc.or_kleene(
                            bad, pc.and_kleene(pc.is_valid(parsed), pc.not_equal(parsed, pc.floor(parsed)))
                        )
                    count, examples = _rows_where(bad, file, offset, array)
                    if count:
                        tally(name, "type").add(count, examples)
                    numeric = parsed
                elif want == "integer" and fam == "float":
                    bad = pc.and_kleene(pc.invert(missing), pc.not_equal(array, pc.floor(array)))
                    count, examples = _rows_where(pc.fill_null(bad, False), file, offset, array)
                    if count:
                        tally(name, "type").add(count, examples)
                else:
                    valid = len(array) - array.null_count
                    if valid:
                        tally(name, "type").add(valid, [f"{file}: values are {fam}, the schema says {want}"])
                    continue
            nums = family(numeric.type) in ("integer", "float")
            for bound, op in (("min", pc.less), ("max", pc.greater)):
                if bound not in rules or rules[bound] is None:
                    continue
                limit = rules[bound]
                target = numeric
                if family(numeric.type) == "datetime":
                    try:
                        limit = pa.scalar(
                            dt.datetime.fromisoformat(str(limit))
                            if "T" in str(limit) or " " in str(limit)
                            else dt.date.fromisoformat(str(limit))
                        )
                        limit = pc.cast(limit, numeric.type)
                    except (ValueError, pa.ArrowException):
                        raise ConfigError(
                            f"schema: columns.{name}.{bound}: {rules[bound]!r} is not a date or time"
                        ) from None
                elif not nums:
                    continue
                out = pc.fill_null(op(target, limit), False)  # -inf is below any minimum, inf above any maximum
                count, examples = _rows_where(out, file, offset, target)
                if count:
                    tally(name, bound).add(count, examples)
            if "allowed" in rules and rules["allowed"] is not None:
                allowed = rules["allowed"]
                try:
                    value_set = pa.array(allowed).cast(array.type) if fam != "null" else None
                except (pa.ArrowException, TypeError):
                    value_set = pa.array([str(a) for a in allowed])
                    array = pc.cast(array, pa.string())
                if value_set is not None:
                    outside = pc.and_kleene(pc.is_valid(array), pc.invert(pc.is_in(array, value_set=value_set)))
                    outside = pc.fill_null(outside, False)
                    flags = np.asarray(outside.to_numpy(zero_copy_only=False), dtype=bool)
                    if flags.any():
                        bad_values = pc.filter(array, outside)
                        counts = pc.value_counts(bad_values)
                        examples = [
                            f"{v!r} ({c} rows)"
                            for v, c in zip(
                                counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
                            )
                        ][:EXAMPLES]
                        tally(name, "allowed").add(int(flags.sum()), examples)
            if rules.get("unique"):
                uniques.setdefault(name, []).append(
                    array.drop_null() if hasattr(array, "drop_null") else pc.drop_null(array)
                )
    for name, chunks in uniques.items():
        values = pa.chunked_array(chunks) if chunks else pa.chunked_array([], type=pa.null())
        counts = pc.value_counts(values)
        repeated = pc.greater(counts.field("counts"), 1)
        dup = pc.filter(counts, repeated)
        if len(dup):
            extra_rows = int(pc.sum(pc.subtract(dup.field("counts"), 1)).as_py())
            order = np.argsort(-dup.field("counts").to_numpy())[:EXAMPLES]
            vals, cnts = dup.field("values").to_pylist(), dup.field("counts").to_pylist()
            tally(name, "unique").add(extra_rows, [f"{vals[i]!r} ({cnts[i]} rows)" for i in order])
    rules_order = ("present", "type", "nullable", "min", "max", "allowed", "unique")
    for (name, rule), t in tallies.items():
        rules = declared[name] or {}
        message = {
            "type": f"values that are not {rules.get('type')}",
            "nullable": "missing values (the column is not nullable)",
            "min": f"values below the minimum {rules.get('min')!r}",
            "max": f"values above the maximum {rules.get('max')!r}",
            "allowed": f"values outside the {len(rules.get('allowed') or [])} allowed",
            "unique": "repeated values (the column is unique)",
        }[rule]
        violations.append(Violation(name, rule, t.count, message, t.examples))
    position = {n: i for i, n in enumerate(declared)}
    violations.sort(
        key=lambda v: (
            position.get(v.column, len(position)),
            rules_order.index(v.rule) if v.rule in rules_order else 99,
        )
    )
    return ValidationReport(source.describe(rows=rows), rows, tuple(violations), tuple(warnings), tuple(present))


# a number as a CSV writes one: not Python's float() syntax, which also takes "1_000", "nan", "infinity"
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _parse_numbers(array: Any) -> Any:
    """Text as float64 where it reads as a plain decimal number, null elsewhere."""
    import pyarrow as pa

    out = []
    for value in array.to_pylist():
        out.append(float(value) if isinstance(value, str) and _NUMBER.fullmatch(value) else None)
    return pa.array(out, type=pa.float64())
