"""The per-worker serving runtime: the loaded versions, the route between them, prediction, statistics.

One ``Runtime`` per worker process holds the loaded model versions (each with its batcher),
the current ``Route`` (production, canary or shadow, weight), the statistics and the request
logs. Background tasks: the deployment watcher (a stat of the deployment file every
``watch_seconds``; a change loads the versions it needs in a thread, then swaps the route in one
assignment, so requests in flight finish on the versions they started with and none is dropped),
the statistics snapshot writer, and the controller (``controller.py``) when this worker holds
the controller lock.

Nothing here knows HTTP or the server library: a prediction comes in as a body reader, the
request's headers and the wire protocol (``wire.py``) that reads it, and leaves as an ``Outcome``
the HTTP layer (``http/``) shapes into a response. The only files touched are the deployment
file and the runtime folder of the model being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MlopsError, one_line
from ..fsio import FileLock
from ..repo.repo import Repo
from .batching import Batcher, QueueFull
from .config import ServeConfig
from .controller import control_once, controller_lock_path
from .deployment import (
    CANARY,
    Deployment,
    deployment_path,
    mirror_shared,
    parse_deployment_bytes,
    rollback,
    serve_dir,
)
from .fitted import fitted_numeric_columns
from .health import Stats, aggregate, read_snapshots, write_snapshot
from .protocols import PROBABILITIES, BadRequest, Inputs, jsonable
from .requestlog import RequestLog, failure_reason
from .router import PRODUCTION, SHADOW, Route
from .signature import ANY, Signature, to_frame, wrong_values_problem
from .source import ModelInfo, ModelSource, Preloaded, open_source
from .wire import WireProtocol

log = logging.getLogger("mlops.serve")

RETIRE_AFTER = 30.0  # seconds a version no deployment uses stays loaded (requests in flight on it finish)
REFERENCE_SECONDS = 5.0  # how often the served reference is resolved again when no deployment file exists
RACY_SECONDS = 2.0  # a deployment file modified this recently is read on every poll, whatever its stat says
PARSE_IN_THREAD_BYTES = 64 * 1024  # bodies larger than this are parsed and checked off the event loop
CLIENT_GONE = 499  # nginx's status for a caller that went away: neither an answer nor a failure of ours


@dataclass
class Served:
    info: ModelInfo
    model: Any
    batcher: Batcher
    unused_since: float | None = None
    features: Any = None  # FeatureInputs when the signature names a feature service (serve/features.py)
    # a classifier's predict_proba, batched apart: only requests naming the output "probabilities" pay for it
    proba: Batcher | None = None
    classes: list[Any] | None = None
    # columns whose signature dtype is unknown but which the fitted model takes as numbers (serve/fitted.py)
    numbers: frozenset[str] = frozenset()

    async def close(self) -> None:
        await self.batcher.close()
        if self.proba is not None:
            await self.proba.close()

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
    probabilities: list[Any] | None = None
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


class Scored(list):  # type: ignore[type-arg]
    """A batch's predictions with the classifier's class probabilities beside them (for the request
    log). A slice keeps its probabilities, so the batcher's split per request carries them along."""

    def __init__(self, predictions: list[Any], classes: tuple[Any, ...], probabilities: list[list[float]]) -> None:
        super().__init__(predictions)
        self.classes = classes
        self.probabilities = probabilities

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return Scored(list.__getitem__(self, index), self.classes, self.probabilities[index])
        return list.__getitem__(self, index)


def _probabilities_of(predictions: Any) -> tuple[tuple[Any, ...], list[list[float]]] | None:
    if isinstance(predictions, Scored):
        return predictions.classes, predictions.probabilities
    return None


def _not_a_number(value: Any) -> bool:
    if value is None or isinstance(value, int | float):  # bool is an int: scikit-learn reads it as 0/1
        return False
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return True
        return False
    return True


