"""The Ray executor: each stage that must run goes to a warm, long-lived Ray actor of its resource shape.

Why actors, not tasks: every `mlops run` is a new Ray job, and Ray starts a job's worker processes
afresh (a Python process importing ray, then mlops, each; at most as many at once as the node has
cores), which cost 3-5 s per run on a small machine before any stage command started. A
**stage runner** (``StageRunner``) is a detached actor in Ray namespace ``mlops``, named after the
repository, the mlops version and its resource shape (``stage-runner-<version>-<repo>-<shape>-<n>``),
created with the stage's ``resources:`` (num_cpus / num_gpus / memory, held for the actor's life) and
running only stages of that shape, one at a time. Later drivers find it by name and reuse it: its
process has ray and mlops imported already. A runner ends itself after an idle timeout
(``MLOPS_RAY_IDLE_TIMEOUT`` seconds, default 600, given when it is created), so it does not hold
cluster resources forever; and when a new runner cannot be placed because idle runners (of any
repository or shape) hold the resources, the driver asks those idle ones to end.

A driver hands a runner one stage in one remote call, ``run`` (a round trip per stage is ~0.1 s on a
loaded machine): a runner that already runs a stage answers "busy" at once, from another of its
threads, and the driver tries the next name. ``run`` calls
``exec_stage`` in the runner's process (pipeline/stage_exec.py): in a private worktree of the
commit the driver names, it restores the stage from the shared run cache or runs its command,
snapshots the outputs, pushes their objects and publishes the run-cache entry. The answer is the
stage's manifest: hashes only, never data. The driver (this process) brings the objects into its
cache (from the remote when the runner is on another machine), then the scheduler restores them
into the workspace and records: pipeline.lock and the run record have one writer.

Output lines wait in the runner: the driver's thread that handed it the stage asks for them
in batches while the stage runs (``lines``: the runner answers while its stage runs), and the
answer of ``run`` carries the last ones, so none is lost or reordered; the scheduler's events
show them with ``[stage]`` prefixes. (No actor per run: a new actor is a new worker process,
the very cost runners save.)

Stopping (Ctrl-C, SIGTERM): every runner with a stage in flight is killed (``ray.kill``; Ray
cannot force-cancel an actor's call), which ends its process; the stage command's watcher sees
the process's lifeline close and kills the command's process group (executors/local.py), and
exec_stage publishes nothing for a command that did not finish. The next run creates a fresh
runner under the freed name. A runner that dies on its own (killed, out of memory, its node
lost) is replaced the same way and the stage runs again (twice at most), as Ray retried tasks.

Ray is imported only inside this module's functions, and this module only when ``--executor
ray`` is asked for: the core install and start-up do not grow.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import CouldNotComplete, MlopsError, UsageError
from . import ExecutorOptions, StageJob, StageOutcome

if TYPE_CHECKING:
    from ...repo.repo import Repo
    from ..lock import LockedPath

INSTALL_HINT = "pip install 'mlops[ray]'"
CONNECT_TIMEOUT = 10.0  # seconds to reach the head named by --address before giving up
WAIT_STEP = 0.2  # seconds between checks of a task in flight for a stop request
LINE_WAIT = 0.5  # seconds a runner holds a request for output lines open when it has none
CANCEL_WAIT = 30.0  # seconds to wait for cancelled tasks to end before giving up on them
TASK_RETRIES = 2  # a stage runs again when its runner died (not when the command failed or was cancelled)
NAMESPACE = "mlops"  # the Ray namespace of mlops' stage runners
RUNNER_PREFIX = "stage-runner-"
IDLE_TIMEOUT_ENV = "MLOPS_RAY_IDLE_TIMEOUT"  # seconds an idle stage runner waits for work before it ends
IDLE_TIMEOUT = 600.0
CLAIM_PATIENCE = 2.0  # seconds a runner may take to answer before idle runners elsewhere are asked to end
RETIRE_IDLE = 5.0  # seconds a runner must have been idle before another pool's driver may ask it to end
POOL_LIMIT = 256  # runners per repository and shape at most (names ...-0 to ...-255)
RUNNER_THREADS = 4  # a runner answers busy, lines and retire requests while its one stage runs
# where a worker of another machine finds its clone of the repository; default: the driver's path
WORKER_REPO_ENV = "MLOPS_WORKER_REPO"


def import_ray() -> Any:
    """The ray module, or a UsageError (exit 2) that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--executor ray needs Ray, which is not installed here", hint=f"install it: {INSTALL_HINT}"
        ) from None
    return ray


