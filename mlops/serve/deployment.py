"""The deployment file: which versions of a model take traffic, and how. Meant for git.

``.mlops/deployments/<model>.yaml``::

    format: 1
    model: churn
    revision: 7                 # +1 on every write; writers compare-and-swap on it
    updated_at: '2026-11-26T11:02:03Z'
    updated_by: alice (mlops deploy)
    production: 3               # the version answering callers: the registry's production version...
    pin:                        # ...unless pinned on purpose (`mlops deploy churn --pin 3`; --unpin releases)
      by: alice (mlops deploy)
      at: '2026-11-26T11:02:03Z'
      reason: hold v3 while the v4 incident is looked at
    candidate:                  # absent: all traffic to production
      version: 4
      mode: canary              # canary: `weight` % of requests; shadow: a copy of every request
      weight: 10.0
      steps: [5.0, 25.0, 50.0]  # progressive canary: weights to go through, then promotion
      interval_seconds: 120.0
      started_at: '...'
      step_started_at: '...'
      hold: null                # why the progression stopped (a refused promotion)
    routing:
      key: header:x-request-id  # or field:customer_id: the same key always reaches the same variant
    rollback:                   # automatic rollback of the candidate over a sliding window
      window_seconds: 60.0
      min_requests: 50
      max_error_rate: 0.05
      max_p99_ms: null
      max_prediction_shift: 0.3 # optional: answers departing from production's (docs/serving.md)
    last_event:                 # the last promotion or rollback, and why
      event: rollback
      version: 4
      reason: error rate 45.0% > 5.0% over the last 60 s (27 of 60 requests failed)
      at: '...'
      by: mlops serve (automatic)

`mlops deploy` and `mlops canary promote|rollback` write it; a running `mlops serve` polls it
(a stat every half second) and follows it without a restart, and writes it itself when it
raises a progressive canary's weight, promotes it, or rolls it back. Every write happens
under the lock ``.mlops/tmp/locks/deploy-<model>.lock`` and replaces the file atomically.

One truth for production: the registry's production version. An unpinned deployment's
``production`` is a copy of it, rewritten (``follow_registry``) by every command that changes
the registry (mlops.workflows.production, in the same locked step) and by a running server's
controller when it finds the copy behind (a crash between the registry's write and this
file's, or a registry change made through the Python API). Readers that must not write
(``canary status``) show the registry's version and say the file is behind. A pinned
deployment keeps its version whatever the registry says, until ``--unpin``.
Lock order: the deployment's lock, then the registry's (never the other way round).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import CouldNotComplete, FormatError, UsageError
from ..formats import check_format, display_path, dump_yaml, parse_yaml, read_bytes
from ..fsio import atomic_write, remove_stale_temps
from ..registry.refs import NAME
from ..registry.refs import check_name as check_model_name  # a deployment names a registered model
from ..registry.store import default_actor
from ..repo.repo import Repo
from .requestlog import model_state_dir

DEPLOYMENTS = "deployments"
DEPLOYMENT_FORMAT = 1
CANARY, SHADOW = "canary", "shadow"
DEFAULT_KEY = "header:x-request-id"
MIN_INTERVAL_SECONDS = 0.1  # a progressive step shorter than this is a typo, not a plan
MIN_WINDOW_SECONDS = 1.0  # statistics are kept per second: a shorter window holds nothing to judge


@dataclass(frozen=True)
class Thresholds:
    window_seconds: float = 60.0
    min_requests: int = 50
    max_error_rate: float | None = 0.05
    max_p99_ms: float | None = None
    max_prediction_shift: float | None = None  # answers departing from production's (health.prediction_shift)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "window_seconds": self.window_seconds,
            "min_requests": self.min_requests,
            "max_error_rate": self.max_error_rate,
            "max_p99_ms": self.max_p99_ms,
        }
        if self.max_prediction_shift is not None:  # written only when set: files of older servers stay as they were
            out["max_prediction_shift"] = self.max_prediction_shift
        return out


@dataclass(frozen=True)
class Candidate:
    version: int
    mode: str  # canary | shadow
    weight: float = 0.0
    steps: tuple[float, ...] = ()
    interval_seconds: float | None = None
    started_at: str = ""
    step_started_at: str = ""
    hold: str | None = None

    @property
    def progressive(self) -> bool:
        return bool(self.steps) and self.interval_seconds is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "mode": self.mode}
        if self.mode == CANARY:
            out["weight"] = self.weight
        if self.steps:
            out["steps"] = list(self.steps)
            out["interval_seconds"] = self.interval_seconds
        out["started_at"] = self.started_at
        if self.steps:
            out["step_started_at"] = self.step_started_at
        if self.hold:
            out["hold"] = self.hold
        return out


@dataclass(frozen=True)
class Deployment:
    model: str
    production: int
    revision: int = 0
    candidate: Candidate | None = None
    key: str = DEFAULT_KEY
    thresholds: Thresholds = field(default_factory=Thresholds)
    updated_at: str = ""
    updated_by: str = ""
    last_event: dict[str, Any] | None = None
    pin: dict[str, Any] | None = None  # set: production is held on purpose, whatever the registry says

    @property
    def pinned(self) -> bool:
        return self.pin is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": DEPLOYMENT_FORMAT,
            "model": self.model,
            "revision": self.revision,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "production": self.production,
        }
        if self.pin is not None:
            out["pin"] = dict(self.pin)
        if self.candidate is not None:
            out["candidate"] = self.candidate.to_dict()
        out["routing"] = {"key": self.key}
        out["rollback"] = self.thresholds.to_dict()
        if self.last_event:
            out["last_event"] = dict(self.last_event)
        return out

    @property
    def key_field(self) -> str | None:
        kind, _, name = self.key.partition(":")
        return name if kind == "field" else None

    @property
    def key_header(self) -> str | None:
        kind, _, name = self.key.partition(":")
        return name.lower() if kind == "header" else None


# --- time --------------------------------------------------------------------------------------


def now_iso(now: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if now is None else now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def parse_duration(text: str) -> float:
    """'90s', '2m', '1h', '500ms' or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(text))
    if not match:
        raise UsageError(f"not a duration: {text!r}", hint="use e.g. 30s, 2m, 1h")
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def parse_steps(text: str) -> tuple[float, ...]:
    try:
        steps = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UsageError(f"--steps: not a list of percentages: {text!r}", hint="e.g. --steps 5,25,50") from None
    if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise UsageError(f"--steps: want increasing percentages in (0, 100], got {text!r}", hint="e.g. --steps 5,25,50")
    return steps


