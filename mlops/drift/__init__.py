"""Drift checks and data validation (issue 6).

- ``io``: CSV/Parquet files or folders (or an Arrow table) read as one side, only the wanted columns.
- ``columns``: column kinds and the choice of test per column; ``config``: presets, options, config file.
- ``stats``: the statistics (numpy, scipy only for p-value distributions).
- ``report``: ``check_drift`` -> ``DriftReport`` (per column, verdict); ``quality``: model quality.
- ``html``: the self-contained HTML report; ``schema``: ``infer_schema`` and ``validate``.

The core never prints or exits; heavy libraries are imported inside the functions that use them.
"""
