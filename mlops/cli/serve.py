"""Serving commands: serve, deploy, canary status|promote|rollback, predict."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from typing import Any

import typer

from ..errors import CheckFailed, ConfigError, UsageError
from ..repo.repo import find_repo
from .boundary import JSON_OPTION, comma_names, command, duration, positive_duration
from .output import SETTINGS, Output

canary_app = typer.Typer(no_args_is_help=True)


STATE_HELP = (
    "The replicas' shared state: an s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL_S3) or a folder; "
    "every server given it follows one deployment stored there (docs/serving.md)."
)


def _state(url: str | None, repo: Any) -> Any:
    """The shared state ``--state`` names, or None."""
    if url is None:
        return None
    from ..serve.shared import open_state

    return open_state(url, root=repo.root)


def register(app: typer.Typer) -> None:
    command(app, "serve")(serve)
    command(app, "deploy")(deploy)
    command(app, "predict")(predict)
    app.add_typer(canary_app, name="canary", help="The running canary or shadow of a model: status, promote, rollback.")


# --- serve -----------------------------------------------------------------------------------


def serve(
    ref: str | None = typer.Argument(
        None, help="The model to serve: churn@production, churn:4 or churn (its latest version); none with --model-dir."
    ),
    port: int = typer.Option(
        8080,
        "--port",
        "-p",
        min=0,
        max=65535,
        envvar="PORT",  # the container platforms' convention (Knative, hence KServe, Cloud Run)
        help="TCP port (0: any free port; the address is printed); $PORT when set.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 for every interface."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, max=64, help="Worker processes sharing the port."),
    token_env: str | None = typer.Option(
        None,
        "--token-env",
        help=(
            "Name of an environment variable holding a bearer token: "
            "every endpoint but the health checks then needs it."
        ),
    ),
    max_body_mb: float = typer.Option(
        10.0, "--max-body-mb", min=0.001, help="Largest request body (MB); larger ones get 413."
    ),
    max_batch: int = typer.Option(64, "--max-batch", min=1, help="Most rows folded into one model call."),
    max_wait_ms: float = typer.Option(
        2.0,
        "--max-wait-ms",
        min=0,
        help="Longest wait (ms) for more rows before a model call, only while other requests are arriving.",
    ),
    max_queue: int = typer.Option(
        256, "--max-queue", min=1, help="Requests waiting per model version; past it 503 with Retry-After."
    ),
    timeout: str = typer.Option("30s", "--timeout", help="Longest a request may wait for its prediction (504 after)."),
    body_timeout: str = typer.Option(
        "30s", "--body-timeout", help="Longest a request body may take to arrive (408 after, connection closed)."
    ),
    request_log: bool = typer.Option(
        True,
        "--request-log/--no-request-log",
        help="Append inputs and predictions to Parquet files under .mlops/serve/.",
    ),
    log_rotate: str = typer.Option(
        "60s", "--log-rotate", help="Finish a request-log file after this long (readers see finished files)."
    ),
    log_max_file_mb: float = typer.Option(
        64.0, "--log-max-file-mb", min=0.01, help="Finish a request-log file past this size."
    ),
    log_max_total_mb: float = typer.Option(
        1024.0, "--log-max-total-mb", min=0.01, help="Keep at most this much request log; the oldest files go first."
    ),
    log_max_age: str = typer.Option("7d", "--log-max-age", help="Remove request-log files older than this."),
    access_log: bool = typer.Option(
        False, "--access-log", help="Print one line per HTTP request (uvicorn's access log)."
    ),
    model_dir: str | None = typer.Option(
        None,
        "--model-dir",
        help="Serve a bundle from 'mlops export model' (no repository needed); every file's hash is checked first.",
    ),
    state_dir: str | None = typer.Option(
        None,
        "--state-dir",
        help="With --model-dir: where request logs and statistics go (default: a new temporary folder).",
    ),
    expect_digest: str | None = typer.Option(
        None,
        "--expect-digest",
        help="With --model-dir: refuse any bundle but the one with this digest ('mlops export model' prints it).",
    ),
    runtime: str = typer.Option(
        "auto",
        "--runtime",
        help="With --model-dir: 'onnx' serves the bundle's ONNX form (export --onnx) with onnxruntime, 'pickle' "
        "the pickle; 'auto' (default) the ONNX form when the bundle has one and onnxruntime is installed.",
    ),
    state: str | None = typer.Option(None, "--state", help=STATE_HELP),
    lease: str = typer.Option(
        "10s", "--lease", help="With --state: the controller lease; a dead controller is replaced within it."
    ),
) -> None:
    """Serve a registered model over HTTP (own JSON, MLflow scoring protocol, Open Inference Protocol V2).

    A deployment file written by 'mlops deploy' (.mlops/deployments/NAME.yaml) takes precedence
    over REF for which versions answer, and is followed while the server runs.
    """
    from ..serve.config import MiB, ServeConfig
    from ..serve.deployment import deployment_path, load_deployment
    from ..serve.server import run
    from ..serve.source import Preloaded, open_source

    out = Output()
    if token_env is not None and not os.environ.get(token_env):
        raise UsageError(
            f"--token-env {token_env}: the variable is empty or not set",
            hint=f"export {token_env}=<a long random token>",
        )
    timeout_seconds = positive_duration(timeout, "--timeout")
    body_seconds = positive_duration(body_timeout, "--body-timeout")
    rotate_seconds = positive_duration(log_rotate, "--log-rotate")
    max_age_seconds = positive_duration(log_max_age, "--log-max-age")
    if model_dir is None and ref is None:
        raise UsageError("serve: name the model to serve (REF), or a bundle folder with --model-dir")
    bundle_only = {"--state-dir": state_dir is not None, "--expect-digest": expect_digest is not None}
    bundle_only["--runtime"] = runtime != "auto"
    given = [name for name, used in bundle_only.items() if used]
    if model_dir is None and given:
        raise UsageError(f"{' and '.join(given)} go{'es' if len(given) == 1 else ''} with --model-dir (a bundle)")
    with _long_lived_allocations():
        if model_dir is not None:
            repo, source, ref = _bundle_source(model_dir, ref, state_dir, expect_digest, runtime)
            bundle: str | None = str(source.bundle.root)
        else:
            repo, bundle = find_repo(), None
            source = open_source(repo)
        info = source.resolve(ref)
        model = source.load(info)  # fails here, with one line, rather than in every worker
    if info.signature is not None and info.signature.feature_service:
        from ..serve.features import check_feature_inputs

        check_feature_inputs(repo, info.signature.feature_service, bundle=bundle)  # the store reached, or one line
    lease_seconds = positive_duration(lease, "--lease")
    shared = _state(state, repo)
    if shared is not None:
        from ..serve.deployment import mirror_shared

        if not shared.remote.probe_conditional_create():
            raise ConfigError(
                f"--state {state}: the store ignores conditional creates (If-None-Match: *), so two writers "
                "could overwrite each other's deployment revision",
                hint="use AWS S3, or an S3-compatible store that honours If-None-Match, or a shared folder",
            )

        mirror_shared(repo, info.name, shared)  # the store reachable and its deployment readable, or one line now
    dep = load_deployment(repo, info.name)
    config = ServeConfig(
        root=str(repo.root),
        ref=ref,
        bundle=bundle,
        runtime=runtime,
        host=host,
        port=port,
        workers=workers,
        token_env=token_env,
        max_body_bytes=int(max_body_mb * MiB),
        max_batch_rows=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        timeout_seconds=timeout_seconds,
        body_seconds=body_seconds,
        request_log=request_log,
        log_rotate_seconds=rotate_seconds,
        log_max_file_bytes=int(log_max_file_mb * MiB),
        log_max_total_bytes=int(log_max_total_mb * MiB),
        log_max_age_seconds=max_age_seconds,
        access_log=access_log,
        state=state,
        lease_seconds=lease_seconds,
        debug=SETTINGS.debug,
    )
    if dep is not None and dep.production != info.version:
        out.warn(
            f"following {repo.rel(deployment_path(repo, info.name))}: "
            f"production is v{dep.production} (not v{info.version}, which {ref} names)"
        )

    by = ", its ONNX form by onnxruntime" if getattr(model, "mlops_runtime", "") == "onnxruntime" else ""
    # one worker serves what was verified and loaded here; several each open and verify it in their own
    # process, and this one (the supervisor) need not hold a copy for the server's whole life
    preloaded = Preloaded(source, info, model) if workers == 1 else None
    del model

    def announce(url: str) -> None:
        shown = dep.production if dep is not None else info.version
        extra = f", {dep.candidate.mode} v{dep.candidate.version}" if dep is not None and dep.candidate else ""
        out.info(
            f"serving {info.name} v{shown}{extra}{by} on {url} ({workers} worker{'s' if workers > 1 else ''}"
            f"{', bearer token required' if token_env else ''}); stop with Ctrl-C or SIGTERM"
        )

    run(config, preloaded=preloaded, announce=announce)
    out.info("stopped: requests in flight finished, request logs closed")


@contextlib.contextmanager
def _long_lived_allocations() -> Iterator[None]:
    """Loading the model (its library imported, its file unpickled) allocates objects that live as long as
    the server: the cyclic collector would walk them over and over for nothing (about a tenth of a
    scikit-learn model's start-up). It stays off while they are made, then they are frozen (never scanned
    again; the few hundred cycles start-up leaves are kept rather than paying a full collection) and it runs
    as usual for what serving allocates."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _bundle_source(
    model_dir: str, ref: str | None, state_dir: str | None, expect_digest: str | None, runtime: str
) -> Any:
    """(the state folder as the server's repo, the verified bundle's source, the reference it serves)."""
    from pathlib import Path

    from ..errors import CorruptObjectError
    from ..repo.repo import Repo
    from ..serve.bundle import BundleSource, check_runtime, open_bundle
    from ..serve.scratch import scratch_state_dir

    check_runtime(runtime)  # before the bundle's files are hashed
    bundle = open_bundle(model_dir)
    if expect_digest is not None and bundle.digest != expect_digest.strip().lower():
        raise CorruptObjectError(
            f"bundle {bundle.root}: its digest is {bundle.digest}, not {expect_digest} as expected; refusing it",
            hint="serve the bundle that export printed, or drop --expect-digest",
        )
    state = Path(state_dir) if state_dir else scratch_state_dir()
    state.mkdir(parents=True, exist_ok=True)
    return Repo(state.resolve()), BundleSource(bundle, runtime=runtime), ref or bundle.info().ref()


