/* ops.c — forward/backward kernels of the patch-Mamba model (contract: ops.h).
 *
 * Dimension letters: M rows (= B*L tokens), I in-features, O out-features, B batch, L tokens,
 * C channels, E d_inner, N d_state, K d_conv, P patch size, V classes, d model width.
 *
 * Design.
 * - GEMMs go to OpenBLAS (cblas_sgemm over all M rows at once); everything else is plain C.
 * - Hot loops are written so GCC vectorises them at -O3 without -ffast-math: transcendental
 *   functions inside them are the branch-free *_fast primitives of numerics.h, and reductions
 *   over the vectorised index carry `omp simd reduction`. Hot kernels are compiled three times
 *   (x86-64-v4 = AVX-512, v3 = AVX2+FMA, baseline) and picked at load time by the CPU, so one
 *   binary runs everywhere. Results differ between those versions only by FMA contraction.
 *   The selective scan is the exception: it is written on 16-lane GCC vectors (numerics.h
 *   pl_v16f, 16 channels per vector) because the auto-vectoriser does not handle its loop nest;
 *   see the layout note at the scan section. The inference mixer core (ssm_gate_forward, ~40% of
 *   a forward) also has a hand-written AVX-512 twin (intrinsics under target("avx512f"), chosen
 *   at run time after __builtin_cpu_supports; ops_set_avx512 turns it off for tests): vscalefps
 *   decays, softplus and silu without divisions. The portable code stays the reference.
 * - Threading: at most one `omp parallel for` per op, over independent blocks (batch rows,
 *   channel blocks or element chunks) so no two threads write the same output; the only
 *   cross-block reductions (scan dA_log/dD) go through per-chunk buffers summed serially after
 *   the loop. The thread count is ops_set_threads() (default 1); blocks are fixed by the
 *   shapes and the thread count, so results are reproducible for a given thread count.
 * - Every *_naive twin is a plain loop used as the test reference (double accumulation where
 *   it matters) and as readable documentation of the math.
 * - Inference-only fused kernels (conv1d_silu_forward, ssm_gate_forward, matmul_forward_acc,
 *   add_cols_forward, rmsnorm_addbias_forward) do the work of several unfused ops in one pass;
 *   they keep nothing for a backward, and their naive twins are the unfused chains of plain loops.
 * - Causal LM: embedding_* (a row copy and a scatter-add) and lmhead_ce_* (the LM head GEMM and
 *   the cross-entropy over chunks of rows: never more than (chunk, V) logits unless the caller
 *   asks for all of them; the per-row log-sum-exp is pl_logsumexp_fast, the softmax in backward
 *   pl_expf_fast, rows split over threads). The RMSNorm eps is a parameter (the checkpoint's
 *   layer_norm_epsilon).
 * Ownership: no function keeps or frees caller memory; scratch is allocated and freed inside
 * the call (xmalloc aborts on exhaustion, so no op returns an error). */
#include "ops.h"

#include <cblas.h>
#include <omp.h>
#undef I /* openblas_config.h pulls in <complex.h>; I is our in-features letter */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "numerics.h"
#include "util.h"

/* PL_HAVE_AVX512 / PL_AVX512 (hand-written AVX-512 kernels, called only after a run-time CPU
 * check) come from numerics.h, under the same condition as the clones. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(PL_NO_CLONES)
#define PL_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PL_HOT
#endif

static int g_threads = 1;
static int g_avx512_allowed = 1;

void ops_set_threads(int n) { g_threads = n < 1 ? 1 : n; }
int ops_get_threads(void) { return g_threads; }

#if PL_HAVE_AVX512
/* a * b + c as the hot kernels compile it: fused into one FMA by the optimiser (-O2 and up) or
 * rounded twice (-O1 builds such as the sanitizer one). noinline, so nothing is folded. */
static PL_HOT __attribute__((noinline)) float ops_probe_muladd(const float *v) { return v[0] * v[1] + v[2]; }
static float g_probe_in[3] = {1.0f + 0x1p-12f, 1.0f + 0x1p-13f, -(1.0f + 0x1p-12f + 0x1p-13f)};
#endif

/* Which version of the kernels with a hand-written AVX-512 twin runs: 0 the portable one, 1 the
 * AVX-512 one, 2 the AVX-512 one with the scan's decay rounded like the portable code of a build
 * that does not contract a * b + c into FMAs (so both versions agree to a few ulp in any build;
 * the exact product differs from the rounded one by 2^-25 in the probe). Needs AVX-512F and
 * permission (ops_set_avx512). Read outside parallel regions (passed down to the blocks). */
static int ops_use_avx512(void)
{
#if PL_HAVE_AVX512
    if (!g_avx512_allowed || !__builtin_cpu_supports("avx512f")) return 0;
    return ops_probe_muladd(g_probe_in) != 0.0f ? 1 : 2;
#else
    return 0;
#endif
}

int ops_set_avx512(int allow)
{
    g_avx512_allowed = allow != 0;
    return ops_use_avx512() != 0;
}

/* elements per parallel chunk of an elementwise op (fits L2 with in+out) */
#define PL_CHUNK 16384
/* channels per block in conv1d and the scan (state block: 32 * N floats) */
#define PL_EBLK 32

/* ---------------------------------------------------------------------------- matmul */

/* Narrow products (x_proj: O = R + 2N = 80 at mamba-130m) with many rows: OpenBLAS's own threads
 * gain nothing on them (1024 x 1536 x 80: 100 GFLOP/s on 1 thread, 104 on 2, OpenMP build,
 * bench/fma_peak.sh; the pthread build was slower at 2 than at 1), so they are split by rows
 * among the ops threads instead, each a single-threaded sgemm on its block. */
#define PL_GEMM_NARROW 256
#define PL_GEMM_SPLIT_ROWS 64

/* out (M, O; ldo) = beta * out + inp (M, I) @ w^T */
static void gemm_nt(float *out, int ldo, const float *inp, const float *w, int M, int I, int O, float beta)
{
    int T = g_threads;
    if (T > 1 && O < PL_GEMM_NARROW && M >= PL_GEMM_SPLIT_ROWS * T && !omp_in_parallel()) {
        int bt = blas_threads();
        if (bt != 1) blas_set_threads(1);
#pragma omp parallel num_threads(T)
        {
            int t = omp_get_thread_num(), n = omp_get_num_threads();
            int m0 = (int)((long)M * t / n), m1 = (int)((long)M * (t + 1) / n);
            if (m1 > m0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m1 - m0, O, I, 1.0f, inp + (size_t)m0 * I, I, w,
                            I, beta, out + (size_t)m0 * ldo, ldo);
        }
        if (bt != 1) blas_set_threads(bt);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, O, I, 1.0f, inp, I, w, I, beta, out, ldo);
}

/* out (M, O) = inp (M, I) @ w^T (w (O, I)) + bias (O) */
void matmul_forward(float *out, const float *inp, const float *w, const float *bias, int M, int I, int O)
{
    if (M <= 0 || O <= 0) return;
    if (!bias && I > 0) { /* beta = 0: sgemm writes out without reading it (no zeroing pass) */
        gemm_nt(out, O, inp, w, M, I, O, 0.0f);
        return;
    }
    for (int m = 0; m < M; m++) {
        float *o = out + (size_t)m * O;
        if (bias) memcpy(o, bias, (size_t)O * sizeof(float));
        else memset(o, 0, (size_t)O * sizeof(float));
    }
    if (I <= 0) return;
    gemm_nt(out, O, inp, w, M, I, O, 1.0f);
}

/* out (M, O; row stride ldo) += inp (M, I) @ w^T */
void matmul_forward_acc(float *out, int ldo, const float *inp, const float *w, int M, int I, int O)
{
    if (M <= 0 || O <= 0 || I <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, O, I, 1.0f, inp, I, w, I, 1.0f, out, ldo);
}

void matmul_forward_acc_naive(float *out, int ldo, const float *inp, const float *w, int M, int I, int O)
{
    for (int m = 0; m < M; m++)
        for (int o = 0; o < O; o++) {
            double s = 0.0;
            for (int i = 0; i < I; i++) s += (double)inp[(size_t)m * I + i] * w[(size_t)o * I + i];
            out[(size_t)m * ldo + o] += (float)s;
        }
}

void matmul_forward_naive(float *out, const float *inp, const float *w, const float *bias, int M, int I, int O)
{
    for (int m = 0; m < M; m++)
        for (int o = 0; o < O; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int i = 0; i < I; i++) s += (double)inp[(size_t)m * I + i] * w[(size_t)o * I + i];
            out[(size_t)m * O + o] = (float)s;
        }
}

/* dinp (M, I) += dout (M, O) @ w (O, I);  dw (O, I) += dout^T @ inp;  dbias (O) += sum_m dout */
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                     int M, int I, int O)
{
    if (M <= 0 || O <= 0) return;
    if (dinp && I > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, I, O, 1.0f, dout, O, w, I, 1.0f, dinp, I);
    if (dw && I > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, M, 1.0f, dout, O, inp, I, 1.0f, dw, I);
    if (dbias)
        for (int m = 0; m < M; m++) {
            const float *g = dout + (size_t)m * O;
            for (int o = 0; o < O; o++) dbias[o] += g[o];
        }
}

void matmul_backward_naive(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                           const float *w, int M, int I, int O)
{
    if (dinp)
        for (int m = 0; m < M; m++)
            for (int i = 0; i < I; i++) {
                double s = 0.0;
                for (int o = 0; o < O; o++) s += (double)dout[(size_t)m * O + o] * w[(size_t)o * I + i];
                dinp[(size_t)m * I + i] += (float)s;
            }
    if (dw)
        for (int o = 0; o < O; o++)
            for (int i = 0; i < I; i++) {
                double s = 0.0;
                for (int m = 0; m < M; m++) s += (double)dout[(size_t)m * O + o] * inp[(size_t)m * I + i];
                dw[(size_t)o * I + i] += (float)s;
            }
    if (dbias)
        for (int o = 0; o < O; o++) {
            double s = 0.0;
            for (int m = 0; m < M; m++) s += dout[(size_t)m * O + o];
            dbias[o] += (float)s;
        }
}

#define PL_V16 16 /* lanes of a pl_v16f */

/* h[m, cols[k]] += src[m, k]. With cols ascending, output columns 16 o .. 16 o + 15 take their
 * values from one 16-float window of the source row starting at start[o] (the number of kept
 * columns before 16 o): a vector load, a lane permutation (idx) and a lane mask (keep) per 16
 * columns instead of 16 scalar read-modify-writes. Windows that would read past the end of src,
 * tail columns (cols[k0 ..)) and unsorted cols (k0 = 0, nv = 0) take the scalar loops. */
