"""`GET /metrics`: Prometheus text exposition format (version 0.0.4).

Totals are added over every live worker of the server (their snapshots, at most about a second
old, plus the answering worker's own counts), so one scrape sees the whole server whichever
worker answers it. A worker that exits takes its counts with it: Prometheus reads that as a
counter reset, which its rate() functions handle. The format is a few lines of text; writing it
here saves a dependency and prometheus_client's multi-process directory mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .health import LATENCY_BOUNDS_MS, Bucket, Key

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: Any) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render(
    model: str,
    totals: Mapping[Key, Bucket],
    counters: Mapping[str, float],
    gauges: Mapping[str, float],
    weights: Mapping[str, float],
) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    keys = sorted(totals)
    family("mlops_requests_total", "counter", "Prediction requests answered (4xx included), per variant and version.")
    for variant, version in keys:
        bucket = totals[(variant, version)]
        lines.append(
            f"mlops_requests_total{_labels(model=model, variant=variant, version=version)} {bucket.n + bucket.e4}"
        )
    family(
        "mlops_request_errors_total",
        "counter",
        "Prediction requests answered with an error: class 5xx (model, overload) or 4xx (input).",
    )
    for variant, version in keys:
        bucket = totals[(variant, version)]
        lines.append(
            "mlops_request_errors_total"
            f"{_labels(model=model, variant=variant, version=version, code_class='5xx')} {bucket.e5}"
        )
        lines.append(
            "mlops_request_errors_total"
            f"{_labels(model=model, variant=variant, version=version, code_class='4xx')} {bucket.e4}"
        )
    family("mlops_predictions_total", "counter", "Rows predicted, per variant and version.")
    for variant, version in keys:
        lines.append(
            "mlops_predictions_total"
            f"{_labels(model=model, variant=variant, version=version)} {totals[(variant, version)].rows}"
        )
    family(
        "mlops_request_latency_seconds",
        "histogram",
        "Time from request start to answer of requests that passed the input checks (4xx answers are not timed).",
    )
    for variant, version in keys:
        bucket = totals[(variant, version)]
        cumulative = 0
        for bound, count in zip(LATENCY_BOUNDS_MS, bucket.hist, strict=False):
            cumulative += count
            lines.append(
                "mlops_request_latency_seconds_bucket"
                f"{_labels(model=model, variant=variant, version=version, le=_num(bound / 1000))} {cumulative}"
            )
        cumulative += bucket.hist[-1]
        lines.append(
            "mlops_request_latency_seconds_bucket"
            f"{_labels(model=model, variant=variant, version=version, le='+Inf')} {cumulative}"
        )
        lines.append(
            f"mlops_request_latency_seconds_count{_labels(model=model, variant=variant, version=version)} {cumulative}"
        )
        lines.append(
            "mlops_request_latency_seconds_sum"
            f"{_labels(model=model, variant=variant, version=version)} {bucket.ms / 1000:.6f}"
        )
    if any(b.compared for b in totals.values()):
        family(
            "mlops_shadow_disagreements_total", "counter", "Shadow rows whose prediction differed from production's."
        )
        for variant, version in keys:
            if totals[(variant, version)].compared:
                lines.append(
                    "mlops_shadow_disagreements_total"
                    f"{_labels(model=model, version=version)} {totals[(variant, version)].disagreed}"
                )
    family("mlops_overload_rejections_total", "counter", "Requests answered 503 because the model's queue was full.")
    lines.append(f"mlops_overload_rejections_total{_labels(model=model)} {_num(counters.get('rejected', 0))}")
    family(
        "mlops_request_log_dropped_rows_total",
        "counter",
        "Rows not written to the request log because its writer fell behind.",
    )
    lines.append(f"mlops_request_log_dropped_rows_total{_labels(model=model)} {_num(counters.get('log_dropped', 0))}")
    family(
        "mlops_abandoned_requests_total",
        "counter",
        (
            "Requests dropped from a model's queue unpredicted because their caller stopped waiting "
            "(time-out, closed connection)."
        ),
    )
    lines.append(f"mlops_abandoned_requests_total{_labels(model=model)} {_num(counters.get('abandoned', 0))}")
    family(
        "mlops_client_disconnects_total",
        "counter",
        "Prediction requests whose client closed the connection before the answer.",
    )
    lines.append(f"mlops_client_disconnects_total{_labels(model=model)} {_num(counters.get('client_gone', 0))}")
    family(
        "mlops_requests_aborted_total",
        "counter",
        "Requests whose client closed the connection while the server was still reading the body.",
    )
    lines.append(f"mlops_requests_aborted_total{_labels(model=model)} {_num(counters.get('aborted', 0))}")
    family(
        "mlops_http_requests_total",
        "counter",
        "Every answered HTTP request, per route (unmatched: no route) and status code, 4xx and 401/403 included.",
    )
    for name in sorted(counters):
        if name.startswith("http "):
            _, route, code = name.split(" ", 2)
            lines.append(
                f"mlops_http_requests_total{_labels(model=model, route=route, code=code)} {_num(counters[name])}"
            )
    family("mlops_admin_refusals_total", "counter", "Admin requests refused, per rule (docs/serving.md, Security).")
    for name in sorted(counters):
        if name.startswith("admin_refused "):
            rule = name.split(" ", 1)[1]
            lines.append(f"mlops_admin_refusals_total{_labels(model=model, rule=rule)} {_num(counters[name])}")
    family(
        "mlops_cross_site_refusals_total",
        "counter",
        "Requests to the model's routes refused as cross-site or rebinding, per rule (docs/serving.md, Security).",
    )
    for name in sorted(counters):
        if name.startswith("cross_site_refused "):
            rule = name.split(" ", 1)[1]
            lines.append(f"mlops_cross_site_refusals_total{_labels(model=model, rule=rule)} {_num(counters[name])}")
    family("mlops_batches_total", "counter", "Model calls (each folds one or more requests).")
    lines.append(f"mlops_batches_total{_labels(model=model)} {_num(counters.get('batches', 0))}")
    family("mlops_batched_rows_total", "counter", "Rows passed to model calls.")
    lines.append(f"mlops_batched_rows_total{_labels(model=model)} {_num(counters.get('batched_rows', 0))}")
    family("mlops_rollbacks_total", "counter", "Automatic rollbacks decided by this server.")
    lines.append(f"mlops_rollbacks_total{_labels(model=model)} {_num(counters.get('rollbacks', 0))}")
    family("mlops_canary_weight_percent", "gauge", "Share of requests routed to each variant.")
    for variant, weight in sorted(weights.items()):
        lines.append(f"mlops_canary_weight_percent{_labels(model=model, variant=variant)} {_num(weight)}")
    for name, value in sorted(gauges.items()):
        family(f"mlops_{name}", "gauge", name.replace("_", " ").capitalize() + ".")
        lines.append(f"mlops_{name}{_labels(model=model)} {_num(value)}")
    return "\n".join(lines) + "\n"
