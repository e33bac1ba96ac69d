"""Step-wise metrics of runs, or the plots a pipeline declares, as ONE self-contained HTML file:
inline SVG, no script, no fetch.

Runs: one line chart per metric, one line (and legend entry) per run. x is the step a value
was logged at; a value logged without a step takes its position among that key's values.

Declared plots (``declared_charts``): the files pipeline.yaml's top-level ``plots:`` names, as
DVC draws them: CSV, TSV, JSON and YAML files (a list of records, or a mapping holding one),
x a column or the row's position, y the named columns or else the last one; a folder stands
for every such file in it; images (PNG, JPEG, GIF, SVG) are embedded as they are (an ``<img>``
with a data: URI, which runs no script). A file whose real location is outside the
repository (a committed symlink) is not read: a report is something people pass around.

Each point carries an SVG ``<title>``, so hovering shows where it is from and its value
without any JavaScript.
"""

from __future__ import annotations

import base64
import html
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..paths import real_location_problem
from .store import RunData

WIDTH, HEIGHT = 720, 340
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 20, 40
COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin: 28px 0 6px; }
.runs td, .runs th { padding: 2px 10px; text-align: left; font-size: 13px; }
svg { background: #fff; border: 1px solid #ddd; }
svg text { font-size: 11px; fill: #444; }
svg .grid { stroke: #eee; } svg .axis { stroke: #888; }
svg .legend text { font-size: 12px; fill: #222; }
"""


def series(run: RunData, key: str) -> list[tuple[float, float]]:
    points = []
    for index, record in enumerate(run.history.get(key, [])):
        value = record.get("value")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            continue
        step = record.get("step")
        points.append((float(step) if isinstance(step, (int, float)) else float(index), float(value)))
    points.sort(key=lambda p: p[0])
    return points


def stepwise_keys(runs: Sequence[RunData]) -> list[str]:
    """Metrics with more than one value or a step in some run (else every metric)."""
    every = list(dict.fromkeys(k for r in runs for k in r.history))
    stepped = [
        k
        for k in every
        if any(
            len(r.history.get(k, [])) > 1 or any(h.get("step") is not None for h in r.history.get(k, [])) for r in runs
        )
    ]
    return stepped or every


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high == low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    out = []
    value = first
    while value <= high + step * 1e-9:
        out.append(round(value, 12))
        value += step
    return out


def _num(value: float) -> str:
    return f"{value:.6g}"


def _label(run: RunData) -> str:
    return f"{run.name} ({run.id})" if run.name else run.id


def chart(key: str, runs: Sequence[RunData]) -> str:
    """One SVG line chart: a polyline per run, axes with ticks, a legend entry per run."""
    lines = [(_label(run), run.id, series(run, key)) for run in runs]

    def tip(label: str, x: float, y: float) -> str:
        return f"{label} step {_num(x)}: {key} = {_num(y)}"

    return line_chart(key, lines, tip, attribute="data-run")


def line_chart(
    key: str,
    lines: Sequence[tuple[str, str, list[tuple[float, float]]]],
    tip: Callable[[str, float, float], str],
    *,
    attribute: str,
    x_label: str = "step",
    y_label: str = "",
    connect: bool = True,
) -> str:
    """An SVG chart of (label, id, points) lines: axes with ticks, a legend entry per line;
    ``connect`` False draws the points only (a scatter plot)."""
    points = [p for _, _, pts in lines for p in pts]
    legend_rows = len(lines)
    height = HEIGHT + 18 * legend_rows
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = [
        f'<svg class="chart" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{html.escape(key)}">'
    ]
    out.append(f"<title>{html.escape(key)}</title>")
    if points:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        if x0 == x1:
            x0, x1 = x0 - 1, x1 + 1
        if y0 == y1:
            pad = abs(y0) * 0.05 or 1.0
            y0, y1 = y0 - pad, y1 + pad
        else:
            pad = (y1 - y0) * 0.05
            y0, y1 = y0 - pad, y1 + pad

        def sx(x: float) -> float:
            return LEFT + (x - x0) / (x1 - x0) * plot_w

        def sy(y: float) -> float:
            return TOP + plot_h - (y - y0) / (y1 - y0) * plot_h

        for tick in _ticks(y0, y1):
            y = sy(tick)
            out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}"/>')
            out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_num(tick)}</text>')
        for tick in _ticks(x0, x1):
            x = sx(tick)
            out.append(f'<line class="grid" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}"/>')
            out.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{_num(tick)}</text>')
        out.append(f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>')
        out.append(f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>')
        out.append(
            f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h + 32}" text-anchor="middle">'
            f"{html.escape(x_label)}</text>"
        )
        if y_label:
            out.append(f'<text x="{LEFT}" y="{TOP - 6}" text-anchor="middle">{html.escape(y_label)}</text>')
        for index, (label, ident, pts) in enumerate(lines):
            if not pts:
                continue
            colour = COLOURS[index % len(COLOURS)]
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            out.append(f'<g class="series" {attribute}="{html.escape(ident)}">')
            if len(pts) > 1 and connect:
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
            for x, y in pts:
                text = html.escape(tip(label, x, y))
                out.append(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"><title>{text}</title></circle>'
                )
            out.append("</g>")
    else:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no numeric values</text>')
    out.append('<g class="legend">')
    for index, (label, ident, pts) in enumerate(lines):
        colour = COLOURS[index % len(COLOURS)]
        y = HEIGHT + 18 * index
        note = "" if pts else " (no values)"
        out.append(
            f'<g class="legend-entry" {attribute}="{html.escape(ident)}">'
            f'<rect x="{LEFT}" y="{y - 10}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{LEFT + 18}" y="{y}">{html.escape(label + note)}</text></g>'
        )
    out.append("</g></svg>")
    return "\n".join(out)


def render_html(runs: Sequence[RunData], keys: Sequence[str] | None = None, *, title: str = "mlops runs") -> str:
    """The whole report: a table of the runs, then one chart per metric."""
    keys = list(keys) if keys else stepwise_keys(runs)
    rows = "\n".join(
        f'<tr><td><span style="color:{COLOURS[i % len(COLOURS)]}">&#9632;</span> {html.escape(r.id)}</td>'
        f"<td>{html.escape(r.name)}</td><td>{html.escape(r.status)}</td></tr>"
        for i, r in enumerate(runs)
    )
    charts = "\n".join(f'<section class="metric"><h2>{html.escape(k)}</h2>\n{chart(k, runs)}\n</section>' for k in keys)
    if not keys:
        charts = "<p>These runs logged no metrics.</p>"
    made = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        f"<p>{len(runs)} run(s), {len(keys)} metric(s); made {made} by mlops plots.</p>\n"
        f'<table class="runs"><tr><th>run</th><th>name</th><th>status</th></tr>\n{rows}\n</table>\n'
        f"{charts}\n</body>\n</html>\n"
    )


# --- declared plots: files the pipeline names ------------------------------------------------

DATA_SUFFIXES = (".csv", ".tsv", ".json", ".yaml", ".yml")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
IMAGE_TYPES[".svg"] = "image/svg+xml"  # shown through <img>, where an SVG runs no script


@dataclass(frozen=True)
class FileChart:
    """One chart of declared plot files: its lines, or an image."""

    title: str
    lines: tuple[tuple[str, str, list[tuple[float, float]]], ...] = ()  # (label, file, points)
    x_label: str = "step"
    y_label: str = ""
    connect: bool = True
    image: tuple[str, bytes] | None = None  # (mime type, bytes)
    notes: tuple[str, ...] = field(default_factory=tuple)


def read_records(data: bytes, rel: str, *, header: bool = True) -> list[dict[str, Any]]:
    """A plot file's rows: CSV/TSV lines (the first names the columns, unless ``header`` is
    False: then they are 0, 1, ...), or a JSON/YAML list of records (or a mapping holding one)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FormatError(f"{rel}: not a text file (not UTF-8)", file=rel) from None
    lower = rel.lower()
    if lower.endswith((".csv", ".tsv")):
        import csv

        rows = list(csv.reader(text.splitlines(), delimiter="\t" if lower.endswith(".tsv") else ","))
        rows = [r for r in rows if r]
        if not rows:
            return []
        names = rows[0] if header else [str(i) for i in range(len(rows[0]))]
        return [dict(zip(names, r, strict=False)) for r in (rows[1:] if header else rows)]
    from ..formats import parse_json, parse_yaml

    value = parse_json(text, rel) if lower.endswith(".json") else parse_yaml(text, rel)
    if isinstance(value, dict):  # DVC's {"train": [{...}, ...]}: the first list of records in it
        value = next((v for v in value.values() if isinstance(v, list)), [])
    if not isinstance(value, list):
        return []
    return [r for r in value if isinstance(r, dict)]


def finite_number(value: Any, *, parse: bool = False) -> float | None:
    """``value`` as a finite float, or None (a bool, NaN, infinity, too large, not a number).

    With ``parse``, anything ``float()`` takes counts too (a CSV cell's text "0.5"); without, only
    an int or a float does (the UI's parallel coordinates keep a text parameter a category)."""
    if isinstance(value, bool) or not (parse or isinstance(value, (int, float))):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def file_lines(
    records: list[dict[str, Any]], rel: str, x: str, ys: Sequence[str]
) -> tuple[list[tuple[str, str, list[tuple[float, float]]]], list[str]]:
    """(label, file, points) for each y column of one file, and notes on what could not be drawn."""
    notes: list[str] = []
    columns = list(dict.fromkeys(k for r in records for k in r))
    wanted = list(ys) or [c for c in columns if c != x][-1:]
    lines = []
    for y in wanted:
        if records and y not in columns:
            notes.append(f"{rel}: no column '{y}' (columns: {', '.join(map(str, columns)) or 'none'})")
        points = []
        for index, record in enumerate(records):
            value = finite_number(record.get(y), parse=True)
            position = finite_number(record.get(x), parse=True) if x else float(index)
            if value is not None and position is not None:
                points.append((position, value))
        lines.append((f"{rel}: {y}", rel, sorted(points, key=lambda p: p[0])))
    if x and records and x not in columns:
        notes.append(f"{rel}: no column '{x}' for x")
    return lines, notes


def _files_of(root: Path, rel: str) -> list[str]:
    """A declared path's files: the file, or every plot file in a folder (sorted, links not followed)."""
    path = root / rel
    if not path.is_dir():
        return [rel]
    found = []
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(DATA_SUFFIXES + tuple(IMAGE_TYPES)):
                found.append(Path(folder, name).relative_to(root).as_posix())
    return found


def _read(root: Path, rel: str, notes: list[str]) -> bytes | None:
    path = root / rel
    if not path.is_file():
        notes.append(f"{rel}: not in the workspace (run the stage that writes it)")
        return None
    problem = real_location_problem(root, path)
    if problem:
        notes.append(f"{rel}: not read: {problem}")
        return None
    return path.read_bytes()


def declared_charts(root: Path, plots: Sequence[Any]) -> list[FileChart]:
    """The charts of declared plots (pipeline.yaml's ``plots:`` entries: ``id``, ``sources`` of
    ``file``/``x``/``y``, ``template``, ``title``, ``x_label``, ``y_label``, ``header``, ``named``).
    A file or folder plot gives a chart per file; a named plot one chart of all its files."""
    charts: list[FileChart] = []
    for plot in plots:
        connect = plot.template != "scatter"
        if plot.named:
            lines: list[tuple[str, str, list[tuple[float, float]]]] = []
            notes: list[str] = []
            x_names = []
            for source in plot.sources:
                for rel in _files_of(root, source.file):
                    data = _read(root, rel, notes)
                    if data is not None:
                        got, why = file_lines(read_records(data, rel, header=plot.header), rel, source.x, source.y)
                        lines.extend(got)
                        notes.extend(why)
                x_names.append(source.x or "step")
            x_label = plot.x_label or ", ".join(dict.fromkeys(x_names))
            charts.append(
                FileChart(plot.title or plot.id, tuple(lines), x_label, plot.y_label, connect, None, tuple(notes))
            )
            continue
        source = plot.sources[0]
        for rel in _files_of(root, source.file):
            notes = []
            data = _read(root, rel, notes)
            title = (plot.title or rel) if rel == source.file else rel  # a folder's files by their own name
            mime = IMAGE_TYPES.get(os.path.splitext(rel)[1].lower())
            if data is not None and mime:
                charts.append(FileChart(title, image=(mime, data)))
                continue
            lines = []
            if data is not None:
                lines, why = file_lines(read_records(data, rel, header=plot.header), rel, source.x, source.y)
                notes.extend(why)
            x_label = plot.x_label or source.x or "step"
            charts.append(FileChart(title, tuple(lines), x_label, plot.y_label, connect, None, tuple(notes)))
    return charts


def _file_chart_html(chart_: FileChart) -> str:
    if chart_.image is not None:
        mime, data = chart_.image
        encoded = base64.b64encode(data).decode("ascii")
        return f'<img alt="{html.escape(chart_.title)}" src="data:{mime};base64,{encoded}">'

    def tip(label: str, x: float, y: float) -> str:
        return f"{label} at {chart_.x_label} {_num(x)}: {_num(y)}"

    svg = line_chart(
        chart_.title,
        chart_.lines,
        tip,
        attribute="data-file",
        x_label=chart_.x_label,
        y_label=chart_.y_label,
        connect=chart_.connect,
    )
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in chart_.notes)
    return svg + notes


def render_files_html(charts: Sequence[FileChart], *, title: str = "mlops plots") -> str:
    """The declared plots as one self-contained page: a chart (or an image) per plot."""
    sections = "\n".join(
        f'<section class="plot"><h2>{html.escape(c.title)}</h2>\n{_file_chart_html(c)}\n</section>' for c in charts
    )
    made = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        f"<p>{len(charts)} plot(s) declared in pipeline.yaml; made {made} by mlops plots.</p>\n"
        f"{sections or '<p>No plots.</p>'}\n</body>\n</html>\n"
    )
