"""Drift and validation commands: `mlops drift`, `mlops schema infer`, `mlops validate`.

Where data comes from is settled here, not in the drift core: ``resolve_source`` turns an
argument into files. A path (file or folder) is read as it is; a registry reference
(``churn@production``, ``churn:3``) as the reference means the data the model version was
trained on; ``PREFIX:REST`` goes to ``SOURCE_RESOLVERS[PREFIX]`` when one is registered
there: a function taking the rest of the argument and a ``SourceContext``, returning a
``ResolvedSource``. ``serving:NAME`` is one: the request logs `mlops serve` wrote for model
NAME (``--since 1h``: only log files written within the last hour), so live traffic can be
compared with the data the model was trained on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import typer

from ..errors import CheckFailed, DataError, MlopsError, UsageError
from .boundary import JSON_OPTION, comma_names, command, positive_duration
from .output import Output

schema_app = typer.Typer(no_args_is_help=True)
MODEL_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(@[A-Za-z0-9_.\-]+|:[0-9]+|:latest)$")


def register(app: typer.Typer) -> None:
    command(app, "drift")(drift)
    app.add_typer(
        schema_app,
        name="schema",
        help="Data schemas: infer one from data (YAML to edit), then `mlops validate` against it.",
    )
    command(app, "validate")(validate)


# --- where data comes from ----------------------------------------------------------------------


@dataclass
class SourceContext:
    """What a resolver may need: the side it resolves and extra options (e.g. a time window)."""

    side: str  # "reference" | "current"
    options: dict[str, Any] = field(default_factory=dict)
    _repo: Any = None

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
        [data_file(f, skip_unreadable=True) for f in files],
        f"requests served by {model}{window} ({len(files)} log file(s))",
        exclude=META_COLUMNS,
    )


SOURCE_RESOLVERS["serving"] = _serving_requests


def _open(resolved: ResolvedSource, label: str) -> Any:
    from ..drift.io import Source

    return Source.open(resolved.files, label, described=resolved.described)


# --- mlops drift ---------------------------------------------------------------------------------


def drift(
    reference: str = typer.Argument(
        ...,
        help=(
            "Reference data: a CSV/Parquet file, a folder of them, or a model reference "
            "(churn@production, churn:3: the data it was trained on)."
        ),
    ),
    current: str = typer.Argument(..., help="Current data: a CSV/Parquet file or a folder of them."),
    columns: str | None = typer.Option(
        None, "--columns", help="Only these columns, comma-separated (default: every column in both sets)."
    ),
    exclude: str | None = typer.Option(
        None, "--exclude", help="Leave these columns out, comma-separated (ids, timestamps)."
    ),
    method: str | None = typer.Option(
        None,
        "--method",
        help=(
            "Test for every column: ks, chisquare, z, anderson, wasserstein, jensenshannon, psi, hellinger "
            "(where it applies; default: chosen per column, see docs/drift.md)."
        ),
    ),
    numeric_method: str | None = typer.Option(
        None, "--numeric-method", help="Test for numeric columns (overrides --method for them)."
    ),
    categorical_method: str | None = typer.Option(
        None, "--categorical-method", help="Test for categorical columns (overrides --method for them)."
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help=(
            "Threshold for every column: a p-value (drift below it) or a distance (drift at or above it). "
            "Default: the method's own."
        ),
    ),
    numeric_threshold: float | None = typer.Option(None, "--numeric-threshold", help="Threshold for numeric columns."),
    categorical_threshold: float | None = typer.Option(
        None, "--categorical-threshold", help="Threshold for categorical columns."
    ),
    drift_share: float | None = typer.Option(
        None,
        "--drift-share",
        help="The dataset drifts when at least this share of the tested columns drifted (default 0.5).",
    ),
    key_columns: str | None = typer.Option(
        None, "--key-columns", help="The dataset drifts when any of these columns drifted, comma-separated."
    ),
    correction: str | None = typer.Option(
        None,
        "--correction",
        help="Correct p-values over the columns tested by p-value: none, fdr (Benjamini-Hochberg) or bonferroni.",
    ),
    min_effect: float | None = typer.Option(
        None,
        "--min-effect",
        help=(
            "Effect-size floor: a column drifts only if its effect "
            "(numeric: Wasserstein distance in reference std devs; categorical: Jensen-Shannon distance) reaches it."
        ),
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help=(
            "default (Evidently's rules) or strict "
            "(p-value tests with FDR correction and effect floors 0.05 numeric, 0.03 categorical)."
        ),
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="A YAML file with these settings and per-column methods, thresholds and types (docs/drift.md).",
    ),
    target: str | None = typer.Option(
        None, "--target", help="The target column: target drift, and model quality with --prediction."
    ),
    prediction: str | None = typer.Option(
        None, "--prediction", help="The prediction column (labels, or probabilities of the positive class)."
    ),
    task: str | None = typer.Option(None, "--task", help="auto (default), classification or regression."),
    pos_label: str | None = typer.Option(
        None, "--pos-label", help="The positive class for F1 and ROC AUC (default: the greater of two target values)."
    ),
    predict: bool = typer.Option(
        False,
        "--predict",
        help=(
            "With a model reference: the model predicts on both sets (its signature's inputs) "
            "into --prediction (default name: prediction)."
        ),
    ),
    html: Path | None = typer.Option(None, "--html", help="Also write the report as one self-contained HTML file."),
    fail_on_drift: bool = typer.Option(
        False, "--fail-on-drift", help="Exit 1 when the dataset drifted (without it: 0 either way)."
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        help="With serving:NAME as current data: only request logs written within this long (30m, 1h, 2d).",
    ),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", min=1, max=256, help="Columns tested at once (default: the CPUs)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Compare current data with reference data, column by column: which columns drifted, and has the dataset?"""
    from ..drift.config import CORRECTIONS, TASKS, check_fraction, check_method, load_config, preset_settings
    from ..drift.report import check_drift

    out = Output(json_output=json_output)
    if html is not None:
        from ..fsio import check_output

        check_output(html)  # a folder or a missing folder is said before the work, not after it
    # the same checks as the config file's: no NaN (it compares false with everything), no negatives
    for flag, value, high in (
        ("--threshold", threshold, None),
        ("--numeric-threshold", numeric_threshold, None),
        ("--categorical-threshold", categorical_threshold, None),
        ("--min-effect", min_effect, None),
        ("--drift-share", drift_share, 1.0),
    ):
        if value is not None:
            check_fraction(value, flag, high=high)
    if preset is not None:
        preset_settings(preset)  # a bad name fails before any data is read
    settings = load_config(config, preset) if config else preset_settings(preset or "default")
    changes: dict[str, Any] = {}
    if method:
        changes["method"] = check_method(method, "--method")
    methods = dict(settings.methods)
    thresholds = dict(settings.thresholds)
    for kind, asked, limit in (
        ("numeric", numeric_method, numeric_threshold),
        ("categorical", categorical_method, categorical_threshold),
    ):
        if asked:
            methods[kind] = check_method(asked, f"--{kind}-method")
        if limit is not None:
            thresholds[kind] = limit
    changes.update(methods=methods, thresholds=thresholds)
    if threshold is not None:
        changes["threshold"] = threshold
    if drift_share is not None:
        changes["drift_share"] = drift_share
    if correction is not None:
        if correction not in CORRECTIONS:
            raise UsageError(f"--correction must be one of {', '.join(CORRECTIONS)}, not '{correction}'")
        changes["correction"] = correction
    if min_effect is not None:
        changes["min_effect"] = {"numeric": min_effect, "categorical": min_effect}
    if task is not None:
        if task not in TASKS:
            raise UsageError(f"--task must be one of {', '.join(TASKS)}, not '{task}'")
        changes["task"] = task
    for key, value in (("columns", columns), ("exclude", exclude), ("key_columns", key_columns)):
        if value is not None:
            changes[key] = comma_names(value)
    for key, value in (("target", target), ("prediction", prediction), ("pos_label", pos_label)):
        if value is not None:
            changes[key] = value
    settings = replace(settings, **changes)

    options: dict[str, Any] = {}
    if since is not None and not any(arg.startswith("serving:") for arg in (reference, current)):
        raise UsageError("--since applies to request logs: give serving:NAME as the current data")
    if since is not None:
        options = {"since": positive_duration(since, "--since"), "since_text": since}
    ref_resolved = resolve_source(reference, SourceContext("reference", options))
    cur_resolved = resolve_source(current, SourceContext("current", options))
    added = [
        c for c in (*ref_resolved.exclude, *cur_resolved.exclude) if c not in (settings.target, settings.prediction)
    ]
    if added:  # a request log's bookkeeping columns are not data to test (unless named as target/prediction)
        settings = replace(settings, exclude=tuple(dict.fromkeys((*settings.exclude, *added))))
    ref_source, cur_source = _open(ref_resolved, "reference"), _open(cur_resolved, "current")
    if predict:
        if ref_resolved.model is None:
            raise UsageError("--predict needs a model reference as the reference (churn@production, churn:3)")
        settings = replace(settings, prediction=settings.prediction or "prediction")
        ref_source, cur_source = _predicted(ref_resolved, (ref_source, cur_source), settings)
    report = check_drift(ref_source, cur_source, settings, jobs=jobs, progress=out.progress())
    recorded = None
    record_failed: MlopsError | None = None
    if ref_resolved.model is not None:
        try:
            recorded = _record(ref_resolved, report)
        except MlopsError as exc:  # the report is still shown and written; the failure comes after it
            record_failed = exc
    if html is not None:
        from ..drift.html import render
        from ..fsio import write_output

        write_output(html, render(report, title=f"Data drift: {current} against {reference}"))
    if out.json:
        doc = report.to_dict()
        if recorded is not None:
            doc["recorded_for"] = recorded
        if html is not None:
            doc["html"] = str(html)
        if record_failed is not None:
            doc["record_error"] = record_failed.to_dict()
        out.emit_json(doc)
    else:
        _show(out, report)
    for warning in report.warnings:  # also with --json: a CI log shows them
        out.warn(warning)
    if not out.json:
        if recorded is not None:
            out.info(f"recorded the verdict for {recorded['model']} version {recorded['version']}")
        if html is not None:
            out.info(f"wrote {html}")
    if record_failed is not None:
        # unrecorded, a failed check could not stop a promotion: not a success
        raise (record_failed.after_report() if out.json else record_failed)
    if fail_on_drift and report.verdict.drifted:
        raise CheckFailed(
            "dataset drifted: " + "; ".join(report.verdict.reasons),
            drifted_columns=[c.name for c in report.columns if c.drifted],
        )


