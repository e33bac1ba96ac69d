"""`mlops run`: run what is out of date, in DAG order, independent stages in parallel.

Per stage (on a worker thread): take the locks of its outputs, read its inputs, decide
(skip when up to date, restore from the run cache when its key was seen, else run),
then record: outputs snapshotted into the object store, the stage's block in
pipeline.lock rewritten, the run cache filled. A failed or interrupted stage records
nothing, and its outputs are never taken into the cache.

Failure: fail fast by default (running stages finish, nothing new starts); with
``keep_going`` every stage that does not depend on a failed one still runs.

Where a command runs is an executor's job (``executors/``): ``local`` (a subprocess in the
workspace, the default) or ``ray`` (a Ray task). This scheduler stays the planner and the one
writer of pipeline.lock, the run cache and the run record, whichever executor runs commands.

Stages never outlive the run (docs/security.md):
- a stop request (Ctrl-C; SIGTERM and SIGHUP too when the caller asks, as the CLI does)
  asks the executor to stop every running stage (``StageExecutor.stop_all``: process groups
  locally, cancelled tasks on Ray) and records nothing for the stages it stopped; the result
  says which signal stopped the run;
- the local executor runs each command in a process group of its own, killed when the
  command ends or the run dies (executors/local.py);
- the flocks on a stage's outputs are inherited by the stage's processes, so a process
  that escaped all of the above still holds them: a later run waits for it and refuses,
  naming it, instead of recording an output it is still writing.

Signal handlers are installed only while stages run, only on the main thread, and only for
the signals the caller names (``stop_signals``; SIGINT alone by default), then restored: a
Python caller keeps its own handlers, and importing this module installs none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.pointer import Pointer
from ..errors import InvalidPathError, LockHeldError, MlopsError
from ..fsio import FileLock, pid_alive
from ..parallel import wait_any
from ..paths import inside as paths_inside
from ..paths import real_location_problem
from ..repo.repo import Repo
from ..store.hashing import hash_bytes
from ..tracking import store as tracking
from . import runcache
from .executors import ExecutorOptions, StageExecutor, StageJob, check_executor_name
from .graph import Graph, build_graph
from .lock import LOCK_FILE, LockedPath, LockEntry, read_lock, write_lock
from .params import ParamFiles
from .spec import Stage, load_pipeline
from .state import StageInputs, check_params, out_of_date_reasons, read_inputs, read_outputs

if TYPE_CHECKING:
    from ..remotes.base import Remote

# stage outcomes
RAN, RESTORED, SKIPPED, FAILED, INTERRUPTED, NOT_RUN, WOULD_RUN, FROZEN = (
    "ran",
    "restored",
    "skipped",
    "failed",
    "interrupted",
    "not run",
    "would run",
    "frozen",
)
WOULD_RESTORE = "would restore"  # --dry-run: from the run cache, or the shared one on a remote


@dataclass(frozen=True)
class StageResult:
    name: str
    status: str
    reasons: tuple[str, ...] = ()
    started: float | None = None  # epoch seconds
    ended: float | None = None
    returncode: int | None = None
    error: str = ""
    outs: tuple[LockedPath, ...] = ()
    deps: tuple[LockedPath, ...] = ()
    params: dict[str, dict[str, object]] = field(default_factory=dict)
    # restored or skipped: the run that ran the command which produced these outputs, when known
    produced_by: str | None = None
    run_key: str | None = field(default=None, compare=False)  # skipped: its run-cache key, to find produced_by
    restore_from: str = ""  # would restore: "local" (this repo's run cache) or "remote NAME" (the shared one)

    @property
    def seconds(self) -> float | None:
        return None if self.started is None or self.ended is None else self.ended - self.started

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "status": self.status,
            "reasons": list(self.reasons),
            "started": self.started,
            "ended": self.ended,
            "seconds": self.seconds,
            "returncode": self.returncode,
            "error": self.error or None,
            **({"produced_by": self.produced_by} if self.produced_by else {}),
            **({"restore_from": self.restore_from, "key": self.run_key} if self.restore_from else {}),
        }


def finished_stage(
    name: str,
    status: str,
    reasons: tuple[str, ...],
    started: float,
    inputs: StageInputs,
    outs: tuple[LockedPath, ...],
    *,
    returncode: int | None = None,
    produced_by: str | None = None,
) -> StageResult:
    """A stage that ended with its outputs (ran, restored), ending now: its inputs and outputs as the
    run record keeps them. The one builder of such a result, for `mlops run`, `stage exec` and `stage collect`."""
    return StageResult(
        name,
        status,
        reasons,
        started,
        time.time(),
        returncode,
        outs=outs,
        deps=inputs.deps,
        params=inputs.params,
        produced_by=produced_by,
    )


@dataclass(frozen=True)
class RunResult:
    """``run_id`` is None when nothing ran (``up_to_date``, or a dry run): such a run records no tracking run,
    and ``last_run`` names the newest pipeline run recorded before it."""

    run_id: str | None
    stages: tuple[StageResult, ...]
    interrupted: bool = False
    dry_run: bool = False
    warnings: tuple[str, ...] = ()
    stop_signal: int | None = None  # the signal that stopped the run (SIGINT, SIGTERM, SIGHUP), if one did
    up_to_date: bool = False  # every selected stage was skipped (up to date or frozen): nothing recorded
    last_run: str | None = None
    name: str = ""  # the recorded run's name: the stages that ran (run_name)
    # an engine's own start-up and tear-down (Ray: import, connect, warm_up, disconnect), seconds
    engine_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[StageResult]:
        return [s for s in self.stages if s.status == FAILED]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


class RunEvents:
    """Callbacks for whoever shows the run (the CLI's live view); called from worker threads."""

    def stage_started(self, name: str, reasons: tuple[str, ...]) -> None: ...

    def stage_output(self, name: str, line: str) -> None: ...

    def stage_finished(self, result: StageResult) -> None: ...


class _LockView:
    """pipeline.lock as last read, re-read only when the file changed (another run wrote it).

    Stages of one run share it, so a 50-stage no-op run parses the file once, not 50 times.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, LockEntry] = {}
        self._mutex = threading.Lock()

    def get(self, name: str) -> LockEntry | None:
        path = self.root / LOCK_FILE
        with self._mutex:
            try:
                st = path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = (0, 0)
            if stamp != self._stamp:
                self._entries = read_lock(self.root)
                self._stamp = stamp
            return self._entries.get(name)


@dataclass
class _Shared:
    """State shared between the scheduler and the stage workers."""

    order: list[str]
    lock_view: _LockView
    params: ParamFiles
    executor: StageExecutor  # runs the command of a stage that must run
    graph: Graph
    begin_run: Callable[[], None] = lambda: None  # creates the tracking run before a stage's command starts
    stopping: threading.Event = field(default_factory=threading.Event)
    # outputs of the stages of this run that finished well, for executors that pass them to workers
    outputs: dict[str, tuple[LockedPath, ...]] = field(default_factory=dict)


def plan(
    repo: Repo,
    graph: Graph,
    names: list[str],
    *,
    force: bool = False,
    remote: Remote | None = None,
    deps_from_pointers: bool = False,
) -> list[StageResult]:
    """What would run, be restored, or be skipped, and why (``--dry-run``).

    A stage that is out of date is restored when its key is in the run cache (with every object
    here), or, given ``remote``, in that remote's shared run cache ("would restore", with
    ``restore_from`` "local" or "remote NAME", the entry's outputs and its key). A restored stage's
    outputs are known, so the stages after it get their keys too, as ``mlops run`` would compute
    them once it placed those outputs; after a stage that would run, they would run as well.
    ``deps_from_pointers``: a dependency missing from the workspace but tracked by a pointer file
    counts with the pointer's hash, the one it will have once pulled (``pull --run-cache`` looks
    the keys up before the data arrives, so that one fetch takes both)."""
    lock = read_lock(repo.root)
    params = ParamFiles(repo.root)
    will_run: set[str] = set()
    placed: dict[str, LockedPath] = {}  # outputs that a restore would place: path -> what
    out: list[StageResult] = []
    for name in names:
        stage = graph.stage(name)
        if stage.frozen:
            out.append(StageResult(name, FROZEN, ("frozen",)))
            continue
        inputs = read_inputs(repo, stage, params)
        if placed or deps_from_pointers:
            deps = tuple(placed.get(d.path) or (_pointed(repo, d) if deps_from_pointers else d) for d in inputs.deps)
            inputs = dataclasses.replace(inputs, deps=deps)
        reasons = out_of_date_reasons(stage, lock.get(name), inputs, read_outputs(repo, stage))
        upstream = [u for u in graph.upstream[name] if u in will_run]
        reasons = [f"upstream {u} will run" for u in upstream] + reasons
        if force:
            reasons = ["forced", *reasons]
        if not reasons:
            out.append(StageResult(name, SKIPPED))
            continue
        cacheable = not stage.always_changed and not any(o.persist for o in stage.outs)
        if not force and not upstream and cacheable:
            key = inputs.run_key(stage)
            hit, source, notes = runcache.lookup_entry(repo, key), "local", []
            if hit is not None and {o.path for o in hit.outs} != {o.path for o in stage.outs}:
                hit = None  # not this stage's outputs: a run would not use it either
            if hit is None and remote is not None:
                source = "remote"
                hit = runcache.remote_lookup(remote, key, outs=[o.path for o in stage.outs], warnings=notes)
            if hit is not None:
                placed.update((o.path, o) for o in hit.outs)
                out.append(
                    StageResult(
                        name,
                        WOULD_RESTORE,
                        tuple(reasons),
                        outs=hit.outs,
                        produced_by=hit.run_id,
                        run_key=key,
                        restore_from=source if source == "local" else f"remote {remote.name}",  # type: ignore[union-attr]
                    )
                )
                continue
            reasons += [f"shared run cache: {note}" for note in notes]
        will_run.add(name)
        out.append(StageResult(name, WOULD_RUN, tuple(reasons)))
    return out


def _pointed(repo: Repo, dep: LockedPath) -> LockedPath:
    """A dependency missing from the workspace as its pointer file names it (``dep`` otherwise)."""
    if dep.hash is not None:
        return dep
    from ..data.pointer import POINTER_SUFFIX, read_pointer

    try:
        pointer = read_pointer(repo.root, dep.path + POINTER_SUFFIX)
    except (MlopsError, OSError):
        return dep
    if pointer.target != dep.path:
        return dep
    return LockedPath(dep.path, pointer.hash, pointer.kind, pointer.size, pointer.files)


def run_pipeline(
    repo: Repo,
    targets: list[str] | None = None,
    *,
    force: bool = False,
    downstream: bool = False,
    single: bool = False,
    keep_going: bool = False,
    dry_run: bool = False,
    jobs: int | None = None,
    run_id: str | None = None,
    events: RunEvents | None = None,
    stop_signals: tuple[int, ...] = (signal.SIGINT,),
    executor: str = "local",
    executor_options: ExecutorOptions | None = None,
    remote: str | None = None,
) -> RunResult:
    """Run the selected stages; see the module's docstring.

    ``executor``: where commands run (``local`` or ``ray``, with ``executor_options`` saying how
    to reach the engine and which remote the outputs travel through).

    ``stop_signals``: the signals that, while stages run, stop them as Ctrl-C does (the CLI
    passes SIGINT, SIGTERM and SIGHUP). Their handlers are installed only for the run, only on
    the main thread, never over a signal the process ignores (nohup), and restored afterwards.
    ``remote``: with ``dry_run``, also say what that remote's shared run cache would restore.
    """
    events = events or RunEvents()
    pipeline = load_pipeline(repo.root)
    graph = build_graph(pipeline, repo.root)
    names = graph.select(targets, downstream=downstream, single=single)
    run_id = run_id or tracking.new_run_id()
    check_executor_name(executor)
    options = executor_options or ExecutorOptions()
    remote = remote or options.remote
    if remote is None and executor != "local":
        remote = repo.config.default_remote or None  # what a remote executor's workers restore from
    if dry_run:
        shared_cache = None
        if remote is not None:
            from ..data.transfer import get_remote

            shared_cache = get_remote(repo, remote)
            shared_cache.check_root()  # an absent remote is an outage, not a cache of misses
        # a dry run records no run: an id here would name one `mlops runs show` cannot find
        return RunResult(None, tuple(plan(repo, graph, names, force=force, remote=shared_cache)), dry_run=True)
    # what can be found wrong before anything runs is found now, as a usage error (exit 2)
    lock_view = _LockView(repo.root)
    lock_view.get("")
    params = ParamFiles(repo.root)
    for name in names:
        check_params(graph.stage(name), params)
        check_outputs(repo, graph.stage(name))

    runner = _open_executor(repo, executor, options)
    tracker = RunTracker(repo, run_id, graph, names)
    shared = _Shared(list(pipeline.stages), lock_view, params, runner, graph, tracker.begin)
    results: dict[str, StageResult] = {}
    selected = set(names)
    pending = list(names)
    failed_any = False
    workers = max(1, jobs or getattr(runner, "slots", None) or os.cpu_count() or 1)
    running: dict[Future[StageResult], str] = {}
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage")
    was_interrupted = False
    # a stop signal only sets a flag while stages run; the loop below turns it into KeyboardInterrupt
    # between waits, never inside the thread pool's locks (a signal after the loop changes nothing)
    with _stop_requests(stop_signals) as stop_signal:
        try:
            while pending or running:
                # start every stage whose upstream (within this run) finished well
                for name in list(pending):
                    if len(running) >= workers:
                        break
                    needs = [u for u in graph.upstream[name] if u in selected]
                    if any(
                        results.get(u) is not None and results[u].status in (FAILED, NOT_RUN, INTERRUPTED)
                        for u in needs
                    ):
                        pending.remove(name)
                        results[name] = StageResult(name, NOT_RUN, ("an upstream stage failed",))
                        events.stage_finished(results[name])
                        continue
                    if failed_any and not keep_going:
                        continue
                    if all(u in results for u in needs):
                        pending.remove(name)
                        future = pool.submit(_execute, repo, graph.stage(name), run_id, force, shared, events)
                        running[future] = name
                if failed_any and not keep_going and not running:
                    for name in pending:
                        results[name] = StageResult(name, NOT_RUN, ("stopped after a failure",))
                    pending.clear()
                    break
                if not running:
                    break
                done, _ = wait_any(running, lambda: stop_signal() is not None)
                for future in done:
                    name = running.pop(future)
                    result = future.result()
                    results[name] = result
                    if result.status in (RAN, RESTORED, SKIPPED) and result.outs:
                        shared.outputs[name] = result.outs
                    if result.status == FAILED:
                        failed_any = True
        except KeyboardInterrupt:
            was_interrupted = True
            shared.stopping.set()
            runner.stop_all()
            for future, name in running.items():
                with contextlib.suppress(Exception):
                    results[name] = future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            runner.close()
        stopped_by = stop_signal() if was_interrupted else None
    for name in names:
        if name not in results:
            results[name] = StageResult(name, NOT_RUN, ("interrupted" if was_interrupted else "not started",))
    ordered = tuple(results[n] for n in names)
    interrupted_run = was_interrupted or any(r.status == INTERRUPTED for r in ordered)
    warnings = tracker.finish(ordered, interrupted=interrupted_run)
    if tracker.nothing_to_do:
        return RunResult(None, ordered, warnings=tuple(warnings), up_to_date=True, last_run=_last_pipeline_run(repo))
    return RunResult(
        run_id,
        ordered,
        interrupted=interrupted_run,
        warnings=tuple(warnings),
        stop_signal=stopped_by,
        name=tracker.name,
        engine_seconds=dict(getattr(runner, "engine_seconds", {})),
    )


def _open_executor(repo: Repo, name: str, options: ExecutorOptions) -> StageExecutor:
    if name == "ray":
        from .executors.ray import RayExecutor  # Ray itself is imported only there, and only when asked for

        return RayExecutor.open(repo, options)
    from .executors.local import LocalExecutor

    return LocalExecutor()


NAME_LIMIT = 60  # characters of a pipeline run's name


def run_name(results: tuple[StageResult, ...] | list[StageResult]) -> str:
    """A pipeline run's name: the stages whose command ran (``prep, train``), then how many were
    restored from the run cache (``train (+2 restored)``); shortened to ``prep, train +3 more``."""
    ran = [r.name for r in results if r.status in (RAN, FAILED, INTERRUPTED)]
    restored = [r.name for r in results if r.status == RESTORED]
    if ran:
        names, suffix = ran, (f" (+{len(restored)} restored)" if restored else "")
    elif restored:
        names, suffix = restored, " (restored)"
    else:
        return "mlops run"
    limit = NAME_LIMIT - len(suffix)
    text = ", ".join(names)
    if len(text) > limit:
        text = ""
        for kept in range(len(names) - 1, 0, -1):
            candidate = ", ".join(names[:kept]) + f" +{len(names) - kept} more"
            if len(candidate) <= limit:
                text = candidate
                break
        if not text:  # even the first name alone is too long
            more = f" +{len(names) - 1} more" if len(names) > 1 else ""
            text = names[0][: max(1, limit - len(more) - 3)] + "..." + more
    return text + suffix


def _last_pipeline_run(repo: Repo) -> str | None:
    """The newest ended pipeline run in the runs index (what an up-to-date `mlops run` points to)."""
    try:
        summaries = tracking.read_index(repo).values()
    except (MlopsError, OSError):
        return None
    newest: tuple[float, str] | None = None
    for summary in summaries:
        started = summary.get("start_time")
        if summary.get("source") != "pipeline" or not isinstance(started, (int, float)):
            continue
        if newest is None or (started, summary["id"]) > newest:
            newest = (started, summary["id"])
    return newest[1] if newest else None


@contextlib.contextmanager
def _stop_requests(signals: tuple[int, ...]) -> Iterator[Callable[[], int | None]]:
    """Within the block each of ``signals`` only records itself; yields which came first (or None).

    Like ``parallel.sigint_deferred``, for several signals: nothing is installed off the main
    thread or over a signal the process ignores, and the previous handlers come back after.
    """
    arrived: list[int] = []
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in signals:
            handler = signal.getsignal(signum)
            if handler in (signal.SIG_IGN, None):
                continue
            previous[signum] = handler
            signal.signal(signum, lambda number, frame: arrived.append(number))
    try:
        yield lambda: arrived[0] if arrived else None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


class RunTracker:
    """The experiment-tracking record of one `mlops run`: the run is created before the
    first stage command starts (stages log into it through MLOPS_RUN_ID) and, at the end, gets each
    stage's outcome with its dependency and output hashes (the lineage a model version
    points to), its parameters and its declared metrics files, and its name: the stages that ran
    (``run_name``). A stage restored from the run cache or skipped names the run that produced its
    outputs (``produced_by``), so a model registered from this run is linked to the run that made it.

    A run where every stage was up to date (skipped or frozen) records nothing: it would be a
    run that made nothing, and ``register --run`` of it a link to the wrong run.

    Recording is best effort: a run that cannot be written never fails the pipeline; it
    becomes a warning."""

    def __init__(self, repo: Repo, run_id: str, graph: Graph, names: list[str]) -> None:
        self.repo = repo
        self.run_id = run_id
        self.graph = graph
        self.names = names
        self.warnings: list[str] = []
        self.ok = True
        self.created = False
        self.nothing_to_do = False
        self.name = ""
        self._mutex = threading.Lock()

    def begin(self) -> None:
        """Create the run (once, from whichever stage worker gets here first)."""
        with self._mutex:
            if self.created:
                return
            self.created = True
            self.ok = self._try(
                lambda: tracking.create_run(
                    self.repo, self.run_id, "mlops run", stages=self.names, source="pipeline", exist_ok=True
                )
            )

    def _try(self, action: Callable[[], object]) -> bool:
        try:
            action()
            return True
        except (MlopsError, OSError, ValueError) as exc:
            message = exc.message if isinstance(exc, MlopsError) else str(exc)
            self.warnings.append(f"run {self.run_id} not fully recorded: {message}")
            return False

    def finish(self, results: tuple[StageResult, ...], *, interrupted: bool) -> list[str]:
        if not interrupted and not self.created and all(r.status in (SKIPPED, FROZEN) for r in results):
            self.nothing_to_do = True
            return self.warnings
        self.begin()
        if not self.ok:
            return self.warnings
        for result in results:
            self._try(lambda r=result: self._stage(r))
        status = INTERRUPTED if interrupted else ("failed" if any(r.status == FAILED for r in results) else "finished")
        self.name = run_name(results)
        self._try(
            lambda: tracking.finish_run(
                self.repo, self.run_id, status, stages=[r.name for r in results], name=self.name
            )
        )
        return self.warnings

    def _produced_by(self, result: StageResult) -> str | None:
        """The run that produced a restored or skipped stage's outputs: the run cache names it."""
        if result.produced_by or result.status != SKIPPED or not result.run_key or not result.outs:
            return result.produced_by
        hit = runcache.lookup_entry(self.repo, result.run_key, need_objects=False)
        if hit is None or hit.run_id is None:
            return None
        # the entry must name what the lock file holds: a stage forced again since may have written other bytes
        same = {(o.path, o.hash) for o in hit.outs} == {(o.path, o.hash) for o in result.outs}
        return hit.run_id if same and hit.run_id != self.run_id else None

    def _stage(self, result: StageResult) -> None:
        paths = lambda items: [{"path": p.path, "hash": p.hash, "kind": p.kind} for p in items]  # noqa: E731
        producer = self._produced_by(result)
        tracking.record_stage(
            self.repo,
            self.run_id,
            result.name,
            result.status,
            reasons=list(result.reasons),
            started=result.started,
            ended=result.ended,
            deps=paths(result.deps),
            outs=paths(result.outs),
            error=result.error or None,
            **({"produced_by": producer} if producer else {}),
        )
        if result.params:
            for values in result.params.values():
                tracking.log_params(self.repo, self.run_id, values, stage=result.name)
        if result.status in (RAN, RESTORED, SKIPPED):
            stage = self.graph.stage(result.name)
            for out in stage.outs:
                if out.kind == "metric":
                    values = _read_metrics(self.repo.abs(out.path))
                    if "@" in result.name:
                        # foreach/matrix stages share key names: keep them apart by file name
                        stem = Path(out.path).stem
                        values = {f"{stem}.{key}": value for key, value in values.items()}
                    if values:
                        tracking.log_metrics(self.repo, self.run_id, values, stage=result.name)


