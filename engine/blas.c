/* blas.c — OpenBLAS kernel selection by cpuid + re-exec, a one-time correctness check against
 * the naive product, and the sgemm roofline probe used by `prunelab bench`.
 *
 * Assumptions: OpenBLAS is linked (so it is loaded and has chosen its kernels before main);
 * a DYNAMIC_ARCH build honours OPENBLAS_CORETYPE at load time and reports its choice through
 * openblas_get_corename(). A name it does not know is not an error for OpenBLAS: it prints
 * nothing (unless OPENBLAS_VERBOSE) and runs some other kernel, so every choice is confirmed
 * by reading the core name back in the re-executed image.
 *
 * Re-exec protocol (marker PRUNELAB_BLAS_REEXEC = index of the candidate being tried, or "f"
 * for the Prescott fallback): the image that sees the marker never re-executes for the same
 * candidate again; it either accepts, moves on to the next candidate, or gives up. So a
 * process is executed at most 1 + (number of candidates) times, and once in practice.
 *
 * Ownership: the saved argv belongs to main; everything else here is static state written
 * only by blas_select_or_reexec / blas_verify, which main calls before starting threads.
 */
#define _GNU_SOURCE
#include "blas.h"
#include "util.h"

#include <assert.h>
#include <cblas.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define BLAS_MAX_CANDIDATES 8
#define BLAS_PRESCOTT "Prescott"

static char **saved_argv;            /* main's argv, for the fallback re-exec */
static blas_origin_t origin = BLAS_ORIGIN_LIBRARY;
static int fell_back;                /* this image is the Prescott fallback */
static int verify_state = 1;         /* 1 = not run yet, else the cached blas_verify result */
static char verify_msg[PL_ERRLEN];

static const char *const origin_names[] = {"library", "auto", "user", "forced", "fallback"};
static_assert(sizeof origin_names / sizeof origin_names[0] == BLAS_ORIGIN_COUNT,
              "origin_names must name every blas_origin_t");

const char *blas_origin_name(blas_origin_t o)
{
    return (o >= 0 && o < BLAS_ORIGIN_COUNT) ? origin_names[o] : "?";
}

blas_origin_t blas_origin(void) { return origin; }

const char *blas_kernel(void)
{
    const char *s = openblas_get_corename();
    return (s && *s) ? s : "unknown";
}

const char *blas_config(void)
{
    const char *s = openblas_get_config();
    return s ? s : "";
}

void blas_set_threads(int n)
{
    if (n > 0) openblas_set_num_threads(n);
}

int blas_threads(void) { return openblas_get_num_threads(); }

/* ------------------------------------------------------------------ detection */

int blas_candidates(const char **names, int max)
{
    const char *c[BLAS_MAX_CANDIDATES];
    int n = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    /* libgcc checks XGETBV too, so these are "usable", not merely "present" */
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512cd");
    int bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int amd = __builtin_cpu_is("amd");
    /* Best first, as measured with blas_sgemm_gflops on a Sapphire-Rapids-class Xeon with
     * OpenBLAS 0.3.21 (1 thread): Cooperlake ~ SkylakeX ~80 GFLOP/s (same sgemm kernel),
     * Haswell ~50, Zen ~48, Sandybridge ~29, Prescott ~15. 0.3.21 has no "SapphireRapids";
     * a later OpenBLAS that picks it by itself is accepted as is. */
    if (bf16) c[n++] = "Cooperlake";
    if (avx512) {
        c[n++] = "SkylakeX";
        c[n++] = "SapphireRapids";
    }
    if (avx2) {
        c[n++] = amd ? "Zen" : "Haswell";
        c[n++] = amd ? "Haswell" : "Zen";
    }
    if (n == 0 && __builtin_cpu_supports("avx")) c[n++] = "Sandybridge";
    if (n == 0 && __builtin_cpu_supports("sse4.2")) c[n++] = "Nehalem";
#endif
    if (n > max) n = max;
    for (int i = 0; i < n; i++) names[i] = c[i];
    return n;
}

static int same_name(const char *a, const char *b) { return a && b && !strcasecmp(a, b); }

