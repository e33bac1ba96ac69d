#!/usr/bin/env python3
"""Data benchmark: mlops against DVC, side by side, on the same generated data in the same run.

Run from the repository root (see tests/benchmarks/README.md):

    .venv/bin/python tests/benchmarks/bench_data.py --quick          # smoke run, a few minutes
    .venv/bin/python tests/benchmarks/bench_data.py --work ../bench-work   # the full run

It generates its data in the work folder (kept for reuse across runs), installs DVC into a
separate virtual environment there (reused when present), and times each operation as
wall-clock seconds (time.perf_counter around one subprocess call) in fresh git repositories,
one for mlops (`mlops init`) and one for DVC (`dvc init`). Page caches are never dropped:
both tools always start from the same (warm) state, and dirty pages are flushed with
sync() before every timed call so that neither pays for the other's writeback.

The result table is printed and written into docs/benchmarks.md (section '## Data (issue 2)').
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import fcntl
import os
import platform
import random
import resource
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchdocs import replace_section, repo_relative  # the script's folder is on sys.path

MiB = 1 << 20
GiB = 1 << 30
CHUNK = 1 << 20
FICLONE = 0x40049409
SECTION = "## Data (issue 2)"
REPO_ROOT = Path(__file__).resolve().parents[2]


# --- small helpers ---------------------------------------------------------------------------


class StepError(Exception):
    """A command failed; the message is what the table shows after 'error: '."""


def log(message: str = "") -> None:
    print(message, flush=True)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def count_label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def tail(text: str | bytes | None, lines: int = 3, width: int = 300) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-width:]


def sync() -> None:
    os.sync()


# --- other processes' load --------------------------------------------------------------------
# The machine may be shared (CI, other sessions). Before each timed call we wait (up to
# --idle-wait seconds) until others use at most BUSY of the CPU, and during it we measure how
# much CPU time was spent outside the timed command (all CPU busy time minus the command's
# own, from getrusage of children); a cell measured under such load is marked with '*'.

BUSY = 0.20  # fraction of the machine (all cores)
CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
NCPU = os.cpu_count() or 1


@dataclass
class Load:
    idle_wait: float = 60.0
    last: float | None = None  # others' share of the machine during the last timed call
    waited: float = 0.0


LOAD = Load()


def cpu_busy_seconds() -> float | None:
    try:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def others_share(seconds: float = 0.5) -> float | None:
    """Share of the machine's CPU used by other processes over a short sample (we run nothing)."""
    before = cpu_busy_seconds()
    time.sleep(seconds)
    after = cpu_busy_seconds()
    if before is None or after is None:
        return None
    return max(0.0, (after - before) / (seconds * NCPU))


def wait_idle() -> None:
    if LOAD.idle_wait <= 0:
        return
    start = time.perf_counter()
    share = others_share()
    said = False
    while share is not None and share > BUSY and time.perf_counter() - start < LOAD.idle_wait:
        if not said:
            log(f"        (other processes use {share:.0%} of the CPU: waiting up to {LOAD.idle_wait:.0f} s for calm)")
            said = True
        time.sleep(2)
        share = others_share()
    LOAD.waited += time.perf_counter() - start


def run(
    cmd: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 3600.0,
    timed: bool = False,
) -> float:
    """Run a command; returns its wall-clock seconds. Raises StepError on failure.

    ``timed``: a measured call: wait for a calm machine first, and record in LOAD.last how
    much of the CPU other processes used meanwhile.
    """
    shown = " ".join(shlex.quote(str(c)) for c in cmd)
    if timed:
        wait_idle()
    try:
        busy0, own0 = cpu_busy_seconds(), children_cpu()
        start = time.perf_counter()
        proc = subprocess.run(
            [str(c) for c in cmd], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout
        )
        elapsed = time.perf_counter() - start
        busy1, own1 = cpu_busy_seconds(), children_cpu()
        if timed and busy0 is not None and busy1 is not None and elapsed > 0:
            LOAD.last = max(0.0, ((busy1 - busy0) - (own1 - own0)) / (elapsed * NCPU))
    except subprocess.TimeoutExpired:
        raise StepError(f"timed out after {timeout:.0f}s: {shown}") from None
    except OSError as exc:
        raise StepError(f"{shown}: {exc}") from None
    if proc.returncode != 0:
        raise StepError(f"exit {proc.returncode}: {shown}: {tail(proc.stderr) or tail(proc.stdout)}")
    return elapsed


