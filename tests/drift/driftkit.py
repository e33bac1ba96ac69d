"""Table writers shared by the drift tests (a module of its own: `conftest` names collide
across test folders, so tests import helpers from here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_parquet(path: Path, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({k: pa.array(v, from_pandas=True) for k, v in columns.items()}), path)
    return path


def write_csv(path: Path, columns: dict, *, sep: str = ",", decimal: str = ".") -> Path:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns).to_csv(path, sep=sep, decimal=decimal, index=False)
    return path


def base_columns(rows: int, *, seed: int, shift: float = 0.0) -> dict:
    """Three plain columns: numeric (shifted by ``shift`` sd), categorical, many-valued integer."""
    rng = np.random.default_rng(seed)
    return {
        "amount": rng.normal(shift, 1.0, rows),
        "plan": rng.choice(["basic", "standard", "premium"], rows, p=[0.5, 0.3, 0.2]),
        "age": rng.integers(18, 90, rows),
    }


def strict_json(text: str):
    """json.loads that fails on NaN/Infinity (Python's json accepts them; JSON does not)."""
    import json

    def reject(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=reject)
