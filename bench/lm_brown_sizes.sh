#!/usr/bin/env bash
# bench/lm_brown_sizes.sh — the short comparison that chose bench/lm_brown.sh's preset: each size
# trained for about the same wall time (~1.5-2 min on 2 threads; step counts from each size's
# measured tokens/s) on text:brown.txt, seq 256, batch 16, lr 3e-3, then its val bits per byte
# (the trainer's final val loss / ln 2, whole validation split).
# Usage: bench/lm_brown_sizes.sh   Environment: THREADS (2), OUT (var/bench/lm_brown_sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
OUT=${OUT:-var/bench/lm_brown_sizes}
BIN=${PRUNELAB_BIN:-./prunelab}
DS=text:var/datasets/brown/brown.txt
mkdir -p "$OUT"
./deploy/brown.sh >&2
printf '| model | params | steps | tokens seen | wall s | tokens/s | val bits per byte |\n|---|---|---|---|---|---|---|\n'
while read -r name steps dims; do
    # shellcheck disable=SC2086 # dims are separate flags
    "$BIN" init --task lm $dims --vocab 256 --out "$OUT/$name.init.safetensors" >/dev/null
    t0=$(date +%s.%N)
    "$BIN" train --model "$OUT/$name.init.safetensors" --dataset "$DS" --seq-len 256 --batch 16 --lr 3e-3 \
        --max-steps "$steps" --threads "$THREADS" --no-checkpoint --report-every 10 --out "$OUT/$name.safetensors" \
        >"$OUT/$name.log" 2>&1
    t1=$(date +%s.%N)
    params=$("$BIN" inspect "$OUT/$name.safetensors" | jq -r .params)
    tps=$(sed -nE 's/.* ([0-9]+) tokens\/s .*/\1/p' "$OUT/$name.log" | sort -g |
        awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
    loss=$(sed -nE 's/.*val loss ([0-9.]+) .*/\1/p' "$OUT/$name.log" | tail -1)
    printf '| %s (%s) | %s | %s | %s | %.0f | %s | %.3f |\n' "$name" "$dims" "$params" "$steps" $((steps * 16 * 256)) \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" "$tps" "$(awk -v l="$loss" 'BEGIN{print l / log(2)}')"
done <<'ROWS'
lm-tiny 4800 --preset lm-tiny
d128 270 --preset lm-small --d-model 128
lm-small 225 --preset lm-small
ROWS