static PL_HOT void add_cols_kernel(float *h, const float *src, int lds, const int *cols, int k0, int n, int M,
                                   int C, const int *start, const int32_t *idx, const uint32_t *keep, int nv)
{
    size_t end = (size_t)M * lds;
    for (int m = 0; m < M; m++) {
        float *hr = h + (size_t)m * C;
        const float *sr = src + (size_t)m * lds;
        for (int o = 0; o < nv; o++) {
            float *ho = hr + (size_t)o * PL_V16;
            if ((size_t)m * lds + (size_t)start[o] + PL_V16 <= end) {
                pl_v16f v = pl_v16_load(sr + start[o]);
                pl_v16i ix;
                pl_v16u km;
                memcpy(&ix, idx + (size_t)o * PL_V16, sizeof ix);
                memcpy(&km, keep + (size_t)o * PL_V16, sizeof km);
                pl_v16f e = (pl_v16f)((pl_v16u)__builtin_shuffle(v, ix) & km);
                pl_v16_store(ho, pl_v16_load(ho) + e);
            } else {
                for (int j = 0; j < PL_V16; j++)
                    if (keep[(size_t)o * PL_V16 + j]) ho[j] += sr[start[o] + idx[(size_t)o * PL_V16 + j]];
            }
        }
        for (int k = k0; k < n; k++) hr[cols[k]] += sr[k]; /* columns past the full vectors */
    }
}

void add_cols_forward(float *h, const float *src, int lds, const int *cols, int n, int M, int C)
{
    if (M <= 0 || C <= 0 || n <= 0) return;
    int sorted = 1;
    for (int k = 1; k < n; k++) sorted &= cols[k] > cols[k - 1];
    int nv = sorted ? C / PL_V16 : 0;
    int *start = xmalloc(((size_t)nv + 1) * sizeof(int));
    int32_t *idx = xcalloc((size_t)nv * PL_V16 + 1, sizeof(int32_t));
    uint32_t *keep = xcalloc((size_t)nv * PL_V16 + 1, sizeof(uint32_t));
    for (int o = 0, k = 0; o < nv; o++) {
        start[o] = k;
        for (; k < n && cols[k] < (o + 1) * PL_V16; k++) {
            int j = cols[k] - o * PL_V16;
            idx[(size_t)o * PL_V16 + j] = k - start[o];
            keep[(size_t)o * PL_V16 + j] = ~0u;
        }
    }
    int k0 = 0; /* first kept column past the last full vector (all of them when unsorted) */
    while (nv > 0 && k0 < n && cols[k0] < nv * PL_V16) k0++;
    add_cols_kernel(h, src, lds, cols, k0, n, M, C, start, idx, keep, nv);
    free(start), free(idx), free(keep);
}

void add_cols_forward_naive(float *h, const float *src, int lds, const int *cols, int n, int M, int C)
{
    for (int k = 0; k < n; k++)
        for (int m = 0; m < M; m++) h[(size_t)m * C + cols[k]] += src[(size_t)m * lds + k];
}

/* ---------------------------------------------------------------------------- rmsnorm */

/* out = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps); out, inp (M, C); w (C); rstd (M) or NULL */
static PL_HOT void rmsnorm_fwd_kernel(float *out, float *rstd, const float *inp, const float *w, int M, int C,
                                       float eps)
{
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * C;
        float *o = out + (size_t)m * C;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        if (rstd) rstd[m] = r;
        for (int c = 0; c < C; c++) o[c] = x[c] * r * w[c];
    }
}

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int M, int C, float eps)
{
    rmsnorm_fwd_kernel(out, rstd, inp, w, M, C, eps);
}

static PL_HOT void rmsnorm_addbias_kernel(float *out, float *h, const float *w, const float *bias, int M, int C,
                                           float eps)
{
    for (int m = 0; m < M; m++) {
        float *x = h + (size_t)m * C, *o = out + (size_t)m * C;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        for (int c = 0; c < C; c++) o[c] = x[c] * r * w[c];
        for (int c = 0; c < C; c++) x[c] += bias[c];
    }
}

void rmsnorm_addbias_forward(float *out, float *h, const float *w, const float *bias, int M, int C, float eps)
{
    if (bias) rmsnorm_addbias_kernel(out, h, w, bias, M, C, eps);
    else rmsnorm_fwd_kernel(out, NULL, h, w, M, C, eps);
}

void rmsnorm_addbias_forward_naive(float *out, float *h, const float *w, const float *bias, int M, int C, float eps)
{
    for (int m = 0; m < M; m++) {
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)h[(size_t)m * C + c] * h[(size_t)m * C + c];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int c = 0; c < C; c++) out[(size_t)m * C + c] = (float)(h[(size_t)m * C + c] * r * w[c]);
        if (bias)
            for (int c = 0; c < C; c++) h[(size_t)m * C + c] += bias[c];
    }
}

/* out_c = x_c r w_c, r = (mean x^2 + eps)^(-1/2), dr/dx_j = -r^3 x_j / C:
 * dx_j += r w_j g_j - (r^3 / C) x_j sum_c g_c w_c x_c;  dw_c += g_c x_c r */
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int M, int C)
{
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * C, *g = dout + (size_t)m * C;
        float r = rstd[m];
        if (dw)
            for (int c = 0; c < C; c++) dw[c] += g[c] * x[c] * r;
        if (dinp) {
            float *dx = dinp + (size_t)m * C;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int c = 0; c < C; c++) dot += g[c] * w[c] * x[c];
            float k = r * r * r * dot / (float)C;
            for (int c = 0; c < C; c++) dx[c] += r * w[c] * g[c] - k * x[c];
        }
    }
}

/* ---------------------------------------------------------------------------- conv1d */

/* One (batch b, channels e0..e1) block: out[b,t,e] = bias[e] + sum_k wT[k,e] inp[b,t-K+1+k,e].
 * wT (K, E) is w transposed so the e loop is contiguous. */
/* One output row o[e0..e1) of token t of sample b (causal taps, oldest first); inlined into the
 * block kernels below so each keeps its own vectorised clone. */
static inline __attribute__((always_inline)) void conv1d_row(float *o, const float *inp, const float *wT,
                                                             const float *bias, int b, int t, int e0, int e1,
                                                             int L, int E, int K)
{
    for (int e = e0; e < e1; e++) o[e] = bias ? bias[e] : 0.0f;
    for (int k = 0; k < K; k++) {
        int tt = t - K + 1 + k;
        if (tt < 0) continue;
        const float *x = inp + ((size_t)b * L + tt) * E, *wk = wT + (size_t)k * E;
        for (int e = e0; e < e1; e++) o[e] += wk[e] * x[e];
    }
}

static PL_HOT void conv1d_fwd_block(float *out, const float *inp, const float *wT, const float *bias, int b,
                                    int e0, int e1, int L, int E, int K)
{
    for (int t = 0; t < L; t++) conv1d_row(out + ((size_t)b * L + t) * E, inp, wT, bias, b, t, e0, e1, L, E, K);
}

static float *conv1d_transpose_w(const float *w, int E, int K)
{
    float *wT = xmalloc((size_t)K * E * sizeof(float)); // (K, E)
    for (int e = 0; e < E; e++)
        for (int k = 0; k < K; k++) wT[(size_t)k * E + e] = w[(size_t)e * K + k];
    return wT;
}

void conv1d_forward(float *out, const float *inp, const float *w, const float *bias, int B, int L, int E, int K)
{
    if (B <= 0 || L <= 0 || E <= 0) return;
    float *wT = conv1d_transpose_w(w, E, K);
    int neb = (E + PL_EBLK - 1) / PL_EBLK, nblk = B * neb;
#pragma omp parallel for num_threads(g_threads) schedule(static) if (g_threads > 1 && nblk > 1)
    for (int i = 0; i < nblk; i++) {
        int b = i / neb, e0 = (i % neb) * PL_EBLK, e1 = e0 + PL_EBLK < E ? e0 + PL_EBLK : E;
        conv1d_fwd_block(out, inp, wT, bias, b, e0, e1, L, E, K);
    }
    free(wT);
}

/* conv1d_fwd_block, then u = silu(conv) on the same rows while they are in L1. xc (B, L, E) or
 * NULL: the pre-activation is kept only when asked for; otherwise it lives in u until overwritten. */
static PL_HOT void conv1d_silu_block(float *u, float *xc, const float *inp, const float *wT, const float *bias,
                                     int b, int t0, int t1, int e0, int e1, int L, int E, int K)
{
    for (int t = t0; t < t1; t++) {
        size_t row = ((size_t)b * L + t) * E;
        float *o = (xc ? xc : u) + row, *uo = u + row;
        conv1d_row(o, inp, wT, bias, b, t, e0, e1, L, E, K);
        for (int e = e0; e < e1; e++) uo[e] = pl_silu_fast(o[e]);
    }
}

void conv1d_silu_forward(float *u, float *xc, const float *inp, const float *w, const float *bias, int B, int L,
                         int E, int K)
{
    if (B <= 0 || L <= 0 || E <= 0) return;
    float *wT = conv1d_transpose_w(w, E, K);
    /* whole rows of E channels per task (long vector loops, memory walked in order); a batch too
     * small to give every thread a sample splits each sample's tokens into runs instead (a
     * token's output reads only inputs, so the runs are independent). Splitting channels
     * instead walked 1024-token windows down 6 KiB-strided columns: 1.3x slower at 2 threads
     * than one thread on whole rows. */
    int nt = B >= g_threads ? 1 : (g_threads + B - 1) / B, ntask = B * nt;
    if (nt > L) nt = L, ntask = B * nt;
#pragma omp parallel for num_threads(g_threads) schedule(static) if (g_threads > 1 && ntask > 1)
    for (int i = 0; i < ntask; i++) {
        int b = i / nt, k = i % nt, t0 = (int)((long)L * k / nt), t1 = (int)((long)L * (k + 1) / nt);
        conv1d_silu_block(u, xc, inp, wT, bias, b, t0, t1, 0, E, L, E, K);
    }
    free(wT);
}

void conv1d_silu_forward_naive(float *u, float *xc, const float *inp, const float *w, const float *bias, int B,
                               int L, int E, int K)
{
    size_t n = (size_t)B * L * E;
    float *c = xc ? xc : xalloc_floats(n > 0 ? n : 1);
    conv1d_forward_naive(c, inp, w, bias, B, L, E, K);
    for (size_t i = 0; i < n; i++) u[i] = pl_silu(c[i]);
    if (!xc) free(c);
}

