"""Helpers for the data-layer tests: real git, real files, the real `mlops` console script.

Plain functions (imported by the test modules beside this file); the fixtures live in
tests/conftest.py and tests/data/conftest.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import xxhash
import yaml

MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))
PYTHON = sys.executable
TMP_PREFIX = ".tmp-mlops-"
ANSI = re.compile(r"\x1b[\[\]()#;?]*[0-9;?]*[A-Za-z@-~]?|\x1b")
HEX2 = re.compile(r"^[0-9a-f]{2}$")
HEX30 = re.compile(r"^[0-9a-f]{30}$")


# --- git ---------------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def commit_all(cwd: Path, message: str) -> str:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "-m", message)
    return git(cwd, "rev-parse", "HEAD").strip()


# --- files -------------------------------------------------------------------------------------


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not os.access(path, os.W_OK):
            os.chmod(path, 0o644)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def read_files(top: Path) -> dict[str, bytes]:
    """Every regular file below ``top`` (symlinks followed), by posix path relative to it."""
    out: dict[str, bytes] = {}
    for folder, _dirs, names in os.walk(top):
        for name in names:
            path = Path(folder) / name
            out[path.relative_to(top).as_posix()] = path.read_bytes()
    return out


def age_files(top: Path, seconds: float = 3600.0) -> None:
    """Set every file's mtime into the past, so the state database may trust it (not 'racy')."""
    when = time.time() - seconds
    paths = [top] if top.is_file() else [Path(f) / n for f, _d, ns in os.walk(top) for n in ns]
    for path in paths:
        os.utime(path, (when, when), follow_symlinks=False)


def workspace_temps(root: Path) -> list[str]:
    """Temp files of mlops writers visible in the workspace (outside .mlops/ and .git/)."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".mlops", ".git")] if Path(folder) == root else dirs
        found += [os.path.join(folder, n) for n in names + dirs if n.startswith(TMP_PREFIX)]
    return sorted(found)


def xxh(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def hash_path(path: Path) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def store_objects(store_root: Path) -> dict[str, Path]:
    """digest -> path of every object in a store laid out as <2 hex>/<30 hex> (cache or local remote)."""
    out: dict[str, Path] = {}
    if not store_root.is_dir():
        return out
    for shard in store_root.iterdir():
        if shard.is_dir() and HEX2.match(shard.name):
            for entry in shard.iterdir():
                out[shard.name + entry.name] = entry
    return out


def cache_objects(root: Path) -> dict[str, Path]:
    return store_objects(root / ".mlops" / "cache")


def bad_objects(store_root: Path) -> list[str]:
    """Every file in the shard folders whose bytes do not hash to its name (or whose name is no hash)."""
    bad = []
    for digest, path in store_objects(store_root).items():
        if not HEX30.match(path.name) or not path.is_file() or hash_path(path) != digest:
            bad.append(digest)
    return bad


def corrupt_object(path: Path, data: bytes | None = None) -> None:
    """Change an object's bytes in place (it is read-only: chmod u+w first, as a user would)."""
    os.chmod(path, 0o644)
    old = path.read_bytes()
    path.write_bytes(data if data is not None else bytes([old[0] ^ 0xFF]) + old[1:] if old else b"x")
    os.chmod(path, 0o444)


def pointer_doc(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def set_cache_type(root: Path, kinds: list[str]) -> None:
    config = root / ".mlops" / "config.yaml"
    doc = yaml.safe_load(config.read_text())
    doc.setdefault("cache", {})["type"] = kinds
    config.write_text(yaml.safe_dump(doc))


# --- the real console script -------------------------------------------------------------------


def mlops(
    *args: str,
    cwd: Path,
    code: int | None = 0,
    env: dict[str, str | None] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `mlops` as a subprocess with pipes; checks the exit code and that no traceback or
    ANSI escape leaks into piped output."""
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}  # None: unset it
    proc = subprocess.run([MLOPS_BIN, *args], cwd=cwd, capture_output=True, text=True, env=full_env, timeout=timeout)
    where = f"mlops {' '.join(args)} -> {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    if code is not None:
        assert proc.returncode == code, f"(wanted {code}) {where}"
    assert "Traceback" not in proc.stdout + proc.stderr, where
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr, f"ANSI escape in piped output: {where}"
    return proc


def mlops_json(*args: str, cwd: Path, code: int = 0, env: dict[str, str] | None = None) -> Any:
    proc = mlops(*args, "--json", cwd=cwd, code=code, env=env)
    return json.loads(proc.stdout)  # exactly one document: the whole of stdout parses


def assert_error(stderr: str, *needles: str) -> str:
    """One 'error: ...' line naming every needle, optionally followed by 'hint: ...' lines; no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, f"want exactly one error line:\n{stderr}"
    others = [line for line in lines if not line.startswith(("error: ", "hint: "))]
    assert not others, f"unexpected stderr lines {others}:\n{stderr}"
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


# --- subprocesses that hold locks or get interrupted -------------------------------------------

HOLD_LOCK = """
import sys, time
from mlops.repo.repo import find_repo
repo = find_repo()
kind, arg = sys.argv[1], sys.argv[2]
lock = repo.path_lock(arg) if kind == "path" else repo.store_lock(exclusive=(arg == "exclusive"))
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def hold_lock(cwd: Path, kind: str, arg: str) -> subprocess.Popen[str]:
    """A real process holding a repo lock until killed; returns once it holds it."""
    proc = subprocess.Popen(
        [PYTHON, "-c", HOLD_LOCK, kind, arg], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line.strip() == "held", (
        f"lock holder failed: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
    )  # type: ignore[union-attr]
    return proc


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=120)


def interrupt_when(
    args: Iterable[str],
    cwd: Path,
    ready: Callable[[], bool],
    *,
    sig: int = signal.SIGINT,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Start `mlops ARGS`, send ``sig`` as soon as ``ready()`` sees it at work (polled, no fixed delay).

    Returns (completed process, whether the signal was sent while it still ran).
    """
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        [MLOPS_BIN, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
    )
    sent = False
    try:
        while proc.poll() is None:
            if ready():
                if proc.poll() is None:
                    proc.send_signal(sig)
                    sent = True
                break
        out, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), sent


def _walk_names(folder: Path):  # noqa: ANN202
    """(name, path) of every file and folder below ``folder``; temp files may sit in sub-folders."""
    for base, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            yield name, os.path.join(base, name)


def any_entry(folder: Path, predicate: Callable[[str], bool]) -> bool:
    return any(predicate(name) for name, _ in _walk_names(folder))


def temp_files(folder: Path) -> list[str]:
    """Every mlops temp file below ``folder`` (the cache keeps them in per-thread sub-folders)."""
    return [path for name, path in _walk_names(folder) if name.startswith(TMP_PREFIX) and os.path.isfile(path)]


def temp_with_bytes(folder: Path, minimum: int = 1) -> bool:
    """True once ``folder`` holds an mlops temp file with at least ``minimum`` bytes (a copy under way)."""
    for path in temp_files(folder):
        try:
            if os.stat(path).st_size >= minimum:
                return True
        except FileNotFoundError:
            continue
    return False
