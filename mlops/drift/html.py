"""The drift report as one self-contained HTML file: inline CSS and SVG, no script, no fetches.

The verdict comes first, then the column table (drifted first), model quality when there is
one, warnings, and one chart per tested column: reference against current, as shares per
histogram bin (numeric) or per category (categorical, the 20 most frequent and the rest).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from .report import ColumnResult, DriftReport

REF_COLOUR = "#4c78a8"
CUR_COLOUR = "#f58518"
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;\
color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.verdict{padding:14px 18px;border-radius:6px;margin:12px 0 18px;font-size:16px}
.drifted{background:#fde2e1;border:1px solid #e5807a}.ok{background:#e3f4e1;border:1px solid #7cc47f}
table{border-collapse:collapse;width:100%;font-size:13px}\
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e4e4e4;vertical-align:top}
th{background:#f6f6f6}tr.d td{background:#fff1f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.yes{color:#c0392b;font-weight:600}.muted{color:#777}.charts{display:flex;flex-wrap:wrap;gap:14px}
.chart{border:1px solid #e4e4e4;border-radius:6px;padding:8px 10px;width:500px}
.chart h3{font-size:14px;margin:0 0 2px}.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
ul{margin:4px 0 4px 18px;padding:0}code{background:#f3f3f3;padding:0 3px;border-radius:3px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


Section = tuple[str, Sequence[str], Sequence[Sequence[Any]]]  # heading, column names, rows


def write_report(path: str, report: DriftReport, *, title: str, sections: Sequence[Section] = ()) -> None:
    """The report as one HTML file at ``path``, written atomically (fsio.write_output): a check
    writes it before recording the verdict that links it, so no record points at a missing file."""
    from ..fsio import write_output

    write_output(path, render(report, title=title, sections=sections))


def render(report: DriftReport, *, title: str = "Data drift report", sections: Sequence[Section] = ()) -> str:
    """One self-contained page; ``sections``: tables a caller adds before the columns (a monitor
    check's requests, errors and latency)."""
    v = report.verdict
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">reference: {_e(report.reference.get("source"))} '
        f"({_e(report.reference.get('rows'))} rows) &middot; "
        f"current: {_e(report.current.get('source'))} ({_e(report.current.get('rows'))} rows)</p>",
    ]
    headline = "Dataset drift detected" if v.drifted else "No dataset drift"
    detail = (
        f"{v.drifted_columns} of {v.tested_columns} columns drifted "
        f"({v.share:.0%}; the dataset drifts at {v.drift_share:.0%}"
    )
    detail += " or when a key column drifts)" if v.key_columns else ")"
    parts.append(
        f'<div class="verdict {"drifted" if v.drifted else "ok"}" id="verdict">'
        f"<strong>{headline}</strong>: {_e(detail)}."
    )
    if v.reasons:
        parts.append("<ul>" + "".join(f"<li>{_e(r)}</li>" for r in v.reasons) + "</ul>")
    parts.append("</div>")
    s = report.settings
    parts.append(
        f'<p class="muted">preset <code>{_e(s.preset)}</code> &middot; correction <code>{_e(s.correction)}</code>'
        + (
            f" &middot; effect floors {_e(', '.join(f'{k} {x:g}' for k, x in s.min_effect.items()))}"
            if s.min_effect
            else ""
        )
        + "</p>"
    )
    for heading, names, rows in sections:
        parts.append(
            f"<h2>{_e(heading)}</h2><table><thead><tr>"
            + "".join(f"<th>{_e(n)}</th>" for n in names)
            + "</tr></thead><tbody>"
        )
        for row in rows:
            parts.append("<tr>" + "".join(f'<td class="num">{_e(_fmt(x))}</td>' for x in row) + "</tr>")
        parts.append("</tbody></table>")
    parts.append(
        "<h2>Columns</h2><table><thead><tr><th>column</th><th>type</th><th>method</th><th>statistic</th>"
        "<th>threshold</th><th>effect</th><th>drifted</th><th>reason</th></tr></thead><tbody>"
    )
    for c in report.sorted_columns():
        role = f' <span class="muted">({_e(c.role)})</span>' if c.role != "feature" else ""
        parts.append(
            f'<tr class="{"d" if c.drifted else ""}"><td>{_e(c.name)}{role}</td><td>{_e(c.kind)}</td>'
            f"<td>{_e(c.method_title or c.method or '-')}</td>"
            f'<td class="num">{_e(_fmt(c.score))}</td><td>{_e(c.rule or "-")}</td>'
            f'<td class="num">{_e(_fmt(c.effect))}</td>'
            f'<td class="{"yes" if c.drifted else ""}">{"yes" if c.drifted else "no"}</td><td>{_e(c.reason)}'
            + "".join(f'<br><span class="muted">{_e(n)}</span>' for n in c.notes)
            + "</td></tr>"
        )
    parts.append("</tbody></table>")
    if report.only_in_reference or report.only_in_current:
        parts.append("<h2>Columns in one set only (not checked)</h2><ul>")
        if report.only_in_reference:
            parts.append(f"<li>only in the reference: {_e(', '.join(report.only_in_reference))}</li>")
        if report.only_in_current:
            parts.append(f"<li>only in the current data: {_e(', '.join(report.only_in_current))}</li>")
        parts.append("</ul>")
    if report.quality and report.quality.get("metrics"):
        q = report.quality
        parts.append(
            f"<h2>Model quality ({_e(q['task'])})</h2><table><thead>"
            "<tr><th>metric</th><th>reference</th><th>current</th><th>change</th></tr></thead><tbody>"
        )
        for m in q["metrics"]:
            parts.append(
                f"<tr><td>{_e(m['metric'])}</td><td class='num'>{_e(_fmt(m['reference']))}</td>"
                f"<td class='num'>{_e(_fmt(m['current']))}</td>"
                f"<td class='num'>{_e(_fmt(m['change']))}</td></tr>"
            )
        parts.append("</tbody></table>")
        for note in q.get("notes", []):
            parts.append(f'<p class="muted">{_e(note)}</p>')
    if report.warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{_e(w)}</li>" for w in report.warnings) + "</ul>")
    charted = [c for c in report.sorted_columns() if c.distribution]
    if charted:
        parts.append(
            f'<h2>Distributions</h2><p class="legend"><span style="background:{REF_COLOUR}"></span>reference'
            f'<span style="background:{CUR_COLOUR}"></span>current (share of each side\'s values)</p>'
            '<div class="charts">'
        )
        for c in charted:
            parts.append(_chart(c))
        parts.append("</div>")
    parts.append(f'<p class="muted">mlops drift &middot; {report.seconds:.2f} s</p></body></html>')
    return "\n".join(parts)


