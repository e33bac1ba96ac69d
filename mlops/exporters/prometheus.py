"""Prometheus alert rules over a served model's ``/metrics`` (docs/monitoring.md, "Prometheus rules").

One rule group per model, ``mlops-<model>``, with alerts on what `mlops serve` exports:

- ``MlopsHighErrorRate``: the share of requests answered 5xx over ``window`` above ``error_rate``;
- ``MlopsHighLatencyP99``: the 99th percentile of request latency over ``window`` above ``p99_seconds``;
- ``MlopsCanaryUnhealthy``: the canary's 5xx share above production's by more than
  ``canary_margin`` (absolute), or its p99 above ``canary_latency_ratio`` times production's;
- ``MlopsRollback``: the server rolled a canary back within ``window``;
- ``MlopsRequestLogDropping``: request-log rows dropped (monitoring and labels go blind);
- ``MlopsNoMetrics``: no ``mlops_requests_total`` series for the model (server down, scrape broken).

Each alert fires after ``for_`` and carries ``model`` and ``severity`` labels and a summary. The
expressions divide by ``clamp_min(..., 1e-9)``, so no traffic is a 0 share, not NaN. The file is
plain YAML that ``promtool check rules`` accepts (tests/exporters run it, and ``promtool test
rules`` with synthetic series).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..registry.refs import check_name


@dataclass(frozen=True)
class RuleSettings:
    error_rate: float = 0.05
    p99_seconds: float = 0.5
    window: str = "5m"
    for_: str = "5m"
    canary_margin: float = 0.02
    canary_latency_ratio: float = 1.5


def _ratio(model: str, window: str, variant: str | None = None) -> str:
    sel = f'model="{model}"' + (f',variant="{variant}"' if variant else "")
    return (
        f'sum(rate(mlops_request_errors_total{{{sel},code_class="5xx"}}[{window}]))'
        f" / clamp_min(sum(rate(mlops_requests_total{{{sel}}}[{window}])), 1e-9)"
    )


def _p99(model: str, window: str, variant: str | None = None) -> str:
    sel = f'model="{model}"' + (f',variant="{variant}"' if variant else "")
    return f"histogram_quantile(0.99, sum by (le) (rate(mlops_request_latency_seconds_bucket{{{sel}}}[{window}])))"


def rules(model: str, settings: RuleSettings = RuleSettings()) -> dict[str, Any]:
    """The rule file as data (``rules_yaml`` writes it)."""
    m = check_name(model)
    s = settings
    labels = {"model": m}

    def alert(name: str, expr: str, severity: str, summary: str, for_: str | None = None) -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": for_ or s.for_,
            "labels": {**labels, "severity": severity},
            "annotations": {"summary": summary},
        }

    canary_errors = f"({_ratio(m, s.window, 'canary')}) > ({_ratio(m, s.window, 'production')}) + {s.canary_margin:g}"
    canary_latency = (
        f"({_p99(m, s.window, 'canary')}) > {s.canary_latency_ratio:g} * ({_p99(m, s.window, 'production')})"
    )
    group = {
        "name": f"mlops-{m}",
        "rules": [
            alert(
                "MlopsHighErrorRate",
                f"({_ratio(m, s.window)}) > {s.error_rate:g}",
                "critical",
                f"{m}: more than {s.error_rate:.0%} of requests failed (5xx) over {s.window}",
            ),
            alert(
                "MlopsHighLatencyP99",
                f"({_p99(m, s.window)}) > {s.p99_seconds:g}",
                "warning",
                f"{m}: p99 latency above {s.p99_seconds:g}s over {s.window}",
            ),
            alert(
                "MlopsCanaryUnhealthy",
                f"({canary_errors}) or ({canary_latency})",
                "critical",
                f"{m}: the canary fails or slows more than production",
            ),
            alert(
                "MlopsRollback",
                f'increase(mlops_rollbacks_total{{model="{m}"}}[{s.window}]) > 0',
                "warning",
                f"{m}: the server rolled a canary back",
                for_="0m",
            ),
            alert(
                "MlopsRequestLogDropping",
                f'increase(mlops_request_log_dropped_rows_total{{model="{m}"}}[{s.window}]) > 0',
                "warning",
                f"{m}: request-log rows dropped (monitoring and labels miss them)",
            ),
            alert(
                "MlopsNoMetrics",
                f'absent(mlops_requests_total{{model="{m}"}})',
                "critical",
                f"{m}: no metrics from mlops serve",
                for_="10m",
            ),
        ],
    }
    return {"groups": [group]}


def rules_yaml(model: str, settings: RuleSettings = RuleSettings()) -> str:
    import yaml

    head = f"# Prometheus alert rules for {model}, written by `mlops export prometheus-rules` (docs/monitoring.md)\n"
    return head + yaml.safe_dump(rules(model, settings), sort_keys=False, width=1000)
