"""Step-wise metrics of runs as ONE self-contained HTML file: inline SVG, no script, no fetch.

One line chart per metric, one line (and legend entry) per run. x is the step a value was
logged at; a value logged without a step takes its position among that key's values.
Each point carries an SVG ``<title>``, so hovering shows run, step and value without
any JavaScript.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence

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
    lines = [(run, series(run, key)) for run in runs]
    points = [p for _, pts in lines for p in pts]
    legend_rows = len(runs)
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
        out.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h + 32}" text-anchor="middle">step</text>')
        for index, (run, pts) in enumerate(lines):
            if not pts:
                continue
            colour = COLOURS[index % len(COLOURS)]
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            out.append(f'<g class="series" data-run="{html.escape(run.id)}">')
            if len(pts) > 1:
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
            for x, y in pts:
                tip = html.escape(f"{_label(run)} step {_num(x)}: {key} = {_num(y)}")
                out.append(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"><title>{tip}</title></circle>'
                )
            out.append("</g>")
    else:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no numeric values</text>')
    out.append('<g class="legend">')
    for index, (run, pts) in enumerate(lines):
        colour = COLOURS[index % len(COLOURS)]
        y = HEIGHT + 18 * index
        note = "" if pts else " (no values)"
        out.append(
            f'<g class="legend-entry" data-run="{html.escape(run.id)}">'
            f'<rect x="{LEFT}" y="{y - 10}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{LEFT + 18}" y="{y}">{html.escape(_label(run) + note)}</text></g>'
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