# --- deploy ----------------------------------------------------------------------------------


def _deployment_lines(out: Output, dep: Any) -> None:
    cand = dep.candidate
    out.row(("model     ", "bold"), (dep.model, None))
    pinned = f" (pinned: {dep.pin.get('reason')}; release: mlops deploy {dep.model} --unpin)" if dep.pin else ""
    out.row(("production", "bold"), (f"v{dep.production}{pinned}", "green"))
    if cand is None:
        out.row(("candidate ", "bold"), ("none: all traffic to production", None))
    elif cand.mode == "shadow":
        out.row(
            ("shadow    ", "bold"),
            (f"v{cand.version}: sees a copy of every request; callers get production's answer", "cyan"),
        )
    else:
        out.row(("canary    ", "bold"), (f"v{cand.version} at {cand.weight:g}% of requests", "yellow"))
        if cand.steps:
            out.row(
                ("steps     ", "bold"),
                (
                    ", ".join(f"{s:g}%" for s in cand.steps)
                    + f", each after {cand.interval_seconds:g} s healthy, then promotion",
                    None,
                ),
            )
        if cand.hold:
            out.row(("hold      ", "bold"), (cand.hold, "red"))
    th = dep.thresholds
    limits = [
        f"error rate > {th.max_error_rate:.1%}" if th.max_error_rate is not None else None,
        f"p99 > {th.max_p99_ms:g} ms" if th.max_p99_ms is not None else None,
        f"prediction shift > {th.max_prediction_shift:g}" if th.max_prediction_shift is not None else None,
    ]
    rule = " or ".join(x for x in limits if x) or "never (no thresholds)"
    out.row(
        ("rollback  ", "bold"), (f"when {rule} over {th.window_seconds:g} s with >= {th.min_requests} requests", None)
    )
    out.row(("routing   ", "bold"), (f"sticky by {dep.key}", None))
    out.row(("revision  ", "bold"), (f"{dep.revision} ({dep.updated_at} by {dep.updated_by})", None))