void conv1d_forward_naive(float *out, const float *inp, const float *w, const float *bias, int B, int L, int E,
                          int K)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++)
            for (int e = 0; e < E; e++) {
                double s = bias ? bias[e] : 0.0;
                for (int k = 0; k < K; k++) {
                    int tt = t - K + 1 + k;
                    if (tt >= 0) s += (double)w[(size_t)e * K + k] * inp[((size_t)b * L + tt) * E + e];
                }
                out[((size_t)b * L + t) * E + e] = (float)s;
            }
}

/* Channels e0..e1 over all b, t:
 * dinp[b,t-K+1+k,e] += dout[b,t,e] w[e,k];  dw[e,k] += sum_{b,t} dout[b,t,e] inp[b,t-K+1+k,e];
 * dbias[e] += sum_{b,t} dout[b,t,e]. acc (K+1, E) is this block's scratch (rows 0..K-1 dw, row K dbias). */
static PL_HOT void conv1d_bwd_block(float *dinp, float *acc, const float *dout, const float *inp, const float *wT,
                                    int e0, int e1, int B, int L, int E, int K)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++) {
            const float *g = dout + ((size_t)b * L + t) * E;
            float *ab = acc + (size_t)K * E;
            for (int e = e0; e < e1; e++) ab[e] += g[e];
            for (int k = 0; k < K; k++) {
                int tt = t - K + 1 + k;
                if (tt < 0) continue;
                size_t row = ((size_t)b * L + tt) * E;
                const float *x = inp + row, *wk = wT + (size_t)k * E;
                float *ak = acc + (size_t)k * E;
                for (int e = e0; e < e1; e++) ak[e] += g[e] * x[e];
                if (dinp) {
                    float *dx = dinp + row;
                    for (int e = e0; e < e1; e++) dx[e] += g[e] * wk[e];
                }
            }
        }
}

void conv1d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                     int B, int L, int E, int K)
{
    if (B <= 0 || L <= 0 || E <= 0) return;
    float *wT = conv1d_transpose_w(w, E, K);
    float *acc = xcalloc((size_t)(K + 1) * E, sizeof(float)); // (K+1, E)
    int neb = (E + PL_EBLK - 1) / PL_EBLK;
#pragma omp parallel for num_threads(g_threads) schedule(static) if (g_threads > 1 && neb > 1)
    for (int i = 0; i < neb; i++) {
        int e0 = i * PL_EBLK, e1 = e0 + PL_EBLK < E ? e0 + PL_EBLK : E;
        conv1d_bwd_block(dinp, acc, dout, inp, wT, e0, e1, B, L, E, K);
    }
    for (int e = 0; e < E; e++) {
        if (dw)
            for (int k = 0; k < K; k++) dw[(size_t)e * K + k] += acc[(size_t)k * E + e];
        if (dbias) dbias[e] += acc[(size_t)K * E + e];
    }
    free(acc);
    free(wT);
}

/* ---------------------------------------------------------------------------- elementwise */

static PL_HOT void silu_fwd_kernel(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = pl_silu_fast(inp[i]);
}
static PL_HOT void silu_bwd_kernel(float *dinp, const float *dout, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * pl_silu_grad_fast(inp[i]);
}
static PL_HOT void softplus_fwd_kernel(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = pl_softplus_fast(inp[i]);
}
static PL_HOT void softplus_bwd_kernel(float *dinp, const float *dout, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * pl_softplus_grad_fast(inp[i]);
}
static PL_HOT void gelu_fwd_kernel(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = pl_gelu_fast(inp[i]);
}
static PL_HOT void gelu_bwd_kernel(float *dinp, const float *dout, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * pl_gelu_grad_fast(inp[i]);
}
static PL_HOT void gate_fwd_kernel(float *out, const float *y, const float *z, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = y[i] * pl_silu_fast(z[i]);
}
static PL_HOT void gate_bwd_kernel(float *dy, float *dz, const float *dout, const float *y, const float *z, size_t n)
{
    if (dy && dz) {
        for (size_t i = 0; i < n; i++) {
            float s = pl_sigmoid_fast(z[i]), sl = z[i] * s;
            dy[i] += dout[i] * sl;
            dz[i] += dout[i] * y[i] * (s * (1.0f + z[i] * (1.0f - s)));
        }
    } else if (dy) {
        for (size_t i = 0; i < n; i++) dy[i] += dout[i] * pl_silu_fast(z[i]);
    } else if (dz) {
        for (size_t i = 0; i < n; i++) dz[i] += dout[i] * y[i] * pl_silu_grad_fast(z[i]);
    }
}

/* Chunked parallel loop over n elements; BODY uses lo (offset) and cnt (length). */
#define PL_ELEMENTWISE(n, BODY)                                                                     \
    do {                                                                                            \
        size_t nchunk_ = ((n) + PL_CHUNK - 1) / PL_CHUNK;                                          \
        _Pragma("omp parallel for num_threads(g_threads) schedule(static) if (g_threads > 1 && nchunk_ > 1)") \
        for (size_t c_ = 0; c_ < nchunk_; c_++) {                                                   \
            size_t lo = c_ * PL_CHUNK, cnt = (n) - lo < PL_CHUNK ? (n) - lo : PL_CHUNK;             \
            BODY;                                                                                   \
        }                                                                                           \
    } while (0)

/* silu(v) = v sigmoid(v); out, inp (n) */
void silu_forward(float *out, const float *inp, size_t n) { PL_ELEMENTWISE(n, silu_fwd_kernel(out + lo, inp + lo, cnt)); }
void silu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    if (!dinp) return;
    PL_ELEMENTWISE(n, silu_bwd_kernel(dinp + lo, dout + lo, inp + lo, cnt));
}
/* softplus(v) = log(1 + e^v), = v for v > 20 */
void softplus_forward(float *out, const float *inp, size_t n)
{
    PL_ELEMENTWISE(n, softplus_fwd_kernel(out + lo, inp + lo, cnt));
}
void softplus_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    if (!dinp) return;
    PL_ELEMENTWISE(n, softplus_bwd_kernel(dinp + lo, dout + lo, inp + lo, cnt));
}
/* gelu(v) = v Phi(v) (exact, erf-based) */
void gelu_forward(float *out, const float *inp, size_t n) { PL_ELEMENTWISE(n, gelu_fwd_kernel(out + lo, inp + lo, cnt)); }
void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    if (!dinp) return;
    PL_ELEMENTWISE(n, gelu_bwd_kernel(dinp + lo, dout + lo, inp + lo, cnt));
}
/* out = y silu(z) */
void gate_forward(float *out, const float *y, const float *z, size_t n)
{
    PL_ELEMENTWISE(n, gate_fwd_kernel(out + lo, y + lo, z + lo, cnt));
}
void gate_backward(float *dy, float *dz, const float *dout, const float *y, const float *z, size_t n)
{
    if (!dy && !dz) return;
    PL_ELEMENTWISE(n, gate_bwd_kernel(dy ? dy + lo : NULL, dz ? dz + lo : NULL, dout + lo, y + lo, z + lo, cnt));
}

/* ---------------------------------------------------------------------------- selective scan */

/* Layout of the fast scan. The recurrence is independent per (b, e, n) and sequential in t.
 * The kernels take PL_SW = 16 channels ("lanes": one AVX-512 vector, two AVX2 vectors) of one
 * batch row at a time and loop over the states inside, so y_t and every per-channel sum are
 * lane-wise (no horizontal sum per token and channel). The block's inputs are staged into
 * (L, SW) slabs, zero past E, so the kernels only ever see full vectors; on a pad lane delta = u
 * = dy = 0 and A = 0, so its state and gradients stay 0. A is transposed to (block, N, SW).
 * No state cache crosses the forward/backward boundary: the backward recomputes the states of
 * one block, h (L+1, N, SW) and the decays a (L, N, SW) (2 x 50 KB for L = 49, N = 16: L2), then
 * runs back in time. dB, dC (sums over channels) are accumulated per (t, n) as lane vectors
 * across the row's blocks and summed horizontally once per batch row. */
#define PL_SW 16

/* Per-thread scan workspace; every array is (.., SW)-shaped and 64-byte aligned. */
typedef struct {
    float *dt, *u, *g;  /* (L, SW) staged delta, u, dy */
    float *o1, *o2;     /* (L, SW) outputs: y (forward) or du, ddelta (backward) */
    float *h;           /* (L+1, N, SW) states, row t+1 = h_t, row 0 = h_{-1} = 0 (forward: (N, SW)) */
    float *a;           /* (L, N, SW) decays exp(delta_t A) (backward only) */
    float *dh;          /* (N, SW) dL/dh flowing back in time */
    float *dB, *dC;     /* (L, N, SW) lane partials of dBm, dCm of the current batch row */
} scan_ws;

/* hist = 1: h and a keep every token (else h is (N, SW)); backward = 1: also dh, dB, dC.
 * Caller: scan_ws_free. */
static void scan_ws_init(scan_ws *w, int L, int N, int hist, int backward)
{
    size_t s = (size_t)L * PL_SW, sn = s * N;
    memset(w, 0, sizeof *w);
    w->dt = xalloc_floats(s), w->u = xalloc_floats(s), w->g = xalloc_floats(s);
    w->o1 = xalloc_floats(s), w->o2 = xalloc_floats(s);
    w->h = xalloc_floats((hist ? sn : 0) + (size_t)N * PL_SW);
    if (hist) w->a = xalloc_floats(sn);
    if (backward) {
        w->dh = xalloc_floats((size_t)N * PL_SW);
        w->dB = xalloc_floats(sn), w->dC = xalloc_floats(sn);
    }
}

static void scan_ws_free(scan_ws *w)
{
    free(w->dt), free(w->u), free(w->g), free(w->o1), free(w->o2);
    free(w->h), free(w->a), free(w->dh), free(w->dB), free(w->dC);
}

/* dst (L, SW) = src[b, :, e0 .. e0+cnt) of src (B, L, E), zero-padded lanes */
static void scan_stage(float *dst, const float *src, int b, int e0, int cnt, int L, int E)
{
    for (int t = 0; t < L; t++) {
        memcpy(dst + (size_t)t * PL_SW, src + ((size_t)b * L + t) * E + e0, (size_t)cnt * sizeof(float));
        memset(dst + (size_t)t * PL_SW + cnt, 0, (size_t)(PL_SW - cnt) * sizeof(float));
    }
}

