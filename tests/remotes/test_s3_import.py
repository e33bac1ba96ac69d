"""The S3 remote loads s3fs without aiobotocore's httpx backend, and hides nothing else meanwhile."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
import sys, threading
from mlops.remotes.s3 import _import_s3fs

errors = []
started = threading.Event()

def import_httpx():
    started.set()
    try:
        import httpx  # another thread's import while s3fs loads must not fail
        assert httpx.AsyncClient is not None
    except BaseException as exc:
        errors.append(repr(exc))

thread = threading.Thread(target=import_httpx)
thread.start()
started.wait()
s3fs = _import_s3fs()
thread.join()
from aiobotocore._httpx import httpx as backend
print(len(errors), backend is None, hasattr(s3fs, "S3FileSystem"))
"""


@pytest.mark.timeout(120)
def test_s3fs_loads_without_the_httpx_backend_and_other_imports_still_work() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr[-2000:]
    errors, backend_off, loaded = proc.stdout.split()
    assert errors == "0", proc.stdout
    assert backend_off == "True"  # aiobotocore's httpx backend stays off: s3fs talks aiohttp
    assert loaded == "True"
