"""The model card: one Markdown page about a version, from the registry alone.

Sections: purpose (the description), facts, metrics, data, signature, lineage, approvals,
stage history and drift checks, each written even when empty (saying so), so that a
reader sees what is unknown rather than a missing heading.
"""

from __future__ import annotations

from typing import Any

from .lineage import lineage_doc
from .store import ModelVersion


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


def render_card(mv: ModelVersion, events: list[dict[str, Any]] | None = None) -> str:
    lineage = lineage_doc(mv)
    lines = [f"# Model card: {mv.ref()}", ""]
    lines += [
        "## Purpose",
        "",
        mv.description or "_No description was given at registration (`mlops register --description`)._",
        "",
    ]
    lines += ["## Facts", ""]
    lines += _table(
        ["", ""],
        [
            ["model", mv.name],
            ["version", mv.version],
            ["stage", mv.stage],
            ["aliases", ", ".join(mv.aliases) or "-"],
            ["flavor", mv.flavor],
            ["artifact", f"`{mv.filename}` ({mv.kind}, {mv.size} bytes)"],
            ["artifact hash (xxh3-128)", f"`{mv.artifact}`"],
            ["sha256", f"`{mv.sha256}`" if mv.sha256 else "-"],
            ["registered by", mv.registered_by],
            ["registered at", mv.registered_at],
        ],
    )
    lines += ["", "## Metrics", ""]
    if mv.metrics:
        lines += _table(["metric", "value"], [[k, v] for k, v in sorted(mv.metrics.items())])
    else:
        lines.append("_No metrics: the version was registered without a run._")
    lines += ["", "## Data", ""]
    if mv.data:
        lines += _table(
            ["path", "kind", "hash", "from"],
            [
                [f"`{d['path']}`", d.get("kind"), f"`{d['hash']}`", d.get("stage") or d.get("source") or "-"]
                for d in mv.data
            ],
        )
    else:
        lines.append("_No data snapshots recorded._")
    lines += ["", "## Signature", ""]
    if mv.signature:
        rows = [["input", i["name"], i["dtype"]] for i in mv.signature.get("inputs") or []]
        rows += [["output", o["name"], o["dtype"]] for o in mv.signature.get("outputs") or []]
        lines += _table(["side", "name", "dtype"], rows)
        if mv.signature.get("from"):
            lines += ["", f"Input dtypes read from `{mv.signature['from']}`."]
    else:
        lines.append(f"_No signature (flavor `{mv.flavor}`: only scikit-learn models get one)._")
    lines += ["", "## Lineage", ""]
    run = lineage.get("run")
    if run:
        lines.append(
            f"- run `{run.get('id')}`"
            + (f" ({run.get('name')})" if run.get("name") else "")
            + f", status {run.get('status') or '-'}"
        )
        lines.append(
            f"- git commit `{mv.git_commit or '-'}`"
            + (" (uncommitted changes at run time)" if run.get("git_dirty") else "")
        )
        for stage in lineage.get("stages") or []:
            data = [d for d in stage.get("deps") or [] if d.get("data")]
            made = " (made the artifact)" if stage.get("made_artifact") else ""
            lines.append(
                f"- stage `{stage['stage']}`{made}"
                + (": data " + ", ".join(f"`{d['path']}` `{d['hash'][:12]}`" for d in data) if data else "")
            )
        if mv.params:
            lines += ["", "Parameters:", ""]
            lines += _table(["param", "value"], [[k, v] for k, v in sorted(mv.params.items())])
    else:
        lines.append("_Registered without a run (`mlops register --run RUN` links one)._")
    training_set = lineage.get("training_set")
    if training_set:  # built by the feature store: the service, definitions and sources it came from
        lines.append(
            f"- training set of feature service `{training_set.get('service')}` "
            f"(definitions `{str(training_set.get('definitions_hash', ''))[:19]}`): "
            + ", ".join(
                f"`{s.get('path')}` `{str(s.get('hash', ''))[:12]}`"
                for s in (training_set.get("sources") or {}).values()
            )
        )
    lines += ["", "## Approvals", ""]
    if mv.approvals:
        lines += _table(
            ["stage", "by", "when", "comment"],
            [[a.get("stage"), a.get("by"), a.get("at"), a.get("comment") or ""] for a in mv.approvals],
        )
    else:
        lines.append("_None._")
    lines += ["", "## Stage history", ""]
    if mv.stage_history:
        lines += _table(
            ["when", "from", "to", "by", "why", "forced"],
            [
                [
                    h.get("at"),
                    h.get("from"),
                    h.get("stage"),
                    h.get("by"),
                    h.get("reason") or "",
                    "yes" if h.get("forced") else "",
                ]
                for h in mv.stage_history
            ],
        )
    else:
        lines.append("_Never promoted._")
    lines += ["", "## Drift checks", ""]
    if mv.drift_checks:
        lines += _table(
            ["when", "verdict", "by"],
            [[c.get("at"), "drift" if c.get("drifted") else "no drift", c.get("by")] for c in mv.drift_checks],
        )
    else:
        lines.append("_None recorded._")
    refused = [e for e in events or [] if e.get("event") == "promotion_refused"]
    if refused:
        lines += ["", "## Refused promotions", ""]
        lines += _table(
            ["when", "to", "failed rules"],
            [
                [
                    e.get("time"),
                    e.get("to_stage"),
                    "; ".join(f"{c.get('rule')} (seen {_cell(c.get('seen'))})" for c in e.get("failed") or []),
                ]
                for e in refused
            ],
        )
    lines += ["", "_Generated by `mlops card` from the registry (audit-logged in `.mlops/registry/audit.jsonl`)._", ""]
    return "\n".join(lines)