def task_options(stage: Any) -> dict[str, Any]:
    """Ray task options from ``stage.resources`` (pipeline.yaml ``resources:``): one CPU unless it says."""
    resources = getattr(stage, "resources", None)
    cpus = getattr(resources, "cpus", None)
    gpus = getattr(resources, "gpus", None)
    memory = getattr(resources, "memory", None)
    options: dict[str, Any] = {"num_cpus": 1 if cpus is None else cpus}
    if gpus:
        options["num_gpus"] = gpus
    if memory:
        options["memory"] = int(memory)
    return options


def idle_timeout() -> float:
    """``MLOPS_RAY_IDLE_TIMEOUT`` (seconds, > 0), else the default."""
    raw = os.environ.get(IDLE_TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else IDLE_TIMEOUT
    except ValueError:
        raise UsageError(f"{IDLE_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise UsageError(f"{IDLE_TIMEOUT_ENV}={raw!r} must be more than 0 seconds")
    return value


def runner_prefix(root: str, options: dict[str, Any]) -> str:
    """The name of a stage runner without its number: one pool per mlops version, repository and shape."""
    from ... import __version__

    shape = f"c{options.get('num_cpus', 0):g}-g{options.get('num_gpus', 0):g}-m{options.get('memory', 0)}"
    repo_id = hashlib.sha256(root.encode()).hexdigest()[:12]
    return f"{RUNNER_PREFIX}{__version__}-{repo_id}-{shape}-"


class RayExecutor:
    """Stages on warm stage runners (Ray actors); see the module's docstring."""

    name = "ray"

    def __init__(
        self, ray: Any, rev: str, remote: str | None, slots: int, owns_ray: bool, engine_seconds: dict[str, float]
    ) -> None:
        self._ray = ray
        # Ray's own start-up and tear-down in this process, timed apart from the stages (the run's
        # --json reports them): import ray, connect, warm up (see ``open``), disconnect (``close``)
        self.engine_seconds = engine_seconds
        self.rev = rev
        self.remote = remote
        self.slots = slots  # tasks at once by default: the cluster's CPUs (-j caps it)
        self._owns_ray = owns_ray
        self._mutex = threading.Lock()
        self._in_flight: dict[str, tuple[Any, Any]] = {}  # stage -> (its runner, the ObjectRef of its answer)
        self._manifests: dict[str, dict[str, Any]] = {}  # stage -> the manifest its task returned
        self._runner_class = ray.remote(StageRunner)
        self._idle_timeout = idle_timeout()
        self._driver = secrets.token_hex(6)  # this driver's stage tokens carry it
        self._taken: dict[str, set[int]] = {}  # runner prefix -> numbers this driver holds now

    @classmethod
    def open(cls, repo: Repo, options: ExecutorOptions) -> RayExecutor:
        """Connect to (or start) the cluster and fix the commit the workers will run."""
        began = time.perf_counter()
        ray = import_ray()
        seconds = {"import": time.perf_counter() - began}
        rev = _commit_for_workers(repo, options)
        _quiet_driver(ray, quiet=True)
        owns_ray = not ray.is_initialized()
        began = time.perf_counter()
        if owns_ray:
            _check_reachable(options.address)
            try:
                ray.init(
                    address=options.address,
                    log_to_driver=False,  # stage output comes from the runners, prefixed by stage
                    include_dashboard=False,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = options.address or "a local cluster"
                raise CouldNotComplete(
                    f"could not reach Ray at {where}: {exc}",
                    hint="check --address (ray://HOST:10001 or HOST:6379), or start one: ray start --head",
                ) from None
        try:
            slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
            seconds["connect"] = time.perf_counter() - began
            # Ray builds its serializer on the first call a driver makes, importing pydantic, starlette
            # and pyarrow when installed (~0.5 s): once here, as part of Ray's start-up, not in a stage
            began = time.perf_counter()
            ray.put(None)
            seconds["warm_up"] = time.perf_counter() - began
        except BaseException:
            if owns_ray:
                ray.shutdown()
            raise
        return cls(ray, rev, options.remote, slots, owns_ray, seconds)

    # --- running --------------------------------------------------------------------------

    def run(self, repo: Repo, job: StageJob, stopping: threading.Event) -> StageOutcome:
        name = job.stage.name
        with self._mutex:
            # what upstream stages of this run made on Ray goes along by hash; the others (restored or
            # up to date here) the runner finds by their key in the local, then the shared, run cache
            upstream = [self._manifests[u] for u, _ in job.upstream if u in self._manifests]
        request = (str(repo.root), name, self.rev, self.remote, upstream, job.force)
        for _attempt in range(TASK_RETRIES + 1):
            try:
                doc = self._hand_over(job, request, stopping)
            except MlopsError as exc:  # no runner to be had: a failed stage, as the scheduler expects
                return StageOutcome(None, exc.message)
            if doc is None:
                return StageOutcome(None, "interrupted")
            if doc.get("died"):
                continue  # the runner died mid-stage (nothing was published): a fresh one runs it again
            break
        else:
            return StageOutcome(None, f"its Ray stage runner died {TASK_RETRIES + 1} times")
        if doc.get("error"):
            return StageOutcome(doc.get("returncode"), str(doc["error"]))
        outcome = self._outcome(repo, job, doc["manifest"])
        if outcome.ok:
            with self._mutex:
                self._manifests[name] = doc["manifest"]
        return outcome

    def _hand_over(self, job: StageJob, request: tuple[Any, ...], stopping: threading.Event) -> dict | None:
        """The stage on a free runner of its shape, in one call per runner tried: a busy runner answers
        "busy" at once and the next name is tried (created when none is there). Returns the runner's
        answer ({"died": True} when it died mid-stage), or None when stopping."""
        ray = self._ray
        options = task_options(job.stage)
        prefix = runner_prefix(request[0], options)
        with self._mutex:
            taken = self._taken.setdefault(prefix, set())
            numbers = [n for n in range(POOL_LIMIT) if n not in taken]
        for number in numbers:
            with self._mutex:
                if number in taken:
                    continue  # another stage of this driver took it meanwhile
                taken.add(number)
            token = f"{self._driver}:{job.stage.name}:{secrets.token_hex(4)}"
            try:
                runner = self._runner_class.options(
                    name=f"{prefix}{number}",
                    namespace=NAMESPACE,
                    lifetime="detached",
                    get_if_exists=True,
                    max_restarts=0,
                    max_concurrency=RUNNER_THREADS,
                    **options,
                ).remote(self._idle_timeout)
                with self._mutex:
                    if stopping.is_set():
                        return None
                    ref = runner.run.remote(token, *request)
                    self._in_flight[job.stage.name] = (runner, ref)
                try:
                    if not self._follow(runner, token, ref, job, options, f"{prefix}{number}", stopping):
                        return None  # stopping: stop_all kills the runner; what it made is not recorded
                    doc = ray.get(ref)
                finally:
                    with self._mutex:
                        self._in_flight.pop(job.stage.name, None)
            except ray.exceptions.RayActorError:
                if stopping.is_set():
                    return None
                return {"died": True}
            except ray.exceptions.RayError as exc:
                return {"error": f"the Ray stage runner failed: {_first_line(exc)}"}
            except Exception:  # noqa: BLE001 - a name another driver is creating, a runner that just died: the next
                continue
            finally:
                self._give_back((prefix, number))
            if doc.get("busy"):
                continue
            _show(job, doc.get("lines", ()))  # the last lines, which the runner kept for its answer
            return doc
        raise CouldNotComplete(
            f"no free Ray stage runner for stage '{job.stage.name}' among {POOL_LIMIT}",
            hint=f"end idle ones (see docs/pipelines.md, Executors) or lower {IDLE_TIMEOUT_ENV}",
        )

    def _follow(
        self,
        runner: Any,
        token: str,
        ref: Any,
        job: StageJob,
        options: dict[str, Any],
        name: str,
        stopping: threading.Event,
    ) -> bool:
        """Show the stage's output lines until its answer is ready (True), or until stopping (False).

        A runner that has not answered anything after ``CLAIM_PATIENCE`` s may not have started: it may
        be waiting for resources idle runners of other pools hold, which are then asked to end."""
        ray = self._ray
        lines = runner.lines.remote(token, LINE_WAIT)
        started, waited, next_ask = False, 0.0, CLAIM_PATIENCE
        while True:
            ready, _ = ray.wait([ref, lines], num_returns=1, timeout=WAIT_STEP)
            if lines in ready:
                started = True
                with contextlib.suppress(ray.exceptions.RayError):
                    _show(job, ray.get(lines))
                lines = runner.lines.remote(token, LINE_WAIT)
            if ref in ready or ray.wait([ref], timeout=0)[0]:
                # the lines asked for before the answer came; the answer carries the rest
                with contextlib.suppress(ray.exceptions.RayError):
                    _show(job, ray.get(lines, timeout=CANCEL_WAIT))
                return True
            if stopping.is_set():
                return False
            waited += WAIT_STEP
            if not started and waited >= next_ask:
                next_ask = waited + RETIRE_IDLE
                if not _fits(ray.available_resources(), options):
                    retire_idle_runners(ray, skip_prefix=name.rsplit("-", 1)[0] + "-", min_idle=RETIRE_IDLE)

    def _give_back(self, slot: tuple[str, int]) -> None:
        prefix, number = slot
        with self._mutex:
            self._taken.get(prefix, set()).discard(number)

    def _outcome(self, repo: Repo, job: StageJob, manifest: dict[str, Any]) -> StageOutcome:
        from ..stage_exec import parse_manifest

        # a worker's answer is received content like any manifest: bounded and checked field by field,
        # and its outputs must be exactly the ones the stage declares before any becomes a path here
        try:
            received = parse_manifest(manifest, f"the manifest of stage '{job.stage.name}' from Ray")
        except MlopsError as exc:
            return StageOutcome(None, exc.message)
        if received.stage != job.stage.name:
            return StageOutcome(None, f"the worker answered for stage '{received.stage}', not '{job.stage.name}'")
        if received.key != job.key:
            # the worker's inputs differ from this workspace's (a declared env: value most often): its
            # outputs were made from other inputs, and recording them under this key would be a lie
            return StageOutcome(
                None,
                f"the worker computed run key {received.key[:12]} for this stage and this driver {job.key[:12]}: "
                "an input differs on the worker (a declared env: value set here and not there, most often); "
                "nothing recorded",
            )
        outs = received.outs
        declared = {o.path for o in job.stage.outs}
        if {o.path for o in outs} != declared:
            return StageOutcome(None, f"the worker's manifest names other outputs than the stage declares: {declared}")
        problem = _bring_objects(repo, self.remote, outs)
        if problem:
            return StageOutcome(None, problem)
        # "ran": this run made the outputs (the driver's run is their producer); "restored" and
        # "adopted": the outputs are those of the run the shared run-cache entry names
        run_id = None if received.status == "ran" else received.run_id
        return StageOutcome(0, outs=outs, status="restored" if received.status == "restored" else "ran", run_id=run_id)

    # --- stopping ---------------------------------------------------------------------------

    def stop_all(self) -> None:
        ray = self._ray
        with self._mutex:
            in_flight = list(self._in_flight.values())
        for runner, _ in in_flight:
            # Ray cannot force-cancel an actor's call: the runner goes, its stage command with it
            with contextlib.suppress(Exception):
                ray.kill(runner, no_restart=True)
        refs = [ref for _, ref in in_flight]
        if refs:
            with contextlib.suppress(Exception):
                ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT)

    def close(self) -> None:
        if self._owns_ray:
            began = time.perf_counter()
            with contextlib.suppress(Exception):
                self._ray.shutdown()
            self.engine_seconds["disconnect"] = time.perf_counter() - began
        _quiet_driver(self._ray, quiet=False)


def _check_reachable(address: str | None) -> None:
    """Refuse an address nothing listens on at once: ray.init retries such a one for minutes."""
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, _, port = hostport.rstrip("/").rpartition(":")
    hint = "check --address (ray://HOST:10001 for Ray Client, HOST:6379 for the head's GCS)"
    if not host or not port.isdigit():
        raise UsageError(f"--address {address}: not HOST:PORT or ray://HOST:PORT", hint=hint)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise CouldNotComplete(f"could not reach Ray at {address}: {exc.strerror or exc}", hint=hint) from None


def _quiet_driver(ray: Any, *, quiet: bool) -> None:
    """Silence (or let speak again) what Ray prints in this process: its raylet's messages ("a worker
    died...") go to stdout, where `mlops run --json` prints its one document, and the core never
    prints. Stage output comes from the runners; a worker's death comes back as the task's error or
    Ray's retry. The same switch Ray's own debugger (ray.util.rpdb) uses; absent in another Ray, a no-op."""
    module = getattr(getattr(ray, "_private", None), "worker", None)
    if module is not None and hasattr(module, "_worker_logs_enabled"):
        module._worker_logs_enabled = not quiet


def _fits(available: dict[str, float], options: dict[str, Any]) -> bool:
    """Whether the cluster has the resources of a runner of this shape free now."""
    wanted = {"CPU": options.get("num_cpus", 0), "GPU": options.get("num_gpus", 0), "memory": options.get("memory", 0)}
    return all(available.get(resource, 0) >= amount for resource, amount in wanted.items() if amount)


def retire_idle_runners(ray: Any, *, skip_prefix: str = "", min_idle: float = 0.0) -> int:
    """Ask every stage runner of the cluster (any repository, any shape; not those named
    ``skip_prefix``...) idle for ``min_idle`` seconds to end; a runner with a stage, or idle for less,
    says no. Returns how many were asked."""
    asked = 0
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry.get("name", "") if isinstance(entry, dict) else str(entry)
        if entry.get("namespace") != NAMESPACE or not name.startswith(RUNNER_PREFIX):
            continue
        if skip_prefix and name.startswith(skip_prefix):
            continue
        with contextlib.suppress(Exception):
            ray.get_actor(name, namespace=NAMESPACE).retire.remote(min_idle)
            asked += 1
    return asked


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _commit_for_workers(repo: Repo, options: ExecutorOptions) -> str:
    """The commit workers run: HEAD when the tracked files are clean, else a snapshot with --allow-dirty
    sent to the remote as a git bundle (``stage_exec.prepare_commit``, which names the changed files
    when it refuses)."""
    from ..stage_exec import prepare_commit

    return prepare_commit(repo, allow_dirty=options.allow_dirty, remote=options.remote)


def _bring_objects(repo: Repo, remote: str | None, outs: tuple[LockedPath, ...]) -> str:
    """Make every output's objects present in this cache (a worker of this machine already put them
    there; another machine's worker pushed them to the remote). Returns a problem, or ''."""
    missing = [o for o in outs if o.hash is None or not repo.objects.exists(o.hash)]
    if not missing:
        return ""
    if remote is None and not repo.config.default_remote:
        return (
            f"the worker's outputs ({', '.join(o.path for o in missing)}) are not in this cache and no remote "
            "was given to bring them from (pass --remote NAME)"
        )
    from ...data.references import Root
    from ...data.transfer import fetch

    roots = [Root(o.hash, o.kind == "dir", o.path, None if o.kind == "dir" else o.size) for o in missing if o.hash]
    try:
        fetch(repo, remote=remote, only_roots=roots)
    except MlopsError as exc:
        return f"could not bring the worker's outputs from the remote: {exc.message}"
    still = [o.path for o in missing if o.hash is None or not repo.objects.exists(o.hash)]
    return f"the remote lacks the worker's outputs: {', '.join(still)}" if still else ""


# --- what runs on a Ray worker -------------------------------------------------------------------


class StageRunner:
    """A long-lived Ray actor that runs stages of one resource shape, one at a time (module docstring).

    Its methods run in a few threads: ``run`` (busy), ``lines`` and ``retire`` answer while ``run``
    holds a stage."""

    def __init__(self, idle_timeout: float) -> None:
        self._lock = threading.Lock()
        self._token: str | None = None  # the token of the stage running now
        self._ended: collections.deque[str] = collections.deque(maxlen=64)  # tokens answered (ran or busy)
        self._retiring = False
        self._last_used = time.monotonic()
        self._idle_timeout = idle_timeout
        self._lines: list[str] = []  # output lines of the running stage not yet taken by its driver
        self._lines_arrived = threading.Condition(self._lock)
        threading.Thread(target=self._end_when_idle, name="idle", daemon=True).start()

    def run(
        self,
        token: str,
        root: str,
        name: str,
        rev: str,
        remote: str | None,
        upstream: list[dict[str, Any]],
        force: bool = False,
    ) -> dict:
        """Run the stage, or answer {"busy": True} at once when this runner has one (or is ending)."""
        with self._lock:
            if self._retiring or self._token is not None:
                self._ended.append(token)
                self._lines_arrived.notify_all()
                return {"busy": True}
            self._token, self._lines = token, []
            self._lines_arrived.notify_all()
        doc: dict[str, Any] = {}
        try:
            doc = _stage_task(root, name, rev, remote, upstream, self, force, remove_later=_in_background)
            return doc
        finally:
            with self._lock:
                doc["lines"], self._lines = self._lines, []  # the last ones go with the answer
                self._token, self._last_used = None, time.monotonic()
                self._ended.append(token)
                self._lines_arrived.notify_all()

    def lines(self, token: str, wait: float) -> list[str]:
        """The output lines of the stage ``token`` runs, waiting up to ``wait`` s for one; [] once it ended
        (its last lines went with the answer of ``run``). A call may come before its ``run`` starts."""
        deadline = time.monotonic() + wait
        with self._lock:
            while token not in self._ended and not (self._token == token and self._lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lines_arrived.wait(remaining)
            if self._token != token:
                return []
            taken, self._lines = self._lines, []
            return taken

    # exec_stage's events (the runner is its own event sink: lines wait here for the driver)
    def stage_started(self, name: str, reasons: tuple[str, ...]) -> None: ...

    def stage_output(self, name: str, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            self._lines_arrived.notify_all()

    def stage_finished(self, result: Any) -> None: ...

    def pid(self) -> int:
        return os.getpid()

    def retire(self, min_idle: float = 0.0) -> bool:
        """End this runner unless it runs a stage, or has been idle for less than ``min_idle`` s."""
        with self._lock:
            if self._token is not None or time.monotonic() - self._last_used < min_idle:
                return False
            self._retiring = True
        import ray

        ray.actor.exit_actor()  # the caller sees the actor's death, and its name is free again
        return True  # pragma: no cover - exit_actor does not return

    def _end_when_idle(self) -> None:
        import ray

        while True:
            time.sleep(min(self._idle_timeout / 4, 5.0))
            with self._lock:
                idle = self._token is None
                if idle and time.monotonic() - self._last_used >= self._idle_timeout:
                    break
        # through its own method, so Ray ends the actor the intended way
        with contextlib.suppress(Exception):
            ray.get_runtime_context().current_actor.retire.remote()


def _show(job: StageJob, lines: Any) -> None:
    for line in lines if isinstance(lines, list) else ():
        with contextlib.suppress(Exception):
            job.output(str(line))


def _in_background(remove: Callable[[], None]) -> None:
    """A stage's private worktree goes after its answer (two git calls off the stage's path); a runner
    killed meanwhile leaves it to the next stage exec in the clone, as a killed stage exec does."""

    def quietly() -> None:
        with contextlib.suppress(MlopsError, OSError):
            remove()

    threading.Thread(target=quietly, name="remove-worktree", daemon=True).start()


def _stage_task(
    root: str,
    name: str,
    rev: str,
    remote: str | None,
    upstream: list[dict[str, Any]],
    events: Any,
    force: bool = False,
    remove_later: Callable[[Callable[[], None]], None] | None = None,
) -> dict:
    """One stage in a stage runner: exec_stage in-process; returns {"manifest": ...} or {"error", "returncode"}."""
    from ...repo.repo import find_repo
    from ..stage_exec import exec_stage, parse_manifest

    try:
        repo = find_repo(os.environ.get(WORKER_REPO_ENV) or root)
        manifests = [parse_manifest(doc, f"the manifest of stage '{doc.get('stage')}'") for doc in upstream]
        # no signal handlers in a Ray actor: Ray owns them; a stop kills the runner, and the
        # command's watcher then kills its process group (executors/local.py)
        manifest = exec_stage(
            repo,
            name,
            rev=rev,
            remote=remote,
            upstream=tuple(manifests),
            events=events,
            stop_signals=(),
            force=force,
            remove_later=remove_later,
        )
        return {"manifest": manifest.to_dict()}
    except MlopsError as exc:
        code = exc.fields.get("returncode")  # the command's own exit code, when it was the command that failed
        return {"error": exc.message, "returncode": code if isinstance(code, int) else None}
