"""Accuracy of the model on the test rows of one plan: metrics/eval_<segment>.json."""

import argparse
import json
import pickle

import pandas as pd

parser = argparse.ArgumentParser()
parser.add_argument("--segment", required=True)
args = parser.parse_args()

model = pickle.load(open("models/model.pkl", "rb"))
test = pd.read_parquet("data/features/test.parquet")
rows = test[test["plan"] == args.segment]
accuracy = float(model.score(rows.drop(columns=["churned"]), rows["churned"])) if len(rows) else 0.0
json.dump(
    {"segment": args.segment, "test_accuracy": round(accuracy, 4), "rows": len(rows)},
    open(f"metrics/eval_{args.segment}.json", "w"),
    indent=2,
)
print(f"{args.segment}: accuracy {accuracy:.3f} on {len(rows)} rows")
