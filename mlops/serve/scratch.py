"""The throw-away state folder of `serve --model-dir` without `--state-dir`.

Serving a bundle needs a place for its machine-local state (statistics, request logs); without
``--state-dir`` it is a fresh ``mlops-serve-*`` folder in the system's temporary folder. The
server removes it when it exits (SIGTERM, Ctrl-C, an error), and each start removes the folders
of servers that died without doing so (SIGKILL, a crash): the owner file inside names the
server's process (its pid and, on Linux, its start time, so a reused pid is not taken for it).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from ..fsio import atomic_write, pid_alive, process_start

PREFIX = "mlops-serve-"
OWNER_FILE = "mlops-serve.owner"


def _owner_alive(text: str) -> bool:
    parts = text.split()
    if not parts or not parts[0].isdigit():
        return True  # not an owner file this module wrote: leave the folder alone
    started = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return pid_alive(int(parts[0]), started)


def remove_stale(parent: Path | None = None) -> list[Path]:
    """Remove the scratch folders (this user's) whose owner process is gone; returns them. A folder
    without an owner file (being made, or not ours) is left alone."""
    parent = Path(parent or tempfile.gettempdir())
    removed: list[Path] = []
    uid = os.getuid() if hasattr(os, "getuid") else None
    for folder in parent.glob(f"{PREFIX}*"):
        try:
            info = folder.lstat()
            if not folder.is_dir() or folder.is_symlink() or (uid is not None and info.st_uid != uid):
                continue
            owner = (folder / OWNER_FILE).read_text(errors="replace")[:100]
        except OSError:
            continue
        if not _owner_alive(owner):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def scratch_state_dir() -> Path:
    """A new scratch folder owned by this process, removed when it exits (stale ones of dead servers first)."""
    remove_stale()
    folder = Path(tempfile.mkdtemp(prefix=PREFIX))
    pid = os.getpid()
    atomic_write(folder / OWNER_FILE, f"{pid} {process_start(pid) or ''}".strip() + "\n")

    def remove() -> None:
        if os.getpid() == pid:  # never from a forked child
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return folder
