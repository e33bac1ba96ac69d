"""The one place that decides whether a received name may become a path.

Names arrive from places mlops does not control: tree manifests and run bundles on a shared
remote, pointer files, pipeline.lock and registry files that came through git, requests to
the server. Every such name is checked here before it touches the filesystem
(docs/security.md):

- each component is a plain name: not empty, not ``.`` or ``..``, no ``/``, no NUL, no
  newline or carriage return, at most 255 bytes in UTF-8;
- no component is ``.git`` or ``.mlops`` (in any letter case: git refuses the same on
  case-insensitive disks), so nothing lands in or replaces what git and mlops manage;
- a whole relative path is not absolute and is made of such components;
- a path that received content names as tracked data (a pointer's target, a pipeline
  output) is not a pointer file (``*.mlops``), nor pipeline.yaml or pipeline.lock, nor a file
  the caller protects (params files): ``check_tracked_path``;
- at write time, every folder on the way from the repository root to the destination that
  already exists is a real folder, not a symlink (committed or planted) and not a file: a
  write never goes through a link to somewhere else. The destination itself may be a link:
  it is replaced, never followed;
- where mlops changes a path the user's own files name (a pipeline's outputs, which may sit
  under folders the user links on purpose), the real location, every symlink resolved, is
  inside the repository and not in .git/ or .mlops/ (``real_location_problem``);
- a file whose content mlops copies into what it writes (a params file) is read only when its
  real location is inside the repository (``check_readable``);
- a destination whose full path would pass ``DEEP_MAX`` (128 KiB) is refused before anything
  is written (a crafted tree can be nested deeper than that); paths past PATH_MAX and below it
  are written through open folders (``deepfs``), and refused where the system cannot do that.

Plain names (letters, digits, ``_``, ``-``, ``.`` not first, at most 255) take a one-regex
fast path (``names_ok`` for a whole listing): manifests of 20,000 files are checked on every
checkout.

A refusal is ``UnsafeNameError`` (exit 3): the content could not be used, whatever the user
typed. The message names the entry and where it came from.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from . import deepfs
from .errors import UnsafeNameError

NAME_MAX = 255  # bytes: the limit of every common Linux and macOS filesystem
RESERVED = frozenset({".git", ".mlops"})
_FORBIDDEN_CHARS = ("/", "\x00", "\n", "\r")
PATH_MAX = deepfs.PATH_MAX  # bytes: Linux's limit for a whole path handed to the kernel
# bytes: the longest destination written (through deepfs past PATH_MAX): a path any tool can
# still be handed as one argument (Linux's MAX_ARG_STRLEN), and a bound on the work one path costs
DEEP_MAX = 32 * PATH_MAX
# The fast path: a name of these characters that does not start with a dot cannot be empty,
# "." or "..", reserved, or carry a forbidden character, and is ASCII (so bytes == characters).
# Manifests of 20,000 files are checked on every status and checkout: one regex match each.
_PLAIN = r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,254}"
_PLAIN_NAME = re.compile(_PLAIN)
_PLAIN_PATH = re.compile(rf"(?:{_PLAIN}/)*{_PLAIN}")
# Names another filesystem reads as .git or .mlops, as git itself refuses them (is_hfs_dotgit,
# is_ntfs_dotgit): a clone of the repository on macOS or Windows would write into its .git.
# HFS+ ignores these code points; NTFS drops trailing dots and spaces and knows 8.3 short names.
_HFS_IGNORED = dict.fromkeys([0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF])
_SHORT_NAMES = frozenset({"git~1", "mlops~1"})


def _reserved(name: str) -> bool:
    """Whether ``name`` is, or on some filesystem is read as, .git or .mlops (any case)."""
    folded = unicodedata.normalize("NFC", name.translate(_HFS_IGNORED)).rstrip(". ").casefold()
    return folded in RESERVED or folded in _SHORT_NAMES


def name_problem(name: object) -> str | None:
    """Why ``name`` may not be one path component, or None when it may."""
    if type(name) is str and _PLAIN_NAME.fullmatch(name):
        return None
    if not isinstance(name, str):
        return f"a name must be text, found {type(name).__name__}"
    if not name:
        return "a name may not be empty"
    if name in (".", ".."):
        return f"a name may not be {name!r}"
    for char in _FORBIDDEN_CHARS:
        if char in name:
            return f"a name may not contain {char!r}"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "a name must be valid UTF-8 text"
    if len(encoded) > NAME_MAX:
        return f"a name may not be longer than {NAME_MAX} bytes"
    if _reserved(name):
        return f"{_shown(name)} is managed by git or mlops (here or on another filesystem) and is never written"
    return None


def check_name(name: object, *, where: str) -> str:
    """``name`` as one safe path component, or UnsafeNameError naming it and ``where`` it came from."""
    problem = name_problem(name)
    if problem:
        raise UnsafeNameError(
            f"refused {_shown(name)} in {where}: {problem}", hint=_HINT, entry=_shown(name), source=where
        )
    return name  # type: ignore[return-value]


def names_ok(names: list[str]) -> bool:
    """True when every one of ``names`` is a plain name (the fast path, one regex for a whole
    listing); False means "look closer": each must then go through ``check_name``."""
    if not names:
        return True
    try:
        joined = "/".join(names)
    except TypeError:
        return False
    # a name holding "/" would split into several plain ones: the count of separators tells
    return joined.count("/") == len(names) - 1 and _PLAIN_PATH.fullmatch(joined) is not None


def relpath_problem(rel: object) -> str | None:
    """Why ``rel`` may not be a relative posix path inside the repository, or None."""
    if type(rel) is str and _PLAIN_PATH.fullmatch(rel):
        return None
    if not isinstance(rel, str):
        return f"a path must be text, found {type(rel).__name__}"
    if not rel:
        return "a path may not be empty"
    if rel.startswith("/"):
        return "a path may not be absolute"
    if "\\" in rel and os.sep == "\\":  # pragma: no cover - a separator only on Windows
        return "a path may not contain a backslash"
    for part in rel.split("/"):
        problem = name_problem(part)
        if problem:
            return f"component {_shown(part)}: {problem}"
    return None


def check_relpath(rel: object, *, where: str) -> str:
    """``rel`` as a safe relative posix path, or UnsafeNameError naming it and ``where`` it came from."""
    problem = relpath_problem(rel)
    if problem:
        raise UnsafeNameError(
            f"refused path {_shown(rel)} in {where}: {problem}", hint=_HINT, entry=_shown(rel), source=where
        )
    return rel  # type: ignore[return-value]


# A model name becomes a file name (.mlops/registry/models/<name>.json). The one rule, here so
# that a layer below the registry (the artifacts pipeline.yaml declares) refuses the same names
# as the registry (registry/refs.py uses it).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")


def model_name_problem(name: object) -> str | None:
    """Why ``name`` may not name a model in the registry, or None when it may."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name) or name.endswith(".tmp"):
        return "a model name is letters, digits, '.', '_' and '-', starting with a letter or digit (at most 100)"
    return None


