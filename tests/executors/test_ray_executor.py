"""`mlops run --executor ray`: stages as Ray tasks on a real local Ray cluster (tests/executors/raycluster.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipekit import write_pipeline


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
