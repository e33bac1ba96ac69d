"""How the CLI shows things: stdout carries only the result, stderr the rest.

- On a terminal: rich tables and colour, progress bars on stderr.
- Piped: plain tab-separated lines, no colour, no progress.
- In CI (CI set) or with -q: no progress bars; NO_COLOR is respected.
- ``--json``: exactly one JSON document on stdout.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..progress import Progress, ProgressTask


@dataclass
class Settings:
    debug: bool = False
    quiet: bool = False


SETTINGS = Settings(debug=os.environ.get("MLOPS_DEBUG", "") not in ("", "0", "false"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Output:
    def __init__(self, *, json_output: bool = False) -> None:
        self.json = json_output
        self.tty = _is_tty(sys.stdout) and not in_ci()
        self._stdout = None
        self._stderr = None

    # consoles are built lazily: rich costs import time, and piped output never needs them
    @property
    def console(self) -> Any:
        if self._stdout is None:
            from rich.console import Console

            self._stdout = Console(highlight=False, soft_wrap=False)
        return self._stdout

    @property
    def err_console(self) -> Any:
        if self._stderr is None:
            from rich.console import Console

            self._stderr = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._stderr

    # --- results (stdout) -----------------------------------------------------------------
    def emit_json(self, data: Any, *, compact: bool = False) -> None:
        """``compact``: one line, for listings of thousands of items, where json's C encoder (used
        only without indent) is about five times faster than the indenting pure-Python one."""
        # JSON has no NaN/Infinity: a non-finite float left anywhere becomes null (valid JSON for every parser)
        indent = None if compact else 2
        sys.stdout.write(
            json.dumps(_json_safe(data), indent=indent, sort_keys=False, default=str, allow_nan=False) + "\n"
        )
        sys.stdout.flush()

    def line(self, text: str = "", *, style: str | None = None) -> None:
        if self.tty and style:
            self.console.print(text, style=style, markup=False)
        else:
            sys.stdout.write(text + "\n")

    def row(self, *cells: tuple[str, str | None]) -> None:
        """One line of (text, style) cells: styled and space-aligned on a terminal,
        tab-separated when piped. Text is never read as markup, so names with [brackets] are safe."""
        if self.tty:
            from rich.text import Text

            parts: list[tuple[str, str] | str] = []
            for index, (text, style) in enumerate(cells):
                if index:
                    parts.append("  ")
                parts.append((text, style or ""))
            self.console.print(Text.assemble(*parts))
        else:
            sys.stdout.write("\t".join(text for text, _ in cells).rstrip("\t") + "\n")

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        styles: Sequence[str | None] | None = None,
        title: str | None = None,
        header: bool = False,
    ) -> None:
        """A rich table on a terminal; tab-separated rows when piped (``header``: the column
        names first, for tables a script reads by column)."""
        if not self.tty:
            for row in [columns, *rows] if header else rows:
                sys.stdout.write("\t".join("" if v is None else str(v) for v in row) + "\n")
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, show_edge=False, header_style="bold")
        for column in columns:
            table.add_column(column)
        for index, row in enumerate(rows):
            style = styles[index] if styles else None
            table.add_row(*(Text("" if v is None else str(v)) for v in row), style=style)  # never markup
        self.console.print(table)

    # --- messages (stderr) ----------------------------------------------------------------
    def info(self, text: str) -> None:
        if not SETTINGS.quiet:
            self._err(text, None)

    def warn(self, text: str) -> None:
        self._err(f"warning: {text}", "yellow")

    def error(self, text: str, hint: str | None = None) -> None:
        self._err(f"error: {text}", "red")
        if hint:
            self._err(f"hint: {hint}", "dim")

    def _err(self, text: str, style: str | None) -> None:
        if _is_tty(sys.stderr) and not in_ci():
            self.err_console.print(text, style=style, markup=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    # --- progress (stderr) ----------------------------------------------------------------
    def progress(self) -> Progress:
        if SETTINGS.quiet or in_ci() or not _is_tty(sys.stderr) or os.environ.get("TERM") == "dumb":
            return Progress()
        return RichProgress(self.err_console)


class _RichTask(ProgressTask):
    def __init__(self, owner: RichProgress, task_id: Any) -> None:
        self.owner = owner
        self.task_id = task_id

    def advance(self, count: int = 1) -> None:
        self.owner.bar.advance(self.task_id, count)

    def close(self) -> None:
        self.owner.finished(self.task_id)


class RichProgress(Progress):
    """Rich progress bars on stderr; started on the first task, stopped when none is open."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        self.bar = Bars(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._open = 0
        self._mutex = threading.Lock()

    def task(self, description: str, total: int | None = None) -> ProgressTask:
        with self._mutex:
            if self._open == 0:
                self.bar.start()
            self._open += 1
        return _RichTask(self, self.bar.add_task(description, total=total))

    def finished(self, task_id: Any) -> None:
        self.bar.remove_task(task_id)
        with self._mutex:
            self._open -= 1
            if self._open == 0:
                self.bar.stop()


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"  # pragma: no cover


def _json_safe(value: Any) -> Any:
    """Nested dicts/lists with non-finite floats as None (JSON null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
