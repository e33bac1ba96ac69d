#!/usr/bin/env bash
# The end-to-end example behind `make demo`. It makes its own data (no download) in
# demo-work/ and leaves that folder for you to explore afterwards.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
work="$here/demo-work"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

rm -rf "$work"
mkdir -p "$work"
cd "$work"
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-mlops demo}" GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-demo@example.com}"
export GIT_COMMITTER_NAME="${GIT_COMMITTER_NAME:-mlops demo}" GIT_COMMITTER_EMAIL="${GIT_COMMITTER_EMAIL:-demo@example.com}"

step "a git repository with mlops"
run git init -q -b main project
cd project
run mlops init

step "make some data: a customer table and a folder of 'images'"
python3 "$here/examples/make_data.py" data

step "track it"
run mlops add data/customers.csv data/images
run git add data/customers.csv.mlops data/images.mlops data/.gitignore .mlops/config.yaml .mlops/.gitignore
run git commit -q -m "data v1"
run mlops status

step "change the data: one image edited, one removed, one new"
echo "edited" >> data/images/cats/cat_0001.txt
rm data/images/dogs/dog_0002.txt
echo "a new one" > data/images/dogs/dog_9999.txt
run mlops status || true
run mlops add data/images
run git commit -q -am "data v2"
run mlops diff HEAD~1 HEAD

step "git checkout an older commit, then mlops checkout makes the data follow"
run git checkout -q HEAD~1
run mlops checkout
run mlops status
run git checkout -q main
run mlops checkout

step "push to a remote, lose the cache and the data, pull them back"
run mlops remote add storage "$work/remote" --default
run mlops push -j 8
rm -rf .mlops/cache data/images data/customers.csv
run mlops pull -j 8
run mlops status
run mlops verify

step "a tampered remote: a crafted snapshot whose entry would write .git/hooks/pre-commit is refused whole"
# What someone with write access to the bucket could plant: a tree manifest naming
# ../.git/hooks/pre-commit, its executable object, and a commit whose pointer file names it.
python3 - "$work/remote" <<'PY'
import json, sys
from pathlib import Path
from mlops.store.hashing import hash_bytes
from mlops.store.tree import TREE_FORMAT

remote = Path(sys.argv[1])
def plant(data: bytes) -> str:
    digest = hash_bytes(data)
    (remote / digest[:2]).mkdir(exist_ok=True)
    (remote / digest[:2] / digest[2:]).write_bytes(data)
    return digest
hook = b"#!/bin/sh\necho pwned\n"
entries = [["../.git/hooks/pre-commit", "f", plant(hook), len(hook), 1]]
tree = plant(json.dumps({"format": TREE_FORMAT, "entries": entries}, separators=(",", ":")).encode())
Path("shared.mlops").write_text(f"format: 1\npath: shared\nkind: dir\nhash: {tree}\nsize: {len(hook)}\nfiles: 1\n")
PY
run git add shared.mlops
run git commit -q -m "a teammate's crafted snapshot"
run mlops pull || echo "(exit $?: refused before any file was written)"
test ! -e .git/hooks/pre-commit && test ! -e shared && echo "nothing written: no .git/hooks/pre-commit, no shared/"
run git rm -q shared.mlops
run git commit -q -m "drop the crafted snapshot"

step "a pipeline: prepare -> featurize -> train -> evaluate (one stage per customer plan)"
cp -r "$here/examples/churn/src" "$here/examples/churn/params.yaml" "$here/examples/churn/pipeline.yaml" .
run mlops dag
run mlops run
run git add -A
run git commit -q -m "pipeline v1"

step "nothing changed: nothing runs"
run mlops run

step "change one parameter: only what depends on it runs"
sed -i.bak 's/max_depth: 6/max_depth: 4/' params.yaml && rm -f params.yaml.bak
run mlops run --dry-run
run mlops run

step "change it back: the run cache restores the earlier outputs without training"
sed -i.bak 's/max_depth: 4/max_depth: 6/' params.yaml && rm -f params.yaml.bak
run mlops run
run mlops status

