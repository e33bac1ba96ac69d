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
  without labels, the estimated accuracy (mean confidence) below it;
- ``volume``: the latest complete window has fewer than ``min_volume_share`` of the median
  rows of the complete windows before it (a server that stopped answering, a broken client).

The verdict goes to the registry as a drift check of the version (source "monitor"), so the
gate ``no_failed_drift_check`` sees monitoring too: recorded when the verdict of a window
changes, not on every run, so a schedule does not grow the registry.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, replace
from typing import Any

from ..errors import UsageError
from ..fsio import FileLock, append_record, read_records
from ..repo.repo import Repo
from .compare import drift_report
from .profile import Profile, empty_profile
from .store import CONFIDENCE, PREDICTION, build, hour_number, monitor_dir, read_log_profiles, reference

KINDS = ("drift", "quality", "volume")
HOUR = 3600


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
            "realized_accuracy": self.realized_accuracy,
            "labelled_rows": self.labelled,
            "label_coverage": (self.labelled / self.rows) if self.rows else None,
            "mean_latency_ms": self.latency_ms,
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
    ref = reference(repo, model, version)
    now = time.time() if now is None else now
    first = (now - since_seconds) // window_seconds * window_seconds
    windows: dict[float, Profile] = {}
    latency: dict[float, float] = {}
    for log in read_log_profiles(repo, model, ref.basis.id):
        for hour, profile in log.hours.items():
            at = hour_number(hour) * HOUR
            if at < first or at > now:
                continue
            start = at // window_seconds * window_seconds
            windows[start] = windows.get(start, empty_profile(ref.basis)).merge(profile)
            latency[start] = latency.get(start, 0.0) + log.latency_ms.get(hour, 0.0)
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
        if profile is None or profile.rows == 0:
            out.append(Window(start, end, 0, complete))
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
            )
        )
        start = end
    breaches, judged = _judge(out, min_accuracy, min_volume_share)
    report = MonitorReport(
        ref.model,
        ref.version,
        window_seconds,
        tuple(out),
        breaches,
        judged,
        _mean(ref.profile, CONFIDENCE) if ref.classes else None,
        built.to_dict(),
        warnings=tuple(f"{n}: unreadable request log, skipped" for n in built.unreadable),
    )
    if html is not None:
        report = _write_html(report, html)
    if record:
        report = replace(report, recorded=_record(repo, report, html if report.html_written else None))
    return replace(report, seconds=time.perf_counter() - started)


def _write_html(report: MonitorReport, html: str) -> MonitorReport:
    """The judged window's drift report as HTML, written (atomically) before the verdict that links it."""
    judged = next((w for w in report.windows if w.label() == report.judged), None)
    if judged is None or judged.data_drift is None:
        return replace(report, warnings=(*report.warnings, "no window with traffic: no HTML written"))
    from ..drift.html import write_report

    write_report(html, judged.data_drift, title=f"{report.model}: window {judged.label()}")
    return replace(report, html_written=True)


def _judge(
    windows: list[Window], min_accuracy: float | None, min_volume_share: float
) -> tuple[dict[str, list[str]], str | None]:
    breaches: dict[str, list[str]] = {k: [] for k in KINDS}
    with_rows = [w for w in windows if w.rows]
    latest = with_rows[-1] if with_rows else None
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
            "realized_accuracy": judged.realized_accuracy,
            "label_coverage": judged.labelled / judged.rows if judged.rows else None,
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
