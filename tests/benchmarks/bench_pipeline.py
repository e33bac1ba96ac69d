"""Pipeline benchmark: `mlops run` against `dvc repro` on the same pipelines, in one run.

    .venv/bin/python tests/benchmarks/bench_pipeline.py [--work DIR] [--docs docs/benchmarks.md]

Measures (wall-clock seconds around one subprocess call; no-op runs best of 3):
1. a 50-stage chain with nothing to do: `mlops run` vs `dvc repro` (target: mlops < 0.5 s, >= 5x);
2. 8 independent `sleep 1` stages: `mlops run -j 8` vs `dvc repro` (target: mlops about 1 s);
3. restoring a stage (2,000 output files) from the run cache vs `mlops checkout` of the
   same outputs, both starting from the other parameter value's outputs in the workspace
   (target: restore costs no more than the checkout); a checkout into an empty folder and
   DVC's run-cache restore of the same stage are printed beside it.
DVC comes from the venv bench_data.py installs (WORK/dvc-venv), installed here if missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
SECTION = "## Pipelines (issue 3)"
sys.path.insert(0, str(HERE))
import bench_data  # noqa: E402  (install_dvc, machine facts, docs writing helpers)
from benchdocs import replace_section  # noqa: E402


def sh(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Run once; return wall-clock seconds; raise with the output's tail on failure."""
    subprocess.run(["sync"], check=False)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {proc.returncode}: {(proc.stderr or proc.stdout)[-400:]}")
    return took


def best(cmd: list[str], cwd: Path, n: int = 3) -> float:
    return min(sh(cmd, cwd) for _ in range(n))


def new_repo(path: Path, tool: str, mlops: str, dvc: str | None) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    if tool == "mlops":
        subprocess.run([mlops, "init"], cwd=path, check=True, capture_output=True)
    else:
        assert dvc
        subprocess.run([dvc, "init", "-q"], cwd=path, check=True)
        subprocess.run([dvc, "config", "core.analytics", "false"], cwd=path, check=True)
        subprocess.run([dvc, "config", "core.autostage", "false"], cwd=path, check=True)
    return path


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def chain(root: Path, name: str, stages: int) -> None:
    write(root / "s0.txt", "seed\n")
    lines = ["stages:"]
    for i in range(1, stages + 1):
        lines += [
            f"  s{i}:",
            f"    cmd: cp s{i - 1}.txt s{i}.txt",
            f"    deps: [s{i - 1}.txt]",
            f"    outs: [s{i}.txt]",
        ]
    write(root / name, "\n".join(lines) + "\n")


def sleepers(root: Path, name: str, count: int) -> None:
    lines = ["stages:"]
    for i in range(count):
        lines += [f"  sleep{i}:", f"    cmd: sleep 1 && echo {i} > out{i}.txt", f"    outs: [out{i}.txt]"]
    write(root / name, "\n".join(lines) + "\n")


MAKE_FILES = """import os, sys, yaml
n = yaml.safe_load(open('params.yaml'))['n']
os.makedirs('gen', exist_ok=True)
for i in range(2000):
    open(f'gen/f{i:04d}.txt', 'w').write(f'{n} {i} ' + 'x' * 4000)
"""


