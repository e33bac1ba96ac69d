"""Feature store commands: features validate | get-training-set | materialize | get-online."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import FormatError
from ..repo.repo import find_repo
from .boundary import JSON_OPTION, command
from .output import Output

features_app = typer.Typer(
    no_args_is_help=True, help="The feature store: definitions in features.yaml, training sets, online values."
)


def register(app: typer.Typer) -> None:
    app.add_typer(features_app, name="features")


def _each_problem(out: Output, exc: FormatError) -> FormatError:
    """Every problem of ``exc`` as its own ``error:`` line, file:line:col first, in order: all but the
    last printed here, the last (with the hint) by the error boundary through the error returned."""
    problems = exc.fields.get("problems") or []
    if len(problems) <= 1:
        return exc
    for line in problems[:-1]:
        out.error(line)
    return type(exc)(problems[-1], hint=exc.hint, **exc.fields)


@command(features_app, "validate")
def validate(json_output: bool = JSON_OPTION) -> None:
    """Check features.yaml, and the sources' columns, types, time zones and tracked hashes."""
    from ..features.validate import validate as do_validate

    out = Output(json_output=json_output)
    try:
        report = do_validate(find_repo())
    except FormatError as exc:
        raise _each_problem(out, exc) from None
    defs = report.definitions
    if report.problems:
        error = FormatError(
            report.problems[0],
            hint=f"fix {defs.file} or the sources",
            problems=list(report.problems),
        )
        raise _each_problem(out, error)
    if out.json:
        out.emit_json(
            {
                "ok": True,
                "definitions_hash": defs.hash,
                "entities": sorted(defs.entities),
                "feature_views": sorted(defs.views),
                "feature_services": sorted(defs.services),
                "sources": {s.name: {"path": s.path, "hash": s.hash, "state": s.state} for s in report.sources},
            }
        )
        return
    out.line(
        f"{defs.file}: ok ({len(defs.entities)} entities, {len(defs.sources)} sources, "
        f"{len(defs.views)} feature views, {len(defs.services)} feature services)"
    )


def _check_parquet_output(output: Path) -> None:
    """A training set is Parquet: its schema metadata names the service and the hashes it came from,
    which `mlops register` carries into the model's lineage; CSV has no place for them."""
    from ..errors import UsageError

    if output.suffix.lower() != ".parquet":
        csv = output.suffix.lower() == ".csv"
        raise UsageError(
            f"-o {output}: a training set is written as Parquet"
            + (" (CSV cannot carry the service and hashes 'mlops register' records)" if csv else ""),
            hint=f"name it {output.with_suffix('.parquet').name}"
            + ("; convert it to CSV afterwards if another tool needs that" if csv else ""),
        )


@command(features_app, "get-training-set")
def get_training_set(
    entities: Path = typer.Argument(..., help="Entity rows: a Parquet or CSV file of join keys and event times."),
    service: str = typer.Option(..., "--service", "-s", help="The feature service whose features to join."),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="Where to write the training set: a .parquet file (its metadata carries the lineage).",
    ),
    timestamp_column: str = typer.Option("event_timestamp", "--timestamp-column", help="The entity rows' time column."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Join each entity row with the feature values as they were at its time (point-in-time correct)."""
    from ..features.offline import get_training_set as build

    out = Output(json_output=json_output)
    _check_parquet_output(output)
    try:
        result = build(find_repo(), entities, service=service, output=output, timestamp_column=timestamp_column)
    except FormatError as exc:
        raise _each_problem(out, exc) from None
    if out.json:
        out.emit_json(
            {
                "output": result.output,
                "service": result.service,
                "rows": result.rows,
                "features": list(result.features),
                "definitions_hash": result.definitions_hash,
                "sources": result.sources,
                "filled": result.filled,
            }
        )
        return
    out.line(f"wrote {result.output}: {result.rows} rows, {len(result.features)} features of '{result.service}'")
    if out.tty:
        rows: list[Any] = [(view, count, result.rows) for view, count in result.filled.items()]
        out.table(["view", "rows with values", "of rows"], rows)
        return
    for view, count in result.filled.items():  # piped: one labelled line per view
        out.line(f"{view}: values in {count} of {result.rows} rows")


@command(features_app, "materialize")
def materialize(
    service: str = typer.Option(..., "--service", "-s", help="The feature service whose views to materialize."),
    end: str | None = typer.Option(
        None, "--end", help="Materialize values as of this time (ISO 8601, default now; never in the future)."
    ),
    full: bool = typer.Option(False, "--full", help="Rebuild each view whole instead of from its watermark."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Write the latest value within TTL of each entity into the online store (SQLite in .mlops/, or Redis)."""
    from ..features.definitions import load_definitions
    from ..features.online import materialize as do_materialize
    from ..features.online import parse_time

    out = Output(json_output=json_output)
    repo = find_repo()
    moment = parse_time(end, zone=load_definitions(repo.root).timezone) if end else None
    try:
        result = do_materialize(repo, service=service, end=moment, full=full)
    except FormatError as exc:
        raise _each_problem(out, exc) from None
    if out.json:
        out.emit_json(
            {
                "service": result.service,
                "end": result.end,
                "store": result.store,
                "views": [
                    {
                        "view": v.view,
                        "mode": v.mode,
                        "entities": v.entities,
                        "watermark_before": v.watermark_before or None,
                        "watermark": v.watermark,
                        "rebuilt_because": v.reason or None,
                    }
                    for v in result.views
                ],
            }
        )
        return
    if all(v.mode == "up to date" for v in result.views):
        out.line(f"'{result.service}' in {result.store}: {_up_to_date(result.views, result.end)}")
    else:
        out.line(f"materialized '{result.service}' as of {result.end} into {result.store}")
    out.table(
        ["view", "mode", "entities written", "watermark"],
        [(v.view, _mode_shown(v.mode, v.reason), v.entities, v.watermark) for v in result.views],
        header=True,
    )


def _up_to_date(views: Any, end: str) -> str:
    """'up to date (watermark W is later than --end)': an --end at or before every watermark writes nothing."""
    import datetime as dt

    earliest = min((v.watermark for v in views), key=dt.datetime.fromisoformat)
    relation = "is later than" if dt.datetime.fromisoformat(earliest) > dt.datetime.fromisoformat(end) else "is"
    return f"up to date (watermark {earliest} {relation} --end {end}); nothing written"


def _mode_shown(mode: str, reason: str) -> str:
    """'definition changed: rebuilt', 'source changed: rebuilt', '--full: rebuilt'; a first run is 'full'."""
    return f"{reason}: rebuilt" if reason and reason != "first run" else mode


@command(features_app, "get-online")
def get_online(
    service: str = typer.Option(..., "--service", "-s", help="The feature service."),
    entity: list[str] = typer.Option(..., "--entity", "-e", help="A join key and its value: customer_id=42."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Read one entity's feature values from the online store (an expired value is missing)."""
    from ..errors import UsageError
    from ..features.online import get_online as lookup

    out = Output(json_output=json_output)
    keys: dict[str, str] = {}
    for item in entity:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--entity {item!r}: expected NAME=VALUE", hint="e.g. --entity customer_id=42")
        keys[name.strip()] = value.strip()
    result = lookup(find_repo(), service=service, entity=keys)
    if out.json:
        out.emit_json(
            {
                "service": result.service,
                "entity": result.entity,
                "features": result.values,
                "missing": list(result.missing),
                "event_times": result.event_times,
            }
        )
        return
    out.table(["feature", "value"], [(name, value) for name, value in result.values.items()])
    if result.missing:
        out.warn(f"no value within TTL: {', '.join(result.missing)}")
