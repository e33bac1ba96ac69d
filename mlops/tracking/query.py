"""Filtering and sorting run summaries: ``mlops runs list --filter ... --sort ...``.

Filter grammar (keywords are case-insensitive)::

    expr        := or_expr
    or_expr     := and_expr ("or" and_expr)*
    and_expr    := not_expr ("and" not_expr)*
    not_expr    := "not" not_expr | primary
    primary     := "(" expr ")" | comparison
    comparison  := field op literal | literal op field
    field       := ("params" | "metrics" | "attributes") "." key | attribute
    key         := name ("." name)*  |  `any text`        (a key with dots, as nested files flatten)
    op          := "=" | "==" | "!=" | "<" | "<=" | ">" | ">="
    literal     := number | 'text' | "text" | true | false | null

``param.``/``metric.``/``attribute.``/``attr.`` are accepted as prefixes too, and a bare
attribute name (``status``, ``name``, ``id``, ...) means ``attributes.<name>``.

A run that lacks the field never matches (not even ``!=``). Numbers compare as numbers
(a param logged as the text "8" counts as 8); text compares as text; ordering a number
against text is false.

Sort syntax: ``--sort KEY[,KEY...]``, each KEY a field as above, ascending; a ``-`` prefix
sorts that key descending (``--sort=-metrics.test_accuracy``). Runs that lack a key come
last either way. Without ``--sort``, runs are listed newest first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

ATTRIBUTES = (
    "id",
    "name",
    "status",
    "user",
    "host",
    "git_commit",
    "git_dirty",
    "source",
    "start_time",
    "end_time",
    "duration",
    "parent_id",
)
PREFIXES = {
    "params": "params",
    "param": "params",
    "metrics": "metrics",
    "metric": "metrics",
    "attributes": "attributes",
    "attribute": "attributes",
    "attr": "attributes",
    "tags": "tags",
    "tag": "tags",
}
OPS = ("==", "!=", "<=", ">=", "=", "<", ">")
KEYWORDS = {"and", "or", "not"}
LITERAL_WORDS = {"true": True, "false": False, "null": None, "none": None}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<op>==|!=|<=|>=|=|<|>)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<field>[A-Za-z_][\w\-]*(?:\.(?:`[^`]*`|[\w\-/]+))*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


@dataclass(frozen=True)
class Field:
    kind: str  # params | metrics | attributes
    key: str

    def __str__(self) -> str:
        return f"{self.kind}.{self.key}"


HINTS = {
    "--filter": 'e.g. "params.max_depth >= 8 and metrics.test_accuracy > 0.9" (see docs/tracking.md)',
    "--sort": "e.g. --sort=-metrics.test_accuracy,params.max_depth (see docs/tracking.md)",
    "--columns": "e.g. --columns params.train.max_depth,metrics.test_accuracy,status (see docs/tracking.md)",
}


def _bad(text: str, pos: int, reason: str, *, flag: str = "--filter") -> UsageError:
    pointer = " " * pos + "^"
    return UsageError(f"bad {flag} at column {pos + 1}: {reason}\n    {text}\n    {pointer}", hint=HINTS[flag])


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            char = text[pos]
            if char in "'\"":
                raise _bad(text, pos, "text that opens a quote never closes it")
            raise _bad(text, pos, f"unexpected character {char!r}")
        kind = match.lastgroup or ""
        if kind != "ws":
            value = match.group()
            if kind == "field" and value.lower() in KEYWORDS:
                kind = value.lower()
            elif kind == "field" and value.lower() in LITERAL_WORDS:
                kind = "word"
            tokens.append(Token(kind, value, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def parse_field(text: str, pos: int = 0, *, source: str | None = None, flag: str = "--filter") -> Field:
    head, dot, rest = text.partition(".")
    kind = PREFIXES.get(head.lower())
    if kind and dot and rest:
        key = rest
        if key.startswith("`") and key.endswith("`") and len(key) >= 2:
            key = key[1:-1]
        else:
            key = ".".join(
                part[1:-1] if part.startswith("`") and part.endswith("`") else part for part in key.split(".")
            )
        if kind == "attributes" and key not in ATTRIBUTES:
            raise _bad(
                source or text, pos, f"unknown attribute '{key}' (attributes: {', '.join(ATTRIBUTES)})", flag=flag
            )
        return Field(kind, key)
    if not dot and text in ATTRIBUTES:
        return Field("attributes", text)
    raise _bad(
        source or text, pos, f"unknown field '{text}': write params.NAME, metrics.NAME or attributes.NAME", flag=flag
    )


# --- parsing ---------------------------------------------------------------------------------

Predicate = Callable[[dict[str, Any]], bool]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, reason: str, token: Token | None = None) -> UsageError:
        token = token or self.token
        return _bad(self.text, token.pos, reason)

    def parse(self) -> Predicate:
        if self.token.kind == "end":
            raise self.fail("empty filter")
        predicate = self.or_expr()
        if self.token.kind != "end":
            raise self.fail(f"expected 'and', 'or' or the end, found '{self.token.text}'")
        return predicate

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.token.kind == "or":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda run: any(p(run) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.token.kind == "and":
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else (lambda run: all(p(run) for p in parts))

    def not_expr(self) -> Predicate:
        if self.token.kind == "not":
            self.take()
            inner = self.not_expr()
            return lambda run: not inner(run)
        return self.primary()

    def primary(self) -> Predicate:
        token = self.token
        if token.kind == "lparen":
            self.take()
            if self.token.kind == "rparen":
                raise self.fail("empty parentheses")
            inner = self.or_expr()
            if self.token.kind != "rparen":
                raise self.fail(f"expected ')' to close the '(' at column {token.pos + 1}")
            self.take()
            return inner
        if token.kind == "field":
            field = parse_field(self.take().text, token.pos, source=self.text)
            op = self.operator()
            value = self.literal()
            return _compare(field, op, value)
        if token.kind in ("number", "string", "word"):
            value = self.literal()
            op = self.operator()
            if self.token.kind != "field":
                raise self.fail("expected a field (params.X, metrics.X or attributes.X)")
            field_token = self.take()
            field = parse_field(field_token.text, field_token.pos, source=self.text)
            return _compare(field, _FLIP[op], value)
        if token.kind == "end":
            raise self.fail("the filter ends too early: expected a comparison")
        raise self.fail(f"expected a comparison such as metrics.accuracy > 0.9, found '{token.text}'")

    def operator(self) -> str:
        token = self.token
        if token.kind != "op":
            shown = f"'{token.text}'" if token.text else "the end"
            raise self.fail(f"expected an operator (=, !=, <, <=, >, >=), found {shown}")
        self.take()
        return "==" if token.text == "=" else token.text

    def literal(self) -> Any:
        token = self.token
        if token.kind == "number":
            self.take()
            text = token.text
            return int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)
        if token.kind == "string":
            self.take()
            body = token.text[1:-1]
            return re.sub(r"\\(.)", r"\1", body)
        if token.kind == "word":
            self.take()
            return LITERAL_WORDS[token.text.lower()]
        shown = f"'{token.text}'" if token.text else "the end"
        raise self.fail(f"expected a number or a quoted text, found {shown}")


_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_MISSING = object()


def field_value(run: dict[str, Any], field: Field) -> Any:
    if field.kind == "attributes":
        if field.key == "duration":
            start, end = run.get("start_time"), run.get("end_time")
            return end - start if isinstance(start, (int, float)) and isinstance(end, (int, float)) else _MISSING
        return run.get(field.key, _MISSING)
    return (run.get(field.kind) or {}).get(field.key, _MISSING)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def compare_values(left: Any, op: str, right: Any) -> bool:
    if left is _MISSING:
        return False
    if right is None or left is None or isinstance(right, bool) or isinstance(left, bool):
        if op == "==":
            return left == right
        if op == "!=":
            return left != right
        return False
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        pair: tuple[Any, Any] = (a, b)
    elif isinstance(right, str):
        pair = (str(left), right)
    else:
        return False
    x, y = pair
    return {"==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def _compare(field: Field, op: str, value: Any) -> Predicate:
    return lambda run: compare_values(field_value(run, field), op, value)


def parse_filter(text: str) -> Predicate:
    """A predicate over run summaries; a filter that does not parse raises UsageError with a caret."""
    return _Parser(text).parse()


# --- sorting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    field: Field
    descending: bool


def _fields(text: str, flag: str, empty: str) -> list[tuple[str, int]]:
    """The comma-separated items of ``text`` with the column each starts at (for the caret)."""
    items = []
    offset = 0
    for part in text.split(","):
        stripped = part.strip()
        pos = offset + (len(part) - len(part.lstrip()))
        offset += len(part) + 1
        if not stripped:
            raise _bad(text, pos, empty, flag=flag)
        items.append((stripped, pos))
    return items


def parse_sort(text: str) -> list[SortKey]:
    keys = []
    for stripped, pos in _fields(text, "--sort", "empty sort key"):
        descending = stripped.startswith("-")
        name = stripped.lstrip("-+").strip()
        keys.append(
            SortKey(parse_field(name, pos + (len(stripped) - len(name)), source=text, flag="--sort"), descending)
        )
    return keys


def parse_columns(text: str) -> list[Field]:
    """``runs list --columns``: fields as a filter names them (``params.train.max_depth``,
    ``metrics.test_accuracy``, ``status``), comma-separated, each once, in the order given."""
    fields = [
        parse_field(name, pos, source=text, flag="--columns")
        for name, pos in _fields(text, "--columns", "empty column")
    ]
    return list(dict.fromkeys(fields))


def varying_keys(runs: Sequence[dict[str, Any]], kind: str) -> list[str]:
    """The ``params`` or ``metrics`` keys, sorted, whose value is not the same in every run (a
    key some runs lack varies); with fewer than two runs, every key: nothing to compare with."""
    keys = sorted({key for run in runs for key in (run.get(kind) or {})})
    if len(runs) < 2:
        return keys

    def value(run: dict[str, Any], key: str) -> str:
        values = run.get(kind) or {}
        # by JSON text: 8 and "8" are shown differently, so they differ; a missing key differs from null
        return json.dumps(values[key], sort_keys=True, default=str) if key in values else "<missing>"

    return [key for key in keys if len({value(run, key) for run in runs}) > 1]


def _rank(value: Any) -> tuple[int, Any]:
    number = _number(value) if not isinstance(value, str) else None
    if number is not None:
        return (0, number)
    if isinstance(value, bool):
        return (0, float(value))
    return (1, str(value))


def sort_runs(runs: Sequence[dict[str, Any]], keys: Sequence[SortKey]) -> list[dict[str, Any]]:
    """Stable multi-key sort; runs that lack a key come last for that key."""
    out = list(runs)
    for key in reversed(keys):
        present = [r for r in out if field_value(r, key.field) not in (_MISSING, None)]
        missing = [r for r in out if field_value(r, key.field) in (_MISSING, None)]
        present.sort(key=lambda r: _rank(field_value(r, key.field)), reverse=key.descending)
        out = present + missing
    return out


def newest_first(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(runs, key=lambda r: (r.get("start_time") or 0, r.get("id") or ""), reverse=True)


def select(
    runs: Sequence[dict[str, Any]], *, filter: str | None = None, sort: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Filter, then sort, then keep the first ``limit`` runs."""
    predicate = parse_filter(filter) if filter else None
    keys = parse_sort(sort) if sort else None
    chosen = [r for r in runs if predicate(r)] if predicate else list(runs)
    chosen = sort_runs(newest_first(chosen), keys) if keys else newest_first(chosen)
    return chosen[:limit] if limit is not None and limit > 0 else chosen
