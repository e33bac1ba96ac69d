"""Drift and validation commands: `mlops drift`, `mlops schema infer`, `mlops validate`.

Where data comes from (files, a model's training data, a served model's request logs), the
model's predictions and the verdict recorded in the registry are settled in
``mlops.workflows.drift``; here the options are parsed and the report printed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from ..errors import CheckFailed, UsageError
from .boundary import JSON_OPTION, comma_names, command, positive_duration
from .output import Output

schema_app = typer.Typer(no_args_is_help=True)


def register(app: typer.Typer) -> None:
    command(app, "drift")(drift)
    app.add_typer(
        schema_app,
        name="schema",
        help="Data schemas: infer one from data (YAML to edit), then `mlops validate` against it.",
    )
    command(app, "validate")(validate)


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
            "(numeric: Wasserstein distance on the reference's rank scale, in its std devs; "
            "categorical: Jensen-Shannon distance) reaches it."
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
    profile: bool = typer.Option(
        False,
        "--profile",
        help=(
            "Stream both sides into profiles and compare those (any size, bounded memory; "
            "wasserstein, psi, jensenshannon, chisquare; docs/monitoring.md)."
        ),
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Compare current data with reference data, column by column: which columns drifted, and has the dataset?"""
    from ..drift.config import CORRECTIONS, TASKS, check_fraction, check_method, load_config, preset_settings

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

    from ..workflows.drift import check, check_since_applies

    window = None
    if since is not None:
        check_since_applies(reference, current)  # before the value: the option itself is misplaced
        window = positive_duration(since, "--since")
    done = check(
        reference,
        current,
        settings,
        since=window,
        since_text=since,
        predict=predict,
        profile=profile,
        jobs=jobs,
        progress=out.progress(),
        html=None if html is None else str(html),
    )
    report, recorded, record_failed = done.report, done.recorded, done.record_error
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


def _record_validation(data: list[str], schema: Path, report: Any) -> None:
    """Keep the result for `mlops ui`'s /checks page when run inside a repository (outside one,
    validation still works and records nothing)."""
    from ..drift.validations import record_validation
    from ..errors import NotARepoError
    from ..repo.repo import find_repo

    try:
        repo = find_repo()
    except NotARepoError:
        return
    record_validation(repo, data, schema, report)


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
    _record_validation(data, schema, report)
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
