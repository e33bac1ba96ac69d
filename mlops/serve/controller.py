"""Automatic rollback and the progressive canary, decided by one worker for all.

Every worker process of every `mlops serve` of a model tries, every few seconds, to take the
lock ``.mlops/tmp/locks/serve-<model>-controller.lock`` without waiting; the one holding it is
the controller (the OS frees the lock when its process dies, and another worker takes over).
Once a second the controller first keeps an unpinned deployment on the registry's production
version (the one truth: a registry change that reached the registry but not the file, by a
crash between the two writes or through the Python API, is written into the file), then adds
up the statistics snapshots of all workers and:

1. rolls the candidate back (canary or shadow) when, over the last ``window_seconds`` since
   the candidate started, with at least ``min_requests`` requests, its error rate (5xx) or p99
   latency passes the threshold and production, over the same window, does not do the same
   (``health.judge``: inputs that make both fail do not roll back a healthy candidate): the
   deployment file loses its candidate, records why, and the
   registry's audit log gets an entry;
2. for a progressive canary, once the current step has lasted ``interval_seconds`` and its own
   window is healthy with at least ``min_requests`` requests, raises the weight to the next
   step, or after the last step promotes the candidate through the registry's gates. A
   refused promotion holds the canary at its last weight, with the refusal in ``hold``.

Every decision is a compare-and-swap write of the deployment file; the other workers follow it
within their next poll. `canary_status` gives `mlops canary status` the same view.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import CheckFailed
from ..repo.repo import Repo
from .deployment import (
    CANARY,
    Deployment,
    RevisionChanged,
    agreement,
    follow_registry,
    load_deployment,
    now_iso,
    parse_iso,
    promote,
    registry_production,
    require_deployment,
    rollback,
    serve_dir,
    update_deployment,
)
from .health import Aggregate, Bucket, aggregate, distribution_distance, judge, read_snapshots
from .source import open_source

AUTOMATIC = "mlops serve (automatic)"


def candidate_key(dep: Deployment) -> tuple[str, int] | None:
    if dep.candidate is None:
        return None
    return (CANARY if dep.candidate.mode == CANARY else "shadow", dep.candidate.version)


def control_once(
    repo: Repo, source: Any, model: str, *, now: float | None = None, state: Any = None
) -> tuple[Deployment | None, str | None]:
    """One decision: (the new deployment, what happened) or (None, None) when nothing changed.

    ``state``: the replicas' shared state (``--state URL``, serve/shared.py): the deployment and the
    statistics of all replicas are read there and the decision is a compare-and-swap there; the
    caller holds the controller lease. Each machine has its own registry, so the deployment is
    not moved to a registry's production version (the shared deployment is the truth)."""
    now = time.time() if now is None else now
    dep = load_deployment(repo, model) if state is None else state.latest(model)
    if dep is None:
        return None, None
    if (
        not dep.pinned and state is None
    ):  # the registry moved without this file (a crash between the two writes, the Python API)
        try:
            followed = follow_registry(
                repo,
                source,
                model,
                by=AUTOMATIC,
                reason="the registry's production version changed",
                expect_revision=dep.revision,
            )
        except RevisionChanged:
            return None, None
        if followed is not None:
            return followed, "follow"
    if dep.candidate is None:
        return None, None
    cand, th = dep.candidate, dep.thresholds
    key = candidate_key(dep)
    assert key is not None
    snaps = (
        read_snapshots(serve_dir(repo, model), prune=True) if state is None else state.read_stats(now=now, prune=True)
    )
    started = parse_iso(cand.started_at) or 0.0
    production_key = ("production", dep.production)
    windows = aggregate(snaps, since=max(now - th.window_seconds, started), until=now).window
    verdict = judge(  # the candidate against production over the same window: blamed only for its own failures
        windows.get(key),
        min_requests=th.min_requests,
        max_error_rate=th.max_error_rate,
        max_p99_ms=th.max_p99_ms,
        max_prediction_shift=th.max_prediction_shift,
        window_seconds=th.window_seconds,
        baseline=windows.get(production_key, Bucket()),
    )
    try:
        if verdict.healthy is False:
            what = "canary" if cand.mode == CANARY else "shadow"
            new = rollback(
                repo,
                source,
                model,
                reason=f"{what} v{cand.version}: {verdict.reason}",
                by=AUTOMATIC,
                automatic=True,
                expect_revision=dep.revision,
                state=state,
            )
            return new, "rollback"
        if cand.mode != CANARY or not cand.progressive or cand.hold:
            return None, None
        step_started = parse_iso(cand.step_started_at) or started
        if now - step_started < float(cand.interval_seconds or 0):
            return None, None
        step_windows = aggregate(snaps, since=max(now - th.window_seconds, step_started), until=now).window
        step = judge(
            step_windows.get(key),
            min_requests=th.min_requests,
            max_error_rate=th.max_error_rate,
            max_p99_ms=th.max_p99_ms,
            max_prediction_shift=th.max_prediction_shift,
            window_seconds=th.window_seconds,
            baseline=step_windows.get(production_key, Bucket()),
        )
        if not step.healthy:
            return None, None  # too few requests at this step yet: wait for evidence
        later = [s for s in cand.steps if s > cand.weight]
        if later:

            def raise_weight(old: Deployment | None) -> Deployment:
                assert old is not None and old.candidate is not None
                return replace(old, candidate=replace(old.candidate, weight=later[0], step_started_at=now_iso(now)))

            def audit(old: Deployment | None, new: Deployment) -> None:
                source.audit(
                    "canary_step",
                    model=model,
                    version=cand.version,
                    weight=later[0],
                    previous_weight=cand.weight,
                    reason=step.reason,
                    actor=AUTOMATIC,
                )

            return update_deployment(
                repo, model, raise_weight, by=AUTOMATIC, expect_revision=dep.revision, before_write=audit, state=state
            ), "step"
        steps = ",".join(f"{s:g}" for s in cand.steps)
        try:
            new = promote(
                repo,
                source,
                model,
                reason=f"progressive canary: steps {steps} healthy; {step.reason}",
                by="mlops serve (progressive canary)",
                expect_revision=dep.revision,
                state=state,
            )
            return new, "promote"
        except CheckFailed as exc:
            refusal = exc.message

            def hold(old: Deployment | None) -> Deployment:
                assert old is not None and old.candidate is not None
                return replace(old, candidate=replace(old.candidate, hold=f"promotion refused: {refusal}"))

            return update_deployment(repo, model, hold, by=AUTOMATIC, expect_revision=dep.revision, state=state), "hold"
    except RevisionChanged:
        return None, None  # someone deployed meanwhile: decide again on the new file


