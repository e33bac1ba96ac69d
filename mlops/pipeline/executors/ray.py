"""The Ray executor: each stage that must run becomes a Ray task placed where its resources are.

The task calls ``exec_stage`` in-process on a Ray worker (pipeline/stage_exec.py): in a private
worktree of the commit the driver names, it restores the stage from the shared run cache or runs
its command, snapshots the outputs, pushes their objects and publishes the run-cache entry. Its
Ray return value is the stage's manifest: hashes only, never data. The driver (this process)
brings the objects into its cache (from the remote when the worker is another machine), then the
scheduler restores them into the workspace and records: pipeline.lock and the run record have one
writer.

Output lines travel back through one small actor per run (``_LineSink``): a worker sends each
line to it without waiting (calls from one caller arrive in order) and flushes before it
returns; a thread of the driver takes them in batches and hands them to the scheduler's events,
which show them with ``[stage]`` prefixes.

Stopping (Ctrl-C, SIGTERM): every task in flight is cancelled with ``ray.cancel(force=True)``,
which kills its worker process; the stage command's watcher sees the worker's lifeline close and
kills the command's process group (executors/local.py), and exec_stage publishes nothing for a
command that did not finish. A cancelled task is never retried by Ray.

Ray is imported only inside this module's functions, and this module only when ``--executor
ray`` is asked for: the core install and start-up do not grow.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from ...errors import CouldNotComplete, MlopsError, UsageError
from . import ExecutorOptions, StageJob, StageOutcome

if TYPE_CHECKING:
    from ...repo.repo import Repo
    from ..lock import LockedPath

INSTALL_HINT = "pip install 'mlops[ray]'"
CONNECT_TIMEOUT = 10.0  # seconds to reach the head named by --address before giving up
WAIT_STEP = 0.2  # seconds between checks of a task in flight for a stop request
DRAIN_WAIT = 3.0  # seconds a finished stage waits for its last output lines to be shown
CANCEL_WAIT = 30.0  # seconds to wait for cancelled tasks to end before giving up on them
TASK_RETRIES = 2  # Ray runs a task again when its worker died (not when the command failed or was cancelled)
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


class RayExecutor:
    """Stages as Ray tasks; see the module's docstring."""

    name = "ray"

    def __init__(self, ray: Any, rev: str, remote: str | None, sink: Any, slots: int, owns_ray: bool) -> None:
        self._ray = ray
        self.rev = rev
        self.remote = remote
        self.slots = slots  # tasks at once by default: the cluster's CPUs (-j caps it)
        self._sink = sink
        self._owns_ray = owns_ray
        self._mutex = threading.Lock()
        self._in_flight: dict[str, Any] = {}  # stage -> ObjectRef
        self._manifests: dict[str, dict[str, Any]] = {}  # stage -> the manifest its task returned
        self._listeners: dict[str, Any] = {}  # stage -> its output callback
        self._closing = threading.Event()
        self._received: dict[str, int] = {}  # stage -> output lines shown so far
        self._pump_done = threading.Condition(self._mutex)
        self._remote_task = ray.remote(_stage_task)
        self._pump = threading.Thread(target=self._pump_lines, name="ray-output", daemon=True)
        self._pump.start()

    @classmethod
    def open(cls, repo: Repo, options: ExecutorOptions) -> RayExecutor:
        """Connect to (or start) the cluster and fix the commit the workers will run."""
        ray = import_ray()
        rev = _commit_for_workers(repo, options)
        _quiet_driver(ray, quiet=True)
        owns_ray = not ray.is_initialized()
        if owns_ray:
            _check_reachable(options.address)
            try:
                ray.init(
                    address=options.address,
                    log_to_driver=False,  # stage output comes through _LineSink, prefixed by stage
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
            sink = ray.remote(num_cpus=0)(_LineSink).remote()
        except BaseException:
            if owns_ray:
                ray.shutdown()
            raise
        return cls(ray, rev, options.remote, sink, slots, owns_ray)

    # --- running --------------------------------------------------------------------------

    def run(self, repo: Repo, job: StageJob, stopping: threading.Event) -> StageOutcome:
        ray = self._ray
        name = job.stage.name
        root = str(repo.root)
        with self._mutex:
            # what upstream stages of this run made on Ray goes along by hash; the others (restored or
            # up to date here) the worker finds by their key in the local, then the shared, run cache
            upstream = [self._manifests[u] for u, _ in job.upstream if u in self._manifests]
            if stopping.is_set():
                return StageOutcome(None, "interrupted")
            self._listeners[name] = job.output
            ref = self._remote_task.options(
                **task_options(job.stage), max_retries=TASK_RETRIES, name=f"mlops-stage:{name}"
            ).remote(root, name, self.rev, self.remote, upstream, self._sink)
            self._in_flight[name] = ref
        try:
            while True:
                ready, _ = ray.wait([ref], timeout=WAIT_STEP)
                if ready or stopping.is_set():
                    break
            if not ready:  # stopping: stop_all cancels it; what it made is not recorded
                return StageOutcome(None, "interrupted")
            try:
                doc = ray.get(ref)
            except (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError) as exc:
                return StageOutcome(None, f"the Ray task ended without a result: {type(exc).__name__}")
            except ray.exceptions.RayError as exc:
                return StageOutcome(None, f"the Ray task failed: {_first_line(exc)}")
            self._drain(name, int(doc.get("lines", 0)))
        finally:
            with self._mutex:
                self._in_flight.pop(name, None)
                self._listeners.pop(name, None)
        if doc.get("error"):
            return StageOutcome(doc.get("returncode"), str(doc["error"]))
        outcome = self._outcome(repo, job, doc["manifest"])
        if outcome.ok:
            with self._mutex:
                self._manifests[name] = doc["manifest"]
        return outcome

    def _outcome(self, repo: Repo, job: StageJob, manifest: dict[str, Any]) -> StageOutcome:
        from ..stage_exec import parse_manifest

        # a worker's answer is received content like any manifest: bounded and checked field by field,
        # and its outputs must be exactly the ones the stage declares before any becomes a path here
        try:
            outs = parse_manifest(manifest, f"the manifest of stage '{job.stage.name}' from Ray").outs
        except MlopsError as exc:
            return StageOutcome(None, exc.message)
        declared = {o.path for o in job.stage.outs}
        if {o.path for o in outs} != declared:
            return StageOutcome(None, f"the worker's manifest names other outputs than the stage declares: {declared}")
        problem = _bring_objects(repo, self.remote, outs)
        if problem:
            return StageOutcome(None, problem)
        status = manifest.get("status", "ran")
        # "ran": this run made the outputs (the driver's run is their producer); "restored" and
        # "adopted": the outputs are those of the run the shared run-cache entry names
        run_id = None if status == "ran" else manifest.get("run_id")
        return StageOutcome(0, outs=outs, status="restored" if status == "restored" else "ran", run_id=run_id)

    # --- output lines -----------------------------------------------------------------------

    def _pump_lines(self) -> None:
        ray = self._ray
        while not self._closing.is_set():
            try:
                batch = ray.get(self._sink.take.remote(0.5))
            except Exception:  # the actor or the cluster went away: nothing more will come
                batch = []
                self._closing.wait(0.5)
            with self._mutex:
                listeners = dict(self._listeners)
            for stage, line in batch:
                listener = listeners.get(stage)
                if listener is not None:
                    with contextlib.suppress(Exception):
                        listener(line)
            if batch:
                with self._pump_done:
                    for stage, _ in batch:
                        self._received[stage] = self._received.get(stage, 0) + 1
                    self._pump_done.notify_all()

    def _drain(self, name: str, sent: int) -> None:
        """Wait until the ``sent`` lines of the finished task have been shown (bounded: a line lost with a
        dead actor must not hold the run)."""
        with self._pump_done:
            deadline = time.monotonic() + DRAIN_WAIT
            while self._received.get(name, 0) < sent and not self._closing.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._pump_done.wait(left)
            self._received.pop(name, None)

    # --- stopping ---------------------------------------------------------------------------

    def stop_all(self) -> None:
        ray = self._ray
        with self._mutex:
            refs = list(self._in_flight.values())
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True, recursive=True)
        if refs:
            with contextlib.suppress(Exception):
                ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT)

    def close(self) -> None:
        self._closing.set()
        self._pump.join(timeout=5)
        with contextlib.suppress(Exception):
            self._ray.kill(self._sink)
        if self._owns_ray:
            with contextlib.suppress(Exception):
                self._ray.shutdown()
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
    prints. Stage output comes through _LineSink; a worker's death comes back as the task's error or
    Ray's retry. The same switch Ray's own debugger (ray.util.rpdb) uses; absent in another Ray, a no-op."""
    module = getattr(getattr(ray, "_private", None), "worker", None)
    if module is not None and hasattr(module, "_worker_logs_enabled"):
        module._worker_logs_enabled = not quiet


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


class _LineSink:
    """A Ray actor holding output lines between workers and the driver (see the module's docstring)."""

    def __init__(self) -> None:
        import asyncio

        self._lines: list[tuple[str, str]] = []
        self._arrived = asyncio.Event()

    async def put(self, batch: list[tuple[str, str]]) -> None:
        self._lines.extend(batch)
        self._arrived.set()

    async def take(self, wait: float) -> list[tuple[str, str]]:
        import asyncio

        if not self._lines:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait)
        self._arrived.clear()
        batch, self._lines = self._lines, []
        return batch


