"""The progress callback protocol between the core and whoever shows progress.

The core calls ``progress.task(...)`` and ``task.advance(...)``; the default does
nothing. The CLI passes an implementation that draws rich progress bars on a terminal.
Implementations must accept calls from several worker threads.
"""

from __future__ import annotations


class ProgressTask:
    def advance(self, count: int = 1) -> None:
        """``count`` more items done."""

    def close(self) -> None:
        """The task ended (completed or not)."""

    def __enter__(self) -> ProgressTask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Progress:
    def task(self, description: str, total: int | None = None) -> ProgressTask:
        return ProgressTask()


NO_PROGRESS = Progress()
