"""`mlops import dvc`: a DVC project as it is, carried into mlops in one place.

- ``project``: where the DVC project is (every ``.dvc/`` root, ``dvc init --subdir`` included),
  its ``.dvc/config`` remotes, every ``dvc.yaml``, ``dvc.lock`` and ``.dvc`` file.
- ``pipelines``: each ``dvc.yaml`` -> stages of the one ``pipeline.yaml`` (nested files with their
  own folder as base), plus the top-level ``params``/``metrics``/``plots``/``artifacts`` sections.
- ``objects``: DVC's object layouts (``files/md5/ab/cdef...`` and DVC 2's ``ab/cdef...``, ``.dir``
  listings) in a local cache, a local remote or S3, each file's md5 checked on the way.
- ``record``: ``.mlops/dvc-import.json``, what was carried and which data is still to come.
- ``importer``: validate everything, then write (nothing at all when anything cannot be carried).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ImportResult", "MissingData", "import_dvc", "missing_data"]


def __getattr__(name: str) -> Any:
    # lazily: status and the pipeline graph read only the record, never the whole importer
    if name in ("ImportResult", "import_dvc"):
        from . import importer

        return getattr(importer, name)
    if name in ("MissingData", "missing_data"):
        from . import record

        return getattr(record, name)
    raise AttributeError(name)
