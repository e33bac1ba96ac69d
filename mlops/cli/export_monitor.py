"""`mlops export` commands of the monitoring side (see export.py)."""

from __future__ import annotations

import typer


def register(group: typer.Typer) -> None:
    """Add this side's commands to the `export` group."""
