"""Split data/customers.csv into data/prepared/{train,test}.csv."""

import argparse
import os

import pandas as pd
from sklearn.model_selection import train_test_split

parser = argparse.ArgumentParser()
parser.add_argument("--test-size", type=float, required=True)
parser.add_argument("--seed", type=int, required=True)
args = parser.parse_args()

table = pd.read_csv("data/customers.csv")
train, test = train_test_split(table, test_size=args.test_size, random_state=args.seed, stratify=table["churned"])
os.makedirs("data/prepared", exist_ok=True)
train.to_csv("data/prepared/train.csv", index=False)
test.to_csv("data/prepared/test.csv", index=False)
print(f"train {len(train)} rows, test {len(test)} rows")
