"""`mlops monitor build|check|history` and `mlops labels add`: production monitoring (docs/monitoring.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import CheckFailed, CouldNotComplete, UsageError
from .boundary import JSON_OPTION, comma_names, command, positive_duration
from .output import Output

monitor_app = typer.Typer(no_args_is_help=True)
labels_app = typer.Typer(no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(
        monitor_app,
        name="monitor",
        help="Production monitoring: profiles of served traffic, checks per time window, their history.",
    )
    app.add_typer(labels_app, name="labels", help="Ground truth that arrives after the predictions.")


VERSION_HELP = (
    "The version whose training data is the reference (default: the version the newest request logs say "
    "served production, else the canary's, else the shadow's; with no logs naming one, the production version)."
)
CHOSEN_BY = {
    "--version": "as --version says",
    "request logs (production)": "served in production per the request logs",
    "request logs (canary)": "served as the canary per the request logs",
    "request logs (shadow)": "served as the shadow per the request logs",
    "production stage": "the production version",
}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


@command(monitor_app, "build")
def build(
    model: str = typer.Argument(..., help="The served model's name."),
    version: int | None = typer.Option(None, "--version", help=VERSION_HELP),
    json_output: bool = JSON_OPTION,
) -> None:
    """Profile the request-log files not profiled yet (incremental, idempotent)."""
    from ..monitor.store import OPEN_LOGS
    from ..monitor.store import build as run_build
    from ..repo.repo import find_repo

    out = Output(json_output=json_output)
    result = run_build(find_repo(), model, version=version)
    for name in result.unreadable:
        out.warn(f"{name}: unreadable request log (a killed server's?), skipped")
    if result.without_status:
        out.warn(
            f"{len(result.without_status)} request-log file(s) of an older server have no status column: "
            "their requests are counted as answered (200)"
        )
    if result.still_open:
        out.info(f"{len(result.still_open)} {OPEN_LOGS}")
    if out.json:
        out.emit_json(result.to_dict())
        return
    out.line(
        f"{model}: {result.built} request-log file(s) profiled, {result.already} already "
        f"(basis {result.basis}, training data of version {result.version}, "
        f"{CHOSEN_BY.get(result.chosen_by, result.chosen_by)})"
    )


@command(monitor_app, "check")
def check(
    model: str = typer.Argument(..., help="The served model's name."),
    window: str = typer.Option("1d", "--window", help="Window length, whole hours (1h, 6h, 1d)."),
    since: str = typer.Option("30d", "--since", help="How far back the windows go."),
    fail_on: str | None = typer.Option(
        None,
        "--fail-on",
        help="Exit 1 when any of these breached, comma-separated: drift, quality, volume, errors, latency.",
    ),
    min_accuracy: float | None = typer.Option(
        None, "--min-accuracy", help="Quality breach below this accuracy (realized, else estimated)."
    ),
    min_volume: float = typer.Option(
        0.5, "--min-volume", help="Volume breach below this share of the median rows per complete window."
    ),
    max_error_rate: float = typer.Option(
        0.05, "--max-error-rate", help="Errors breach above this share of requests failed (5xx)."
    ),
    max_refused_rate: float | None = typer.Option(
        None,
        "--max-refused-rate",
        help="Errors breach above this share of requests refused (4xx); not judged by default.",
    ),
    max_p99_ms: float = typer.Option(500.0, "--max-p99-ms", help="Latency breach above this p99 (milliseconds)."),
    drift_share: float | None = typer.Option(
        None, "--drift-share", help="Data drift when this share of columns drift."
    ),
    key_columns: str | None = typer.Option(None, "--key-columns", help="Data drift when any of these drift."),
    version: int | None = typer.Option(None, "--version", help=VERSION_HELP),
    html: Path | None = typer.Option(None, "--html", help="Also write the judged window's drift report as HTML."),
    notify: str | None = typer.Option(
        None, "--notify", help="POST breaches to this URL as Alertmanager alerts (retried; once per --cooldown)."
    ),
    on_breach: str | None = typer.Option(
        None, "--on-breach", help="Run this command (no shell) once when a new breach starts; recorded in the history."
    ),
    cooldown: str = typer.Option("6h", "--cooldown", help="A breach that persists alerts again only after this long."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Per window: volume, data drift against the training data, prediction drift, quality, errors and latency;
    record the verdict."""
    from dataclasses import replace

    from ..drift.config import check_fraction, preset_settings
    from ..monitor.check import KINDS
    from ..monitor.check import check as run_check
    from ..repo.repo import find_repo

    out = Output(json_output=json_output)
    kinds = comma_names(fail_on)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise UsageError(f"--fail-on: unknown {', '.join(unknown)}", hint=f"one or more of: {', '.join(KINDS)}")
    if html is not None:
        from ..fsio import check_output

        check_output(html)
    check_fraction(max_error_rate, "--max-error-rate")
    if max_refused_rate is not None:
        check_fraction(max_refused_rate, "--max-refused-rate")
    if not max_p99_ms > 0:
        raise UsageError(f"--max-p99-ms must be above 0, not {max_p99_ms:g}")
    settings = preset_settings("default")
    if drift_share is not None:
        settings = replace(settings, drift_share=check_fraction(drift_share, "--drift-share"))
    if key_columns is not None:
        settings = replace(settings, key_columns=comma_names(key_columns))
    cooldown_seconds = positive_duration(cooldown, "--cooldown")
    if notify is not None and not notify.startswith(("http://", "https://")):
        raise UsageError(f"--notify: not an http(s) URL: {notify!r}")
    repo = find_repo()
    report = run_check(
        repo,
        model,
        window_seconds=positive_duration(window, "--window"),
        since_seconds=positive_duration(since, "--since"),
        settings=settings,
        min_accuracy=min_accuracy,
        min_volume_share=min_volume,
        max_error_rate=max_error_rate,
        max_refused_rate=max_refused_rate,
        max_p99_ms=max_p99_ms,
        version=version,
        html=None if html is None else str(html),
    )
    alerted = None
    if notify is not None or on_breach is not None:
        from ..monitor.alerts import act

        alerted = act(repo, report, notify=notify, on_breach=on_breach, cooldown=cooldown_seconds)
    if out.json:
        doc = report.to_dict()
        if alerted is not None:
            doc["alerts"] = alerted.to_dict()
        out.emit_json(doc)
    else:
        _show(out, report)
        if report.built.get("still_open"):  # with --json: build.still_open (a schedule's stderr stays quiet)
            from ..monitor.store import OPEN_LOGS

            out.info(f"{report.built['still_open']} {OPEN_LOGS}")
        if alerted is not None:
            if alerted.sent:
                out.info(f"alerted: {', '.join(alerted.sent)} ({alerted.attempts} attempt(s))")
            if alerted.suppressed:
                out.info(f"already alerted within the cooldown: {', '.join(alerted.suppressed)}")
            if alerted.resolved:
                out.info(f"resolved: {', '.join(alerted.resolved)}")
            if alerted.command is not None:
                out.info(f"ran {alerted.command['command']}: exit {alerted.command['exit_code']}")
    for warning in report.warnings:
        out.warn(warning)
    if alerted is not None and alerted.delivered is False:
        raise CouldNotComplete(
            f"{model}: the alert to {notify} was not delivered after {alerted.attempts} attempt(s): {alerted.error}",
            hint="the next check tries again",
        )
    failed = [k for k in kinds if k in report.breached]
    if failed:
        raise CheckFailed(
            f"{model}: {', '.join(failed)} breached: "
            + "; ".join(r for k in failed for r in report.breaches.get(k, [])),
            breached=failed,
        )


