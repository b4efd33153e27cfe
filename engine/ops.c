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
 * - Threading: at most one `omp parallel for` per op, over independent blocks (batch rows,
 *   channel blocks or element chunks) so no two threads write the same output; the only
 *   cross-block reductions (scan dA_log/dD) go through per-chunk buffers summed serially after
 *   the loop. The thread count is ops_set_threads() (default 1); blocks are fixed by the
 *   shapes and the thread count, so results are reproducible for a given thread count.
 * - Every *_naive twin is a plain loop used as the test reference (double accumulation where
 *   it matters) and as readable documentation of the math.
 * Ownership: no function keeps or frees caller memory; scratch is allocated and freed inside
 * the call (xmalloc aborts on exhaustion, so no op returns an error). */
#include "ops.h"

#include <cblas.h>
#undef I /* openblas_config.h pulls in <complex.h>; I is our in-features letter */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "numerics.h"
#include "util.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(PL_NO_CLONES)
#define PL_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PL_HOT
#endif

static int g_threads = 1;

void ops_set_threads(int n) { g_threads = n < 1 ? 1 : n; }
int ops_get_threads(void) { return g_threads; }

/* elements per parallel chunk of an elementwise op (fits L2 with in+out) */
#define PL_CHUNK 16384
/* channels per block in conv1d and the scan (state block: 32 * N floats) */
#define PL_EBLK 32

/* ---------------------------------------------------------------------------- matmul */

