#!/bin/sh
# lm_forward.sh — causal-LM forward throughput against the machine's FMA peak and eager PyTorch,
# at 1 and 2 threads, for two shapes: lm-small (d 192, 4 layers, N 16, expand 2, V 256; 16 windows
# of 256 tokens, its evaluation batch) and a mamba-130m-shaped random model (d 768, 24 layers,
# V 50,280, tied head; one window of 1024 tokens). Run from the build tree after `make`:
#   bench/lm_forward.sh [REPS]        (default 3 timed forwards per point, median reported)
# Per point: bench/lm_forward/lm_forward.c (the engine's inference forward with the chunked
# LM-head cross-entropy; FMA peak measured before each timed forward, median of the fractions),
# then bench/torch/lm_speed.py on the same shape and thread count when /usr/bin/python3 has torch
# (apt-get install python3-torch), so each ratio comes from one run. Peak RSS by /usr/bin/time.
set -eu
REPS=${1:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
[ -f "$BUILD/engine/libplengine.a" ] || { echo "lm_forward.sh: run from a built tree (make)" >&2; exit 1; }
# link OpenBLAS exactly as the engine's binaries do (configure's OPENBLAS_LIBS: the OpenMP build when installed)
BLAS=$(sed -n 's/^OPENBLAS_LIBS = //p' "$BUILD/Makefile")
cc -O2 -fopenmp -I"$SRC/engine" -I"$SRC/spec" -o "$TMP/lm_forward" "$SRC/bench/lm_forward/lm_forward.c" \
    "$BUILD/engine/libplengine.a" "$BUILD/spec/libplspec.a" $BLAS -ljansson -lz -lm
TORCH=0
/usr/bin/python3 -c 'import torch' 2>/dev/null && TORCH=1
grep -m1 'model name' /proc/cpuinfo
echo "OpenBLAS: $(ldd "$TMP/lm_forward" | sed -n 's/.*libopenblas.so.0 => \([^ ]*\).*/\1/p')"
printf '| model | B x T | threads | forward s | tokens/s | GFLOP/s | FMA peak GFLOP/s | %% of peak | peak RSS MiB | eager PyTorch tokens/s | ratio |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
point() { # name D LAYERS V T B threads
    name=$1 D=$2 NL=$3 V=$4 T=$5 B=$6 th=$7
    OMP_NUM_THREADS=$th OPENBLAS_NUM_THREADS=$th /usr/bin/time -f %M -o "$TMP/rss" "$TMP/lm_forward" \
        "$D" "$NL" "$V" "$T" "$B" "$th" "$REPS" > "$TMP/out"
    cat "$TMP/out" >&2
    pt=-
    if [ "$TORCH" = 1 ]; then
        /usr/bin/python3 "$SRC/bench/torch/lm_speed.py" --d "$D" --layers "$NL" --vocab "$V" --seq "$T" --batch "$B" \
            --threads "$th" --steps "$REPS" > "$TMP/torch"
        cat "$TMP/torch" >&2
        pt=$(tr -d ' \n' < "$TMP/torch" | sed -n 's/.*"tokens_per_s":\([0-9.]*\).*/\1/p')
    fi
    awk -v rss="$(cat "$TMP/rss")" -v th="$th" -v name="$name" -v pt="$pt" '
        function num(key,   s) { s = $0; if (!match(s, "\"" key "\":[0-9.]+")) return 0
                                 s = substr(s, RSTART, RLENGTH); sub(/.*:/, "", s); return s + 0 }
        { t = num("tokens_per_s")
          printf "| %s | %d x %d | %d | %.3f | %.0f | %.1f | %.1f | %.1f | %.0f | %s | %s |\n", name, num("B"), num("T"),
                 th, num("forward_s"), t, num("gflops"), num("fma_peak_gflops"), 100 * num("peak_fraction"),
                 rss / 1024, pt, pt == "-" ? "-" : sprintf("%.1fx", t / pt) }' "$TMP/out"
}
for th in 1 2; do point lm-small 192 4 256 256 16 "$th"; done
for th in 1 2; do point mamba-130m-shape 768 24 50280 1024 1 "$th"; done