def actor(what: str) -> str:
    """Who changes a deployment, as the registry names who acts, and how (cli, controller)."""
    return f"{default_actor()} ({what})"


# --- files -------------------------------------------------------------------------------------


def deployments_dir(repo: Repo) -> Path:
    return repo.dot / DEPLOYMENTS


def deployment_path(repo: Repo, model: str) -> Path:
    return deployments_dir(repo) / f"{check_model_name(model)}.yaml"


def serve_dir(repo: Repo, model: str) -> Path:
    """Machine-local runtime state of serving one model (stats, request logs): not for git."""
    path = model_state_dir(repo, model)
    base = path.parent
    if not base.is_dir():
        base.mkdir(parents=True, exist_ok=True)
    ignore = base / ".gitignore"
    if not ignore.exists():
        atomic_write(ignore, "# serving's runtime state (statistics, request logs) is local to this machine\n*\n")
    return path


def _lock(repo: Repo, model: str) -> Any:
    return repo.lock(f"deploy-{model}", what=f"the deployment of {model}")


def _number(
    data: dict[str, Any],
    key: str,
    source: str,
    *,
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    whole: bool = False,
    optional: bool = False,
) -> Any:
    value = data.get(key, default)
    if value is None and optional:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (whole and not float(value).is_integer())
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise FormatError(
            f"{source}: '{key}' must be a {'whole ' if whole else ''}number, found {value!r}", file=source, field=key
        )
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise FormatError(f"{source}: '{key}' must be within [{lo}, {hi}], found {value!r}", file=source, field=key)
    return int(value) if whole else float(value)


