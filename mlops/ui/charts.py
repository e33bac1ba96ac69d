"""Charts the UI draws that `mlops plots` does not: parallel coordinates over runs.

One vertical axis per numeric param that differs between the runs, and the chosen metric last;
each run a line across them in its colour (tracking/plots.py's palette, so it matches the
legend and the step charts on the same page). Text values are placed as categories."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from ..tracking.plots import COLOURS, finite_number

WIDTH, HEIGHT = 720, 320
TOP, BOTTOM, SIDE = 30, 30, 60
MAX_AXES = 12


def _axis(values: list[Any]) -> tuple[list[float | None], list[tuple[float, str]]]:
    """Each value's place on the axis (0 bottom .. 1 top; None: no value) and the tick labels."""
    numbers = [finite_number(v) for v in values]
    present = [v for v in values if v is not None]
    if present and all(n is not None for n, v in zip(numbers, values, strict=True) if v is not None):
        low, high = min(n for n in numbers if n is not None), max(n for n in numbers if n is not None)
        span = high - low or 1.0
        places = [None if n is None else (n - low) / span if high != low else 0.5 for n in numbers]
        ticks = [(0.0, f"{low:.4g}"), (1.0, f"{high:.4g}")] if high != low else [(0.5, f"{low:.4g}")]
        return places, ticks
    categories = sorted({str(v) for v in present})
    step = 1.0 / max(1, len(categories) - 1)
    place = {c: (i * step if len(categories) > 1 else 0.5) for i, c in enumerate(categories)}
    return [None if v is None else place[str(v)] for v in values], [(place[c], c[:16]) for c in categories]


def parallel_coordinates(runs: Sequence[Any], params: Sequence[str], metric: str | None) -> str:
    """The SVG: ``runs`` are RunData; ``params`` the param keys to draw (in order), ``metric`` last."""
    axes: list[tuple[str, list[Any]]] = [(f"params.{k}", [r.params.get(k) for r in runs]) for k in params]
    axes = axes[: MAX_AXES - 1]
    if metric:
        axes.append((f"metrics.{metric}", [r.metrics.get(metric) for r in runs]))
    if len(axes) < 2:
        return ""
    gap = (WIDTH - 2 * SIDE) / (len(axes) - 1)
    plot_h = HEIGHT - TOP - BOTTOM
    height = HEIGHT + 18 * len(runs)
    out = [
        f'<svg class="chart parallel" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="parallel coordinates">'
    ]
    placed = []
    for index, (name, values) in enumerate(axes):
        x = SIDE + index * gap
        places, ticks = _axis(values)
        placed.append(places)
        out.append(f'<line class="axis" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP - 10}" text-anchor="middle">{html.escape(name[-28:])}</text>')
        for where, label in ticks:
            y = TOP + plot_h - where * plot_h
            out.append(f'<text x="{x + 4:.1f}" y="{y + 4:.1f}">{html.escape(label)}</text>')
    for row, run in enumerate(runs):
        colour = COLOURS[row % len(COLOURS)]
        points = [
            (SIDE + index * gap, TOP + plot_h - places[row] * plot_h)
            for index, places in enumerate(placed)
            if places[row] is not None
        ]
        ident = html.escape(run.id)
        out.append(f'<g class="series" data-run="{ident}">')
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for x, y in points:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{ident}</title></circle>')
        out.append("</g>")
    out.append('<g class="legend">')
    for row, run in enumerate(runs):
        y = HEIGHT + 18 * row
        label = f"{run.name} ({run.id})" if run.name else run.id
        out.append(
            f'<g class="legend-entry" data-run="{html.escape(run.id)}">'
            f'<rect x="{SIDE}" y="{y - 10}" width="12" height="12" fill="{COLOURS[row % len(COLOURS)]}"/>'
            f'<text x="{SIDE + 18}" y="{y}">{html.escape(label)}</text></g>'
        )
    out.append("</g></svg>")
    return "\n".join(out)
