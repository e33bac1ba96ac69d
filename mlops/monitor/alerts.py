"""Alerts from `monitor check`: an Alertmanager-compatible post (``--notify URL``) and a command
(``--on-breach CMD``), each at most once per persisting breach.

The post is what Alertmanager's API takes at ``POST /api/v2/alerts`` (a JSON list of alerts with
``labels``, ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``), so the URL may be an
Alertmanager itself or any receiver of that shape. One alert per breached kind (drift, quality,
volume), labelled ``alertname=MlopsMonitorBreach``, ``model``, ``kind``, ``severity`` and
``dedup_key`` (model and kind: the same breach in the next window is the same alert).

Dedup and cooldown: the alerts sent are remembered in ``.mlops/monitor/<model>/alerts.json``
(dedup key -> first and last sent). A breach whose key was sent within ``cooldown`` seconds is
not sent again; when a breach is gone, one post with ``endsAt`` = now resolves it, and the key is
forgotten. Retries: a connection error or a 5xx/429 answer is retried with exponential backoff
(``retries`` times: 0.5 s, 1 s, 2 s ...); another 4xx is not (the request itself is wrong).

``--on-breach CMD`` runs when at least one new alert would be sent (same dedup and cooldown as
the post, whether or not a URL is given): once, split like a shell line but without a shell, in
the repository's root, its output kept in ``.mlops/monitor/<model>/on-breach.log``; its exit code
is recorded in the history with the check.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..fsio import FileLock, atomic_write
from ..repo.repo import Repo
from .check import MonitorReport
from .store import monitor_dir

ALERT_NAME = "MlopsMonitorBreach"
DEFAULT_COOLDOWN = 6 * 3600.0
SEVERITY = {"drift": "warning", "quality": "critical", "volume": "critical"}
COMMAND_TIMEOUT = 3600.0


@dataclass(frozen=True)
class AlertOutcome:
    firing: tuple[str, ...] = ()  # dedup keys breached now
    sent: tuple[str, ...] = ()  # newly sent (not within the cooldown)
    resolved: tuple[str, ...] = ()
    suppressed: tuple[str, ...] = ()  # breached, but sent within the cooldown
    attempts: int = 0
    delivered: bool | None = None  # None: nothing to post
    error: str | None = None
    command: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "firing": list(self.firing),
            "sent": list(self.sent),
            "resolved": list(self.resolved),
            "suppressed": list(self.suppressed),
            "attempts": self.attempts,
            "delivered": self.delivered,
            "error": self.error,
            "on_breach": self.command,
        }


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _alert(report: MonitorReport, kind: str, key: str, starts: float, ends: float | None) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": {
            "alertname": ALERT_NAME,
            "model": report.model,
            "kind": kind,
            "severity": SEVERITY[kind],
            "dedup_key": key,
        },
        "annotations": {
            "summary": f"{report.model}: {kind} breached",
            "description": "; ".join(report.breaches.get(kind, [])) or f"{kind} is back within bounds",
            "version": str(report.version),
            "window": report.judged or "",
        },
        "startsAt": _iso(starts),
        "generatorURL": f"mlops://monitor/{report.model}",
    }
    if ends is not None:
        alert["endsAt"] = _iso(ends)
    return alert


def post(
    url: str, alerts: list[dict[str, Any]], *, retries: int = 3, backoff: float = 0.5
) -> tuple[bool, int, str | None]:
    """(delivered, attempts, the last error)."""
    import httpx

    error = None
    attempts = 0
    for attempt in range(retries + 1):
        attempts += 1
        try:
            response = httpx.post(url, json=alerts, timeout=10.0)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code < 300:
                return True, attempts, None
            error = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                return False, attempts, error
        if attempt < retries:
            time.sleep(backoff * 2**attempt)
    return False, attempts, error


def act(
    repo: Repo,
    report: MonitorReport,
    *,
    notify: str | None = None,
    on_breach: str | None = None,
    cooldown: float = DEFAULT_COOLDOWN,
    retries: int = 3,
    backoff: float = 0.5,
    now: float | None = None,
) -> AlertOutcome:
    if notify is not None and not notify.startswith(("http://", "https://")):
        raise UsageError(f"--notify: not an http(s) URL: {notify!r}")
    argv = shlex.split(on_breach) if on_breach else []
    if on_breach is not None and not argv:
        raise UsageError("--on-breach: an empty command")
    now = time.time() if now is None else now
    folder = monitor_dir(repo, report.model)
    state_path = folder / "alerts.json"
    with FileLock(folder / "lock", what=f"the monitor profiles of {report.model}"):
        try:
            state: dict[str, Any] = json.loads(state_path.read_text())
        except FileNotFoundError:
            state = {}
        except (OSError, ValueError):
            state = {}  # a damaged state only costs one repeated alert
        firing = {f"{report.model}:{kind}": kind for kind in report.breached}
        new = [k for k in firing if k not in state or now - float(state[k]["last_sent"]) >= cooldown]
        suppressed = [k for k in firing if k not in new]
        gone = [k for k in state if k not in firing]
        alerts = [_alert(report, firing[k], k, float(state.get(k, {}).get("first_sent", now)), None) for k in new]
        alerts += [_alert(report, str(state[k]["kind"]), k, float(state[k]["first_sent"]), now) for k in gone if notify]
        delivered = None
        attempts = 0
        error = None
        if notify and alerts:
            delivered, attempts, error = post(notify, alerts, retries=retries, backoff=backoff)
        command = None
        if argv and new:
            command = _run(repo, folder, argv)
        if delivered is not False:  # a failed post is tried again by the next check
            for k in new:
                state[k] = {"kind": firing[k], "first_sent": state.get(k, {}).get("first_sent", now), "last_sent": now}
            for k in gone:
                state.pop(k, None)
        elif command is not None:  # the command ran: it must not run again on the next check
            for k in new:
                state[k] = {"kind": firing[k], "first_sent": now, "last_sent": now, "undelivered": True}
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(state_path, json.dumps(state, indent=1, sort_keys=True))
        if alerts or command is not None:
            from ..fsio import append_record
            from .check import history_path

            append_record(
                history_path(repo, report.model),
                {
                    "at": _iso(now),
                    "event": "alert",
                    "window": report.judged,
                    "version": report.version,
                    "sent": new if delivered is not False else [],
                    "resolved": gone if notify and delivered else [],
                    "delivered": delivered,
                    "error": error,
                    "on_breach": command,
                },
            )
    return AlertOutcome(
        tuple(firing),
        tuple(new) if delivered is not False else (),
        tuple(gone) if notify and delivered else (),
        tuple(suppressed),
        attempts,
        delivered,
        error,
        command,
    )


def _run(repo: Repo, folder: Any, argv: list[str]) -> dict[str, Any]:
    started = time.time()
    log = folder / "on-breach.log"
    with open(log, "ab") as handle:
        handle.write(f"--- {_iso(started)} {shlex.join(argv)}\n".encode())
        handle.flush()
        try:
            proc = subprocess.run(
                argv, cwd=repo.root, stdout=handle, stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT, check=False
            )
            code: int | None = proc.returncode
            problem = None
        except FileNotFoundError:
            code, problem = None, f"{argv[0]}: no such command"
        except subprocess.TimeoutExpired:
            code, problem = None, f"did not finish within {COMMAND_TIMEOUT:g} s"
    out = {
        "command": shlex.join(argv),
        "at": _iso(started),
        "exit_code": code,
        "seconds": round(time.time() - started, 3),
    }
    if problem:
        out["error"] = problem
    return out
