#!/usr/bin/env bash
# deploy/quickstart.sh — from a fresh Debian 12 machine to a trained, evaluated model.
#
# Installs the build dependencies and Debian's Fashion-MNIST (dataset-fashion-mnist), builds
# prunelab (deploy/test.sh --build-only), trains the "small" preset unless
# var/models/fm-small.safetensors already exists, evaluates it on the test split and prints
# the result JSON. Re-running it skips everything already done.
#
# Environment: EPOCHS (default 10), THREADS (default 2), and deploy/test.sh's variables.
set -euo pipefail

cd "$(dirname "$0")/.."
start=$(date +%s)
EPOCHS=${EPOCHS:-10}
THREADS=${THREADS:-2}
MODELS=var/models
INIT=$MODELS/fm-small.init.safetensors
MODEL=$MODELS/fm-small.safetensors

say() { printf '==> %s\n' "$*"; }
elapsed() {
    local s=$(($(date +%s) - start))
    printf '==> elapsed %dm%02ds\n' $((s / 60)) $((s % 60))
}
trap elapsed EXIT

EXTRA_PACKAGES="dataset-fashion-mnist ${EXTRA_PACKAGES:-}" ./deploy/test.sh --build-only

if grep -q -- '-fsanitize' Makefile 2>/dev/null; then
    say "warning: this tree is configured with sanitizers; training will be very slow"
    say "         (rebuild without them: ./deploy/test.sh --fresh --build-only)"
fi

mkdir -p "$MODELS"
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
