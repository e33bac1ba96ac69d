"""`mlops export` commands of the monitoring side (see export.py): Prometheus alert rules."""

from __future__ import annotations

from pathlib import Path

import typer

from .boundary import JSON_OPTION, command
from .output import Output


def register(group: typer.Typer) -> None:
    """Add this side's commands to the `export` group."""
    command(group, "prometheus-rules")(prometheus_rules)


def prometheus_rules(
    model: str = typer.Argument(..., help="The served model's name."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the rules here (default: stdout)."),
    error_rate: float = typer.Option(0.05, "--error-rate", min=0.0, max=1.0, help="Alert above this 5xx share."),
    p99: str = typer.Option("500ms", "--p99", help="Alert above this p99 latency."),
    window: str = typer.Option("5m", "--window", help="The range of rate() and increase() (a Prometheus duration)."),
    for_: str = typer.Option("5m", "--for", help="How long a condition holds before the alert fires."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Alert rules over `mlops serve`'s /metrics: error rate, p99 latency, canary health, rollbacks."""
    import re

    from ..errors import UsageError
    from ..exporters.prometheus import RuleSettings, rules, rules_yaml
    from ..registry import resolve
    from ..repo.repo import find_repo
    from .boundary import positive_duration

    out = Output(json_output=json_output)
    resolve(find_repo(), model)  # an unknown model is said, not exported
    for flag, value in (("--window", window), ("--for", for_)):
        if not re.fullmatch(r"[0-9]+(ms|s|m|h|d|w|y)", value):
            raise UsageError(f"{flag}: not a Prometheus duration: {value!r}", hint="e.g. 30s, 5m, 1h")
    settings = RuleSettings(
        error_rate=error_rate, p99_seconds=positive_duration(p99, "--p99"), window=window, for_=for_
    )
    text = rules_yaml(model, settings)
    if output is not None:
        from ..fsio import write_output

        write_output(output, text)
    if out.json:
        out.emit_json({"model": model, "output": str(output) if output else None, "rules": rules(model, settings)})
    elif output is None:
        out.line(text.rstrip("\n"))
    else:
        out.info(f"wrote {output}: {len(rules(model, settings)['groups'][0]['rules'])} alert rules for {model}")
