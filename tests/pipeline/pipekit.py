"""Helpers for the pipeline tests: a tiny stage program, pipeline files, JSON of `mlops run`.

Every stage command in these tests is ``<python> <step.py> OP OP ...`` where each OP is
one small action done in order (write a file, append to a counter, record times, sleep,
fail...). The program lives outside the repositories, so it is never a dependency.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))
PY = sys.executable

STEP_SOURCE = r"""
import json, os, subprocess, sys, time

def split(arg):
    op, _, rest = arg.partition(":")
    return op, rest

for arg in sys.argv[1:]:
    op, rest = split(arg)
    if op == "write":                       # write:PATH=TEXT
        path, _, text = rest.partition("=")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            f.write(text + "\n")
    elif op == "append":                    # append:PATH=TEXT
        path, _, text = rest.partition("=")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a") as f:
            f.write(text + "\n")
    elif op == "count":                     # count:PATH  (one line per execution: the stage's name)
        with open(rest, "a") as f:
            f.write(os.environ.get("MLOPS_STAGE", "?") + "\n")
    elif op == "copy":                      # copy:SRC=DST
        src, _, dst = rest.partition("=")
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        with open(src) as f:
            data = f.read()
        with open(dst, "w") as f:
            f.write(data)
    elif op == "cat":                       # cat:A+B+DIR=DST (a folder: its files, sorted)
        srcs, _, dst = rest.partition("=")
        parts = []
        for src in srcs.split("+"):
            if os.path.isdir(src):
                for name in sorted(os.listdir(src)):
                    with open(os.path.join(src, name)) as f:
                        parts.append(f.read())
            else:
                with open(src) as f:
                    parts.append(f.read())
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        with open(dst, "w") as f:
            f.write("".join(parts))
    elif op == "param":                     # param:KEY=DST  (value of params.yaml KEY, dotted)
        key, _, dst = rest.partition("=")
        import yaml
        node = yaml.safe_load(open("params.yaml"))
        for part in key.split("."):
            node = node[part]
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        with open(dst, "w") as f:
            f.write(f"{key}={node}\n")
    elif op == "times":                     # times:PATH=SECONDS  (start, sleep, end, as JSON)
        path, _, secs = rest.partition("=")
        start = time.time()
        time.sleep(float(secs))
        end = time.time()
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            json.dump({"start": start, "end": end}, f)
    elif op == "env":                       # env:PATH  (what the stage saw)
        os.makedirs(os.path.dirname(rest) or ".", exist_ok=True)
        with open(rest, "w") as f:
            json.dump({
                "stage": os.environ.get("MLOPS_STAGE"),
                "run_id": os.environ.get("MLOPS_RUN_ID"),
                "root": os.environ.get("MLOPS_ROOT"),
                "cwd": os.getcwd(),
            }, f)
    elif op == "pid":                       # pid:PATH  (this process's pid)
        with open(rest, "w") as f:
            f.write(str(os.getpid()))
    elif op == "print":                     # print:TEXT
        print(rest, flush=True)
    elif op == "sleep":
        time.sleep(float(rest))
    elif op == "spawn":                     # spawn:PIDFILE  (a grandchild `sleep 120` in our group)
        child = subprocess.Popen(["sleep", "120"])
        with open(rest, "w") as f:
            f.write(str(child.pid))
    elif op == "waitfor":                   # waitfor:PATH  (until PATH exists, at most 60 s)
        deadline = time.time() + 60
        while not os.path.exists(rest) and time.time() < deadline:
            time.sleep(0.02)
    elif op == "fail":                      # fail:CODE
        print("failing on purpose", flush=True)
        sys.exit(int(rest or 1))
    else:
        sys.exit(f"step.py: unknown op {arg!r}")
"""


def step_cmd(step: Path, *ops: str) -> str:
    return " ".join([shlex.quote(PY), shlex.quote(str(step)), *(shlex.quote(op) for op in ops)])


def write_yaml(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000))


def write_pipeline(root: Path, stages: dict[str, Any], **top: Any) -> None:
    write_yaml(root / "pipeline.yaml", {**top, "stages": stages})


def lock_doc(root: Path) -> dict[str, Any]:
    path = root / "pipeline.lock"
    if not path.exists():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("stages") or {}


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in doc["stages"]}


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in doc["stages"]}


def reasons(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {s["name"]: s["reasons"] for s in doc["stages"]}


def counts(path: Path) -> list[str]:
    """Lines a counter file holds: one stage name per execution."""
    return path.read_text().splitlines() if path.exists() else []


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def commit_all(cwd: Path, message: str) -> None:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "-m", message)


def mlops(
    *args: str, cwd: Path, code: int | None = 0, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [MLOPS_BIN, *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout
    )
    where = f"mlops {' '.join(args)} -> {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    if code is not None:
        assert proc.returncode == code, f"(wanted {code}) {where}"
    assert "Traceback" not in proc.stdout + proc.stderr, where
    assert "\x1b" not in proc.stdout + proc.stderr, f"ANSI escape in piped output: {where}"
    return proc


def json_docs(text: str) -> list[Any]:
    """Every JSON document printed one after another on ``text``."""
    decoder = json.JSONDecoder()
    docs, index = [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return docs
        doc, index = decoder.raw_decode(text, index)
        docs.append(doc)


def first_json(text: str) -> dict[str, Any]:
    """The run report: the one JSON document a run prints on stdout."""
    return json_docs(text)[0]


def run_json(*args: str, cwd: Path, code: int = 0, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = mlops("run", "--json", *args, cwd=cwd, code=code, env=env)
    doc = first_json(proc.stdout)
    doc["_stderr"] = proc.stderr
    return doc


def xxh(data: bytes | str) -> str:
    import xxhash

    return xxhash.xxh3_128_hexdigest(data.encode() if isinstance(data, str) else data)


def cache_has(root: Path, digest: str) -> bool:
    return (root / ".mlops" / "cache" / digest[:2] / digest[2:]).is_file()


def cache_objects(root: Path) -> set[str]:
    top = root / ".mlops" / "cache"
    return (
        {d.name + f.name for d in top.iterdir() if d.is_dir() and len(d.name) == 2 for f in d.iterdir()}
        if top.is_dir()
        else set()
    )


def runcache_entries(root: Path) -> list[Path]:
    return sorted((root / ".mlops" / "runcache").glob("*/*.json"))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie counts as gone: it no longer runs)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def assert_one_error(stderr: str, *needles: str, only: bool = True) -> str:
    """stderr holds one 'error: ...' line (and at most a 'hint: ...' line), no traceback.

    ``only=False`` allows other lines beside them (a run's progress and summary lines).
    """
    lines = error_lines(stderr)
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert len([line for line in lines if line.startswith("hint: ")]) <= 1, stderr
    if only:
        assert all(line.startswith(("error: ", "hint: ")) for line in lines), stderr
        assert len(lines) <= 2, stderr
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


class LiveRun:
    """A real `mlops` subprocess whose stdout lines are collected as they come."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        import threading

        self.proc = subprocess.Popen(
            [MLOPS_BIN, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in iter(stream.readline, ""):
            into.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_line(self, text: str, timeout: float = 30.0) -> None:
        wait_for(lambda: text in self.lines or self.proc.poll() is not None, timeout, f"line {text!r}")
        assert text in self.lines, f"process ended before printing {text!r}:\n" + "\n".join(self.lines + self.err)

    def finish(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=10)
        return code

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    @property
    def stderr(self) -> str:
        return "\n".join(self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