/* A and D of every channel block, lane-major: AT (nblk, N, SW) = A log2(e) = -exp(A_log) log2(e)
 * (libm exp, E*N values per call; the decays are 2^(delta AT)), Dl (nblk, SW); 0 on pad lanes.
 * Caller frees both. */
static void scan_make_lanes(float **AT, float **Dl, const float *A_log, const float *D, int E, int N)
{
    int nblk = (E + PL_SW - 1) / PL_SW;
    *AT = xalloc_floats((size_t)nblk * N * PL_SW);
    *Dl = xalloc_floats((size_t)nblk * PL_SW);
    for (int e = 0; e < E; e++) {
        int k = e / PL_SW, j = e % PL_SW;
        for (int n = 0; n < N; n++) (*AT)[((size_t)k * N + n) * PL_SW + j] = -expf(A_log[(size_t)e * N + n]) * PL_LOG2E;
        (*Dl)[e] = D ? D[e] : 0.0f;
    }
}

/* Forward over the staged block, tokens in order (mamba.c forward_layer):
 *   h_t[n] = exp(delta_t A[n]) h_{t-1}[n] + delta_t Bm_t[n] u_t,   y_t = sum_n Cm_t[n] h_t[n] + D u_t
 * lane-wise. Bb, Cb (L, N; row stride ld) are the batch row's Bm, Cm. With keep = 1 (workspace with hist), w->h
 * keeps every state (row t+1 = h_t) and w->a every decay; otherwise h is overwritten in place.
 * ys (L, SW) receives y unless NULL. */
static inline __attribute__((always_inline)) void
scan_fwd_lanes(float *ys, scan_ws *w, int keep, const float *AT, const float *Dl, const float *Bb, const float *Cb,
               size_t ld, int L, int N)
{
    size_t hstep = keep ? (size_t)N * PL_SW : 0;
    pl_v16f Dv = pl_v16_load(Dl);
    float *hr = w->h, *ar = w->a;
    const float *dts = w->dt, *us = w->u;
    memset(hr, 0, (size_t)N * PL_SW * sizeof(float));
    for (int t = 0; t < L; t++) {
        pl_v16f dt = pl_v16_load(dts + (size_t)t * PL_SW), uu = pl_v16_load(us + (size_t)t * PL_SW);
        pl_v16f dtu = dt * uu, acc = Dv * uu;
        const float *Bt = Bb + (size_t)t * ld, *Ct = Cb + (size_t)t * ld;
        const float *hp = hr + (size_t)t * hstep;
        float *hc = hr + (size_t)(t + 1) * hstep, *at = keep ? ar + (size_t)t * N * PL_SW : NULL;
        for (int n = 0; n < N; n++) {
            size_t o = (size_t)n * PL_SW;
            pl_v16f a = pl_v16_exp2(dt * pl_v16_load(AT + o));
            pl_v16f h = a * pl_v16_load(hp + o) + dtu * Bt[n];
            pl_v16_store(hc + o, h);
            if (keep) pl_v16_store(at + o, a);
            acc += h * Ct[n];
        }
        if (ys) pl_v16_store(ys + (size_t)t * PL_SW, acc);
    }
}

/* One block of batch row b: y[b, :, e0 .. e0+cnt) and, if hs, every state into hs (B, L, E, N). */
static PL_HOT void scan_fwd_block(float *y, float *hs, scan_ws *w, const float *AT, const float *Dl,
                                  const float *Bm, const float *Cm, int b, int e0, int cnt, int L, int E, int N)
{
    const float *Bb = Bm + (size_t)b * L * N, *Cb = Cm + (size_t)b * L * N;
    if (hs) {
        scan_fwd_lanes(w->o1, w, 1, AT, Dl, Bb, Cb, (size_t)N, L, N);
        for (int t = 0; t < L; t++)
            for (int j = 0; j < cnt; j++)
                for (int n = 0; n < N; n++)
                    hs[(((size_t)b * L + t) * E + e0 + j) * N + n] = w->h[((size_t)(t + 1) * N + n) * PL_SW + j];
    } else if (N == 16) {
        scan_fwd_lanes(w->o1, w, 0, AT, Dl, Bb, Cb, 16, L, 16);
    } else {
        scan_fwd_lanes(w->o1, w, 0, AT, Dl, Bb, Cb, (size_t)N, L, N);
    }
    for (int t = 0; t < L; t++)
        memcpy(y + ((size_t)b * L + t) * E + e0, w->o1 + (size_t)t * PL_SW, (size_t)cnt * sizeof(float));
}

/* y, u, delta (B, L, E); A_log (E, N); Bm, Cm (B, L, N); D (E); hs (B, L, E, N) or NULL */
void scan_forward(float *y, float *hs, const float *u, const float *delta, const float *A_log, const float *Bm,
                  const float *Cm, const float *D, int B, int L, int E, int N)
{
    if (B <= 0 || L <= 0 || E <= 0) return;
    if (N <= 0) {
        for (size_t i = 0; i < (size_t)B * L * E; i++) y[i] = D[i % (size_t)E] * u[i];
        return;
    }
    float *AT, *Dl;
    scan_make_lanes(&AT, &Dl, A_log, D, E, N);
    int nblk = (E + PL_SW - 1) / PL_SW, ntask = B * nblk;
    int nch = g_threads < ntask ? g_threads : ntask;
#pragma omp parallel for num_threads(g_threads) schedule(static) if (nch > 1)
    for (int c = 0; c < nch; c++) {
        scan_ws w;
        scan_ws_init(&w, L, N, hs != NULL, 0);
        int i0 = (int)((long)ntask * c / nch), i1 = (int)((long)ntask * (c + 1) / nch);
        for (int i = i0; i < i1; i++) {
            int b = i / nblk, k = i % nblk, e0 = k * PL_SW, cnt = E - e0 < PL_SW ? E - e0 : PL_SW;
            scan_stage(w.dt, delta, b, e0, cnt, L, E);
            scan_stage(w.u, u, b, e0, cnt, L, E);
            scan_fwd_block(y, hs, &w, AT + (size_t)k * N * PL_SW, Dl + (size_t)k * PL_SW, Bm, Cm, b, e0, cnt, L, E,
                           N);
        }
        scan_ws_free(&w);
    }
    free(AT);
    free(Dl);
}

void scan_forward_naive(float *y, float *hs, const float *u, const float *delta, const float *A_log,
                        const float *Bm, const float *Cm, const float *D, int B, int L, int E, int N)
{
    float *h = xcalloc((size_t)(N > 0 ? N : 1), sizeof(float)); // (N)
    for (int b = 0; b < B; b++)
        for (int e = 0; e < E; e++) {
            for (int n = 0; n < N; n++) h[n] = 0.0f;
            for (int t = 0; t < L; t++) {
                size_t ix = ((size_t)b * L + t) * E + e, bt = (size_t)b * L + t;
                double acc = (double)D[e] * u[ix];
                for (int n = 0; n < N; n++) {
                    float A = -expf(A_log[(size_t)e * N + n]);
                    h[n] = expf(delta[ix] * A) * h[n] + delta[ix] * Bm[bt * N + n] * u[ix];
                    acc += (double)Cm[bt * N + n] * h[n];
                    if (hs) hs[ix * N + n] = h[n];
                }
                y[ix] = (float)acc;
            }
        }
    free(h);
}

/* ---------------------------------------------------------------------------- fused mixer core (inference) */

/* scan_fwd_lanes without a keep option and with the NS states in registers: after inlining with a
 * constant NS (16 or 8) the loop over n is unrolled and h never goes to memory. Same operations
 * in the same order as scan_fwd_lanes (y equal up to FMA contraction; 4 partial sums for the
 * readout measured no faster, so the order is kept). dts, ys (L, SW); us (L, SW) rows of stride ldu
 * (a full block reads u in place); Bb, Cb rows of stride ld. */
static inline __attribute__((always_inline)) void
scan_fwd_lanes_reg(float *ys, const float *dts, const float *us, size_t ldu, const float *AT, const float *Dl,
                   const float *Bb, const float *Cb, size_t ld, int L, int NS, float *st)
{
    pl_v16f h[16];
    pl_v16f Dv = pl_v16_load(Dl);
#pragma GCC unroll 16
    for (int n = 0; n < NS; n++) h[n] = st ? pl_v16_load(st + (size_t)n * PL_SW) : pl_v16_splat(0.0f);
    for (int t = 0; t < L; t++) {
        pl_v16f dt = pl_v16_load(dts + (size_t)t * PL_SW), uu = pl_v16_load(us + (size_t)t * ldu);
        pl_v16f dtu = dt * uu, acc = Dv * uu;
        const float *Bt = Bb + (size_t)t * ld, *Ct = Cb + (size_t)t * ld;
#pragma GCC unroll 16
        for (int n = 0; n < NS; n++) {
            pl_v16f a = pl_v16_exp2(dt * pl_v16_load(AT + (size_t)n * PL_SW));
            h[n] = a * h[n] + dtu * Bt[n];
            acc += h[n] * Ct[n];
        }
        pl_v16_store(ys + (size_t)t * PL_SW, acc);
    }
    if (st)
#pragma GCC unroll 16
        for (int n = 0; n < NS; n++) pl_v16_store(st + (size_t)n * PL_SW, h[n]);
}

#if PL_HAVE_AVX512
/* AVX-512 twin of scan_fwd_lanes_reg (the inference hot loop: ~40% of a forward). Same recurrence
 * and the same order of operations; only the way 2^k enters the decay differs: a = 2^x,
 * x = delta AT[n] (AT holds A log2(e)):
 *   k = round(x) (1.5 * 2^23 magic add on the fused product), r = x - k in [-1/2, 1/2] (one
 *   more FMA), 2^r by pl_v16_exp2's degree-6 polynomial (same coefficients and Horner order, so
 *   in the normal range the result is the one the x86-64-v4 clone of pl_v16_exp2 gives: a
 *   degree-5 fit, 1 FMA less, measured 1.7e-7 rel err and a bias that the recurrence compounds
 *   past the 2e-6 agreement with the unfused chain), then 2^k applied by one vscalefps instead
 *   of six integer ops. k <= -126 (x <= -125.5, down to -inf) gives +0 through the zero-mask,
 *   so no denormal is ever produced or fed to the state FMA; NaN stays NaN.
 * rel err <= 3e-7 for x in (-125.5, 0] (test_ops.c, through ssm_decay_forward). The decay is
 * pl_decay_avx512 (numerics.h). */
