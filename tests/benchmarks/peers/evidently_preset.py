"""Run inside Evidently's own virtual environment (bench_monitor.py builds it): Evidently's data drift
preset on the first ROWS rows of REF and CUR. Prints one JSON line: rows, seconds (the report alone:
not the import, not reading the files), the drifted columns.

    python evidently_preset.py REF CUR ROWS
"""

import json
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq


def head(path: str, rows: int):
    batches, n = [], 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1 << 16):
        batches.append(batch)
        n += batch.num_rows
        if n >= rows:
            break
    return pa.Table.from_batches(batches).slice(0, rows).to_pandas()


def main() -> None:
    ref_path, cur_path, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    reference, current = head(ref_path, rows), head(cur_path, rows)
    from evidently import Report
    from evidently.presets import DataDriftPreset

    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current, reference)
    seconds = time.perf_counter() - started
    drifted = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        value, threshold = metric["value"], config["threshold"]
        p_value = "p_value" in str(config.get("method", ""))
        if (value < threshold) if p_value else (value >= threshold):
            drifted.append(config["column"])
    print(json.dumps({"rows": len(current), "seconds": seconds, "drifted": sorted(drifted)}))


if __name__ == "__main__":
    main()
