#!/bin/sh
# lm_forward.sh — forward tokens/s and peak RSS (/usr/bin/time -f %M) of a mamba-130m-shaped
# random causal LM (d 768, 24 layers, N 16, expand 2, V 50,280, tied head) on one window of
# T 1024 tokens, at 1 and 2 threads. Run from the build tree after `make`:
#   bench/lm_forward.sh [REPS] [D LAYERS V T B]     (default 3 timed forwards, median reported)
set -eu
REPS=${1:-3}
D=${2:-768} NL=${3:-24} V=${4:-50280} T=${5:-1024} B=${6:-1}
SRC=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cc -O2 -fopenmp -I"$SRC/engine" -I"$SRC/spec" -o "$TMP/lm_forward" "$SRC/bench/lm_forward/lm_forward.c" \
    "$SRC/engine/libplengine.a" "$SRC/spec/libplspec.a" -L/usr/lib/x86_64-linux-gnu/openblas-pthread/ -lopenblas \
    -ljansson -lz -lm
grep -m1 'model name' /proc/cpuinfo
printf '| threads | forward s (median of %s) | tokens/s | GFLOP/s | peak RSS MiB |\n|---|---|---|---|---|\n' "$REPS"
for th in 1 2; do
    OPENBLAS_NUM_THREADS=$th /usr/bin/time -f %M -o "$TMP/rss" "$TMP/lm_forward" "$D" "$NL" "$V" "$T" "$B" "$th" \
        "$REPS" > "$TMP/out"
    cat "$TMP/out" >&2
    rss=$(cat "$TMP/rss")
    awk -v rss="$rss" -v th="$th" '{
        match($0, /"forward_s":[0-9.]+/); f = substr($0, RSTART + 12, RLENGTH - 12)
        match($0, /"tokens_per_s":[0-9.]+/); t = substr($0, RSTART + 15, RLENGTH - 15)
        match($0, /"gflops":[0-9.]+/); g = substr($0, RSTART + 9, RLENGTH - 9)
        printf "| %d | %.3f | %.0f | %.1f | %.0f |\n", th, f, t, g, rss / 1024 }' "$TMP/out"
done