/* out (M, O) = inp (M, I) @ w^T (w (O, I)) + bias (O) */
void matmul_forward(float *out, const float *inp, const float *w, const float *bias, int M, int I, int O)
{
    if (M <= 0 || O <= 0) return;
    for (int m = 0; m < M; m++) {
        float *o = out + (size_t)m * O;
        if (bias) memcpy(o, bias, (size_t)O * sizeof(float));
        else memset(o, 0, (size_t)O * sizeof(float));
    }
    if (I <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, O, I, 1.0f, inp, I, w, I, 1.0f, out, O);
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

/* ---------------------------------------------------------------------------- rmsnorm */

/* out = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps); out, inp (M, C); w (C); rstd (M) */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int M, int C)
{
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * C;
        float *o = out + (size_t)m * C;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / (float)C + PL_RMSNORM_EPS);
        if (rstd) rstd[m] = r;
        for (int c = 0; c < C; c++) o[c] = x[c] * r * w[c];
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
static PL_HOT void conv1d_fwd_block(float *out, const float *inp, const float *wT, const float *bias, int b,
                                    int e0, int e1, int L, int E, int K)
{
    for (int t = 0; t < L; t++) {
        float *o = out + ((size_t)b * L + t) * E;
        for (int e = e0; e < e1; e++) o[e] = bias ? bias[e] : 0.0f;
        for (int k = 0; k < K; k++) {
            int tt = t - K + 1 + k;
            if (tt < 0) continue;
            const float *x = inp + ((size_t)b * L + tt) * E, *wk = wT + (size_t)k * E;
            for (int e = e0; e < e1; e++) o[e] += wk[e] * x[e];
        }
    }
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

/* A (E, N) = -exp(A_log), exact libm exp (E*N values per call). Caller frees. */
static float *scan_make_A(const float *A_log, int E, int N)
{
    float *A = xmalloc((size_t)E * N * sizeof(float));
    for (size_t i = 0; i < (size_t)E * N; i++) A[i] = -expf(A_log[i]);
    return A;
}

/* Batch row b, channels e0..e1 (at most PL_EBLK), tokens in order; the block's states live in
 * hbuf (e1-e0, N) or, when caching, in hs itself (h_{t-1} read from hs, h_t written there):
 *   h_t[e,n] = exp(delta_t[e] A[e,n]) h_{t-1}[e,n] + delta_t[e] Bm_t[n] u_t[e]
 *   y_t[e]   = sum_n Cm_t[n] h_t[e,n] + D[e] u_t[e]                              (mamba.c forward_layer) */
static inline __attribute__((always_inline)) void
scan_fwd_block_n(float *y, float *hs, float *hbuf, const float *zeros, const float *u, const float *delta,
                 const float *A, const float *Bm, const float *Cm, const float *D, int b, int e0, int e1, int L,
                 int E, int N)
{
    for (int t = 0; t < L; t++) {
        size_t bt = (size_t)b * L + t;
        const float *Bt = Bm + bt * N, *Ct = Cm + bt * N;
        for (int e = e0; e < e1; e++) {
            size_t ix = bt * E + e;
            float dt = delta[ix], uu = u[ix], du = dt * uu;
            const float *Ae = A + (size_t)e * N;
            const float *hp;
            float *hc;
            if (hs) {
                hc = hs + ix * N;
                hp = t > 0 ? hc - (size_t)E * N : zeros;
            } else {
                hc = hbuf + (size_t)(e - e0) * N;
                hp = t > 0 ? hc : zeros;
            }
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (int n = 0; n < N; n++) {
                float h = pl_expf_fast(dt * Ae[n]) * hp[n] + du * Bt[n];
                hc[n] = h;
                acc += Ct[n] * h;
            }
            y[ix] = acc + D[e] * uu;
        }
    }
}

/* N = 16 (the default d_state, one AVX-512 vector) gets its own compile-time-N copy */
static PL_HOT void scan_fwd_block(float *y, float *hs, float *hbuf, const float *zeros, const float *u,
                                  const float *delta, const float *A, const float *Bm, const float *Cm,
                                  const float *D, int b, int e0, int e1, int L, int E, int N)
{
    if (N == 16) scan_fwd_block_n(y, hs, hbuf, zeros, u, delta, A, Bm, Cm, D, b, e0, e1, L, E, 16);
    else scan_fwd_block_n(y, hs, hbuf, zeros, u, delta, A, Bm, Cm, D, b, e0, e1, L, E, N);
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
    float *A = scan_make_A(A_log, E, N);
    float *zeros = xcalloc((size_t)N, sizeof(float));
    int neb = (E + PL_EBLK - 1) / PL_EBLK, nblk = B * neb;
#pragma omp parallel for num_threads(g_threads) schedule(static) if (g_threads > 1 && nblk > 1)
    for (int i = 0; i < nblk; i++) {
        int b = i / neb, e0 = (i % neb) * PL_EBLK, e1 = e0 + PL_EBLK < E ? e0 + PL_EBLK : E;
        float *hbuf = hs ? NULL : xmalloc((size_t)PL_EBLK * N * sizeof(float)); // (EBLK, N)
        scan_fwd_block(y, hs, hbuf, zeros, u, delta, A, Bm, Cm, D, b, e0, e1, L, E, N);
        free(hbuf);
    }
    free(zeros);
    free(A);
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

/* Backward through time for batch row b, all channels, tokens in reverse. With a_t = exp(delta_t A),
 * h_t = a_t h_{t-1} + delta_t B_t u_t, y_t = C_t . h_t + D u_t and g = dL/dy_t, dh = dL/dh_t:
 *   dh += g C_t;  dC_t += g h_t;  dD += g u_t;  du_t += g D + delta_t sum_n dh B_t
 *   ddelta_t += sum_n dh (A a_t h_{t-1} + B_t u_t);  dB_t += dh delta_t u_t
 *   dA += dh a_t h_{t-1} delta_t;  dh <- a_t dh  (flows to h_{t-1})
 * dAc (E, N) and dDc (E) are this chunk's private accumulators (dL/dA, not dL/dA_log);
 * dh (EBLK, N), dBt, dCt (N) are scratch. */
static inline __attribute__((always_inline)) void
scan_bwd_row_n(float *du, float *ddelta, float *dBm, float *dCm, float *dAc, float *dDc, float *dh, float *dBt,
               float *dCt, const float *zeros, const float *dy, const float *u, const float *delta, const float *A,
               const float *Bm, const float *Cm, const float *D, const float *hs, int b, int L, int E, int N)
{
    for (int e0 = 0; e0 < E; e0 += PL_EBLK) {
        int e1 = e0 + PL_EBLK < E ? e0 + PL_EBLK : E;
        memset(dh, 0, (size_t)PL_EBLK * N * sizeof(float));
        for (int t = L - 1; t >= 0; t--) {
            size_t bt = (size_t)b * L + t;
            const float *Bt = Bm + bt * N, *Ct = Cm + bt * N;
            for (int n = 0; n < N; n++) dBt[n] = dCt[n] = 0.0f;
            for (int e = e0; e < e1; e++) {
                size_t ix = bt * E + e;
                float g = dy[ix], uu = u[ix], dt = delta[ix];
                const float *Ae = A + (size_t)e * N, *hc = hs + ix * N;
                const float *hp = t > 0 ? hc - (size_t)E * N : zeros;
                float *dhe = dh + (size_t)(e - e0) * N, *dAe = dAc + (size_t)e * N;
                float dtu = dt * uu, sdt = 0.0f, sdu = 0.0f;
#pragma omp simd reduction(+ : sdt, sdu)
                for (int n = 0; n < N; n++) {
                    float a = pl_expf_fast(dt * Ae[n]);
                    float d = dhe[n] + g * Ct[n];
                    float ah = a * hp[n];
                    dCt[n] += g * hc[n];
                    dBt[n] += d * dtu;
                    sdt += d * (Ae[n] * ah + Bt[n] * uu);
                    sdu += d * Bt[n];
                    dAe[n] += d * ah * dt;
                    dhe[n] = d * a;
                }
                dDc[e] += g * uu;
                if (du) du[ix] += g * D[e] + dt * sdu;
                if (ddelta) ddelta[ix] += sdt;
            }
            if (dBm)
                for (int n = 0; n < N; n++) dBm[bt * N + n] += dBt[n];
            if (dCm)
                for (int n = 0; n < N; n++) dCm[bt * N + n] += dCt[n];
        }
    }
}

static PL_HOT void scan_bwd_row(float *du, float *ddelta, float *dBm, float *dCm, float *dAc, float *dDc,
                                float *dh, float *dBt, float *dCt, const float *zeros, const float *dy,
                                const float *u, const float *delta, const float *A, const float *Bm,
                                const float *Cm, const float *D, const float *hs, int b, int L, int E, int N)
{
    if (N == 16)
        scan_bwd_row_n(du, ddelta, dBm, dCm, dAc, dDc, dh, dBt, dCt, zeros, dy, u, delta, A, Bm, Cm, D, hs, b, L, E,
                       16);
    else
        scan_bwd_row_n(du, ddelta, dBm, dCm, dAc, dDc, dh, dBt, dCt, zeros, dy, u, delta, A, Bm, Cm, D, hs, b, L, E,
                       N);
}

void scan_backward(float *du, float *ddelta, float *dA_log, float *dBm, float *dCm, float *dD, const float *dy,
                   const float *u, const float *delta, const float *A_log, const float *Bm, const float *Cm,
                   const float *D, const float *hs, int B, int L, int E, int N)
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
    float *A = scan_make_A(A_log, E, N);
    float *zeros = xcalloc((size_t)N, sizeof(float));
    int nch = g_threads < B ? g_threads : B;
    size_t per = (size_t)E * N + E;              // per chunk: dA (E, N) then dD (E)
    float *acc = xcalloc((size_t)nch * per, sizeof(float));
#pragma omp parallel for num_threads(g_threads) schedule(static) if (nch > 1)
    for (int c = 0; c < nch; c++) {
        float *dAc = acc + (size_t)c * per, *dDc = dAc + (size_t)E * N;
        float *scratch = xmalloc(((size_t)PL_EBLK * N + 2 * (size_t)N) * sizeof(float));
        float *dh = scratch, *dBt = dh + (size_t)PL_EBLK * N, *dCt = dBt + N;
        int b0 = (int)((long)B * c / nch), b1 = (int)((long)B * (c + 1) / nch);
        for (int b = b0; b < b1; b++)
            scan_bwd_row(du, ddelta, dBm, dCm, dAc, dDc, dh, dBt, dCt, zeros, dy, u, delta, A, Bm, Cm, D, hs, b,
                         L, E, N);
        free(scratch);
    }
    for (int c = 1; c < nch; c++)
        for (size_t i = 0; i < per; i++) acc[i] += acc[(size_t)c * per + i];
    /* A = -exp(A_log)  =>  dL/dA_log = dL/dA * A */
    if (dA_log)
        for (size_t i = 0; i < (size_t)E * N; i++) dA_log[i] += acc[i] * A[i];
    if (dD)
        for (int e = 0; e < E; e++) dD[e] += acc[(size_t)E * N + e];
    free(acc);
    free(zeros);
    free(A);
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
