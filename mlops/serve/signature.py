"""Input checks against a model's signature, with every problem listed.

A signature is what the registry records for a version::

    {"inputs": [{"name": "tenure", "dtype": "int64"}, {"name": "plan", "dtype": "str"}, ...],
     "outputs": [{"name": "churned", "dtype": "int64"}]}

Dtypes are pandas' names; they fold into a few kinds that JSON can carry:

| dtype                                   | kind     | JSON accepted                                  |
|-----------------------------------------|----------|------------------------------------------------|
| int8..int64, uint8..uint64, Int64, ...  | integer  | a whole number within int64 (3, or 3.0); not true/false |
| float16..float64, Float64, double       | number   | a finite number within float64; null (NaN)     |
| bool, boolean                           | boolean  | true/false                                     |
| str, string, object, category           | string   | a string                                       |
| datetime64[...], timestamp              | datetime | an ISO 8601 string                             |
| anything else                           | any      | anything                                       |

Null is refused except in number columns (pandas keeps missing floats as NaN, so a float
column may have held them in training) and in columns marked ``"nullable": true``.
A column's values are checked in full, but each problem is reported once per column with
the first offending row and how many rows share it, so a 10,000-row request with one bad
column gives one line, not 10,000.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

INTEGER, NUMBER, BOOLEAN, STRING, DATETIME, ANY = "integer", "number", "boolean", "string", "datetime", "any"

#: the Open Inference Protocol datatype answered for each kind
V2_DATATYPE = {INTEGER: "INT64", NUMBER: "FP64", BOOLEAN: "BOOL", STRING: "BYTES", DATETIME: "BYTES", ANY: "BYTES"}

MAX_PROBLEMS = 20  # a response lists at most this many problems (and says how many more)


def dtype_kind(dtype: Any) -> str:
    text = str(dtype or "").strip().lower()
    if text.startswith(("int", "uint")) or text in ("long", "integer"):
        return INTEGER
    if text.startswith(("float", "double")) or text in ("number",):
        return NUMBER
    if text in ("bool", "boolean"):
        return BOOLEAN
    if text in ("str", "string", "object", "category", "unicode") or text.startswith("string["):
        return STRING
    if text.startswith(("datetime64", "timestamp")) or text in ("datetime", "date"):
        return DATETIME
    return ANY


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    kind: str
    nullable: bool

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype}
        if self.nullable and self.kind != NUMBER:
            out["nullable"] = True
        return out


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Column, ...]
    outputs: tuple[Column, ...]
    #: a feature service (features.yaml) whose features callers need not send: serve looks them up
    feature_service: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Signature | None:
        """The signature as the registry records it; None (no checks) when there is none."""
        if not data or not isinstance(data, Mapping):
            return None
        service = data.get("feature_service")
        return cls(
            inputs=_columns(data.get("inputs")),
            outputs=_columns(data.get("outputs")),
            feature_service=service if isinstance(service, str) else "",
        )

    def to_dict(self) -> dict[str, Any]:
        out = {"inputs": [c.to_dict() for c in self.inputs], "outputs": [c.to_dict() for c in self.outputs]}
        if self.feature_service:
            out["feature_service"] = self.feature_service
        return out

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.inputs)

    @property
    def output_name(self) -> str:
        return self.outputs[0].name if self.outputs else "predict"

    def column(self, name: str) -> Column | None:
        for column in self.inputs:
            if column.name == name:
                return column
        return None

    def check(self, columns: Mapping[str, Sequence[Any]], rows: int, *, ignore: Sequence[str] = ()) -> list[str]:
        """Every problem of ``columns`` (name -> values, ``rows`` long) against this signature."""
        problems: list[str] = []
        expected = self.names
        for name in expected:
            if name not in columns:
                problems.append(f"missing column '{name}' ({self.column(name).dtype})")  # type: ignore[union-attr]
        for name in columns:
            if name not in expected and name not in ignore:
                problems.append(f"unexpected column '{name}' (the model takes: {', '.join(expected)})")
        for column in self.inputs:
            values = columns.get(column.name)
            if values is None:
                continue
            problems.extend(check_values(column, values, rows))
        return problems


def _columns(items: Any) -> tuple[Column, ...]:
    out = []
    for item in items or ():
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            dtype = str(item.get("dtype") or item.get("type") or "any")
            kind = dtype_kind(dtype)
            nullable = bool(item.get("nullable") or item.get("optional")) or kind == NUMBER
            out.append(Column(item["name"], dtype, kind, nullable))
    return tuple(out)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _ok_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def _ok_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ok_datetime(value: Any) -> bool:
    # ISO week dates (2024-W01-1) read in Python but not in pandas, which builds the model's frame
    if not isinstance(value, str) or "W" in value:
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return False
    return True


def _in_int64(value: Any) -> bool:
    # JSON numbers are unbounded (1e23, a 400-digit integer, 1e300 as a float): the model's frame is int64
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    return INT64_MIN <= value < 2.0**63


def _in_float64(value: Any) -> bool:
    # 1e400 reads as inf in Python's JSON parser; an integer past ~1.8e308 has no float64
    if isinstance(value, float):
        return math.isfinite(value)
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


_CHECKS = {
    INTEGER: (_ok_integer, "a whole number"),
    NUMBER: (_ok_number, "a number"),
    BOOLEAN: (lambda v: isinstance(v, bool), "true or false"),
    STRING: (lambda v: isinstance(v, str), "a string"),
    DATETIME: (_ok_datetime, "an ISO 8601 date-time string"),
}
#: values of the right JSON type that the model's frame still cannot hold
_RANGES = {
    INTEGER: (_in_int64, "beyond int64's range (-9223372036854775808 to 9223372036854775807)"),
    NUMBER: (_in_float64, "not a finite float64 number"),
}


def check_values(column: Column, values: Sequence[Any], rows: int) -> list[str]:
    problems = []
    if len(values) != rows:
        problems.append(f"column '{column.name}' has {len(values)} value(s), the other columns {rows}")
    nulls = [i for i, v in enumerate(values) if v is None]
    if nulls and not column.nullable:
        more = f" (and {len(nulls) - 1} more row(s))" if len(nulls) > 1 else ""
        problems.append(
            f"column '{column.name}' ({column.dtype}): null at row {nulls[0]}{more}; the model needs a value"
        )
    check = _CHECKS.get(column.kind)
    if check is None:
        return problems
    ok, wanted = check
    wrong = wrong_values_problem(
        f"column '{column.name}' ({column.dtype})", values, lambda v: v is not None and not ok(v), wanted
    )
    if wrong:
        problems.append(wrong)
    bounds = _RANGES.get(column.kind)
    if bounds is not None:
        in_range, why = bounds
        outside = [i for i, v in enumerate(values) if v is not None and ok(v) and not in_range(v)]
        if outside:
            more = f" (and {len(outside) - 1} more row(s))" if len(outside) > 1 else ""
            problems.append(
                f"column '{column.name}' ({column.dtype}): "
                f"row {outside[0]} is {_short(values[outside[0]])}, {why}{more}"
            )
    return problems


def wrong_values_problem(label: str, values: Sequence[Any], is_wrong: Any, wanted: str) -> str | None:
    """One problem for a column's values that ``is_wrong``: the first such row and how many share it."""
    rows = [i for i, v in enumerate(values) if is_wrong(v)]
    if not rows:
        return None
    more = f" (and {len(rows) - 1} more row(s))" if len(rows) > 1 else ""
    return f"{label}: row {rows[0]} is {describe_value(values[rows[0]])}, expected {wanted}{more}"