def _predicted(resolved: ResolvedSource, sources: tuple[Any, Any], settings: Any) -> tuple[Any, Any]:
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


def _record(resolved: ResolvedSource, report: Any) -> dict[str, Any]:
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
    registry.record_drift_check(resolved.repo, mv.name, mv.version, drifted=v.drifted, summary=summary)
    return {"model": mv.name, "version": mv.version, "drifted": v.drifted}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _show(out: Output, report: Any) -> None:
    show_effect = bool(report.settings.min_effect)
    heads = ["column", "type", "method", "statistic", "threshold", *(["effect"] if show_effect else []), "drifted"]
    rows, styles = [], []
    for c in report.sorted_columns():
        name = c.name if c.role == "feature" else f"{c.name} ({c.role})"
        drifted = "yes" if c.drifted else ("no" if c.counted else f"not tested: {c.reason}")
        row = [name, c.kind, c.method_title or c.method or "-", _fmt(c.score), c.rule or "-"]
        if show_effect:
            row.append(
                _fmt(c.effect)
                + (f" (floor {c.min_effect:g})" if c.min_effect is not None and c.effect is not None else "")
            )
        row.append(drifted if c.status != "type_changed" and c.status != "empty_current" else f"yes: {c.reason}")
        rows.append(row)
        styles.append("bold red" if c.drifted else (None if c.counted else "dim"))
    out.table(heads, rows, styles=styles, header=True)
    v = report.verdict
    if v.drifted:
        out.line(f"dataset drifted: {'; '.join(v.reasons)}", style="bold red")
    else:
        out.line(
            f"no dataset drift: {v.drifted_columns} of {v.tested_columns} columns drifted "
            f"({v.share:.0%}; the dataset drifts at {v.drift_share:.0%}"
            + (" or when a key column drifts)" if v.key_columns else ")"),
            style="green",
        )
    q = report.quality
    if q and q.get("metrics"):
        out.line()
        out.line(f"model quality ({q['task']}):", style="bold")
        out.table(
            ["metric", "reference", "current", "change"],
            [
                [
                    m["metric"],
                    _fmt(m["reference"]),
                    _fmt(m["current"]),
                    "-" if m["change"] is None else f"{m['change']:+.4g}",
                ]
                for m in q["metrics"]
            ],
            header=True,
        )
        for note in q.get("notes", []):
            out.info(f"note: {note}")
    elif q and q.get("note"):
        out.info(f"note: {q['note']}")


