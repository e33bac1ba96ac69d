"""`mlops monitor check`: per time window, volume, data drift, prediction drift, estimated and
realized quality; a verdict recorded on the model version and in the model's history.

Windows are aligned to the epoch (a 1d window is a UTC day) and built from the hourly
profiles `monitor build` keeps, so a window must be a whole number of hours. A check first runs
`build` (incremental), then merges profiles: it reads no request log twice and is cheap enough
to run every few minutes.

What is judged (``breaches``), on the latest window with traffic:

- ``drift``: the window's data drift against the training data (drift's rule over the input
  columns: drift share, key columns; distances from profiles, docs/monitoring.md), or its
  prediction drift (the model's answers against its answers on the training data);
- ``quality``: realized accuracy on the labelled rows (labels.py) below ``min_accuracy``, or,
  without labels, the estimated accuracy (mean confidence) below it (a binary classifier's
  estimated precision, recall and F1 are reported beside it: ``estimated_binary``);
- ``volume``: the latest complete window has fewer than ``min_volume_share`` of the median
  rows of the complete windows before it (a server that stopped answering, a broken client);
- ``errors``: the share of the callers' requests that failed (5xx) above ``max_error_rate``, or,
  when ``max_refused_rate`` is given, the share refused (4xx) above it;
- ``latency``: the callers' p99 latency above ``max_p99_ms`` (service.py: fixed log-spaced bins).

Requests, statuses and latencies come from the request, shadow and failure logs (per slot:
variant and version); the callers' figures leave the shadow out (no caller waits for it).

The verdict goes to the registry as a drift check of the version (source "monitor"), so the
gate ``no_failed_drift_check`` sees monitoring too: recorded when the verdict of a window
changes, not on every run, so a schedule does not grow the registry.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import UsageError
from ..fsio import FileLock, append_record, read_records
from ..repo.repo import Repo
from .compare import drift_report
from .profile import Profile, empty_profile
from .service import Slots, SlotStats, merge_slots, total
from .store import CONFIDENCE, PREDICTION, build, hour_number, monitor_dir, read_log_profiles, reference

KINDS = ("drift", "quality", "volume", "errors", "latency")
HOUR = 3600
DEFAULT_MAX_ERROR_RATE = 0.05  # as the exported Prometheus rule MlopsHighErrorRate (exporters/prometheus.py)
DEFAULT_MAX_P99_MS = 500.0  # as MlopsHighLatencyP99


@dataclass(frozen=True)
class Window:
    start: float  # epoch seconds
    end: float
    rows: int
    complete: bool
    data_drift: Any = None  # DriftReport over the input columns (None: no rows)
    prediction_drift: dict[str, Any] | None = None
    estimated_accuracy: float | None = None
    realized_accuracy: float | None = None
    labelled: int = 0
    latency_ms: float | None = None
    slots: Slots | None = None  # requests per slot (None: no request statistics for this window)
    estimated_binary: dict[str, Any] | None = None  # a binary classifier's estimated precision, recall, F1

    @property
    def callers(self) -> SlotStats:
        """The requests callers made (production, canary, and those refused before routing)."""
        return total({k: v for k, v in (self.slots or {}).items() if not k.startswith("shadow:")})

    @property
    def requests(self) -> int:
        return self.callers.requests

    def label(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(self.start))

    def to_dict(self) -> dict[str, Any]:
        d = self.data_drift
        return {
            "start": self.label(),
            "end": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(self.end)),
            "rows": self.rows,
            "complete": self.complete,
            "data_drift": None
            if d is None
            else {
                "drifted": d.verdict.drifted,
                "drifted_columns": [c.name for c in d.columns if c.drifted],
                "share": d.verdict.share,
                "reasons": list(d.verdict.reasons),
                "columns": {c.name: {"method": c.method, "score": c.score, "drifted": c.drifted} for c in d.columns},
            },
            "prediction_drift": self.prediction_drift,
            "estimated_accuracy": self.estimated_accuracy,
            "estimated_binary": self.estimated_binary,
            "realized_accuracy": self.realized_accuracy,
            "labelled_rows": self.labelled,
            "label_coverage": (self.labelled / self.rows) if self.rows else None,
            "mean_latency_ms": self.latency_ms,
            "requests": None if self.slots is None else self.callers.summary(),
            "slots": None if self.slots is None else {k: v.summary() for k, v in self.slots.items()},
        }


@dataclass(frozen=True)
class MonitorReport:
    model: str
    version: int
    window_seconds: float
    windows: tuple[Window, ...]
    breaches: dict[str, list[str]]  # kind -> reasons
    judged: str | None  # the window the verdict is about
    reference_accuracy: float | None
    built: dict[str, Any]
    recorded: bool = False
    warnings: tuple[str, ...] = ()
    html_written: bool = False
    thresholds: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def breached(self) -> list[str]:
        return [k for k in KINDS if self.breaches.get(k)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "window_seconds": self.window_seconds,
            "judged_window": self.judged,
            "breached": self.breached,
            "breaches": {k: v for k, v in self.breaches.items() if v},
            "reference_estimated_accuracy": self.reference_accuracy,
            "thresholds": self.thresholds,
            "windows": [w.to_dict() for w in self.windows],
            "build": self.built,
            "recorded": self.recorded,
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
        }


def _mean(profile: Profile, column: str) -> float | None:
    c = profile.columns.get(column)
    return c.mean() if c is not None and hasattr(c, "mean") else None


def check(
    repo: Repo,
    model: str,
    *,
    window_seconds: float = 86400.0,
    since_seconds: float = 30 * 86400.0,
    settings: Any = None,
    min_accuracy: float | None = None,
    min_volume_share: float = 0.5,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_refused_rate: float | None = None,
    max_p99_ms: float = DEFAULT_MAX_P99_MS,
    version: int | None = None,
    now: float | None = None,
    record: bool = True,
    html: str | None = None,
) -> MonitorReport:
    from ..drift.config import preset_settings

    started = time.perf_counter()
    if window_seconds < HOUR or window_seconds % HOUR:
        raise UsageError(f"--window must be a whole number of hours (profiles are hourly), not {window_seconds:g}s")
    if since_seconds < window_seconds:
        raise UsageError("--since must be at least one --window")
    settings = settings or preset_settings("default")
    built = build(repo, model, version=version)
    ref = reference(repo, model, built.version)  # the version build chose: resolved once
    now = time.time() if now is None else now
    first = (now - since_seconds) // window_seconds * window_seconds
    windows: dict[float, Profile] = {}
    latency: dict[float, float] = {}
    service: dict[float, Slots] = {}
    confidence: dict[float, dict[str, list[float]]] = {}
    uncounted: set[float] = set()  # windows with profiles made before requests were counted
    without_status: set[str] = set()
    for log in read_log_profiles(repo, model, ref.basis.id):
        for hour, profile in log.hours.items():
            at = hour_number(hour) * HOUR
            if at < first or at > now:
                continue
            start = at // window_seconds * window_seconds
            windows[start] = windows.get(start, empty_profile(ref.basis)).merge(profile)
            latency[start] = latency.get(start, 0.0) + log.latency_ms.get(hour, 0.0)
            if log.service is None:
                uncounted.add(start)
        for hour, slots in (log.service or {}).items():
            at = hour_number(hour) * HOUR
            if at < first or at > now:
                continue
            start = at // window_seconds * window_seconds
            service[start] = merge_slots(service.get(start, {}), slots)
            if not log.status_logged:
                without_status.add(log.file)
        for hour, sums in (log.confidence_sums or {}).items():
            at = hour_number(hour) * HOUR
            if first <= at <= now:
                into = confidence.setdefault(at // window_seconds * window_seconds, {})
                for answer, (n, total_confidence) in sums.items():
                    before = into.get(answer, [0, 0.0])
                    into[answer] = [before[0] + n, before[1] + total_confidence]
    from .labels import realized

    quality = realized(repo, model, ref, window_seconds, first, now)
    features = [c.name for c in ref.basis.profiled() if c.name not in (PREDICTION, CONFIDENCE)]
    feature_settings = replace(settings, columns=tuple(features))
    out: list[Window] = []
    start = first
    while start <= now:
        profile = windows.get(start)
        end = start + window_seconds
        complete = end <= now
        slots = None if start in uncounted else service.get(start)
        if profile is None or profile.rows == 0:
            out.append(Window(start, end, 0, complete, slots=slots))
            start = end
            continue
        data = drift_report(
            ref.basis, ref.profile, profile, feature_settings, reference="training data", current="window"
        )
        prediction = None
        if PREDICTION in profile.columns and PREDICTION in ref.profile.columns:
            pred = drift_report(
                ref.basis,
                ref.profile,
                profile,
                replace(settings, columns=(PREDICTION,), key_columns=()),
                reference="training predictions",
                current="window",
            ).columns
            if pred:
                c = pred[0]
                prediction = {"method": c.method, "score": c.score, "threshold": c.threshold, "drifted": c.drifted}
        acc, labelled = quality.get(start, (None, 0))
        out.append(
            Window(
                start,
                end,
                profile.rows,
                complete,
                data,
                prediction,
                _mean(profile, CONFIDENCE) if ref.classes else None,
                acc,
                labelled,
                latency.get(start, 0.0) / profile.rows,
                slots,
                estimated_binary(confidence.get(start), ref.classes),
            )
        )
        start = end
    thresholds = {
        "min_accuracy": min_accuracy,
        "min_volume_share": min_volume_share,
        "max_error_rate": max_error_rate,
        "max_refused_rate": max_refused_rate,
        "max_p99_ms": max_p99_ms,
    }
    breaches, judged = _judge(out, thresholds)
    warnings = [f"{n}: unreadable request log, skipped" for n in built.unreadable]
    if without_status:
        warnings.append(
            f"{len(without_status)} request-log file(s) of an older server have no status column: "
            "their requests are counted as answered (200)"
        )
    if uncounted:
        warnings.append(
            f"{len(uncounted)} window(s) hold profiles made by an older mlops, without request counts: "
            "no error rate or latency quantiles for them"
        )
    report = MonitorReport(
        ref.model,
        ref.version,
        window_seconds,
        tuple(out),
        breaches,
        judged,
        _mean(ref.profile, CONFIDENCE) if ref.classes else None,
        built.to_dict(),
        warnings=tuple(warnings),
        thresholds=thresholds,
    )
    if html is not None:
        report = _write_html(report, html)
    if record:
        report = replace(report, recorded=_record(repo, report, html if report.html_written else None))
    return replace(report, seconds=time.perf_counter() - started)


BINARY_ASSUMPTION = (
    "estimated from the model's probabilities, assumed calibrated on the current data "
    "(covariate shift, no concept drift)"
)


def estimated_binary(sums: dict[str, list[float]] | None, classes: tuple[str, ...]) -> dict[str, Any] | None:
    """A binary classifier's estimated precision, recall and F1 for its positive class (the second
    of its classes, scikit-learn's ``classes_[1]``), as NannyML's CBPE estimates them: with
    calibrated probabilities, a row answered positive with probability p is a true positive with
    probability p (else a false positive), one answered negative with confidence c is a false
    negative with probability 1 - c; the expected counts give the metrics.
    ``sums``: answer -> [rows, sum of the probability given to that answer]."""
    if len(classes) != 2 or not sums:
        return None
    negative, positive = classes
    n_pos, conf_pos = sums.get(positive, [0, 0.0])
    n_neg, conf_neg = sums.get(negative, [0, 0.0])
    if not n_pos + n_neg:
        return None
    tp, fp, fn = conf_pos, n_pos - conf_pos, n_neg - conf_neg
    return {
        "positive_class": positive,
        "precision": tp / (tp + fp) if tp + fp > 0 else None,
        "recall": tp / (tp + fn) if tp + fn > 0 else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else None,
        "rows": int(n_pos + n_neg),
        "assumption": BINARY_ASSUMPTION,
    }


def _write_html(report: MonitorReport, html: str) -> MonitorReport:
    """The judged window's drift report as HTML, written (atomically) before the verdict that links it."""
    judged = next((w for w in report.windows if w.label() == report.judged), None)
    if judged is None or judged.data_drift is None:
        return replace(report, warnings=(*report.warnings, "no window with traffic: no HTML written"))
    from ..drift.html import write_report

    title = f"{report.model}: window {judged.label()}"
    write_report(html, judged.data_drift, title=title, sections=html_sections(judged))
    return replace(report, html_written=True)


