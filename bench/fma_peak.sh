#!/bin/sh
# fma_peak.sh — the machine's single-precision FMA peak at 1 and 2 threads, AVX2 and AVX-512
# (bench/fma_peak/fma_peak.h: 16 independent vfmadd chains per thread, no memory traffic; best of
# 5 runs of SECONDS/5 each), then OpenBLAS sgemm on the mamba-130m forward's products against it
# (sgemm_shapes.c: the ceiling of a forward whose products run on OpenBLAS). The denominator of
# "% of FMA peak" in bench/README.md; the LM forward bench measures it again beside every timed
# forward, since the clock of a shared VM drifts. Run from the build tree after `make`:
#   bench/fma_peak.sh [SECONDS]
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cc -O2 -fopenmp -o "$TMP/fma_peak" "$SRC/bench/fma_peak/fma_peak.c"
# OpenBLAS linked as the engine's binaries are (configure's OPENBLAS_LIBS), else pkg-config's
BLAS=$( [ -f Makefile ] && sed -n 's/^OPENBLAS_LIBS = //p' Makefile || true)
[ -n "$BLAS" ] || BLAS=$(pkg-config --libs openblas)
cc -O2 -fopenmp -o "$TMP/sgemm_shapes" "$SRC/bench/fma_peak/sgemm_shapes.c" $BLAS
grep -m1 'model name' /proc/cpuinfo
for th in 1 2; do "$TMP/fma_peak" "$th" "${1:-1}"; done
for th in 1 2; do OMP_NUM_THREADS=$th "$TMP/sgemm_shapes" "$th"; done
