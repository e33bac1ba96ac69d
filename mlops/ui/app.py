"""The UI's pages: a starlette app over one repository, rendered with Jinja2 templates.

Every handler reads; none writes (no index healing, no lock, no state database). Handlers are
plain functions, so starlette runs them in its thread pool and a slow page does not hold the
others. A name in a URL goes through ``guard`` before it becomes a path.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import ConfigError, MlopsError, UnknownModelError, UsageError
from ..repo.repo import Repo
from ..tracking import plots, query
from ..tracking.store import load_run
from . import guard
from .charts import parallel_coordinates
from .readonly import read_only
from .runs import ATTRIBUTE_COLUMNS, DEFAULT_PAGE_SIZE, PAGE_SIZES, RunsCache, cell, columns_for, field_text

HERE = Path(__file__).resolve().parent
MAX_COMPARE = 20
MAX_QUERY = 2000  # characters of a filter, a sort or a column list
MAX_REPORTS = 500
#: the columns of a deployment's variants table (canary_status's per-variant summary)
VARIANT_FIELDS = ("requests", "errors", "bad_requests", "error_rate", "p50_ms", "p99_ms", "disagreement")


def fmt_time(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fmt_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def fmt_cell(column: Any, value: Any) -> str:
    key = column.field.key if column.field.kind == "attributes" else ""
    if key in ("start_time", "end_time"):
        return fmt_time(value)
    if key == "duration":
        return fmt_duration(value)
    if key == "git_commit" and isinstance(value, str):
        return value[:10]
    return fmt_value(value)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(time=fmt_time, duration=fmt_duration, value=fmt_value)
    env.globals.update(fmt_cell=fmt_cell)
    return env


def _text_param(request: Request, name: str) -> str:
    value = request.query_params.get(name, "").strip()
    if len(value) > MAX_QUERY:
        raise UsageError(f"{name}: longer than {MAX_QUERY} characters")
    return value


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name, "")
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        return default
    return max(low, min(high, int(text)))


class UI:
    """The pages of one repository."""

    def __init__(self, repo: Repo) -> None:
        self.repo = read_only(repo)
        self.runs = RunsCache(self.repo)
        self.env = _environment()

    def page(self, template: str, request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
        body = self.env.get_template(template).render(request=request, repo_name=self.repo.root.name, **context)
        return HTMLResponse(body, status_code=status_code)

    # --- runs ------------------------------------------------------------------------------

    def runs_page(self, request: Request) -> Response:
        snapshot = self.runs.snapshot()
        filter_text, sort_text = _text_param(request, "q"), _text_param(request, "sort")
        size = _int_param(request, "n", DEFAULT_PAGE_SIZE, 1, PAGE_SIZES[-1])
        number = _int_param(request, "page", 1, 1, 10**9)
        differ = request.query_params.get("differ") == "1"
        chosen_texts = [c for c in request.query_params.getlist("col") if c][:200]
        error = None
        try:
            chosen = query.parse_columns(",".join(chosen_texts)) if chosen_texts else None
            selected = self.runs.select(snapshot, filter_text, sort_text)
        except UsageError as exc:
            error, chosen, selected = exc.message, None, []
        pages = max(1, math.ceil(len(selected) / size))
        number = min(number, pages)
        shown = selected[(number - 1) * size : number * size]
        columns = columns_for(shown, chosen, differ=differ)
        rows = [(run, [cell(run, c.field) for c in columns]) for run in shown]
        base = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]

        def page_url(n: int) -> str:
            return "/runs?" + urlencode([*base, ("page", str(n))])

        def sort_url(field: query.Field) -> str:
            """This query sorted by ``field``: ascending, or descending when it already sorts ascending."""
            name = field_text(field)
            rest = [(k, v) for k, v in base if k != "sort"]
            return "/runs?" + urlencode([*rest, ("sort", "-" + name if sort_text == name else name)])

        fields = [
            *(query.Field("attributes", a) for a in ATTRIBUTE_COLUMNS),
            *(query.Field("metrics", k) for k in snapshot.metric_keys[:500]),
            *(query.Field("params", k) for k in snapshot.param_keys[:500]),
        ]
        choices = [(field_text(f), f.key if f.kind == "attributes" else str(f)) for f in fields if field_text(f)]
        chosen_set = {field_text(f) for f in (chosen or [c.field for c in columns])}
        return self.page(
            "runs.html",
            request,
            status_code=400 if error else 200,
            error=error,
            q=filter_text,
            sort=sort_text,
            size=size,
            sizes=PAGE_SIZES,
            differ=differ,
            number=number,
            pages=pages,
            total=len(snapshot.runs),
            matched=len(selected),
            columns=columns,
            rows=rows,
            page_url=page_url,
            sort_url=sort_url,
            id_field=query.Field("attributes", "id"),
            choices=choices,
            chosen_set=chosen_set,
            warnings=snapshot.warnings,
        )

    def run_page(self, request: Request) -> Response:
        run_id = guard.checked_run_id(request.path_params["run_id"])
        run = self._load_run(run_id)
        keys = plots.stepwise_keys([run]) if run.history else []
        charts = [(k, Markup(plots.chart(k, [run]))) for k in keys if len(run.history.get(k, [])) > 1]
        return self.page("run.html", request, run=run, charts=charts)

    def _load_run(self, run_id: str) -> Any:
        try:
            return load_run(self.repo, run_id)
        except ConfigError:
            raise  # a run that is there but cannot be read: said on the error page, not a 404
        except UsageError:
            raise guard.NotFound(f"no run {run_id}") from None

    def compare_page(self, request: Request) -> Response:
        ids = list(dict.fromkeys(request.query_params.getlist("run")))[:MAX_COMPARE]
        runs = [self._load_run(guard.checked_run_id(i)) for i in ids]
        rows: dict[str, list[tuple[str, list[str], bool]]] = {}
        for kind in ("params", "metrics"):
            keys = sorted({k for r in runs for k in getattr(r, kind)})
            table = []
            for key in keys:
                values = [fmt_value(getattr(r, kind).get(key)) if key in getattr(r, kind) else "" for r in runs]
                table.append((key, values, len(set(values)) > 1))
            rows[kind] = table
        attributes = [
            ("name", [r.name for r in runs]),
            ("status", [r.status for r in runs]),
            ("started", [fmt_time(r.info.get("start_time")) for r in runs]),
            ("git commit", [(r.info.get("git_commit") or "")[:10] for r in runs]),
            ("dirty", [fmt_value(r.info.get("git_dirty")) for r in runs]),
        ]
        metric_keys = [key for key, _values, _differs in rows["metrics"]]
        chosen_metric = request.query_params.get("metric", "")
        metric = chosen_metric if chosen_metric in metric_keys else (metric_keys[0] if metric_keys else None)
        varying_params = [key for key, _values, differs in rows["params"] if differs]
        parallel = Markup(parallel_coordinates(runs, varying_params, metric)) if len(runs) > 1 else ""
        # one chart per metric logged over steps, every run's line on it (final values are in the table)
        charts = [(k, Markup(plots.chart(k, runs))) for k in sorted(plots.stepwise_keys(runs))] if runs else []
        return self.page(
            "compare.html",
            request,
            runs=runs,
            attributes=[(name, values, len(set(values)) > 1) for name, values in attributes],
            rows=rows,
            charts=charts,
            colours=plots.COLOURS,
            parallel=parallel,
            metric=metric,
            metric_keys=metric_keys,
            ids=[r.id for r in runs],
        )

    # --- models ----------------------------------------------------------------------------

    def models_page(self, request: Request) -> Response:
        from ..registry.read import list_models

        return self.page("models.html", request, models=list_models(self.repo))

    def model_page(self, request: Request) -> Response:
        from ..registry.read import versions

        name = guard.checked_model_name(request.path_params["name"])
        try:
            found = versions(self.repo, name)
        except UnknownModelError:
            raise guard.NotFound(f"no model {name}") from None
        keys = sorted({k for v in found for k, value in v.metrics.items() if isinstance(value, (int, float))})
        charts = []
        for key in keys[:20]:
            points = [
                (float(v.version), float(v.metrics[key]))
                for v in found
                if isinstance(v.metrics.get(key), (int, float))
                and not isinstance(v.metrics.get(key), bool)
                and math.isfinite(v.metrics[key])
            ]
            svg = plots.line_chart(
                key,
                [(name, name, points)],
                lambda label, x, y, key=key: f"{label}:{x:g} {key} = {y:.6g}",
                attribute="data-model",
                x_label="version",
            )
            charts.append((key, Markup(svg)))
        drift = sorted(
            ((v.version, d) for v in found for d in v.drift_checks if isinstance(d, dict)),
            key=lambda item: str(item[1].get("at", "")),
            reverse=True,
        )
        return self.page("model.html", request, name=name, versions=list(reversed(found)), charts=charts, drift=drift)

    def version_page(self, request: Request) -> Response:
        from ..registry.audit_ops import history
        from ..registry.card import render_card
        from ..registry.lineage import lineage_doc
        from ..registry.read import get_version

        name = guard.checked_model_name(request.path_params["name"])
        number = guard.checked_version(request.path_params["version"])
        try:
            mv = get_version(self.repo, name, number)
        except UnknownModelError:
            raise guard.NotFound(f"no version {name}:{number}") from None
        events = [e for e in history(self.repo, name) if e.get("version") in (None, number)]
        return self.page(
            "version.html",
            request,
            mv=mv,
            lineage=lineage_doc(mv),
            card=render_card(mv, events),
            events=events,
            signature=json.dumps(mv.signature, indent=2, sort_keys=True) if mv.signature else "",
            run_exists=bool(mv.run_id) and guard.RUN_ID.fullmatch(mv.run_id or "") is not None,
        )

    def audit_page(self, request: Request) -> Response:
        from ..registry import audit
        from ..registry.audit_ops import verify_audit
        from ..registry.store import audit_path

        report = verify_audit(self.repo)
        entries = audit.read_entries(audit_path(self.repo))
        entries = list(reversed(entries))[:1000]
        return self.page("audit.html", request, report=report, entries=entries)

    # --- deployments -----------------------------------------------------------------------

    def deployments_page(self, request: Request) -> Response:
        from .deployments import deployed_models, deployment_status

        rows = [(name, deployment_status(self.repo, name)) for name in deployed_models(self.repo)]
        return self.page("deployments.html", request, rows=[(n, s) for n, s in rows if s is not None])

    def _deployment(self, request: Request) -> dict[str, Any]:
        from .deployments import deployment_status

        name = guard.checked_model_name(request.path_params["name"])
        status = deployment_status(self.repo, name)
        if status is None:
            raise guard.NotFound(f"no deployment of {name}")
        return status

    def deployment_page(self, request: Request) -> Response:
        status = self._deployment(request)
        return self.page("deployment.html", request, status=status, fields=VARIANT_FIELDS)

    def deployment_json(self, request: Request) -> Response:
        return JSONResponse(self._deployment(request))

    # --- pipeline --------------------------------------------------------------------------

    def pipeline_page(self, request: Request) -> Response:
        from .dag import pipeline_view

        view = pipeline_view(self.repo)
        return self.page("pipeline.html", request, view=view, svg=Markup(view.svg) if view else None)

    # --- checks: drift, monitoring, validation -----------------------------------------------

    def _monitor_history(self, name: str) -> list[dict[str, Any]]:
        """`mlops monitor history`'s records (monitor/check.py appends them to checks.jsonl). Read
        here through monitor.store's folder rule rather than monitor.check.history, which would
        import numpy and the drift statistics into the page."""
        from ..fsio import read_records
        from ..monitor.store import monitor_dir

        return [r for r in read_records(monitor_dir(self.repo, name) / "checks.jsonl") if isinstance(r, dict)]

    def _reports_naming(self, name: str) -> list[str]:
        """The HTML reports under `.mlops/` whose path names the model (nothing records which
        report a check wrote: `--html` takes any path)."""
        return [rel for rel, _mtime in self._reports() if name in rel]

    def checks_page(self, request: Request) -> Response:
        from ..registry.read import list_models, versions

        rows = []
        for model in list_models(self.repo):
            drift = [(v.version, d) for v in versions(self.repo, model.name) for d in v.drift_checks]
            drift = [(n, d) for n, d in drift if isinstance(d, dict)]
            last = max(drift, key=lambda item: str(item[1].get("at", "")), default=None)
            monitored = self._monitor_history(model.name)
            rows.append((model.name, len(drift), last, len(monitored), monitored[-1] if monitored else None))
        return self.page("checks.html", request, rows=rows, validations=self._validations())

    def _validations(self) -> list[dict[str, Any]]:
        """`mlops validate`'s recorded results, newest first (drift/validations.py appends them).
        Read through fsio.read_records here, not drift.validations, which imports the schema
        module; a damaged log shows as no results rather than a broken page."""
        from ..fsio import read_records

        path = self.repo.dot / "checks" / "validation.jsonl"
        try:
            records = [r for r in read_records(path) if isinstance(r, dict)]
        except MlopsError:
            return []
        return records[::-1][:MAX_REPORTS]  # appended as they ran: the last line is the newest

    def model_checks_page(self, request: Request) -> Response:
        from ..registry.read import versions

        name = guard.checked_model_name(request.path_params["name"])
        try:
            found = versions(self.repo, name)
        except UnknownModelError:
            raise guard.NotFound(f"no model {name}") from None
        drift = sorted(
            ((v.version, d) for v in found for d in v.drift_checks if isinstance(d, dict)),
            key=lambda item: str(item[1].get("at", "")),
            reverse=True,
        )
        monitored = list(reversed(self._monitor_history(name)))
        recorded = [d.get("summary", {}).get("html") for _v, d in drift if isinstance(d.get("summary"), dict)]
        recorded += [m.get("html") for m in monitored]
        linked: list[str] = []  # under .mlops/: served by /reports/PATH, whose checks still apply
        elsewhere: list[str] = []  # elsewhere in the repository: named, not served
        for where in dict.fromkeys(w for w in recorded if isinstance(w, str) and w):
            if where.startswith(".mlops/"):
                linked.append(where.removeprefix(".mlops/"))
            else:
                elsewhere.append(where)
        named = [rel for rel in self._reports_naming(name) if rel not in linked]
        return self.page(
            "model_checks.html",
            request,
            name=name,
            drift=drift,
            monitored=monitored,
            recorded_reports=linked,
            elsewhere_reports=elsewhere,
            reports=named,
        )

    # --- reports ---------------------------------------------------------------------------

    def reports_page(self, request: Request) -> Response:
        return self.page("reports.html", request, reports=self._reports())

    def _reports(self) -> list[tuple[str, float]]:
        found: list[tuple[str, float]] = []
        dot = self.repo.dot
        for folder, dirs, files in os.walk(dot):
            rel_folder = os.path.relpath(folder, dot)
            depth = 0 if rel_folder == "." else rel_folder.count(os.sep) + 1
            dirs[:] = sorted(d for d in dirs if d not in ("cache", "objects", "tmp") and depth < guard.MAX_REPORT_DEPTH)
            for file in files:
                if file.endswith(".html") and len(found) < MAX_REPORTS:
                    rel = file if rel_folder == "." else f"{rel_folder}/{file}".replace(os.sep, "/")
                    try:
                        found.append((rel, os.stat(os.path.join(folder, file)).st_mtime))
                    except OSError:
                        continue
        found.sort(key=lambda item: item[1], reverse=True)
        return found

    def report_file(self, request: Request) -> Response:
        path = guard.checked_report(self.repo.dot, request.path_params["path"])
        return FileResponse(path, media_type="text/html")

    # --- errors ----------------------------------------------------------------------------

    def not_found(self, request: Request, exc: Exception) -> Response:
        return self.page("error.html", request, status_code=404, title="Not found", message=str(exc) or "not found")

    def failed(self, request: Request, exc: Exception) -> Response:
        message = exc.message if isinstance(exc, MlopsError) else f"{type(exc).__name__}: {exc}"
        return self.page("error.html", request, status_code=500, title="Could not read", message=message)


def build_app(repo: Repo, *, token: str | None = None) -> Any:
    """The ASGI app: the pages of ``repo`` behind the guard (token, loopback Host, headers)."""
    from starlette.exceptions import HTTPException

    ui = UI(repo)  # over a read-only view of the repository (readonly.py)

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return ui.not_found(request, Exception("not found"))
        return ui.page("error.html", request, status_code=exc.status_code, title="Error", message=str(exc.detail))

    routes = [
        Route("/", lambda request: RedirectResponse("/runs", status_code=302)),
        Route("/runs", ui.runs_page),
        Route("/runs/{run_id}", ui.run_page),
        Route("/compare", ui.compare_page),
        Route("/models", ui.models_page),
        Route("/models/{name}", ui.model_page),
        Route("/models/{name}/{version}", ui.version_page),
        Route("/audit", ui.audit_page),
        Route("/deployments", ui.deployments_page),
        Route("/deployments/{name}", ui.deployment_page),
        Route("/deployments/{name}/status.json", ui.deployment_json),
        Route("/pipeline", ui.pipeline_page),
        Route("/checks", ui.checks_page),
        Route("/checks/{name}", ui.model_checks_page),
        Route("/reports", ui.reports_page),
        Route("/reports/{path:path}", ui.report_file),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            guard.NotFound: ui.not_found,
            HTTPException: http_error,
            MlopsError: ui.failed,
        },
    )
    app.state.ui = ui
    return guard.Guard(app, token=token)