POINTER_SUFFIX = ".mlops"
#: what ``mlops run`` runs, at the repository root: never tracked data, whoever names it (a
#: pointer file ``innocent.mlops`` with ``path: pipeline.yaml`` would place a pipeline that no
#: review saw, its text on the remote, not in the commit)
RUN_FILES = frozenset({"pipeline.yaml", "pipeline.lock"})


def check_tracked_path(rel: object, *, where: str, protected: Iterable[str] = ()) -> str:
    """``rel`` as a path that received content names as tracked data (a pointer file's target,
    a pipeline output): a safe relative path that is not a pointer file (``*.mlops``: it would
    replace the file that names other data), nor ``RUN_FILES`` or one of ``protected`` (files
    that say what runs)."""
    check_relpath(rel, where=where)
    assert isinstance(rel, str)
    problem = None
    if rel.endswith(POINTER_SUFFIX):
        problem = "a pointer file is never replaced by data"
    elif rel in protected or rel in RUN_FILES:
        problem = "this file says what the pipeline runs and is never replaced by data"
    if problem:
        raise UnsafeNameError(
            f"refused path {_shown(rel)} in {where}: {problem}", hint=_HINT, entry=_shown(rel), source=where
        )
    return rel


def check_unique(names: Iterable[str], *, where: str) -> None:
    """Refuse a listing that names one entry twice (one of them would silently win)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise UnsafeNameError(
                f"refused {_shown(name)} in {where}: the name appears twice", hint=_HINT, entry=name, source=where
            )
        seen.add(name)


class Destinations:
    """Where received content may be written under one root, checked on the real filesystem.

    ``check(rel)`` returns the absolute destination after the lexical check and a walk of the
    folders on its way: each one that exists must be a real folder (``lstat``, not following
    links). Folders already walked are remembered, so placing 20,000 files in 100 folders
    costs 100 walks, not 20,000. Folders this object is told it created are trusted too.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._root = str(self.root)
        self._safe: set[str] = {""}
        # room left for ``rel`` in a full path mlops writes (the root, a "/", a temp suffix): past
        # PATH_MAX only where deepfs reaches such paths
        self._limit = DEEP_MAX if deepfs.available() else PATH_MAX
        self._room = self._limit - len(os.fsencode(self.root)) - 1 - _TEMP_ROOM

    def check(self, rel: str, *, where: str) -> Path:
        check_relpath(rel, where=where)
        self._check_length(rel, where)
        parent = rel.rpartition("/")[0]
        if parent not in self._safe:
            self._walk(parent, where)
        return self.root / rel

    def check_all(self, rels: Iterable[str], *, where: str) -> None:
        """``check`` for many destinations at once (a whole snapshot), without building paths."""
        plain = _PLAIN_PATH.fullmatch
        safe = self._safe
        room = self._room // 4
        for rel in rels:
            if type(rel) is not str or not plain(rel):
                check_relpath(rel, where=where)
            if len(rel) > room:
                self._check_length(rel, where)
            parent = rel.rpartition("/")[0]
            if parent not in safe:
                self._walk(parent, where)

    def check_folder(self, rel: str, *, where: str) -> Path:
        """Like ``check`` for a folder that will be written into: the folder itself must not be a link."""
        check_relpath(rel, where=where)
        self._check_length(rel, where)
        if rel not in self._safe:
            self._walk(rel, where)
        return self.root / rel

    def _check_length(self, rel: str, where: str) -> None:
        # 4 bytes a character at most: most paths are judged without encoding them
        if len(rel) * 4 > self._room and len(rel.encode("utf-8")) > self._room:
            raise self._too_long(rel, where)

    def _too_long(self, rel: str, where: str) -> UnsafeNameError:
        return UnsafeNameError(
            f"refused {_shown(rel)} in {where}: it is nested too deep to be written here "
            f"(a path of {len(os.fsencode(self.root / rel))} bytes; mlops writes at most {self._limit} here)",
            hint="check out the data in a folder with a shorter path, or flatten its folders",
            entry=_shown(rel),
            source=where,
        )

    def _walk(self, folder: str, where: str) -> None:
        done = ""
        for part in folder.split("/"):
            done = f"{done}/{part}" if done else part
            if done in self._safe:
                continue
            try:
                mode = deepfs.call(os.lstat, f"{self._root}/{done}").st_mode
            except FileNotFoundError:
                # nothing below a missing folder exists yet: it will be created as a real folder
                # (remembered, so 20,000 files into a deleted folder cost one lstat, not 20,000)
                self._safe.add(folder)
                return
            except NotADirectoryError:
                mode = 0
            except OSError as exc:
                if exc.errno != errno.ENAMETOOLONG:
                    raise
                raise self._too_long(folder, where) from None
            if stat.S_ISLNK(mode):
                raise UnsafeNameError(
                    f"refused {_shown(folder)} in {where}: {done} is a symlink, and received content is never "
                    "written through one",
                    hint=f"remove or rename the symlink {done} if it is not meant to be there, then try again",
                    entry=folder,
                    source=where,
                )
            if not stat.S_ISDIR(mode):
                # a file where a folder is needed: the caller's own rules decide whether it may go
                return
            self._safe.add(done)


