#!/usr/bin/env bash
# The feature store part of `make demo` (run from examples/demo.sh inside its project; also runs
# on its own in any mlops repository): a feature view for the churn example, a point-in-time
# training set, a model registered with its lineage, materialization, a prediction by customer id.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "feature store: order statistics per customer, defined in features.yaml"
python3 "$here/make_orders.py" data
cp "$here/features.yaml" features.yaml
run cat features.yaml
run mlops add data/order_stats.parquet data/labels.parquet
run mlops features validate

step "a point-in-time training set: each label sees only the values known at its time"
run mlops features get-training-set data/labels.parquet --service churn_v2 -o train_features.parquet
run python3 -c "import json, pyarrow.parquet as pq; t = pq.read_table('train_features.parquet'); print(t.to_pandas().head()); print(json.dumps(json.loads(t.schema.metadata[b'mlops.training_set']), indent=2))"

step "train on it, and register: the version's signature names the feature service"
run python3 "$here/train.py" train_features.parquet models/churn_fs.pkl
run mlops register churn_fs models/churn_fs.pkl --signature-from train_features.parquet --description "churn from order features"
run mlops lineage churn_fs:1

step "materialize into the online store, then read one customer"
run mlops features materialize --service churn_v2
run mlops features get-online --service churn_v2 --entity customer_id=42

step "serve it: callers send a customer id, the server looks the features up"
mlops serve churn_fs:1 --port 0 2> serve-features.log &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' EXIT
for _ in $(seq 300); do grep -q "http://127.0.0.1:" serve-features.log && break; sleep 0.2; done
url=$(grep -o "http://127.0.0.1:[0-9]*" serve-features.log | head -1)
for _ in $(seq 300); do curl -sf "$url/v2/health/ready" > /dev/null && break; sleep 0.2; done
run curl -s "$url/predict" -d '{"records": [{"customer_id": 42}, {"customer_id": 7}]}'
echo
run curl -s "$url/predict" -d '{"records": [{"customer_id": 99999}]}'
echo
kill -TERM "$server"
wait "$server" || true
trap - EXIT
git add features.yaml data/order_stats.parquet.mlops data/labels.parquet.mlops data/.gitignore .mlops/registry
git commit -q -m "feature store: churn_v2 and a model served by customer id"