def _fitted_number_problems(numbers: frozenset[str], columns: dict[str, list[Any]]) -> list[str]:
    """Values that are not numbers in columns the model was fitted on numbers (their dtype unknown to
    the signature): the caller's mistake, a 400 naming the column, rather than the model raising (500)."""
    problems = []
    for name in sorted(numbers):
        label = f"column '{name}' (dtype unknown; the model was fitted on numbers)"
        wrong = wrong_values_problem(label, columns.get(name) or (), _not_a_number, "a number")
        if wrong:
            problems.append(wrong)
    return problems


def _checked(
    signature: Signature | None, inputs: Inputs, key_field: str | None, numbers: frozenset[str] = frozenset()
) -> tuple[dict[str, list[Any]], list[str]]:
    """(the columns the model gets, the signature's problems with them)."""
    columns = inputs.columns
    if signature is None:
        return columns, []
    problems = signature.check(columns, inputs.rows, ignore=(key_field,) if key_field else ())
    problems += _fitted_number_problems(numbers, columns)
    if key_field and key_field in columns and signature.column(key_field) is None:
        columns = {k: v for k, v in columns.items() if k != key_field}
    return columns, problems


def _unknown_but_fitted_numbers(signature: Signature | None, model: Any) -> frozenset[str]:
    """The signature's columns of unknown dtype that the fitted model takes as numbers."""
    if signature is None:
        return frozenset()
    unknown = {c.name for c in signature.inputs if c.kind == ANY}
    if not unknown:
        return frozenset()
    told = getattr(model, "mlops_numeric_columns", None)  # a model that says which columns it takes as numbers
    return (frozenset(told) if told is not None else fitted_numeric_columns(model, signature.names)) & unknown


