"""The Python tracking API: ``import mlops; with mlops.start_run(): mlops.log_metric(...)``.

- ``start_run(name=...)`` starts a run in the repository around the working folder (or
  ``MLOPS_ROOT``). Inside ``mlops run``, ``MLOPS_RUN_ID`` is set: ``start_run`` then joins
  that run, and leaving the block does not end it (the pipeline owns it).
- Leaving the ``with`` block normally marks the run ``finished``; an exception marks it
  ``failed`` (Ctrl-C: ``interrupted``) and is raised again.
- Logging without ``start_run`` starts a run on first use; it ends when the process exits.
- The API never breaks the script it measures: when no repository is found or it cannot be
  written, it warns once (``warnings.warn``) and keeps the values in memory
  (``active_run().params`` / ``.metrics``).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import MlopsError, UsageError
from . import store


class TrackingWarning(UserWarning):
    """The run could not be written to disk; values are kept in memory."""


_mutex = threading.RLock()
_active: Run | None = None
_parents: list[Run] = []  # the runs a nested run was started inside, innermost last
_warned = False
_hooks_installed = False


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"mlops tracking: {message}; values are kept in memory only", TrackingWarning, stacklevel=4)


class Run:
    """A run being logged by this process. Values are also kept in memory."""

    def __init__(self, run_id: str, name: str, *, joined: bool, repo: Any | None, stage: str | None) -> None:
        self.id = run_id
        self.name = name
        self.joined = joined  # inside `mlops run`: the pipeline owns (and ends) the run
        self.repo = repo  # None: memory only
        self.stage = stage
        self.status = store.RUNNING
        self.params: dict[str, Any] = {}
        self.metrics: dict[str, list[tuple[float | int, int | None, float]]] = {}
        self.artifacts: list[dict[str, Any]] = []
        self.parent_id: str | None = None
        self.tags: dict[str, str] = {}
        self._auto = False  # started by a log call, ended at exit

    def __repr__(self) -> str:
        return f"<mlops Run {self.id} name={self.name!r} status={self.status}>"

    @property
    def persisted(self) -> bool:
        return self.repo is not None

    # `with start_run() as run:` -------------------------------------------------------------
    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        end_run(_status_for(kind, exc), _run=self)

    def _write(self, action: Any, *args: Any, **kwargs: Any) -> None:
        if self.repo is None:
            return
        try:
            action(self.repo, self.id, *args, **kwargs)
        except (MlopsError, OSError) as exc:
            self.repo = None
            _warn_once(f"cannot write run {self.id} ({getattr(exc, 'message', exc)})")


def _status_for(kind: type[BaseException] | None, exc: BaseException | None) -> str:
    if kind is None:
        return store.FINISHED
    if issubclass(kind, KeyboardInterrupt):
        return store.INTERRUPTED
    if issubclass(kind, SystemExit) and getattr(exc, "code", None) in (None, 0):
        return store.FINISHED
    return store.FAILED


def _find_repo() -> Any | None:
    from ..repo.repo import find_repo

    try:
        return find_repo()
    except MlopsError as exc:
        _warn_once(exc.message)
    except OSError as exc:
        _warn_once(f"cannot look for the repository ({exc})")
    return None


def start_run(
    name: str | None = None,
    *,
    run_id: str | None = None,
    nested: bool = False,
    tags: Mapping[str, Any] | None = None,
) -> Run:
    """Start (or, with MLOPS_RUN_ID set, join) a run; use it as a context manager.

    ``nested=True`` inside an active run starts a child run (its ``parent_id`` the active run's
    id); the parent becomes active again when the child ends. Without it, starting a run while
    one is active raises ``mlops.errors.UsageError``.
    """
    global _active
    with _mutex:
        parent = _active if nested else None
        if _active is not None and not nested:
            raise UsageError(
                f"run {_active.id} is already active",
                hint="end it first (mlops.end_run()), log into it, or start_run(..., nested=True)",
            )
        joined_id = os.environ.get("MLOPS_RUN_ID") or None
        stage = os.environ.get("MLOPS_STAGE") or None
        joined = run_id is None and joined_id is not None and parent is None
        run_id = store.check_run_id(run_id or joined_id or store.new_run_id())
        name = name or (stage if joined else None) or _default_name()
        repo = _find_repo()
        run = Run(run_id, name, joined=joined, repo=repo, stage=stage)
        if repo is not None:
            try:
                if joined:
                    store.create_run(
                        repo,
                        run_id,
                        name,
                        stages=[stage] if stage else (),
                        source="pipeline",
                        owned=False,
                        exist_ok=True,
                    )
                    store.record_process(repo, run_id, "join", stage=stage)
                else:
                    store.create_run(
                        repo, run_id, name, source="api", parent_id=parent.id if parent else None, tags=tags
                    )
            except (MlopsError, OSError) as exc:
                run.repo = None
                _warn_once(f"cannot write run {run_id} ({getattr(exc, 'message', exc)})")
        run.parent_id = parent.id if parent else None
        run.tags = store.check_tags(tags or {})
        if parent is not None:
            _parents.append(parent)
        _active = run
        return run


def _default_name() -> str:
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    return script or "run"


def active_run() -> Run | None:
    """The run this process logs into, or None."""
    return _active


def end_run(status: str = store.FINISHED, *, _run: Run | None = None) -> None:
    """End the active run (``finished``, ``failed`` or ``interrupted``). A joined run is left open."""
    global _active
    with _mutex:
        run = _run or _active
        if run is None or run.status != store.RUNNING:
            if run is _active:
                _active = _parents.pop() if _parents else None
            return
        if status not in store.ENDED:
            raise UsageError(f"a run ends as one of {', '.join(store.ENDED)}, not '{status}'")
        run.status = status
        if run.joined:
            run._write(_leave, status)
        else:
            run._write(_finish, status)
        if _active is run:
            _active = _parents.pop() if _parents else None


def _leave(repo: Any, run_id: str, status: str) -> None:
    store.record_process(repo, run_id, "leave", status=status, stage=os.environ.get("MLOPS_STAGE") or None)


def _finish(repo: Any, run_id: str, status: str) -> None:
    store.finish_run(repo, run_id, status)


def _current() -> Run:
    """The active run, started on first use (ended when the process exits)."""
    if _active is not None:
        return _active
    with _mutex:
        if _active is not None:
            return _active
        run = start_run()
        run._auto = True
        _install_exit_hooks()
        return run


def _install_exit_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if _active is not None and _active._auto:
            end_run(_status_for(kind, exc))
        previous(kind, exc, tb)

    sys.excepthook = hook
    atexit.register(lambda: end_run(store.FINISHED) if _active is not None and _active._auto else None)


# --- logging ---------------------------------------------------------------------------------


def log_param(key: str, value: Any) -> None:
    log_params({key: value})


def log_params(params: Mapping[str, Any]) -> None:
    """Record parameters (nested mappings are flattened with dots: ``model.depth``)."""
    flat = store.flatten(dict(params))
    run = _current()
    with _mutex:
        run.params.update({k: store._json_value(v) for k, v in flat.items()})
    run._write(store.log_params, flat, stage=run.stage)


def set_tag(key: str, value: Any) -> None:
    set_tags({key: value})


def set_tags(tags: Mapping[str, Any]) -> None:
    """Tag the active run (text values; filter with ``runs list --filter "tags.team == 'growth'"``)."""
    checked = store.check_tags(tags)
    run = _current()
    with _mutex:
        run.tags.update(checked)
    run._write(store.set_tags, checked)


def log_metric(key: str, value: Any, step: int | None = None) -> None:
    log_metrics({key: value}, step=step)


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Record metric values (numbers), optionally at a step (an epoch, an iteration)."""
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        try:
            step = int(step)
        except (TypeError, ValueError):
            raise UsageError(f"step must be a whole number, not {step!r}") from None
    flat = {k: store.metric_value(k, v) for k, v in store.flatten(dict(metrics)).items()}
    run = _current()
    now = time.time()
    with _mutex:
        for key, value in flat.items():
            run.metrics.setdefault(key, []).append((value, step, now))
    run._write(store.log_metrics, flat, step=step, stage=run.stage, timestamp=now)


