"""Fixtures for the pipeline tests: the stage program and a project driven through the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pipekit import STEP_SOURCE, first_json, lock_doc, mlops, step_cmd, write_pipeline


@pytest.fixture(scope="session")
def step(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tools") / "step.py"
    path.write_text(STEP_SOURCE)
    return path


class Project:
    """A fresh repo (the `repo` fixture) with helpers to write a pipeline and run it in-process."""

    def __init__(self, root: Path, tmp: Path, step: Path, cli: Any) -> None:
        self.root = root
        self.tmp = tmp
        self.step = step
        self.cli = cli
        self.counter = tmp / "counter.txt"  # outside the repo: never an output, never restored

    def cmd(self, *ops: str) -> str:
        return step_cmd(self.step, *ops)

    def write(self, files: dict[str, str]) -> None:
        for rel, text in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def pipeline(self, stages: dict[str, Any], **top: Any) -> None:
        write_pipeline(self.root, stages, **top)

    def run(self, *args: str, code: int = 0) -> dict[str, Any]:
        result = self.cli("run", "--json", *args, code=code)
        doc = first_json(result.stdout)
        doc["_stderr"] = result.stderr
        return doc

    def dry(self, *args: str, code: int = 0) -> dict[str, Any]:
        return self.run("--dry-run", *args, code=code)

    def mlops(self, *args: str, code: int | None = 0, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
        return mlops(*args, cwd=self.root, code=code, env=env, timeout=timeout)

    def lock(self) -> dict[str, Any]:
        return lock_doc(self.root)

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text()


@pytest.fixture
def proj(repo: Any, tmp_path: Path, step: Path, cli: Any) -> Project:
    return Project(repo.root, tmp_path, step, cli)
