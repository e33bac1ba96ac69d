"""What an import cannot carry: one line each, file:line and the reason; nothing is written."""

from __future__ import annotations

from typing import Any

from ...errors import FormatError
from ...formats import Position


class Problems:
    """Collects every refusal of one import, so that the user sees them all at once."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, reason: str) -> None:
        self.add_line(f"{where}: {reason}")

    def add_line(self, line: str) -> None:
        if line not in self.lines:
            self.lines.append(line)

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        first = self.lines[0]
        more = f" (and {len(self.lines) - 1} more)" if len(self.lines) > 1 else ""
        raise FormatError(
            f"cannot import the DVC project, nothing was written: {first}{more}",
            hint="change what is named (or carry it by hand after the import), then run 'mlops import dvc' again",
            problems=list(self.lines),
        )


class Located:
    """A parsed YAML document and where each of its values starts, for file:line messages."""

    def __init__(self, source: str, data: Any, positions: dict[tuple[Any, ...], Position]) -> None:
        self.source = source
        self.data = data
        self.positions = positions

    def where(self, *path: Any, key: bool = False) -> str:
        """file:line of the value at ``path`` (of its key, with ``key``)."""
        probe = (*path[:-1], "<key>", path[-1]) if key and path else tuple(path)
        while probe and probe not in self.positions:
            probe = probe[:-1]
        line, _ = self.positions.get(probe, (1, 1))
        return f"{self.source}:{line}"
