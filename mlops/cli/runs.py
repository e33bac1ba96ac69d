"""Tracking commands: runs list|show|compare, metrics show|diff, params diff, plots."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import typer

from ..errors import CheckFailed, UsageError
from ..repo.repo import find_repo
from .boundary import JSON_OPTION, command
from .output import Output, fmt_value

runs_app = typer.Typer(no_args_is_help=True)
metrics_app = typer.Typer(no_args_is_help=True)
params_app = typer.Typer(no_args_is_help=True)

STATUS_STYLE = {"running": "bold blue", "finished": "green", "failed": "red", "interrupted": "yellow"}


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs", help="Experiment runs: list, filter, sort, show and compare them.")
    app.add_typer(
        metrics_app,
        name="metrics",
        help="Metrics files declared in pipeline.yaml: show them, diff them across revisions.",
    )
    app.add_typer(params_app, name="params", help="Parameter files of the pipeline: diff them across revisions.")
    command(app, "plots")(plots)


# --- formatting ------------------------------------------------------------------------------


def fmt_time(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def fmt_duration(start: Any, end: Any) -> str:
    if not isinstance(start, (int, float)):
        return "-"
    seconds = (end if isinstance(end, (int, float)) else time.time()) - start
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _table(out: Output, columns: list[str], rows: list[list[Any]], styles: list[str | None] | None = None) -> None:
    """A rich table on a terminal; tab-separated lines with a header line when piped."""
    if out.tty:
        from rich.table import Table
        from rich.text import Text

        table = Table(show_edge=False, header_style="bold")
        for index, column in enumerate(columns):
            # the first column names the row (a run id, a key): never cut
            widest = max([len(str(r[index])) for r in rows] + [len(column)]) if index == 0 else None
            table.add_column(column, no_wrap=index == 0, min_width=widest, overflow="fold")
        for index, row in enumerate(rows):
            table.add_row(*(Text("" if v is None else str(v)) for v in row), style=styles[index] if styles else None)
        out.console.print(table)
    else:
        out.table(columns, rows, header=True)


def _named_keys(text: str | None, kind: str) -> list[str]:
    if not text:
        return []
    prefixes = {"params": "params?", "metrics": "metrics?"}[kind]
    return list(dict.fromkeys(m.group(1) for m in re.finditer(rf"\b{prefixes}\.([\w.\-/]+)", text)))


def _key_columns(runs: list[dict[str, Any]], kind: str, first: list[str]) -> list[str]:
    """The keys a filter or sort named, then every other key whose value differs between the runs."""
    from ..tracking.query import varying_keys

    return list(dict.fromkeys([*first, *varying_keys(runs, kind)]))


def _attribute_cell(run: dict[str, Any], key: str) -> Any:
    if key in ("start_time", "end_time"):
        return fmt_time(run.get(key))
    if key == "duration":
        return fmt_duration(run.get("start_time"), run.get("end_time"))
    return fmt_value(run.get(key))


# --- runs ------------------------------------------------------------------------------------


def _picked_table(out: Output, runs: list[dict[str, Any]], picked: list[Any]) -> tuple[list[str], list[list[Any]]]:
    """The id, then the columns --columns named, in its order."""
    picked = [f for f in picked if (f.kind, f.key) != ("attributes", "id")]  # the id is always first
    for field in picked:
        if field.kind != "attributes" and not any(field.key in (r.get(field.kind) or {}) for r in runs):
            out.warn(f"no listed run has {field}")
    header = ["id", *(f.key if f.kind == "attributes" else str(f) for f in picked)]
    rows = [
        [
            run["id"],
            *(
                _attribute_cell(run, f.key) if f.kind == "attributes" else fmt_value((run.get(f.kind) or {}).get(f.key))
                for f in picked
            ),
        ]
        for run in runs
    ]
    return header, rows


def _default_table(out: Output, runs: list[dict[str, Any]], query: str) -> tuple[list[str], list[list[Any]]]:
    """The attributes, the metrics and params a filter or sort named, then every other one whose
    value differs between the listed runs (one equal in every run tells them apart in nothing)."""
    named = {kind: _named_keys(query, kind) for kind in ("metrics", "params")}
    keys = {kind: _key_columns(runs, kind, named[kind]) for kind in ("metrics", "params")}
    same = sum(len({k for r in runs for k in (r.get(kind) or {})} - set(keys[kind])) for kind in keys)
    if same:
        out.info(f"{same} param(s) and metric(s) equal in every listed run not shown (--columns to choose)")
    if out.tty:  # keep to the terminal's width: drop the key columns the filter and sort did not name
        fixed = sum(max(len(str(r.get(k) or "")) for r in runs) + 3 for k in ("id", "name")) + 10 + 19 + 10

        def width() -> int:
            return fixed + sum(len(k) + 11 for k in keys["metrics"]) + sum(len(k) + 10 for k in keys["params"])

        dropped = []
        while width() > out.console.width and any(len(keys[k]) > len(named[k]) for k in keys):
            kind = "params" if len(keys["params"]) > len(named["params"]) else "metrics"
            dropped.append(f"{kind}.{keys[kind].pop()}")
        if dropped:
            out.info(f"left out to fit the terminal: {', '.join(reversed(dropped))} (--columns to choose)")
    header = [
        "id",
        "name",
        "status",
        "started",
        "duration",
        *(f"metrics.{k}" for k in keys["metrics"]),
        *(f"params.{k}" for k in keys["params"]),
    ]
    rows = [
        [
            r["id"],
            r.get("name") or "-",
            r.get("status"),
            fmt_time(r.get("start_time")),
            fmt_duration(r.get("start_time"), r.get("end_time")),
            *(fmt_value((r.get("metrics") or {}).get(k)) for k in keys["metrics"]),
            *(fmt_value((r.get("params") or {}).get(k)) for k in keys["params"]),
        ]
        for r in runs
    ]
    return header, rows


@command(runs_app, "list")
def runs_list(
    sort: str | None = typer.Option(
        None,
        "--sort",
        "-s",
        help=(
            "Sort keys, comma-separated: metrics.X, params.X or attributes.X, ascending; "
            "a '-' prefix sorts descending (--sort=-metrics.acc). Default: newest first."
        ),
    ),
    filter_text: str | None = typer.Option(
        None,
        "--filter",
        "-f",
        help='Keep runs matching e.g. "params.max_depth>=8 and metrics.test_accuracy>0.9" (and/or/not, parentheses).',
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=0, help="Show at most this many runs (0: all)."),
    columns_text: str | None = typer.Option(
        None,
        "--columns",
        "-c",
        help=(
            "The table's columns after the run id, comma-separated: params.X, metrics.X or an attribute "
            "(name, status, start_time, duration, ...). Default: name, status, started, duration, then every "
            "metric and param whose value differs between the listed runs. --json lists whole runs."
        ),
    ),
    deleted: bool = typer.Option(False, "--deleted", help="List the deleted runs instead (mlops runs restore)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """List runs: filter them (tags.X too), sort them by params, metrics or attributes; children name their parent."""
    from ..tracking.query import parse_columns, parse_filter, parse_sort, select
    from ..tracking.store import list_summaries

    out = Output(json_output=json_output)
    if filter_text is not None:
        parse_filter(filter_text)  # a bad filter fails before the runs are read
    if sort is not None:
        parse_sort(sort)
    picked = parse_columns(columns_text) if columns_text is not None else None
    repo = find_repo()
    warnings: list[str] = []
    summaries = [s for s in list_summaries(repo, warnings=warnings) if bool(s.get("deleted")) == deleted]
    for warning in warnings:
        out.warn(warning)
    chosen = select(summaries, filter=filter_text, sort=sort, limit=limit or None)
    if out.json:
        out.emit_json({"total": len(summaries), "runs": [_public(s) for s in chosen]})
        return
    if not chosen:
        out.info(
            "no runs"
            + (
                " match the filter"
                if filter_text and summaries
                else " yet (mlops.start_run() in a script, or 'mlops run')"
            )
        )
        return
    styles = [STATUS_STYLE.get(s.get("status") or "") for s in chosen]
    if picked is not None:
        _table(out, *_picked_table(out, chosen, picked), styles=styles)
    else:
        _table(out, *_default_table(out, chosen, f"{filter_text or ''} {sort or ''}"), styles=styles)
    shown = len(chosen)
    matched = len(select(summaries, filter=filter_text)) if limit and shown == limit else shown
    if matched > shown:
        out.info(f"{shown} of {matched} run(s) shown (--limit 0 for all)")


def _public(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("format", "owned")}


@command(runs_app, "show")
def runs_show(
    run: str = typer.Argument(..., help="Run id, a unique prefix of it, or a run name (the newest with that name)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Show one run: attributes, params, metrics (latest values), artifacts and stages."""
    from ..tracking.store import load_run, resolve_run

    out = Output(json_output=json_output)
    repo = find_repo()
    data = load_run(repo, resolve_run(repo, run))
    if out.json:
        out.emit_json({**data.to_dict(), "children": _children(repo, data.id)})
        return
    info = data.info
    commit = info.get("git_commit")
    git = "-" if not commit else commit[:12] + (" (dirty)" if info.get("git_dirty") else "")
    facts = [
        ("id", data.id),
        ("name", data.name or "-"),
        ("status", data.status),
        ("started", fmt_time(info.get("start_time"))),
        ("ended", fmt_time(info.get("end_time"))),
        ("duration", fmt_duration(info.get("start_time"), info.get("end_time"))),
        ("user", f"{info.get('user') or '-'}@{info.get('host') or '-'} (pid {info.get('pid') or '-'})"),
        ("git", git),
        ("source", info.get("source") or "-"),
    ]
    if info.get("stages"):
        facts.append(("stages", ", ".join(info["stages"])))
    if info.get("parent_id"):
        facts.append(("parent", info["parent_id"]))
    children = _children(repo, data.id)
    if children:
        facts.append(("children", ", ".join(children)))
    if info.get("tags"):
        facts.append(("tags", ", ".join(f"{k}={v}" for k, v in sorted(info["tags"].items()))))
    if info.get("deleted"):
        facts.append(("deleted", fmt_time(info["deleted"])))
    for label, value in facts:
        out.row((f"{label:<9}", "bold"), (str(value), STATUS_STYLE.get(str(value)) if label == "status" else None))
    if data.params:
        out.line()
        out.line("params:", style="bold")
        _table(out, ["param", "value"], [[k, fmt_value(v)] for k, v in sorted(data.params.items())])
    if data.metrics:
        out.line()
        out.line("metrics:", style="bold")
        rows = []
        for key, value in sorted(data.metrics.items()):
            history = data.history.get(key, [])
            steps = [h["step"] for h in history if h.get("step") is not None]
            rows.append([key, fmt_value(value), str(len(history)), fmt_value(max(steps)) if steps else "-"])
        _table(out, ["metric", "latest", "values", "last step"], rows)
    if data.artifacts:
        out.line()
        out.line("artifacts:", style="bold")
        _table(
            out,
            ["path", "hash", "size"],
            [[a.get("path"), a.get("hash") or "(not stored)", fmt_value(a.get("size"))] for a in data.artifacts],
        )
    if data.stages:
        out.line()
        out.line("stage records:", style="bold")
        _table(out, ["stage", "status"], [[s.get("stage"), s.get("status")] for s in data.stages])


