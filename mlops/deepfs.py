"""Paths longer than the kernel takes, reached through open folders.

A path handed to the kernel may be at most PATH_MAX (4,096) bytes on Linux, but a tree may
nest deeper (10,000 one-letter folders are 20,000 bytes). Every operation here takes the
path itself when it fits, which is the overwhelming case and costs one length comparison,
and otherwise a stand-in of the same meaning: ``/proc/self/fd/N/rest``, N an open descriptor
of a folder on the way (an "anchor") and ``rest`` short enough. The kernel resolves that the
way it resolves the full path (the anchors are opened relative to each other, a piece of
at most ~500 bytes at a time), so the results are those of the full path, and any function that
takes a path (the store's linking and hashing too) works on it unchanged.

Anchors sit where a path crosses each multiple of 256 bytes (the last "/" before it), so every
path below one deep folder shares them; a few are kept open (LRU, ``_KEEP``) and each use
takes its own duplicate, so a descriptor is never closed under a user and a 10,000-level walk
holds a bounded number. An anchor whose folder was removed (no links left) is opened again.

Where ``/proc/self/fd`` is missing (not Linux), a long path fails as it always did
(ENAMETOOLONG): ``available()`` tells callers whether to refuse up front.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

PATH_MAX = 4096  # bytes: Linux's limit for a whole path handed to the kernel
# characters: a path this long or shorter is handed to the kernel as it is (the one comparison
# of the fast route). At most 4 bytes a character, it leaves room below PATH_MAX for what callers
# add beside it (a temp file's longer name); a longer one takes the route through open folders,
# where the kernel resolves a few hundred bytes a use instead of thousands
FAST = 1000
_STEP = 256  # bytes between anchors (a name is at most 255: the last "/" is never far back)
_REST = _STEP + 256  # bytes of a stand-in's ``rest`` at most: what the kernel resolves on each use
_KEEP = 128  # open anchors kept between uses (a 20,000-byte path has 80)
_PROC = "/proc/self/fd"
_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)

T = TypeVar("T")

_lock = threading.Lock()
_anchors: OrderedDict[bytes, int] = OrderedDict()
_available: bool | None = None


def available() -> bool:
    """Whether paths longer than PATH_MAX can be reached here (``/proc/self/fd`` exists)."""
    global _available
    if _available is None:
        _available = os.path.isdir(_PROC)
    return _available


@contextlib.contextmanager
def reach(path: str) -> Iterator[str]:
    """``path``, or while the block runs a short stand-in of the same meaning (a long ``path``)."""
    if len(path) <= FAST:
        yield path
        return
    encoded = os.fsencode(path)
    if not available():
        if len(encoded) <= PATH_MAX - 128:  # as it always was
            yield path
            return
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), path)
    cut, fd = _anchor(encoded)
    try:
        yield f"{_PROC}/{fd}/{os.fsdecode(encoded[cut + 1 :])}"
    finally:
        os.close(fd)


def call(fn: Callable[..., T], path: str, *args: Any, **kwargs: Any) -> T:
    """``fn(path, ...)``, through a stand-in when ``path`` is long."""
    if len(path) <= FAST:
        return fn(path, *args, **kwargs)
    with reach(path) as short:
        return fn(short, *args, **kwargs)


def call2(fn: Callable[..., T], first: str, second: str, *args: Any, **kwargs: Any) -> T:
    """``fn(first, second, ...)`` (rename, link), each through a stand-in where it is too long."""
    if len(first) <= FAST and len(second) <= FAST:
        return fn(first, second, *args, **kwargs)
    with reach(first) as a, reach(second) as b:
        return fn(a, b, *args, **kwargs)


def open_folder(path: str) -> int:
    """A new descriptor of the folder ``path`` (any length); the caller closes it."""
    return call(os.open, path, _FLAGS)


def scandir(path: str) -> Any:
    """``os.scandir(path)`` for any length (a context manager and an iterator, as that one is).
    For a long path the entries come from a descriptor: their ``path`` is only their name, so
    callers join ``path`` and ``entry.name`` themselves (``joins(path)`` tells when)."""
    if len(path) <= FAST:
        return os.scandir(path)
    return _Listing(open_folder(path))


def joins(path: str) -> bool:
    """Whether ``scandir(path)`` gives bare names as its entries' paths."""
    return len(path) > FAST


class _Listing:
    """``os.scandir`` of a descriptor this object owns and closes."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        try:
            self._entries = os.scandir(fd)
        except BaseException:
            os.close(fd)
            raise

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def fd(self) -> int:
        """The folder's descriptor, for ``dir_fd=`` operations on the entries."""
        return self._fd

    def __iter__(self) -> Iterator[os.DirEntry[str]]:
        return iter(self._entries)

    def close(self) -> None:
        if self._fd >= 0:
            self._entries.close()
            os.close(self._fd)
            self._fd = -1


def forget() -> None:
    """Close every kept anchor (a command ends, or folders were removed and made again)."""
    with _lock:
        while _anchors:
            os.close(_anchors.popitem()[1])


def _anchor(encoded: bytes) -> tuple[int, int]:
    """(index of the "/" that ends the anchor, a new descriptor of that anchor) for a long path."""
    # the anchor at step k ends at the last "/" at or before k * _STEP: more than k * _STEP - 256
    # (a name is at most 255 bytes), so this k leaves at most _REST bytes of rest
    k = max(1, -(-(len(encoded) + 256 - _REST) // _STEP))
    cuts: list[int] = []  # cuts[i] ends the anchor at step k - i
    with _lock:
        fd = -1
        while k - len(cuts) >= 1:
            cut = encoded.rfind(b"/", 0, (k - len(cuts)) * _STEP + 1)
            if cut <= 0 or (cuts and cut >= cuts[-1]):
                # a name longer than a step (no disk allows one): nothing to anchor on
                raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), os.fsdecode(encoded))
            key = encoded[:cut]
            kept = _anchors.get(key, -1)
            if kept >= 0:
                if os.fstat(kept).st_nlink > 0:
                    _anchors.move_to_end(key)
                    fd = kept
                    break
                os.close(_anchors.pop(key))  # its folder was removed: open the path again
            cuts.append(cut)
        else:
            cut = 0
        # open the missing anchors from the nearest one kept (or from the top), a step at a time
        begin = cut
        for cut in reversed(cuts):
            piece = encoded[begin + 1 : cut] if fd >= 0 else encoded[:cut]
            fd = os.open(piece, _FLAGS, dir_fd=fd) if fd >= 0 else os.open(piece, _FLAGS)
            _anchors[encoded[:cut]] = fd
            begin = cut
            while len(_anchors) > _KEEP:
                os.close(_anchors.popitem(last=False)[1])
        return begin, os.dup(fd)