/* a (n) = 2^(dt at) elementwise by pl_decay_avx512; n a multiple of 16 */
static PL_AVX512 void scan_decay_avx512_run(float *a, const float *dt, const float *at, size_t n, int fused)
{
    if (fused)
        for (size_t i = 0; i < n; i += PL_SW)
            _mm512_storeu_ps(a + i, pl_decay_avx512(_mm512_loadu_ps(dt + i), _mm512_loadu_ps(at + i), 1));
    else
        for (size_t i = 0; i < n; i += PL_SW)
            _mm512_storeu_ps(a + i, pl_decay_avx512(_mm512_loadu_ps(dt + i), _mm512_loadu_ps(at + i), 0));
}

/* Arguments and shapes as scan_fwd_lanes_reg, for 8 states: AT (8, SW), Bb and Cb point at the first
 * of the 8 states. The 8 states live in zmm registers and the loop over them is unrolled (16 states
 * and the decay's constants would not fit in the 32 registers: GCC spilled half of them), so
 * N = 16 runs as two passes over the tokens, states 0-7 then 8-15: the second pass (first = 0)
 * adds its terms to the ys written by the first, which keeps the summation order of
 * scan_fwd_lanes_reg exactly. Per state and token: the decay, one multiply and two FMAs; AT[n],
 * Bt[n] and Ct[n] are memory operands. fused = 0 (ops_use_avx512 mode 2) rounds every product as
 * the portable loop does when the build does not contract them. */
static inline __attribute__((always_inline)) PL_AVX512 void
scan_fwd_reg8_pass_avx512(float *ys, const float *dts, const float *us, size_t ldu, const float *AT,
                          const float *Dl, const float *Bb, const float *Cb, size_t ld, int L, int first, int fused,
                          float *st)
{
    __m512 h[8];
#pragma GCC unroll 8
    for (int n = 0; n < 8; n++) h[n] = st ? _mm512_loadu_ps(st + (size_t)n * PL_SW) : _mm512_setzero_ps();
    for (int t = 0; t < L; t++) {
        __m512 dt = _mm512_loadu_ps(dts + (size_t)t * PL_SW), uu = _mm512_loadu_ps(us + (size_t)t * ldu);
        __m512 dtu = _mm512_mul_ps(dt, uu);
        __m512 acc = first ? _mm512_mul_ps(_mm512_loadu_ps(Dl), uu) : _mm512_loadu_ps(ys + (size_t)t * PL_SW);
        const float *Bt = Bb + (size_t)t * ld, *Ct = Cb + (size_t)t * ld;
#pragma GCC unroll 8
        for (int n = 0; n < 8; n++) {
            __m512 a = pl_decay_avx512(dt, _mm512_loadu_ps(AT + (size_t)n * PL_SW), fused);
            __m512 bu = _mm512_mul_ps(dtu, _mm512_set1_ps(Bt[n]));
            if (fused) {
                h[n] = _mm512_fmadd_ps(a, h[n], bu);
                acc = _mm512_fmadd_ps(h[n], _mm512_set1_ps(Ct[n]), acc);
            } else {
                h[n] = _mm512_add_ps(_mm512_mul_ps(a, h[n]), bu);
                acc = _mm512_add_ps(acc, _mm512_mul_ps(h[n], _mm512_set1_ps(Ct[n])));
            }
        }
        _mm512_storeu_ps(ys + (size_t)t * PL_SW, acc);
    }
    if (st)
#pragma GCC unroll 8
        for (int n = 0; n < 8; n++) _mm512_storeu_ps(st + (size_t)n * PL_SW, h[n]);
}

static PL_AVX512 void scan_fwd_reg16_avx512(float *ys, const float *dts, const float *us, size_t ldu,
                                            const float *AT, const float *Dl, const float *Bb, const float *Cb,
                                            size_t ld, int L, int fused, float *st)
{
    float *st2 = st ? st + 8 * PL_SW : NULL;
    if (fused) {
        scan_fwd_reg8_pass_avx512(ys, dts, us, ldu, AT, Dl, Bb, Cb, ld, L, 1, 1, st);
        scan_fwd_reg8_pass_avx512(ys, dts, us, ldu, AT + 8 * PL_SW, Dl, Bb + 8, Cb + 8, ld, L, 0, 1, st2);
    } else {
        scan_fwd_reg8_pass_avx512(ys, dts, us, ldu, AT, Dl, Bb, Cb, ld, L, 1, 0, st);
        scan_fwd_reg8_pass_avx512(ys, dts, us, ldu, AT + 8 * PL_SW, Dl, Bb + 8, Cb + 8, ld, L, 0, 0, st2);
    }
}

static PL_AVX512 void scan_fwd_reg8_avx512(float *ys, const float *dts, const float *us, size_t ldu,
                                           const float *AT, const float *Dl, const float *Bb, const float *Cb,
                                           size_t ld, int L, int fused, float *st)
{
    if (fused) scan_fwd_reg8_pass_avx512(ys, dts, us, ldu, AT, Dl, Bb, Cb, ld, L, 1, 1, st);
    else scan_fwd_reg8_pass_avx512(ys, dts, us, ldu, AT, Dl, Bb, Cb, ld, L, 1, 0, st);
}

/* delta (L, SW) = softplus(bl + sum_r xb[t, r] WT[r]) as the portable loop of ssm_gate_block */
static PL_AVX512 void ssm_delta_avx512(float *dts, const float *xb, int ldx, const float *WT, const float *bl, int L,
                                       int R)
{
    for (int t = 0; t < L; t++) {
        const float *xr = xb + (size_t)t * ldx;
        __m512 o = _mm512_loadu_ps(bl);
        for (int r = 0; r < R; r++)
            o = _mm512_fmadd_ps(_mm512_set1_ps(xr[r]), _mm512_loadu_ps(WT + (size_t)r * PL_SW), o);
        _mm512_storeu_ps(dts + (size_t)t * PL_SW, pl_softplus_avx512(o));
    }
}

/* g = y silu(z) = y (z / (1 + e^-z)) for a full block: g, z rows of stride E, ys (L, SW). e^-z is
 * taken at min(-z, 80) so 1 + e^-z stays finite (silu(z) below -80 is then z * 2e-35 instead of
 * an even smaller value). silu rel err 2.3e-7 on [-30, 30] (dense grid against libm). */
static PL_AVX512 void ssm_gate_avx512(float *g, const float *ys, const float *z, int L, int E)
{
    for (int t = 0; t < L; t++) {
        __m512 zz = _mm512_loadu_ps(z + (size_t)t * E);
        __m512 e = pl_exp_avx512(_mm512_min_ps(_mm512_sub_ps(_mm512_setzero_ps(), zz), _mm512_set1_ps(80.0f)));
        __m512 sg = pl_recip_avx512(_mm512_add_ps(e, _mm512_set1_ps(1.0f)));
        __m512 y = _mm512_loadu_ps(ys + (size_t)t * PL_SW);
        _mm512_storeu_ps(g + (size_t)t * E, _mm512_mul_ps(y, _mm512_mul_ps(zz, sg)));
    }
}
#endif

/* Portable decay: the scan's pl_v16_exp2 (16 lanes at a time, then a scalar tail). */
static PL_HOT void scan_decay_v16_run(float *a, const float *dt, const float *at, size_t n)
{
    size_t i = 0;
    for (; i + PL_SW <= n; i += PL_SW) pl_v16_store(a + i, pl_v16_exp2(pl_v16_load(dt + i) * pl_v16_load(at + i)));
    if (i < n) {
        float d[PL_SW] = {0}, b[PL_SW] = {0};
        memcpy(d, dt + i, (n - i) * sizeof(float)), memcpy(b, at + i, (n - i) * sizeof(float));
        pl_v16f y = pl_v16_exp2(pl_v16_load(d) * pl_v16_load(b));
        memcpy(a + i, &y, (n - i) * sizeof(float));
    }
}

void ssm_decay_forward(float *a, const float *dt, const float *at, size_t n)
{
#if PL_HAVE_AVX512
    int mode = ops_use_avx512();
    if (mode) {
        size_t m = n / PL_SW * PL_SW;
        scan_decay_avx512_run(a, dt, at, m, mode == 1);
        if (m < n) {
            float d[PL_SW] = {0}, b[PL_SW] = {0}, y[PL_SW];
            memcpy(d, dt + m, (n - m) * sizeof(float)), memcpy(b, at + m, (n - m) * sizeof(float));
            scan_decay_avx512_run(y, d, b, PL_SW, mode == 1);
            memcpy(a + m, y, (n - m) * sizeof(float));
        }
        return;
    }
#endif
    scan_decay_v16_run(a, dt, at, n);
}

/* dt_proj of every channel block, lane-major: WT (nblk, R, SW), bl (nblk, SW); 0 on pad lanes.
 * Caller frees both. */
static void ssm_make_dt_lanes(float **WT, float **bl, const float *dt_w, const float *dt_b, int E, int R)
{
    int nblk = (E + PL_SW - 1) / PL_SW;
    *WT = xalloc_floats((size_t)nblk * (R > 0 ? R : 1) * PL_SW);
    *bl = xalloc_floats((size_t)nblk * PL_SW);
    for (int e = 0; e < E; e++) {
        int k = e / PL_SW, j = e % PL_SW;
        for (int r = 0; r < R; r++) (*WT)[((size_t)k * R + r) * PL_SW + j] = dt_w[(size_t)e * R + r];
        (*bl)[e] = dt_b ? dt_b[e] : 0.0f;
    }
}

/* delta (L, SW) = softplus(dt_b + sum_r dt_low_t[r] dt_w[:, r])  (mamba: F.softplus(dt_proj(dt_low)));
 * xb (L, ldx) rows whose first R columns are dt_low; WT (R, SW), bl (SW) the block's lanes. */
static inline __attribute__((always_inline)) void ssm_delta_v16(float *restrict dts, const float *xb, int ldx,
                                                                const float *WT, const float *bl, int L, int R)
{
    for (int t = 0; t < L; t++) {
        const float *xr = xb + (size_t)t * ldx;
        pl_v16f o = pl_v16_load(bl);
        for (int r = 0; r < R; r++) o += xr[r] * pl_v16_load(WT + (size_t)r * PL_SW);
        pl_v16_store(dts + (size_t)t * PL_SW, o);
    }
    for (size_t i = 0; i < (size_t)L * PL_SW; i++) dts[i] = pl_softplus_fast(dts[i]);
}

/* Tokens per run of the chunked inference scan (ssm_gate_forward). */
#define PL_SCAN_RUN 64