/* Replace this image by a fresh one with OPENBLAS_CORETYPE=core. Returns only on failure. */
static void reexec_with(const char *core, const char *marker)
{
    if (!saved_argv || !saved_argv[0]) return;
    const char *prev = getenv("OPENBLAS_CORETYPE");
    char *saved = prev ? xstrdup(prev) : NULL;
    setenv("OPENBLAS_CORETYPE", core, 1);
    setenv(BLAS_ENV_MARKER, marker, 1);
    fflush(NULL);
    execv("/proc/self/exe", saved_argv);
    int e = errno;
    /* still the old image: the environment must describe it, not the kernel we wanted */
    if (saved) setenv("OPENBLAS_CORETYPE", saved, 1);
    else unsetenv("OPENBLAS_CORETYPE");
    unsetenv(BLAS_ENV_MARKER);
    free(saved);
    fprintf(stderr, "prunelab: cannot re-execute to select OpenBLAS kernel %s: %s\n", core,
            strerror(e));
    fprintf(stderr, "hint: run with OPENBLAS_CORETYPE=%s set in the environment\n", core);
}

static void try_candidate(const char **cand, int idx)
{
    char marker[16];
    snprintf(marker, sizeof marker, "%d", idx);
    reexec_with(cand[idx], marker);
}

void blas_select_or_reexec(int argc, char **argv)
{
    saved_argv = argc > 0 ? argv : NULL;
    const char *cur = blas_kernel();
    const char *choice = getenv(BLAS_ENV_CHOICE);
    const char *user = getenv("OPENBLAS_CORETYPE");
    const char *marker = getenv(BLAS_ENV_MARKER);
    if (choice && !*choice) choice = NULL;
    int forced = choice && *choice && strcasecmp(choice, "auto") != 0;

    if (choice && !strcasecmp(choice, "off")) {
        origin = (user && *user) ? BLAS_ORIGIN_USER : BLAS_ORIGIN_LIBRARY;
        unsetenv(BLAS_ENV_MARKER);
        return;
    }

    const char *cand[BLAS_MAX_CANDIDATES];
    int n = 0;
    if (forced) cand[n++] = choice;
    else n = blas_candidates(cand, BLAS_MAX_CANDIDATES);

    if (marker) { /* we are the re-executed image */
        unsetenv(BLAS_ENV_MARKER);
        if (!strcmp(marker, "f")) {
            origin = BLAS_ORIGIN_FALLBACK;
            fell_back = 1;
            return;
        }
        char *end;
        long idx = strtol(marker, &end, 10);
        if (*end || idx < 0 || idx >= n) return; /* stale or foreign marker: never loop */
        if (same_name(cur, cand[idx])) {
            origin = forced ? BLAS_ORIGIN_FORCED : BLAS_ORIGIN_AUTO;
            return;
        }
        if (idx + 1 < n) {
            try_candidate(cand, (int)idx + 1);
            return; /* exec failed */
        }
        fprintf(stderr, "prunelab: this OpenBLAS (%s) knows none of the kernels", blas_config());
        for (int i = 0; i < n; i++) fprintf(stderr, " %s", cand[i]);
        fprintf(stderr, "; running %s\n", cur);
        /* children inherit what actually runs and start without re-exec */
        setenv("OPENBLAS_CORETYPE", cur, 1);
        origin = forced ? BLAS_ORIGIN_FORCED : BLAS_ORIGIN_LIBRARY;
        return;
    }

    if (!choice && user && *user) {
        origin = BLAS_ORIGIN_USER;
        if (!same_name(cur, user))
            fprintf(stderr, "prunelab: OPENBLAS_CORETYPE=%s is not a kernel this OpenBLAS knows; "
                            "it runs %s\n", user, cur);
        return;
    }
    if (n == 0) {
        origin = BLAS_ORIGIN_LIBRARY;
        return;
    }
    for (int i = 0; i < n; i++) {
        if (same_name(cur, cand[i])) {
            origin = forced ? BLAS_ORIGIN_FORCED : BLAS_ORIGIN_AUTO;
            return;
        }
    }
    try_candidate(cand, 0);
    origin = BLAS_ORIGIN_LIBRARY; /* exec failed: keep what is loaded */
}