def _chart(c: ColumnResult) -> str:
    d = c.distribution or {}
    head = (
        f'<div class="chart" id="col-{_e(c.name)}"><h3>{_e(c.name)} '
        f'<span class="{"yes" if c.drifted else "muted"}">{"drifted" if c.drifted else "no drift"}</span></h3>'
        f'<div class="muted">{_e(c.method_title or "")} {_e(_fmt(c.score))} ({_e(c.rule or "")})</div>'
    )
    svg = _histogram(d) if d.get("kind") == "histogram" else _bars(d)
    return head + svg + "</div>"


def _histogram(d: dict[str, Any]) -> str:
    width, height, pad = 480, 150, 22
    ref, cur, edges = d["reference"], d["current"], d["edges"]
    top = max([*ref, *cur, 1e-12])
    n = len(ref)
    slot = (width - 2 * pad) / n
    out = [f'<svg width="{width}" height="{height + 30}" viewBox="0 0 {width} {height + 30}" role="img">']
    for i in range(n):
        for j, (share, colour) in enumerate(((ref[i], REF_COLOUR), (cur[i], CUR_COLOUR))):
            h = (height - 18) * share / top  # the top 18 px keep the 'max' label clear
            x = pad + i * slot + j * slot / 2
            out.append(
                f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{max(slot / 2 - 0.5, 0.5):.1f}" height="{h:.1f}" '
                f'fill="{colour}" opacity="0.85">'
                f"<title>{_e(_fmt(edges[i]))} to {_e(_fmt(edges[i + 1]))}: "
                f"{'reference' if j == 0 else 'current'} {share:.2%}</title></rect>"
            )
    out.append(f'<line x1="{pad}" y1="{height}" x2="{width - pad}" y2="{height}" stroke="#999"/>')
    out.append(f'<text x="{pad}" y="{height + 16}" font-size="11" fill="#555">{_e(_fmt(edges[0]))}</text>')
    out.append(
        f'<text x="{width - pad}" y="{height + 16}" font-size="11" fill="#555" text-anchor="end">'
        f"{_e(_fmt(edges[-1]))}</text>"
    )
    out.append(f'<text x="{pad}" y="10" font-size="10" fill="#777">max {top:.1%}</text>')
    out.append("</svg>")
    return "".join(out)


def _bars(d: dict[str, Any]) -> str:
    labels, ref, cur = d.get("labels", []), d.get("reference", []), d.get("current", [])
    row, label_w, width = 22, 150, 480
    height = row * len(labels) + 6
    top = max([*ref, *cur, 1e-12])
    span = width - label_w - 100  # room for the 'reference / current' shares after the longest bar
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, label in enumerate(labels):
        y = 3 + i * row
        text = label if len(label) <= 22 else label[:21] + "\u2026"
        out.append(
            f'<text x="{label_w - 6}" y="{y + 14}" font-size="11" fill="#333" text-anchor="end">'
            f"{_e(text)}<title>{_e(label)}</title></text>"
        )
        for j, (share, colour) in enumerate(((ref[i], REF_COLOUR), (cur[i], CUR_COLOUR))):
            w = span * share / top
            out.append(
                f'<rect x="{label_w}" y="{y + j * 9 + 1}" width="{max(w, 0.5):.1f}" height="8" fill="{colour}">'
                f"<title>{'reference' if j == 0 else 'current'} {share:.2%}</title></rect>"
            )
        out.append(
            f'<text x="{label_w + span * max(ref[i], cur[i]) / top + 4:.1f}" y="{y + 14}" font-size="10" fill="#777">'
            f"{ref[i]:.1%} / {cur[i]:.1%}</text>"
        )
    out.append("</svg>")
    return "".join(out)
