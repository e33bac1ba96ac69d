"""The signature's sample predict at registration: rows with nulls are skipped on a model that cannot
take them, and a failure is one warning line, not scikit-learn's whole message."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlops import registry


def _register(repo, sample: pd.DataFrame, model) -> registry.RegisterResult:
    root = Path(repo.root)
    (root / "model.pkl").write_bytes(pickle.dumps(model))
    sample.to_csv(root / "sample.csv", index=False)
    return registry.register(repo, "m", root / "model.pkl", signature_from=root / "sample.csv", actor="tests")


def _fitted() -> LogisticRegression:
    frame = pd.DataFrame({"x1": np.arange(20.0), "x2": np.arange(20.0) % 3})
    return LogisticRegression().fit(frame, (frame["x1"] > 9).astype(int))


def test_rows_with_nulls_are_skipped_for_the_output_dtype(repo) -> None:
    nan = np.nan
    sample = pd.DataFrame({"x1": [nan, 1.0, 2.0, 15.0, 3.0, 4.0, 18.0], "x2": [0.0, nan, 1.0, 2.0, 0.0, 1.0, 2.0]})
    result = _register(repo, sample, _fitted())
    assert result.version.signature["outputs"] == [{"name": "prediction", "dtype": "int64"}]
    assert not any("predict" in w for w in result.warnings), result.warnings


def test_a_sample_predict_failure_is_one_warning_line(repo) -> None:
    sample = pd.DataFrame({"x1": [np.nan, np.nan], "x2": [1.0, 2.0]})  # no row without nulls to fall back on
    result = _register(repo, sample, _fitted())
    assert result.version.signature["outputs"] == [{"name": "prediction", "dtype": "unknown"}]
    (warning,) = [w for w in result.warnings if "predict on" in w]
    assert "\n" not in warning and "ValueError" in warning and "output dtype unknown" in warning, warning
