#!/usr/bin/env bash
# deploy/lm_demo.sh — the language-model demo, on top of deploy/quickstart.sh (run that first: it
# builds, starts prunelabd on ./var and writes the admin token var/quickstart.token).
#
# Fetches the Brown corpus as plain text (deploy/brown.sh -> var/datasets/brown/brown.txt),
# trains a byte-level lm-small for a short budget (300 steps: 2-4 minutes, about 2.3 bits per byte,
# not yet below the 7-gram) unless var/train/brown-lm.safetensors exists,
# evaluates it (bits per byte on the last 10% of the file) next to the byte 7-gram baseline,
# registers the text with prunelabd as dataset text:brown.txt and the model as "brown-lm", submits
# the notes' ablation grid on it (out_proj, gate, in_proj, conv1d, x_proj_bc x 0.3 0.5 0.7 0.9;
# the LM has no MLP) with evaluation capped at MAX_TOKENS validation tokens, and prints the
# dashboard URL of that job (a perplexity heatmap). Re-running it skips everything already done.
# A longer training that beats the 7-gram: bench/lm_brown.sh (bench/README.md).
#
# Environment: STEPS (default 300), THREADS (2), PORT (8080), MAX_TOKENS (32768)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-300}
THREADS=${THREADS:-2}
PORT=${PORT:-8080}
MAX_TOKENS=${MAX_TOKENS:-32768}
API=http://127.0.0.1:$PORT
TEXT=$PWD/var/datasets/brown/brown.txt
MODEL=var/train/brown-lm.safetensors
say() { printf '==> %s\n' "$*"; }

[ -x ./prunelab ] || { say "no ./prunelab: run ./deploy/quickstart.sh first"; exit 1; }
curl -fsS "$API/healthz" >/dev/null 2>&1 || { say "no prunelabd on $API: run ./deploy/quickstart.sh first"; exit 1; }
[ -s var/quickstart.token ] || { say "no var/quickstart.token: run ./deploy/quickstart.sh first"; exit 1; }
TOKEN=$(tr -d '[:space:]' <var/quickstart.token)
AUTH=(-H "Authorization: Bearer $TOKEN")

./deploy/brown.sh
mkdir -p var/train
if [ -f "$MODEL" ]; then
    say "$MODEL exists; skipping training (delete it to retrain)"
else
    ./prunelab init --task lm --preset lm-small --vocab 256 --out var/train/brown-lm.init.safetensors
    say "prunelab train ($STEPS steps of 16 x 256 bytes, $THREADS threads) -> $MODEL"
    ./prunelab train --model var/train/brown-lm.init.safetensors --dataset "text:$TEXT" --seq-len 256 \
        --batch 16 --lr 3e-3 --max-steps "$STEPS" --threads "$THREADS" --no-checkpoint --out "$MODEL"
fi
say "validation bits per byte: the model, then the byte 7-gram"
./prunelab eval --model "$MODEL" --dataset "text:$TEXT" --max-tokens 262144 --threads "$THREADS" |
    jq -c '{bits_per_byte, perplexity, tokens}'
./prunelab ngram --dataset "text:$TEXT" --order 7 | jq -c '{bits_per_byte, val_tokens}'

if ! curl -fsS "$API/api/v1/datasets" | jq -e '.datasets[] | select(.name == "text:brown.txt")' >/dev/null; then
    say "registering $TEXT as dataset text:brown.txt"
    curl -fsS "${AUTH[@]}" -H 'Content-Type: application/json' \
        --data-binary "$(jq -nc --arg p "$TEXT" '{name: "text:brown.txt", path: $p}')" "$API/api/v1/datasets" >/dev/null
fi
if [ "$(curl -s -o /dev/null -w '%{http_code}' "$API/api/v1/models/brown-lm")" != 200 ]; then
    say "registering $MODEL as model brown-lm"
    curl -fsS "${AUTH[@]}" -X PUT --data-binary @"$MODEL" "$API/api/v1/models/brown-lm?dataset=text:brown.txt" >/dev/null
fi

say "submitting the ablation grid on brown-lm (5 components x 4 rates, eval capped at $MAX_TOKENS tokens)"
job=$(curl -fsS "${AUTH[@]}" -H 'Idempotency-Key: lm-demo-ablation' -H 'Content-Type: application/json' \
    --data-binary "{\"type\": \"ablation\", \"model\": \"brown-lm\", \"dataset\": \"text:brown.txt\",
      \"components\": [\"linear_out\", \"linear_gate\", \"linear_in\", \"conv1d\", \"linear_B_C\"],
      \"rates\": [0.3, 0.5, 0.7, 0.9], \"seq_len\": 256, \"eval\": {\"max_tokens\": $MAX_TOKENS}}" "$API/api/v1/jobs")
id=$(jq -r .id <<<"$job")
cat <<EOF

The LM ablation is job $id ($(jq -r .cells <<<"$job") cells). Its perplexity heatmap:
  $API/#/jobs/$id
  curl -s $API/api/v1/jobs/$id/results.csv
EOF