/* ------------------------------------------------------------------ reference and check */

void blas_sgemm_naive(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                double a = transa ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = transb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
    }
}

typedef struct {
    int ta, tb, M, N, K, pad; /* pad: extra columns in every leading dimension */
    float alpha, beta;
} verify_case;

/* Sizes around the kernels' register blocks (odd, prime, 1) and two big enough that OpenBLAS
 * splits them over threads (M*N*K above its multithreading threshold). */
static const verify_case verify_cases[] = {
    {0, 0, 1, 1, 1, 0, 1.0f, 0.0f},
    {0, 1, 7, 5, 3, 0, 1.0f, 0.0f},
    {1, 0, 13, 17, 11, 0, 1.0f, 0.0f},
    {1, 1, 33, 65, 19, 0, 1.0f, 0.0f},
    {0, 0, 97, 130, 67, 3, 0.5f, -1.5f},
    {0, 1, 301, 129, 70, 0, 1.0f, 0.0f},
    {1, 0, 66, 131, 259, 1, 1.0f, 1.0f},
    {0, 0, 257, 48, 64, 0, -2.0f, 0.0f},
};

/* Returns 0 if cblas_sgemm matches the naive product on every case, else -1 with err. */
static int verify_run(char *err, size_t errlen)
{
    const char *fault = getenv(BLAS_ENV_FAULT);
    int inject = fault && same_name(fault, blas_kernel());
    pl_rng rng;
    pl_rng_seed(&rng, 20240607);
    int rc = 0;
    for (size_t c = 0; c < sizeof verify_cases / sizeof verify_cases[0] && rc == 0; c++) {
        const verify_case *v = &verify_cases[c];
        int arows = v->ta ? v->K : v->M, acols = v->ta ? v->M : v->K;
        int brows = v->tb ? v->N : v->K, bcols = v->tb ? v->K : v->N;
        int lda = acols + v->pad, ldb = bcols + v->pad, ldc = v->N + v->pad;
        float *A = xalloc_floats((size_t)arows * lda);   // A (arows, lda)
        float *B = xalloc_floats((size_t)brows * ldb);   // B (brows, ldb)
        float *C = xalloc_floats((size_t)v->M * ldc);    // C (M, ldc), BLAS result
        float *R = xalloc_floats((size_t)v->M * ldc);    // R (M, ldc), naive result
        for (size_t i = 0; i < (size_t)arows * lda; i++) A[i] = (float)(2.0 * pl_rng_uniform(&rng) - 1.0);
        for (size_t i = 0; i < (size_t)brows * ldb; i++) B[i] = (float)(2.0 * pl_rng_uniform(&rng) - 1.0);
        for (size_t i = 0; i < (size_t)v->M * ldc; i++) C[i] = R[i] = (float)(2.0 * pl_rng_uniform(&rng) - 1.0);

        cblas_sgemm(CblasRowMajor, v->ta ? CblasTrans : CblasNoTrans, v->tb ? CblasTrans : CblasNoTrans,
                    v->M, v->N, v->K, v->alpha, A, lda, B, ldb, v->beta, C, ldc);
        if (inject) C[0] += 1.0f;
        blas_sgemm_naive(v->ta, v->tb, v->M, v->N, v->K, v->alpha, A, lda, B, ldb, v->beta, R, ldc);

        /* |A|,|B|,|C| <= 1, so every term is bounded by 1: float summation of K products
         * errs by at most ~K eps (|alpha| K + |beta|); a wrong kernel errs by O(1). */
        double tol = (v->K + 4.0) * FLT_EPSILON * (fabs(v->alpha) * v->K + fabs(v->beta) + 1.0);
        for (int i = 0; i < v->M && rc == 0; i++) {
            for (int j = 0; j < v->N; j++) {
                double d = fabs((double)C[(size_t)i * ldc + j] - R[(size_t)i * ldc + j]);
                if (!(d <= tol)) {
                    rc = pl_err(err, errlen,
                                "OpenBLAS kernel %s: sgemm %c%c M=%d N=%d K=%d differs from the "
                                "naive product at (%d,%d): %g vs %g",
                                blas_kernel(), v->ta ? 'T' : 'N', v->tb ? 'T' : 'N', v->M, v->N,
                                v->K, i, j, C[(size_t)i * ldc + j], R[(size_t)i * ldc + j]);
                    break;
                }
            }
        }
        /* padding columns of C must be left alone */
        for (int i = 0; i < v->M && rc == 0; i++)
            for (int j = v->N; j < ldc; j++)
                if (C[(size_t)i * ldc + j] != R[(size_t)i * ldc + j]) {
                    rc = pl_err(err, errlen, "OpenBLAS kernel %s: sgemm wrote outside C", blas_kernel());
                    break;
                }
        free(A);
        free(B);
        free(C);
        free(R);
    }
    return rc;
}

