"""Model quality on the reference and on the current data, from a target and a prediction column.

- The task: ``classification`` when the target was judged categorical (strings, booleans,
  numbers with at most 5 distinct values), else ``regression``; ``--task`` overrides it.
- Classification: a prediction of floats within [0, 1] against a two-class target is the
  probability of the positive class (its label is the prediction ``>= 0.5``); otherwise the
  prediction holds labels. The positive class is ``--pos-label``, else the greater of the two
  target values (1 over 0, True over False, the later string in sorted order).
  Accuracy; F1 of the positive class (two classes) or macro F1 (more); ROC AUC when
  probabilities are present and both sides hold both classes.
- Regression: MAE, RMSE, R2.
Rows where the target or the prediction is missing are left out (and counted).
scikit-learn computes the metrics; it is imported only here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import UsageError
from .columns import CATEGORICAL, NUMERIC


def _pairs(source: Any, target: str, prediction: str) -> tuple[np.ndarray, np.ndarray, int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    y = source.column(target)
    p = source.column(prediction)
    valid = pc.and_(pc.is_valid(y), pc.is_valid(p))
    for arr in (y, p):
        if pa.types.is_floating(arr.type):
            valid = pc.and_(valid, pc.invert(pc.is_nan(arr)))
    valid = valid.combine_chunks() if hasattr(valid, "combine_chunks") else valid
    dropped = len(y) - int(pc.sum(valid).as_py() or 0)
    y = pc.filter(y, valid).to_numpy(zero_copy_only=False)
    p = pc.filter(p, valid).to_numpy(zero_copy_only=False)
    return y, p, dropped


def _positive(labels: list[Any], asked: str | None) -> Any:
    if asked is not None:
        for label in labels:
            if str(label) == asked or (isinstance(label, bool) and asked.lower() == str(label).lower()):
                return label
        raise UsageError(
            f"--pos-label {asked}: not a value of the target",
            hint="target values: " + ", ".join(str(v) for v in labels[:10]),
        )
    return sorted(labels, key=lambda v: (0, v) if isinstance(v, (int, float, bool, np.number)) else (1, str(v)))[-1]


def model_quality(reference: Any, current: Any, settings: Any, *, columns: dict[str, Any]) -> dict[str, Any]:
    from sklearn import metrics

    target, prediction = settings.target, settings.prediction
    sides = {"reference": _pairs(reference, target, prediction), "current": _pairs(current, target, prediction)}
    target_kind = columns[target].kind if target in columns else None
    task = settings.task
    if task == "auto":
        task = "classification" if target_kind == CATEGORICAL else "regression" if target_kind == NUMERIC else None
    if task is None:
        return {
            "task": None,
            "note": f"the target '{target}' was not tested ({columns[target].reason}): no model quality",
        }
    notes: list[str] = []
    out: dict[str, Any] = {"task": task, "rows": {}, "dropped_rows": {}, "metrics": []}
    values: dict[str, dict[str, float | None]] = {}
    if task == "regression":
        for side, (y, p, dropped) in sides.items():
            try:
                y, p = y.astype(np.float64), p.astype(np.float64)
            except (TypeError, ValueError):
                raise UsageError(
                    f"regression needs numeric target and prediction; '{target}' or '{prediction}' holds text",
                    hint="use --task classification",
                ) from None
            out["rows"][side], out["dropped_rows"][side] = len(y), dropped
            if len(y) == 0:
                values[side] = {"mae": None, "rmse": None, "r2": None}
                continue
            values[side] = {
                "mae": float(metrics.mean_absolute_error(y, p)),
                "rmse": float(math.sqrt(metrics.mean_squared_error(y, p))),
                "r2": float(metrics.r2_score(y, p)) if len(y) > 1 else None,
            }
        names = ["mae", "rmse", "r2"]
    else:
        all_labels = sorted(
            {*_pylist(sides["reference"][0]), *_pylist(sides["current"][0])},
            key=lambda v: (0, v) if isinstance(v, (int, float, bool)) else (1, str(v)),
        )
        binary = len(all_labels) == 2
        positive = _positive(all_labels, settings.pos_label) if binary else None
        probabilities = columns.get(prediction) is not None and columns[prediction].kind == NUMERIC and binary
        if binary:
            out["positive_label"] = _json_label(positive)
        out["prediction_is"] = "probability" if probabilities else "label"
        for side, (y, p, dropped) in sides.items():
            out["rows"][side], out["dropped_rows"][side] = len(y), dropped
            y_list = _pylist(y)
            if len(y_list) == 0:
                values[side] = {"accuracy": None, "f1": None, "roc_auc": None}
                continue
            if probabilities:
                scores = p.astype(np.float64)
                negative = next(v for v in all_labels if v != positive)
                predicted = [positive if s >= 0.5 else negative for s in scores]
            else:
                scores = None
                predicted = _pylist(p)
            y_str = [_key(v) for v in y_list]
            p_str = [_key(v) for v in predicted]
            f1 = (
                metrics.f1_score(y_str, p_str, pos_label=_key(positive), average="binary", zero_division=0.0)
                if binary
                else metrics.f1_score(y_str, p_str, average="macro", zero_division=0.0)
            )
            auc = None
            if scores is not None and len(set(y_str)) == 2:
                auc = float(metrics.roc_auc_score([1 if v == _key(positive) else 0 for v in y_str], scores))
            elif scores is not None:
                notes.append(f"ROC AUC needs both classes in the {side} data")
            values[side] = {"accuracy": float(metrics.accuracy_score(y_str, p_str)), "f1": float(f1), "roc_auc": auc}
        names = ["accuracy", "f1", "roc_auc"]
        if not probabilities:
            notes.append("ROC AUC needs predicted probabilities (floats within [0, 1] for a two-class target)")
    for name in names:
        ref, cur = values["reference"].get(name), values["current"].get(name)
        change = cur - ref if ref is not None and cur is not None else None
        out["metrics"].append({"metric": name, "reference": ref, "current": cur, "change": change})
    out["notes"] = list(dict.fromkeys(notes))
    return out


def _pylist(values: np.ndarray) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _key(value: Any) -> str:
    """Labels compared as text, so that 1 and 1.0 (a float column of labels) are one class."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _json_label(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else str(value)