def parse_deployment(text: str, source: str) -> Deployment:
    data = check_format(parse_yaml(text, source), source, supported=DEPLOYMENT_FORMAT, kind="deployment file")
    model = data.get("model")
    if not isinstance(model, str) or not NAME.fullmatch(model):
        raise FormatError(f"{source}: 'model' must be a model name, found {model!r}", file=source, field="model")
    production = _number(data, "production", source, default=None, lo=1, whole=True)
    candidate = None
    raw = data.get("candidate")
    if raw is not None:
        if not isinstance(raw, dict):
            raise FormatError(f"{source}: 'candidate' must be a mapping", file=source, field="candidate")
        mode = raw.get("mode", CANARY)
        if mode not in (CANARY, SHADOW):
            raise FormatError(f"{source}: candidate 'mode' must be canary or shadow, found {mode!r}", file=source)
        steps = raw.get("steps") or ()
        if not isinstance(steps, (list, tuple)) or not all(isinstance(s, (int, float)) and 0 < s <= 100 for s in steps):
            raise FormatError(f"{source}: candidate 'steps' must be a list of percentages", file=source)
        hold = raw.get("hold")
        candidate = Candidate(
            version=_number(raw, "version", source, default=None, lo=1, whole=True),
            mode=mode,
            weight=_number(raw, "weight", source, default=0.0, lo=0, hi=100) if mode == CANARY else 0.0,
            steps=tuple(float(s) for s in steps),
            interval_seconds=_number(
                raw, "interval_seconds", source, default=None, lo=MIN_INTERVAL_SECONDS, optional=True
            ),
            started_at=str(raw.get("started_at") or ""),
            step_started_at=str(raw.get("step_started_at") or ""),
            hold=str(hold) if hold else None,
        )
        if candidate.version == production:
            raise FormatError(f"{source}: the candidate is the production version ({production})", file=source)
    routing = data.get("routing") or {}
    key = routing.get("key", DEFAULT_KEY) if isinstance(routing, dict) else DEFAULT_KEY
    if not isinstance(key, str) or key.partition(":")[0] not in ("header", "field") or not key.partition(":")[2]:
        raise FormatError(f"{source}: routing 'key' must be header:NAME or field:NAME, found {key!r}", file=source)
    rb = data.get("rollback") or {}
    if not isinstance(rb, dict):
        raise FormatError(f"{source}: 'rollback' must be a mapping", file=source)
    thresholds = Thresholds(
        window_seconds=_number(rb, "window_seconds", source, default=60.0, lo=MIN_WINDOW_SECONDS),
        min_requests=_number(rb, "min_requests", source, default=50, lo=1, whole=True),
        max_error_rate=_number(rb, "max_error_rate", source, default=0.05, lo=0, hi=1, optional=True),
        max_p99_ms=_number(rb, "max_p99_ms", source, default=None, lo=0, optional=True),
        max_prediction_shift=_number(rb, "max_prediction_shift", source, default=None, lo=0, optional=True),
    )
    event = data.get("last_event")
    pin = data.get("pin")
    if pin is not None and not isinstance(pin, dict):
        raise FormatError(f"{source}: 'pin' must be a mapping (by, at, reason)", file=source, field="pin")
    return Deployment(
        model=model,
        production=production,
        revision=_number(data, "revision", source, default=0, lo=0, whole=True),
        candidate=candidate,
        key=key,
        thresholds=thresholds,
        updated_at=str(data.get("updated_at") or ""),
        updated_by=str(data.get("updated_by") or ""),
        last_event=dict(event) if isinstance(event, dict) else None,
        pin={str(k): v for k, v in pin.items()} if isinstance(pin, dict) else None,
    )


def load_deployment(repo: Repo, model: str) -> Deployment | None:
    path = deployment_path(repo, model)
    try:
        data = read_bytes(path, what="deployment file")
    except FileNotFoundError:
        return None
    return parse_deployment_bytes(data, path, model)


def parse_deployment_bytes(data: bytes, path: Path, model: str) -> Deployment:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{display_path(path)}: not a text file (not UTF-8)") from None
    dep = parse_deployment(text, display_path(path))
    if dep.model != model:
        raise FormatError(f"{display_path(path)}: names model '{dep.model}', not '{model}'")
    return dep