def _show(out: Output, report: Any) -> None:
    from ..monitor.check import BINARY_ASSUMPTION

    rows = []
    styles = []
    shown = [w for w in report.windows if w.rows or w.requests or w is report.windows[-1]]
    empty = len(report.windows) - len(shown)
    for w in shown:
        d = w.to_dict()
        drift = d["data_drift"]
        pred = d["prediction_drift"]
        rows.append(
            [
                d["start"] + ("" if w.complete else " (open)"),
                str(w.rows),
                "-" if drift is None else (", ".join(drift["drifted_columns"]) or "none"),
                "-" if pred is None else f"{'yes' if pred['drifted'] else 'no'} ({_fmt(pred['score'], 3)})",
                _fmt(w.estimated_accuracy),
                _fmt((w.estimated_binary or {}).get("f1")),
                _fmt(w.realized_accuracy),
                "-" if not w.rows else f"{w.labelled / w.rows:.0%}",
                *_service_cells(w),
            ]
        )
        styles.append("bold red" if drift and drift["drifted"] else (None if w.rows else "dim"))
    out.table(
        [
            "window",
            "rows",
            "drifted columns",
            "prediction drift",
            "est. accuracy",
            "est. F1",
            "accuracy",
            "labelled",
            "requests",
            "4xx",
            "5xx",
            "p50 ms",
            "p99 ms",
        ],
        rows,
        styles=styles,
        header=True,
    )
    if empty:
        out.info(f"{empty} window(s) without traffic not shown (--json lists every window)")
    if any(w.estimated_binary for w in shown):
        out.info("est. accuracy and F1: " + BINARY_ASSUMPTION)
    if report.breached:
        for kind in report.breached:
            for reason in report.breaches[kind]:
                out.line(f"{kind}: {reason}", style="bold red")
    else:
        out.line(f"{report.model} v{report.version}: no breach in {report.judged or 'any window'}", style="green")
    if report.recorded:
        out.info(f"recorded the verdict for {report.model} version {report.version}")


