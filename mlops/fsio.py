"""Safe writes and locks: the one module that writes state files and takes locks.

Rules (docs/architecture.md, "Safe on disk"):
- a state file is replaced whole: temp file in the same folder, fsync, os.replace,
  fsync of the folder; the temp file is removed on any exception, Ctrl-C included;
- append-only records are one JSON line each, fsynced; readers skip a torn last line;
- locks are OS locks (flock) that die with their process, plus a note of who holds
  them so that a waiter can say so; waits are bounded.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import FormatError, InvalidPathError, LockHeldError, StorageError

TMP_PREFIX = ".tmp-mlops-"  # temp files of interrupted writers are recognised (and skipped) by this


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def storage_error(exc: OSError, path: str | os.PathLike[str]) -> StorageError:
    """Translate an OSError from a write into one clear line."""
    if exc.errno == errno.ENOSPC:
        return StorageError(f"disk full while writing {path}", hint="free some space, then run the command again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"cannot write {path}: {exc.strerror}", hint="check the folder's permissions")
    return StorageError(f"cannot write {path}: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike[str], mode: str = "wb", *, fsync: bool = True, file_mode: int = 0o644
) -> Iterator[IO[Any]]:
    """Yield a file whose content replaces ``path`` only if the block completes.

    The temp file lives in the same folder, so the final rename is atomic; it gets
    ``file_mode`` before the rename (a hook script appears already executable).
    """
    import tempfile  # imported here: read-only commands never need it

    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + target.name + ".", dir=target.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp, file_mode)
        os.replace(tmp, target)
        if fsync:
            fsync_dir(target.parent)
    except BaseException as exc:  # Ctrl-C included: never leave the temp file behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise storage_error(exc, target) from exc
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_writer(path, "wb") as handle:
        handle.write(data)


# --- outputs the user named (-o FILE, --html FILE) ---------------------------------------------


def _umask() -> int:
    """This process's umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


# names of an already open descriptor (the shell's redirection): written through, never replaced
_FD_ALIAS = re.compile(r"/dev/(stdout|stderr|fd/\d+)|/proc/(self|thread-self|\d+)/fd/\d+")


def check_output(path: str | os.PathLike[str], *, named: bool = True) -> None:
    """Refuse, before any work, an output path that ``output_writer`` would refuse (exit 2)."""
    _output_plan(Path(path), named=named)


def _output_plan(given: Path, *, named: bool = True) -> tuple[Path, os.stat_result | None, bool]:
    """(where the bytes go, what is there now, whether it is written directly rather than replaced)."""
    if not named and os.path.islink(given):
        # a default output name the user did not type may be a link someone committed
        # (plots.html -> ~/.bashrc): only a name the user chose is followed
        raise InvalidPathError(
            f"{given}: the default output name is a symlink (to {os.readlink(given)}); not followed",
            hint="remove the symlink, or name the output with -o",
        )
    try:
        info: os.stat_result | None = os.stat(given)  # follows symlinks: the node a write would reach
    except FileNotFoundError:
        info = None
    except NotADirectoryError:
        raise InvalidPathError(
            f"{given}: a parent of the output is a file, not a folder", hint="choose another output path"
        ) from None
    except OSError as exc:
        raise storage_error(exc, given) from exc
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise InvalidPathError(f"{given}: is a folder, not a file", hint="name a file inside it")
    alias = _FD_ALIAS.fullmatch(os.path.abspath(given)) is not None
    if info is not None and (alias or not stat.S_ISREG(info.st_mode)):
        return given, info, True
    real = Path(os.path.realpath(given))  # a symlink's target (dangling: where it points)
    if real != Path(os.path.abspath(given)) and any(part.lower() in (".git", ".mlops") for part in real.parts):
        # a link committed under a default output name (plots.html -> .git/hooks/pre-commit) would
        # have the output replace a hook, mode kept: no output goes into what git or mlops manage
        raise InvalidPathError(
            f"{given}: is reached through a symlink into {real.parent}, which git or mlops manage",
            hint="remove the symlink, or name another output path",
        )
    if not real.parent.is_dir():
        folder = real.parent if os.path.islink(given) else given.parent
        raise InvalidPathError(
            f"{given}: the folder {folder} does not exist", hint="create the folder first, or choose another path"
        )
    return real, info, False