def log_artifact(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Snapshot a file or folder inside the repository into the object store; returns its record.

    A path outside the repository (or missing) is refused with a warning and returns None.
    """
    return _log_artifact(path, {})


def _log_artifact(path: str | os.PathLike[str], extra: dict[str, Any]) -> dict[str, Any] | None:
    run = _current()
    shown = os.fspath(path)
    if run.repo is None:
        record = {"path": shown, "hash": None}
        run.artifacts.append(record)
        return record
    repo = run.repo
    try:
        rel = repo.check_user_path(path)
    except MlopsError as exc:
        warnings.warn(f"mlops tracking: artifact not stored: {exc.message}", TrackingWarning, stacklevel=2)
        return None
    from ..data.add import snapshot_path

    try:
        with repo.store_lock(), repo.path_lock(rel):
            snap = snapshot_path(repo, rel, link_workspace=False)
    except (MlopsError, OSError) as exc:
        _warn_once(f"cannot store artifact {shown} ({getattr(exc, 'message', exc)})")
        record = {"path": rel, "hash": None}
        run.artifacts.append(record)
        return record
    pointer = snap.pointer
    record = {"path": rel, "hash": pointer.hash, "kind": pointer.kind, "size": pointer.size, "files": pointer.files}
    record.update(extra)
    if run.stage:
        record["stage"] = run.stage
    run.artifacts.append(record)
    run._write(store.log_artifact_record, record)
    return record


def log_model(
    model: Any,
    name: str,
    *,
    signature_from: Any = None,
    path: str | os.PathLike[str] | None = None,
) -> dict[str, Any] | None:
    """Save ``model`` (joblib when it is installed, else pickle) to ``path`` (default
    ``models/NAME.pkl`` in the repository), store it as an artifact of the active run with its
    flavour and the signature inferred from ``signature_from`` (a DataFrame: column names and
    dtypes; an array: its width and dtype), and return the artifact record.
    ``mlops register NAME --run RUN`` then registers it without naming the path."""
    from ..paths import name_problem

    if name_problem(name) or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UsageError(f"not a model name: {str(name)[:60]!r}", hint="letters, digits, '.', '_', '-'")
    run = _current()
    target = Path(path) if path is not None else Path(run.repo.root if run.repo else ".") / "models" / f"{name}.pkl"
    target.parent.mkdir(parents=True, exist_ok=True)
    flavor = "sklearn" if type(model).__module__.startswith("sklearn") else "pickle"
    try:
        import joblib

        joblib.dump(model, target)
    except ImportError:
        import pickle

        with open(target, "wb") as handle:
            pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    extra: dict[str, Any] = {"model": name, "flavor": flavor}
    if signature_from is not None:
        extra["signature"] = infer_signature(model, signature_from)
    return _log_artifact(target, extra)


def infer_signature(model: Any, sample: Any) -> dict[str, Any]:
    """Inputs from a table's columns and dtypes (or an array's width and dtype); the output's dtype
    from ``model.predict`` on a few rows when it can."""
    columns = getattr(sample, "columns", None)
    dtypes = getattr(sample, "dtypes", None)
    if columns is not None and dtypes is not None:
        inputs = [{"name": str(c), "dtype": str(dtypes[c])} for c in columns]
        head = sample.head(5)
    else:
        shape = getattr(sample, "shape", None)
        width = shape[1] if shape is not None and len(shape) > 1 else 1
        dtype = str(getattr(sample, "dtype", "unknown"))
        inputs = [{"name": f"x{i}", "dtype": dtype} for i in range(width)]
        head = sample[:5]
    outputs = [{"name": "prediction", "dtype": "unknown"}]
    predict = getattr(model, "predict", None)
    if callable(predict):
        try:
            predicted = predict(head)
            outputs = [{"name": "prediction", "dtype": str(getattr(predicted, "dtype", type(predicted).__name__))}]
        except Exception:  # noqa: BLE001 - a model that cannot predict on the sample keeps its inputs
            pass
    return {"inputs": inputs, "outputs": outputs}


def autolog(*, disable: bool = False) -> None:
    """Log scikit-learn fits (params, training score, the fitted model): see ``tracking/autolog.py``."""
    from .autolog import autolog as install

    install(disable=disable)


def log_table(data: Any, artifact_file: str) -> dict[str, Any] | None:
    """A table (a DataFrame, or a mapping of column -> values) stored as a run artifact: JSON
    (``{"columns": [...], "data": [[...], ...]}``), or CSV when ``artifact_file`` ends in ``.csv``."""
    import json

    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        columns = [str(c) for c in data.columns]
        rows = data.astype(object).where(data.notna(), None).values.tolist()
    elif isinstance(data, Mapping):
        columns = [str(c) for c in data]
        lengths = {len(v) for v in data.values()}
        if len(lengths) > 1:
            raise UsageError("log_table: every column needs the same number of values")
        rows = [list(r) for r in zip(*data.values(), strict=True)]
    else:
        raise UsageError("log_table takes a DataFrame or a mapping of column -> values")
    if artifact_file.endswith(".csv"):
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows(rows)
        payload = buffer.getvalue().encode("utf-8")
    else:
        payload = json.dumps({"columns": columns, "data": rows}, default=str).encode("utf-8")
    return _log_bytes(payload, artifact_file, {"table": True})


def log_figure(figure: Any, artifact_file: str) -> dict[str, Any] | None:
    """A matplotlib figure (saved as the suffix says: .png, .svg, .pdf) or SVG text, as a run artifact."""
    import io

    if isinstance(figure, str):
        if not figure.lstrip().startswith("<"):
            raise UsageError("log_figure takes a matplotlib figure or SVG text")
        payload = figure.encode("utf-8")
    elif callable(getattr(figure, "savefig", None)):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=Path(artifact_file).suffix.lstrip(".") or "png")
        payload = buffer.getvalue()
    else:
        raise UsageError("log_figure takes a matplotlib figure or SVG text")
    return _log_bytes(payload, artifact_file, {"figure": True})


def _log_bytes(payload: bytes, artifact_file: str, extra: dict[str, Any]) -> dict[str, Any] | None:
    """Bytes stored straight into the object store as an artifact named ``artifact_file`` (no workspace file)."""
    from ..paths import relpath_problem

    problem = relpath_problem(artifact_file)
    if problem:
        raise UsageError(f"artifact name {artifact_file!r} refused: {problem}")
    run = _current()
    record: dict[str, Any] = {"path": artifact_file, "hash": None, **extra}
    if run.repo is not None:
        try:
            with run.repo.store_lock(), run.repo.objects.batch() as batch:
                record["hash"] = batch.add_bytes(payload)
        except (MlopsError, OSError) as exc:
            _warn_once(f"cannot store artifact {artifact_file} ({getattr(exc, 'message', exc)})")
    record.update({"kind": "file", "size": len(payload)})
    if run.stage:
        record["stage"] = run.stage
    run.artifacts.append(record)
    if record["hash"]:
        run._write(store.log_artifact_record, record)
    return record
