"""What a column is, and which test it gets.

Column kinds (Evidently's ``infer_column_type``, decided on the reference data):

- float -> numeric; integer -> categorical with at most 10 distinct values, else numeric;
  boolean -> categorical;
- string -> categorical, or ``text`` (not tested: free text or identifiers) when more than
  half of its values are distinct and there are more than 50 of them;
- timestamps and dates -> ``datetime``, lists, structs, binary -> ``unsupported``: not tested.

The per-column choice (``choose``) is documented in docs/drift.md with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass

NUMERIC = "numeric"
CATEGORICAL = "categorical"
TEXT = "text"
DATETIME = "datetime"
UNSUPPORTED = "unsupported"
TESTED_KINDS = (NUMERIC, CATEGORICAL)

INTEGER_CATEGORIES = 10  # Evidently: an integer column with <= 10 distinct values is categorical
TEXT_SHARE = 0.5  # Evidently: more than half of the values distinct -> text
TEXT_MIN_DISTINCT = 50  # ours: so that a small table's categories are not mistaken for text
SMALL_REFERENCE = 1000  # Evidently: <= 1000 reference values -> p-value tests, else distances
FEW_VALUES = 5  # Evidently: a numeric column with <= 5 distinct values (both sides) is tested by its values


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    kinds: frozenset[str]
    p_value: bool
    default_threshold: float
    strict: bool = False  # p-value tests: drift when p < threshold (True) or p <= threshold (False)
    two_levels: bool = False  # the z-test compares two categories

    def rule(self, threshold: float) -> str:
        if self.p_value:
            return f"p {'<' if self.strict else '<='} {threshold:g}"
        return f"score >= {threshold:g}"

    def drifted(self, score: float, threshold: float) -> bool:
        if self.p_value:
            return score < threshold if self.strict else score <= threshold
        return score >= threshold


_BOTH = frozenset({NUMERIC, CATEGORICAL})
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        # names, titles, thresholds and comparisons as in Evidently's stattests
        Method("ks", "K-S p-value", frozenset({NUMERIC}), True, 0.05),
        Method("chisquare", "chi-square p-value", frozenset({CATEGORICAL}), True, 0.05, strict=True),
        Method("z", "Z-test p-value", frozenset({CATEGORICAL}), True, 0.05, strict=True, two_levels=True),
        Method("anderson", "Anderson-Darling p-value", frozenset({NUMERIC}), True, 0.1, strict=True),
        Method("wasserstein", "Wasserstein distance (normed)", frozenset({NUMERIC}), False, 0.1),
        Method("jensenshannon", "Jensen-Shannon distance", _BOTH, False, 0.1),
        Method("psi", "PSI", _BOTH, False, 0.1),
        Method("hellinger", "Hellinger distance", _BOTH, False, 0.1),
    )
}
ALIASES = {
    "kolmogorov-smirnov": "ks",
    "chi2": "chisquare",
    "chi-square": "chisquare",
    "ztest": "z",
    "z-test": "z",
    "ad": "anderson",
    "anderson-darling": "anderson",
    "wasserstein_distance": "wasserstein",
    "js": "jensenshannon",
    "jensen-shannon": "jensenshannon",
    "population-stability": "psi",
}
PRESETS = ("default", "strict")


def method_named(name: str) -> Method | None:
    key = name.strip().lower()
    return METHODS.get(ALIASES.get(key, key))


def detect_kind(family: str, distinct: int, values: int) -> str:
    """The kind of a column from its type family and its reference data (distinct and non-missing counts)."""
    if family == "float":
        return NUMERIC
    if family == "integer":
        return CATEGORICAL if distinct <= INTEGER_CATEGORIES else NUMERIC
    if family == "boolean":
        return CATEGORICAL
    if family == "string":
        return TEXT if distinct > TEXT_SHARE * values and distinct > TEXT_MIN_DISTINCT else CATEGORICAL
    if family == "datetime":
        return DATETIME
    return UNSUPPORTED


@dataclass(frozen=True)
class Choice:
    method: Method
    by_values: bool  # a numeric column tested through its value counts
    note: str | None = None


def auto(kind: str, n_ref: int, n_values: int, preset: str) -> Choice:
    """The preset's own choice.

    default (Evidently's): reference of at most 1000 values: numeric with more than 5 distinct
    values (both sides) -> ks; otherwise chisquare (3 or more values) or z (2 or fewer);
    larger reference: numeric with more than 5 distinct values -> wasserstein, otherwise
    jensenshannon.
    strict: numeric with more than 5 distinct values -> ks; otherwise chisquare or z; at any size.
    """
    few = kind == CATEGORICAL or n_values <= FEW_VALUES
    by_values = kind == NUMERIC and few
    if preset == "strict" or n_ref <= SMALL_REFERENCE:
        if not few:
            return Choice(METHODS["ks"], False)
        return Choice(METHODS["chisquare" if n_values > 2 else "z"], by_values)
    if not few:
        return Choice(METHODS["wasserstein"], False)
    return Choice(METHODS["jensenshannon"], by_values)


def applies(method: Method, kind: str, n_values: int) -> str | None:
    """Why ``method`` cannot test this column, or None when it can."""
    if kind == NUMERIC and CATEGORICAL in method.kinds and NUMERIC not in method.kinds:
        if n_values > FEW_VALUES:
            return (
                f"{method.name} tests categories; this numeric column has {n_values} distinct values "
                f"(at most {FEW_VALUES} are tested as categories)"
            )
    elif kind not in method.kinds:
        return f"{method.name} tests {' or '.join(sorted(method.kinds))} columns, not {kind}"
    if method.two_levels and n_values > 2:
        return f"the z-test compares two categories; this column has {n_values}"
    return None


def choose(kind: str, n_ref: int, n_values: int, preset: str, asked: str | None, *, asked_where: str = "") -> Choice:
    """The asked method if it can test this column, else the preset's choice with a note why."""
    fallback = auto(kind, n_ref, n_values, preset)
    if not asked:
        return fallback
    method = METHODS[asked]
    why = applies(method, kind, n_values)
    if why:
        return Choice(fallback.method, fallback.by_values, f"{why}{asked_where}: used {fallback.method.name}")
    by_values = kind == NUMERIC and NUMERIC not in method.kinds
    return Choice(method, by_values)