@contextlib.contextmanager
def output_writer(path: str | os.PathLike[str], mode: str = "wb", *, named: bool = True) -> Iterator[IO[Any]]:
    """Yield a file for the output the user named with ``-o``; it lands only if the block completes.

    What ``path`` is decides how it is written, as other command-line tools do:

    - a regular file, or nothing yet: replaced atomically (temp file beside it, fsync,
      ``os.replace``), so a reader never sees half an output and a failure leaves the old file;
      an existing file keeps its permission bits, a new one gets the umask's;
    - a symlink: followed, and its target replaced the same way; the link stays a link;
    - a FIFO, a character or block device (``/dev/null``, a terminal), or a name of an open
      descriptor (``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``): opened and written
      directly, never replaced (replacing would swap the node for a file and the reader would
      wait forever; a shell's ``> file`` is appended to, after what the command printed);
    - a folder, or a missing parent folder: ``InvalidPathError`` (exit 2), nothing written;
    - a symlink (or a linked folder on the way) leading into a ``.git`` or ``.mlops`` folder:
      ``InvalidPathError``, nothing written (a committed link must not turn an output into a hook);
    - with ``named=False`` (a default name the user did not type): a symlink is refused, not followed.
    """
    target, info, direct = _output_plan(Path(path), named=named)
    if direct:
        assert info is not None
        # a regular file reached through /dev/stdout is the shell's redirection: append after what is there
        yield from _direct_writer(target, mode, append=stat.S_ISREG(info.st_mode))
        return
    file_mode = stat.S_IMODE(info.st_mode) if info is not None else 0o666 & ~_umask()
    with atomic_writer(target, mode, file_mode=file_mode) as handle:
        yield handle


