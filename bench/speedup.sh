#!/usr/bin/env bash
# bench/speedup.sh — inference speed-up of pruned / shrunk / lite checkpoints over a baseline.
#
# For every candidate, ROUNDS runs of
#   prunelab bench --model CANDIDATE --against BASELINE --batch 64 --threads T --steps STEPS --json
# which alternates one forward pass of the baseline and one of the candidate on the same input and
# reports the median per-pair ratio (adjacent passes share the machine's drift, so the ratio is
# steady where separate timings are not). Prints one markdown row per candidate: median samples/s
# of the candidate, and the median over rounds of the per-round speed-up with its range.
#
# Usage: bench/speedup.sh BASELINE.safetensors NAME=CANDIDATE.safetensors ...
# Environment: THREADS (2), ROUNDS (5), STEPS (100 pairs per round), PRUNELAB_BIN (./prunelab)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PRUNELAB_BIN:-./prunelab}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-5}
STEPS=${STEPS:-100}
base=$1
shift
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for r in $(seq "$ROUNDS"); do
    for arg in "$@"; do
        name=${arg%%=*} file=${arg#*=}
        "$BIN" bench --model "$file" --against "$base" --batch 64 --threads "$THREADS" --steps "$STEPS" \
            --warmup-steps 3 --json >"$out/j"
        jq -r .infer_samples_per_s "$out/j" >>"$out/$name.sps"
        jq -r .against_infer_samples_per_s "$out/j" >>"$out/base"
        jq -r .speedup "$out/j" >>"$out/$name.ratio"
    done
    : "$r"
done
printf 'baseline %s: %.0f samples/s (batch 64, %s threads, %s rounds of %s paired passes; load %s)\n\n' "$base" \
    "$(median <"$out/base")" "$THREADS" "$ROUNDS" "$STEPS" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| model | samples/s | speed-up (median of rounds) | range over rounds |\n|---|---|---|---|\n'
for arg in "$@"; do
    name=${arg%%=*}
    printf '| %s | %.0f | %.2fx | %.2f-%.2f |\n' "$name" "$(median <"$out/$name.sps")" "$(median <"$out/$name.ratio")" \
        "$(sort -g "$out/$name.ratio" | head -1)" "$(sort -g "$out/$name.ratio" | tail -1)"
done
