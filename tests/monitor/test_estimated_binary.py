"""Estimated precision, recall and F1 of a binary classifier (CBPE) against the realized values on
synthetic data whose probabilities are calibrated by construction (the truth drawn from them)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mlops.monitor.check import check, estimated_binary
from mlops.repo.repo import Repo
from mlops.serve.requestlog import LogSettings, RequestLog, requests_dir

DAY = 86400


def _realized(answers: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = int(((answers == 1) & (truth == 1)).sum())
    fp = int(((answers == 1) & (truth == 0)).sum())
    fn = int(((answers == 0) & (truth == 1)).sum())
    return {"precision": tp / (tp + fp), "recall": tp / (tp + fn), "f1": 2 * tp / (2 * tp + fp + fn)}


def _sums(answers: np.ndarray, p: np.ndarray) -> dict[str, list[float]]:
    confidence = np.where(answers == 1, p, 1 - p)
    return {str(c): [int((answers == c).sum()), float(confidence[answers == c].sum())] for c in (0, 1)}


@pytest.mark.parametrize("a,b", [(2.0, 2.0), (0.6, 1.8), (3.0, 0.8)])  # balanced, few positives, many positives
def test_estimates_match_realized_values_on_calibrated_data(a: float, b: float) -> None:
    rng = np.random.default_rng(7)
    p = rng.beta(a, b, 200_000)  # P(y = 1 | x), calibrated: the truth is drawn from it
    truth = (rng.random(len(p)) < p).astype(int)
    answers = (p >= 0.5).astype(int)
    estimated = estimated_binary(_sums(answers, p), ("0", "1"))
    realized = _realized(answers, truth)
    assert estimated is not None and estimated["positive_class"] == "1" and "calibrated" in estimated["assumption"]
    for metric in ("precision", "recall", "f1"):
        assert estimated[metric] == pytest.approx(realized[metric], abs=0.01), metric


def test_no_estimate_without_two_classes_or_rows() -> None:
    assert estimated_binary({"a": [3, 2.0]}, ("a", "b", "c")) is None
    assert estimated_binary(None, ("0", "1")) is None
    only_negative = estimated_binary({"0": [10, 9.0]}, ("0", "1"))
    assert only_negative is not None and only_negative["precision"] is None and only_negative["recall"] == 0.0


@pytest.mark.timeout(300)
def test_a_window_reports_the_estimated_f1_of_its_logged_probabilities(monitored: Path) -> None:
    repo = Repo(monitored)
    rng = np.random.default_rng(12)
    rows = 3000
    p = rng.beta(0.8, 1.5, rows)
    truth = (rng.random(rows) < p).astype(int)
    answers = (p >= 0.5).astype(int)
    at = time.time() // DAY * DAY - DAY + 7200
    log = RequestLog(requests_dir(repo, "churn"), settings=LogSettings(rotate_seconds=3600))
    log.start()
    log.append(
        None,
        {
            "tenure": rng.integers(0, 72, rows).tolist(),
            "plan": rng.choice(["basic", "pro", "family"], rows).tolist(),
            "monthly_charges": rng.uniform(10, 120, rows).round(2).tolist(),
        },
        rows,
        {
            "prediction": answers.tolist(),
            "variant": "production",
            "version": 1,
            "latency_ms": 3.0,
            "time": at,
            "request_id": "batch-1",
            "probabilities": ((0, 1), np.column_stack([1 - p, p]).tolist()),
        },
    )
    log.close()
    assert log.error is None
    report = check(repo, "churn", window_seconds=DAY, record=False)
    window = next(w for w in report.windows if w.rows)
    realized = _realized(answers, truth)
    estimated = window.estimated_binary
    assert estimated is not None and estimated["rows"] == rows
    assert estimated["f1"] == pytest.approx(realized["f1"], abs=0.04)
    assert estimated["precision"] == pytest.approx(realized["precision"], abs=0.04)
    assert estimated["recall"] == pytest.approx(realized["recall"], abs=0.04)
    assert window.estimated_accuracy == pytest.approx(float((answers == truth).mean()), abs=0.04)
    assert window.to_dict()["estimated_binary"]["f1"] == estimated["f1"]
    assert window.requests == 1 and window.callers.summary()["latency_ms"]["p50"] == pytest.approx(3.0, rel=0.03)
