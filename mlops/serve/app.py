"""The starlette application of `mlops serve`: routes, the per-worker runtime, its background tasks.

One ``Runtime`` per worker process holds the loaded model versions (each with its batcher),
the current ``Route`` (production, canary or shadow, weight), the statistics and the request
logs. Background tasks: the deployment watcher (a stat of the deployment file every
``watch_seconds``; a change loads the versions it needs in a thread, then swaps the route in one
assignment, so requests in flight finish on the versions they started with and none is dropped),
the statistics snapshot writer, and the controller (``controller.py``) when this worker holds
the controller lock.

Endpoints (docs/serving.md):

| endpoint                                     | protocol | auth |
|----------------------------------------------|----------|------|
| POST /predict                                | own      | yes  |
| POST /invocations                            | MLflow   | yes  |
| GET /ping, GET /health                       | MLflow   | no   |
| GET /version (plain text, as MLflow's)       | MLflow   | yes  |
| GET /v2/health/live, GET /v2/health/ready    | V2       | no   |
| GET /v2, GET /v2/models/{name}[/versions/{v}]  | V2       | yes  |
| GET /v2/models/{name}[/versions/{v}]/ready   | V2       | no (a readiness probe) |
| POST /v2/models/{name}[/versions/{v}]/infer  | V2       | yes  |
| GET /metadata, GET /metrics                  | own      | yes  |
| POST /admin/reload, POST /admin/rollback     | admin    | see below |

The admin endpoints always need the token when one is set; without a token they are refused
unless the server is bound to loopback, and then answer only JSON requests to a loopback Host;
a foreign Origin is refused either way (``trust.py``: cross-site and DNS-rebinding requests).

No endpoint reads or writes a file named by the request: the only files touched are the
deployment file and the runtime folder of the model being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import MlopsError
from ..fsio import FileLock
from ..repo.repo import Repo
from .batching import Batcher, QueueFull
from .config import ServeConfig
from .controller import control_once, controller_lock_path
from .deployment import CANARY, Deployment, deployment_path, parse_deployment_bytes, rollback, serve_dir
from .health import Stats, aggregate, read_snapshots, write_snapshot
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .metrics import render as render_metrics
from .protocols import (
    BINARY_HEADER,
    BadRequest,
    Inputs,
    dumps,
    jsonable,
    mlflow_answer,
    mlflow_document,
    mlflow_error,
    mlflow_parse,
    parse_json,
    predict_answer,
    predict_error,
    predict_inputs,
    v2_answer,
    v2_binary_answer,
    v2_document,
    v2_error,
    v2_inputs,
    v2_metadata,
    v2_server_metadata,
)
from .requestlog import META_COLUMNS, RequestLog
from .router import CANARY as CANARY_VARIANT
from .router import PRODUCTION, SHADOW, Route
from .signature import Signature, to_frame
from .source import ModelInfo, ModelSource, open_source
from .trust import PROBES, Refusal, admin_refusal, request_refusal

log = logging.getLogger("mlops.serve")

OWN, MLFLOW, V2 = "own", "mlflow", "v2"
JSON = "application/json"
RETIRE_AFTER = 30.0  # seconds a version no deployment uses stays loaded (requests in flight on it finish)
REFERENCE_SECONDS = 5.0  # how often the served reference is resolved again when no deployment file exists
RACY_SECONDS = 2.0  # a deployment file modified this recently is read on every poll, whatever its stat says
PARSE_IN_THREAD_BYTES = 64 * 1024  # bodies larger than this are parsed and checked off the event loop
MLFLOW_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "RESOURCE_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class TooLarge(Exception):
    pass


@dataclass
class Served:
    info: ModelInfo
    model: Any
    batcher: Batcher
    unused_since: float | None = None

    @property
    def version(self) -> int:
        return self.info.version

    @property
    def signature(self) -> Signature | None:
        return self.info.signature


@dataclass
class Outcome:
    status: int
    variant: str = ""
    served: Served | None = None
    predictions: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    inputs: Inputs | None = None
    signature_refused: bool = False  # the input parsed, but the signature refuses it (MLflow: INVALID_PARAMETER_VALUE)


@dataclass
class Prepared:
    """A request read, routed and checked, before it is queued."""

    variant: str
    served: Served
    inputs: Inputs
    columns: dict[str, list[Any]]  # what the model gets (a routing key field it does not take removed)
    problems: list[str]
    shadow: Served | None = None
    shadow_columns: dict[str, list[Any]] | None = None  # None: no shadow, or its signature refuses the request


def _checked(
    signature: Signature | None, inputs: Inputs, key_field: str | None
) -> tuple[dict[str, list[Any]], list[str]]:
    """(the columns the model gets, the signature's problems with them)."""
    columns = inputs.columns
    if signature is None:
        return columns, []
    problems = signature.check(columns, inputs.rows, ignore=(key_field,) if key_field else ())
    if key_field and key_field in columns and signature.column(key_field) is None:
        columns = {k: v for k, v in columns.items() if k != key_field}
    return columns, problems


async def _client_gone(receive: Any) -> None:
    """Returns when the client disconnects (the body has been read: the server's next message is the disconnect)."""
    try:
        while (await receive()).get("type") != "http.disconnect":
            pass
    except Exception:  # noqa: BLE001 - a server that cannot tell: never report the client gone
        await asyncio.get_running_loop().create_future()


class Runtime:
    def __init__(self, config: ServeConfig, *, preloaded: tuple[ModelInfo, Any] | None = None) -> None:
        self.config = config
        self.repo = Repo(Path(config.root))
        self.source: ModelSource = open_source(self.repo)
        self.preloaded = preloaded
        self.stats = Stats()
        self.served: dict[int, Served] = {}
        self.route: Route | None = None
        self.base: ModelInfo | None = None  # what the reference resolved to at start-up
        self.deployment: Deployment | None = None
        self.deployment_error: str | None = None
        self.reference_error: str | None = None
        self.arrivals = 0  # requests read but not yet queued: tells the batcher more rows are coming
        self.active = 0  # prediction requests in flight
        self.concurrency = 1.0  # moving average of `active` seen by arriving requests: how many callers come together
        self.token: str | None = None
        self.leader = False
        self._leader_lock: FileLock | None = None
        self._seen: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._retired = {"batches": 0.0, "batched_rows": 0.0, "abandoned": 0.0}
        self.log: RequestLog | None = None
        self.shadow_log: RequestLog | None = None
        self.model = ""
        self.dir: Path | None = None
        self.ready = False
        self._state_lock = asyncio.Lock()  # one deployment change at a time: stat -> read -> apply
        self._digest: str | None = None  # SHA-256 of the deployment file last read (None: no file)
        self.applied_digest: str | None = None  # ... and of the one the route follows
        self._resolved_at = time.monotonic()

    # --- start and stop -------------------------------------------------------------------------
    async def startup(self) -> None:
        cfg = self.config
        if cfg.token_env:
            token = os.environ.get(cfg.token_env, "")
            if not token:
                raise RuntimeError(f"--token-env {cfg.token_env}: the variable is empty or not set")
            self.token = token
        if self.preloaded is not None:
            self.base = self.preloaded[0]
        else:
            self.base = await asyncio.to_thread(self.source.resolve, cfg.ref)
        self.model = self.base.name
        self.dir = serve_dir(self.repo, self.model)
        if self.preloaded is not None:
            self._add_served(self.preloaded[0], self.preloaded[1])
            self.preloaded = None
        await self._check_deployment(force=True)
        if self.route is None:  # the deployment file could not be applied: serve the reference
            async with self._state_lock:
                await self._apply(None)
        if cfg.request_log:
            self.log = RequestLog(self.dir / "requests", settings=cfg.log_settings())
            self.shadow_log = RequestLog(
                self.dir / "shadow", settings=cfg.log_settings(), extra=("production_prediction",)
            )
            self.log.start()
            self.shadow_log.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(cfg.watch_seconds, self._watch), name="deployment-watch"),
            loop.create_task(self._every(cfg.stats_seconds, self._write_stats), name="stats"),
            loop.create_task(self._every(cfg.control_seconds, self._control), name="controller"),
        ]
        _quiet_gc()
        self.ready = True

    async def shutdown(self) -> None:
        self.ready = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._background:  # shadow predictions still running
            await asyncio.wait(list(self._background), timeout=self.config.timeout_seconds)
        for served in list(self.served.values()):
            await served.batcher.close()
        for request_log in (self.log, self.shadow_log):
            if request_log is not None:
                await asyncio.to_thread(request_log.close)
        with contextlib.suppress(Exception):
            await self._write_stats()
        if self._leader_lock is not None:
            self._leader_lock.release()

    async def _every(self, seconds: float, step: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a background step must not die; the next tick tries again
                log.exception("background task failed")

    # --- models and the route -------------------------------------------------------------------
    def _add_served(self, info: ModelInfo, model: Any) -> Served:
        signature = info.signature

        def predict(columns: dict[str, list[Any]], rows: int) -> list[Any]:
            return jsonable(model.predict(to_frame(columns, signature)))

        batcher = Batcher(
            predict,
            name=f"{info.name}-v{info.version}",
            max_batch_rows=self.config.max_batch_rows,
            max_wait_ms=self.config.max_wait_ms,
            max_queue=self.config.max_queue,
            arrivals=lambda: self.arrivals,
            concurrency=lambda: self.concurrency,
            initializer=_model_thread_setup,
        )
        batcher.start()
        served = Served(info, model, batcher)
        self.served[info.version] = served
        return served

    def _load(self, version: int) -> tuple[ModelInfo, Any]:
        info = self.source.resolve(f"{self.model}:{version}")
        return info, self.source.load(info)

    async def _served(self, version: int) -> Served:
        served = self.served.get(version)
        if served is None:
            info, model = await asyncio.to_thread(self._load, version)
            served = self.served.get(version) or self._add_served(info, model)
        served.unused_since = None
        return served

    async def _apply(self, dep: Deployment | None) -> None:
        """Load what ``dep`` needs, then swap the route in one assignment. Called with ``_state_lock`` held."""
        assert self.base is not None
        production = await self._served(dep.production if dep else self.base.version)
        canary = shadow = None
        weight = 0.0
        if dep is not None and dep.candidate is not None:
            candidate = await self._served(dep.candidate.version)
            if dep.candidate.mode == CANARY:
                canary, weight = candidate, dep.candidate.weight
            else:
                shadow = candidate
        salt = f"{self.model}:{dep.candidate.version}" if dep and dep.candidate else ""
        self.route = Route(production=production, canary=canary, shadow=shadow, weight=weight, salt=salt)
        self.deployment = dep
        in_use = {s.version for s in (production, canary, shadow) if s is not None}
        now = time.time()
        for version, served in self.served.items():
            if version not in in_use and served.unused_since is None:
                served.unused_since = now
        _quiet_gc()  # a newly loaded model joins the objects the collector no longer scans
        if dep is not None:
            log.info(
                "following deployment revision %s: production v%s%s",
                dep.revision,
                dep.production,
                f", {dep.candidate.mode} v{dep.candidate.version}" if dep.candidate else "",
            )

    async def _follow_reference(self, force: bool = False) -> None:
        """Without a deployment file, the reference decides: `churn@production` follows promotions."""
        now = time.monotonic()
        if not force and now - self._resolved_at < REFERENCE_SECONDS:
            return
        self._resolved_at = now
        async with self._state_lock:
            try:
                info = await asyncio.to_thread(self.source.resolve, self.config.ref)
            except Exception as exc:  # noqa: BLE001 - a registry being edited must not take serving down
                self.reference_error = f"{self.config.ref}: {exc.message if isinstance(exc, MlopsError) else exc}"
                return
            self.reference_error = None
            if self.base is not None and info.version != self.base.version:
                log.info("%s now names v%s (was v%s)", self.config.ref, info.version, self.base.version)
                self.base = info
                if self.deployment is None:
                    await self._apply(None)

    async def _watch(self) -> None:
        await self._check_deployment()
        if self.deployment is None:
            await self._follow_reference()

    async def _check_deployment(self, force: bool = False) -> None:
        """Follow the deployment file: stat, read and apply as one step under ``_state_lock``.

        A change is told by the file's content (a SHA-256 of its bytes), not by its ``revision``:
        the file is meant for git, and a hand edit, ``git pull`` or ``git checkout`` may change it
        without touching the revision (which only serves the writers' compare-and-swap). The stat
        is a cheap first look; a file modified within the last ``RACY_SECONDS`` is read again on
        every poll, since a same-size rewrite within one timestamp tick leaves the stat unchanged
        (git's racy-git rule). Holding the lock across the read and the apply means a slow, older
        read can never be applied after a newer one (watcher, controller and admin endpoints all
        come through here).
        """
        async with self._state_lock:
            path = deployment_path(self.repo, self.model)
            try:
                st = os.stat(path)
                seen: Any = (st.st_ino, st.st_mtime_ns, st.st_size)
                racy = time.time() - st.st_mtime < RACY_SECONDS
            except FileNotFoundError:
                seen, racy = None, False
            if seen == self._seen and not racy and not force:
                return
            digest, dep, error = await asyncio.to_thread(_read_deployment, self.repo, self.model)
            self._seen = seen
            if digest == self._digest and not force:
                return
            self._digest = digest
            if error is not None:
                self.deployment_error = (
                    f"{error.message} (still serving revision {self.deployment.revision if self.deployment else '-'})"
                )
                log.error("deployment file not applied: %s", error.message)
                return
            if dep is None and self.deployment is None and self.route is not None and not force:
                self.deployment_error = None
                return
            try:
                await self._apply(dep)
            except Exception as exc:  # noqa: BLE001 - an unloadable version must not take the server down
                message = exc.message if isinstance(exc, MlopsError) else f"{type(exc).__name__}: {exc}"
                self.deployment_error = f"revision {dep.revision if dep else '-'} not applied: {message}"
                log.error("deployment not applied: %s", message)
                return
            self.applied_digest = digest
            self.deployment_error = None

    def _retire_unused(self) -> None:
        now = time.time()
        for version, served in list(self.served.items()):
            if (
                served.unused_since is not None
                and now - served.unused_since > RETIRE_AFTER
                and served.batcher.depth == 0
            ):
                del self.served[version]
                self._retired["batches"] += served.batcher.stats.batches
                self._retired["batched_rows"] += served.batcher.stats.rows
                self._retired["abandoned"] += served.batcher.stats.abandoned
                task = asyncio.get_running_loop().create_task(served.batcher.close())
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    # --- statistics and control -----------------------------------------------------------------
    def counters(self) -> dict[str, float]:
        self.stats.counters["batches"] = self._retired["batches"] + sum(
            s.batcher.stats.batches for s in self.served.values()
        )
        self.stats.counters["batched_rows"] = self._retired["batched_rows"] + sum(
            s.batcher.stats.rows for s in self.served.values()
        )
        self.stats.counters["log_dropped"] = sum(rl.dropped for rl in (self.log, self.shadow_log) if rl is not None)
        self.stats.counters["abandoned"] = self._retired["abandoned"] + sum(
            s.batcher.stats.abandoned for s in self.served.values()
        )
        return self.stats.counters

    async def _write_stats(self) -> None:
        assert self.dir is not None
        self.counters()
        snapshot = self.stats.snapshot(self.model)  # built here, on the loop that changes the statistics
        dep = self.deployment
        snapshot["deployment"] = {"revision": dep.revision if dep else None, "digest": self.applied_digest}
        snapshot["gauges"] = {
            "requests_in_flight": self.active,
            "queue_depth": sum(s.batcher.depth for s in self.served.values()),
        }
        await asyncio.to_thread(write_snapshot, self.dir, snapshot)
        self._retire_unused()

    def _try_lead(self) -> None:
        lock = FileLock(
            controller_lock_path(self.repo, self.model), what=f"the serving controller of {self.model}", timeout=0
        )
        try:
            lock.acquire()
        except MlopsError:
            return
        self._leader_lock = lock
        self.leader = True
        log.info("this worker (pid %s) is the controller of %s", os.getpid(), self.model)

    async def _control(self) -> None:
        if not self.leader:
            await asyncio.to_thread(self._try_lead)
            if not self.leader:
                return
        if self.deployment is None:  # without a candidate too: the controller keeps the file on the registry
            return
        new, event = await asyncio.to_thread(control_once, self.repo, self.source, self.model)
        if new is None:
            return
        if event == "rollback":
            self.stats.count("rollbacks")
            log.warning("rolled back: %s", (new.last_event or {}).get("reason"))
        else:
            log.info("controller: %s (deployment revision %s)", event, new.revision)
        await self._check_deployment()

    async def aggregate_totals(self) -> tuple[dict[Any, Any], dict[str, float]]:
        """Totals of all live workers: this one's live counts plus the others' snapshots.

        This worker's snapshot is taken on the event loop (the only place its statistics change);
        only the reading of the other workers' files and the adding up run in a thread."""
        assert self.dir is not None
        mine = self.stats.snapshot(self.model, seconds=False)
        mine["alive"] = True
        mine["counters"] = dict(self.counters())
        folder = self.dir

        def add_up() -> tuple[dict[Any, Any], dict[str, float]]:
            agg = aggregate([mine, *read_snapshots(folder, exclude_self=True)], since=0, until=0)
            return agg.totals, agg.counters

        return await asyncio.to_thread(add_up)

    # --- requests -------------------------------------------------------------------------------
    def authorized(self, request: Any) -> bool:
        if self.token is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    async def read_body(self, request: Any) -> bytes:
        limit = self.config.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None:
            try:
                if int(length) > limit:
                    raise TooLarge
            except ValueError:
                pass
            return await request.body()
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _decode(self, protocol: str, body: bytes, headers: Any) -> Any:
        """The request's document, read without any signature (JSON, MLflow's CSV or JSON, V2 with binary data)."""
        if protocol == OWN:
            return parse_json(body)
        if protocol == MLFLOW:
            return mlflow_document(body, headers.get("content-type"), max_bytes=self.config.max_body_bytes)
        return v2_document(body, headers.get(BINARY_HEADER))

    @staticmethod
    def _parse(protocol: str, document: Any, signature: Signature | None) -> Inputs:
        """Columns from the document, as ``signature`` names and types them
        (positional payloads, CSV cells, V2 matrices)."""
        if protocol == OWN:
            return predict_inputs(document)
        if protocol == MLFLOW:
            return mlflow_parse(document, signature)
        return v2_inputs(document, signature)

    def _prepare(self, route: Route, protocol: str, body: bytes, headers: Any, version: int | None) -> Prepared:
        """Read, route, then parse with the chosen variant's signature and check it: no I/O, no shared
        state written, so a large body can go through here in a thread while the loop serves others."""
        document = self._decode(protocol, body, headers)
        dep = self.deployment
        key_field = dep.key_field if dep is not None else None
        inputs: Inputs | None = None
        if version is not None:  # a versioned V2 path reaches that version directly
            chosen = [
                (n, s)
                for n, s in ((PRODUCTION, route.production), (CANARY_VARIANT, route.canary), (SHADOW, route.shadow))
                if s is not None and s.version == version
            ]
            if not chosen:
                raise BadRequest([f"version {version} of {self.model} is not deployed on this server"], status=404)
            variant, served = chosen[0]
        elif route.canary is not None and 0 < route.weight < 100 and key_field:
            # the key is a field of the first record: read it as production reads the payload, then
            # parse again only if the chosen variant's signature reads it differently
            inputs = self._parse(protocol, document, route.production.signature)
            value = inputs.first(key_field)
            variant, served = route.choose(None if value is None else str(value))
        else:
            header = (dep.key_header if dep is not None else None) or "x-request-id"
            variant, served = route.choose(headers.get(header))
        if inputs is None or served.signature != route.production.signature:
            inputs = self._parse(protocol, document, served.signature)
        columns, problems = _checked(served.signature, inputs, key_field)
        shadow = route.shadow if variant == PRODUCTION and version is None else None
        shadow_columns: dict[str, list[Any]] | None = None
        if shadow is not None:
            try:
                theirs = (
                    inputs
                    if shadow.signature == served.signature
                    else self._parse(protocol, document, shadow.signature)
                )
                shadow_columns, shadow_problems = _checked(shadow.signature, theirs, key_field)
            except BadRequest:
                shadow_problems = ["the shadow's signature cannot read this request"]
            if shadow_problems:
                shadow_columns = None
        return Prepared(variant, served, inputs, columns, problems, shadow, shadow_columns)

    async def infer(self, request: Any, protocol: str, version: int | None = None) -> Outcome:
        """Read, route, parse, check, queue and answer one prediction request (any protocol)."""
        started = time.perf_counter()
        self.arrivals += 1
        self.active += 1
        self.concurrency += 0.1 * (self.active - self.concurrency)
        arrived = True
        try:
            try:
                body = await self.read_body(request)
            except TooLarge:
                return Outcome(
                    413,
                    problems=[
                        f"body over the limit of {self.config.max_body_bytes} bytes "
                        "(mlops serve --max-body-mb); send fewer rows per request"
                    ],
                )
            route = self.route
            assert route is not None
            try:
                if len(body) > PARSE_IN_THREAD_BYTES:  # a 10 MB body takes ~100 ms to read and check: not on the loop
                    prep = await asyncio.to_thread(self._prepare, route, protocol, body, request.headers, version)
                else:
                    prep = self._prepare(route, protocol, body, request.headers, version)
            except BadRequest as exc:
                return Outcome(exc.status, problems=exc.problems)
            variant, served, inputs = prep.variant, prep.served, prep.inputs
            if prep.problems:
                self._record(variant, served, started, 400, None)
                return Outcome(400, variant, served, problems=prep.problems, signature_refused=True)
            try:
                future = served.batcher.submit(prep.columns, inputs.rows)
            except QueueFull:
                self.stats.count("rejected")
                self._record(variant, served, started, 503, None)
                return Outcome(
                    503,
                    variant,
                    served,
                    problems=[f"overloaded: the queue of {self.model} v{served.version} is full; retry shortly"],
                    headers={"Retry-After": "1"},
                )
            self.arrivals -= 1
            arrived = False
            if prep.shadow is not None:
                task = asyncio.get_running_loop().create_task(self._shadow(prep, future))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            gone = asyncio.get_running_loop().create_task(_client_gone(request.receive))
            try:
                await asyncio.wait(
                    (future, gone), timeout=self.config.timeout_seconds, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                gone.cancel()
            if not future.done():
                # abandoned: the batcher drops a cancelled request still queued, so it costs no model time
                future.cancel()
                if gone.done() and not gone.cancelled():
                    self.stats.count("client_gone")
                    return Outcome(499, variant, served, problems=["the client closed the connection"])
                self._record(variant, served, started, 504, None)
                return Outcome(
                    504, variant, served, problems=[f"the model took longer than {self.config.timeout_seconds:g} s"]
                )
            try:
                predictions = future.result()
            except QueueFull as exc:
                self._record(variant, served, started, 503, None)
                return Outcome(503, variant, served, problems=[str(exc)], headers={"Retry-After": "1"})
            except Exception as exc:  # noqa: BLE001 - the model raised: answer 500 with an id, keep serving
                error_id = uuid.uuid4().hex[:12]
                log.error(
                    "error %s: %s v%s (%s) raised %s: %s",
                    error_id,
                    self.model,
                    served.version,
                    variant,
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                )
                self._record(variant, served, started, 500, None)
                return Outcome(
                    500,
                    variant,
                    served,
                    error_id=error_id,
                    problems=[f"the model failed on this input ({type(exc).__name__}); error id {error_id}"],
                )
            latency_ms = self._record(variant, served, started, 200, predictions)
            if self.log is not None:
                self.log.append(
                    served.signature,
                    prep.columns,
                    inputs.rows,
                    {
                        "prediction": predictions,
                        "variant": variant,
                        "version": served.version,
                        "latency_ms": latency_ms,
                        "time": time.time(),
                    },
                )
            return Outcome(200, variant, served, predictions, inputs=inputs)
        finally:
            self.active -= 1
            if arrived:
                self.arrivals -= 1

    def _record(
        self, variant: str, served: Served, started: float, status: int, predictions: list[Any] | None
    ) -> float:
        latency_ms = (time.perf_counter() - started) * 1000
        self.stats.record(variant, served.version, latency_ms, status, predictions)
        return latency_ms

    async def _shadow(self, prep: Prepared, production: asyncio.Future[list[Any]]) -> None:
        started = time.perf_counter()
        shadow, columns, rows = prep.shadow, prep.shadow_columns, prep.inputs.rows
        assert shadow is not None
        if columns is None:  # the shadow's signature refuses what production took
            self._record(SHADOW, shadow, started, 400, None)
            return
        try:
            future = shadow.batcher.submit(columns, rows)
        except QueueFull:
            self.stats.count("shadow_dropped")
            return
        try:
            predictions = await asyncio.wait_for(future, self.config.timeout_seconds)
        except asyncio.TimeoutError:
            self._record(SHADOW, shadow, started, 504, None)
            return
        except Exception as exc:  # noqa: BLE001 - a failing shadow never reaches the caller; it counts as an error
            log.warning("shadow %s v%s raised %s: %s", self.model, shadow.version, type(exc).__name__, exc)
            self._record(SHADOW, shadow, started, 500, None)
            return
        latency_ms = self._record(SHADOW, shadow, started, 200, predictions)
        await asyncio.wait((production,))  # never raises, even when the caller went away and production was cancelled
        if production.cancelled() or production.exception() is not None:
            theirs: list[Any] = [None] * len(predictions)  # nothing to compare with
        else:
            theirs = production.result()
            self.stats.record_shadow_comparison(shadow.version, predictions, theirs)
        if self.shadow_log is not None:
            self.shadow_log.append(
                shadow.signature,
                columns,
                rows,
                {
                    "prediction": predictions,
                    "variant": SHADOW,
                    "version": shadow.version,
                    "latency_ms": latency_ms,
                    "time": time.time(),
                    "production_prediction": theirs,
                },
            )

    async def admin_rollback(self, reason: str) -> Deployment:
        assert self.model
        new = await asyncio.to_thread(
            rollback, self.repo, self.source, self.model, reason=reason, by="http admin (POST /admin/rollback)"
        )
        await self._check_deployment()
        return new


def _read_deployment(repo: Repo, model: str) -> tuple[str | None, Deployment | None, MlopsError | None]:
    """(SHA-256 of the file's bytes, the deployment, the reason it does not parse);
    (None, None, None) without a file."""
    path = deployment_path(repo, model)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None, None
    digest = hashlib.sha256(data).hexdigest()
    try:
        return digest, parse_deployment_bytes(data, path, model), None
    except MlopsError as exc:
        return digest, None, exc


def _quiet_gc() -> None:
    """Keep Python's cyclic garbage collector from pausing the server for tens of milliseconds.

    Everything loaded so far (libraries, the models) is moved out of the collector's sight
    (``gc.freeze``), and young objects are collected less often: a request allocates many
    short-lived objects but hardly makes reference cycles, and at a few thousand requests per
    second the default thresholds ran a full collection over the whole heap often enough to
    put 60-70 ms into the p99 latency at concurrency 32 (17 ms with this).
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _model_thread_setup() -> None:
    """In each model thread: scikit-learn's per-call validation of hyperparameters is skipped.

    Hyperparameters were validated when the model was fitted and cannot change while it is
    served; the check costs about a quarter of a one-row predict of a small pipeline. Input
    data is still validated by scikit-learn (and by the signature check before it). The
    setting is thread-local in scikit-learn, hence here and not at start-up.
    """
    import sys

    if "sklearn" in sys.modules:  # only when the loaded model is a scikit-learn one
        import sklearn

        sklearn.set_config(skip_parameter_validation=True)


# --- the starlette app ---------------------------------------------------------------------------


def build_app(config: ServeConfig, *, preloaded: tuple[ModelInfo, Any] | None = None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import Response
    from starlette.routing import Route as Path_

    rt = Runtime(config, preloaded=preloaded)

    def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(dumps(data), status_code=status, media_type=JSON, headers=headers)

    def error_body(
        protocol: str, status: int, problems: list[str], error_id: str | None = None, code: str | None = None
    ) -> dict[str, Any]:
        if protocol == MLFLOW:
            body = mlflow_error(problems, code=code or MLFLOW_CODES.get(status, "INTERNAL_ERROR"))
        elif protocol == V2:
            body = v2_error(problems)
        else:
            body = predict_error(problems)
        if error_id:
            body["error_id"] = error_id
        return body

    def refused(protocol: str) -> Response:
        return json_response(
            error_body(protocol, 401, ["missing or wrong bearer token (Authorization: Bearer ...)"]),
            401,
            {"WWW-Authenticate": 'Bearer realm="mlops serve"'},
        )

    def variant_headers(outcome: Outcome) -> dict[str, str]:
        headers = dict(outcome.headers)
        if outcome.served is not None:
            headers["X-Model-Version"] = str(outcome.served.version)
            headers["X-Variant"] = outcome.variant
        return headers

    async def answer(request: Request, protocol: str, version: int | None = None) -> Response:
        if not rt.authorized(request):
            return refused(protocol)
        outcome = await rt.infer(request, protocol, version)
        headers = variant_headers(outcome)
        if protocol == MLFLOW and outcome.status == 415:  # as MLflow's scoring server: plain text
            return Response("; ".join(outcome.problems), status_code=415, media_type="text/plain", headers=headers)
        if outcome.status != 200:
            # MLflow answers input its signature refuses with INVALID_PARAMETER_VALUE, unreadable input with BAD_REQUEST
            code = "INVALID_PARAMETER_VALUE" if outcome.signature_refused else None
            return json_response(
                error_body(protocol, outcome.status, outcome.problems, outcome.error_id, code), outcome.status, headers
            )
        served = outcome.served
        assert served is not None and outcome.inputs is not None
        if protocol == OWN:
            body = predict_answer(
                rt.model, served.version, outcome.variant, outcome.predictions, request.headers.get("x-request-id")
            )
        elif protocol == MLFLOW:
            body = mlflow_answer(outcome.predictions)
        else:
            name = served.signature.output_name if served.signature else "predict"
            body = v2_answer(
                rt.model, served.version, outcome.variant, outcome.predictions, outcome.inputs.request_id, name
            )
            if outcome.inputs.binary_output:
                content, length = v2_binary_answer(body)
                headers["Inference-Header-Content-Length"] = str(length)
                return Response(content, status_code=200, media_type="application/octet-stream", headers=headers)
        return json_response(body, 200, headers)

    def guarded(protocol: str, path: str, endpoint: Any) -> Any:
        """The last line of defence: anything an endpoint did not expect is a 500 with an error id, in the
        protocol's own error shape, and the traceback with that id goes to stderr; the server keeps serving.
        Every answer is counted per route and status (``mlops_http_requests_total``); a client that goes away
        while its body is being read is counted (``mlops_requests_aborted_total``), not an error."""

        async def run(request: Request) -> Response:
            if path not in PROBES and not path.startswith("/admin/"):  # the admin routes apply stricter rules
                server = request.scope.get("server")
                refusal = request_refusal(
                    request.headers,
                    server_port=server[1] if server else None,
                    token_set=rt.token is not None,
                    bound_loopback=rt.config.loopback,
                )
                if refusal is not None:
                    rt.stats.count(f"cross_site_refused {refusal.rule}")
                    rt.stats.count(f"http {path} 403")
                    body = {**error_body(protocol, 403, [refusal.message]), "rule": refusal.rule}
                    return json_response(body, 403)
            try:
                response = await endpoint(request)
            except ClientDisconnect:  # not an answer: nobody reads it (uvicorn drops what is sent after a disconnect)
                rt.stats.count("aborted")
                return Response(status_code=499)
            except Exception as exc:  # noqa: BLE001 - see the docstring
                error_id = uuid.uuid4().hex[:12]
                log.error(
                    "error %s: %s %s raised %s: %s",
                    error_id,
                    request.method,
                    request.url.path,
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                )
                problems = [f"internal error ({type(exc).__name__}); error id {error_id}"]
                response = json_response(error_body(protocol, 500, problems, error_id), 500)
            rt.stats.count(f"http {path} {response.status_code}")
            return response

        return run

    async def predict(request: Request) -> Response:
        return await answer(request, OWN)

    async def invocations(request: Request) -> Response:
        return await answer(request, MLFLOW)

    def v2_model(request: Request, public: bool = False) -> tuple[Response | None, int | None]:
        if not public and not rt.authorized(request):
            return refused(V2), None
        name = request.path_params["name"]
        if name != rt.model:
            return json_response(v2_error([f"unknown model '{name}': this server serves '{rt.model}'"]), 404), None
        raw = request.path_params.get("version")
        if raw is None:
            return None, None
        try:
            version = int(raw)
        except ValueError:
            return json_response(v2_error([f"version must be a number, got '{raw}'"]), 400), None
        return None, version

    async def v2_infer(request: Request) -> Response:
        refusal, version = v2_model(request)
        if refusal is not None:
            return refusal
        return await answer(request, V2, version)

    def loaded_versions() -> list[int]:
        route = rt.route
        assert route is not None
        return [s.version for s in (route.production, route.canary, route.shadow) if s is not None]

    async def v2_model_metadata(request: Request) -> Response:
        refusal, version = v2_model(request)
        if refusal is not None:
            return refusal
        route = rt.route
        assert route is not None
        served = route.production
        if version is not None:
            matches = [
                s for s in (route.production, route.canary, route.shadow) if s is not None and s.version == version
            ]
            if not matches:
                return json_response(v2_error([f"version {version} of {rt.model} is not deployed on this server"]), 404)
            served = matches[0]
        versions = [served.version] if version is not None else loaded_versions()
        return json_response(v2_metadata(rt.model, versions, served.signature, f"mlops-{served.info.flavor}"))

    async def v2_model_ready(request: Request) -> Response:
        # a readiness probe (KServe's): no token needed, like the other health checks
        refusal, version = v2_model(request, public=True)
        if refusal is not None:
            return refusal
        ready = rt.ready and (version is None or version in loaded_versions())
        return json_response({"name": rt.model, "ready": ready}, 200 if ready else 503)

    async def v2_server(request: Request) -> Response:
        if not rt.authorized(request):
            return refused(V2)
        return json_response(v2_server_metadata(__version__))

    async def live(request: Request) -> Response:
        return json_response({"live": True})

    async def ready(request: Request) -> Response:
        return json_response({"ready": rt.ready}, 200 if rt.ready else 503)

    async def ping(request: Request) -> Response:
        return Response("\n", status_code=200 if rt.ready else 503, media_type=JSON)

    async def health(request: Request) -> Response:
        route = rt.route
        assert route is not None
        problems = [p for p in (rt.deployment_error, rt.reference_error, rt.log.error if rt.log else None) if p]
        body: dict[str, Any] = {
            "status": "ok" if not problems else "degraded",
            "model": rt.model,
            "production": route.production.version,
            "deployment_revision": rt.deployment.revision if rt.deployment else None,
        }
        if admin_check(request, writes=False) is None:  # the process and the problems (which name files) only to admins
            body.update({"pid": os.getpid(), "controller": rt.leader, "problems": problems})
        else:
            body["problems"] = [f"{len(problems)} problem(s): send the bearer token to see them"] if problems else []
        if route.canary is not None:
            body["canary"] = {"version": route.canary.version, "weight": route.weight}
        if route.shadow is not None:
            body["shadow"] = {"version": route.shadow.version}
        return json_response(body, 200 if rt.ready else 503)

    async def version_(request: Request) -> Response:
        if not rt.authorized(request):
            return refused(MLFLOW)
        # as MLflow's scoring server: the server's version as plain text (the model's is in /metadata)
        return Response(__version__, media_type="text/plain")

    async def metadata(request: Request) -> Response:
        if not rt.authorized(request):
            return refused(OWN)
        route = rt.route
        assert route is not None
        prod = route.production
        variants = [
            {"variant": PRODUCTION, "version": prod.version, "weight": 100 - route.weight if route.canary else 100}
        ]
        if route.canary is not None:
            variants.append({"variant": CANARY_VARIANT, "version": route.canary.version, "weight": route.weight})
        if route.shadow is not None:
            variants.append({"variant": SHADOW, "version": route.shadow.version, "weight": 0})
        dep = rt.deployment
        return json_response(
            {
                "model": rt.model,
                "version": prod.version,
                "stage": prod.info.stage,
                "flavor": prod.info.flavor,
                "signature": prod.signature.to_dict() if prod.signature else None,
                "variants": variants,
                "deployment": dep.to_dict() if dep else None,
                "request_log_columns": [*(prod.signature.names if prod.signature else ()), *META_COLUMNS],
            }
        )

    async def metrics(request: Request) -> Response:
        if not rt.authorized(request):
            return refused(OWN)
        totals, counters = await rt.aggregate_totals()
        route = rt.route
        assert route is not None
        weights = {PRODUCTION: 100 - route.weight if route.canary else 100.0}
        if route.canary is not None:
            weights[CANARY_VARIANT] = route.weight
        gauges = {
            "queue_depth": sum(s.batcher.depth for s in rt.served.values()),
            "requests_being_read": rt.arrivals,
            "requests_in_flight": rt.active,
        }
        return Response(render_metrics(rt.model, totals, counters, gauges, weights), media_type=METRICS_TYPE)

    def admin_check(request: Request, writes: bool = True) -> Refusal | None:
        server = request.scope.get("server")
        return admin_refusal(
            request.headers,
            server_port=server[1] if server else None,
            token_set=rt.token is not None,
            token_ok=rt.authorized(request),
            bound_loopback=rt.config.loopback,
            writes=writes,
        )

    def admin_refused(request: Request) -> Response | None:
        refusal = admin_check(request)
        if refusal is None:
            return None
        rt.stats.count(f"admin_refused {refusal.rule}")
        body = {**predict_error([refusal.message]), "rule": refusal.rule}
        headers = {"WWW-Authenticate": 'Bearer realm="mlops serve"'} if refusal.status == 401 else None
        return json_response(body, refusal.status, headers)

    async def admin_reload(request: Request) -> Response:
        refusal = admin_refused(request)
        if refusal is not None:
            return refusal
        await rt._follow_reference(force=True)
        await rt._check_deployment(force=True)
        dep = rt.deployment
        return json_response(
            {
                "reloaded": True,
                "deployment_revision": dep.revision if dep else None,
                "problems": [rt.deployment_error] if rt.deployment_error else [],
            }
        )

    async def admin_rollback(request: Request) -> Response:
        refusal = admin_refused(request)
        if refusal is not None:
            return refusal
        reason = "rolled back through POST /admin/rollback"
        body = await request.body()
        if body:
            try:
                doc = parse_json(body)
            except BadRequest as exc:
                return json_response(predict_error(exc.problems), 400)
            if isinstance(doc, dict) and isinstance(doc.get("reason"), str) and doc["reason"].strip():
                reason = doc["reason"].strip()[:500]
        try:
            dep = await rt.admin_rollback(reason)
        except MlopsError as exc:
            return json_response(predict_error([exc.message]), 409 if exc.exit_code == 2 else 500)
        return json_response({"rolled_back": True, "deployment": dep.to_dict()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await rt.startup()
        try:
            yield
        finally:
            await rt.shutdown()

    async def no_route(request: Request, exc: Exception) -> Response:
        """Unknown routes and methods: JSON in the protocol's error shape (V2's ``{"error"}`` under /v2)."""
        status = getattr(exc, "status_code", 404)
        what = "no such route" if status == 404 else "method not allowed on this route"
        problems = [f"{what}: {request.method} {request.url.path[:200]}"]
        body = v2_error(problems) if request.url.path.startswith("/v2") else predict_error(problems)
        rt.stats.count(f"http unmatched {status}")
        return json_response(body, status, getattr(exc, "headers", None))

    routes = [
        Path_(path, guarded(protocol, path, endpoint), methods=[method])
        for path, protocol, endpoint, method in (
            ("/predict", OWN, predict, "POST"),
            ("/invocations", MLFLOW, invocations, "POST"),
            ("/ping", MLFLOW, ping, "GET"),
            ("/health", MLFLOW, health, "GET"),
            ("/version", MLFLOW, version_, "GET"),
            ("/metadata", OWN, metadata, "GET"),
            ("/metrics", OWN, metrics, "GET"),
            ("/v2", V2, v2_server, "GET"),
            ("/v2/health/live", V2, live, "GET"),
            ("/v2/health/ready", V2, ready, "GET"),
            ("/v2/models/{name}", V2, v2_model_metadata, "GET"),
            ("/v2/models/{name}/ready", V2, v2_model_ready, "GET"),
            ("/v2/models/{name}/infer", V2, v2_infer, "POST"),
            ("/v2/models/{name}/versions/{version}", V2, v2_model_metadata, "GET"),
            ("/v2/models/{name}/versions/{version}/ready", V2, v2_model_ready, "GET"),
            ("/v2/models/{name}/versions/{version}/infer", V2, v2_infer, "POST"),
            ("/admin/reload", OWN, admin_reload, "POST"),
            ("/admin/rollback", OWN, admin_rollback, "POST"),
        )
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: no_route, 405: no_route})
    app.state.runtime = rt
    return app


def create_app() -> Any:
    """The factory uvicorn's worker processes call (`mlops serve --workers N`)."""
    _die_with_parent()
    return build_app(ServeConfig.from_env())


def _die_with_parent() -> None:
    """A worker gets SIGTERM (and shuts down gracefully) when its supervisor dies, even by SIGKILL."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the supervisor died before the call above
        os.kill(os.getpid(), signal.SIGTERM)