step "experiment tracking: every mlops run is a run, with params, metrics and lineage"
run mlops runs list --sort=-metrics.train_accuracy --limit 5
run mlops metrics show
sed -i.bak 's/max_depth: 6/max_depth: 8/' params.yaml && rm -f params.yaml.bak
run mlops run
run mlops metrics diff
run mlops params diff
run mlops runs compare $(mlops runs list --json --limit 2 | python -c "import json,sys; print(' '.join(r['id'] for r in json.load(sys.stdin)['runs']))")
run mlops plots $(mlops runs list --json --limit 3 | python -c "import json,sys; print(' '.join(r['id'] for r in json.load(sys.stdin)['runs']))") -o plots.html


# --- model registry (issue 5) -------------------------------------------------------------
step "model registry: register the trained model with its run, promote it through the policy gates"
# the last run above ran with params.yaml uncommitted: commit it, and run again at that commit
# (nothing retrains: the stages are up to date), so the version's lineage names a clean commit
run git commit -q -am "max_depth 8: the model to register"
run mlops run
cp "$here/examples/churn/policy.yaml" .mlops/policy.yaml
run cat .mlops/policy.yaml
latest=$(mlops runs list --json --limit 1 | python -c "import json,sys; print(json.load(sys.stdin)['runs'][0]['id'])")
run mlops register churn models/model.pkl --run "$latest" --description "Random forest that flags customers likely to churn, for the retention team"
run mlops models show churn:1
run mlops promote churn 1 --to staging --reason "first candidate"
# no approval yet: the gate must refuse, with exit 1 (a gate), not 2 or 3 (an error)
printf '$ %s\n' "mlops promote churn 1 --to production"
refused=0
mlops promote churn 1 --to production || refused=$?
if [ "$refused" -ne 1 ]; then echo "demo: expected the promotion to be refused with exit 1, got exit $refused" >&2; exit 1; fi
echo "(refused by the policy gate, exit 1: no approval yet)"
run mlops approve churn 1 --to production --by alice --comment "metrics per plan reviewed"
run mlops promote churn 1 --to production --reason "approved by alice"
run mlops models
run mlops lineage churn@production
run mlops card churn@production -o MODEL_CARD.md
run cat MODEL_CARD.md
run mlops history churn
run mlops audit verify
run python -c "import mlops; print(mlops.load_model('churn@production'))"
run git add .mlops/registry .mlops/policy.yaml
run git commit -q -m "register churn:1 and promote it to production"
# --- end of model registry -----------------------------------------------------------------

# --- drift checks and data validation (issue 6) ----------------------------------------------
step "next month's data arrives: has it drifted from what the production model was trained on?"
python3 "$here/examples/make_data.py" data --next-month
run mlops drift churn@production data/customers-next.csv --exclude customer_id --target churned --predict --html drift.html
run mlops drift churn@production data/customers-next.csv --exclude customer_id --preset strict --fail-on-drift \
  || echo "(exit $?: drift found; a CI job would stop here, and the verdict is recorded on the production version)"
run mlops models show churn@production

step "a schema from the training data (edited: ids grow, so no range for them), then validate next month's data"
run mlops schema infer data/customers.csv -o schema.yaml
python -c "import yaml; s = yaml.safe_load(open('schema.yaml')); [s['columns']['customer_id'].pop(k) for k in ('min', 'max')]; yaml.safe_dump(s, open('schema.yaml', 'w'), sort_keys=False)"
run cat schema.yaml
run mlops validate data/customers.csv --schema schema.yaml
run mlops validate data/customers-next.csv --schema schema.yaml || echo "(exit $?: every violation listed above)"
# --- end of drift checks and data validation ---------------------------------------------------

# --- serving (issue 7) ---------------------------------------------------------------------
# --- pipelines beyond one machine (issue 14) ---------------------------------------------------
step "a second version of the model, trained with each stage as a task on a local Ray cluster"
sed -i.bak 's/max_depth: 8/max_depth: 5/' params.yaml && rm -f params.yaml.bak
run git commit -q -am "max_depth 5: a candidate"   # committed first: Ray's workers run a commit, never the workspace
run mlops run --executor ray --dry-run    # what runs, and what the shared run cache (the remote) would restore
# the stages run as Ray tasks (each through 'mlops stage exec' in a private worktree); the driver alone
# writes pipeline.lock and the run record. No Ray cluster is running: one is started for the run.
run mlops run --executor ray
latest=$(mlops runs list --json --limit 1 | python -c "import json,sys; print(json.load(sys.stdin)['runs'][0]['id'])")
run git commit -q -am "pipeline.lock of the Ray run"

