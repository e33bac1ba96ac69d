"""Request statistics per window (mlops.monitor.service): the latency histogram merges exactly and
its quantiles are within the documented bin resolution of numpy's exact quantile."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops.errors import FormatError
from mlops.monitor.service import (
    HIGH_MS,
    LOW_MS,
    RESOLUTION,
    LatencyHistogram,
    SlotStats,
    merge_slots,
    slots_from_dict,
    slots_of,
    slots_to_dict,
)

latencies = st.lists(
    st.floats(min_value=LOW_MS, max_value=HIGH_MS / 2, allow_nan=False, allow_infinity=False), min_size=1, max_size=300
)


@settings(max_examples=150, deadline=None)
@given(values=latencies, cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=5))
def test_any_split_merges_to_the_histogram_of_the_whole(values: list[float], cuts: list[int]) -> None:
    bounds = sorted({0, len(values), *(min(c, len(values)) for c in cuts)})
    parts = [values[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    merged = LatencyHistogram()
    for part in parts:
        merged = merged.merge(LatencyHistogram.of(part))
    assert merged == LatencyHistogram.of(values)
    assert LatencyHistogram.from_dict(json.loads(json.dumps(merged.to_dict())), "t") == merged


@settings(max_examples=150, deadline=None)
@given(values=latencies, q=st.sampled_from([0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0]))
def test_quantiles_are_within_the_bin_resolution_of_the_exact_ones(values: list[float], q: float) -> None:
    exact = float(np.quantile(np.asarray(values), q, method="inverted_cdf"))
    found = LatencyHistogram.of(values).quantile(q)
    assert found is not None
    assert abs(math.log(found / exact)) <= math.log(RESOLUTION) * (1 + 1e-9), (found, exact)


def test_quantiles_of_a_known_sample_and_the_edges() -> None:
    rng = np.random.default_rng(3)
    values = rng.lognormal(mean=2.0, sigma=1.0, size=20_000)
    hist = LatencyHistogram.of(values)
    for q in (0.5, 0.95, 0.99):
        exact = float(np.quantile(values, q, method="inverted_cdf"))
        assert abs(hist.quantile(q) / exact - 1) <= RESOLUTION - 1
    edges = LatencyHistogram.of([0.0, 2 * HIGH_MS, 5.0])  # underflow and overflow keep the exact min and max
    assert edges.quantile(0.1) == 0.0 and edges.quantile(1.0) == 2 * HIGH_MS and edges.count == 3
    assert LatencyHistogram.of([]).quantile(0.5) is None and LatencyHistogram.of([float("nan")]).count == 0


def test_slots_count_statuses_apart_and_merge() -> None:
    a = slots_of(["production", "production", "canary", None], [1, 1, 2, None], [200, 400, 500, 413], [1, 2, 3, 4])
    b = slots_of(["production"], [1], [503], [9.0])
    merged = merge_slots(a, b)
    assert set(merged) == {"production:1", "canary:2", "unrouted:"}
    prod = merged["production:1"].summary()
    assert (prod["requests"], prod["ok"], prod["refused"], prod["failed"]) == (3, 1, 1, 1)
    assert prod["error_rate"] == pytest.approx(1 / 3) and prod["refused_rate"] == pytest.approx(1 / 3)
    assert slots_from_dict(json.loads(json.dumps(slots_to_dict(merged))), "t") == merged
    assert SlotStats().summary()["error_rate"] is None


@pytest.mark.parametrize(
    "bad",
    [
        {"x": {}},  # not a slot name
        {"production:1": {"statuses": {"999": 1}}},  # not an HTTP status
        {"production:1": {"statuses": {"200": -1}}},  # a negative count
        {"production:1": {"statuses": {"200": 1}, "latency": {"bins": {"9999": 1}, "count": 1, "min": 1, "max": 1}}},
        {"production:1": {"statuses": {"200": 1}, "latency": {"bins": {"0": 2}, "count": 1, "min": 1, "max": 1}}},
        {f"p{i}:1": {} for i in range(100)},  # more slots than the bound
    ],
)
def test_received_statistics_are_checked(bad: dict) -> None:
    with pytest.raises(FormatError):
        slots_from_dict(bad, "received.json")
