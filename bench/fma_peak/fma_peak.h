/* fma_peak.h — the measured single-precision FMA peak of this machine, for bench programs:
 * fma_peak_gflops(width, threads, seconds) runs ACC independent accumulator chains of vfmadd on
 * every thread (no loads, no stores: bound by FMA throughput alone) and returns the best of 5
 * GFLOP/s of all threads together; one FMA on W float lanes counts as 2 W flops. width 16 =
 * AVX-512, 8 = AVX2 (+FMA); fma_peak_best() picks the widest the CPU has. */
#ifndef PL_BENCH_FMA_PEAK_H
#define PL_BENCH_FMA_PEAK_H
#include <immintrin.h>
#include <omp.h>
#include <time.h>

#define ACC 16

static double fma_peak_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

__attribute__((target("avx2,fma"))) static float run_avx2(long iters)
{
    __m256 acc[ACC];
    __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < ACC; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < ACC; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    }
    __m256 s = acc[0];
    for (int i = 1; i < ACC; i++) s = _mm256_add_ps(s, acc[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}

__attribute__((target("avx512f"))) static float run_avx512(long iters)
{
    __m512 acc[ACC];
    __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < ACC; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < ACC; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
    __m512 s = acc[0];
    for (int i = 1; i < ACC; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s); /* every chain feeds the result, so none is dropped */
}

/* GFLOP/s of all threads together, each running the kernel for about `seconds`; the best of 5. */
static double fma_peak_gflops(int width, int threads, double seconds)
{
    long iters = 1L << 20;
    volatile float sink = 0;
    for (;;) { /* calibrate on one thread */
        double t0 = fma_peak_now();
        sink += width == 16 ? run_avx512(iters) : run_avx2(iters);
        if (fma_peak_now() - t0 > seconds / 5 || iters > (1L << 40)) break;
        iters *= 2;
    }
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = fma_peak_now();
#pragma omp parallel num_threads(threads)
        {
            float s = width == 16 ? run_avx512(iters) : run_avx2(iters);
#pragma omp atomic
            sink += s;
        }
        double dt = fma_peak_now() - t0, g = 2.0 * width * ACC * (double)iters * threads / dt / 1e9;
        if (g > best) best = g;
    }
    (void)sink;
    return best;
}

/* The widest FMA the CPU has: 16 (AVX-512F) or 8 (AVX2 + FMA), 0 without FMA. */
static int fma_peak_width(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 16;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 8;
    return 0;
}
#endif
