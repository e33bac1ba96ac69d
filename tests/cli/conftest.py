"""CLI tests share the data tests' helpers (tests/data/datakit.py: real git, real files, real subprocesses)."""

from __future__ import annotations

import sys
from pathlib import Path

_DATA_TESTS = str(Path(__file__).resolve().parents[1] / "data")
if _DATA_TESTS not in sys.path:
    sys.path.insert(0, _DATA_TESTS)