HEADER = "# mlops deployment: `mlops deploy` writes it, a running `mlops serve` follows it (docs/serving.md)\n"


def _write(repo: Repo, dep: Deployment) -> None:
    path = deployment_path(repo, dep.model)
    text = HEADER + dump_yaml(dep.to_dict())
    try:  # never write a file that the readers (serve, status, deploy itself) would refuse
        parse_deployment(text, display_path(path))
    except FormatError as exc:
        raise UsageError(f"not written: {exc.message}", hint=f"{display_path(path)} is left as it was") from None
    folder = deployments_dir(repo)
    folder.mkdir(parents=True, exist_ok=True)
    # under the model's lock no other writer of this file runs: its temp files are a killed writer's
    remove_stale_temps(folder, of=path.name)
    atomic_write(path, text)


class RevisionChanged(CouldNotComplete):
    """Someone else wrote the deployment since it was read (compare-and-swap lost)."""

    kind = "revision_changed"


def deployment_lock(repo: Repo, model: str) -> Any:
    """The lock every writer of the deployment holds; a flow that also changes the registry takes it first."""
    return _lock(repo, model)


def registry_production(source: Any, model: str) -> int | None:
    """The registry's production version of ``model``; None when it has none (or no such model)."""
    try:
        return source.resolve(f"{model}@production").version
    except UsageError:  # no version in production, or no such model: nothing to follow
        return None


def _followed(dep: Deployment, version: int, *, by: str, reason: str) -> Deployment:
    """``dep`` with production moved to the registry's ``version``; a candidate that became production leaves."""
    candidate = dep.candidate
    event: dict[str, Any] = {
        "event": "follow",
        "version": version,
        "previous": dep.production,
        "reason": reason,
        "at": now_iso(),
        "by": by,
    }
    if candidate is not None and candidate.version == version:
        event["candidate_removed"] = candidate.version
        candidate = None
    return replace(dep, production=version, candidate=candidate, last_event=event)


def agreement(dep: Deployment, in_registry: int | None) -> dict[str, Any]:
    """Whether the deployment serves what the registry names, and if not, why and what to do."""
    if in_registry == dep.production:
        return {"state": "pinned" if dep.pinned else "agrees", "message": None, "hint": None}
    if dep.pinned:
        return {
            "state": "pinned",
            "message": f"pinned at v{dep.production} on purpose; the registry's production is "
            + (f"v{in_registry}" if in_registry is not None else "none"),
            "hint": f"release the pin: mlops deploy {dep.model} --unpin",
        }
    if in_registry is None:
        return {
            "state": "no_registry_production",
            "message": f"the registry has no production version; the deployment keeps v{dep.production}",
            "hint": f"mlops promote {dep.model} VERSION --to production",
        }
    return {
        "state": "behind",
        "message": f"the deployment file names v{dep.production}, the registry v{in_registry}: "
        "a running server's controller, or the next deploy/promote/rollback, writes v"
        f"{in_registry} into it",
        "hint": f"mlops deploy {dep.model} (rewrites it now)",
    }


def update_deployment(
    repo: Repo,
    model: str,
    change: Callable[[Deployment | None], Deployment],
    *,
    by: str,
    expect_revision: int | None = None,
    before_write: Callable[[Deployment | None, Deployment], None] | None = None,
    source: Any = None,
    gate: Callable[[Deployment | None, Deployment], None] | None = None,
    state: Any = None,
) -> Deployment:
    """Read-change-write under the deployment's lock; the revision goes up by one.

    ``expect_revision``: refuse (RevisionChanged) when the file moved on since the caller read it.
    ``gate``: runs first, inside the lock (a promotion through the registry's gates: refused, nothing changes).
    ``before_write``: runs inside the lock before the file is replaced (an audit entry: if it
    fails, the change does not happen).
    ``source``: the registry; an unpinned deployment is written with its production version
    (read after ``before_write``, which may have changed it: a promotion through the gates).
    ``state``: a ``shared.SharedState`` (``--state URL``): the change is a compare-and-swap there
    (the next revision created only if absent), ``before_write`` runs once it has happened (an
    audit entry exactly once per change), and the local file becomes a copy of the new revision.
    The registry is not followed: each machine has its own, the shared deployment is the truth.
    """
    with _lock(repo, model):
        if state is not None:
            new = state.update(model, change, by=by, expect_revision=expect_revision, gate=gate, after=before_write)
            _write(repo, new)
            return new
        hook = before_write
        if gate is not None:

            def hook(old: Deployment | None, new: Deployment) -> None:
                gate(old, new)
                if before_write is not None:
                    before_write(old, new)

        return update_locked(
            repo, model, change, by=by, expect_revision=expect_revision, before_write=hook, source=source
        )


