"""Turn the split tables into the model's inputs: data/features/{train,test}.parquet.

Typed columns (Parquet keeps them: the registry reads the signature from them, drift and
serving check against it), with the cleaning a real feed needs: missing tenure filled with
the training median, charges clipped to the range the business allows.
"""

import os

import pandas as pd
import yaml

params = yaml.safe_load(open("params.yaml"))["featurize"]
FEATURES = ["tenure", "plan", "monthly_charges"]
train = pd.read_csv("data/prepared/train.csv")
test = pd.read_csv("data/prepared/test.csv")
median_tenure = int(train["tenure"].median())
os.makedirs("data/features", exist_ok=True)
for name, table in (("train", train), ("test", test)):
    out = pd.DataFrame(
        {
            "tenure": table["tenure"].fillna(median_tenure).astype("int64"),
            "plan": table["plan"].astype(str),
            "monthly_charges": table["monthly_charges"]
            .clip(params["min_charges"], params["max_charges"])
            .astype("float64"),
            "churned": table["churned"].astype("int64"),
        }
    )
    out.to_parquet(f"data/features/{name}.parquet", index=False)
    print(f"{name}: {len(out)} rows, features {', '.join(FEATURES)}")