/* One block (batch row b, channels e0 .. e0+cnt). st (N, SW) or NULL: the register paths (N 16
 * and 8) start from the state in st and leave the last token's state there (NULL: start from 0);
 * other N must pass NULL. xb (L, ldx) is the batch row of xdbl; WT (R, SW),
 * bl (SW), AT (N, SW), Dl (SW) the block's lanes. Pad lanes get delta = softplus(0) but u = 0 and
 * A = 0, so their state stays 0 and nothing is written for them. avx512 (ops_use_avx512, checked
 * by the caller) != 0: dt_proj + softplus, the register paths (N 16 and 8) and the gate of a full
 * block run their AVX-512 twins. */
static PL_HOT void ssm_gate_block(float *g, scan_ws *w, const float *u, const float *z, const float *xb, int ldx,
                                  const float *WT, const float *bl, const float *AT, const float *Dl, int b, int e0,
                                  int cnt, int L, int E, int N, int R, int avx512, float *st)
{
    float *restrict dts = w->dt;
#if PL_HAVE_AVX512
    if (avx512) ssm_delta_avx512(dts, xb, ldx, WT, bl, L, R);
    else
#endif
    {
        ssm_delta_v16(dts, xb, ldx, WT, bl, L, R);
    }
    const float *Bb = xb + R, *Cb = xb + R + N, *us = u + (size_t)b * L * E + e0;
    size_t ldu = (size_t)E;
    if (cnt < PL_SW || (N != 16 && N != 8)) {
        scan_stage(w->u, u, b, e0, cnt, L, E);
        us = w->u, ldu = PL_SW;
    }
#if PL_HAVE_AVX512
    if (avx512 && N == 16)
        scan_fwd_reg16_avx512(w->o1, dts, us, ldu, AT, Dl, Bb, Cb, (size_t)ldx, L, avx512 == 1, st);
    else if (avx512 && N == 8)
        scan_fwd_reg8_avx512(w->o1, dts, us, ldu, AT, Dl, Bb, Cb, (size_t)ldx, L, avx512 == 1, st);
    else
#endif
    if (N == 16) scan_fwd_lanes_reg(w->o1, dts, us, ldu, AT, Dl, Bb, Cb, (size_t)ldx, L, 16, st);
    else if (N == 8) scan_fwd_lanes_reg(w->o1, dts, us, ldu, AT, Dl, Bb, Cb, (size_t)ldx, L, 8, st);
    else scan_fwd_lanes(w->o1, w, 0, AT, Dl, Bb, Cb, (size_t)ldx, L, N);
    /* g = y silu(z) */
#if PL_HAVE_AVX512
    if (avx512 && cnt == PL_SW) {
        ssm_gate_avx512(g + (size_t)b * L * E + e0, w->o1, z + (size_t)b * L * E + e0, L, E);
        return;
    }
#endif
    for (int t = 0; t < L; t++) {
        size_t row = ((size_t)b * L + t) * E + e0;
        const float *ys = w->o1 + (size_t)t * PL_SW, *zr = z + row;
        float *gr = g + row;
        if (cnt == PL_SW)
            for (int j = 0; j < PL_SW; j++) gr[j] = ys[j] * pl_silu_fast(zr[j]);
        else
            for (int j = 0; j < cnt; j++) gr[j] = ys[j] * pl_silu_fast(zr[j]);
    }
}

void ssm_gate_forward(float *g, const float *u, const float *z, const float *xdbl, int ldx, const float *dt_w,
                      const float *dt_b, const float *A_log, const float *D, int B, int L, int E, int N, int R)
{
    if (B <= 0 || L <= 0 || E <= 0) return;
    float *AT, *Dl, *WT, *bl;
    int Np = N > 0 ? N : 0;
    scan_make_lanes(&AT, &Dl, A_log, D, E, Np);
    ssm_make_dt_lanes(&WT, &bl, dt_w, dt_b, E, R);
    int avx512 = ops_use_avx512();
    int nblk = (E + PL_SW - 1) / PL_SW, ntask = B * nblk;
    int nch = g_threads < ntask ? g_threads : ntask;
    /* the register paths carry each block's state across runs of PL_SCAN_RUN tokens, and every
     * block of a thread takes one run before any takes the next: a run's rows of u, z and g (all
     * blocks) stay in L2, where one block walking a whole 1024-token window down a 6 KiB-strided
     * column missed the caches and the TLB on nearly every row */
    int run = (N == 16 || N == 8) && L > PL_SCAN_RUN ? PL_SCAN_RUN : L;
#pragma omp parallel for num_threads(g_threads) schedule(static) if (nch > 1)
    for (int c = 0; c < nch; c++) {
        scan_ws w;
        scan_ws_init(&w, run, Np > 0 ? Np : 1, 0, 0);
        int i0 = (int)((long)ntask * c / nch), i1 = (int)((long)ntask * (c + 1) / nch);
        float *st = run < L ? xalloc_floats((size_t)(i1 - i0) * Np * PL_SW) : NULL; /* zero: h_{-1} = 0 */
        for (int t0 = 0; t0 < L; t0 += run) {
            int n = L - t0 < run ? L - t0 : run;
            for (int i = i0; i < i1; i++) {
                int b = i / nblk, k = i % nblk, e0 = k * PL_SW, cnt = E - e0 < PL_SW ? E - e0 : PL_SW;
                size_t row = (size_t)b * L + t0; /* the run as a window of its own: batch row 0, n tokens */
                ssm_gate_block(g + row * E, &w, u + row * E, z + row * E, xdbl + row * ldx, ldx,
                               WT + (size_t)k * R * PL_SW, bl + (size_t)k * PL_SW, AT + (size_t)k * Np * PL_SW,
                               Dl + (size_t)k * PL_SW, 0, e0, cnt, n, E, Np, R, avx512,
                               st ? st + (size_t)(i - i0) * Np * PL_SW : NULL);
            }
        }
        free(st);
        scan_ws_free(&w);
    }
    free(AT), free(Dl), free(WT), free(bl);
}

void ssm_gate_forward_naive(float *g, const float *u, const float *z, const float *xdbl, int ldx, const float *dt_w,
                            const float *dt_b, const float *A_log, const float *D, int B, int L, int E, int N,
                            int R)
{
    size_t BL = (size_t)B * L, ne = BL * E;
    float *dtl = xalloc_floats(BL * R + 1), *Bm = xalloc_floats(BL * N + 1), *Cm = xalloc_floats(BL * N + 1);
    float *delta = xalloc_floats(ne + 1), *y = xalloc_floats(ne + 1);
    for (size_t i = 0; i < BL; i++) {
        for (int r = 0; r < R; r++) dtl[i * R + r] = xdbl[i * ldx + r];
        for (int n = 0; n < N; n++) Bm[i * N + n] = xdbl[i * ldx + R + n], Cm[i * N + n] = xdbl[i * ldx + R + N + n];
    }
    matmul_forward_naive(delta, dtl, dt_w, dt_b, (int)BL, R, E);
    for (size_t i = 0; i < ne; i++) delta[i] = pl_softplus(delta[i]);
    scan_forward_naive(y, NULL, u, delta, A_log, Bm, Cm, D, B, L, E, N);
    for (size_t i = 0; i < ne; i++) g[i] = y[i] * pl_silu(z[i]);
    free(dtl), free(Bm), free(Cm), free(delta), free(y);
}

/* Backward through time over the staged block, tokens in reverse, after scan_fwd_lanes(keep = 1).
 * With a_t = exp(delta_t A), h_t = a_t h_{t-1} + delta_t B_t u_t, y_t = C_t . h_t + D u_t,
 * g = dL/dy_t and d = dL/dh_t (lane-wise, state n):
 *   d = dh + g C_t[n];  dC_t[n] += g h_t;  dB_t[n] += d delta_t u_t;  dD += g u_t
 *   du_t = g D + delta_t sum_n d B_t[n]
 *   ddelta_t = sum_n d (A a_t h_{t-1} + B_t[n] u_t) = sum_n A (d a_t h_{t-1}) + u_t sum_n d B_t[n]
 *   dA[n] += (d a_t h_{t-1}) delta_t;  dh <- d a_t  (flows to h_{t-1})
 * Writes w->o1 = du, w->o2 = ddelta (L, SW); accumulates dA (N, SW) (dL/dA, not dL/dA_log), dD (SW),
 * and w->dB, w->dC (L, N, SW). */
static inline __attribute__((always_inline)) void
scan_bwd_lanes(scan_ws *w, float *dA, float *dD, const float *AT, const float *Dl, const float *Bb, const float *Cb,
               int L, int N)
{
    pl_v16f Dv = pl_v16_load(Dl), dDv = pl_v16_load(dD);
    /* local copies: stores through float pointers could otherwise alias the struct fields */
    float *restrict dh = w->dh, *restrict dB = w->dB, *restrict dC = w->dC;
    const float *restrict hr = w->h, *restrict ar = w->a;
    memset(dh, 0, (size_t)N * PL_SW * sizeof(float));
    for (int t = L - 1; t >= 0; t--) {
        size_t ts = (size_t)t * PL_SW, tn = (size_t)t * N * PL_SW;
        pl_v16f g = pl_v16_load(w->g + ts), dt = pl_v16_load(w->dt + ts), uu = pl_v16_load(w->u + ts);
        pl_v16f dtu = dt * uu, sdu = pl_v16_splat(0.0f), sda = pl_v16_splat(0.0f);
        const float *Bt = Bb + (size_t)t * N, *Ct = Cb + (size_t)t * N;
        const float *hp = hr + tn, *hc = hp + (size_t)N * PL_SW, *at = ar + tn;
        float *dBt = dB + tn, *dCt = dC + tn;
        for (int n = 0; n < N; n++) {
            size_t o = (size_t)n * PL_SW;
            pl_v16f a = pl_v16_load(at + o);
            pl_v16f d = pl_v16_load(dh + o) + g * Ct[n];
            pl_v16f q = d * a * pl_v16_load(hp + o);
            pl_v16_store(dCt + o, pl_v16_load(dCt + o) + g * pl_v16_load(hc + o));
            pl_v16_store(dBt + o, pl_v16_load(dBt + o) + d * dtu);
            pl_v16_store(dA + o, pl_v16_load(dA + o) + q * dt);
            pl_v16_store(dh + o, d * a);
            sda += q * pl_v16_load(AT + o);
            sdu += d * Bt[n];
        }
        pl_v16_store(w->o1 + ts, g * Dv + dt * sdu);
        pl_v16_store(w->o2 + ts, sda * PL_LN2 + uu * sdu); /* AT = A log2(e) */
        dDv += g * uu;
    }
    pl_v16_store(dD, dDv);
}