step "a teammate's fresh clone gets every result from the shared run cache: nothing runs"
run mlops push --run-cache
git clone -q . "$work/teammate"
(cd "$work/teammate" && run mlops pull --run-cache && run mlops run && run mlops status)

step "the same DAG as plain files for Airflow and Argo: one 'mlops stage exec' task per stage, then a collect task"
run mlops export airflow -o dags/churn.py --schedule @daily
run mlops export argo -o churn-workflow.yaml --image ghcr.io/example/churn-pipeline:1 --repo-url https://git.example.com/team/churn.git
run grep -c "mlops stage exec" dags/churn.py
# --- end of pipelines beyond one machine ---------------------------------------------------------

step "serving: version 2 registered, to try as a canary"
run mlops register churn models/model.pkl --run "$latest" --description "A shallower forest: the canary"
run mlops promote churn 2 --to staging --reason "candidate for a canary"

step "serve production over HTTP (in the background) and send it requests"
mlops serve churn@production --port 0 2> serve.log &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' EXIT
for _ in $(seq 300); do grep -q "http://127.0.0.1:" serve.log && break; sleep 0.2; done
url=$(grep -o "http://127.0.0.1:[0-9]*" serve.log | head -1)
for _ in $(seq 300); do curl -sf "$url/v2/health/ready" > /dev/null && break; sleep 0.2; done
cat serve.log
run curl -s "$url/predict" -d '{"records": [{"tenure": 3, "plan": "basic", "monthly_charges": 80.0}, {"tenure": 60, "plan": "premium", "monthly_charges": 20.0}]}'
echo
run curl -s "$url/invocations" -H 'Content-Type: application/json' -d '{"dataframe_split": {"columns": ["tenure", "plan", "monthly_charges"], "data": [[3, "basic", 80.0]]}}'
echo
run curl -s "$url/v2/models/churn/infer" -d '{"inputs": [{"name": "tenure", "shape": [1], "datatype": "INT64", "data": [3]}, {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]}, {"name": "monthly_charges", "shape": [1], "datatype": "FP64", "data": [80.0]}]}'
echo
run curl -s "$url/predict" -d '{"records": [{"tenure": "three", "plan": "basic"}]}'
echo

step "deploy v2 as a 20% canary: the running server follows the file, no restart"
run mlops deploy churn --canary 2 --weight 20
run cat .mlops/deployments/churn.yaml
sleep 1
python - "$url" <<'PY'
import collections, sys, httpx
counts = collections.Counter()
with httpx.Client(base_url=sys.argv[1], timeout=10) as client:
    for i in range(600):  # 600 requests from 150 customers: each customer stays on one variant
        r = client.post("/predict", json={"records": [{"tenure": i % 72, "plan": "basic", "monthly_charges": 50.0}]},
                        headers={"X-Request-ID": f"customer-{i % 150}"})
        counts[r.json()["variant"]] += 1
print("600 requests:", dict(counts))
PY
sleep 1.5
run mlops canary status churn

step "promote the canary through the registry's gates"
run mlops canary promote churn --reason "canary healthy" || echo "(refused, exit $?: production needs an approval)"
run mlops approve churn 2 --to production --by alice --comment "canary looked good"
run mlops canary promote churn --reason "canary healthy, approved by alice"
sleep 1
run curl -s "$url/predict" -d '{"records": [{"tenure": 3, "plan": "basic", "monthly_charges": 80.0}]}'
echo
curl -s "$url/metrics" | grep '^mlops_requests_total'
kill -TERM "$server"
serve_code=0
wait "$server" || serve_code=$?
trap - EXIT
tail -1 serve.log
if [ "$serve_code" -ne 0 ]; then
  echo "mlops serve exited with $serve_code after SIGTERM (a graceful stop exits 0)" >&2
  exit 1
fi

step "roll back: production goes back to the version before (audit-logged)"
run mlops rollback churn --reason "demo: v2 underperforms on premium customers"
run mlops models