def mirror_shared(repo: Repo, model: str, state: Any) -> Deployment | None:
    """Copy the shared state's newest revision into the local deployment file (which the workers
    follow) when it differs; returns that revision (None: the shared state has none yet)."""
    dep = state.latest(model)
    if dep is None:
        return None
    with _lock(repo, model):
        local = load_deployment_quietly(repo, model)
        if local is None or local.to_dict() != dep.to_dict():
            _write(repo, dep)
    return dep


def load_deployment_quietly(repo: Repo, model: str) -> Deployment | None:
    """The local file, or None when absent or unreadable (a copy about to be replaced)."""
    try:
        return load_deployment(repo, model)
    except FormatError:
        return None


def update_locked(
    repo: Repo,
    model: str,
    change: Callable[[Deployment | None], Deployment],
    *,
    by: str,
    expect_revision: int | None = None,
    before_write: Callable[[Deployment | None, Deployment], None] | None = None,
    source: Any = None,
) -> Deployment:
    """``update_deployment`` for a caller already holding ``deployment_lock``."""
    current = load_deployment(repo, model)
    if expect_revision is not None and (current.revision if current else 0) != expect_revision:
        raise RevisionChanged(f"the deployment of {model} changed while this change was prepared")
    new = change(current)
    new = replace(new, revision=(current.revision if current else 0) + 1, updated_at=now_iso(), updated_by=by)
    if before_write is not None:
        before_write(current, new)
    if source is not None and not new.pinned:
        version = registry_production(source, model)
        if version is not None and version != new.production:
            new = _followed(new, version, by=by, reason="the registry's production version")
    _write(repo, new)
    return new


def follow_registry(
    repo: Repo, source: Any, model: str, *, by: str, reason: str, expect_revision: int | None = None
) -> Deployment | None:
    """Make an unpinned deployment name the registry's production version; None when nothing changed
    (no deployment, pinned, already in agreement, or no production version in the registry).
    Takes the deployment's lock: call ``follow_registry_locked`` when holding it."""
    with _lock(repo, model):
        return follow_registry_locked(repo, source, model, by=by, reason=reason, expect_revision=expect_revision)


def follow_registry_locked(
    repo: Repo, source: Any, model: str, *, by: str, reason: str, expect_revision: int | None = None
) -> Deployment | None:
    current = load_deployment(repo, model)
    if current is None or current.pinned:
        return None
    if expect_revision is not None and current.revision != expect_revision:
        raise RevisionChanged(f"the deployment of {model} changed while this change was prepared")
    version = registry_production(source, model)
    if version is None or version == current.production:
        return None
    new = replace(
        _followed(current, version, by=by, reason=reason),
        revision=current.revision + 1,
        updated_at=now_iso(),
        updated_by=by,
    )

    def audit() -> None:
        source.audit(
            "deployment_followed",
            model=model,
            production=version,
            previous=current.production,
            candidate_removed=(new.last_event or {}).get("candidate_removed"),
            reason=reason,
            actor=by,
        )

    audit()  # the audit entry first: if it cannot be written, the file is not changed
    _write(repo, new)
    return new


# --- the verbs: deploy, roll back, promote -------------------------------------------------------


