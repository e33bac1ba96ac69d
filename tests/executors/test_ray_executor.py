"""`mlops run --executor ray`: stages as Ray tasks on a real local Ray cluster (tests/executors/raycluster.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipekit import mlops, write_pipeline


def test_executor_ray_without_ray_says_how_to_install_it(repo, tmp_path: Path) -> None:
    write_pipeline(repo.root, {"a": {"cmd": "echo a > a.txt", "outs": ["a.txt"]}})
    # the interpreter refuses `import ray` as if it were not installed (None in sys.modules does that)
    code = (
        "import sys, runpy\n"
        "sys.modules['ray'] = None\n"
        "sys.argv = ['mlops', 'run', '--executor', 'ray']\n"
        "runpy.run_module('mlops', run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo.root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'mlops[ray]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (repo.root / "a.txt").exists()  # nothing ran
    assert not (repo.root / "pipeline.lock").exists()


def test_unknown_executor_is_a_usage_error(repo) -> None:
    write_pipeline(repo.root, {"a": {"cmd": "echo a > a.txt", "outs": ["a.txt"]}})
    proc = subprocess.run(
        [sys.executable, "-m", "mlops", "run", "--executor", "dask"],
        cwd=repo.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "unknown executor 'dask'" in proc.stderr


# --- a real local Ray cluster (the session's ray_cluster fixture) ----------------------------------

RAY_TIMEOUT = 600  # a cold Ray worker pool on a loaded 2-core machine takes a while to warm


def _project(root: Path, step: Path) -> None:
    """A committed project: prep, a foreach group of two members after it, and a report joining them."""
    from pipekit import commit_all, git, step_cmd

    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    mlops("init", cwd=root)
    (root / "data").mkdir()
    (root / "data" / "raw.txt").write_text("raw\n")
    (root / "data" / "a.txt").write_text("alpha\n")
    (root / "data" / "b.txt").write_text("beta\n")
    (root / "pipeline.yaml").write_text(
        "stages:\n"
        "  prep:\n"
        f"    cmd: {step_cmd(step, 'print:preparing', 'copy:data/raw.txt=prep/all.txt')}\n"
        "    deps: [data/raw.txt]\n"
        "    outs: [prep/all.txt]\n"
        "  clean:\n"
        "    foreach: [a, b]\n"
        "    do:\n"
        f"      cmd: {step_cmd(step, 'print:hello-${item}', 'cat:prep/all.txt+data/${item}.txt=clean/${item}.txt')}\n"
        "      deps: [prep/all.txt, 'data/${item}.txt']\n"
        "      outs: ['clean/${item}.txt']\n"
        "  report:\n"
        f"    cmd: {step_cmd(step, 'cat:clean/a.txt+clean/b.txt=report.txt')}\n"
        "    deps: [clean/a.txt, clean/b.txt]\n"
        "    outs: [report.txt]\n"
    )
    commit_all(root, "pipeline")