step "batch prediction: a file scored in chunks, checked against the signature"
run mlops predict churn@production data/prepared/test.csv -o predictions.parquet --chunk-rows 400 --keep customer_id
run python -c "import pandas as pd; print(pd.read_parquet('predictions.parquet').head())"
run python -c "import mlops.serve.requestlog as r, mlops.repo.repo as rr, pandas as pd; f = r.log_files(rr.find_repo(), 'churn'); print(len(f), 'request-log file(s)'); print(pd.concat(pd.read_parquet(x) for x in f).tail(3))"
run git add -A .mlops/deployments .mlops/registry
run git commit -q -m "churn:2 promoted to production through a canary"

step "out of the repository: a bundle that serves from any folder, with no repository"
# --onnx: the pipeline also compiled to ONNX, checked against the pickle on its training rows;
# the server runs that form with onnxruntime, without scikit-learn (ready in a fraction of the time).
# Every label must match; the forest's probabilities may move by one tree's vote (1/60) where
# float32 takes the other branch of a split: --tolerance accepts that, knowingly.
run mlops export model churn@production -o "$work/bundle" --onnx --tolerance 0.02
digest=$(python -c "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())" "$work/bundle/mlops-bundle.json")
mkdir -p "$work/elsewhere"
cd "$work/elsewhere"
printf '$ %s\n' "(cd $work/elsewhere) mlops serve --model-dir $work/bundle --expect-digest $digest"
mlops serve --model-dir "$work/bundle" --expect-digest "$digest" --port 0 --state-dir "$work/elsewhere/state" 2> serve.log &
bundle_server=$!
trap 'kill -TERM "$bundle_server" 2>/dev/null || true' EXIT
for _ in $(seq 300); do grep -q "http://127.0.0.1:" serve.log && break; sleep 0.2; done
url=$(grep -o "http://127.0.0.1:[0-9]*" serve.log | head -1)
grep -q "its ONNX form by onnxruntime" serve.log || { echo "the bundle was not served by its ONNX form" >&2; cat serve.log >&2; exit 1; }
for _ in $(seq 300); do curl -sf "$url/v2/health/ready" > /dev/null && break; sleep 0.2; done
run curl -s "$url/v2/models/churn/infer" -d '{"inputs": [{"name": "tenure", "shape": [1], "datatype": "INT64", "data": [3]}, {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]}, {"name": "monthly_charges", "shape": [1], "datatype": "FP64", "data": [80.0]}], "outputs": [{"name": "prediction"}, {"name": "probabilities"}]}'
echo
kill -TERM "$bundle_server"
wait "$bundle_server" || { echo "the bundle's server exited with $? after SIGTERM" >&2; exit 1; }
trap - EXIT
cd "$work/project"
echo "a tampered bundle is refused (exit 3):"
cp -r "$work/bundle" "$work/tampered"
echo "# one more line" >> "$work/tampered/requirements.txt"
tampered=0
mlops serve --model-dir "$work/tampered" --port 0 || tampered=$?
[ "$tampered" -eq 3 ] || { echo "a tampered bundle was not refused with exit 3" >&2; exit 1; }

step "a container build context, Kubernetes manifests and a KServe InferenceService with a 10% canary"
run mlops export docker churn@production -o "$work/build"
run head -4 "$work/build/Dockerfile"
run mlops export k8s churn@production --replicas 3 -o "$work/k8s"
run mlops export kserve churn@production --canary 2 --weight 10 -o "$work/isvc.yaml"
# --- end of serving -----------------------------------------------------------------------


# --- production monitoring (issue 16) -----------------------------------------------------------
step "monitoring: profile the served traffic once, add labels that came later, check per window"
run mlops monitor build churn
python - <<'PY'
# the ground truth for the logged requests arrives later: here, made up from the request log
import pandas as pd, mlops.serve.requestlog as r, mlops.repo.repo as rr
logs = pd.concat(pd.read_parquet(f, columns=["request_id", "prediction"]) for f in r.log_files(rr.find_repo(), "churn"))
labels = logs.drop_duplicates("request_id").assign(churned=lambda d: d["prediction"].where(d.index % 5 != 0, 1 - d["prediction"]))
labels[["request_id", "churned"]].to_parquet("labels.parquet")
print(len(labels), "labels written to labels.parquet")
PY
run mlops labels add labels.parquet --model churn --target churned
# an alert receiver on 127.0.0.1 (Alertmanager's /api/v2/alerts would take the same post)
python - > receiver.log 2>&1 <<'PY' &
import http.server, json
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        print("alert received:", json.dumps([a["labels"] for a in body]), flush=True)
        self.send_response(200); self.end_headers()
    def log_message(self, *args): pass