def deploy(
    model: str = typer.Argument(..., help="Model name."),
    canary: int | None = typer.Option(None, "--canary", help="Version to send a share of the requests to."),
    weight: float | None = typer.Option(None, "--weight", help="Percent of requests to the canary (default 10)."),
    shadow: int | None = typer.Option(
        None, "--shadow", help="Version that sees a copy of every request; callers get production's answer."
    ),
    steps: str | None = typer.Option(
        None, "--steps", help="Progressive canary: weights to go through, e.g. 5,25,50; promoted after the last."
    ),
    interval: str | None = typer.Option(None, "--interval", help="How long each step must stay healthy, e.g. 2m."),
    key: str | None = typer.Option(
        None,
        "--key",
        help="What keeps a caller on one variant: header:NAME (default header:x-request-id) or field:NAME.",
    ),
    window: str | None = typer.Option(None, "--window", help="Sliding window of the automatic rollback (default 60s)."),
    min_requests: int | None = typer.Option(
        None, "--min-requests", min=1, help="Requests the window needs before judging (default 50)."
    ),
    max_error_rate: float | None = typer.Option(
        None, "--max-error-rate", min=0, max=1, help="Roll back past this error rate, 0-1 (default 0.05)."
    ),
    max_p99_ms: float | None = typer.Option(
        None, "--max-p99-ms", min=0, help="Roll back past this p99 latency in ms (default: none)."
    ),
    max_prediction_shift: float | None = typer.Option(
        None,
        "--max-prediction-shift",
        min=0,
        help=(
            "Roll back when the candidate's answers depart from production's on the same traffic: classes by "
            "total variation distance (0-1), numbers by mean difference in production std devs (default: none)."
        ),
    ),
    pin: int | None = typer.Option(
        None,
        "--pin",
        min=1,
        help="Hold this version in production whatever the registry says (until --unpin).",
    ),
    unpin: bool = typer.Option(False, "--unpin", help="Release a pin: production follows the registry again."),
    reason: str = typer.Option("", "--reason", "-m", help="Why the version is pinned (kept in the file)."),
    state: str | None = typer.Option(None, "--state", help=STATE_HELP),
    json_output: bool = JSON_OPTION,
) -> None:
    """Set which versions of a model take traffic: canary, shadow or production only; a running server follows.

    Production is the registry's production version (mlops promote/rollback move both), unless
    pinned with --pin."""
    from ..serve.deployment import deployment_path, parse_steps
    from ..serve.source import open_source
    from ..workflows.production import deploy as deploy_flow

    out = Output(json_output=json_output)
    step_values = parse_steps(steps) if steps else ()
    repo = find_repo()
    source = open_source(repo)
    dep = deploy_flow(
        repo,
        model,
        canary=canary,
        shadow=shadow,
        weight=weight,
        steps=step_values,
        interval_seconds=duration(interval, "--interval"),
        key=key,
        window_seconds=duration(window, "--window"),
        min_requests=min_requests,
        max_error_rate=max_error_rate,
        max_p99_ms=max_p99_ms,
        max_prediction_shift=max_prediction_shift,
        pin=pin,
        unpin=unpin,
        pin_reason=reason,
        state=_state(state, repo),
    )
    if dep.candidate is not None:
        mine = source.resolve(f"{model}:{dep.candidate.version}").signature
        theirs = source.resolve(f"{model}:{dep.production}").signature
        if mine is not None and theirs is not None and mine.names != theirs.names:
            out.warn(
                f"v{dep.candidate.version} takes columns {', '.join(mine.names)}; production v{dep.production} takes "
                f"{', '.join(theirs.names)}: each request is read with the signature of the variant that answers it, "
                "so callers sending rows by position (MLflow dataframe_split without columns, instances/inputs lists, "
                "a V2 [N, K] tensor) should name their columns instead"
            )
    if out.json:
        out.emit_json({"path": repo.rel(deployment_path(repo, model)), "state": state, **dep.to_dict()})
        return
    _deployment_lines(out, dep)
    if state is not None:
        out.info(f"wrote revision {dep.revision} to {state}; every server with --state {state} follows it")
        return
    out.info(
        f"wrote {repo.rel(deployment_path(repo, model))}; "
        "a running 'mlops serve' follows it within a second (commit it to keep it)"
    )