def _children(repo: Any, run_id: str) -> list[str]:
    from ..tracking.store import list_summaries

    return [s["id"] for s in list_summaries(repo, heal=False) if s.get("parent_id") == run_id]


@command(runs_app, "delete")
def runs_delete(
    runs: list[str] = typer.Argument(..., help="Runs to delete (ids, unique prefixes or names)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Mark runs deleted: hidden from listings, their artifacts no longer kept by gc ('runs restore' undoes it)."""
    _mark(runs, deleted=True, json_output=json_output)


@command(runs_app, "restore")
def runs_restore(
    runs: list[str] = typer.Argument(..., help="Deleted runs to restore (ids or unique prefixes)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Bring deleted runs back into listings (artifacts a gc freed meanwhile stay gone)."""
    _mark(runs, deleted=False, json_output=json_output)


def _mark(runs: list[str], *, deleted: bool, json_output: bool) -> None:
    from ..tracking.store import resolve_run, set_deleted

    out = Output(json_output=json_output)
    repo = find_repo()
    ids = [resolve_run(repo, ref) for ref in runs]
    for run_id in ids:
        set_deleted(repo, run_id, deleted)
    if out.json:
        out.emit_json({"deleted" if deleted else "restored": ids})
        return
    out.info(f"{'deleted' if deleted else 'restored'} {', '.join(ids)}")


@command(runs_app, "compare")
def runs_compare(
    runs: list[str] = typer.Argument(..., help="Two or more runs (ids, unique prefixes or names)."),
    only_diff: bool = typer.Option(False, "--only-diff", help="Only the params and metrics that differ."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Params and metrics of runs side by side; differences highlighted."""
    from ..tracking.store import list_summaries, load_run, resolve_run

    out = Output(json_output=json_output)
    if len(runs) < 2:
        raise UsageError("compare needs at least two runs", hint="mlops runs compare RUN RUN [RUN...]")
    repo = find_repo()
    summaries = list_summaries(repo, heal=False)
    data = [load_run(repo, resolve_run(repo, ref, summaries=summaries)) for ref in runs]
    rows: list[dict[str, Any]] = []
    for kind in ("params", "metrics"):
        keys = sorted({k for d in data for k in getattr(d, kind)})
        for key in keys:
            present = [key in getattr(d, kind) for d in data]
            values = [getattr(d, kind).get(key) for d in data]
            different = not all(present) or any(v != values[0] for v in values)
            rows.append({"key": f"{kind}.{key}", "values": values, "present": present, "different": different})
    if out.json:
        out.emit_json(
            {
                "runs": [{"id": d.id, "name": d.name, "status": d.status} for d in data],
                "rows": [
                    {
                        "key": r["key"],
                        "values": [v if p else None for v, p in zip(r["values"], r["present"], strict=True)],
                        "different": r["different"],
                    }
                    for r in rows
                ],
                "different": [r["key"] for r in rows if r["different"]],
            }
        )
        return
    shown = [r for r in rows if r["different"] or not only_diff]
    heads = [f"{d.name} ({d.id})" if d.name else d.id for d in data]
    table_rows = [
        [
            ("* " if r["different"] else "  ") + r["key"] if not out.tty else r["key"],
            *(fmt_value(v) if p else "-" for v, p in zip(r["values"], r["present"], strict=True)),
        ]
        for r in shown
    ]
    status_row = ["attributes.status" if out.tty else "  attributes.status", *(d.status for d in data)]
    _table(
        out,
        ["key", *heads],
        [status_row, *table_rows],
        styles=[None, *("bold yellow" if r["different"] else None for r in shown)],
    )
    differing = sum(r["different"] for r in rows)
    out.info(f"{differing} of {len(rows)} param(s)/metric(s) differ" + ("" if out.tty else " (marked *)"))


# --- metrics and params files -----------------------------------------------------------------


def _pipeline_files(repo: Any, kind: str) -> list[str]:
    """Metrics files (stage `metrics:` entries, then the top-level `metrics:` list) or params files
    (what stages read, then the top-level `params:` list) of pipeline.yaml."""
    from ..pipeline.spec import DEFAULT_PARAMS, PIPELINE_FILE, load_pipeline

    if not (repo.root / PIPELINE_FILE).is_file():
        return [] if kind == "metrics" else [DEFAULT_PARAMS]
    pipeline = load_pipeline(repo.root)
    if kind == "metrics":
        staged = [o.path for s in pipeline.stages.values() for o in s.outs if o.kind == "metric"]
        return list(dict.fromkeys([*staged, *pipeline.sections.metrics]))
    files = list(dict.fromkeys([*(ref.file for s in pipeline.stages.values() for ref in s.params)]))
    return list(dict.fromkeys([*(files or [pipeline.default_params]), *pipeline.sections.params]))


@command(metrics_app, "show")
def metrics_show(json_output: bool = JSON_OPTION) -> None:
    """Metrics files declared in pipeline.yaml, as in the workspace (nested keys flattened with dots)."""
    from ..tracking.diff import parse_values, read_at

    out = Output(json_output=json_output)
    repo = find_repo()
    files = _pipeline_files(repo, "metrics")
    values: dict[str, dict[str, Any]] = {}
    missing = []
    for rel in files:
        data = read_at(repo, rel, None)
        if data is None:
            missing.append(rel)
        else:
            values[rel] = parse_values(data, rel)
    if out.json:
        out.emit_json({"files": values, "missing": missing})
        return
    if not files:
        out.info("no metrics files declared in pipeline.yaml (a stage's 'metrics:' entries, or top-level 'metrics:')")
        return
    _table(
        out,
        ["file", "metric", "value"],
        [[rel, key, fmt_value(v)] for rel, kv in values.items() for key, v in kv.items()],
    )
    for rel in missing:
        out.warn(f"{rel}: not in the workspace (run the stage that writes it)")


FAIL_IF = typer.Option(
    None,
    "--fail-if",
    help=(
        'Exit 1 if a metric regressed: "KEY OP NUMBER" on new-old ("test_accuracy < -0.01") '
        'or "KEY OP NUMBER%" relative ("latency_ms > 5%"). Repeatable.'
    ),
)


def _pct(change: Any) -> str:
    pct = change.pct
    if pct is None:
        return "-"
    if pct in (float("inf"), float("-inf")):
        return "new" if pct > 0 else "-inf%"
    return f"{pct:+.2f}%"


def _diff_table(out: Output, result: Any, shown: list[Any], what: str) -> None:
    rows, styles = [], []
    for c in shown:
        delta = c.delta
        rows.append(
            [
                c.file,
                c.key,
                fmt_value(c.old) if c.in_old else "-",
                fmt_value(c.new) if c.in_new else "-",
                "-" if delta is None else f"{delta:+.6g}",
                _pct(c),
            ]
        )
        styles.append(None if not c.changed else ("red" if not c.in_new else ("green" if not c.in_old else "yellow")))
    _table(out, ["file", what, result.a, result.b, "delta", "change"], rows, styles=styles)


@command(metrics_app, "diff")
def metrics_diff(
    a_rev: str | None = typer.Argument(None, help="Old revision (default: HEAD)."),
    b_rev: str | None = typer.Argument(None, help="New revision (default: the workspace)."),
    all_keys: bool = typer.Option(False, "--all", "-a", help="Also metrics that did not change."),
    fail_if: list[str] | None = FAIL_IF,
    json_output: bool = JSON_OPTION,
) -> None:
    """Compare metrics files between two git revisions (default: HEAD and the workspace): old, new, delta."""
    from ..tracking.diff import check_rules, diff_files, parse_rule

    out = Output(json_output=json_output)
    rules = [parse_rule(text) for text in fail_if or []]
    repo = find_repo()
    files = _pipeline_files(repo, "metrics")
    result = diff_files(repo, files, a_rev or "HEAD", b_rev)
    regressions = check_rules(result, rules)
    shown = result.shown(all_keys)
    if out.json:
        out.emit_json(
            {
                "a": result.a,
                "b": result.b,
                "a_commit": result.a_commit,
                "b_commit": result.b_commit,
                "files": list(result.files),
                "changes": [c.to_dict() for c in shown],
                "rules": [r.text for r in rules],
                "regressions": [r.to_dict() for r in regressions],
                "ok": not regressions,
            }
        )
    elif not files:
        out.info("no metrics files declared in pipeline.yaml (a stage's 'metrics:' entries, or top-level 'metrics:')")
    elif shown:
        _diff_table(out, result, shown, "metric")
    else:
        out.info(f"no metric changed between {result.a} and {result.b}")
    if regressions:
        for r in regressions:
            if not out.json:
                out.warn(f"regression: {r.reason}")
        reasons = "; ".join(r.reason for r in regressions)
        raise CheckFailed(f"{len(regressions)} metric regression(s): {reasons}")
    if rules and not out.json:
        out.info(f"{len(rules)} --fail-if rule(s) passed")


@command(params_app, "diff")
def params_diff(
    a_rev: str | None = typer.Argument(None, help="Old revision (default: HEAD)."),
    b_rev: str | None = typer.Argument(None, help="New revision (default: the workspace)."),
    all_keys: bool = typer.Option(False, "--all", "-a", help="Also params that did not change."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Compare the pipeline's params files (default params.yaml) between git revisions."""
    from ..tracking.diff import diff_files

    out = Output(json_output=json_output)
    repo = find_repo()
    files = _pipeline_files(repo, "params")
    result = diff_files(repo, files, a_rev or "HEAD", b_rev)
    shown = result.shown(all_keys)
    if out.json:
        out.emit_json(
            {
                "a": result.a,
                "b": result.b,
                "a_commit": result.a_commit,
                "b_commit": result.b_commit,
                "files": list(result.files),
                "changes": [c.to_dict() for c in shown],
            }
        )
        return
    if shown:
        _diff_table(out, result, shown, "param")
    else:
        out.info(f"no param changed between {result.a} and {result.b} ({', '.join(files)})")


# --- plots -----------------------------------------------------------------------------------


def plots(
    runs: list[str] | None = typer.Argument(
        None, help="Runs to plot (ids, unique prefixes or names). None: the plots pipeline.yaml declares."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="The HTML file to write (default: plots.html)."),
    metric: list[str] | None = typer.Option(
        None, "--metric", "-m", help="Only these metrics (repeatable; default: every step-wise metric)."
    ),
) -> None:
    """Write step-wise metrics of runs, or with no run the plots pipeline.yaml declares (top-level
    'plots:' and stage 'plots:' outputs), as one self-contained HTML file (inline SVG)."""
    from ..fsio import check_output, write_output

    out = Output()
    named = output is not None
    output = output if output is not None else Path(DEFAULT_PLOTS)
    check_output(output, named=named)
    repo = find_repo()
    if not runs:
        if metric:
            raise UsageError("--metric picks metrics of runs", hint="name the runs: mlops plots RUN... -m KEY")
        _declared_plots(out, repo, output, named=named)
        return
    from ..tracking.plots import render_html, stepwise_keys
    from ..tracking.store import list_summaries, load_run, resolve_run

    summaries = list_summaries(repo, heal=False)
    data = [load_run(repo, resolve_run(repo, ref, summaries=summaries)) for ref in dict.fromkeys(runs)]
    keys = list(metric) if metric else stepwise_keys(data)
    unknown = [k for k in keys if not any(k in d.history for d in data)]
    if unknown:
        raise UsageError(
            f"no run logged metric '{unknown[0]}'",
            hint="metrics: " + ", ".join(sorted({k for d in data for k in d.history})) or "none",
        )
    write_output(output, render_html(data, keys), named=named)
    out.info(f"wrote {output}: {len(keys)} chart(s), {len(data)} run(s)")


DEFAULT_PLOTS = "plots.html"


def _declared_plots(out: Output, repo: Any, output: Path, *, named: bool) -> None:
    """pipeline.yaml's top-level plots, then each stage 'plots:' output no top-level entry names."""
    from ..fsio import write_output
    from ..pipeline.spec import PIPELINE_FILE, Plot, PlotSource, load_pipeline
    from ..tracking.plots import declared_charts, render_files_html

    if not (repo.root / PIPELINE_FILE).is_file():
        raise UsageError(
            "no runs named and no pipeline.yaml to read plots from",
            hint="mlops plots RUN... (step-wise metrics), or declare 'plots:' in pipeline.yaml",
        )
    pipeline = load_pipeline(repo.root)
    declared = list(pipeline.sections.plots)
    named = {p.id for p in declared} | {s.file for p in declared for s in p.sources}
    for stage in pipeline.stages.values():
        for o in stage.outs:
            if o.kind == "plot" and o.path not in named:
                named.add(o.path)
                declared.append(Plot(o.path, (PlotSource(o.path),), where=o.where))
    if not declared:
        raise UsageError(
            "pipeline.yaml declares no plots",
            hint="add top-level 'plots:' (or a stage's 'plots:'), or name runs: mlops plots RUN...",
        )
    charts = declared_charts(repo.root, declared)
    for chart in charts:
        for note in chart.notes:
            out.warn(note)
    write_output(output, render_files_html(charts), named=named)
    out.info(f"wrote {output}: {len(charts)} plot(s) declared in pipeline.yaml")
