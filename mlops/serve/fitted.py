"""What a fitted scikit-learn model says about its inputs when the signature does not: the columns
it was fitted on as numbers.

A version registered without a recorded run has input names but dtypes ``unknown``, so the
signature checks nothing and ``{"x1": "a"}`` reached the model, which raised (a 500). A fitted
model still tells which columns go to number-only steps: a plain estimator takes every feature of
``feature_names_in_`` as numbers (scikit-learn's validation converts them to float); a Pipeline
is read through its first step; a ColumnTransformer through each transformer's columns (an
encoder, a passthrough, a function or a most-frequent imputer may take text; scalers and the like
take numbers only). Whatever cannot be read this way is left unchecked. Nothing is imported: the
model's own classes are looked at by name.
"""

from __future__ import annotations

from typing import Any

#: scikit-learn modules whose transformers may take text (or anything): their columns are not numeric
_TEXT_MODULES = ("sklearn.preprocessing._encoders", "sklearn.feature_extraction", "sklearn.preprocessing._function")


def fitted_numeric_columns(model: Any, signature_names: tuple[str, ...] = ()) -> frozenset[str]:
    """The input columns ``model`` was fitted on as numbers (empty when it cannot tell). A model fitted
    on an array has no ``feature_names_in_``: the signature's names (``x0, x1, ...``) stand for its
    columns by position when there are ``n_features_in_`` of them."""
    try:
        names = [str(n) for n in getattr(model, "feature_names_in_", [])]
        if not names and signature_names and getattr(model, "n_features_in_", None) == len(signature_names):
            names = list(signature_names)
        return frozenset(_numeric(model, names))
    except Exception:  # noqa: BLE001 - a model this reading does not understand: no extra checks
        return frozenset()


def _is(model: Any, name: str) -> bool:
    return any(c.__name__ == name and c.__module__.startswith("sklearn") for c in type(model).__mro__)


def _first_step(model: Any) -> Any:
    for _, step in model.steps:
        if step is not None and step != "passthrough":
            return step
    return None


def _numbers_only(step: Any) -> bool:
    """Whether a fitted scikit-learn step refuses text in every column it takes."""
    if step is None or isinstance(step, str):  # "passthrough", "drop"
        return False
    module = type(step).__module__
    if not module.startswith("sklearn"):
        return False
    if _is(step, "Pipeline"):
        return _numbers_only(_first_step(step))
    if _is(step, "ColumnTransformer") or module.startswith(_TEXT_MODULES):
        return False
    if module.startswith("sklearn.impute"):
        return getattr(step, "strategy", None) in ("mean", "median")
    return True


def _numeric(model: Any, names: list[str]) -> set[str]:
    if not names:
        return set()
    if _is(model, "Pipeline"):
        first = _first_step(model)
        return _numeric(first, names) if first is not None else set()
    if _is(model, "ColumnTransformer"):
        found: set[str] = set()
        for _, step, columns in getattr(model, "transformers_", ()):
            if not _numbers_only(step):
                continue
            for column in list(columns) if isinstance(columns, list | tuple) else []:
                if isinstance(column, str):
                    found.add(column)
                elif isinstance(column, int) and not isinstance(column, bool) and 0 <= column < len(names):
                    found.add(names[column])
        return found & set(names)
    return set(names) if _numbers_only(model) else set()