def output_of(
    cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> str:
    try:
        proc = subprocess.run(
            [str(c) for c in cmd],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StepError(str(exc)) from None
    if proc.returncode != 0:
        raise StepError(f"exit {proc.returncode}: {tail(proc.stderr) or tail(proc.stdout)}")
    return proc.stdout.strip()


def rmtree(path: Path) -> None:
    """Remove a tree, read-only files and folders included (caches make objects read-only)."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_file() or path.is_symlink():
        path.unlink()
        return
    subprocess.run(["rm", "-rf", str(path)], capture_output=True)
    if path.exists():  # a read-only folder somewhere (unlinking read-only files needs no write bit)
        subprocess.run(["chmod", "-R", "u+w", str(path)], capture_output=True)
        subprocess.run(["rm", "-rf", str(path)], capture_output=True)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


def copy_in(src: Path, dst: Path) -> None:
    """Copy generated data into a repository (cp -a keeps the old mtimes, as real data has)."""
    rmtree(dst)
    run(["cp", "-a", "--reflink=auto", str(src), str(dst)], timeout=7200)


def count_files(top: Path) -> int:
    n = 0
    for _folder, _dirs, files in os.walk(top):
        n += len(files)
    return n


# --- results ---------------------------------------------------------------------------------


@dataclass
class Cell:
    seconds: float | None = None
    error: str | None = None
    busy: float | None = None  # other processes' share of the CPU while it was measured

    def text(self) -> str:
        if self.error is not None:
            return self.error if self.error.startswith(("n/a", "skipped")) else f"error: {self.error}"
        if self.seconds is None:
            return "-"
        mark = " *" if self.busy is not None and self.busy > BUSY else ""
        return (f"{self.seconds:.3f}" if self.seconds < 10 else f"{self.seconds:.1f}") + mark

    @property
    def ok(self) -> bool:
        return self.seconds is not None and self.error is None


NA = Cell()


@dataclass
class Row:
    op: str
    mlops: Cell
    dvc: Cell
    target: str = "info"
    # returns (ratio text, verdict) from the two cells; None: ratio dvc/mlops, no verdict
    judge: Callable[[Row], tuple[str, str]] | None = None
    note: str = ""

    def ratio(self) -> float | None:
        if self.mlops.ok and self.dvc.ok and self.mlops.seconds:
            return self.dvc.seconds / self.mlops.seconds  # type: ignore[operator]
        return None

    def cells(self) -> list[str]:
        if self.judge is not None:
            ratio_text, verdict = self.judge(self)
        else:
            r = self.ratio()
            ratio_text, verdict = (f"{r:.1f}x" if r is not None else "-"), "-"
        return [self.op, self.mlops.text(), self.dvc.text(), ratio_text, self.target, verdict]


def ratio_at_least(minimum: float) -> Callable[[Row], tuple[str, str]]:
    def judge(row: Row) -> tuple[str, str]:
        r = row.ratio()
        if r is None:
            return "-", "error" if (row.mlops.error or row.dvc.error) else "-"
        return f"{r:.1f}x", "PASS" if r >= minimum else "FAIL"

    return judge


def status_judge(row: Row) -> tuple[str, str]:
    if not row.mlops.ok:
        return "-", "error"
    fast = row.mlops.seconds < 0.3  # type: ignore[operator]
    r = row.ratio()
    if r is None:
        return "-", ("PASS (time only; no dvc figure)" if fast else "FAIL (time)")
    ok_ratio = r >= 5
    verdict = (
        "PASS"
        if fast and ok_ratio
        else "FAIL (" + ", ".join(w for w, bad in (("time", not fast), ("ratio", not ok_ratio)) if bad) + ")"
    )
    return f"{r:.1f}x", verdict


def under(limit: float) -> Callable[[Row], tuple[str, str]]:
    """A time target only (the ratio is shown for information)."""

    def judge(row: Row) -> tuple[str, str]:
        if not row.mlops.ok:
            return "-", "error"
        r = row.ratio()
        return ("-" if r is None else f"{r:.1f}x"), ("PASS" if row.mlops.seconds < limit else "FAIL (time)")  # type: ignore[operator]

    return judge


def help_judge(row: Row) -> tuple[str, str]:
    r = row.ratio()
    if not row.mlops.ok:
        return "-", "error"
    return (f"{r:.1f}x" if r is not None else "-"), ("PASS" if row.mlops.seconds < 0.3 else "FAIL")  # type: ignore[operator]


COLUMNS = ["operation", "mlops s", "dvc s", "ratio (dvc/mlops)", "target", "pass/fail"]


def plain_table(rows: list[Row]) -> str:
    body = [COLUMNS] + [r.cells() for r in rows]
    widths = [max(len(line[i]) for line in body) for i in range(len(COLUMNS))]
    widths = [min(w, 70) for w in widths]
    out = []
    for index, line in enumerate(body):
        out.append(" | ".join(c.ljust(w) if len(c) <= w else c for c, w in zip(line, widths, strict=True)))
        if index == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: list[Row]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * len(COLUMNS)) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(esc(c) for c in row.cells()) + " |")
    return "\n".join(lines)


# --- the tools -------------------------------------------------------------------------------


class Tool:
    name = ""

    def __init__(self, exe: Path, jobs: int, timeout: float) -> None:
        self.exe = exe
        self.jobs = jobs
        self.timeout = timeout
        self.env = dict(os.environ)
        # both tools run from compiled bytecode, as a pip-installed package does (DVC's venv has
        # its .pyc files; with PYTHONDONTWRITEBYTECODE set, mlops would recompile every module on
        # every call, ~35 ms of each start-up)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def t(self, args: list[str], repo: Path, *, timed: bool = True) -> float:
        """Time one call of the tool in ``repo`` (``timed=False``: a set-up call)."""
        return run([str(self.exe), *args], cwd=repo, env=self.env, timeout=self.timeout, timed=timed)

    def new_repo(self, repo: Path) -> None:
        rmtree(repo)
        repo.mkdir(parents=True)
        run(["git", "init", "-q"], cwd=repo)
        run(["git", "config", "user.email", "bench@example.invalid"], cwd=repo)
        run(["git", "config", "user.name", "bench"], cwd=repo)
        run(["git", "config", "commit.gpgsign", "false"], cwd=repo)
        self.init(repo)
        run(["git", "add", "-A"], cwd=repo)
        run(["git", "commit", "-q", "-m", "init", "--allow-empty"], cwd=repo)

    def commit(self, repo: Path, message: str) -> None:
        run(["git", "add", "-A"], cwd=repo, timeout=1800)
        run(["git", "commit", "-q", "-m", message, "--allow-empty"], cwd=repo, timeout=1800)

    # per tool
    def init(self, repo: Path) -> None: ...
    def version(self) -> str: ...
    def add(self, repo: Path, target: str) -> float: ...
    def status(self, repo: Path) -> float: ...
    def checkout(self, repo: Path) -> float: ...
    def push(self, repo: Path) -> float: ...
    def pull(self, repo: Path) -> float: ...
    def add_remote(self, repo: Path, path: Path) -> None: ...
    def cache_dir(self, repo: Path) -> Path: ...
    def help(self) -> float:
        return run([str(self.exe), "--help"], env=self.env, timeout=120, timed=True)


class Mlops(Tool):
    name = "mlops"
    hook_install = ["hooks", "install", "--pre-commit"]

    def init(self, repo: Path) -> None:
        self.t(["init"], repo, timed=False)

    def version(self) -> str:
        return output_of([str(self.exe), "--version"], env=self.env)

    def add(self, repo: Path, target: str) -> float:
        return self.t(["add", target, "-j", str(self.jobs)], repo)

    def status(self, repo: Path) -> float:
        return self.t(["status", "-j", str(self.jobs)], repo)

    def checkout(self, repo: Path) -> float:
        return self.t(["checkout", "-j", str(self.jobs)], repo)

    def push(self, repo: Path) -> float:
        return self.t(["push", "-j", str(self.jobs)], repo)

    def pull(self, repo: Path) -> float:
        return self.t(["pull", "-j", str(self.jobs)], repo)

    def add_remote(self, repo: Path, path: Path) -> None:
        self.t(["remote", "add", "bench", str(path), "--default"], repo, timed=False)

    def cache_dir(self, repo: Path) -> Path:
        return repo / ".mlops" / "cache"


class Dvc(Tool):
    """DVC from its own virtual environment. `-j` goes to push and pull (dvc add takes -j only
    with --to-remote, dvc status only with -c, dvc checkout not at all)."""

    name = "dvc"
    hook_install = ["install"]

    def __init__(self, exe: Path, jobs: int, timeout: float) -> None:
        super().__init__(exe, jobs, timeout)
        self.env["DVC_NO_ANALYTICS"] = "1"
        self.env.pop("VIRTUAL_ENV", None)

    def init(self, repo: Path) -> None:
        self.t(["init", "-q"], repo, timed=False)
        self.t(["config", "core.analytics", "false"], repo, timed=False)
        self.t(["config", "core.autostage", "false"], repo, timed=False)
        # optional: no update check, and DVC's site cache (index, state) inside this repo so
        # that each fresh repo really starts from nothing
        with contextlib.suppress(StepError):
            self.t(["config", "core.check_update", "false"], repo, timed=False)
        with contextlib.suppress(StepError):
            self.t(["config", "--local", "core.site_cache_dir", str(repo / ".dvc" / "site-cache")], repo, timed=False)

    def version(self) -> str:
        return output_of([str(self.exe), "--version"], env=self.env)

    def add(self, repo: Path, target: str) -> float:
        return self.t(["add", target], repo)

    def status(self, repo: Path) -> float:
        return self.t(["status"], repo)

    def data_status(self, repo: Path) -> float:
        return self.t(["data", "status"], repo)

    def checkout(self, repo: Path) -> float:
        return self.t(["checkout"], repo)

    def push(self, repo: Path) -> float:
        return self.t(["push", "-j", str(self.jobs)], repo)

    def pull(self, repo: Path) -> float:
        return self.t(["pull", "-j", str(self.jobs)], repo)

    def add_remote(self, repo: Path, path: Path) -> None:
        self.t(["remote", "add", "-d", "bench", str(path)], repo, timed=False)

    def cache_dir(self, repo: Path) -> Path:
        return repo / ".dvc" / "cache"


class BaseMlops(Mlops):
    """mlops at another revision in the peer's column (--against-rev): a change's cost, side by side."""

    name = "base"


def within(factor: float) -> Callable[[Row], tuple[str, str]]:
    """--against-rev: the measured revision may be at most ``factor`` times the base's time."""

    def judge(row: Row) -> tuple[str, str]:
        r = row.ratio()
        if r is None:
            return "-", "error" if (row.mlops.error or row.dvc.error) else "-"
        return f"{r:.2f}x", "PASS" if r >= 1 / factor else "FAIL"

    return judge


def install_dvc(work: Path, python: str, spec: str) -> tuple[Path | None, str]:
    """The dvc executable of work/dvc-venv (created and installed when missing), or (None, why)."""
    venv = work / "dvc-venv"
    exe = venv / "bin" / "dvc"
    if exe.exists():
        try:
            output_of([str(exe), "--version"], timeout=300)
            return exe, "reused " + str(venv)
        except StepError as exc:
            log(f"existing {venv} is broken ({exc}); reinstalling")
            rmtree(venv)
    log(f"installing {spec} into {venv} (separate virtual environment) ...")
    try:
        run([python, "-m", "venv", str(venv)], timeout=600)
        run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec],
            timeout=3600,
        )
        output_of([str(exe), "--version"], timeout=300)
    except StepError as exc:
        return None, f"DVC install failed: {exc}"
    return exe, "installed into " + str(venv)


