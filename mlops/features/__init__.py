"""A git-native feature store (docs/features.md): definitions in features.yaml, sources pinned by
content hash, point-in-time training sets (DuckDB ASOF JOIN), an online store (SQLite or Redis).

Stands above the registry and below serve: serve looks features up here. Heavy engines
(pyarrow, duckdb, redis) are imported inside the functions that use them.
"""