# --- schemas and validation ----------------------------------------------------------------------


@command(schema_app, "infer")
def schema_infer(
    data: list[str] = typer.Argument(..., help="CSV/Parquet files or folders to learn the schema from."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the schema here (default: stdout)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Infer a data schema (types, nullability, ranges, allowed categories, uniqueness) as YAML to edit."""
    from ..drift.io import Source, expand
    from ..drift.schema import infer_schema, schema_yaml

    out = Output(json_output=json_output)
    if output is not None:
        from ..fsio import check_output

        check_output(output)
    source = Source.open(expand(data), "data", described=", ".join(data))
    schema = infer_schema(source)
    for warning in source.warnings:
        out.warn(warning)
    if output is not None:
        from ..fsio import write_output

        write_output(output, schema_yaml(schema))
    if out.json:
        out.emit_json(schema)
    elif output is None:
        out.line(schema_yaml(schema).rstrip("\n"))
    if output is not None:
        out.info(f"wrote {output}: {len(schema['columns'])} column(s) from {schema['rows']} row(s)")


def validate(
    data: list[str] = typer.Argument(..., help="CSV/Parquet files or folders to check."),
    schema: Path = typer.Option(..., "--schema", "-s", help="The schema file (from `mlops schema infer`, edited)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Check data against a schema; exit 1 listing every violation (column, rule, count, examples)."""
    from ..drift.io import Source, expand
    from ..drift.schema import load_schema
    from ..drift.schema import validate as run_validate

    out = Output(json_output=json_output)
    rules = load_schema(schema)
    source = Source.open(expand(data), "data", described=", ".join(data))
    report = run_validate(source, rules)
    warnings = [*source.warnings, *report.warnings]
    if out.json:
        doc = report.to_dict()
        doc["warnings"] = warnings
        out.emit_json(doc)
    else:
        if report.violations:
            out.table(
                ["column", "rule", "count", "problem", "examples"],
                [[v.column, v.rule, str(v.count), v.message, "; ".join(v.examples)] for v in report.violations],
                styles=["red"] * len(report.violations),
                header=True,
            )
        for warning in warnings:
            out.warn(warning)
        if not report.violations:
            out.line(
                f"valid: {report.rows} row(s), {len(report.checked_columns)} column(s) checked against {schema}",
                style="green",
            )
    if report.violations:
        total = sum(v.count for v in report.violations)
        raise CheckFailed(
            f"{len(report.violations)} violation(s) of {schema} ({total} value(s)) in {', '.join(data)}",
            violations=len(report.violations),
        )
