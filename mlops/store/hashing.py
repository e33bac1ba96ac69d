"""Content hashing: xxh3-128 of the bytes, computed while the bytes are copied."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import BinaryIO

import xxhash

HASH_NAME = "xxh3-128"
HASH_LENGTH = 32  # hex digits
CHUNK = 1 << 20  # 1 MiB: large enough to amortise syscalls, small enough to stay in cache
SMALL_FILE = 1 << 18  # read whole files up to 256 KiB in one call


_HASH_TEXT = re.compile(f"[0-9a-f]{{{HASH_LENGTH}}}")


def hash_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def is_hash(text: object) -> bool:
    """Exactly 32 lowercase hex digits: a received "hash" becomes an object path, so int()'s
    leniency (a sign, "0x", underscores, spaces) is not enough."""
    return isinstance(text, str) and _HASH_TEXT.fullmatch(text) is not None


def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Hash a file without copying it; returns (hash, size)."""
    with open(path, "rb", buffering=0) as src:
        return hash_stream(src)


def hash_stream(src: BinaryIO) -> tuple[str, int]:
    hashed = hash_stream_while(src, None)
    assert hashed is not None  # nothing to stop it
    return hashed


def hash_stream_while(src: BinaryIO, keep_going: Callable[[], bool] | None) -> tuple[str, int] | None:
    """Hash a stream; with ``keep_going``, asked after each chunk, None as soon as it says no."""
    first = src.read(SMALL_FILE)
    if len(first) < SMALL_FILE:
        return xxhash.xxh3_128_hexdigest(first), len(first)
    hasher = xxhash.xxh3_128(first)
    size = len(first)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while True:
        count = src.readinto(buffer)  # type: ignore[attr-defined]
        if not count:
            break
        hasher.update(view[:count])
        size += count
        if keep_going is not None and not keep_going():
            return None
    return hasher.hexdigest(), size


def copy_and_hash(src: BinaryIO, dst_fd: int, limit: int | None = None) -> tuple[str, int]:
    """Copy ``src`` into the open descriptor ``dst_fd`` and hash the same bytes: one read.

    With ``limit``, at most ``limit + 1`` bytes are read: a returned size above ``limit``
    means the stream holds more than allowed, and the rest of it was never read (a remote
    that sends an endless stream fills neither the disk nor the time).

    For a large file, writeback to disk is started every WRITEBACK_WINDOW bytes, so that
    disk writes overlap reading and hashing and the caller's final fsync is short.
    """
    cap = SMALL_FILE if limit is None else min(SMALL_FILE, limit + 1)
    try:  # a file's own size: read() of a buffer that large allocates (mmap) and shrinks it for a small file
        cap = min(cap, os.fstat(src.fileno()).st_size + 1)
    except (AttributeError, OSError, ValueError):  # a stream (a remote's body): no size to go by
        pass
    first = src.read(cap)
    write_all(dst_fd, first)
    # the end of the stream (less than asked), or more than ``limit`` read: done either way; a file
    # that grew past its size since the fstat goes on below
    if len(first) < cap or (limit is not None and len(first) > limit):
        return xxhash.xxh3_128_hexdigest(first), len(first)
    hasher = xxhash.xxh3_128(first)
    size = len(first)
    flushed = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while limit is None or size <= limit:
        want = view if limit is None else view[: min(CHUNK, limit + 1 - size)]
        count = src.readinto(want)  # type: ignore[attr-defined]
        if not count:
            break
        chunk = view[:count]
        hasher.update(chunk)
        write_all(dst_fd, chunk)
        size += count
        if size - flushed >= WRITEBACK_WINDOW:
            _start_writeback(dst_fd, flushed, size - flushed)
            flushed = size
    return hasher.hexdigest(), size


WRITEBACK_WINDOW = 32 << 20
_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range = None


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now (Linux sync_file_range); no-op elsewhere."""
    global _sync_file_range
    if _sync_file_range is None:
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            function = libc.sync_file_range
            function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
            _sync_file_range = function
        except (OSError, AttributeError):
            _sync_file_range = False
    if _sync_file_range:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
