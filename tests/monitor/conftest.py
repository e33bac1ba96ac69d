"""Monitoring tests share the planted-drift tables of tests/drift (planted.py)."""

from __future__ import annotations

import sys
from pathlib import Path

_DRIFT = str(Path(__file__).resolve().parents[1] / "drift")
if _DRIFT not in sys.path:
    sys.path.insert(0, _DRIFT)