def _judge(windows: list[Window], thresholds: dict[str, Any]) -> tuple[dict[str, list[str]], str | None]:
    min_accuracy, min_volume_share = thresholds["min_accuracy"], thresholds["min_volume_share"]
    breaches: dict[str, list[str]] = {k: [] for k in KINDS}
    busy = [w for w in windows if w.rows or w.requests]
    latest = busy[-1] if busy else None
    if latest is not None and latest.requests:
        _judge_service(latest, thresholds, breaches)
    if latest is not None:
        d = latest.data_drift
        if d is not None and d.verdict.drifted:
            breaches["drift"].append(f"data drift in {latest.label()}: " + "; ".join(d.verdict.reasons))
        if latest.prediction_drift and latest.prediction_drift["drifted"]:
            p = latest.prediction_drift
            breaches["drift"].append(
                f"prediction drift in {latest.label()}: {p['method']} {p['score']:.4g} >= {p['threshold']:g}"
            )
        if min_accuracy is not None:
            if latest.realized_accuracy is not None and latest.realized_accuracy < min_accuracy:
                breaches["quality"].append(
                    f"realized accuracy {latest.realized_accuracy:.4f} < {min_accuracy:g} in {latest.label()} "
                    f"({latest.labelled} labelled rows)"
                )
            elif latest.realized_accuracy is None and latest.estimated_accuracy is not None:
                if latest.estimated_accuracy < min_accuracy:
                    breaches["quality"].append(
                        f"estimated accuracy {latest.estimated_accuracy:.4f} < {min_accuracy:g} in {latest.label()} "
                        "(no labels yet; estimated from the model's confidence)"
                    )
    complete = [w for w in windows if w.complete]
    if len(complete) >= 2:
        last, before = complete[-1], [w.rows for w in complete[:-1] if w.rows]
        if before:
            typical = statistics.median(before)
            if last.rows < min_volume_share * typical:
                breaches["volume"].append(
                    f"{last.rows} rows in {last.label()}, under {min_volume_share:.0%} of the median {typical:g}"
                )
    return breaches, latest.label() if latest is not None else None