# --- canary ----------------------------------------------------------------------------------


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _distribution(summary: dict[str, Any]) -> str:
    dist = summary.get("distribution") or {}
    if "classes" in dist:
        return " ".join(f"{k}:{v:.0%}" for k, v in list(dist["classes"].items())[:4])
    if "numeric" in dist:
        n = dist["numeric"]
        return f"mean {n['mean']:.4g} sd {n['std']:.3g}"
    return "-"


@command(canary_app, "status")
def canary_status(
    model: str = typer.Argument(..., help="Model name."),
    window: str | None = typer.Option(
        None, "--window", help="Look at this window instead of the rollback window, e.g. 5m (at most 10m)."
    ),
    check: bool = typer.Option(
        False,
        "--check",
        help=(
            "Exit 1 unless a candidate is deployed and healthy "
            "(for CI: not failing, not rolled back, enough requests seen)."
        ),
    ),
    state: str | None = typer.Option(None, "--state", help=STATE_HELP),
    json_output: bool = JSON_OPTION,
) -> None:
    """Per variant over the window: requests, errors, p50/p99 latency, prediction distribution, disagreement."""
    from ..serve.controller import canary_status as status_core
    from ..serve.health import KEEP_SECONDS

    out = Output(json_output=json_output)
    repo = find_repo()
    seconds = None if window is None else positive_duration(window, "--window")
    if seconds is not None and seconds > KEEP_SECONDS:
        raise UsageError(
            f"--window {window}: the server keeps the last {KEEP_SECONDS // 60:g} minutes only", hint="e.g. --window 5m"
        )
    report = status_core(repo, model, window_seconds=seconds, state=_state(state, repo))
    if out.json:
        out.emit_json(report)
    else:
        _show_status(out, model, report)
    if check:
        _check_healthy(model, report, reported=out.json)


