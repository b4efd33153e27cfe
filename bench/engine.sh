#!/usr/bin/env bash
# bench/engine.sh — engine throughput table for bench/README.md.
#
# Runs `prunelab bench` for a preset at 1 and 2 threads, REPEAT times each, interleaved so that
# machine noise hits both alike, and prints a markdown row per thread count with the medians:
# training and inference samples/s, achieved GFLOP/s, sgemm GFLOP/s (same process, same kernel)
# and the roofline ratios.
#
# Usage: bench/engine.sh [PRESET] [BATCH] [REPEAT]     (defaults: small 64 5)
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${1:-small}
BATCH=${2:-64}
REPEAT=${3:-5}
BIN=${PRUNELAB_BIN:-./prunelab}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for r in $(seq "$REPEAT"); do
    for t in 1 2; do
        "$BIN" bench --preset "$PRESET" --batch "$BATCH" --threads "$t" --steps 10 --json >"$out/$t.$r.json"
    done
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
field() { for f in "$out/$1".*.json; do jq -r ".$2" "$f"; done | median; }

kernel=$(jq -r .blas_kernel "$out/1.1.json")
flops=$(jq -r .flops_per_sample "$out/1.1.json")
printf '%s, batch %s, %s FLOPs/sample (forward), BLAS kernel %s, median of %s runs, load %s\n\n' \
    "$PRESET" "$BATCH" "$flops" "$kernel" "$REPEAT" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| threads | train samples/s | infer samples/s | train GFLOP/s | infer GFLOP/s | sgemm GFLOP/s | train roofline | infer roofline |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for t in 1 2; do
    printf '| %s | %.0f | %.0f | %.1f | %.1f | %.1f | %.2f | %.2f |\n' "$t" \
        "$(field "$t" train_samples_per_s)" "$(field "$t" infer_samples_per_s)" \
        "$(field "$t" train_gflops)" "$(field "$t" infer_gflops)" "$(field "$t" sgemm_gflops)" \
        "$(field "$t" train_roofline)" "$(field "$t" infer_roofline)"
done