int blas_verify(char *err, size_t errlen)
{
    if (verify_state != 1) {
        if (verify_state != 0) pl_err(err, errlen, "%s", verify_msg);
        return verify_state;
    }
    if (verify_run(verify_msg, sizeof verify_msg) == 0) {
        verify_state = 0;
        return 0;
    }
    if (!fell_back && saved_argv && !same_name(blas_kernel(), BLAS_PRESCOTT)) {
        fprintf(stderr, "prunelab: %s\nprunelab: restarting with the generic %s kernels\n",
                verify_msg, BLAS_PRESCOTT);
        /* children must not go back to the broken kernel either */
        setenv(BLAS_ENV_CHOICE, BLAS_PRESCOTT, 1);
        reexec_with(BLAS_PRESCOTT, "f");
    }
    verify_state = -1;
    return pl_err(err, errlen, "%s", verify_msg);
}

/* ------------------------------------------------------------------ roofline */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double blas_sgemm_gflops(int threads)
{
    enum { M = 3136, NSHAPE = 3, REPS = 7, MAXD = 256 };
    /* Linear layers of the small model: y (M, out) = x (M, in) W^T, W (out, in) */
    static const int shape[NSHAPE][2] = {{64, 256}, {128, 64}, {64, 128}}; /* {in, out} */
    int old = blas_threads();
    if (threads > 0) blas_set_threads(threads);

    float *x = xalloc_floats((size_t)M * MAXD);   // x (M, in)
    float *dy = xalloc_floats((size_t)M * MAXD);  // y, dy (M, out)
    float *dx = xalloc_floats((size_t)M * MAXD);  // dx (M, in)
    float *w = xalloc_floats((size_t)MAXD * MAXD); // W, dW (out, in)
    pl_rng rng;
    pl_rng_seed(&rng, 7);
    for (size_t i = 0; i < (size_t)M * MAXD; i++) {
        x[i] = (float)(pl_rng_uniform(&rng) - 0.5);
        dy[i] = (float)(pl_rng_uniform(&rng) - 0.5);
    }
    for (size_t i = 0; i < (size_t)MAXD * MAXD; i++) w[i] = (float)(pl_rng_uniform(&rng) - 0.5) * 0.1f;

    double gf[REPS];
    for (int r = -1; r < REPS; r++) { /* r = -1 warms up caches and thread pool */
        double flops = 0.0, t0 = pl_now();
        for (int s = 0; s < NSHAPE; s++) {
            int in = shape[s][0], out = shape[s][1];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, out, in, 1.0f, x, in, w, in,
                        0.0f, dy, out); /* y = x W^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, in, out, 1.0f, dy, out, w,
                        in, 0.0f, dx, in); /* dx = dy W */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, M, 1e-3f, dy, out, x,
                        in, 1.0f, w, in); /* dW += dy^T x (scaled to keep w bounded) */
            flops += 3.0 * 2.0 * M * in * out;
        }
        double dt = pl_now() - t0;
        if (r >= 0) gf[r] = dt > 0 ? flops / dt * 1e-9 : 0.0;
    }
    qsort(gf, REPS, sizeof gf[0], cmp_double);
    free(x);
    free(dy);
    free(dx);
    free(w);
    if (threads > 0) blas_set_threads(old);
    return gf[REPS / 2];
}
