"""`mlops run`: run what is out of date, in DAG order, independent stages in parallel.

Per stage (on a worker thread): take the locks of its outputs, read its inputs, decide
(skip when up to date, restore from the run cache when its key was seen, else run),
then record: outputs snapshotted into the object store, the stage's block in
pipeline.lock rewritten, the run cache filled. A failed or interrupted stage records
nothing, and its outputs are never taken into the cache.

Failure: fail fast by default (running stages finish, nothing new starts); with
``keep_going`` every stage that does not depend on a failed one still runs. Ctrl-C stops
the stages' whole process groups (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..data.pointer import Pointer
from ..errors import MlopsError
from ..parallel import sigint_deferred, wait_any
from ..repo.repo import Repo
from ..store.hashing import hash_bytes
from ..tracking import store as tracking
from . import runcache
from .graph import Graph, build_graph
from .lock import LOCK_FILE, LockedPath, LockEntry, read_lock, write_lock
from .params import ParamFiles
from .spec import Stage, load_pipeline
from .state import StageInputs, check_params, out_of_date_reasons, read_inputs, read_outputs

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a stage's process group
OUTPUT_DRAIN = 2.0  # seconds to collect a finished command's last output lines

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
        }


@dataclass(frozen=True)
class RunResult:
    run_id: str
    stages: tuple[StageResult, ...]
    interrupted: bool = False
    dry_run: bool = False
    warnings: tuple[str, ...] = ()

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
    stopping: threading.Event = field(default_factory=threading.Event)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    mutex: threading.Lock = field(default_factory=threading.Lock)


def plan(repo: Repo, graph: Graph, names: list[str], *, force: bool = False) -> list[StageResult]:
    """What would run, and why (``--dry-run``); stages after one that runs are 'would run' too."""
    lock = read_lock(repo.root)
    params = ParamFiles(repo.root)
    will_run: set[str] = set()
    out: list[StageResult] = []
    for name in names:
        stage = graph.stage(name)
        if stage.frozen:
            out.append(StageResult(name, FROZEN, ("frozen",)))
            continue
        inputs = read_inputs(repo, stage, params)
        reasons = out_of_date_reasons(stage, lock.get(name), inputs, read_outputs(repo, stage))
        upstream = [u for u in graph.upstream[name] if u in will_run]
        reasons = [f"upstream {u} will run" for u in upstream] + reasons
        if force:
            reasons = ["forced", *reasons]
        if reasons:
            will_run.add(name)
            out.append(StageResult(name, WOULD_RUN, tuple(reasons)))
        else:
            out.append(StageResult(name, SKIPPED))
    return out


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
) -> RunResult:
    events = events or RunEvents()
    pipeline = load_pipeline(repo.root)
    graph = build_graph(pipeline, repo.root)
    names = graph.select(targets, downstream=downstream, single=single)
    run_id = run_id or tracking.new_run_id()
    if dry_run:
        return RunResult(run_id, tuple(plan(repo, graph, names, force=force)), dry_run=True)
    # what can be found wrong before anything runs is found now, as a usage error (exit 2)
    lock_view = _LockView(repo.root)
    lock_view.get("")
    params = ParamFiles(repo.root)
    for name in names:
        check_params(graph.stage(name), params)

    shared = _Shared(list(pipeline.stages), lock_view, params)
    tracker = _RunTracker(repo, run_id, graph, names)
    results: dict[str, StageResult] = {}
    selected = set(names)
    pending = list(names)
    failed_any = False
    workers = max(1, jobs or os.cpu_count() or 1)
    running: dict[Future[StageResult], str] = {}
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage")
    was_interrupted = False
    # Ctrl-C only sets a flag while stages run; the loop below turns it into KeyboardInterrupt
    # between waits, never inside the thread pool's locks (a Ctrl-C after the loop changes nothing)
    with sigint_deferred(raise_on_exit=False) as interrupted:
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
                done, _ = wait_any(running, interrupted)
                for future in done:
                    name = running.pop(future)
                    result = future.result()
                    results[name] = result
                    if result.status == FAILED:
                        failed_any = True
        except KeyboardInterrupt:
            was_interrupted = True
            shared.stopping.set()
            _stop_all(shared)
            for future, name in running.items():
                with contextlib.suppress(Exception):
                    results[name] = future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    for name in names:
        if name not in results:
            results[name] = StageResult(name, NOT_RUN, ("interrupted" if was_interrupted else "not started",))
    ordered = tuple(results[n] for n in names)
    interrupted_run = was_interrupted or any(r.status == INTERRUPTED for r in ordered)
    warnings = tracker.finish(ordered, interrupted=interrupted_run)
    return RunResult(run_id, ordered, interrupted=interrupted_run, warnings=tuple(warnings))


class _RunTracker:
    """The experiment-tracking record of one `mlops run`: the run is created before the
    first stage starts (stages log into it through MLOPS_RUN_ID) and, at the end, gets each
    stage's outcome with its dependency and output hashes (the lineage a model version
    points to), its parameters and its declared metrics files. Recording is best effort:
    a run that cannot be written never fails the pipeline; it becomes a warning."""

    def __init__(self, repo: Repo, run_id: str, graph: Graph, names: list[str]) -> None:
        self.repo = repo
        self.run_id = run_id
        self.graph = graph
        self.warnings: list[str] = []
        self.ok = self._try(
            lambda: tracking.create_run(repo, run_id, "mlops run", stages=names, source="pipeline", exist_ok=True)
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
        if not self.ok:
            return self.warnings
        for result in results:
            self._try(lambda r=result: self._stage(r))
        status = INTERRUPTED if interrupted else ("failed" if any(r.status == FAILED for r in results) else "finished")
        self._try(lambda: tracking.finish_run(self.repo, self.run_id, status, stages=[r.name for r in results]))
        return self.warnings

    def _stage(self, result: StageResult) -> None:
        paths = lambda items: [{"path": p.path, "hash": p.hash, "kind": p.kind} for p in items]  # noqa: E731
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


def _stop_all(shared: _Shared) -> None:
    with shared.mutex:
        processes = list(shared.processes.values())
    for proc in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    for proc in processes:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


def _execute(repo: Repo, stage: Stage, run_id: str, force: bool, shared: _Shared, events: RunEvents) -> StageResult:
    """One stage, start to finish, on a worker thread. Errors become a FAILED result."""
    started = time.time()
    try:
        with contextlib.ExitStack() as stack:
            for out in sorted(stage.outs, key=lambda o: o.path):
                stack.enter_context(repo.lock("out-" + hash_bytes(out.path.encode())[:16], what=f"output {out.path}"))
            return _decide_and_run(repo, stage, run_id, force, shared, events, started)
    except MlopsError as exc:
        result = StageResult(stage.name, FAILED, (), started, time.time(), None, exc.message)
    except OSError as exc:
        result = StageResult(stage.name, FAILED, (), started, time.time(), None, f"{type(exc).__name__}: {exc}")
    events.stage_finished(result)
    return result


def _decide_and_run(
    repo: Repo, stage: Stage, run_id: str, force: bool, shared: _Shared, events: RunEvents, started: float
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
        )
        events.stage_finished(result)
        return result
    key = inputs.run_key(stage)
    # a persist output accumulates across runs: restoring an old snapshot would lose history
    cacheable = not stage.always_changed and not any(o.persist for o in stage.outs)
    if not force and cacheable:
        cached = runcache.lookup(repo, key)
        if cached is not None:
            _restore(repo, stage, cached)
            _record(repo, stage, inputs, cached, shared)
            result = StageResult(
                stage.name,
                RESTORED,
                tuple(reasons),
                started,
                time.time(),
                outs=cached,
                deps=inputs.deps,
                params=inputs.params,
            )
            events.stage_finished(result)
            return result
    events.stage_started(stage.name, tuple(reasons))
    _clear_outputs(repo, stage)
    returncode = _run_command(repo, stage, run_id, shared, events)
    if returncode != 0:
        status = INTERRUPTED if shared.stopping.is_set() or returncode < 0 else FAILED
        message = "interrupted" if status == INTERRUPTED else f"command exited with code {returncode}"
        result = StageResult(stage.name, status, tuple(reasons), started, time.time(), returncode, message)
        events.stage_finished(result)
        return result
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
    outs = _snapshot_outputs(repo, stage)
    _record(repo, stage, inputs, outs, shared)
    if cacheable:
        runcache.record(repo, key, outs)
    result = StageResult(
        stage.name, RAN, tuple(reasons), started, time.time(), 0, outs=outs, deps=inputs.deps, params=inputs.params
    )
    events.stage_finished(result)
    return result


def _run_command(repo: Repo, stage: Stage, run_id: str, shared: _Shared, events: RunEvents) -> int:
    env = {
        **os.environ,
        "MLOPS_STAGE": stage.name,
        "MLOPS_RUN_ID": run_id,
        "MLOPS_ROOT": str(repo.root),
        "PYTHONUNBUFFERED": "1",
    }
    if shared.stopping.is_set():
        return -signal.SIGINT
    proc = subprocess.Popen(
        stage.cmd_text,
        shell=True,
        cwd=repo.root / stage.wdir if stage.wdir else repo.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: Ctrl-C stops the whole tree, and only through us
    )
    with shared.mutex:
        shared.processes[stage.name] = proc

    def pump() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            events.stage_output(stage.name, raw.decode("utf-8", "replace").rstrip("\n"))

    reader = threading.Thread(target=pump, name=f"output-{stage.name}", daemon=True)
    reader.start()
    try:
        code = proc.wait()
        # a background process the command left behind may keep the pipe open: do not wait for it
        reader.join(timeout=OUTPUT_DRAIN)
        return code
    finally:
        with shared.mutex:
            shared.processes.pop(stage.name, None)


def _clear_outputs(repo: Repo, stage: Stage) -> None:
    """Remove outputs before the command runs (persist ones are kept, made writable copies)."""
    for out in stage.outs:
        path = repo.abs(out.path)
        if out.persist:
            _unprotect(path)
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)


def _unprotect(path: os.PathLike[str]) -> None:
    """Turn cache links into private writable copies, so the command may edit them in place."""
    targets = [path] if not os.path.isdir(path) else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    for target in targets:
        if os.path.islink(target) or (os.path.isfile(target) and os.stat(target).st_nlink > 1):
            tmp = f"{target}.mlops-unprotect"
            shutil.copyfile(target, tmp)
            os.replace(tmp, target)
        if os.path.isfile(target):
            os.chmod(target, 0o644)


def _snapshot_outputs(repo: Repo, stage: Stage) -> tuple[LockedPath, ...]:
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


def _restore(repo: Repo, stage: Stage, outs: tuple[LockedPath, ...]) -> None:
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
    entry = LockEntry(stage.cmd_text, inputs.deps, inputs.params, inputs.env, outs)
    with repo.lock("pipeline-lock", what="pipeline.lock"):
        entries = read_lock(repo.root)
        entries[stage.name] = entry
        write_lock(repo.root, entries, shared.order)