def _check_healthy(model: str, report: dict, *, reported: bool) -> None:
    """The --check gate: a candidate that is healthy passes; anything else is exit 1, with why."""
    cand = report.get("candidate")
    if cand and cand["verdict"] == "healthy":
        return
    if cand:
        why = f"{cand['mode']} v{cand['version']} is {cand['verdict']}: {cand['reason']}"
    else:
        event = report.get("last_event") or {}
        why = (
            f"no candidate: v{event.get('version')} was rolled back ({event.get('reason')})"
            if event.get("event") == "rollback"
            else f"no candidate deployed: all traffic to production v{report['production']}"
        )
    error = CheckFailed(f"canary of {model} not healthy: {why}", hint="see 'mlops canary status " + model + "'")
    raise (error.after_report() if reported else error)


def _show_status(out: Output, model: str, report: dict) -> None:
    servers = report["servers"]
    state = (
        f"{servers['live_workers']} live worker(s)"
        if servers["running"]
        else f"no server running (figures as of {servers['as_of']})"
        if servers["as_of"]
        else "no statistics yet (is mlops serve running?)"
    )
    out.row(("model     ", "bold"), (f"{model}, deployment revision {report['revision']} ({state})", None))
    agreement = report.get("agreement") or {}
    production = f"v{report['production']}"
    if agreement.get("message"):
        production += f": {agreement['message']}"
    elif agreement.get("state") == "agrees":
        production += " (the registry's production version)"
    out.row(("production", "bold"), (production, "yellow" if agreement.get("message") else "green"))
    if agreement.get("hint") and agreement.get("message"):
        out.row(("          ", "bold"), (agreement["hint"], None))
    cand = report.get("candidate")
    if cand:
        style = {"healthy": "green", "unhealthy": "red", "waiting": "yellow"}[cand["verdict"]]
        share = f" at {cand['weight']:g}%" if cand["mode"] == "canary" else ""
        out.row(
            ("candidate ", "bold"),
            (f"{cand['mode']} v{cand['version']}{share}: {cand['verdict']}", style),
            (f"({cand['reason']})", None),
        )
        prog = cand.get("progression")
        if prog:
            nxt = "promotion" if prog["next"] == "promote" else f"{prog['next']:g}%"
            out.row(
                ("progress  ", "bold"),
                (
                    (
                        f"steps {', '.join(f'{s:g}%' for s in prog['steps'])}; "
                        f"next: {nxt} when healthy after {prog['due_at']}"
                    ),
                    None,
                ),
            )
        if cand.get("hold"):
            out.row(("hold      ", "bold"), (cand["hold"], "red"))
    else:
        out.row(("candidate ", "bold"), (f"none: all traffic to production v{report['production']}", None))
    event = report.get("last_event")
    if event:
        style = "red" if event.get("event") == "rollback" else "green"
        out.row(
            ("last event", "bold"),
            (f"{event.get('event')} of v{event.get('version')} at {event.get('at')} by {event.get('by')}", style),
        )
        out.row(("why       ", "bold"), (str(event.get("reason")), None))
    out.line()
    columns = [
        "variant",
        "version",
        "weight",
        "requests",
        "errors",
        "error rate",
        "p50 ms",
        "p99 ms",
        "predictions",
        "disagreement",
    ]
    rows = []
    for v in report["variants"]:
        disagreement = v.get("disagreement")
        if disagreement is None and v.get("distribution_distance") is not None:
            disagreement = f"{v['distribution_distance']:.3f} (distribution distance)"
        elif disagreement is not None:
            disagreement = f"{disagreement:.2%} of {v.get('compared_rows')} rows"
        requests = f"{v['requests']} (+{v['bad_requests']} 4xx)" if v.get("bad_requests") else v["requests"]
        rows.append(
            [
                v["variant"],
                f"v{v['version']}",
                "-" if v.get("weight") is None else f"{v['weight']:g}%",
                requests,
                v["errors"],
                f"{v['error_rate']:.2%}",
                _ms(v["p50_ms"]),
                _ms(v["p99_ms"]),
                _distribution(v),
                disagreement or "-",
            ]
        )
    out.table(columns, rows, title=f"last {report['window_seconds']:g} s", header=True)