class _SinkEvents:
    """exec_stage's events on a worker: each output line sent to the driver's sink, in order."""

    def __init__(self, sink: Any) -> None:
        self._sink = sink
        self.sent = 0

    def stage_started(self, name: str, reasons: tuple[str, ...]) -> None: ...

    def stage_output(self, name: str, line: str) -> None:
        self._sink.put.remote([(name, line)])  # not awaited: calls from one worker arrive in order
        self.sent += 1

    def stage_finished(self, result: Any) -> None: ...

    def flush(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.get(self._sink.put.remote([]), timeout=10)


def _stage_task(root: str, name: str, rev: str, remote: str | None, upstream: list[dict[str, Any]], sink: Any) -> dict:
    """One stage on a Ray worker: exec_stage in-process; returns {"manifest": ...} or {"error", "returncode"}."""
    from ...repo.repo import find_repo
    from ..stage_exec import exec_stage, parse_manifest

    events = _SinkEvents(sink)
    try:
        repo = find_repo(os.environ.get(WORKER_REPO_ENV) or root)
        manifests = [parse_manifest(doc, f"the manifest of stage '{doc.get('stage')}'") for doc in upstream]
        # no signal handlers on a Ray worker: Ray owns them; a cancel kills the worker, and the
        # command's watcher then kills its process group (executors/local.py)
        manifest = exec_stage(
            repo, name, rev=rev, remote=remote, upstream=tuple(manifests), events=events, stop_signals=()
        )
        return {"manifest": manifest.to_dict(), "lines": events.sent}
    except MlopsError as exc:
        code = exc.fields.get("returncode")  # the command's own exit code, when it was the command that failed
        return {"error": exc.message, "returncode": code if isinstance(code, int) else None, "lines": events.sent}
    finally:
        events.flush()
