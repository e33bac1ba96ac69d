"""Git hooks that keep data in step with commits: install, uninstall, status.

A hook we install is a small POSIX sh script that first runs the hook it found in place
(moved aside to ``<name>.pre-mlops``, so nothing the user had is lost and ``uninstall``
puts it back), then hands over to ``mlops hooks run <name>``. The hooks folder is the one
git uses: ``git rev-parse --git-path hooks`` honours ``core.hooksPath`` and worktrees.
What each hook does at run time lives in the CLI (it composes data and pipeline checks).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import GitError, UsageError
from ..fsio import atomic_writer
from .repo import Repo

HOOK_NAMES = ("pre-commit", "post-checkout", "pre-push")
MODES = ("block", "warn")
MARKER = "# mlops-hook:"
CHAINED_SUFFIX = ".pre-mlops"


@dataclass(frozen=True)
class HookState:
    name: str
    path: str
    state: str  # "installed" | "absent" | "foreign" (another tool's hook, not chained yet)
    mode: str | None = None
    chained: bool = False  # a hook that was there before ours runs first

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def hooks_dir(repo: Repo) -> Path:
    """The folder git runs hooks from (core.hooksPath when set)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--git-path", "hooks"], cwd=repo.root, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise GitError("git is not installed", hint="install git to use hooks") from None
    if done.returncode != 0:
        raise UsageError(f"{repo.root} is not a git repository", hint="hooks need git: run 'git init'")
    path = Path(done.stdout.strip())
    return path if path.is_absolute() else repo.root / path


def _mlops_command() -> str:
    """The mlops the hook should call: this one (a virtual environment need not be active
    when git runs the hook), else whatever `mlops` is on PATH then."""
    found = shutil.which("mlops")
    argv0 = Path(sys.argv[0])
    if argv0.name == "mlops" and argv0.exists():
        return str(argv0.resolve())
    return str(Path(found).resolve()) if found else "mlops"


def hook_script(name: str, mode: str, mlops: str) -> str:
    chained = f'"$hook_dir/{name}{CHAINED_SUFFIX}"'
    # pre-push reads the refs being pushed on stdin: both hooks need their own copy of it
    if name == "pre-push":
        run_chained = (
            'stdin_copy=$(mktemp) || exit 1\ntrap \'rm -f "$stdin_copy"\' EXIT\ncat > "$stdin_copy"\n'
            f'if [ -x {chained} ]; then {chained} "$@" < "$stdin_copy" || exit $?; fi\n'
        )
        run_ours = f'"$mlops_bin" hooks run {name} --mode {mode} -- "$@" < "$stdin_copy"\n'
    else:
        run_chained = f'if [ -x {chained} ]; then {chained} "$@" || exit $?; fi\n'
        run_ours = f'exec "$mlops_bin" hooks run {name} --mode {mode} -- "$@"\n'
    return (
        "#!/bin/sh\n"
        f"{MARKER} {name} mode={mode}\n"
        "# Installed by `mlops hooks install`; `mlops hooks uninstall` removes it and restores\n"
        f"# the hook it found here (kept as {name}{CHAINED_SUFFIX}, run first).\n"
        'hook_dir=$(dirname "$0")\n'
        f"{run_chained}"
        f"mlops_bin='{mlops}'\n"
        'if [ ! -x "$mlops_bin" ]; then\n'
        "  mlops_bin=$(command -v mlops) || {\n"
        f"    echo \"mlops: not found, {name} hook skipped (install mlops, or run 'mlops hooks uninstall')\" >&2\n"
        "    exit 0\n"
        "  }\n"
        "fi\n"
        f"{run_ours}"
    )


def _read_marker(path: Path) -> str | None:
    """The mode of our hook at ``path``, or None when the file is not ours."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(512)
    except (FileNotFoundError, IsADirectoryError):
        return None
    for line in head.splitlines():
        if line.startswith(MARKER):
            return line.rpartition("mode=")[2].strip() or "block"
    return None


def hook_states(repo: Repo) -> list[HookState]:
    folder = hooks_dir(repo)
    out = []
    for name in HOOK_NAMES:
        path = folder / name
        chained = (folder / f"{name}{CHAINED_SUFFIX}").exists()
        mode = _read_marker(path)
        if mode is not None:
            out.append(HookState(name, str(path), "installed", mode, chained))
        elif path.exists():
            out.append(HookState(name, str(path), "foreign"))
        else:
            out.append(HookState(name, str(path), "absent"))
    return out


def _check_names(names: list[str] | None) -> list[str]:
    names = list(names or HOOK_NAMES)
    for name in names:
        if name not in HOOK_NAMES:
            raise UsageError(f"unknown hook '{name}'", hint=f"choose from {', '.join(HOOK_NAMES)}")
    return names


def install(repo: Repo, names: list[str] | None = None, *, mode: str = "block") -> list[HookState]:
    """Install (or re-install with another mode) our hooks, chaining any that were there."""
    if mode not in MODES:
        raise UsageError(f"unknown hook mode '{mode}'", hint="use --mode block or --mode warn")
    names = _check_names(names)
    folder = hooks_dir(repo)
    mlops = _mlops_command()
    with repo.lock("hooks", what="the git hooks"):
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            path = folder / name
            aside = folder / f"{name}{CHAINED_SUFFIX}"
            if path.exists() and _read_marker(path) is None:
                if aside.exists():
                    raise UsageError(
                        f"{path}: a hook is there and {aside.name} too; mlops will not overwrite either",
                        hint="merge them by hand, or remove one, then run 'mlops hooks install' again",
                    )
                os.replace(path, aside)  # the user's hook is kept whole and runs first
            with atomic_writer(path, "w", file_mode=0o755) as f:
                f.write(hook_script(name, mode, mlops))
    return [s for s in hook_states(repo) if s.name in names]


def uninstall(repo: Repo, names: list[str] | None = None) -> list[HookState]:
    """Remove our hooks and put back the hooks they chained."""
    names = _check_names(names)
    folder = hooks_dir(repo)
    with repo.lock("hooks", what="the git hooks"):
        for name in names:
            path = folder / name
            aside = folder / f"{name}{CHAINED_SUFFIX}"
            if _read_marker(path) is None:
                continue  # not ours: leave it alone
            if aside.exists():
                os.replace(aside, path)
            else:
                path.unlink()
    return [s for s in hook_states(repo) if s.name in names]
