/* fma_peak.c — the machine's measured single-precision FMA peak, the denominator of every
 * "% of FMA peak" in bench/README.md (kernels in fma_peak.h).
 * Usage: fma_peak [THREADS] [SECONDS]   — prints one JSON line per vector width (avx2, avx512).
 * Built and run by bench/fma_peak.sh; CPU features are checked at run time. */
#include <stdio.h>
#include <stdlib.h>

#include "fma_peak.h"

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    double seconds = argc > 2 ? atof(argv[2]) : 1.0;
    if (threads < 1 || threads > 256) threads = 1;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        printf("{\"isa\":\"avx2\",\"threads\":%d,\"gflops\":%.1f}\n", threads, fma_peak_gflops(8, threads, seconds));
    if (__builtin_cpu_supports("avx512f"))
        printf("{\"isa\":\"avx512\",\"threads\":%d,\"gflops\":%.1f}\n", threads, fma_peak_gflops(16, threads, seconds));
    return 0;
}
