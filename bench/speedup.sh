#!/usr/bin/env bash
# bench/speedup.sh — inference speed-up of pruned / shrunk / lite checkpoints over a baseline.
#
# Runs `prunelab bench --model M --batch 64 --threads T` (inference samples/s, median of --steps
# forward passes) for the baseline and every candidate, interleaved over ROUNDS rounds so that
# machine noise hits all of them alike, and prints one markdown row per candidate: median samples/s
# and the median over rounds of the per-round ratio to the baseline.
#
# Usage: bench/speedup.sh BASELINE.safetensors NAME=CANDIDATE.safetensors ...
# Environment: THREADS (2), ROUNDS (7), STEPS (20)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PRUNELAB_BIN:-./prunelab}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-7}
STEPS=${STEPS:-20}
base=$1
shift
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sps() { "$BIN" bench --model "$1" --batch 64 --threads "$THREADS" --steps "$STEPS" --warmup-steps 3 --json | jq -r .infer_samples_per_s; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for r in $(seq "$ROUNDS"); do
    b=$(sps "$base")
    echo "$b" >>"$out/base"
    for arg in "$@"; do
        name=${arg%%=*} file=${arg#*=}
        s=$(sps "$file")
        echo "$s" >>"$out/$name.sps"
        awk -v a="$s" -v b="$b" 'BEGIN {print a / b}' >>"$out/$name.ratio"
    done
    : "$r"
done
printf 'baseline %s: %.0f samples/s (batch 64, %s threads, median of %s rounds; load %s)\n\n' "$base" \
    "$(median <"$out/base")" "$THREADS" "$ROUNDS" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| model | samples/s | speed-up |\n|---|---|---|\n'
for arg in "$@"; do
    name=${arg%%=*}
    printf '| %s | %.0f | %.2fx |\n' "$name" "$(median <"$out/$name.sps")" "$(median <"$out/$name.ratio")"
done