server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
print("listening on", server.server_address[1], flush=True)
server.serve_forever()
PY
receiver=$!
trap 'kill "$receiver" 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" receiver.log && break; sleep 0.1; done
port=$(grep -o "listening on [0-9]*" receiver.log | grep -o "[0-9]*$")
run mlops monitor check churn --window 1h --since 1d --min-accuracy 0.9 --notify "http://127.0.0.1:$port/api/v2/alerts" \
  --on-breach "echo retrain: mlops run --downstream train" --fail-on quality \
  || echo "(exit $?: a breach; the alert went to the receiver once, the command ran once, both are in the history)"
run mlops monitor history churn
cat receiver.log
kill "$receiver" 2>/dev/null || true
trap - EXIT
run mlops export prometheus-rules churn -o rules.yaml
run mlops drift data/prepared/train.csv data/customers-next.csv --profile --exclude customer_id,churned
# --- end of production monitoring ---------------------------------------------------------------


# --- git hooks (issue 8) --------------------------------------------------------------------
step "git hooks: a commit whose data changed without its pointer file is refused"
run mlops hooks install
echo "99999,12,basic,50.0,0" >> data/customers.csv
run git commit -q -am "forgot mlops add" || echo "(exit $?: the pre-commit hook refused it)"
run mlops add data/customers.csv
run git commit -q -am "one more customer, recorded" || echo "(exit $?: the data is recorded now, but the pipeline has not run on it)"
run mlops run
run git commit -q -am "one more customer, recorded and the pipeline rerun"
run mlops hooks status
# --- end of git hooks ---------------------------------------------------------------------------

# --- experiments (issue 19) ----------------------------------------------------------------
step "experiments: a small sweep, each in a workspace of its own (params.yaml and the outputs stay as they are)"
run mlops exp run -S 'train.n_estimators=30,60,90' -j 2 --name trees
run mlops exp show --sort=-metrics.train_accuracy --only-changed
best=$(mlops exp show --json --sort=-metrics.train_accuracy | python -c "import json,sys; print(json.load(sys.stdin)['sweeps'][0]['experiments'][0]['name'])")
step "apply the best one: its params and outputs into the workspace, then commit it as usual"
run mlops exp apply "$best"
run mlops run
run git commit -q -am "the best of the trees sweep: $best"
# --- end of experiments ---------------------------------------------------------------------------

# --- feature store (issue 17) ------------------------------------------------------------------
bash "$here/examples/features/demo.sh"
# --- end of feature store -----------------------------------------------------------------------

step "the audit trail is whole: every registration, approval, transition, rollback and drift verdict"
run mlops history churn
run mlops audit verify

# --- the web interface (issue 18) ---------------------------------------------------------------
step "mlops ui: runs, models, the audit log, the deployment and the pipeline in a browser (read-only, 127.0.0.1)"
mlops ui --port 0 --no-browser > ui.log 2>&1 &
ui=$!
for _ in $(seq 300); do grep -q "http://127.0.0.1:" ui.log && break; sleep 0.2; done
ui_url=$(grep -o "http://127.0.0.1:[0-9]*/" ui.log | head -1)
python -c "import httpx, re, sys; page = httpx.get(sys.argv[1] + 'runs', timeout=60).text; print(re.search(r'id=.matched.>(\d+)<', page).group(1), 'run(s) listed at', sys.argv[1] + 'runs')" "$ui_url"
kill -TERM "$ui"
wait "$ui" || true
# --- end of the web interface -------------------------------------------------------------------

step "done: explore $work/project (open plots.html and drift.html in a browser)"
echo "browse it: cd $work/project && mlops ui    # http://127.0.0.1:8765/"