static PL_HOT void scan_bwd_block(scan_ws *w, float *dA, float *dD, const float *AT, const float *Dl,
                                  const float *Bb, const float *Cb, int L, int N)
{
    if (N == 16) {
        scan_fwd_lanes(NULL, w, 1, AT, Dl, Bb, Cb, 16, L, 16);
        scan_bwd_lanes(w, dA, dD, AT, Dl, Bb, Cb, L, 16);
    } else {
        scan_fwd_lanes(NULL, w, 1, AT, Dl, Bb, Cb, (size_t)N, L, N);
        scan_bwd_lanes(w, dA, dD, AT, Dl, Bb, Cb, L, N);
    }
}

/* out (L, N) += lane sums of acc (L, N, SW); acc is cleared for the next batch row */
static PL_HOT void scan_lane_sums(float *out, float *acc, int L, int N)
{
    for (size_t i = 0; i < (size_t)L * N; i++) {
        float s = 0.0f;
        for (int j = 0; j < PL_SW; j++) s += acc[i * PL_SW + j];
        if (out) out[i] += s;
        memset(acc + i * PL_SW, 0, PL_SW * sizeof(float));
    }
}

void scan_backward(float *du, float *ddelta, float *dA_log, float *dBm, float *dCm, float *dD, const float *dy,
                   const float *u, const float *delta, const float *A_log, const float *Bm, const float *Cm,
                   const float *D, int B, int L, int E, int N)
{
    if (B <= 0 || L <= 0 || E <= 0) return;
    if (N <= 0) {
        for (size_t i = 0; i < (size_t)B * L * E; i++) {
            size_t e = i % (size_t)E;
            if (du) du[i] += dy[i] * D[e];
            if (dD) dD[e] += dy[i] * u[i];
        }
        return;
    }
    float *AT, *Dl;
    scan_make_lanes(&AT, &Dl, A_log, D, E, N);
    int nblk = (E + PL_SW - 1) / PL_SW, nch = g_threads < B ? g_threads : B;
    size_t per = (size_t)nblk * (N + 1) * PL_SW;   // per chunk: dA (nblk, N, SW) then dD (nblk, SW)
    float *acc = xalloc_floats((size_t)nch * per);
#pragma omp parallel for num_threads(g_threads) schedule(static) if (nch > 1)
    for (int c = 0; c < nch; c++) {
        float *dAc = acc + (size_t)c * per, *dDc = dAc + (size_t)nblk * N * PL_SW;
        scan_ws w;
        scan_ws_init(&w, L, N, 1, 1);
        int b0 = (int)((long)B * c / nch), b1 = (int)((long)B * (c + 1) / nch);
        for (int b = b0; b < b1; b++) {
            const float *Bb = Bm + (size_t)b * L * N, *Cb = Cm + (size_t)b * L * N;
            for (int k = 0; k < nblk; k++) {
                int e0 = k * PL_SW, cnt = E - e0 < PL_SW ? E - e0 : PL_SW;
                scan_stage(w.dt, delta, b, e0, cnt, L, E);
                scan_stage(w.u, u, b, e0, cnt, L, E);
                scan_stage(w.g, dy, b, e0, cnt, L, E);
                scan_bwd_block(&w, dAc + (size_t)k * N * PL_SW, dDc + (size_t)k * PL_SW, AT + (size_t)k * N * PL_SW,
                               Dl + (size_t)k * PL_SW, Bb, Cb, L, N);
                for (int t = 0; t < L; t++) {
                    size_t ix = ((size_t)b * L + t) * E + e0, ts = (size_t)t * PL_SW;
                    for (int j = 0; j < cnt; j++) {
                        if (du) du[ix + j] += w.o1[ts + j];
                        if (ddelta) ddelta[ix + j] += w.o2[ts + j];
                    }
                }
            }
            scan_lane_sums(dBm ? dBm + (size_t)b * L * N : NULL, w.dB, L, N);
            scan_lane_sums(dCm ? dCm + (size_t)b * L * N : NULL, w.dC, L, N);
        }
        scan_ws_free(&w);
    }
    for (int c = 1; c < nch; c++)
        for (size_t i = 0; i < per; i++) acc[i] += acc[(size_t)c * per + i];
    /* A = -exp(A_log)  =>  dL/dA_log = dL/dA * A */
    for (int e = 0; e < E; e++) {
        int k = e / PL_SW, j = e % PL_SW;
        if (dA_log)
            for (int n = 0; n < N; n++) {
                size_t o = ((size_t)k * N + n) * PL_SW + j;
                dA_log[(size_t)e * N + n] += acc[o] * -expf(A_log[(size_t)e * N + n]);
            }
        if (dD) dD[e] += acc[(size_t)nblk * N * PL_SW + (size_t)k * PL_SW + j];
    }
    free(acc);
    free(AT);
    free(Dl);
}

/* Plain reference: per (b, e) the states are recomputed into (L+1, N), then the same adjoint
 * recurrence as scan_bwd_lanes runs back in time with double sums over n. */
void scan_backward_naive(float *du, float *ddelta, float *dA_log, float *dBm, float *dCm, float *dD,
                         const float *dy, const float *u, const float *delta, const float *A_log, const float *Bm,
                         const float *Cm, const float *D, int B, int L, int E, int N)
{
    int Np = N > 0 ? N : 1;
    float *h = xcalloc((size_t)(L + 1) * Np, sizeof(float)); // (L+1, N): row t+1 = h_t
    float *dh = xcalloc((size_t)Np, sizeof(float));           // (N)
    for (int b = 0; b < B; b++)
        for (int e = 0; e < E; e++) {
            for (int t = 0; t < L; t++) {
                size_t ix = ((size_t)b * L + t) * E + e, bt = (size_t)b * L + t;
                for (int n = 0; n < N; n++) {
                    float A = -expf(A_log[(size_t)e * N + n]);
                    h[(size_t)(t + 1) * N + n] =
                        expf(delta[ix] * A) * h[(size_t)t * N + n] + delta[ix] * Bm[bt * N + n] * u[ix];
                }
            }
            for (int n = 0; n < N; n++) dh[n] = 0.0f;
            for (int t = L - 1; t >= 0; t--) {
                size_t ix = ((size_t)b * L + t) * E + e, bt = (size_t)b * L + t;
                float g = dy[ix], dt = delta[ix], uu = u[ix];
                double sdd = 0.0, sdu = 0.0;
                for (int n = 0; n < N; n++) {
                    float A = -expf(A_log[(size_t)e * N + n]), a = expf(dt * A);
                    float hp = h[(size_t)t * N + n], hc = h[(size_t)(t + 1) * N + n];
                    float d = dh[n] + g * Cm[bt * N + n];
                    if (dCm) dCm[bt * N + n] += g * hc;
                    if (dBm) dBm[bt * N + n] += d * dt * uu;
                    if (dA_log) dA_log[(size_t)e * N + n] += d * a * hp * dt * A;
                    sdd += (double)d * (A * a * hp + Bm[bt * N + n] * uu);
                    sdu += (double)d * Bm[bt * N + n];
                    dh[n] = d * a;
                }
                if (du) du[ix] += g * D[e] + (float)(dt * sdu);
                if (ddelta) ddelta[ix] += (float)sdd;
                if (dD) dD[e] += g * uu;
            }
        }
    free(h);
    free(dh);
}

/* ---------------------------------------------------------------------------- patch, pos, pool, loss */

/* out[b, ph*(W/P)+pw, c*P*P + py*P + px] = img[b, c, ph*P+py, pw*P+px]; img (B, C, H, W) */
void patchify_forward(float *out, const float *img, int B, int C, int H, int W, int P)
{
    int nh = H / P, nw = W / P, L = nh * nw, F = C * P * P;
    for (int b = 0; b < B; b++)
        for (int ph = 0; ph < nh; ph++)
            for (int pw = 0; pw < nw; pw++) {
                float *o = out + ((size_t)b * L + (size_t)ph * nw + pw) * F;
                for (int c = 0; c < C; c++)
                    for (int py = 0; py < P; py++) {
                        const float *src = img + (((size_t)b * C + c) * H + (size_t)ph * P + py) * W + (size_t)pw * P;
                        memcpy(o + (size_t)c * P * P + (size_t)py * P, src, (size_t)P * sizeof(float));
                    }
            }
}

/* x (B, L, d) += pos (L, d) */
void posembed_forward(float *x, const float *pos, int B, int L, int d)
{
    size_t n = (size_t)L * d;
    for (int b = 0; b < B; b++) {
        float *xb = x + (size_t)b * n;
        for (size_t i = 0; i < n; i++) xb[i] += pos[i];
    }
}

/* dpos (L, d) += sum_b dx (B, L, d) */
void posembed_backward(float *dpos, const float *dx, int B, int L, int d)
{
    if (!dpos) return;
    size_t n = (size_t)L * d;
    for (int b = 0; b < B; b++) {
        const float *g = dx + (size_t)b * n;
        for (size_t i = 0; i < n; i++) dpos[i] += g[i];
    }
}

/* out (B, d) = mean_t inp (B, L, d) */
void meanpool_forward(float *out, const float *inp, int B, int L, int d)
{
    float inv = L > 0 ? 1.0f / (float)L : 0.0f;
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * d;
        for (int c = 0; c < d; c++) o[c] = 0.0f;
        for (int t = 0; t < L; t++) {
            const float *x = inp + ((size_t)b * L + t) * d;
            for (int c = 0; c < d; c++) o[c] += x[c];
        }
        for (int c = 0; c < d; c++) o[c] *= inv;
    }
}

/* dinp (B, L, d) += dout (B, d) / L */
void meanpool_backward(float *dinp, const float *dout, int B, int L, int d)
{
    if (!dinp || L <= 0) return;
    float inv = 1.0f / (float)L;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++) {
            float *dx = dinp + ((size_t)b * L + t) * d;
            const float *g = dout + (size_t)b * d;
            for (int c = 0; c < d; c++) dx[c] += g[c] * inv;
        }
}

/* losses (B) = logsumexp(logits_b) - logits_b[label_b]; probs (B, V) = softmax(logits_b).
 * losses and probs may be NULL. Returns the mean loss (accumulated in double). */