# --- data ------------------------------------------------------------------------------------


@dataclass
class Sizes:
    big_bytes: int
    small_files: int  # ~10 KB files in 100 folders
    big_files: int  # the many-files directory (one file changed)


def _marker_ok(marker: Path, spec: str) -> bool:
    return marker.exists() and marker.read_text() == spec


def gen_big(path: Path, size: int) -> None:
    marker = path.with_name(path.name + ".done")
    spec = f"random {size}\n"
    if path.exists() and _marker_ok(marker, spec) and path.stat().st_size == size:
        log(f"  reuse {path} ({human(size)})")
        return
    log(f"  generate {path} ({human(size)} of random bytes) ...")
    marker.unlink(missing_ok=True)
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 8 * MiB)
            out.write(os.urandom(n))
            left -= n
    marker.write_text(spec)


def gen_tree(top: Path, files: int, folders: int, low: int, high: int, seed: int) -> None:
    marker = top.with_name(top.name + ".done")
    spec = f"{files} files in {folders} folders, {low}-{high} bytes, seed {seed}\n"
    if top.is_dir() and _marker_ok(marker, spec):
        log(f"  reuse {top} ({files} files)")
        return
    log(f"  generate {top} ({spec.strip()}) ...")
    marker.unlink(missing_ok=True)
    rmtree(top)
    rng = random.Random(seed)
    per = -(-files // folders)
    made = 0
    for f in range(folders):
        folder = top / f"d{f:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per):
            if made == files:
                break
            (folder / f"f{i:05d}.bin").write_bytes(rng.randbytes(rng.randint(low, high)))
            made += 1
    marker.write_text(spec)


# --- the benchmark ---------------------------------------------------------------------------


@dataclass
class Bench:
    work: Path
    sizes: Sizes
    jobs: int
    mlops: Mlops
    dvc: Dvc | None
    dvc_why: str
    repeats: int = 5
    add_repeats: int = 1
    write_repeats: int = 1
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: dict[str, float] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.work / "data"

    @property
    def repos(self) -> Path:
        return self.work / "repos"

    def tools(self) -> list[Tool]:
        return [self.mlops] + ([self.dvc] if self.dvc is not None else [])

    def missing_dvc(self) -> Cell:
        return Cell(error="n/a (dvc not installed)")

    # one measured operation for one tool: a Cell, never an exception
    def measure(self, label: str, tool: Tool | None, fn: Callable[[], float], broken: dict[str, str]) -> Cell:
        if tool is None:
            return self.missing_dvc()
        if tool.name in broken:
            return Cell(error=f"skipped ({broken[tool.name]})")
        log(f"  {tool.name:5s} {label} ...")
        LOAD.last = None
        try:
            seconds = fn()
        except StepError as exc:
            log(f"        error: {exc}")
            return Cell(error=str(exc))
        except Exception as exc:  # noqa: BLE001 - one step never stops the run
            log(f"        error: {type(exc).__name__}: {exc}")
            return Cell(error=f"{type(exc).__name__}: {exc}")
        busy = LOAD.last
        shown = f" (others used {busy:.0%} of the CPU meanwhile)" if busy is not None and busy > BUSY else ""
        log(f"        {seconds:.3f} s{shown}")
        return Cell(seconds, busy=busy)

    def best_of(self, n: int, fn: Callable[[], float]) -> Callable[[], float]:
        def go() -> float:
            runs = []
            for _ in range(n):
                seconds = fn()
                runs.append((seconds, LOAD.last))
            best = min(runs, key=lambda r: r[0])
            LOAD.last = best[1]
            return best[0]

        return go

    def paired(self, label: str, fn: Callable[[Tool], float], broken: dict[str, str]) -> tuple[Cell, Cell]:
        """Both tools measured ``write_repeats`` times, taking turns (mlops first, then the peer first, ...).

        The rows that write 20,000 files move by 10-40% between single runs on a shared disk; alternating
        the two tools round by round exposes them to the same drift, and the best and the median of the
        rounds are compared instead of one run each.
        """
        if self.write_repeats <= 1:
            m = self.measure(label, self.mlops, lambda: fn(self.mlops), broken)
            d = self.measure(label, self.dvc, lambda: fn(self.dvc), broken) if self.dvc else self.missing_dvc()
            return m, d
        tools = [t for t in (self.mlops, self.dvc) if t is not None]
        runs: dict[str, list[Cell]] = {t.name: [] for t in tools}
        for round_no in range(self.write_repeats):
            order = tools if round_no % 2 == 0 else list(reversed(tools))
            for tool in order:
                runs[tool.name].append(
                    self.measure(f"{label} (round {round_no + 1})", tool, lambda t=tool: fn(t), broken)
                )

        def summary(tool: Tool | None) -> Cell:
            if tool is None:
                return self.missing_dvc()
            cells = runs[tool.name]
            failed = [c for c in cells if not c.ok]
            if failed:
                return failed[0]
            times = sorted(c.seconds for c in cells if c.seconds is not None)
            median = (
                times[len(times) // 2] if len(times) % 2 else (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2
            )
            self.notes.append(
                f"{label}, {tool.name}: best {times[0]:.3f} s, median {median:.3f} s "
                f"over {len(times)} alternating rounds "
                f"({', '.join(f'{t:.2f}' for t in (c.seconds for c in cells))})"
            )
            best = min(cells, key=lambda c: c.seconds or 0.0)
            return Cell(best.seconds, busy=best.busy)

        return summary(self.mlops), summary(self.dvc)

    def setup(self, label: str, broken: dict[str, str], tool: Tool, fn: Callable[[], None]) -> None:
        if tool.name in broken:
            return
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            log(f"  {tool.name}: setup ({label}) failed: {exc}")
            broken[tool.name] = f"setup failed: {label}: {exc}"[:300]

    def step(self, title: str, fn: Callable[[], None]) -> None:
        log(f"\n== {title}")
        start = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a step's failure is reported, the run goes on
            traceback.print_exc()
            self.rows.append(Row(title, Cell(error=f"{type(exc).__name__}: {exc}"), Cell(error="step aborted")))
        log(f"   ({title}: {time.perf_counter() - start:.0f} s including set-up)")

    # 1. add of a large file -----------------------------------------------------------------
    def step_add_big(self, repos_root: Path | None = None, where: str = "") -> None:
        """The add of one large file, in repositories under ``repos_root`` (default: the work
        folder's); ``where`` names that filesystem in the row labels when it is another one."""
        size = self.sizes.big_bytes
        src = self.data / f"big-{size}.bin"
        label = f"add {human(size)} file" + where
        broken: dict[str, str] = {}
        repos = {t.name: (repos_root or self.repos) / f"add-big-{t.name}" for t in self.tools()}

        def fresh(tool: Tool) -> None:
            tool.new_repo(repos[tool.name])
            copy_in(src, repos[tool.name] / "big.bin")

        for tool in self.tools():
            self.setup("new repo + copy the file in", broken, tool, lambda tool=tool: fresh(tool))
        sync()

        def warm_then_add(tool: Tool) -> float:
            best = None
            for repeat in range(self.add_repeats):
                if repeat:  # each add needs an untracked file: a fresh repository and copy
                    fresh(tool)
                    sync()
                path = repos[tool.name] / "big.bin"
                with open(os.devnull, "wb") as devnull:
                    subprocess.run(["cat", str(path)], stdout=devnull, check=True)  # both tools start warm
                sync()
                seconds = tool.add(repos[tool.name], "big.bin")
                best = seconds if best is None else min(best, seconds)
            assert best is not None
            return best

        m = self.measure(label, self.mlops, lambda: warm_then_add(self.mlops), broken)
        d = self.measure(label, self.dvc, lambda: warm_then_add(self.dvc), broken) if self.dvc else self.missing_dvc()
        shown = f" (warm, best of {self.add_repeats})" if self.add_repeats > 1 else " (warm)"
        self.rows.append(Row(label + shown, m, d, "dvc/mlops >= 2", ratio_at_least(2)))

        # the limit: read + xxh3-128 once, in-process, 1 MiB chunks, same warm file
        limit = Cell()
        try:
            import xxhash

            path = repos["mlops"] / "big.bin" if (repos["mlops"] / "big.bin").exists() else src
            with open(os.devnull, "wb") as devnull:
                subprocess.run(["cat", str(path)], stdout=devnull, check=True)
            best = None
            for _ in range(2):
                wait_idle()
                start = time.perf_counter()
                hasher = xxhash.xxh3_128()
                buffer = bytearray(CHUNK)
                view = memoryview(buffer)
                with open(path, "rb", buffering=0) as handle:
                    while True:
                        n = handle.readinto(buffer)
                        if not n:
                            break
                        hasher.update(view[:n])
                hasher.hexdigest()
                elapsed = time.perf_counter() - start
                best = elapsed if best is None else min(best, elapsed)
            limit = Cell(best)
            self.facts["limit_s" + where] = best  # type: ignore[assignment]
            log(f"  limit: read + xxh3-128 of {human(size)} in-process: {best:.3f} s ({size / best / MiB:.0f} MiB/s)")
        except Exception as exc:  # noqa: BLE001
            limit = Cell(error=f"{type(exc).__name__}: {exc}")

        def limit_judge(row: Row) -> tuple[str, str]:
            if not (limit.ok and m.ok):
                return "-", "error"
            share = limit.seconds / m.seconds  # type: ignore[operator]  # mlops speed / limit speed
            return f"mlops/limit {share:.2f}", "PASS" if share >= 0.70 else "FAIL"

        self.rows.append(
            Row(
                f"add vs limit{where} (dvc s = read+xxh3-128 in-process)",
                m,
                limit,
                "mlops speed >= 0.70 limit",
                limit_judge,
            )
        )

        # what the disk allows: copy + fsync of the same file (info: bounds any copy into a cache)
        try:
            dst = repos["mlops"].parent / "copy-probe.bin"
            path = repos["mlops"] / "big.bin" if (repos["mlops"] / "big.bin").exists() else src
            sync()
            wait_idle()
            start = time.perf_counter()
            with open(path, "rb") as s, open(dst, "wb") as d:
                shutil.copyfileobj(s, d, CHUNK)
                d.flush()
                os.fsync(d.fileno())
            elapsed = time.perf_counter() - start
            dst.unlink()
            self.facts["copy_fsync_s" + where] = elapsed
            log(f"  copy + fsync of {human(size)}: {elapsed:.3f} s ({size / elapsed / MiB:.0f} MiB/s)")
            self.rows.append(
                Row(
                    f"info: add vs disk{where} (dvc s = copy + fsync)",
                    m,
                    Cell(elapsed),
                    "info",
                    lambda row: (f"mlops/copy {row.dvc.seconds / row.mlops.seconds:.2f}" if row.mlops.ok else "-", "-"),
                )
            )
        except Exception as exc:  # noqa: BLE001
            log(f"  copy + fsync probe failed: {exc}")
        self.facts["big_bytes"] = size
        for repo in repos.values():
            rmtree(repo)

    # 2 + 4. the 20,000-file directory: add, status, push, checkout, pull ---------------------
    def step_small_dir(self) -> None:
        n = self.sizes.small_files
        src = self.data / f"small-{n}"
        name = f"{count_label(n)}-file dir"
        broken: dict[str, str] = {}
        repos = {t.name: self.repos / f"small-{t.name}" for t in self.tools()}
        remotes = {t.name: self.repos / f"small-remote-{t.name}" for t in self.tools()}
        for tool in self.tools():
            self.setup(
                "new repo + copy the folder in",
                broken,
                tool,
                lambda tool=tool: (tool.new_repo(repos[tool.name]), copy_in(src, repos[tool.name] / "files")),
            )
        sync()

        def add(tool: Tool) -> float:
            sync()
            return tool.add(repos[tool.name], "files")

        m = self.measure(f"add {name}", self.mlops, lambda: add(self.mlops), broken)
        d = self.measure(f"add {name}", self.dvc, lambda: add(self.dvc), broken)
        for tool, cell in ((self.mlops, m), (self.dvc, d)):
            if tool is not None and not cell.ok:
                broken.setdefault(tool.name, "add failed")
        self.rows.append(Row(f"info: add {name} (first)", m, d))
        for tool in self.tools():
            self.setup("git commit", broken, tool, lambda tool=tool: tool.commit(repos[tool.name], "track files"))
        sync()

        m = self.measure(
            f"status ({name}, nothing changed), best of {self.repeats}",
            self.mlops,
            self.best_of(self.repeats, lambda: self.mlops.status(repos["mlops"])),
            broken,
        )
        d = (
            self.measure(
                f"status ({name}, nothing changed), best of {self.repeats}",
                self.dvc,
                self.best_of(self.repeats, lambda: self.dvc.status(repos[self.dvc.name])),
                broken,
            )
            if self.dvc
            else self.missing_dvc()
        )
        self.rows.append(
            Row(
                f"status, {name} unchanged (best of {self.repeats})",
                m,
                d,
                "mlops < 0.3 s, dvc/mlops >= 5",
                status_judge,
            )
        )
        if isinstance(self.dvc, Dvc):
            dd = self.measure(
                f"data status, best of {self.repeats}",
                self.dvc,
                self.best_of(self.repeats, lambda: self.dvc.data_status(repos[self.dvc.name])),
                broken,
            )
            self.rows.append(Row("info: `dvc data status` vs mlops status", m, dd))

        # the pre-commit hook on the same unchanged directory: what every `git commit` pays
        def hook_time(tool: Tool) -> float:
            hook = repos[tool.name] / ".git" / "hooks" / "pre-commit"
            env = {
                **tool.env,
                "PATH": f"{Path(tool.exe).parent}{os.pathsep}{tool.env.get('PATH', '')}",
            }  # dvc's hook calls `dvc`
            return run([str(hook)], cwd=repos[tool.name], env=env, timeout=tool.timeout)

        for tool in (self.mlops, self.dvc):
            if tool is not None:
                install = tool.hook_install
                self.setup(
                    "hook install",
                    broken,
                    tool,
                    lambda tool=tool, install=install: tool.t(install, repos[tool.name], timed=False),
                )
        m = self.measure(
            f"pre-commit hook ({name}, nothing changed), best of {self.repeats}",
            self.mlops,
            self.best_of(self.repeats, lambda: hook_time(self.mlops)),
            broken,
        )
        d = (
            self.measure(
                f"pre-commit hook ({name}, nothing changed), best of {self.repeats}",
                self.dvc,
                self.best_of(self.repeats, lambda: hook_time(self.dvc)),
                broken,
            )
            if self.dvc
            else self.missing_dvc()
        )
        self.rows.append(
            Row(f"pre-commit hook, {name} unchanged (best of {self.repeats})", m, d, "mlops < 0.3 s", under(0.3))
        )

        # push to an empty local remote
        for tool in self.tools():
            self.setup(
                "remote add",
                broken,
                tool,
                lambda tool=tool: (rmtree(remotes[tool.name]), tool.add_remote(repos[tool.name], remotes[tool.name])),
            )

        def push(tool: Tool) -> float:
            rmtree(remotes[tool.name])  # each round pushes to an empty remote
            remotes[tool.name].mkdir(parents=True)
            sync()
            return tool.push(repos[tool.name])

        m, d = self.paired(f"push {name} to an empty remote", push, broken)
        shown = f" (best of {self.write_repeats}, alternating)" if self.write_repeats > 1 else ""
        self.rows.append(Row(f"push {name} to an empty remote{shown}", m, d, "dvc/mlops >= 2", ratio_at_least(2)))
        self._check_remote(remotes, n, (m, d))

        # checkout of the deleted folder
        def checkout(tool: Tool) -> float:
            rmtree(repos[tool.name] / "files")
            sync()
            seconds = tool.checkout(repos[tool.name])
            got = count_files(repos[tool.name] / "files")
            if got != n:
                raise StepError(f"checkout left {got} of {n} files")
            return seconds

        m, d = self.paired(f"checkout of the deleted {name}", checkout, broken)
        self.rows.append(Row(f"checkout of the deleted {name}{shown}", m, d, "dvc/mlops >= 2", ratio_at_least(2)))

        # pull into an empty cache, folder deleted
        def pull(tool: Tool) -> float:
            rmtree(repos[tool.name] / "files")
            rmtree(tool.cache_dir(repos[tool.name]))
            sync()
            seconds = tool.pull(repos[tool.name])
            got = count_files(repos[tool.name] / "files")
            if got != n:
                raise StepError(f"pull left {got} of {n} files")
            return seconds

        m, d = self.paired(f"pull {name} into an empty cache", pull, broken)
        self.rows.append(Row(f"pull {name}, empty cache{shown}", m, d, "dvc/mlops >= 2", ratio_at_least(2)))
        for path in (*repos.values(), *remotes.values()):
            rmtree(path)

    def _check_remote(self, remotes: dict[str, Path], n: int, cells: tuple[Cell, Cell]) -> None:
        for (name, remote), cell in zip(remotes.items(), cells, strict=False):
            if cell.ok:
                got = count_files(remote)
                if got < n:
                    self.notes.append(f"{name} push left only {got} objects for {n} files in its remote")

    # 3. the many-files directory with one file changed --------------------------------------
    def step_one_changed(self) -> None:
        n = self.sizes.big_files
        src = self.data / f"many-{n}"
        name = f"{count_label(n)}-file dir"
        broken: dict[str, str] = {}
        repos = {t.name: self.repos / f"many-{t.name}" for t in self.tools()}
        remotes = {t.name: self.repos / f"many-remote-{t.name}" for t in self.tools()}
        for tool in self.tools():
            self.setup(
                "new repo + copy the folder in + remote",
                broken,
                tool,
                lambda tool=tool: (
                    tool.new_repo(repos[tool.name]),
                    copy_in(src, repos[tool.name] / "many"),
                    rmtree(remotes[tool.name]),
                    tool.add_remote(repos[tool.name], remotes[tool.name]),
                ),
            )
        sync()

        def add(tool: Tool) -> float:
            sync()
            return tool.add(repos[tool.name], "many")

        m = self.measure(f"add {name} (first)", self.mlops, lambda: add(self.mlops), broken)
        d = (
            self.measure(f"add {name} (first)", self.dvc, lambda: add(self.dvc), broken)
            if self.dvc
            else self.missing_dvc()
        )
        for tool, cell in ((self.mlops, m), (self.dvc, d)):
            if tool is not None and not cell.ok:
                broken.setdefault(tool.name, "first add failed")
        self.rows.append(Row(f"info: add {name} (first)", m, d))
        for tool in self.tools():
            self.setup("git commit", broken, tool, lambda tool=tool: tool.commit(repos[tool.name], "track many"))

        def push(tool: Tool) -> float:
            sync()
            return tool.push(repos[tool.name])

        m = self.measure(f"push {name} (initial, everything)", self.mlops, lambda: push(self.mlops), broken)
        d = (
            self.measure(f"push {name} (initial, everything)", self.dvc, lambda: push(self.dvc), broken)
            if self.dvc
            else self.missing_dvc()
        )
        for tool, cell in ((self.mlops, m), (self.dvc, d)):
            if tool is not None and not cell.ok:
                broken.setdefault(tool.name, "initial push failed")
        self.rows.append(Row(f"info: push {name} (initial, all)", m, d))
        self._check_remote(remotes, n, (m, d))

        # change one file, the same way in both repositories
        new_bytes = random.Random(7).randbytes(1500)
        for tool in self.tools():

            def change(tool: Tool = tool) -> None:
                victim = repos[tool.name] / "many" / "d000" / "f00000.bin"
                if victim.exists():
                    victim.chmod(0o644)  # a link to a read-only cache object is replaced, never written through
                    victim.unlink()
                victim.write_bytes(new_bytes)

            self.setup("change one file", broken, tool, change)

        m = self.measure(f"re-add {name}, one file changed", self.mlops, lambda: add(self.mlops), broken)
        d = (
            self.measure(f"re-add {name}, one file changed", self.dvc, lambda: add(self.dvc), broken)
            if self.dvc
            else self.missing_dvc()
        )
        self.rows.append(Row(f"re-add {name}, one file changed", m, d, "dvc/mlops >= 10", ratio_at_least(10)))

        m = self.measure(f"push the change ({name})", self.mlops, lambda: push(self.mlops), broken)
        d = (
            self.measure(f"push the change ({name})", self.dvc, lambda: push(self.dvc), broken)
            if self.dvc
            else self.missing_dvc()
        )
        self.rows.append(Row(f"push of the change ({name})", m, d, "dvc/mlops >= 10", ratio_at_least(10)))
        for path in (*repos.values(), *remotes.values()):
            rmtree(path)

    # 5. --help ------------------------------------------------------------------------------
    def step_help(self) -> None:
        broken: dict[str, str] = {}
        m = self.measure(
            f"--help, best of {self.repeats}", self.mlops, self.best_of(self.repeats, self.mlops.help), broken
        )
        d = (
            self.measure(f"--help, best of {self.repeats}", self.dvc, self.best_of(self.repeats, self.dvc.help), broken)
            if self.dvc
            else self.missing_dvc()
        )
        self.rows.append(Row(f"--help (best of {self.repeats})", m, d, "mlops < 0.3 s", help_judge))


# --- machine facts and the report ------------------------------------------------------------


def fs_type(path: Path) -> str:
    with contextlib.suppress(StepError):
        return output_of(["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)])
    with contextlib.suppress(StepError, IndexError):
        return output_of(["df", "-T", str(path)]).splitlines()[1].split()[1]
    return "unknown"


def reflink_supported(folder: Path) -> bool:
    a, b = folder / ".reflink-probe-a", folder / ".reflink-probe-b"
    try:
        a.write_bytes(b"x" * 4096)
        with open(a, "rb") as s, open(b, "wb") as d:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
        return True
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EXDEV, errno.ENOSYS, errno.EPERM):
            raise
        return False
    finally:
        a.unlink(missing_ok=True)
        b.unlink(missing_ok=True)


SOURCE: dict[str, str] = {}  # set by --rev: the measured source is a fixed snapshot


def snapshot_mlops(rev: str, work: Path, live_exe: Path) -> Path:
    """An `mlops` executable that runs the package as committed at ``rev`` (git archive into the
    work folder), with the interpreter and dependencies of the installed one. Edits made to the
    work tree while the benchmark runs then cannot change what is measured."""
    sha = output_of(["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"])
    dest = work / "mlops-rev" / sha[:12]
    if not (dest / "src" / "mlops" / "__init__.py").exists():
        rmtree(dest)
        (dest / "src").mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", sha, "mlops"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest / "src")], input=archive, check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(dest / "src")], env=env, capture_output=True)
    python = sys.executable
    with contextlib.suppress(OSError, IndexError):
        first = live_exe.read_text(errors="replace").splitlines()[0]
        if first.startswith("#!") and Path(first[2:].strip()).exists():
            python = first[2:].strip()
    # run as an installed package runs: the venv's site-packages on the path, but not its .pth
    # files, of which the editable install's import hook costs every call ~10 ms at start-up
    # that a user's `pip install` does not have (DVC is measured as pip installed it)
    purelib = output_of([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    wrapper = dest / "bin" / "mlops"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(
        f"#!{python} -S\nimport sys\nsys.path.insert(0, {str(dest / 'src')!r})\nsys.path.append({purelib!r})\n"
        "from mlops.cli.main import main\nsys.exit(main())\n"
    )
    wrapper.chmod(0o755)
    where = output_of(
        [
            python,
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {str(dest / 'src')!r}); sys.path.append({purelib!r}); "
            "import mlops, typer; print(mlops.__file__)",
        ]
    )
    if not where.startswith(str(dest)):
        raise SystemExit(f"--rev: the snapshot is shadowed by {where}")
    SOURCE["label"] = f"git {sha[:12]} (--rev {rev}), run from a snapshot in {dest / 'src'}"
    return wrapper


def source_fingerprint() -> tuple[str, float]:
    """Which mlops source is measured (git HEAD, dirty or not) and the newest mtime of its .py files."""
    if "label" in SOURCE:
        return SOURCE["label"], 0.0
    package = REPO_ROOT / "mlops"
    newest = max((p.stat().st_mtime for p in package.rglob("*.py")), default=0.0)
    try:
        head = output_of(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
        dirty = output_of(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "mlops", "pyproject.toml"])
        label = f"{head}" + (" + uncommitted changes in mlops/" if dirty else " (clean)")
    except StepError as exc:
        label = f"unknown ({exc})"
    stamp = datetime.datetime.fromtimestamp(newest).astimezone().strftime("%Y-%m-%d %H:%M:%S") if newest else "?"
    return f"{label}; newest mlops/*.py modified {stamp}", newest


def dependency_versions(exe: Path) -> str:
    """Versions of the libraries that weigh on mlops' start-up, from mlops' own interpreter."""
    python = sys.executable
    with contextlib.suppress(OSError, IndexError):
        first = exe.read_text(errors="replace").splitlines()[0]
        if first.startswith("#!") and Path(first[2:].strip()).exists():
            python = first[2:].strip()
    code = (
        "import importlib.metadata as m\n"
        "out = []\n"
        "for name in ('typer', 'click', 'rich', 'pydantic', 'xxhash', 'PyYAML'):\n"
        "    try: out.append(f'{name} {m.version(name)}')\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(', '.join(out))"
    )
    try:
        return output_of([python, "-c", code])
    except StepError as exc:
        return f"unknown ({exc})"


def machine_facts(work: Path, mlops: Mlops, dvc: Dvc | None, dvc_why: str) -> list[tuple[str, str]]:
    mem = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    free = shutil.disk_usage(work)
    try:
        mlops_version = mlops.version()
    except StepError as exc:
        mlops_version = f"error: {exc}"
    if dvc is not None:
        try:
            dvc_version = dvc.version()
        except StepError as exc:
            dvc_version = f"error: {exc}"
    else:
        dvc_version = f"not available ({dvc_why})"
    try:
        reflink = "yes" if reflink_supported(work) else "no (a copy must write every byte)"
    except OSError as exc:
        reflink = f"unknown ({exc})"
    return [
        ("cpus (nproc)", str(os.cpu_count())),
        ("cpu", cpu),
        ("memory", mem),
        ("work dir", f"{work} ({fs_type(work)}, reflink: {reflink}; {human(free.free)} free)"),
        ("kernel", platform.release()),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("git", output_of(["git", "--version"]) if shutil.which("git") else "missing"),
        ("mlops", f"{mlops_version} ({mlops.exe})"),
        ("mlops source", source_fingerprint()[0]),
        ("mlops dependencies", dependency_versions(mlops.exe)),
        ("dvc", f"{dvc_version}" + (f" ({dvc.exe})" if dvc is not None else "")),
    ]


def reading(bench: Bench, facts: list[tuple[str, str]], fs: str, reflink: bool) -> str:
    """One paragraph: what passed, what missed, and the known reasons."""
    judged = []
    for row in bench.rows:
        cells = row.cells()
        if cells[5] not in ("-",):
            judged.append((row.op, cells[3], cells[5]))
    passed = [op for op, _r, v in judged if v.startswith("PASS")]
    failed = [(op, r, v) for op, r, v in judged if v.startswith("FAIL")]
    errors = [op for op, _r, v in judged if v == "error"]
    parts = [f"{len(passed)} of {len(judged)} targets pass."]
    if failed:
        parts.append("Missed: " + "; ".join(f"{op} ({r}, {v})" for op, r, v in failed) + ".")
    if errors:
        parts.append("Errored (see the table): " + "; ".join(errors) + ".")
    size = bench.facts.get("big_bytes")
    limit = bench.facts.get("limit_s")
    copy = bench.facts.get("copy_fsync_s")
    if size and limit and copy:
        parts.append(
            f"Hashing alone runs at {size / limit / MiB:.0f} MiB/s here, while a plain copy plus fsync of the same "
            f"{human(size)} manages {size / copy / MiB:.0f} MiB/s"
            + (
                ""
                if reflink
                else f": on {fs} without reflink an add must write every byte into the cache and fsync it, "
                "so the add of a large file is bounded by the disk's write speed, not by hashing, and the "
                "'>= 0.70 of the read+hash limit' target cannot be met by any tool that copies"
            )
            + "."
        )
    if bench.dvc is None:
        parts.append(f"DVC figures are missing: {bench.dvc_why}.")
    busy = [row.op for row in bench.rows for cell in (row.mlops, row.dvc) if cell.busy is not None and cell.busy > BUSY]
    if busy:
        parts.append(
            f"Cells marked * were measured while other processes used more than {BUSY:.0%} of the CPU "
            f"(the machine was shared; the run waited up to {LOAD.idle_wait:.0f} s for calm before each call): "
            f"treat {', '.join(dict.fromkeys(busy))} as noisy."
        )
    parts.extend(bench.notes)
    return " ".join(parts)


def write_docs(
    path: Path,
    bench: Bench,
    facts: list[tuple[str, str]],
    command_line: str,
    when: str,
    paragraph: str,
    extra: list[str],
) -> None:
    lines = [SECTION, "", f"Measured {when} with:", "", "```", command_line, "```", "", "Machine:", ""]
    lines += [f"- {k}: {v}" for k, v in facts]
    lines += [
        "",
        "Wall-clock seconds, one subprocess call each (status and --help: best of "
        f"{bench.repeats}); page cache never dropped (the large file is read once with "
        "`cat > /dev/null` before each add so both tools start warm); `sync` before every timed call; "
        f"`-j {bench.jobs}` wherever the command takes it; before each timed call the run waits (up to "
        f"{LOAD.idle_wait:.0f} s) until other processes use at most {BUSY:.0%} of the CPU, and a cell measured while "
        "they used more is marked `*`.",
        "",
    ]
    lines += [markdown_table(bench.rows), ""]
    lines += extra
    lines += [paragraph, ""]
    replace_section(path, "\n".join(lines))


# --- main ------------------------------------------------------------------------------------


def find_mlops(given: str | None) -> Path:
    if given:
        return Path(given).resolve()
    beside = Path(sys.executable).parent / "mlops"
    if beside.exists():
        return beside
    for candidate in (REPO_ROOT / ".venv" / "bin" / "mlops", shutil.which("mlops")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise SystemExit("mlops executable not found: pass --mlops PATH")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work", default="bench-work", help="work folder: data, DVC's venv, repos (default ./bench-work)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 100 MB file, 2,000 files, 20,000 files for the big dir"
    )
    parser.add_argument(
        "--big-files",
        type=int,
        default=None,
        help="files in the one-changed-file directory (default 200000; --quick 20000)",
    )
    parser.add_argument("--jobs", "-j", type=int, default=8, help="-j for both tools where they take it (default 8)")
    parser.add_argument("--repeats", type=int, default=5, help="best of N for status and --help (default 5)")
    parser.add_argument(
        "--add-repeats",
        type=int,
        default=1,
        help="best of N for the large-file add, each in a fresh repository (default 1)",
    )
    parser.add_argument(
        "--write-repeats",
        type=int,
        default=1,
        help="rounds of push, checkout and pull of the small folder, the two tools taking turns (default 1)",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds before one command is given up (default 3600)"
    )
    parser.add_argument(
        "--mlops", default=None, help="mlops executable (default: the one beside this python, or on PATH)"
    )
    parser.add_argument(
        "--rev",
        default=None,
        help="measure mlops as committed at this git revision (a snapshot: immune to edits during the run)",
    )
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=60,
        help="before each timed call, wait up to this many seconds for other processes to calm down (0: never)",
    )
    parser.add_argument("--dvc-spec", default="dvc", help="what pip installs into the DVC venv (default: dvc)")
    parser.add_argument("--no-dvc", action="store_true", help="mlops figures only")
    parser.add_argument(
        "--against-rev",
        default=None,
        help="put mlops at this git revision in DVC's column: a change's cost measured side by side in one "
        "run (each row then passes when the measured mlops takes at most 1.05x the base's time)",
    )
    parser.add_argument(
        "--reflink-work",
        default=None,
        help=(
            "also run the large-file add with its repositories in this folder, "
            "on a filesystem with reflink (XFS, btrfs; see README.md)"
        ),
    )
    parser.add_argument(
        "--only",
        default="add,small,changed,help",
        help="steps to run (comma list of add,add-reflink,small,changed,help; add-reflink needs --reflink-work)",
    )
    parser.add_argument(
        "--docs", default=str(REPO_ROOT / "docs" / "benchmarks.md"), help="markdown file to update ('' for none)"
    )
    args = parser.parse_args(argv)

    if args.quick:
        sizes = Sizes(100 * 1000 * 1000, 2000, 20000)
    else:
        sizes = Sizes(2 * GiB, 20000, 200000)
    if args.big_files:
        sizes.big_files = args.big_files
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "data").mkdir(exist_ok=True)
    (work / "repos").mkdir(exist_ok=True)
    LOAD.idle_wait = args.idle_wait
    mlops_exe = find_mlops(args.mlops)
    if args.rev:
        mlops_exe = snapshot_mlops(args.rev, work, mlops_exe)
    mlops = Mlops(mlops_exe, args.jobs, args.timeout)
    with contextlib.suppress(StepError):  # warm-up: writes mlops' bytecode where it is missing
        run([str(mlops.exe), "--help"], env=mlops.env, timeout=120)

    if args.against_rev:
        label = SOURCE.get("label")
        base_exe = snapshot_mlops(args.against_rev, work, find_mlops(args.mlops))
        if label is None:
            SOURCE.pop("label", None)
        else:
            SOURCE["label"] = label
        dvc_exe, dvc_why = None, f"mlops at {args.against_rev} takes DVC's column (--against-rev)"
        COLUMNS[2:4] = [f"{args.against_rev} s", f"ratio ({args.against_rev}/measured)"]
    elif args.no_dvc:
        dvc_exe, dvc_why = None, "--no-dvc given"
    else:
        dvc_exe, dvc_why = install_dvc(work, shutil.which("python3") or sys.executable, args.dvc_spec)
        log(dvc_why)
    dvc = Dvc(dvc_exe, args.jobs, args.timeout) if dvc_exe else None
    if args.against_rev:
        dvc = BaseMlops(base_exe, args.jobs, args.timeout)
        with contextlib.suppress(StepError):
            run([str(dvc.exe), "--help"], env=dvc.env, timeout=120)

    facts = machine_facts(work, mlops, dvc, dvc_why)
    log("\nMachine")
    for key, value in facts:
        log(f"  {key}: {value}")
    fs = fs_type(work)
    try:
        reflink = reflink_supported(work)
    except OSError:
        reflink = False
    log(
        f"\nsizes: {human(sizes.big_bytes)} file; {sizes.small_files} files of ~10 KB in 100 folders; "
        f"{sizes.big_files} small files for the one-changed-file case; -j {args.jobs}"
    )
    log(
        "note: page cache is never dropped; the large file is read once with `cat > /dev/null` before each add, "
        "so both tools start warm; sync before every timed call."
    )

    log("\n== data (generated once, reused across runs)")
    data = work / "data"
    gen_big(data / f"big-{sizes.big_bytes}.bin", sizes.big_bytes)
    gen_tree(data / f"small-{sizes.small_files}", sizes.small_files, 100, 9 * 1024, 11 * 1024, seed=20)
    gen_tree(data / f"many-{sizes.big_files}", sizes.big_files, max(1, sizes.big_files // 1000), 500, 1500, seed=200)

    bench = Bench(
        work,
        sizes,
        args.jobs,
        mlops,
        dvc,
        dvc_why,
        repeats=args.repeats,
        add_repeats=args.add_repeats,
        write_repeats=args.write_repeats,
    )
    reflink_root: Path | None = None
    reflink_where = ""
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if args.reflink_work:
        reflink_root = Path(args.reflink_work).resolve() / "repos"
        reflink_root.mkdir(parents=True, exist_ok=True)
        if not reflink_supported(reflink_root):
            raise SystemExit(
                f"--reflink-work {args.reflink_work}: this filesystem ({fs_type(reflink_root)}) has no reflink"
            )
        reflink_where = f" ({fs_type(reflink_root)} with reflink)"
        facts.append(
            (
                "reflink work dir",
                f"{reflink_root.parent} ({fs_type(reflink_root)}, reflink: yes; "
                f"{human(shutil.disk_usage(reflink_root).free)} free)",
            )
        )
        if "add" in only and "add-reflink" not in only:
            only.insert(only.index("add") + 1, "add-reflink")
    steps = {
        "add": ("1. add of a large file", bench.step_add_big),
        "add-reflink": (
            "1b. add of a large file on a filesystem with reflink",
            lambda: bench.step_add_big(reflink_root, reflink_where),
        ),
        "small": (
            f"2+4. {count_label(sizes.small_files)}-file dir: status, push, checkout, pull",
            bench.step_small_dir,
        ),
        "changed": (
            f"3. {count_label(sizes.big_files)}-file dir, one file changed: re-add, push",
            bench.step_one_changed,
        ),
        "help": ("5. --help", bench.step_help),
    }
    source_before = source_fingerprint()
    started = time.perf_counter()
    for key in only:
        if key not in steps:
            log(f"unknown step {key!r} (choose from {', '.join(steps)})")
            continue
        title, fn = steps[key]
        bench.step(title, fn)
    total = time.perf_counter() - started
    source_after = source_fingerprint()
    if source_after != source_before:
        bench.notes.append(
            f"Warning: mlops' source changed while the benchmark ran (before: {source_before[0]}; after: "
            f"{source_after[0]}), so some figures may come from different code: run it again."
        )

    if args.against_rev:
        for row in bench.rows:
            if not row.op.startswith("info"):
                row.target, row.judge = "<= 1.05x the base", within(1.05)
    table = plain_table(bench.rows)
    log("\n== results (seconds; ratio = dvc s / mlops s)\n")
    log(table)
    paragraph = reading(bench, facts, fs, reflink)
    log("\n" + paragraph)
    log(f"\n(benchmark steps took {total / 60:.1f} min)")

    if args.docs and not args.against_rev:  # a change's cost is written up by hand, beside the section
        when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        shown = [sys.executable, *sys.argv]
        command_line = " ".join(shlex.quote(a) for a in shown)
        with contextlib.suppress(ValueError):
            command_line = " ".join(
                shlex.quote(
                    os.path.relpath(a, Path.cwd()) if os.path.isabs(a) and Path(a).is_relative_to(Path.cwd()) else a
                )
                for a in shown
            )
        extra = [
            f"Sizes: {human(sizes.big_bytes)} file; {sizes.small_files} files of 9-11 KiB in 100 folders; "
            f"{sizes.big_files} files of 0.5-1.5 KB in {max(1, sizes.big_files // 1000)} folders. "
            f"Benchmark steps took {total / 60:.1f} min.",
            "",
        ]
        write_docs(Path(args.docs), bench, facts, repo_relative(command_line), when, paragraph, extra)
        log(f"wrote {args.docs} (section '{SECTION}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
