"""Drift tests share the planted-drift tables (tests/drift/planted.py) with the benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


import pytest  # noqa: E402
from driftkit import strict_json  # noqa: E402


@pytest.fixture
def drift_json(cli):
    """Run `mlops drift ... --json` in-process; return (document, result)."""

    def run(*args: str, code: int = 0):
        result = cli("drift", *args, "--json", code=code)
        return strict_json(result.stdout), result

    return run