float crossentropy_forward(float *losses, float *probs, const float *logits, const int *labels, int B, int V)
{
    if (B <= 0 || V <= 0) return 0.0f;
    double sum = 0.0;
    for (int b = 0; b < B; b++) {
        const float *x = logits + (size_t)b * V;
        float lse = pl_logsumexp(x, V);
        float loss = lse - x[labels[b]];
        if (losses) losses[b] = loss;
        if (probs)
            for (int v = 0; v < V; v++) probs[(size_t)b * V + v] = expf(x[v] - lse);
        sum += loss;
    }
    return (float)(sum / B);
}

/* dlogits (B, V) += (probs - onehot(label)) * scale */
void crossentropy_backward(float *dlogits, const float *probs, const int *labels, float scale, int B, int V)
{
    if (!dlogits) return;
    for (int b = 0; b < B; b++)
        for (int v = 0; v < V; v++)
            dlogits[(size_t)b * V + v] += (probs[(size_t)b * V + v] - (v == labels[b] ? 1.0f : 0.0f)) * scale;
}

/* ---------------------------------------------------------------------------- causal LM */

/* out (M, d) = E[ids[m]], E (V, d). The row copy is the whole op (no naive twin needed). */
void embedding_forward(float *out, const int *ids, const float *E, int M, int d)
{
    for (int m = 0; m < M; m++) memcpy(out + (size_t)m * d, E + (size_t)ids[m] * d, (size_t)d * sizeof(float));
}

/* dE[ids[m]] += dout[m]: a scatter, in row order (a token seen twice adds twice). */
void embedding_backward(float *dE, const float *dout, const int *ids, int M, int d)
{
    if (!dE) return;
    for (int m = 0; m < M; m++) {
        float *g = dE + (size_t)ids[m] * d;
        const float *s = dout + (size_t)m * d;
        for (int c = 0; c < d; c++) g[c] += s[c];
    }
}

/* Per row of a logits chunk: lse = logsumexp(row), loss = lse - row[target] (0 without a target).
 * logits (n, V); returns the summed loss of the chunk. */
static PL_HOT double ce_rows_forward(float *lse, const float *logits, const int *targets, int n, int V,
                                     long *correct)
{
    double sum = 0.0;
    long hit = 0;
#pragma omp parallel for num_threads(g_threads) schedule(static) reduction(+ : sum, hit) if (g_threads > 1 && n > 1)
    for (int r = 0; r < n; r++) {
        const float *x = logits + (size_t)r * V;
        float l = pl_logsumexp_fast(x, V);
        lse[r] = l;
        int t = targets[r];
        if (t >= 0) {
            sum += (double)l - x[t];
            if (correct) { /* first arg-max == target: nothing before t reaches x[t], nothing after exceeds it */
                int ok = 1;
                float xt = x[t];
                for (int v = 0; v < t && ok; v++) ok = x[v] < xt;
                for (int v = t + 1; v < V && ok; v++) ok = x[v] <= xt;
                hit += ok;
            }
        }
    }
    if (correct) *correct += hit;
    return sum;
}

/* In place: logits (n, V) -> dlogits = (softmax - onehot(target)) * scale, or 0 without a target. */
static PL_HOT void ce_rows_backward(float *logits, const float *lse, const int *targets, float scale, int n, int V)
{
#pragma omp parallel for num_threads(g_threads) schedule(static) if (g_threads > 1 && n > 1)
    for (int r = 0; r < n; r++) {
        float *x = logits + (size_t)r * V;
        if (targets[r] < 0) {
            memset(x, 0, (size_t)V * sizeof(float));
            continue;
        }
        float l = lse[r];
        for (int v = 0; v < V; v++) x[v] = pl_expf_fast(x[v] - l) * scale;
        x[targets[r]] -= scale;
    }
}

double lmhead_ce_forward(float *logits, float *lse, const float *x, const float *W, const int *targets, float *buf,
                         int chunk, int M, int d, int V)
{
    return lmhead_ce_forward_acc(logits, lse, x, W, targets, buf, chunk, M, d, V, NULL);
}

/* Rows per block of the vocabulary-chunked head: a (rows, d) x (d, Vc) product keeps the
 * sgemm efficient (128 rows against all 50,280 columns ran at two thirds of 1024 rows). */
#define PL_CE_ROW_BLOCK 1024

/* The head and the cross-entropy over the vocabulary in column chunks, each row's log-sum-exp
 * merged online: (max, sum of e^(x - max)) per row, rescaled when a later chunk raises the max;
 * the first arg-max is tracked (a later chunk replaces it only when strictly greater), so
 * `correct` counts as the row-chunked path does. buf holds budget floats: rows x Vc. */
static double lmhead_ce_vocab_chunks(float *lse, const float *x, const float *W, const int *targets, float *buf,
                                     size_t budget, int M, int d, int V, long *correct)
{
    int mb = M < PL_CE_ROW_BLOCK ? M : PL_CE_ROW_BLOCK;
    if (budget / (size_t)mb < 16) mb = budget >= 32 ? (int)(budget / 16) : 1;
    int vc = (int)(budget / (size_t)mb);
    if (vc > V) vc = V;
    if (vc >= 16) vc &= ~15;
    float *mx = xalloc_floats((size_t)mb * 3), *tl = mx + mb, *best = tl + mb;
    double *se = xmalloc((size_t)mb * sizeof(double));
    int *bi = xmalloc((size_t)mb * sizeof(int));
    double sum = 0.0;
    long hit = 0;
    for (int r0 = 0; r0 < M; r0 += mb) {
        int n = M - r0 < mb ? M - r0 : mb;
        for (int r = 0; r < n; r++) mx[r] = -INFINITY, se[r] = 0.0, tl[r] = 0.0f, best[r] = -INFINITY, bi[r] = -1;
        for (int v0 = 0; v0 < V; v0 += vc) {
            int nv = V - v0 < vc ? V - v0 : vc;
            matmul_forward(buf, x + (size_t)r0 * d, W + (size_t)v0 * d, NULL, n, d, nv);
#pragma omp parallel for num_threads(g_threads) schedule(static) if (g_threads > 1 && n > 1)
            for (int r = 0; r < n; r++) {
                const float *row = buf + (size_t)r * nv;
                float m = row[0];
#pragma omp simd reduction(max : m)
                for (int v = 1; v < nv; v++) m = row[v] > m ? row[v] : m;
                if (m > best[r]) { /* a new arg-max: its first position in this chunk */
                    int at = 0;
                    while (at < nv - 1 && !(row[at] == m)) at++;
                    best[r] = m, bi[r] = v0 + at;
                }
                float mnew = m > mx[r] ? m : mx[r];
                double b = 0.0;
                for (int i0 = 0; i0 < nv; i0 += 256) {
                    int i1 = i0 + 256 < nv ? i0 + 256 : nv;
                    float part = 0.0f;
#pragma omp simd reduction(+ : part)
                    for (int i = i0; i < i1; i++) part += pl_expf_fast(row[i] - mnew);
                    b += part;
                }
                se[r] = se[r] * (mx[r] == -INFINITY ? 0.0 : exp((double)mx[r] - mnew)) + b;
                mx[r] = mnew;
                int t = targets[r0 + r];
                if (t >= v0 && t < v0 + nv) tl[r] = row[t - v0];
            }
        }
        for (int r = 0; r < n; r++) {
            float l = mx[r] + (float)log(se[r]);
            lse[r0 + r] = l;
            int t = targets[r0 + r];
            if (t >= 0) {
                sum += (double)l - tl[r];
                hit += bi[r] == t;
            }
        }
    }
    if (correct) *correct += hit;
    free(mx), free(se), free(bi);
    return sum;
}

double lmhead_ce_forward_acc(float *logits, float *lse, const float *x, const float *W, const int *targets,
                             float *buf, int chunk, int M, int d, int V, long *correct)
{
    double sum = 0.0;
    if (chunk < 1) chunk = 1;
    if (!logits && chunk < M && M > 0 && V > 0)
        return lmhead_ce_vocab_chunks(lse, x, W, targets, buf, (size_t)chunk * V, M, d, V, correct);
    for (int r0 = 0; r0 < M; r0 += chunk) {
        int n = M - r0 < chunk ? M - r0 : chunk;
        float *lg = logits ? logits + (size_t)r0 * V : buf;
        matmul_forward(lg, x + (size_t)r0 * d, W, NULL, n, d, V);
        sum += ce_rows_forward(lse + r0, lg, targets + r0, n, V, correct);
    }
    return sum;
}

void lmhead_ce_backward(float *dx, float *dW, const float *x, const float *W, const int *targets, const float *lse,
                        float scale, float *buf, int chunk, int M, int d, int V)
{
    if (chunk < 1) chunk = 1;
    for (int r0 = 0; r0 < M; r0 += chunk) {
        int n = M - r0 < chunk ? M - r0 : chunk, any = 0;
        for (int r = 0; r < n && !any; r++) any = targets[r0 + r] >= 0;
        if (!any) continue;
        matmul_forward(buf, x + (size_t)r0 * d, W, NULL, n, d, V);
        ce_rows_backward(buf, lse + r0, targets + r0, scale, n, V);
        matmul_backward(dx ? dx + (size_t)r0 * d : NULL, dW, NULL, buf, x + (size_t)r0 * d, W, n, d, V);
    }
}

double lmhead_ce_forward_naive(float *logits, float *lse, const float *x, const float *W, const int *targets, int M,
                               int d, int V)
{
    float *lg = xmalloc((size_t)V * sizeof(float));
    double sum = 0.0;
    for (int m = 0; m < M; m++) {
        matmul_forward_naive(lg, x + (size_t)m * d, W, NULL, 1, d, V);
        if (logits) memcpy(logits + (size_t)m * V, lg, (size_t)V * sizeof(float));
        lse[m] = pl_logsumexp(lg, V);
        if (targets[m] >= 0) sum += (double)lse[m] - lg[targets[m]];
    }
    free(lg);
    return sum;
}

void lmhead_ce_backward_naive(float *dx, float *dW, const float *x, const float *W, const int *targets,
                              const float *lse, float scale, int M, int d, int V)
{
    float *lg = xmalloc((size_t)V * sizeof(float));
    for (int m = 0; m < M; m++) {
        if (targets[m] < 0) continue;
        matmul_forward_naive(lg, x + (size_t)m * d, W, NULL, 1, d, V);
        for (int v = 0; v < V; v++) lg[v] = (float)(exp((double)lg[v] - lse[m]) * scale);
        lg[targets[m]] -= scale;
        matmul_backward_naive(dx ? dx + (size_t)m * d : NULL, dW, NULL, lg, x + (size_t)m * d, W, 1, d, V);
    }
    free(lg);
}
