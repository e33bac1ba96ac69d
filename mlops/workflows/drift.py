"""Drift checks with their sources: where data comes from, a model's predictions, and the
verdict recorded in the model registry.

The drift room takes files or tables and never resolves where they come from; serve and the
registry stand beside and below it. ``resolve_source`` joins them: a path (file or folder) is
read as it is; a registry reference (``churn@production``, ``churn:3``) as the reference means
the data the model version was trained on; ``PREFIX:REST`` goes to ``SOURCE_RESOLVERS[PREFIX]``
when one is registered there: a function taking the rest of the argument and a
``SourceContext``, returning a ``ResolvedSource``. ``serving:NAME`` is one: the request logs
`mlops serve` wrote for model NAME (``since``: only log files written within that many
seconds), so live traffic can be compared with the data the model was trained on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import DataError, MlopsError, UsageError
from ..progress import NO_PROGRESS, Progress

MODEL_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(@[A-Za-z0-9_.\-]+|:[0-9]+|:latest)$")


@dataclass
class SourceContext:
    """What a resolver may need: the side it resolves and extra options (e.g. a time window)."""

    side: str  # "reference" | "current"
    options: dict[str, Any] = field(default_factory=dict)
    _repo: Any = None  # the Repo; found from the working directory when a source first needs one

    def repo(self) -> Any:
        if self._repo is None:
            from ..repo.repo import find_repo

            self._repo = find_repo()
        return self._repo


@dataclass
class ResolvedSource:
    files: list[Any]  # mlops.drift.io.DataFile
    described: str
    model: Any = None  # the registry's ModelVersion when the argument was a model reference
    repo: Any = None
    exclude: tuple[str, ...] = ()  # columns the source adds that are not data (a request log's latency, time)


#: PREFIX -> resolver for arguments written PREFIX:REST (e.g. "serving:churn")
SOURCE_RESOLVERS: dict[str, Callable[[str, SourceContext], ResolvedSource]] = {}


def resolve_source(text: str, ctx: SourceContext) -> ResolvedSource:
    from ..drift.io import expand

    prefix, sep, rest = text.partition(":")
    if sep and prefix in SOURCE_RESOLVERS and not Path(text).exists():
        return SOURCE_RESOLVERS[prefix](rest, ctx)
    if Path(text).exists():
        return ResolvedSource(expand([text]), text)
    if MODEL_REF.match(text):
        if ctx.side != "reference":
            raise UsageError(f"{text}: a model reference names training data: use it as the reference (first argument)")
        return _model_training_data(text, ctx)
    raise DataError(
        f"{text}: no such file or folder",
        hint="give a CSV or Parquet file, a folder of them, or a model reference (name@stage, name:version)",
        file=text,
    )


def _model_training_data(ref: str, ctx: SourceContext) -> ResolvedSource:
    try:
        from .. import registry
    except ImportError:
        raise UsageError(
            f"{ref}: model references need the model registry, which this build of mlops lacks",
            hint="give the training data's files instead",
        ) from None
    from ..drift.io import data_file, format_of

    repo = ctx.repo()
    mv = registry.resolve(repo, ref)
    files = []
    others = []
    for original, local in registry.training_data(repo, mv):
        if format_of(str(original)):
            files.append(data_file(local, name=str(original)))
        else:
            others.append(str(original))
    if not files:
        raise DataError(
            f"{ref}: {mv.name} version {mv.version} was trained on no CSV or Parquet data"
            + (f" ({', '.join(others[:3])})" if others else ""),
            hint="give the reference data's files instead",
        )
    return ResolvedSource(files, f"{ref} (training data of {mv.name} version {mv.version})", model=mv, repo=repo)


def _serving_requests(model: str, ctx: SourceContext) -> ResolvedSource:
    """The request logs of a served model: one row per scored record, its inputs as columns."""
    from ..drift.io import data_file
    from ..serve.requestlog import META_COLUMNS, log_files

    since = ctx.options.get("since")
    files = log_files(ctx.repo(), model, since)
    window = f" in the last {ctx.options.get('since_text')}" if since is not None else ""
    if not files:
        raise DataError(
            f"serving:{model}: no request logs{window}",
            hint=(
                f"serve it ('mlops serve {model}@production') and send it requests; "
                f"logs land in .mlops/serve/{model}/requests/"
            ),
        )
    return ResolvedSource(
        [data_file(f, skip_unreadable=True) for f in files],  # a torn log from a killed server is skipped, not fatal
        f"requests served by {model}{window} ({len(files)} log file(s))",
        exclude=META_COLUMNS,
    )


SOURCE_RESOLVERS["serving"] = _serving_requests


def open_source(resolved: ResolvedSource, label: str) -> Any:
    """The resolved files as one side of a drift check (mlops.drift.io.Source)."""
    from ..drift.io import Source

    return Source.open(resolved.files, label, described=resolved.described)


def predicted(resolved: ResolvedSource, sources: tuple[Any, Any], settings: Any) -> tuple[Any, Any]:
    """Both sides as in-memory tables with the model's predictions appended (the model needs rows,
    so these tables are read whole). A two-class classifier gives the probability of the positive
    class (--pos-label, else the greater class), other models their predict()."""
    import pyarrow as pa

    from .. import registry
    from ..drift.io import Source

    mv = resolved.model
    model = registry.load_model(mv, repo=resolved.repo)
    features = [str(f["name"]) for f in ((mv.signature or {}).get("inputs") or [])]
    if not features:
        features = [str(n) for n in getattr(model, "feature_names_in_", [])]
    if not features:
        raise UsageError(
            f"{mv.ref()}: the model's inputs are unknown (no signature, no feature_names_in_): it cannot predict here"
        )
    name = settings.prediction
    out = []
    for source in sources:
        missing = [f for f in features if f not in source.columns]
        if missing:
            raise UsageError(
                f"{source.label} data lacks the model's input column(s) {', '.join(missing)}",
                hint=f"{mv.ref()} reads: {', '.join(features)}",
            )
        if name in source.columns:
            raise UsageError(
                f"{source.label} data already has a column '{name}'",
                hint="name the model's predictions with --prediction NAME",
            )
        source.want(source.columns)
        table = pa.table({c: source.column(c) for c in source.columns})
        frame = table.select(features).to_pandas()
        classes = list(getattr(model, "classes_", []))
        positive = 1  # the greater of two classes
        if settings.pos_label is not None and len(classes) == 2:
            named = [i for i, c in enumerate(classes) if str(c) == settings.pos_label]
            if not named:
                raise UsageError(
                    f"--pos-label {settings.pos_label}: {mv.ref()} has no such class",
                    hint=f"its classes: {', '.join(str(c) for c in classes)}",
                )
            positive = named[0]
        try:
            if hasattr(model, "predict_proba") and len(classes) == 2:
                values = model.predict_proba(frame)[:, positive]
            else:
                values = model.predict(frame)
        except Exception as exc:  # noqa: BLE001 - a user's model fails in its own ways; say so in one line
            raise UsageError(
                f"{mv.ref()} could not predict on the {source.label} data: {type(exc).__name__}: {exc}".splitlines()[0],
                hint="check that the data has the columns and types the model was trained on",
            ) from None
        if getattr(values, "ndim", 1) != 1:
            raise UsageError(
                (
                    f"{mv.ref()} predicts {values.shape[1:]} values per row: "
                    "--predict takes one (a label, a score or a probability)"
                ),
                hint="add a column of predictions to the data and name it with --prediction instead",
            )
        table = table.append_column(name, pa.array(values))
        predicted = Source.from_table(table, source.label, name=f"{source.described} + {mv.ref()} predictions")
        predicted.warnings[:0] = source.warnings
        out.append(predicted)
    return out[0], out[1]


def record_verdict(resolved: ResolvedSource, report: Any, html: str | None = None) -> dict[str, Any]:
    """Record the verdict on the model version the reference names (policy gates read it)."""
    from .. import registry

    mv = resolved.model
    v = report.verdict
    summary = {
        "drifted_columns": [c.name for c in report.columns if c.drifted],
        "tested_columns": v.tested_columns,
        "share": v.share,
        "drift_share": v.drift_share,
        "reasons": list(v.reasons),
        "preset": report.settings.preset,
        "current": report.current.get("source"),
        "current_rows": report.current.get("rows"),
    }
    if html is not None:
        from ..drift.validations import report_in_repo

        where = report_in_repo(resolved.repo, html)
        if where is not None:
            summary["html"] = where  # the UI's /checks/NAME links exactly this report
    registry.record_drift_check(resolved.repo, mv.name, mv.version, drifted=v.drifted, summary=summary)
    return {"model": mv.name, "version": mv.version, "drifted": v.drifted}


def check_since_applies(reference: str, current: str) -> None:
    """A time window applies to request logs only: one side must be ``serving:NAME``."""
    if not any(arg.startswith("serving:") for arg in (reference, current)):
        raise UsageError("--since applies to request logs: give serving:NAME as the current data")


@dataclass(frozen=True)
class DriftCheck:
    """A drift report and what became of its verdict in the registry."""

    report: Any  # mlops.drift.report.DriftReport
    recorded: dict[str, Any] | None  # the model version the verdict was recorded for
    record_error: MlopsError | None  # recording failed: the report stands, but the check did not complete


def check(
    reference: str,
    current: str,
    settings: Any,
    *,
    repo: Any = None,
    since: float | None = None,
    since_text: str | None = None,
    predict: bool = False,
    profile: bool = False,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
    html: str | None = None,
) -> DriftCheck:
    """Resolve both sides, add the model's predictions (``predict``), compare them with
    ``settings`` (mlops.drift.config.DriftSettings) and, when the reference is a model
    reference, record the verdict on that version. ``since`` (seconds; ``since_text`` says it
    in messages) keeps only recent request logs of a ``serving:NAME`` side. ``repo``: the
    repository model and serving sources read (default: found from the working directory
    when one is needed; file sources need none). ``profile``: both sides are streamed into
    profiles (mlops.monitor) and compared from them: bounded memory at any size. ``html``: the
    report is also written there as HTML, before the verdict that links it is recorded."""
    from ..drift.report import check_drift

    title = f"Data drift: {current} against {reference}"
    options: dict[str, Any] = {}
    if since is not None:
        check_since_applies(reference, current)
        options = {"since": since, "since_text": since_text or f"{since:g}s"}
    ref_resolved = resolve_source(reference, SourceContext("reference", options, repo))
    cur_resolved = resolve_source(current, SourceContext("current", options, repo))
    added = [
        c for c in (*ref_resolved.exclude, *cur_resolved.exclude) if c not in (settings.target, settings.prediction)
    ]
    if added:  # a request log's bookkeeping columns are not data to test (unless named as target/prediction)
        settings = replace(settings, exclude=tuple(dict.fromkeys((*settings.exclude, *added))))
    if profile:
        if predict or settings.target or settings.prediction:
            raise UsageError("--profile compares the data's columns: it takes no --predict, --target or --prediction")
        from ..monitor.compare import profile_drift

        report = profile_drift(
            ref_resolved.files,
            cur_resolved.files,
            settings,
            reference=ref_resolved.described,
            current=cur_resolved.described,
        )
        return _recorded(ref_resolved, report, html, title)
    ref_source, cur_source = open_source(ref_resolved, "reference"), open_source(cur_resolved, "current")
    if predict:
        if ref_resolved.model is None:
            raise UsageError("--predict needs a model reference as the reference (churn@production, churn:3)")
        settings = replace(settings, prediction=settings.prediction or "prediction")
        ref_source, cur_source = predicted(ref_resolved, (ref_source, cur_source), settings)
    report = check_drift(ref_source, cur_source, settings, jobs=jobs, progress=progress)
    return _recorded(ref_resolved, report, html, title)


def _recorded(ref_resolved: ResolvedSource, report: Any, html: str | None, title: str) -> DriftCheck:
    if html is not None:  # written before the verdict that links it: a crash leaves no link to a missing file
        from ..drift.html import write_report

        write_report(html, report, title=title)
    recorded = None
    record_error: MlopsError | None = None
    if ref_resolved.model is not None:
        try:
            recorded = record_verdict(ref_resolved, report, html)
        except MlopsError as exc:  # the report is still shown and written; the failure comes after it
            record_error = exc
    return DriftCheck(report, recorded, record_error)
