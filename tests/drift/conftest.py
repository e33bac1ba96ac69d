"""Drift tests share the planted-drift tables (tests/drift/planted.py) with the benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


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


@pytest.fixture
def drift_json(cli):
    """Run `mlops drift ... --json` in-process; return (document, result)."""

    def run(*args: str, code: int = 0):
        result = cli("drift", *args, "--json", code=code)
        return json.loads(result.stdout), result

    return run