def deploy(
    repo: Repo,
    source: Any,
    model: str,
    *,
    canary: int | None = None,
    shadow: int | None = None,
    weight: float | None = None,
    steps: tuple[float, ...] = (),
    interval_seconds: float | None = None,
    key: str | None = None,
    window_seconds: float | None = None,
    min_requests: int | None = None,
    max_error_rate: float | None = None,
    max_p99_ms: float | None = None,
    max_prediction_shift: float | None = None,
    pin: int | None = None,
    unpin: bool = False,
    pin_reason: str = "",
    by: str,
    state: Any = None,
) -> Deployment:
    """Write the desired deployment of ``model``; a running server follows it.

    ``state``: the replicas' shared state (``--state URL``): the change is made there (see ``update_deployment``).

    Production is the registry's production version, unless ``pin`` holds a version on purpose
    (kept until ``unpin``); a deployment already pinned stays pinned.
    """
    check_model_name(model)
    if pin is not None and unpin:
        raise UsageError("--pin and --unpin exclude each other")
    if pin is not None:
        source.resolve(f"{model}:{pin}")  # an unknown version is refused before anything is written
    if canary is not None and shadow is not None:
        raise UsageError("--canary and --shadow exclude each other", hint="deploy one candidate at a time")
    if (weight is not None or steps) and canary is None:
        raise UsageError("--weight and --steps go with --canary VERSION")
    if steps and weight is not None and weight != steps[0]:
        raise UsageError("--steps sets the weights; leave out --weight", hint="the first step is the starting weight")
    if steps and interval_seconds is None:
        raise UsageError("--steps needs --interval (how long each step must stay healthy)", hint="e.g. --interval 2m")
    if weight is not None and not 0 <= weight <= 100:
        raise UsageError(f"--weight must be a percentage in [0, 100], got {weight:g}")
    if interval_seconds is not None and not interval_seconds >= MIN_INTERVAL_SECONDS:
        raise UsageError(
            f"--interval must be at least {MIN_INTERVAL_SECONDS * 1000:g}ms, got {interval_seconds:g} s",
            hint="e.g. --interval 2m",
        )
    if window_seconds is not None and not window_seconds >= MIN_WINDOW_SECONDS:
        raise UsageError(
            f"--window must be at least {MIN_WINDOW_SECONDS:g} s, got {window_seconds:g} s", hint="e.g. --window 60s"
        )
    if key is not None:
        kind, _, name = key.partition(":")
        if kind not in ("header", "field") or not name:
            raise UsageError(
                f"--key must be header:NAME or field:NAME, got {key!r}", hint="e.g. --key field:customer_id"
            )
    current = load_deployment(repo, model) if state is None else state.latest(model)
    version = canary if canary is not None else shadow
    if version is not None:
        source.resolve(f"{model}:{version}")
    if current is None and pin is None:
        source.resolve(f"{model}@production")  # no production version: say so (exit 2) before the lock is taken
    started = now_iso()
    candidate = None
    if canary is not None:
        candidate = Candidate(
            version=canary,
            mode=CANARY,
            weight=steps[0] if steps else (10.0 if weight is None else float(weight)),
            steps=tuple(steps),
            interval_seconds=interval_seconds if steps else None,
            started_at=started,
            step_started_at=started if steps else "",
        )
    elif shadow is not None:
        candidate = Candidate(version=shadow, mode=SHADOW, started_at=started)
    base = current.thresholds if current else Thresholds()
    thresholds = Thresholds(
        window_seconds=base.window_seconds if window_seconds is None else window_seconds,
        min_requests=base.min_requests if min_requests is None else min_requests,
        max_error_rate=base.max_error_rate if max_error_rate is None else max_error_rate,
        max_p99_ms=base.max_p99_ms if max_p99_ms is None else max_p99_ms,
        max_prediction_shift=base.max_prediction_shift if max_prediction_shift is None else max_prediction_shift,
    )

    def change(old: Deployment | None) -> Deployment:
        # decided under the lock: the registry's production version of this moment (or the pin)
        kept_pin = None if unpin or old is None else old.pin
        if pin is not None:
            production = pin
            kept_pin = {"by": by, "at": now_iso(), "reason": pin_reason or "pinned with mlops deploy --pin"}
        elif kept_pin is not None and old is not None:
            production = old.production
        else:
            production = registry_production(source, model) or (old.production if old else None)
            if production is None:
                raise UsageError(
                    f"{model} has no production version to deploy",
                    hint=f"mlops promote {model} VERSION --to production",
                )
        if candidate is not None and candidate.version == production:
            raise UsageError(
                f"{model}:{candidate.version} is already the production version",
                hint="deploy another version as the candidate",
            )
        return Deployment(
            model=model,
            production=production,
            candidate=candidate,
            key=key or (old.key if old else DEFAULT_KEY),
            thresholds=thresholds,
            last_event=old.last_event if old else None,
            pin=kept_pin,
        )

    def audit(old: Deployment | None, new: Deployment) -> None:
        source.audit(
            "deploy",
            model=model,
            production=new.production,
            candidate=new.candidate.version if new.candidate else None,
            mode=new.candidate.mode if new.candidate else None,
            weight=new.candidate.weight if new.candidate and new.candidate.mode == CANARY else None,
            steps=list(new.candidate.steps) if new.candidate else None,
            pinned=new.pinned,
            actor=by,
        )

    return update_deployment(repo, model, change, by=by, before_write=audit, state=state)


