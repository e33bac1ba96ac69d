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

step "a pipeline: prepare -> train -> evaluate (one stage per customer plan)"
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

step "done: explore $work/project (open plots.html in a browser)"
