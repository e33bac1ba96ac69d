"""The record of `mlops validate` results: one JSON line per run in ``.mlops/checks/validation.jsonl``.

```
.mlops/checks/
  .gitignore          "*": results are local to this checkout, like runs
  validation.jsonl    one line per `mlops validate` inside a repository
```

Appended atomically (fsio.append_record: one write, fsynced; a crash can tear only the last
line, which read_records skips). The UI's /checks page reads it; nothing rewrites it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..fsio import FileLock, append_record, atomic_write, read_records
from ..repo.repo import Repo
from .schema import ValidationReport

CHECKS = "checks"
VALIDATION_LOG = "validation.jsonl"
FIRST_PROBLEMS = 5  # the violations kept per record; the counts cover all of them


def checks_dir(repo: Repo) -> Path:
    return repo.dot / CHECKS


def validation_log(repo: Repo) -> Path:
    return checks_dir(repo) / VALIDATION_LOG


def _repo_relative(repo: Repo, path: str | os.PathLike[str]) -> str:
    """The path relative to the repository when it lies inside it, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(repo.root.resolve()).as_posix()
    except ValueError:
        try:
            return absolute.relative_to(repo.root).as_posix()
        except ValueError:
            return str(absolute)


def report_in_repo(repo: Repo, path: str | os.PathLike[str] | None) -> str | None:
    """Where a check's ``--html`` report went, relative to the repository (posix), recorded with
    the check's verdict so the UI links exactly that report; None when it lies outside the
    repository (nothing the UI could serve)."""
    if path is None:
        return None
    absolute = Path(os.path.abspath(path))
    for root in (repo.root.resolve(), repo.root):
        try:
            rel = absolute.relative_to(root).as_posix()
        except ValueError:
            continue
        return rel if rel not in ("", ".") and not rel.startswith("../") else None
    return None


def record_validation(
    repo: Repo, data: list[str], schema: str | os.PathLike[str], report: ValidationReport
) -> dict[str, Any]:
    """Append one `mlops validate` result to the repository's validation log; returns the record."""
    from ..tracking.store import git_facts

    folder = checks_dir(repo)
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        atomic_write(ignore, "# check results are local to this checkout (mlops ui: /checks)\n*\n")
    commit, dirty = git_facts(repo.root)
    record = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": [_repo_relative(repo, d) for d in data],
        "schema": _repo_relative(repo, schema),
        "passed": report.ok,
        "rows": report.rows,
        "checked_columns": len(report.checked_columns),
        "violations": len(report.violations),
        "violating_values": sum(v.count for v in report.violations),
        "first_violations": [v.to_dict() for v in report.violations[:FIRST_PROBLEMS]],
        "warnings": len(report.warnings),
        "git_commit": commit,
        "git_dirty": dirty,
    }
    record = json.loads(json.dumps(record, default=str))  # examples may hold values json cannot name
    with FileLock(folder / ".lock", what="the validation log"):
        append_record(validation_log(repo), record)
    return record


def validation_history(repo: Repo) -> list[dict[str, Any]]:
    """The recorded results, oldest first (a torn or foreign line is skipped)."""
    return [r for r in read_records(validation_log(repo)) if isinstance(r, dict)]