def inside(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """Whether ``path``'s real location (symlinks resolved) is ``root``'s real location or below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def real_location_problem(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> str | None:
    """Why ``path``'s real location (every symlink resolved) is not a place inside ``root`` that
    mlops may change, or None: outside ``root``, or in a ``.git`` or ``.mlops`` folder (any case).
    ``root`` itself is inside."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real == real_root:
        return None
    if not real.startswith(real_root.rstrip(os.sep) + os.sep):
        return f"it leads outside the repository, to {_shown(real)}"
    for part in os.path.relpath(real, real_root).split(os.sep):
        if _reserved(part):
            return f"it leads into {part}/, which git or mlops manage"
    return None


def check_readable(root: str | os.PathLike[str], rel: object, *, where: str) -> Path:
    """``rel`` as a file under ``root`` whose content mlops may copy into what it writes (a params
    file's values go into pipeline.lock and pipeline.yaml): a safe relative path whose real
    location, every symlink resolved, is inside ``root`` and not in .git/ or .mlops/. A committed
    ``params.yaml -> ~/.kube/config`` would otherwise copy the secrets into a file the user commits."""
    check_relpath(rel, where=where)
    assert isinstance(rel, str)
    path = Path(root) / rel
    problem = real_location_problem(root, path)
    if problem:
        raise UnsafeNameError(
            f"refused {_shown(rel)} in {where}: {problem}, and mlops reads no file there",
            hint=f"replace the symlink {rel} (or the folder link on its way) with the file itself",
            entry=_shown(rel),
            source=where,
        )
    return path


_TEMP_ROOM = 48  # a temp file's name beside a destination is longer than the destination's own

_HINT = "the content came from a remote, a commit or a file mlops did not write; check where it came from"


def _shown(value: object) -> str:
    """A name for a one-line message: control characters escaped, length bounded."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 120:
        text = text[:120] + "..."
    return "'" + "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text) + "'"
