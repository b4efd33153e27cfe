/* blas.h — choosing, checking and measuring the OpenBLAS kernel set (DESIGN.md section 8).
 *
 * A DYNAMIC_ARCH OpenBLAS picks its kernels once, when the library loads (before main), from
 * the CPU model or the OPENBLAS_CORETYPE variable. Older builds do not know newer CPUs and fall
 * back to the generic "Prescott" kernels, several times slower. So the first line of main() is
 * blas_select_or_reexec(): it detects the instruction set with cpuid and, when the loaded
 * kernels are not the ones wanted, sets OPENBLAS_CORETYPE and re-executes the same binary once.
 *
 * Environment:
 *   OPENBLAS_CORETYPE        set by the user: respected as is (no re-exec).
 *   PRUNELAB_BLAS_CORETYPE   "auto": detect even if OPENBLAS_CORETYPE is set; "off": leave
 *                            OpenBLAS alone; any other value: force that kernel name.
 *   PRUNELAB_BLAS_REEXEC     internal marker of a re-executed image (guards against loops);
 *                            removed again before blas_select_or_reexec returns.
 *   PRUNELAB_BLAS_FAULT      testing aid: blas_verify treats the kernel of that name as wrong.
 * After a re-exec OPENBLAS_CORETYPE holds the chosen name, so every child process (a cell
 * spawned by prunelabd, a test's subprocess) inherits the choice and starts without re-exec.
 *
 * Threads: OpenBLAS is never used across fork(); exec'ing a fresh image is fine.
 */
#ifndef PL_BLAS_H
#define PL_BLAS_H

#include <stddef.h>

#define BLAS_ENV_CHOICE "PRUNELAB_BLAS_CORETYPE"
#define BLAS_ENV_MARKER "PRUNELAB_BLAS_REEXEC"
#define BLAS_ENV_FAULT "PRUNELAB_BLAS_FAULT"

/* How the running kernel was chosen (blas_origin()). */
typedef enum {
    BLAS_ORIGIN_LIBRARY = 0, /* OpenBLAS's own detection (nothing better known, or "off") */
    BLAS_ORIGIN_AUTO,        /* our cpuid detection (possibly after a re-exec) */
    BLAS_ORIGIN_USER,        /* OPENBLAS_CORETYPE given by the user */
    BLAS_ORIGIN_FORCED,      /* PRUNELAB_BLAS_CORETYPE=NAME */
    BLAS_ORIGIN_FALLBACK,    /* blas_verify found the kernel wrong and restarted with Prescott */
    BLAS_ORIGIN_COUNT
} blas_origin_t;

/* Call as the first line of main(), before any output or input (stdin stays untouched).
 * argv must be main's argv (NULL-terminated); it is kept for a later fallback re-exec.
 * Returns normally when the loaded kernel is the wanted one (or nothing better can be had);
 * otherwise does not return: execv("/proc/self/exe", argv) with OPENBLAS_CORETYPE set. When
 * the exec fails, prints one warning on stderr and returns with the current kernel. */
void blas_select_or_reexec(int argc, char **argv);

/* Compare cblas_sgemm with the naive product on a few shapes (all transposes, odd sizes, a
 * padded leading dimension, alpha/beta) with the current thread count. Runs once per process;
 * later calls return the cached result. On disagreement: says so on stderr and re-executes
 * with the Prescott kernels (does not return) if blas_select_or_reexec saw argv and Prescott
 * is not already running; otherwise returns -1 with err filled. Returns 0 when they agree. */
int blas_verify(char *err, size_t errlen);

/* Name of the running kernel set as OpenBLAS reports it, e.g. "Cooperlake"; never NULL. */
const char *blas_kernel(void);
/* openblas_get_config(), e.g. "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..."; never NULL. */
const char *blas_config(void);
blas_origin_t blas_origin(void);
const char *blas_origin_name(blas_origin_t o); /* "library", "auto", ...; "?" if out of range */

/* Kernel names worth having on this CPU, best first (cpuid via __builtin_cpu_supports), e.g.
 * {"Cooperlake", "SkylakeX", "SapphireRapids", "Haswell"} on an AVX-512 BF16 Xeon. Fills up to
 * max entries of names (static strings) and returns the count; 0 when nothing beats the
 * library's own choice (non-x86, or no SSE4.2). */
int blas_candidates(const char **names, int max);

/* OpenBLAS thread count; n <= 0 is ignored. */
void blas_set_threads(int n);
int blas_threads(void);

/* Roofline probe: median GFLOP/s of cblas_sgemm over the model's GEMMs at M = 3136 rows
 * (in_proj 64->256, out_proj 128->64, fc1 64->128: forward x W^T, and the backward dx = dy W,
 * dW = dy^T x) with the current kernel and `threads` threads (<= 0: current count; restored
 * afterwards). Takes well under a second. Cannot fail (allocation failure exits via xalloc). */
double blas_sgemm_gflops(int threads);

/* The naive reference: C (M, N) = alpha op(A) op(B) + beta C, row-major, op(X) = X or X^T
 * (trans != 0), A is (M, K) or (K, M) with leading dimension lda, B (K, N) or (N, K) with ldb.
 * Accumulates in double. beta == 0 ignores C's old contents (NaN included). */
void blas_sgemm_naive(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