def _read_metrics(path: Path) -> dict[str, object]:
    """A metrics file (JSON or YAML) as flat numbers; anything unreadable is skipped."""
    from ..formats import parse_yaml

    try:
        data = parse_yaml(path.read_text(encoding="utf-8"), str(path))  # YAML reads JSON too
    except (OSError, MlopsError, UnicodeDecodeError):
        return {}
    flat = tracking.flatten(data) if isinstance(data, dict) else {}
    return {k: v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class _OutputLock(FileLock):
    """The lock on one output, handed down to the stage's processes (they inherit its descriptor).

    flock belongs to the open file, shared by every process holding a descriptor of it: while any
    process of the stage lives, even one that escaped its process group, the lock stays held. So
    release only closes this process's descriptor and never unlocks the file for all of them.
    """

    def fileno(self) -> int:
        assert self._fd is not None
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _output_lock(repo: Repo, path: str) -> _OutputLock:
    name = "out-" + hash_bytes(path.encode())[:16]
    return _OutputLock(repo.tmp / "locks" / f"{name}.lock", what=f"output {path}")


def _held_output(exc: LockHeldError, path: str) -> LockHeldError:
    """The lock error, rephrased when the run that took the lock has ended: a process it left holds it."""
    pid = exc.fields.get("pid")
    if not isinstance(pid, int) or pid_alive(pid):
        return exc
    lock = str(exc.fields.get("lock", ""))
    holders = _holders(lock)
    who = f"process {', '.join(map(str, holders))}" if holders else "a process"
    return LockHeldError(
        f"output {path} is still held by {who} left running by an earlier run (mlops pid {pid}, ended)",
        hint="that process may still be writing the output; stop it, then run again",
        lock=lock,
        pid=holders[0] if holders else None,
    )


def _holders(lock: str) -> list[int]:
    """Processes holding ``lock`` open, where /proc tells (Linux); at most a few, for the message."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                for fd in os.scandir(f"/proc/{entry.name}/fd"):
                    if os.readlink(fd.path) == lock:
                        found.append(int(entry.name))
                        break
            if len(found) >= 3:
                break
    return found


def _execute(repo: Repo, stage: Stage, run_id: str, force: bool, shared: _Shared, events: RunEvents) -> StageResult:
    """One stage, start to finish, on a worker thread. Errors become a FAILED result."""
    started = time.time()
    try:
        with contextlib.ExitStack() as stack:
            locks = []
            for out in sorted(stage.outs, key=lambda o: o.path):
                lock = _output_lock(repo, out.path)
                try:
                    stack.enter_context(lock)
                except LockHeldError as exc:
                    raise _held_output(exc, out.path) from None
                locks.append(lock.fileno())
            return _decide_and_run(repo, stage, run_id, force, shared, events, started, tuple(locks))
    except MlopsError as exc:
        result = StageResult(stage.name, FAILED, (), started, time.time(), None, exc.message)
    except OSError as exc:
        result = StageResult(stage.name, FAILED, (), started, time.time(), None, f"{type(exc).__name__}: {exc}")
    events.stage_finished(result)
    return result


def _decide_and_run(
    repo: Repo,
    stage: Stage,
    run_id: str,
    force: bool,
    shared: _Shared,
    events: RunEvents,
    started: float,
    locks: tuple[int, ...],
) -> StageResult:
    if stage.frozen:
        result = StageResult(stage.name, FROZEN, ("frozen",), started, time.time())
        events.stage_finished(result)
        return result
    entry = shared.lock_view.get(stage.name)
    inputs = read_inputs(repo, stage, shared.params)
    reasons = out_of_date_reasons(stage, entry, inputs, read_outputs(repo, stage))
    if force:
        reasons = ["forced", *reasons]
    if not reasons:
        result = StageResult(
            stage.name,
            SKIPPED,
            (),
            started,
            time.time(),
            outs=entry.outs if entry else (),
            deps=inputs.deps,
            params=inputs.params,
            run_key=inputs.run_key(stage),
        )
        events.stage_finished(result)
        return result
    key = inputs.run_key(stage)
    # a persist output accumulates across runs: restoring an old snapshot would lose history
    cacheable = not stage.always_changed and not any(o.persist for o in stage.outs)
    if not force and cacheable:
        hit = runcache.lookup_entry(repo, key)
        if hit is not None and {o.path for o in hit.outs} == {o.path for o in stage.outs}:
            check_outputs(repo, stage)
            restore_outputs(repo, stage, hit.outs)
            _record(repo, stage, inputs, hit.outs, shared)
            result = finished_stage(
                stage.name, RESTORED, tuple(reasons), started, inputs, hit.outs, produced_by=hit.run_id
            )
            events.stage_finished(result)
            return result
    shared.begin_run()
    events.stage_started(stage.name, tuple(reasons))
    in_workspace = shared.executor.name == "local"
    if in_workspace:
        clear_outputs(repo, stage)
    job = StageJob(
        stage,
        run_id,
        key,
        cacheable,
        locks,
        upstream=tuple((u, shared.outputs[u]) for u in shared.graph.upstream[stage.name] if u in shared.outputs),
        output=lambda line: events.stage_output(stage.name, line),
        force=force,
    )
    outcome = shared.executor.run(repo, job, shared.stopping)
    # a stage that was told to stop records nothing, whatever its code: what it wrote may be partial
    if not outcome.ok or shared.stopping.is_set():
        status = INTERRUPTED if shared.stopping.is_set() else FAILED
        message = "interrupted" if status == INTERRUPTED else outcome.error
        result = StageResult(stage.name, status, tuple(reasons), started, time.time(), outcome.returncode, message)
        events.stage_finished(result)
        return result
    if outcome.outs is None:
        missing = [o.path for o in stage.outs if not repo.abs(o.path).exists()]
        if missing:
            result = StageResult(
                stage.name,
                FAILED,
                tuple(reasons),
                started,
                time.time(),
                0,
                f"the command did not produce {', '.join(missing)}",
            )
            events.stage_finished(result)
            return result
        outs = snapshot_outputs(repo, stage)
    else:
        # made elsewhere: the executor brought the objects into the cache; place them as a restore does
        outs = outcome.outs
        check_outputs(repo, stage)
        restore_outputs(repo, stage, outs)
    produced_by = outcome.run_id if outcome.run_id and outcome.run_id != run_id else None
    _record(repo, stage, inputs, outs, shared)
    if cacheable:
        runcache.record(repo, key, outs, run_id=produced_by or run_id)
    restored = outcome.status == RESTORED
    result = finished_stage(
        stage.name,
        RESTORED if restored else RAN,
        tuple(reasons),
        started,
        inputs,
        outs,
        returncode=None if restored else 0,
        produced_by=produced_by,
    )
    events.stage_finished(result)
    return result


def run_stage_command(
    repo: Repo,
    stage: Stage,
    run_id: str,
    events: RunEvents,
    *,
    stop: threading.Event | None = None,
    stop_signals: tuple[int, ...] = (signal.SIGINT,),
) -> tuple[int, int | None]:
    """One stage's command alone (``mlops stage exec``), with the machinery `mlops run` gives each
    stage (the local executor: its own process group, the lifeline watcher, the group killed when
    its leader ends), and a stop (one of ``stop_signals``, or ``stop`` set by the caller) that sends
    SIGTERM, then SIGKILL after the grace. Returns (return code, the signal that stopped it or None;
    SIGINT for ``stop``): a stopped command's code says nothing about its outputs, which the caller
    must not record.
    """
    from concurrent.futures import ThreadPoolExecutor as Pool

    from .executors.local import LocalExecutor

    local = LocalExecutor()
    stopping = threading.Event()
    job = StageJob(stage, run_id, "", False, (), output=lambda line: events.stage_output(stage.name, line))
    pool = Pool(max_workers=1, thread_name_prefix="stage")
    try:
        with _stop_requests(stop_signals) as stop_signal:
            future = pool.submit(local.run, repo, job, stopping)
            try:
                wait_any([future], lambda: stop_signal() is not None or (stop is not None and stop.is_set()))
            except KeyboardInterrupt:
                stopping.set()
                local.stop_all()
            outcome = future.result()
            stopped_by = (stop_signal() or signal.SIGINT) if stopping.is_set() else None
    finally:
        pool.shutdown(wait=True)
        local.close()
    code = outcome.returncode
    return (-signal.SIGINT if code is None else code), stopped_by


def check_outputs(repo: Repo, stage: Stage) -> None:
    """Refuse outputs whose real location is not the repository's to change (InvalidPathError, exit 2).

    pipeline.yaml arrives through git: a planted symlink on an output's way (``outs: [model]``
    with ``model -> ../../important``, or a linked parent folder) must not make a stage delete
    or write outside the repository, or in .git/ or .mlops/. The output itself may be a link
    into the object store: that is how the ``symlink`` cache type places outputs.
    """
    cache = repo.dot / "cache"
    for out in stage.outs:
        path = repo.abs(out.path)
        problem = real_location_problem(repo.root, path.parent)
        if problem is None and os.path.islink(path):
            if paths_inside(cache, path):
                continue
            problem = real_location_problem(repo.root, path)
            if problem is None and os.path.realpath(path) == os.path.realpath(repo.root):
                problem = "it leads to the repository root"
            problem = problem and f"it is a symlink and {problem}"
        if problem:
            raise InvalidPathError(
                f"{stage.where}: stage '{stage.name}' output {out.path} refused: {problem}",
                hint=f"remove the symlink on the way to {out.path} if it is not meant to be there",
            )


def clear_outputs(repo: Repo, stage: Stage) -> None:
    """Remove outputs before the command runs (persist ones are kept, made writable copies).

    Their real locations are checked again first: an upstream stage of this run may have
    planted a link since the check before the run.
    """
    check_outputs(repo, stage)
    for out in stage.outs:
        path = repo.abs(out.path)
        if out.persist:
            _unprotect(repo, path)
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)


def _unprotect(repo: Repo, path: os.PathLike[str]) -> None:
    """Turn cache links into private writable copies, so the command may edit them in place.

    A link inside the output that leads out of the repository (or into .git/, or .mlops/ beyond
    the object store) is refused: copying it in would bring outside content into the repository.
    """
    targets = [path] if not os.path.isdir(path) else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    cache = repo.dot / "cache"
    for target in targets:
        if os.path.islink(target) and not paths_inside(cache, target):
            problem = real_location_problem(repo.root, target)
            if problem:
                raise InvalidPathError(f"{repo.rel(target)}: a symlink inside a persistent output refused: {problem}")
        if os.path.islink(target) or (os.path.isfile(target) and os.stat(target).st_nlink > 1):
            tmp = f"{target}.mlops-unprotect"
            shutil.copyfile(target, tmp)
            os.replace(tmp, target)
        if os.path.isfile(target):
            os.chmod(target, 0o644)


def snapshot_outputs(repo: Repo, stage: Stage) -> tuple[LockedPath, ...]:
    """Every output into the object store (so the run cache can restore it); cached ones are git-ignored."""
    from ..data.add import ignore_in_git, snapshot_path  # only a stage that ran needs them: a no-op run starts lighter

    outs = []
    for out in stage.outs:
        # a git-tracked output (metrics, plots: cache false) stays a plain file, never a cache link
        pointer = snapshot_path(repo, out.path, link_workspace=out.cache).pointer
        if out.cache:
            ignore_in_git(repo, out.path)
        outs.append(LockedPath(out.path, pointer.hash, pointer.kind, pointer.size, pointer.files))
    return tuple(outs)


def restore_outputs(repo: Repo, stage: Stage, outs: tuple[LockedPath, ...]) -> None:
    from ..data.add import ignore_in_git
    from ..data.checkout import checkout_pointer

    # a checkout over what is there, as `mlops checkout` does: files that already match stay,
    # the rest are replaced in place and extra files go (clearing first would cost a delete
    # of every file before the same placing)
    cached = {o.path for o in stage.outs if o.cache}
    for out in outs:
        assert out.hash is not None
        pointer = Pointer(out.path, out.kind, out.hash, out.size, out.files)
        # a git-tracked output (metrics, plots) must come back as a plain file, never a cache link
        checkout_pointer(repo, pointer, force=True, link_kinds=None if out.path in cached else ("copy",))
        if out.path in cached:
            ignore_in_git(repo, out.path)


def _record(repo: Repo, stage: Stage, inputs: StageInputs, outs: tuple[LockedPath, ...], shared: _Shared) -> None:
    """Rewrite this stage's block of pipeline.lock (read-modify-write under its lock)."""
    entry = LockEntry(stage.cmd_text, inputs.deps, inputs.params, inputs.env, outs, stage.image_digest)
    with repo.lock("pipeline-lock", what="pipeline.lock"):
        entries = read_lock(repo.root)
        entries[stage.name] = entry
        write_lock(repo.root, entries, shared.order)