def canary_status(
    repo: Repo,
    model: str,
    *,
    window_seconds: float | None = None,
    now: float | None = None,
    source: Any = None,
    state: Any = None,
) -> dict[str, Any]:
    """What `mlops canary status` shows: per variant over the window, the verdict, the progression,
    and whether the deployment agrees with the registry (or is pinned, and how to release the pin).
    ``state``: the replicas' shared state: its deployment, and the statistics summed over all replicas."""
    dep = require_deployment(repo, model, state=state)
    source = open_source(repo) if source is None else source
    in_registry = registry_production(source, model)
    snaps = read_snapshots(serve_dir(repo, model)) if state is None else state.read_stats(now=now)
    live = [s for s in snaps if s.get("alive")]
    now = time.time() if now is None else now
    newest = max((float(s.get("written", 0)) for s in snaps), default=None)
    until = now if live or newest is None else newest
    th = dep.thresholds
    window = float(window_seconds if window_seconds is not None else th.window_seconds)
    cand = dep.candidate
    started = parse_iso(cand.started_at) if cand else None
    since = max(until - window, started or 0.0)
    agg: Aggregate = aggregate(snaps, since=since, until=until)
    variants: list[dict[str, Any]] = []
    production = agg.window.get(("production", dep.production), Bucket())
    variants.append(
        {
            "variant": "production",
            "version": dep.production,
            "weight": 100.0 - (cand.weight if cand and cand.mode == CANARY else 0.0),
            **production.summary(),
        }
    )
    out: dict[str, Any] = {
        "model": model,
        "revision": dep.revision,
        "updated_at": dep.updated_at,
        "updated_by": dep.updated_by,
        "production": dep.production,
        "registry_production": in_registry,
        "pinned": dep.pinned,
        "pin": dep.pin,
        "agreement": agreement(dep, in_registry),
        "window_seconds": window,
        "routing_key": dep.key,
        "thresholds": th.to_dict(),
        "servers": {
            "live_workers": len(live),
            "snapshots": len(snaps),
            "as_of": now_iso(until) if snaps else None,
            "running": bool(live),
        },
    }
    if cand is not None:
        key = candidate_key(dep)
        assert key is not None
        bucket = agg.window.get(key, Bucket())
        entry = {
            "variant": key[0],
            "version": cand.version,
            "weight": cand.weight if cand.mode == CANARY else None,
            **bucket.summary(),
        }
        if cand.mode == CANARY:
            entry["distribution_distance"] = distribution_distance(production, bucket)
        variants.append(entry)
        verdict = judge(
            agg.window.get(key),
            min_requests=th.min_requests,
            max_error_rate=th.max_error_rate,
            max_p99_ms=th.max_p99_ms,
            max_prediction_shift=th.max_prediction_shift,
            window_seconds=window,
            baseline=production,
        )
        out["candidate"] = {
            "version": cand.version,
            "mode": cand.mode,
            "weight": cand.weight if cand.mode == CANARY else None,
            "started_at": cand.started_at,
            "hold": cand.hold,
            "verdict": {None: "waiting", True: "healthy", False: "unhealthy"}[verdict.healthy],
            "reason": verdict.reason,
        }
        if cand.progressive:
            step_started = parse_iso(cand.step_started_at) or started or until
            later = [s for s in cand.steps if s > cand.weight]
            out["candidate"]["progression"] = {
                "steps": list(cand.steps),
                "interval_seconds": cand.interval_seconds,
                "step_started_at": cand.step_started_at,
                "next": later[0] if later else "promote",
                "due_at": now_iso(step_started + float(cand.interval_seconds or 0)),
            }
    out["variants"] = variants
    out["last_event"] = dep.last_event
    return out


def controller_lock_path(repo: Repo, model: str) -> Path:
    return repo.tmp / "locks" / f"serve-{model}-controller.lock"
