"""The pipeline as a picture: stages placed in columns by their longest path from a source
(a layered layout, as `dvc dag` and Airflow's graph view draw it), edges from each stage to the
stages that need it, each box coloured by what `mlops run` would do (workflows.status)."""

from __future__ import annotations

import html
from dataclasses import dataclass

from ..repo.repo import Repo

BOX_W, BOX_H = 190, 46
GAP_X, GAP_Y = 70, 22
MARGIN = 16
LABEL_CHARS = 24


@dataclass(frozen=True)
class StageView:
    name: str
    status: str  # "would run", "up to date", "frozen"
    reasons: tuple[str, ...]
    has_run: bool
    upstream: tuple[str, ...]
    cmd: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    layer: int


@dataclass(frozen=True)
class PipelineView:
    stages: tuple[StageView, ...]
    svg: str


def _css_class(status: str) -> str:
    return {"would run": "would-run", "up to date": "up-to-date"}.get(status, "other")


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "\u2026"


def layers(order: tuple[str, ...], upstream: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Each stage's column: 0 for a stage that needs none, else one more than its deepest need."""
    out: dict[str, int] = {}
    for name in order:  # topological: every need is placed first
        out[name] = 1 + max((out[u] for u in upstream.get(name, ()) if u in out), default=-1)
    return out


def draw(stages: list[StageView]) -> str:
    """The SVG: a column per layer, a box per stage (a link to its row below), edges as curves."""
    columns: dict[int, list[StageView]] = {}
    for stage in stages:
        columns.setdefault(stage.layer, []).append(stage)
    where: dict[str, tuple[float, float]] = {}
    for layer, members in columns.items():
        for row, stage in enumerate(members):
            where[stage.name] = (MARGIN + layer * (BOX_W + GAP_X), MARGIN + row * (BOX_H + GAP_Y))
    width = MARGIN * 2 + (max(columns, default=0) + 1) * (BOX_W + GAP_X) - GAP_X
    height = MARGIN * 2 + max((len(m) for m in columns.values()), default=1) * (BOX_H + GAP_Y) - GAP_Y
    out = [
        f'<svg class="dag" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="pipeline stages and their order">',
        '<defs><marker id="dag-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path class="arrow" d="M0,0 L10,5 L0,10 z"/></marker></defs>',
    ]
    for stage in stages:
        x2, y2 = where[stage.name]
        for need in stage.upstream:
            if need not in where:
                continue
            x1, y1 = where[need]
            sx, sy, ex, ey = x1 + BOX_W, y1 + BOX_H / 2, x2, y2 + BOX_H / 2
            mid = (sx + ex) / 2
            out.append(
                f'<path class="edge" d="M{sx:.0f},{sy:.0f} C{mid:.0f},{sy:.0f} {mid:.0f},{ey:.0f} {ex:.0f},{ey:.0f}" '
                f'data-from="{html.escape(need)}" data-to="{html.escape(stage.name)}" marker-end="url(#dag-arrow)"/>'
            )
    for stage in stages:
        x, y = where[stage.name]
        why = "; ".join(stage.reasons) or stage.status
        out.append(
            f'<a href="#stage-{html.escape(stage.name)}" class="node {_css_class(stage.status)}" '
            f'data-stage="{html.escape(stage.name)}">'
            f"<title>{html.escape(stage.name)}: {html.escape(why)}</title>"
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text x="{x + 10}" y="{y + 19}" class="name">{html.escape(_short(stage.name))}</text>'
            f'<text x="{x + 10}" y="{y + 36}" class="status">{html.escape(stage.status)}</text></a>'
        )
    out.append("</svg>")
    return "\n".join(out)


def pipeline_view(repo: Repo) -> PipelineView | None:
    """The stages with their status and the drawing; None when the repository has no pipeline."""
    if not (repo.root / "pipeline.yaml").is_file():
        return None
    from ..pipeline.graph import build_graph
    from ..pipeline.spec import load_pipeline
    from ..workflows.status import stage_status

    graph = build_graph(load_pipeline(repo.root), repo.root)
    statuses = {s.name: s for s in stage_status(repo)}
    placed = layers(graph.order, graph.upstream)
    stages = []
    for name in graph.order:
        spec = graph.stage(name)
        status = statuses.get(name)
        stages.append(
            StageView(
                name=name,
                status=status.status if status else "unknown",
                reasons=status.reasons if status else (),
                has_run=status.has_run if status else False,
                upstream=tuple(graph.upstream.get(name, ())),
                cmd=spec.cmd_text,
                deps=tuple(spec.deps),
                outs=tuple(o.path for o in spec.outs),
                layer=placed[name],
            )
        )
    return PipelineView(tuple(stages), draw(stages))
