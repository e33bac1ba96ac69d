"""Fit the churn model on data/prepared/train.csv; write models/model.pkl and metrics/train.json."""

import json
import os
import pickle

import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

params = yaml.safe_load(open("params.yaml"))["train"]
train = pd.read_csv("data/prepared/train.csv")
features, target = train.drop(columns=["customer_id", "churned"]), train["churned"]
columns = ColumnTransformer([
    ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
    ("numbers", StandardScaler(), ["tenure", "monthly_charges"]),
])
if params["model"] == "forest":
    estimator = RandomForestClassifier(n_estimators=params["n_estimators"], max_depth=params["max_depth"], random_state=params["seed"])
else:
    estimator = LogisticRegression(max_iter=500)
model = Pipeline([("columns", columns), ("model", estimator)]).fit(features, target)
os.makedirs("models", exist_ok=True)
os.makedirs("metrics", exist_ok=True)
with open("models/model.pkl", "wb") as handle:
    pickle.dump(model, handle)
accuracy = float(model.score(features, target))
json.dump({"train_accuracy": round(accuracy, 4), "rows": len(train)}, open("metrics/train.json", "w"), indent=2)
print(f"train accuracy {accuracy:.3f}")