def restorer(root: Path, name: str) -> None:
    write(root / "make.py", MAKE_FILES)
    write(root / "params.yaml", "n: 1\n")
    write(
        root / name,
        "stages:\n  make:\n    cmd: python make.py\n    deps: [make.py]\n    params: [n]\n    outs: [gen]\n",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(REPO_ROOT / "bench-work"))
    parser.add_argument("--docs", default=str(REPO_ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--no-dvc", action="store_true")
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    mlops = str(Path(sys.executable).with_name("mlops"))
    dvc = None
    if not args.no_dvc:
        exe, why = bench_data.install_dvc(work, sys.executable, "dvc")
        dvc = str(exe) if exe else None
        if dvc is None:
            print(f"DVC unavailable: {why}")
    env_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    os.environ["PATH"] = env_path  # stages call `python` with yaml available
    rows: list[tuple[str, float | None, float | None, str, str]] = []

    def measure(label: str, target: str, ok, fn_m, fn_d) -> None:  # noqa: ANN001
        m = fn_m()
        d = fn_d() if dvc else None
        verdict = ok(m, d)
        rows.append((label, m, d, target, verdict))
        ratio = f"{d / m:.1f}x" if d and m else "-"
        print(f"{label:55s} mlops {m:8.3f}s  dvc {d if d is None else round(d, 3)!s:>8}  {ratio:>7}  {verdict}")

    # 1. 50-stage chain, nothing to do
    m_repo = new_repo(work / "p-chain-mlops", "mlops", mlops, dvc)
    chain(m_repo, "pipeline.yaml", 50)
    sh([mlops, "run"], m_repo)
    d_repo = None
    if dvc:
        d_repo = new_repo(work / "p-chain-dvc", "dvc", mlops, dvc)
        chain(d_repo, "dvc.yaml", 50)
        sh([dvc, "repro", "-q"], d_repo)
    measure(
        "no-op run, 50-stage chain (best of 3)",
        "mlops < 0.5 s, dvc/mlops >= 5",
        lambda m, d: "PASS" if m < 0.5 and (d is None or d / m >= 5) else "FAIL",
        lambda: best([mlops, "run"], m_repo),
        lambda: best([dvc, "repro", "-q"], d_repo),
    )

    # 2. 8 independent sleep-1 stages
    m_repo = new_repo(work / "p-sleep-mlops", "mlops", mlops, dvc)
    sleepers(m_repo, "pipeline.yaml", 8)
    if dvc:
        d_repo = new_repo(work / "p-sleep-dvc", "dvc", mlops, dvc)
        sleepers(d_repo, "dvc.yaml", 8)
    measure(
        "8 independent `sleep 1` stages, -j 8 (forced)",
        "mlops about 1 s (< 1.5 s)",
        lambda m, d: "PASS" if m < 1.5 else "FAIL",
        lambda: sh([mlops, "run", "-j", "8", "--force"], m_repo),
        lambda: sh([dvc, "repro", "-f", "-q"], d_repo),
    )

    # 3. run-cache restore vs checkout of the same outputs, from the same start: the workspace
    # holds the other parameter's 2,000 outputs, and each command replaces every one of them
    m_repo = new_repo(work / "p-restore-mlops", "mlops", mlops, dvc)
    restorer(m_repo, "pipeline.yaml")
    sh([mlops, "run"], m_repo)
    lock_n1 = (m_repo / "pipeline.lock").read_bytes()
    restores, checkouts = [], []
    for _ in range(3):  # best of 3, alternating, so both see the same machine
        (m_repo / "params.yaml").write_text("n: 2\n")
        sh([mlops, "run"], m_repo)  # the other version's outputs in place (a restore, untimed)
        (m_repo / "params.yaml").write_text("n: 1\n")
        restores.append(sh([mlops, "run"], m_repo))  # n=2 outputs -> n=1 outputs, from the run cache
        (m_repo / "params.yaml").write_text("n: 2\n")
        sh([mlops, "run"], m_repo)
        (m_repo / "params.yaml").write_text("n: 1\n")
        (m_repo / "pipeline.lock").write_bytes(lock_n1)
        checkouts.append(sh([mlops, "checkout"], m_repo))  # n=2 outputs -> n=1 outputs, by the lock file
    restore, checkout = min(restores), min(checkouts)
    verdict = "PASS" if restore <= checkout * 1.2 else "FAIL"  # within timing noise of one call
    rows.append(
        (
            "restore 2,000-file output from the run cache vs `mlops checkout` of it (both replace the other version's "
            "files; best of 3)",
            restore,
            checkout,
            "restore <= checkout",
            verdict,
        )
    )
    print(f"run-cache restore {restore:.3f}s vs checkout {checkout:.3f}s  {verdict}")
    shutil.rmtree(m_repo / "gen")
    into_empty = sh([mlops, "checkout"], m_repo)
    rows.append(("info: `mlops checkout` of the same output into an empty folder", restore, into_empty, "info", "-"))
    if dvc:
        d_repo = new_repo(work / "p-restore-dvc", "dvc", mlops, dvc)
        restorer(d_repo, "dvc.yaml")
        sh([dvc, "repro", "-q"], d_repo)
        (d_repo / "params.yaml").write_text("n: 2\n")
        sh([dvc, "repro", "-q"], d_repo)
        (d_repo / "params.yaml").write_text("n: 1\n")
        rows.append(
            (
                "info: DVC run-cache restore of the same stage (dvc repro)",
                restore,
                sh([dvc, "repro", "-q"], d_repo),
                "info",
                "-",
            )
        )

    table = ["| operation | mlops s | dvc s | ratio (dvc/mlops) | target | pass/fail |", "|---|---|---|---|---|---|"]
    for label, m, d, target, verdict in rows:
        ratio = f"{d / m:.1f}x" if (d and m) else "-"
        table.append(f"| {label} | {m:.3f} | {'-' if d is None else f'{d:.3f}'} | {ratio} | {target} | {verdict} |")
    print("\n".join(table))
    if args.docs:
        cmd = f".venv/bin/python tests/benchmarks/bench_pipeline.py --work {work}"
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        block = "\n".join(
            [
                SECTION,
                "",
                f"Measured {when} on the machine described above, with:",
                "",
                "```",
                cmd,
                "```",
                "",
                *table,
                "",
                "The third row's 'dvc s' column holds the `mlops checkout` time of the same outputs (the comparison "
                "the target names); DVC's own run-cache restore is the info row.",
                "",
            ]
        )
        replace_section(Path(args.docs), block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
