"""Reference and current tables with drift planted in known columns (tests and the benchmark).

20 numeric and 5 categorical columns. Five are drifted in the current table:

- ``num_shift_small``: N(0, 1) -> N(0.1, 1), a 0.1 standard-deviation mean shift (the case
  Evidently's large-sample default scores at about its 0.1 threshold);
- ``num_scale``: N(10, 2) -> N(10, 2.6), the spread grows by 30%;
- ``num_income``: lognormal incomes -> the same times 1.1 (10% inflation);
- ``cat_shift``: five categories, 8% of the rows move from the first to the last;
- ``cat_new``: four categories -> a fifth, new one takes 10% of the rows.

The other 20 columns come from the same distributions on both sides (normal, lognormal,
exponential, uniform, gamma, Student t, beta, many-valued integers, a column with 5% missing
values, categorical columns of 2, 3 and 8 categories).
"""

from __future__ import annotations

from typing import Any

import numpy as np

DRIFTED = ("num_shift_small", "num_scale", "num_income", "cat_shift", "cat_new")
NUMERIC = (
    "num_shift_small",
    "num_scale",
    "num_income",
    "normal_a",
    "normal_b",
    "normal_c",
    "lognormal",
    "exponential",
    "uniform",
    "gamma",
    "student_t",
    "beta",
    "int_many",
    "int_wide",
    "with_missing",
    "normal_big",
    "mixture",
    "triangular",
    "laplace",
    "weibull",
)
CATEGORICAL = ("cat_shift", "cat_new", "cat_plan", "cat_region", "cat_flag")
COLUMNS = (*NUMERIC, *CATEGORICAL)


def _cat(rng: np.random.Generator, labels: list[str], shares: list[float], n: int) -> np.ndarray:
    codes = rng.choice(len(labels), size=n, p=np.asarray(shares) / np.sum(shares))
    return np.asarray(labels)[codes]


def make_table(rows: int, *, drifted: bool, seed: int) -> dict[str, Any]:
    """Columns as numpy arrays (strings as numpy unicode arrays), in COLUMNS order."""
    rng = np.random.default_rng(seed)
    n = rows
    d = drifted
    cols: dict[str, Any] = {}
    cols["num_shift_small"] = rng.normal(0.1 if d else 0.0, 1.0, n)
    cols["num_scale"] = rng.normal(10.0, 2.6 if d else 2.0, n)
    cols["num_income"] = rng.lognormal(10.0, 0.4, n) * (1.1 if d else 1.0)
    cols["normal_a"] = rng.normal(0, 1, n)
    cols["normal_b"] = rng.normal(50, 10, n)
    cols["normal_c"] = rng.normal(-3, 0.01, n)
    cols["lognormal"] = rng.lognormal(0, 1, n)
    cols["exponential"] = rng.exponential(2.0, n)
    cols["uniform"] = rng.uniform(0, 1, n)
    cols["gamma"] = rng.gamma(2.0, 2.0, n)
    cols["student_t"] = rng.standard_t(5, n)
    cols["beta"] = rng.beta(2, 5, n)
    cols["int_many"] = rng.integers(0, 1000, n)
    cols["int_wide"] = rng.integers(18, 90, n)
    missing = rng.normal(5, 2, n)
    missing[rng.random(n) < 0.05] = np.nan
    cols["with_missing"] = missing
    cols["normal_big"] = rng.normal(1e6, 1e5, n)
    cols["mixture"] = np.where(rng.random(n) < 0.3, rng.normal(-2, 0.5, n), rng.normal(2, 1, n))
    cols["triangular"] = rng.triangular(0, 3, 10, n)
    cols["laplace"] = rng.laplace(0, 1, n)
    cols["weibull"] = rng.weibull(1.5, n)
    cols["cat_shift"] = _cat(rng, list("abcde"), [0.22, 0.25, 0.2, 0.15, 0.18] if d else [0.3, 0.25, 0.2, 0.15, 0.1], n)
    cols["cat_new"] = _cat(
        rng, ["w", "x", "y", "z", "new"], [0.36, 0.27, 0.18, 0.09, 0.1] if d else [0.4, 0.3, 0.2, 0.1, 0.0], n
    )
    cols["cat_plan"] = _cat(rng, ["basic", "standard", "premium"], [0.5, 0.3, 0.2], n)
    cols["cat_region"] = _cat(rng, [f"region_{i}" for i in range(8)], [0.2, 0.18, 0.15, 0.12, 0.1, 0.1, 0.08, 0.07], n)
    cols["cat_flag"] = _cat(rng, ["no", "yes"], [0.9, 0.1], n)
    return {name: cols[name] for name in COLUMNS}


def arrow_table(columns: dict[str, Any]) -> Any:
    import pyarrow as pa

    return pa.table({k: pa.array(v, from_pandas=True) for k, v in columns.items()})


def planted_pair(rows: int, seed: int = 7) -> tuple[Any, Any]:
    """(reference, current) pyarrow tables; the seeds of the two sides differ."""
    return arrow_table(make_table(rows, drifted=False, seed=seed)), arrow_table(
        make_table(rows, drifted=True, seed=seed + 1000)
    )


def score(drifted_columns: set[str]) -> dict[str, list[str]]:
    """found / missed planted drifts and false alarms (clean columns flagged)."""
    return {
        "found": sorted(c for c in DRIFTED if c in drifted_columns),
        "missed": sorted(c for c in DRIFTED if c not in drifted_columns),
        "false_alarms": sorted(c for c in drifted_columns if c not in DRIFTED),
    }