def require_deployment(repo: Repo, model: str, *, state: Any = None) -> Deployment:
    dep = load_deployment(repo, model) if state is None else state.latest(model)
    if dep is None:
        if state is not None:
            raise UsageError(
                f"no deployment of {model} in the shared state {state.url}",
                hint=f"mlops deploy {model} --state {state.url}",
            )
        raise UsageError(
            f"no deployment of {model} ({display_path(deployment_path(repo, model))} does not exist)",
            hint=f"mlops deploy {model} --canary VERSION --weight 10",
        )
    return dep


def rollback(
    repo: Repo,
    source: Any,
    model: str,
    *,
    reason: str,
    by: str,
    automatic: bool = False,
    expect_revision: int | None = None,
    state: Any = None,
) -> Deployment:
    """All traffic back to production; the candidate leaves the deployment; an audit entry records why."""
    seen = require_deployment(repo, model, state=state)
    if seen.candidate is None:
        raise UsageError(f"{model} has no canary or shadow to roll back (all traffic goes to v{seen.production})")

    def change(old: Deployment | None) -> Deployment:
        if old is None or old.candidate is None:
            raise UsageError(f"{model} has no canary or shadow to roll back")
        event = {
            "event": "rollback",
            "version": old.candidate.version,
            "mode": old.candidate.mode,
            "reason": reason,
            "at": now_iso(),
            "by": by,
            "automatic": automatic,
        }
        return replace(old, candidate=None, last_event=event)

    def audit(old: Deployment | None, new: Deployment) -> None:
        assert old is not None and old.candidate is not None
        source.audit(
            "canary_rollback",
            model=model,
            version=old.candidate.version,
            mode=old.candidate.mode,
            production=old.production,
            reason=reason,
            automatic=automatic,
            actor=by,
        )

    return update_deployment(
        repo, model, change, by=by, expect_revision=expect_revision, before_write=audit, source=source, state=state
    )


def promote(
    repo: Repo,
    source: Any,
    model: str,
    *,
    reason: str,
    by: str,
    force: bool = False,
    expect_revision: int | None = None,
    state: Any = None,
) -> Deployment:
    """The candidate becomes production through the registry's gates (a refusal raises and changes nothing)."""
    seen = require_deployment(repo, model, state=state)
    if seen.candidate is None:
        raise UsageError(f"{model} has no canary or shadow to promote", hint=f"mlops deploy {model} --canary VERSION")

    def change(old: Deployment | None) -> Deployment:
        if old is None or old.candidate is None:
            raise UsageError(f"{model} has no canary or shadow to promote")
        event = {
            "event": "promote",
            "version": old.candidate.version,
            "mode": old.candidate.mode,
            "reason": reason,
            "at": now_iso(),
            "by": by,
            "previous": old.production,
        }
        if old.pin is not None:
            event["released_pin"] = old.production  # the promoted version is the registry's: follow it again
        return replace(old, production=old.candidate.version, candidate=None, last_event=event, pin=None)

    def gate(old: Deployment | None, new: Deployment) -> None:
        assert old is not None and old.candidate is not None
        source.promote(model, old.candidate.version, reason=reason, actor=by, force=force)

    return update_deployment(
        repo, model, change, by=by, expect_revision=expect_revision, gate=gate, source=source, state=state
    )