def describe_value(value: Any) -> str:
    """A value as the problems name it: its JSON type and a short repr (``string 'a'``)."""
    return f"{_json_type(value)} {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def limit_problems(problems: list[str], limit: int = MAX_PROBLEMS) -> list[str]:
    if len(problems) <= limit:
        return problems
    return [*problems[:limit], f"... and {len(problems) - limit} more problem(s)"]


# --- conversion ----------------------------------------------------------------------------------


def to_frame(columns: Mapping[str, Sequence[Any]], signature: Signature | None) -> Any:
    """A pandas DataFrame of checked columns, in the signature's order and dtypes."""
    import numpy as np
    import pandas as pd

    if signature is None or not signature.inputs:
        return pd.DataFrame({name: list(values) for name, values in columns.items()})
    data: dict[str, Any] = {}
    for column in signature.inputs:
        values = columns[column.name]
        if column.kind == INTEGER and None not in values:
            data[column.name] = np.array(values, dtype=np.int64)
        elif column.kind == NUMBER:
            data[column.name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        elif column.kind == BOOLEAN and None not in values:
            data[column.name] = np.array(values, dtype=bool)
        elif column.kind == DATETIME:
            data[column.name] = pd.to_datetime(list(values), utc=True, format="ISO8601")
        else:
            data[column.name] = list(values)
    return pd.DataFrame(data)


def arrow_type(kind: str) -> Any:
    """The Arrow type a request log stores a column of this kind as (None: let Arrow infer)."""
    import pyarrow as pa

    return {
        INTEGER: pa.int64(),
        NUMBER: pa.float64(),
        BOOLEAN: pa.bool_(),
        STRING: pa.string(),
        DATETIME: pa.timestamp("us", tz="UTC"),
    }.get(kind)


def convert_text(column: Column, text: str) -> tuple[Any, bool]:
    """A CSV cell as the column's kind: (value, ok). An empty cell is null."""
    if text == "":
        return None, True
    try:
        if column.kind == INTEGER:
            try:
                return int(text), True
            except ValueError:
                # pandas writes an integer column that has a missing value as floats: "3.0"
                number = float(text)
                return (int(number), True) if number.is_integer() else (text, False)
        if column.kind == NUMBER:
            number = float(text)
            return (None if math.isnan(number) else number), True  # "nan" is a missing value, as in pandas
        if column.kind == BOOLEAN:
            lowered = text.strip().lower()
            if lowered in ("true", "1"):
                return True, True
            if lowered in ("false", "0"):
                return False, True
            return text, False
    except ValueError:
        return text, False
    return text, True


def guess_text(text: str) -> Any:
    """A CSV cell without a signature: a number when it reads as one, else the string."""
    if text == "":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