@command(canary_app, "promote")
def canary_promote(
    model: str = typer.Argument(..., help="Model name."),
    reason: str = typer.Option("canary promoted", "--reason", "-m", help="Why: recorded in the audit log."),
    force: bool = typer.Option(
        False, "--force", help="Passed to the registry's gates (only where its policy allows forcing)."
    ),
    state: str | None = typer.Option(None, "--state", help=STATE_HELP),
    json_output: bool = JSON_OPTION,
) -> None:
    """Make the canary (or shadow) the production version, through the registry's gates; audit-logged."""
    from ..workflows.production import canary_promote as promote

    out = Output(json_output=json_output)
    repo = find_repo()
    dep = promote(repo, model, reason=reason, force=force, state=_state(state, repo))
    if out.json:
        out.emit_json(dep.to_dict())
        return
    out.line(
        f"promoted {model} v{dep.production} to production (was v{(dep.last_event or {}).get('previous')}); "
        f"all traffic to v{dep.production}"
    )


@command(canary_app, "rollback")
def canary_rollback(
    model: str = typer.Argument(..., help="Model name."),
    reason: str = typer.Option("rolled back by hand", "--reason", "-m", help="Why: recorded in the audit log."),
    state: str | None = typer.Option(None, "--state", help=STATE_HELP),
    json_output: bool = JSON_OPTION,
) -> None:
    """Send all traffic back to production: the canary or shadow leaves the deployment; audit-logged."""
    from ..workflows.production import canary_rollback as rollback

    out = Output(json_output=json_output)
    repo = find_repo()
    dep = rollback(repo, model, reason=reason, state=_state(state, repo))
    if out.json:
        out.emit_json(dep.to_dict())
        return
    event = dep.last_event or {}
    out.line(
        f"rolled back {model}: {event.get('mode')} v{event.get('version')} removed; "
        f"all traffic to production v{dep.production}"
    )


# --- predict ---------------------------------------------------------------------------------


def predict(
    ref: str = typer.Argument(..., help="The model: churn@production, churn:4 or churn."),
    input_path: str = typer.Argument(..., metavar="INPUT", help="A .parquet or .csv file."),
    output: str = typer.Option(..., "--output", "-o", help="Where to write predictions (.parquet or .csv)."),
    chunk_rows: int = typer.Option(
        50_000, "--chunk-rows", min=1, help="Rows read, checked and scored at a time (bounds memory)."
    ),
    keep: str | None = typer.Option(
        None, "--keep", help="Input columns to copy to the output, comma-separated (default: all; '' for none)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Score a file in chunks: every chunk checked against the signature; nothing written unless all succeed."""
    from ..serve.predict import predict_file
    from ..serve.source import open_source

    out = Output(json_output=json_output)
    repo = find_repo()
    kept = None if keep is None else list(comma_names(keep))
    result = predict_file(
        repo, open_source(repo), ref, input_path, output, chunk_rows=chunk_rows, keep=kept, progress=out.progress()
    )
    if out.json:
        out.emit_json(result.to_dict())
        return
    rate = f", {result.rows / result.seconds:,.0f} rows/s" if result.seconds > 0 else ""
    out.line(
        f"{result.rows} rows scored by {result.model} v{result.version} in {result.chunks} chunk(s), "
        f"{result.seconds:.1f} s{rate} -> {result.output} (column '{result.prediction_column}')"
    )
