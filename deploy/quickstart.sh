#!/usr/bin/env bash
# deploy/quickstart.sh — from a fresh Debian 12 machine to a running experiment service.
#
# Installs the build dependencies and Debian's Fashion-MNIST (dataset-fashion-mnist), builds
# (deploy/test.sh --build-only, which also installs the dashboard's npm packages into
# web/node_modules; chromium is only needed by the tests), trains the "small" preset unless a
# trained checkpoint exists (var/train/fm-small.safetensors), evaluates it on the test split,
# starts prunelabd on ./var (SQLite database var/prunelab.db, dashboard from ./web) unless one
# already serves it, creates an admin token (var/quickstart.token), registers the model as
# "fm-small", submits the notes' ablation grid (6 components x 4 rates = 24 cells; an
# Idempotency-Key makes re-runs resubmit nothing) and prints the dashboard URL of that job (its
# heatmap fills in as cells finish) and the curl commands to follow it. Re-running it skips
# everything already done.
#
# Environment: EPOCHS (default 10), THREADS (default 2), PORT (default 8080), and
# deploy/test.sh's variables.
set -euo pipefail

cd "$(dirname "$0")/.."
start=$(date +%s)
EPOCHS=${EPOCHS:-10}
THREADS=${THREADS:-2}
PORT=${PORT:-8080}
TRAIN_DIR=var/train
INIT=$TRAIN_DIR/fm-small.init.safetensors
MODEL=$TRAIN_DIR/fm-small.safetensors
API=http://127.0.0.1:$PORT

say() { printf '==> %s\n' "$*"; }
elapsed() {
    local s=$(($(date +%s) - start))
    printf '==> elapsed %dm%02ds\n' $((s / 60)) $((s % 60))
}
trap elapsed EXIT

EXTRA_PACKAGES="dataset-fashion-mnist ${EXTRA_PACKAGES:-}" ./deploy/test.sh --build-only

# The dashboard's charts come from npm (web/package.json); deploy/test.sh installed them unless
# told not to.
if [ ! -f web/node_modules/plotly.js-dist-min/plotly.min.js ]; then
    command -v npm >/dev/null 2>&1 || { say "npm is missing (apt-get install npm): the dashboard needs it"; exit 1; }
    say "npm ci --prefix web"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix web --no-audit --no-fund
fi

if grep -q -- '-fsanitize' Makefile 2>/dev/null; then
    say "warning: this tree is configured with sanitizers; training will be very slow"
    say "         (rebuild without them: ./deploy/test.sh --fresh --build-only)"
fi

mkdir -p "$TRAIN_DIR"
# earlier versions trained straight into var/models (the service's directory)
if [ ! -f "$MODEL" ] && [ -f var/models/fm-small.safetensors ] && [ ! -f var/prunelab.db ]; then
    mv var/models/fm-small.safetensors "$MODEL"
fi
if [ -f "$MODEL" ]; then
    say "$MODEL exists; skipping training (delete it to retrain)"
else
    if [ ! -f "$INIT" ]; then
        say "prunelab init -> $INIT"
        ./prunelab init --preset small --dataset fashion-mnist --out "$INIT"
    fi
    say "prunelab train ($EPOCHS epochs, $THREADS threads) -> $MODEL"
    ./prunelab train --model "$INIT" --dataset fashion-mnist --epochs "$EPOCHS" \
        --threads "$THREADS" --out "$MODEL"
fi

say "prunelab eval on the test split"
result=$(./prunelab eval --model "$MODEL" --dataset fashion-mnist --split test)
if command -v jq >/dev/null 2>&1 && jq -e . >/dev/null 2>&1 <<<"$result"; then
    jq . <<<"$result"
else
    printf '%s\n' "$result"
fi

# ---------------------------------------------------------------- the service
if curl -fsS "$API/healthz" >/dev/null 2>&1; then
    say "prunelabd already serves $API"
else
    say "starting prunelabd on $API (data dir ./var, log var/prunelabd.log)"
    nohup ./prunelabd --listen "127.0.0.1:$PORT" --data-dir var --web-dir "$PWD/web" >>var/prunelabd.log 2>&1 &
    echo $! >var/prunelabd.pid
    for _ in $(seq 100); do
        curl -fsS "$API/healthz" >/dev/null 2>&1 && break
        kill -0 "$(cat var/prunelabd.pid)" 2>/dev/null || { tail -5 var/prunelabd.log; exit 1; }
        sleep 0.1
    done
    curl -fsS "$API/healthz" >/dev/null || { say "prunelabd did not come up; see var/prunelabd.log"; exit 1; }
fi
if [ "$(curl -s -o /dev/null -w '%{http_code}' "$API/")" != 200 ]; then
    say "warning: $API/ does not serve the dashboard (a prunelabd from an older build?);"
    say "         restart it: kill \$(cat var/prunelabd.pid) and run this script again"
fi
if [ ! -s var/quickstart.token ]; then
    (umask 077 && ./prunelabd user add "quickstart-$(date +%s)" --admin --data-dir var >var/quickstart.token)
fi
TOKEN=$(tr -d '[:space:]' <var/quickstart.token)
AUTH=(-H "Authorization: Bearer $TOKEN")

if [ "$(curl -s -o /dev/null -w '%{http_code}' "$API/api/v1/models/fm-small")" != 200 ]; then
    say "registering $MODEL as model fm-small"
    curl -fsS "${AUTH[@]}" -X PUT --data-binary @"$MODEL" "$API/api/v1/models/fm-small" >/dev/null
fi

say "submitting the notes' ablation grid (linear_out, mlp, linear_gate, linear_in, conv1d, linear_B_C x 0.3 0.5 0.7 0.9)"
job=$(curl -fsS "${AUTH[@]}" -H 'Idempotency-Key: quickstart-ablation' -H 'Content-Type: application/json' \
    --data-binary '{"type": "ablation", "model": "fm-small",
      "components": ["linear_out", "mlp", "linear_gate", "linear_in", "conv1d", "linear_B_C"],
      "rates": [0.3, 0.5, 0.7, 0.9]}' "$API/api/v1/jobs")
id=$(jq -r .id <<<"$job")
cat <<EOF

prunelabd serves $API (database var/prunelab.db, log var/prunelabd.log, pid in var/prunelabd.pid).
The demo ablation is job $id ($(jq -r .cells <<<"$job") cells). Watch its heatmap fill in:
  $API/#/jobs/$id
Or follow it with curl:
  curl -s $API/api/v1/jobs/$id | jq .
  curl -s "$API/api/v1/jobs/$id?wait=30" | jq .            # long-poll for the next change
  curl -s $API/api/v1/jobs/$id/results.csv                  # one row per finished cell
  curl -s $API/api/v1/jobs | jq .                           # every job
Your admin token is in var/quickstart.token (send it as "Authorization: Bearer TOKEN" to submit;
in the dashboard, paste it once into the token box in the header).
Dashboard: $API/ (jobs, models, new experiment). From another machine: ssh -L $PORT:127.0.0.1:$PORT HOST.
Stop the service: kill \$(cat var/prunelabd.pid)
EOF