def _judge_service(latest: Window, thresholds: dict[str, Any], breaches: dict[str, list[str]]) -> None:
    callers = latest.callers
    n = callers.requests
    if callers.failed / n > thresholds["max_error_rate"]:
        breaches["errors"].append(
            f"{callers.failed} of {n} requests failed (5xx) in {latest.label()}: "
            f"{callers.failed / n:.2%} > {thresholds['max_error_rate']:.2%}"
        )
    refused_limit = thresholds["max_refused_rate"]
    if refused_limit is not None and callers.refused / n > refused_limit:
        breaches["errors"].append(
            f"{callers.refused} of {n} requests refused (4xx) in {latest.label()}: "
            f"{callers.refused / n:.2%} > {refused_limit:.2%}"
        )
    p99 = callers.latency.quantile(0.99)
    if p99 is not None and p99 > thresholds["max_p99_ms"]:
        breaches["latency"].append(
            f"p99 latency {p99:.4g} ms > {thresholds['max_p99_ms']:g} ms in {latest.label()} ({n} requests)"
        )


def html_sections(judged: Window) -> list[Any]:
    """The judged window's requests per slot and its estimated quality, for the HTML report."""
    rows = []
    for name, stats in [*(judged.slots or {}).items(), *([("callers", judged.callers)] if judged.slots else [])]:
        d = stats.summary()
        q = d["latency_ms"]
        rows.append(
            [name, d["requests"], d["refused"], d["failed"], d["error_rate"], q["p50"], q["p95"], q["p99"], q["max"]]
        )
    head = ["slot", "requests", "refused (4xx)", "failed (5xx)", "error rate", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    sections = [(f"Requests in {judged.label()}", head, rows)] if rows else []
    estimated = judged.estimated_binary
    if estimated is not None:
        sections.append(
            (
                f"Estimated quality in {judged.label()} ({estimated['assumption']})",
                ["positive class", "accuracy", "precision", "recall", "F1", "realized accuracy"],
                [
                    [
                        estimated["positive_class"],
                        judged.estimated_accuracy,
                        estimated["precision"],
                        estimated["recall"],
                        estimated["f1"],
                        judged.realized_accuracy,
                    ]
                ],
            )
        )
    return sections


def history_path(repo: Repo, model: str) -> Any:
    return monitor_dir(repo, model) / "checks.jsonl"


def _record(repo: Repo, report: MonitorReport, html: str | None = None) -> bool:
    """Append the verdict to the history and record it on the version, when it changed (with
    where its ``--html`` report goes, when that lies inside the repository)."""
    from .. import registry
    from ..drift.validations import report_in_repo

    where = report_in_repo(repo, html)

    if report.judged is None:
        return False
    entry = {
        "window": report.judged,
        "window_seconds": report.window_seconds,
        "version": report.version,
        "breached": report.breached,
    }
    path = history_path(repo, report.model)
    with FileLock(monitor_dir(repo, report.model) / "lock", what=f"the monitor profiles of {report.model}"):
        past = read_records(path)
        last = past[-1] if past else None
        if last is not None and all(last.get(k) == v for k, v in entry.items()):
            return False  # the same verdict on the same window: nothing new
        judged = next(w for w in report.windows if w.label() == report.judged)
        drifted_columns = [c.name for c in judged.data_drift.columns if c.drifted] if judged.data_drift else []
        record = {
            **entry,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rows": judged.rows,
            "drifted_columns": drifted_columns,
            "prediction_drift": judged.prediction_drift,
            "estimated_accuracy": judged.estimated_accuracy,
            "estimated_f1": (judged.estimated_binary or {}).get("f1"),
            "realized_accuracy": judged.realized_accuracy,
            "label_coverage": judged.labelled / judged.rows if judged.rows else None,
            "requests": None if judged.slots is None else judged.callers.summary(),
            "reasons": [r for k in KINDS for r in report.breaches.get(k, [])],
        }
        if where is not None:
            record["html"] = where
        append_record(path, json.loads(json.dumps(record)))
    registry.record_drift_check(
        repo,
        report.model,
        report.version,
        drifted=bool(report.breaches.get("drift")),
        summary={
            "source": "monitor",
            "window": report.judged,
            "drifted_columns": drifted_columns,
            "breached": report.breached,
            "reasons": record["reasons"],
            "current_rows": judged.rows,
            **({"html": where} if where is not None else {}),
        },
    )
    return True


def history(repo: Repo, model: str) -> list[dict[str, Any]]:
    from ..registry.refs import check_name

    return read_records(history_path(repo, check_name(model)))