def _service_cells(w: Any) -> list[str]:
    """Requests, refused, failed and latency quantiles of the callers (no shadow), or dashes."""
    if w.slots is None:
        return ["-"] * 5
    d = w.callers.summary()
    return [
        str(d["requests"]),
        f"{d['refused']}" + (f" ({d['refused_rate']:.1%})" if d["requests"] else ""),
        f"{d['failed']}" + (f" ({d['error_rate']:.1%})" if d["requests"] else ""),
        _fmt(d["latency_ms"]["p50"], 3),
        _fmt(d["latency_ms"]["p99"], 3),
    ]


@command(monitor_app, "history")
def history(
    model: str = typer.Argument(..., help="The served model's name."),
    json_output: bool = JSON_OPTION,
) -> None:
    """The verdicts of `monitor check` over time (a line when a window's verdict changed)."""
    from ..monitor.check import history as read_history
    from ..repo.repo import find_repo

    out = Output(json_output=json_output)
    records = read_history(find_repo(), model)
    if out.json:
        out.emit_json({"model": model, "checks": records})
        return
    out.table(
        ["checked at", "window", "version", "rows", "breached", "drifted columns", "accuracy", "5xx rate", "p99 ms"],
        [_history_row(r) for r in records],
        styles=[
            "bold red" if r.get("breached") else (None if r.get("event") != "alert" else "yellow") for r in records
        ],
        header=True,
    )


def _history_row(r: dict[str, Any]) -> list[str]:
    if r.get("event") == "alert":
        done = []
        if r.get("sent"):
            done.append(f"alerted {', '.join(r['sent'])}")
        if r.get("resolved"):
            done.append(f"resolved {', '.join(r['resolved'])}")
        if r.get("delivered") is False:
            done.append(f"alert not delivered ({r.get('error')})")
        command = r.get("on_breach")
        if command:
            done.append(f"ran {command.get('command')} (exit {command.get('exit_code')})")
        return [r.get("at", "-"), r.get("window") or "-", str(r.get("version", "-")), "-", "; ".join(done)] + ["-"] * 4
    requests = r.get("requests") if isinstance(r.get("requests"), dict) else None
    accuracy = r.get("realized_accuracy") if r.get("realized_accuracy") is not None else r.get("estimated_accuracy")
    return [
        r.get("at", "-"),
        r.get("window", "-"),
        str(r.get("version", "-")),
        str(r.get("rows", "-")),
        ", ".join(r.get("breached") or []) or "none",
        ", ".join(r.get("drifted_columns") or []) or "-",
        _fmt(accuracy),
        "-" if not requests or requests.get("error_rate") is None else f"{requests['error_rate']:.1%}",
        _fmt((requests or {}).get("latency_ms", {}).get("p99"), 3),
    ]


@command(labels_app, "add")
def labels_add(
    file: Path = typer.Argument(..., help="A Parquet or CSV file of labels."),
    model: str = typer.Option(..., "--model", help="The served model the labels are for."),
    key: str = typer.Option("request_id", "--key", help="The column with the request id the server returned."),
    target: str = typer.Option(..., "--target", help="The column with the true value."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Add ground truth that arrived later; `monitor check` then shows realized quality per window."""
    from ..monitor.labels import add
    from ..repo.repo import find_repo

    out = Output(json_output=json_output)
    result = add(find_repo(), model, file, key=key, target=target)
    if out.json:
        out.emit_json(result.to_dict())
        return
    out.line(
        f"{result.rows} label(s) for {model} {'stored' if result.new else 'already stored'} ({result.stored}); "
        f"they match {result.matched} logged row(s) so far"
    )