class Runtime:
    """One worker's serving state; its methods run on the worker's event loop."""

    def __init__(self, config: ServeConfig, *, preloaded: Preloaded | None = None) -> None:
        self.config = config
        self.repo = Repo(Path(config.root))
        self.source: ModelSource = (
            preloaded.source
            if preloaded is not None
            else open_source(self.repo, bundle=config.bundle, runtime=config.runtime)
        )
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
        self.failure_log: RequestLog | None = None  # refused and failed requests (no inputs kept)
        self.model = ""
        self.dir: Path | None = None
        self.ready = False
        self._state_lock = asyncio.Lock()  # one deployment change at a time: stat -> read -> apply
        self._digest: str | None = None  # SHA-256 of the deployment file last read (None: no file)
        self.applied_digest: str | None = None  # ... and of the one the route follows
        self._resolved_at = time.monotonic()
        self.shared: Any = None  # the replicas' shared state (--state URL, shared.py)
        self.replica = ""  # this worker's name there: its statistics, and the lease holder
        self.lease_until = 0.0  # the end of this worker's controller lease term (0: not held)

    # --- start and stop -------------------------------------------------------------------------
    async def startup(self) -> None:
        cfg = self.config
        if cfg.token_env:
            token = os.environ.get(cfg.token_env, "")
            if not token:
                raise RuntimeError(f"--token-env {cfg.token_env}: the variable is empty or not set")
            self.token = token
        if self.preloaded is not None:
            self.base = self.preloaded.info
        else:
            self.base = await asyncio.to_thread(self.source.resolve, cfg.ref)
        self.model = self.base.name
        self.dir = serve_dir(self.repo, self.model)
        if self.preloaded is not None:
            self._add_served(self.preloaded.info, self.preloaded.model)
            self.preloaded = None
        if cfg.state:
            from .shared import open_state, replica_id

            self.shared = await asyncio.to_thread(open_state, cfg.state, root=self.repo.root)
            self.replica = replica_id()
            await asyncio.to_thread(mirror_shared, self.repo, self.model, self.shared)
        await self._check_deployment(force=True)
        if self.route is None:  # the deployment file could not be applied: serve the reference
            async with self._state_lock:
                await self._apply(None)
        if cfg.request_log:
            self.log = RequestLog(self.dir / "requests", settings=cfg.log_settings())
            self.shadow_log = RequestLog(
                self.dir / "shadow", settings=cfg.log_settings(), extra=("production_prediction",)
            )
            self.failure_log = RequestLog(self.dir / "failures", settings=cfg.log_settings(), extra=("reason",))
            self.log.start()
            self.shadow_log.start()
            self.failure_log.start()
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
            await served.close()
        for request_log in (self.log, self.shadow_log, self.failure_log):
            if request_log is not None:
                await asyncio.to_thread(request_log.close)
        with contextlib.suppress(Exception):
            await self._write_stats()
        if self._leader_lock is not None:
            self._leader_lock.release()
        if self.shared is not None and self.lease_until:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.shared.release_lease, self.replica)

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

        found = getattr(model, "classes_", None)
        classes = tuple(jsonable(found)) if found is not None else ()
        proba = getattr(model, "predict_proba", None) if classes and self.config.request_log else None

        # a model that takes the checked columns as they are (an ONNX form) is spared the DataFrame, and pandas
        takes_columns = bool(getattr(model, "mlops_takes_columns", False))

        def model_input(columns: dict[str, list[Any]]) -> Any:
            return columns if takes_columns else to_frame(columns, signature)

        def predict(columns: dict[str, list[Any]], rows: int) -> list[Any]:
            frame = model_input(columns)
            predictions = jsonable(model.predict(frame))
            if proba is None:
                return predictions
            # the caller gets predict()'s answer; the log also keeps predict_proba's, for estimated
            # quality before labels arrive. A model whose predict_proba fails still answers.
            try:
                probabilities = proba(frame)
            except Exception:  # noqa: BLE001 - a model without working probabilities (SVC without probability=True)
                return predictions
            values = probabilities.tolist() if hasattr(probabilities, "tolist") else list(probabilities)
            if len(values) != len(predictions):
                return predictions
            return Scored(predictions, classes, values)

        def predict_proba(columns: dict[str, list[Any]], rows: int) -> list[Any]:
            return jsonable(model.predict_proba(model_input(columns)))

        def batcher(call: Any, name: str) -> Batcher:
            made = Batcher(
                call,
                name=name,
                max_batch_rows=self.config.max_batch_rows,
                max_wait_ms=self.config.max_wait_ms,
                max_queue=self.config.max_queue,
                arrivals=lambda: self.arrivals,
                concurrency=lambda: self.concurrency,
                initializer=_model_thread_setup,
            )
            made.start()
            return made

        served = Served(
            info,
            model,
            batcher(predict, f"{info.name}-v{info.version}"),
            features=_feature_inputs(self.repo, signature, self.config.bundle),
            numbers=_unknown_but_fitted_numbers(signature, model),
        )
        classes = getattr(model, "classes_", None)
        if callable(getattr(model, "predict_proba", None)) and classes is not None:
            served.proba = batcher(predict_proba, f"{info.name}-v{info.version}-proba")
            served.classes = jsonable(classes)
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
        if self.shared is not None:
            try:
                await asyncio.to_thread(mirror_shared, self.repo, self.model, self.shared)
            except Exception as exc:  # noqa: BLE001 - the store down or a bad revision: keep serving what runs
                message = exc.message if isinstance(exc, MlopsError) else f"{type(exc).__name__}: {exc}"
                log.error("shared state %s not read: %s", self.config.state, message)
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
                task = asyncio.get_running_loop().create_task(served.close())
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
        if self.shared is not None:
            snapshot["replica"] = self.replica
            await asyncio.to_thread(self.shared.publish_stats, self.replica, snapshot)
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
        if self.shared is not None:
            await self._control_shared()
            return
        if not self.leader:
            await asyncio.to_thread(self._try_lead)
            if not self.leader:
                return
        if self.deployment is None:  # without a candidate too: the controller keeps the file on the registry
            return
        new, event = await asyncio.to_thread(control_once, self.repo, self.source, self.model)
        await self._after_control(new, event)

    async def _control_shared(self) -> None:
        """The controller across replicas: whoever holds the lease decides (shared.py)."""
        lease = await asyncio.to_thread(self.shared.take_lease, self.replica, self.config.lease_seconds)
        if lease is None:
            if self.leader:
                log.info("this worker (pid %s) lost the controller lease of %s", os.getpid(), self.model)
            self.leader, self.lease_until = False, 0.0
            return
        if not self.leader:
            log.info(
                "this worker (pid %s) holds the controller lease of %s (term %s)", os.getpid(), self.model, lease.term
            )
        self.leader, self.lease_until = True, lease.expires
        if lease.expires - time.time() < self.config.lease_seconds / 4:
            return  # too close to the end of the term to act: another may take it meanwhile
        new, event = await asyncio.to_thread(control_once, self.repo, self.source, self.model, state=self.shared)
        await self._after_control(new, event)

    async def _after_control(self, new: Deployment | None, event: str | None) -> None:
        """What this worker does after the controller decided (on this machine or across replicas)."""
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
    def _prepare(
        self, route: Route, wire: WireProtocol, body: bytes, headers: Mapping[str, str], version: int | None
    ) -> Prepared:
        """Read, route, then parse with the chosen variant's signature and check it: no I/O, no shared
        state written, so a large body can go through here in a thread while the loop serves others."""
        document = wire.decode(body, headers, max_bytes=self.config.max_body_bytes)
        dep = self.deployment
        key_field = dep.key_field if dep is not None else None
        inputs: Inputs | None = None
        if version is not None:  # a versioned V2 path reaches that version directly
            found = route.find(version)
            if found is None:
                raise BadRequest([f"version {version} of {self.model} is not deployed on this server"], status=404)
            variant, served = found
        elif route.canary is not None and 0 < route.weight < 100 and key_field:
            # the key is a field of the first record: read it as production reads the payload, then
            # parse again only if the chosen variant's signature reads it differently
            inputs = wire.parse(document, route.production.signature)
            value = inputs.first(key_field)
            variant, served = route.choose(None if value is None else str(value))
        else:
            header = (dep.key_header if dep is not None else None) or "x-request-id"
            variant, served = route.choose(headers.get(header))
        if served.features is not None:  # entity keys in, the feature service's values looked up
            inputs = wire.parse(document, served.features.request_signature(served.signature))
            inputs, problems = served.features.fill(inputs, served.signature.names)
            if problems:
                return Prepared(variant, served, inputs, inputs.columns, problems)
        elif inputs is None or served.signature != route.production.signature:
            inputs = wire.parse(document, served.signature)
        columns, problems = _checked(served.signature, inputs, key_field, served.numbers)
        shadow = route.shadow if variant == PRODUCTION and version is None else None
        shadow_columns: dict[str, list[Any]] | None = None
        if shadow is not None:
            try:
                theirs = inputs if shadow.signature == served.signature else wire.parse(document, shadow.signature)
                shadow_columns, shadow_problems = _checked(shadow.signature, theirs, key_field, shadow.numbers)
            except BadRequest:
                shadow_problems = ["the shadow's signature cannot read this request"]
            if shadow_problems:
                shadow_columns = None
        return Prepared(variant, served, inputs, columns, problems, shadow, shadow_columns)

    async def infer(
        self,
        wire: WireProtocol,
        read_body: Callable[[], Awaitable[bytes]],
        headers: Mapping[str, str],
        client_gone: Callable[[], Awaitable[None]],
        version: int | None = None,
        request_id: str | None = None,
    ) -> Outcome:
        """Read, route, parse, check, queue and answer one prediction request (any protocol); a
        request refused (4xx) or failed (5xx) goes to the failure log (a caller gone away does not).

        ``read_body`` raises ``BadRequest`` for a body it refuses (over the size limit); ``client_gone``
        returns when the caller has gone away, so a request nobody waits for stops taking model time."""
        started = time.perf_counter()
        outcome = await self._answer(wire, read_body, headers, client_gone, version, request_id, started)
        if outcome.status >= 400 and outcome.status != CLIENT_GONE:
            self._log_failure(outcome.variant, outcome.served, outcome.status, started, request_id, outcome.problems)
        return outcome

    def _log_failure(
        self,
        variant: str,
        served: Served | None,
        status: int,
        started: float,
        request_id: str | None,
        problems: list[str],
    ) -> None:
        if self.failure_log is None:
            return
        self.failure_log.append(
            None,
            {},
            1,
            {
                "variant": variant or None,
                "version": served.version if served is not None else None,
                "status": status,
                "latency_ms": (time.perf_counter() - started) * 1000,
                "time": time.time(),
                "request_id": request_id,
                "reason": [failure_reason(problems)],
            },
        )

    async def _answer(
        self,
        wire: WireProtocol,
        read_body: Callable[[], Awaitable[bytes]],
        headers: Mapping[str, str],
        client_gone: Callable[[], Awaitable[None]],
        version: int | None,
        request_id: str | None,
        started: float,
    ) -> Outcome:
        self.arrivals += 1
        self.active += 1
        self.concurrency += 0.1 * (self.active - self.concurrency)
        arrived = True
        try:
            try:
                body = await read_body()
            except BadRequest as exc:
                return Outcome(exc.status, problems=exc.problems)
            route = self.route
            assert route is not None
            try:
                if len(body) > PARSE_IN_THREAD_BYTES:  # a 10 MB body takes ~100 ms to read and check: not on the loop
                    prep = await asyncio.to_thread(self._prepare, route, wire, body, headers, version)
                else:
                    prep = self._prepare(route, wire, body, headers, version)
            except BadRequest as exc:
                return Outcome(exc.status, problems=exc.problems)
            variant, served, inputs = prep.variant, prep.served, prep.inputs
            if prep.problems:
                self._record(variant, served, started, 400, None)
                return Outcome(400, variant, served, problems=prep.problems, signature_refused=True)
            wants_proba = PROBABILITIES in inputs.outputs
            if wants_proba and served.proba is None:
                self._record(variant, served, started, 400, None)
                return Outcome(
                    400,
                    variant,
                    served,
                    problems=[f"{self.model} v{served.version} gives no probabilities (it has no predict_proba)"],
                )
            proba_future: asyncio.Future[list[Any]] | None = None
            try:
                future = served.batcher.submit(prep.columns, inputs.rows)
                if wants_proba:
                    assert served.proba is not None
                    try:
                        proba_future = served.proba.submit(prep.columns, inputs.rows)
                    except QueueFull:
                        future.cancel()
                        raise
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
                task = asyncio.get_running_loop().create_task(self._shadow(prep, future, request_id))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            gone = asyncio.get_running_loop().create_task(client_gone())
            try:
                await asyncio.wait(
                    (future, gone), timeout=self.config.timeout_seconds, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                gone.cancel()
            if not future.done():
                # abandoned: the batcher drops a cancelled request still queued, so it costs no model time
                future.cancel()
                if proba_future is not None:
                    proba_future.cancel()
                if gone.done() and not gone.cancelled():
                    self.stats.count("client_gone")
                    return Outcome(CLIENT_GONE, variant, served, problems=["the client closed the connection"])
                self._record(variant, served, started, 504, None)
                return Outcome(
                    504, variant, served, problems=[f"the model took longer than {self.config.timeout_seconds:g} s"]
                )
            try:
                predictions = future.result()
                probabilities = None
                if proba_future is not None:
                    probabilities = await asyncio.wait_for(proba_future, self.config.timeout_seconds)
            except asyncio.TimeoutError:
                self._record(variant, served, started, 504, None)
                return Outcome(
                    504, variant, served, problems=[f"the model took longer than {self.config.timeout_seconds:g} s"]
                )
            except QueueFull as exc:
                self._record(variant, served, started, 503, None)
                return Outcome(503, variant, served, problems=[str(exc)], headers={"Retry-After": "1"})
            except Exception as exc:  # noqa: BLE001 - the model raised: answer 500 with an id, keep serving
                if proba_future is not None:
                    # its failure (the same input) is this one: retrieved, or asyncio prints it at exit
                    proba_future.add_done_callback(lambda f: f.cancelled() or f.exception())
                error_id = uuid.uuid4().hex[:12]
                # the caller's input or a bug in the model: one line (the traceback with --debug)
                log.error(
                    "error %s: request %s: %s v%s (%s) raised %s: %s",
                    error_id,
                    request_id or "-",
                    self.model,
                    served.version,
                    variant,
                    type(exc).__name__,
                    one_line(exc),
                    exc_info=exc if self.config.debug else None,
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
                        "request_id": request_id,
                        "probabilities": _probabilities_of(predictions),
                    },
                )
            return Outcome(200, variant, served, predictions, inputs=inputs, probabilities=probabilities)
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

    async def _shadow(self, prep: Prepared, production: asyncio.Future[list[Any]], request_id: str | None) -> None:
        started = time.perf_counter()
        shadow, columns, rows = prep.shadow, prep.shadow_columns, prep.inputs.rows
        assert shadow is not None
        if columns is None:  # the shadow's signature refuses what production took
            self._shadow_failed(shadow, started, 400, request_id, "the shadow's signature refuses the request")
            return
        try:
            future = shadow.batcher.submit(columns, rows)
        except QueueFull:
            self.stats.count("shadow_dropped")
            return
        try:
            predictions = await asyncio.wait_for(future, self.config.timeout_seconds)
        except asyncio.TimeoutError:
            self._shadow_failed(shadow, started, 504, request_id, f"took longer than {self.config.timeout_seconds:g} s")
            return
        except Exception as exc:  # noqa: BLE001 - a failing shadow never reaches the caller; it counts as an error
            log.warning("shadow %s v%s raised %s: %s", self.model, shadow.version, type(exc).__name__, one_line(exc))
            self._shadow_failed(shadow, started, 500, request_id, f"the model failed ({type(exc).__name__})")
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
                    "request_id": request_id,
                    "probabilities": _probabilities_of(predictions),
                    "production_prediction": theirs,
                },
            )

    def _shadow_failed(self, shadow: Served, started: float, status: int, request_id: str | None, why: str) -> None:
        self._record(SHADOW, shadow, started, status, None)
        self._log_failure(SHADOW, shadow, status, started, request_id, [why])

    def problems(self) -> list[str]:
        """What keeps this worker from serving as asked: the deployment file, the reference, the request log."""
        candidates = (
            self.deployment_error,
            self.reference_error,
            self.log.error if self.log else None,
            self.failure_log.error if self.failure_log else None,
        )
        return [p for p in candidates if p]

    async def reload(self) -> None:
        """Resolve the reference and read the deployment file now, whatever their stats say."""
        await self._follow_reference(force=True)
        await self._check_deployment(force=True)

    async def admin_rollback(self, reason: str) -> Deployment:
        assert self.model
        new = await asyncio.to_thread(
            rollback,
            self.repo,
            self.source,
            self.model,
            reason=reason,
            by="http admin (POST /admin/rollback)",
            state=self.shared,
        )
        await self._check_deployment()
        return new


def _feature_inputs(repo: Repo, signature: Signature | None, bundle: str | None) -> Any:
    """The feature lookups of a signature that names a feature service (None for the others)."""
    if signature is None or not signature.feature_service:
        return None
    from .features import FeatureInputs

    return FeatureInputs(repo, signature.feature_service, bundle=bundle)


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