def _direct_writer(path: Path, mode: str, *, append: bool) -> Iterator[IO[Any]]:
    flags = os.O_WRONLY | os.O_NOCTTY | (os.O_APPEND if append else 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise storage_error(exc, path) from exc
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as handle:
            yield handle
    except OSError as exc:
        raise storage_error(exc, path) from exc


def write_output(path: str | os.PathLike[str], data: bytes | str, *, named: bool = True) -> None:
    """Write ``data`` to the output the user named (``output_writer`` says how each kind of node is written)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with output_writer(path, "wb", named=named) as handle:
        handle.write(data)


def append_record(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one JSON line and fsync it. A crash can tear only this last line."""
    append_bytes(path, (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8"))


def append_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Append ``data`` in one write and fsync it (the file is created if missing)."""
    _change_durably(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, lambda fd: os.write(fd, data))


def truncate_file(path: str | os.PathLike[str], size: int) -> None:
    """Cut an append-only file back to ``size`` bytes, durably (a torn last record is dropped)."""
    _change_durably(path, os.O_WRONLY, lambda fd: os.ftruncate(fd, size))


def _change_durably(path: str | os.PathLike[str], flags: int, change: Callable[[int], object]) -> None:
    """Open ``path``, make one change through the descriptor, fsync, close; a failure is a storage error."""
    try:
        fd = os.open(path, flags, 0o644)
        try:
            change(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise storage_error(exc, path) from exc


def remove_stale_temps(folder: str | os.PathLike[str], *, of: str | None = None) -> int:
    """Remove the temp files interrupted writers left in ``folder`` (not in its subfolders).
    Only for a caller holding the lock that every writer of the folder takes; with ``of``, only
    the temp files of that one file (a caller holding the lock of its writers). Returns how many."""
    prefix = TMP_PREFIX if of is None else f"{TMP_PREFIX}{of}."
    try:
        with os.scandir(folder) as entries:
            stale = [e.path for e in entries if e.name.startswith(prefix) and e.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return len(stale)


def _writable_tree(path: str | os.PathLike[str]) -> None:
    for folder, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o755)


def remove_dir(path: str | os.PathLike[str]) -> None:
    """Remove a folder (read-only files and all): first renamed aside in one step, so no reader
    ever sees it half-removed; then deleted. A crash leaves a temp-named folder, never a half one."""
    import shutil
    import tempfile

    target = Path(path)
    if not target.exists():
        return
    aside = tempfile.mkdtemp(prefix=TMP_PREFIX + target.name + ".gone.", dir=target.parent)
    try:
        os.rename(target, aside)  # onto the empty folder just made: atomic
    except FileNotFoundError:
        os.rmdir(aside)
        return
    _writable_tree(aside)
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temp folder beside ``path``; when the block completes, every file in it is
    fsynced and the folder is renamed to ``path`` in one step. If ``path`` appeared meanwhile
    (another process placed its own copy first) that copy is kept and ours is removed: the caller
    checks what is there. On any exception, Ctrl-C included, the temp folder is removed."""
    import shutil
    import tempfile

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + target.name + ".", dir=target.parent))
    placed = False
    try:
        yield building
        for folder, _dirs, files in os.walk(building):
            for name in files:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            fsync_dir(folder)
        try:
            os.rename(building, target)
            placed = True
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise storage_error(exc, target) from exc
        fsync_dir(target.parent)
    finally:
        if not placed:
            _writable_tree(building)
            shutil.rmtree(building, ignore_errors=True)


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read JSON lines; a torn (unparseable) last line is skipped, as a crash can leave one
    (cut anywhere, even inside a multi-byte character). Any other damage (a bad line in the
    middle, a folder in the file's place, a line that is not an object) is one FormatError
    naming the file."""
    from .formats import display_path, parse_json, read_bytes  # formats imports this module

    source = display_path(path)
    try:
        lines = read_bytes(path, source=source).splitlines()
    except FileNotFoundError:
        return []
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = parse_json(line, f"{source}:{number}")
        except FormatError:
            if number == len(lines):
                break  # torn tail from a crash mid-append
            raise
        if not isinstance(record, dict):
            raise FormatError(f"{source}:{number}: expected a JSON object per line", file=source)
        records.append(record)
    return records


# --- locks ---------------------------------------------------------------------------------


def _hostname() -> str:
    import socket  # only a lock's holder note needs it

    return socket.gethostname()


DEFAULT_LOCK_TIMEOUT = 10.0


def lock_timeout() -> float:
    """Seconds a writer waits for a lock; MLOPS_LOCK_TIMEOUT overrides (tests use it)."""
    try:
        return float(os.environ.get("MLOPS_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT


class FileLock:
    """An exclusive flock on ``path`` with a note of the holder (pid, host, start time).

    The OS releases a flock when its process dies, so a lock left by a crashed process
    is free at once: the next writer takes it over and overwrites the stale note.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, what: str, shared: bool = False, timeout: float | None = None
    ) -> None:
        self.path = Path(path)
        self.what = what
        self.shared = shared
        self.timeout = lock_timeout() if timeout is None else timeout
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError, RecursionError):  # a damaged note only loses the message's detail
            return {}
        return info if isinstance(info, dict) else {}

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a folder or a dangling link in the lock file's place, a read-only disk
            raise StorageError(
                f"cannot take the lock on {self.what}: {self.path}: {exc.strerror or exc}",
                hint="remove what is in the lock file's place (everything under .mlops/tmp/ is rebuildable)",
                lock=str(self.path),
            ) from None
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise self._held_error() from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            except BaseException:
                os.close(fd)
                raise
        if not self.shared:  # shared holders are many; only an exclusive holder signs the note
            note = json.dumps({"pid": os.getpid(), "host": _hostname(), "started": time.time()})
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode(), 0)
        self._fd = fd

    def _held_error(self) -> LockHeldError:
        info = self.holder()
        started = info.get("started")
        pid = info.get("pid") if isinstance(info.get("pid"), int) else None
        try:
            if not isinstance(started, (int, float)) or isinstance(started, bool):
                raise TypeError(started)  # the note is whatever the holder (or a damaged disk) left
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        except (TypeError, ValueError, OverflowError, OSError):
            when = "unknown time"
        host = info.get("host")
        host = host if isinstance(host, str) and host.isprintable() else None
        where = f" on {host}" if host and host != _hostname() else ""
        return LockHeldError(
            f"another mlops process (pid {pid or '?'}{where}, started {when}) holds the lock on {self.what}",
            hint=f"wait for it to finish, or stop it; waited {self.timeout:g}s",
            lock=str(self.path),
            pid=pid,
        )

    def is_current(self) -> bool:
        """Whether the lock file at ``path`` is still the one this holder locked. A cleaner that
        unlinks free lock files may have unlinked it between our open and our flock; the lock
        then guards nothing, since the next taker creates a new file."""
        if self._fd is None:
            return False
        try:
            return os.path.samestat(os.fstat(self._fd), os.stat(self.path))
        except OSError:
            return False

    def release(self) -> None:
        if self._fd is None:
            return
        if not self.shared:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- process facts: is the writer that left a run, a lock note or a stats file still alive? ---


def process_start(pid: int) -> int | None:
    """The start time (clock ticks since boot) of ``pid`` on Linux; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int | None, started: int | None = None) -> bool:
    """Whether ``pid`` runs on this host (and, when known, is the same process as before)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, but someone else's
    except OSError:
        return False
    if started is not None:
        now = process_start(pid)
        if now is not None and now != started:
            return False  # the pid was reused by another process
    if started is not None or os.path.exists(f"/proc/{pid}/stat"):
        try:  # a zombie (killed, not yet reaped by its parent) is dead for our purpose
            with open(f"/proc/{pid}/stat", "rb") as handle:
                data = handle.read()
            if data[data.rindex(b")") + 2 :].split()[0] == b"Z":
                return False
        except (OSError, ValueError, IndexError):
            pass
    return True
