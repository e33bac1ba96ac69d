"""Run inside NannyML's own virtual environment (bench_monitor.py builds it): CBPE's estimated accuracy
per chunk. REF has y_pred_proba, y_pred, y_true; ANALYSIS has y_pred_proba, y_pred (its labels are
not given to CBPE). Prints one JSON line: seconds (fit and estimate: not the import, not reading the
files) and the estimate per chunk.

    python nannyml_cbpe.py REF ANALYSIS CHUNK_ROWS
"""

import json
import sys
import time
import warnings

import pandas as pd


def main() -> None:
    ref_path, analysis_path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
    reference = pd.read_parquet(ref_path, columns=["y_pred_proba", "y_pred", "y_true"])
    analysis = pd.read_parquet(analysis_path, columns=["y_pred_proba", "y_pred"])
    import nannyml

    warnings.simplefilter("ignore")
    started = time.perf_counter()
    estimator = nannyml.CBPE(
        problem_type="classification_binary",
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
        y_true="y_true",
        metrics=["accuracy"],
        chunk_size=chunk,
    )
    estimator.fit(reference)
    table = estimator.estimate(analysis).filter(period="analysis").to_df()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "estimates": [float(v) for v in table[("accuracy", "value")]]}))


if __name__ == "__main__":
    main()
