"""Fit the churn model on data/features/train.parquet; write models/model.pkl and metrics/train.json."""

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

import mlops

params = yaml.safe_load(open("params.yaml"))["train"]
train = pd.read_parquet("data/features/train.parquet")
features, target = train.drop(columns=["churned"]), train["churned"]
columns = ColumnTransformer(
    [
        ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ("numbers", StandardScaler(), ["tenure", "monthly_charges"]),
    ]
)
if params["model"] == "forest":
    estimator = RandomForestClassifier(
        n_estimators=params["n_estimators"], max_depth=params["max_depth"], random_state=params["seed"]
    )
else:
    estimator = LogisticRegression(max_iter=500)
with mlops.start_run(name=f"churn-{params['model']}"):  # inside `mlops run`: joins the run of this run
    mlops.log_params(params)
    model = Pipeline([("columns", columns), ("model", estimator)]).fit(features, target)
    if params["model"] == "forest":  # accuracy as the forest grows: a step-wise metric for `mlops plots`
        forest = model.named_steps["model"]
        encoded = model.named_steps["columns"].transform(features)
        for step in range(1, len(forest.estimators_) + 1, 10):
            votes = sum(tree.predict(encoded) for tree in forest.estimators_[:step]) / step
            mlops.log_metric("train_accuracy_by_trees", float(((votes > 0.5) == target).mean()), step=step)
    os.makedirs("models", exist_ok=True)
    os.makedirs("metrics", exist_ok=True)
    with open("models/model.pkl", "wb") as handle:
        pickle.dump(model, handle)
    accuracy = float(model.score(features, target))
    mlops.log_metric("train_accuracy", accuracy)
    json.dump({"train_accuracy": round(accuracy, 4), "rows": len(train)}, open("metrics/train.json", "w"), indent=2)
    print(f"train accuracy {accuracy:.3f}")
