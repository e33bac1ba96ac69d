"""The repository: finding its root, the `.mlops/` layout, locks, and checking user paths.

```
.mlops/
  config.yaml         committed: cache link types, remotes, default remote
  config.local.yaml   not committed: secrets and machine-local settings
  .gitignore          keeps cache/, tmp/, runcache/, config.local.yaml, serve/ and monitor/ out of git
  cache/              the object store (objects/<2>/<30>, .tmp/)
  tmp/                state database, locks: all rebuildable
```
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, InvalidPathError, NotARepoError, UsageError
from ..fsio import FileLock, atomic_write
from ..paths import inside
from ..store.hashing import hash_bytes

if TYPE_CHECKING:  # loaded when first used: `mlops exp show` reads neither the config (yaml) nor the store (sqlite3)
    from ..store.objects import ObjectStore
    from ..store.state import StateDB
    from .config import Config

DOT = ".mlops"
INNER_GITIGNORE = (
    "/cache/\n/tmp/\n/runcache/\n/config.local.yaml\n"
    "# serving's request logs and statistics: local to the machine that served, never shared\n/serve/\n"
    "# monitoring profiles travel with `mlops push --runs` / `pull --runs`; labels and the check history stay local\n"
    "/monitor/\n"
)


@dataclass
class Repo:
    root: Path
    _locks: dict[str, FileLock] = field(default_factory=dict, repr=False)

    @property
    def dot(self) -> Path:
        return self.root / DOT

    @cached_property
    def config(self) -> Config:
        from .config import load_config

        return load_config(self.dot)

    def save_config(self) -> None:
        from .config import save_config

        save_config(self.dot, self.config)

    @contextlib.contextmanager
    def editing_config(self) -> Iterator[Config]:
        """Read-modify-write of the config under its lock: two edits at once both land."""
        with self.lock("config", what=".mlops/config.yaml"):
            self.__dict__.pop("config", None)  # re-read inside the lock
            config = self.config
            yield config
            self.save_config()

    @cached_property
    def objects(self) -> ObjectStore:
        from ..store.objects import ObjectStore

        custom = (self.config.merged.get("cache") or {}).get("dir")
        if not custom:
            return ObjectStore(self.dot / "cache")
        path = Path(os.path.expanduser(str(custom)))
        path = path if path.is_absolute() else self.root / path  # relative to the repo root
        local = (self.config.local.get("cache") or {}).get("dir")
        if local is None or _tracked_by_git(self.root, f"{DOT}/config.local.yaml"):
            # the committed config (and a config.local.yaml someone committed after all) arrives
            # through git from other people: it may not choose where this machine writes objects,
            # nor a folder git or the workspace's own files live in (gc sweeps the store's temp files)
            problem = _cache_dir_problem(self.root, path)
            hint = (
                "set it for this machine in .mlops/config.local.yaml (cache: {dir: PATH}), not committed; "
                "or remove it from the committed file"
            )
            if problem is None:
                problem = _foreign_cache_problem(path)
                if problem and "marker" in problem:
                    marker = path / CACHE_MARKER
                    hint = f"if it is an mlops cache made before the marker existed, create {marker}; {hint}"
            if problem:
                raise ConfigError(
                    f".mlops/config.yaml: cache.dir {str(custom)!r} {problem}, and a committed config may not "
                    "choose that",
                    hint=hint,
                )
        return ObjectStore(path)

    @cached_property
    def state(self) -> StateDB:
        from ..store.state import StateDB

        return StateDB(self.dot / "tmp" / "state.db")

    @property
    def tmp(self) -> Path:
        return self.dot / "tmp"

    def lock(self, name: str, *, what: str, shared: bool = False, timeout: float | None = None) -> FileLock:
        """A lock under .mlops/tmp/locks/; ``shared`` for the many-writers side of a store lock."""
        return FileLock(self.tmp / "locks" / f"{name}.lock", what=what, shared=shared, timeout=timeout)

    def store_lock(self, *, exclusive: bool = False) -> FileLock:
        """Writers of objects hold it shared; gc holds it exclusive, so it never deletes an object in flight."""
        return self.lock("store", what="the object store", shared=not exclusive)

    def path_lock(self, rel: str) -> FileLock:
        """One lock per tracked path: adds and checkouts of different paths run at the same time."""
        return self.lock("path-" + hash_bytes(rel.encode())[:16], what=rel)

    # --- paths --------------------------------------------------------------------------
    def rel(self, path: str | os.PathLike[str]) -> str:
        """The posix path of ``path`` relative to the root (must be inside)."""
        return Path(os.path.relpath(os.path.abspath(path), self.root)).as_posix()

    def abs(self, rel: str) -> Path:
        return self.root / rel

    def check_user_path(self, path: str | os.PathLike[str], *, must_exist: bool = True) -> str:
        """Validate a path a user named; returns it relative to the root.

        Refused: outside the repo, inside .mlops/ or .git/, missing, or a symlink that
        leads outside the repo.
        """
        shown = os.fspath(path)
        absolute = Path(os.path.abspath(path))
        try:
            rel = absolute.relative_to(self.root)
        except ValueError:
            raise InvalidPathError(
                f"{shown}: outside the repository ({self.root})", hint="name a path inside the repository"
            ) from None
        parts = rel.parts
        if not parts:
            raise InvalidPathError(f"{shown}: is the repository root itself", hint="name a file or folder inside it")
        if parts[0] in (DOT, ".git"):
            raise InvalidPathError(f"{shown}: inside {parts[0]}/, which mlops and git manage themselves")
        if parts[-1].endswith(".mlops"):
            raise InvalidPathError(f"{shown}: is a pointer file; name the data it tracks instead")
        if must_exist and not os.path.lexists(absolute):
            raise InvalidPathError(f"{shown}: no such file or folder", hint="check the path, or 'mlops status'")
        if os.path.lexists(absolute):
            real = Path(os.path.realpath(absolute))
            try:
                real.relative_to(self.root)
            except ValueError:
                raise InvalidPathError(
                    f"{shown}: is a symlink that points outside the repository (to {real})",
                    hint="copy the data into the repository, or track it where it is",
                ) from None
            if must_exist and not real.exists():
                raise InvalidPathError(f"{shown}: is a broken symlink")
        return rel.as_posix()


def _cache_dir_problem(root: Path, path: Path) -> str | None:
    if not inside(root, path):
        return "is outside the repository"
    real = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
    if real == ".":
        return "is the repository's root"
    if any(part.lower() == ".git" for part in real.split(os.sep)):
        return "is inside .git/"
    if any(part.lower() == ".dvc" for part in real.split(os.sep)):
        # DVC's cache has the store's very layout (ab/cdef...): gc would delete every file in it
        return "is inside .dvc/, DVC's own folder"
    return None


CACHE_MARKER = ".mlops-cache"  # in a cache folder a committed config names: mlops made it


def _foreign_cache_problem(path: Path) -> str | None:
    """Why a folder a committed cache.dir names is not mlops' to write and sweep, or None.

    Another tool's content-addressed folder has the store's layout (``ab/cdef...``), so ``gc``
    would delete every file in it. A folder mlops creates (missing or empty when first used)
    gets a marker; one that holds files without the marker is refused.
    """
    try:
        with os.scandir(path) as entries:
            names = {entry.name for entry in entries}
    except FileNotFoundError:
        names = set()
    except NotADirectoryError:
        return "is a file, not a folder"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if CACHE_MARKER in names:
        return None
    if names:
        return f"holds files mlops did not put there (no {CACHE_MARKER} marker in it)"
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / CACHE_MARKER, "mlops object cache: gc removes what nothing references here\n")
    return None


def _tracked_by_git(root: Path, rel: str) -> bool:
    """Whether git tracks ``rel`` (a machine-local file that someone committed with ``git add -f``)."""
    if not (root / ".git").exists():
        return False
    import subprocess

    try:
        done = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "--", rel], cwd=root, capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def find_repo(start: str | os.PathLike[str] | None = None) -> Repo:
    """The repo whose root holds `.mlops/`, searching upward from ``start`` (cwd)."""
    here = Path(os.path.abspath(start or os.getcwd()))
    env_root = os.environ.get("MLOPS_ROOT")
    if env_root:
        here = Path(os.path.abspath(env_root))
    for candidate in (here, *here.parents):
        if (candidate / DOT).is_dir():
            return Repo(candidate)
    raise NotARepoError(
        f"not an mlops repository (no {DOT}/ in {here} or any parent)", hint="run 'mlops init' at the project root"
    )


def init_repo(root: str | os.PathLike[str], *, no_git: bool = False, force: bool = False) -> Repo:
    """Create `.mlops/` at ``root``; in a git repo unless ``no_git``."""
    root = Path(os.path.abspath(root))
    if not no_git and not (root / ".git").exists():
        raise UsageError(
            f"{root} is not the root of a git repository",
            hint="run 'git init' first, or 'mlops init --no-git'",
        )
    dot = root / DOT
    if dot.exists() and not force:
        raise UsageError(
            f"{dot} already exists", hint="this is already an mlops repository (use --force to reset config)"
        )
    for sub in ("cache", "tmp"):
        (dot / sub).mkdir(parents=True, exist_ok=True)
    atomic_write(dot / ".gitignore", INNER_GITIGNORE)
    from .config import Config, default_config

    repo = Repo(root)
    repo.__dict__["config"] = Config(shared=default_config())
    repo.save_config()
    return repo
