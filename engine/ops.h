/* ops.h — paired forward/backward kernels of the patch-Mamba model.
 *
 * Conventions (STYLE.md 1-2, 6):
 *   op_forward(out, cache..., in, weights..., dims)
 *   op_backward(dinp, dweights..., dout, in, weights, cache..., dims)
 * Backward ACCUMULATES (+=) into every gradient it is given; zeroing is the caller's job.
 * Any gradient pointer may be NULL when that gradient is not wanted.
 * Every fast op has a *_naive twin used as the reference in tests.
 *
 * Dimension letters: M rows (= B*L tokens), I in-features, O out-features, B batch,
 * L tokens, C channels, E d_inner, N d_state, K d_conv, P patch size.
 * All tensors are dense row-major float32. */
#ifndef PL_OPS_H
#define PL_OPS_H

#include <stddef.h>

/* Linear layer (PyTorch nn.Linear layout), OpenBLAS sgemm over all M rows at once.
 * out (M, O) = inp (M, I) @ w^T + bias;  w (O, I); bias (O) or NULL */
void matmul_forward(float *out, const float *inp, const float *w, const float *bias, int M, int I, int O);
void matmul_forward_naive(float *out, const float *inp, const float *w, const float *bias, int M, int I, int O);
/* dinp (M, I) += dout @ w;  dw (O, I) += dout^T @ inp;  dbias (O) += column sums of dout */
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                     int M, int I, int O);
void matmul_backward_naive(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                           const float *w, int M, int I, int O);

/* RMSNorm: out = x * w / sqrt(mean(x^2) + eps), eps = the model's layer_norm_epsilon
 * (PL_RMSNORM_EPS unless a checkpoint says otherwise).
 * out, inp (M, C); w (C); rstd (M) cache = 1 / sqrt(mean(x^2) + eps) */
#define PL_RMSNORM_EPS 1e-5f
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int M, int C, float eps);
/* Inference: out = rmsnorm(h) * w as above (no rstd), then h += bias per row, in one pass while
 * the row is in cache (the MLP's fc2 bias joins the residual stream before fc2 accumulates). */
void rmsnorm_addbias_forward(float *out, float *h, const float *w, const float *bias, int M, int C, float eps);
void rmsnorm_addbias_forward_naive(float *out, float *h, const float *w, const float *bias, int M, int C, float eps);
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int M, int C);

/* Depthwise causal conv over tokens, per channel e:
 *   out[b,t,e] = bias[e] + sum_{k<K} w[e,k] * inp[b, t-K+1+k, e]   (zero before t = 0)
 * out, inp (B, L, E); w (E, K) [checkpoint shape (E,1,K)]; bias (E) or NULL */
void conv1d_forward(float *out, const float *inp, const float *w, const float *bias, int B, int L, int E, int K);
void conv1d_forward_naive(float *out, const float *inp, const float *w, const float *bias, int B, int L, int E,
                          int K);
void conv1d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                     int B, int L, int E, int K);

/* Fused conv1d + SiLU, the inference fast path of the mixer: u = silu(conv1d(x)), and
 * xc = conv1d(x) too when xc != NULL (one pass over x instead of two). Shapes as conv1d_forward;
 * u, xc (B, L, E). Naive twin: conv1d_forward_naive followed by the plain silu. */
void conv1d_silu_forward(float *u, float *xc, const float *inp, const float *w, const float *bias, int B, int L,
                         int E, int K);
void conv1d_silu_forward_naive(float *u, float *xc, const float *inp, const float *w, const float *bias, int B,
                               int L, int E, int K);

/* Out-of-place accumulate for inference: out (M, O), row stride ldo >= O, += inp (M, I) @ w^T,
 * w (O, I). Adds a projection straight into the residual stream (no temporary, no extra pass). */
void matmul_forward_acc(float *out, int ldo, const float *inp, const float *w, int M, int I, int O);
void matmul_forward_acc_naive(float *out, int ldo, const float *inp, const float *w, int M, int I, int O);

/* Residual add of a column-compacted result: h[m, cols[k]] += src[m * lds + k] for k < n.
 * h (M, C); src (M, lds), lds >= n; cols (n) distinct columns of h. Used after a GEMM that
 * computed only the non-zero output rows of a pruned projection. */
void add_cols_forward(float *h, const float *src, int lds, const int *cols, int n, int M, int C);
void add_cols_forward_naive(float *h, const float *src, int lds, const int *cols, int n, int M, int C);

/* Elementwise over n values. */
void silu_forward(float *out, const float *inp, size_t n);
void silu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void softplus_forward(float *out, const float *inp, size_t n);
void softplus_backward(float *dinp, const float *dout, const float *inp, size_t n);
void gelu_forward(float *out, const float *inp, size_t n);
void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* Gate: out = y * silu(z). dy += dout * silu(z); dz += dout * y * silu'(z). */
void gate_forward(float *out, const float *y, const float *z, size_t n);
void gate_backward(float *dy, float *dz, const float *dout, const float *y, const float *z, size_t n);

/* Selective scan (the real recurrence), per batch b, channel e, state n, token t:
 *   A[e,n] = -exp(A_log[e,n])
 *   h_t[e,n] = exp(delta_t[e] A[e,n]) h_{t-1}[e,n] + delta_t[e] Bm_t[n] u_t[e],  h_{-1} = 0
 *   y_t[e]   = sum_n Cm_t[n] h_t[e,n] + D[e] u_t[e]
 * y, u, delta (B, L, E); A_log (E, N); Bm, Cm (B, L, N); D (E).
 * hs (B, L, E, N): optional output of every state h_t, NULL in the model (training and
 * inference): no state cache is kept between forward and backward. */
void scan_forward(float *y, float *hs, const float *u, const float *delta, const float *A_log, const float *Bm,
                  const float *Cm, const float *D, int B, int L, int E, int N);
void scan_forward_naive(float *y, float *hs, const float *u, const float *delta, const float *A_log,
                        const float *Bm, const float *Cm, const float *D, int B, int L, int E, int N);
/* Gradients wrt u, delta, A_log, Bm, Cm, D given dy. The states are recomputed from the inputs
 * (one block of channels at a time, in cache), so backward needs only what forward read. */
void scan_backward(float *du, float *ddelta, float *dA_log, float *dBm, float *dCm, float *dD, const float *dy,
                   const float *u, const float *delta, const float *A_log, const float *Bm, const float *Cm,
                   const float *D, int B, int L, int E, int N);
void scan_backward_naive(float *du, float *ddelta, float *dA_log, float *dBm, float *dCm, float *dD,
                         const float *dy, const float *u, const float *delta, const float *A_log, const float *Bm,
                         const float *Cm, const float *D, int B, int L, int E, int N);

/* Fused mixer core for inference (no cache, nothing kept for a backward): per token and channel e
 *   delta = softplus(dt_w[e, :] . dt_low + dt_b[e])       (dt_proj + softplus)
 *   y = selective scan of u with delta, A_log, B, C, D  (exactly as scan_forward)
 *   g = y * silu(z)                                       (gate)
 * in one pass per block of 16 channels: delta, y and the pre-softplus dt never reach memory.
 * xdbl (B, L, ldx), ldx >= R + 2N, is the x_proj output: columns [0, R) dt_low, [R, R+N) B,
 * [R+N, R+2N) C. u, z, g (B, L, E); dt_w (E, R); dt_b (E); A_log (E, N); D (E).
 * Equal, up to float rounding, to matmul_forward + softplus_forward + scan_forward + gate_forward;
 * the naive twin is that chain of plain loops. On AVX-512 CPUs a hand-written AVX-512 version runs
 * (ops_set_avx512); it agrees with the portable one to the same tolerance. */
void ssm_gate_forward(float *g, const float *u, const float *z, const float *xdbl, int ldx, const float *dt_w,
                      const float *dt_b, const float *A_log, const float *D, int B, int L, int E, int N, int R);
void ssm_gate_forward_naive(float *g, const float *u, const float *z, const float *xdbl, int ldx, const float *dt_w,
                            const float *dt_b, const float *A_log, const float *D, int B, int L, int E, int N,
                            int R);

/* The scan's decays, elementwise over n values: a = 2^(dt * at) (at = A log2(e) <= 0, dt >= 0), by
 * the primitive the fused kernel uses on this CPU (AVX-512: scalef-based, else numerics.h
 * pl_v16_exp2). rel err <= 3e-7 for dt * at in (-125.5, 0]; exactly 1 at 0; +0 at and below
 * -125.5 (AVX-512: down to -inf, never a denormal) or below about -126.5 (portable); NaN stays
 * NaN. Exposed for its accuracy test. */
void ssm_decay_forward(float *a, const float *dt, const float *at, size_t n);

/* Patch extraction (im2col): img (B, C, H, W) -> out (B, L, C*P*P), L = (H/P)*(W/P);
 * token t = row-major (ph, pw); feature f = c*P*P + py*P + px. H, W divisible by P. */
void patchify_forward(float *out, const float *img, int B, int C, int H, int W, int P);

/* Broadcast add of pos (L, d) to every batch: x (B, L, d) += pos; dpos (L, d) += sum_b dx. */
void posembed_forward(float *x, const float *pos, int B, int L, int d);
void posembed_backward(float *dpos, const float *dx, int B, int L, int d);

/* Mean over tokens: out (B, d) = mean_t inp (B, L, d); dinp += dout / L. */
void meanpool_forward(float *out, const float *inp, int B, int L, int d);
void meanpool_backward(float *dinp, const float *dout, int B, int L, int d);

/* Softmax cross-entropy. logits (B, V), labels (B) in [0, V).
 * losses (B) per-sample loss; probs (B, V) softmax cache. Returns the mean loss (double accumulation).
 * Backward: dlogits (B, V) += (probs - onehot) * scale  (scale = 1/B for the mean loss). */
float crossentropy_forward(float *losses, float *probs, const float *logits, const int *labels, int B, int V);
void crossentropy_backward(float *dlogits, const float *probs, const int *labels, float scale, int B, int V);

/* Causal LM (DESIGN.md 3). Token embedding: out (M, d) = E[ids[m]], ids (M) in [0, V), E (V, d);
 * backward scatters: dE[ids[m]] += dout[m]. */
void embedding_forward(float *out, const int *ids, const float *E, int M, int d);
void embedding_backward(float *dE, const float *dout, const int *ids, int M, int d);

/* LM head + next-token cross-entropy without materialising (M, V) logits: rows are taken
 * `chunk` at a time (logits chunk (chunk, V) in buf = x_rows @ W^T, then its log-sum-exp).
 * x (M, d) final normed hidden states; W (V, d) head (the embedding matrix when tied);
 * targets (M) in [0, V), or -1 for a row without a prediction (the last token of a window).
 * lse (M) out: every row's log-sum-exp, the cache backward needs. logits (M, V): when not NULL
 * every row's logits are written there instead of buf (small cases, tests, `grad`). Without
 * logits and with chunk < M, the forward walks the vocabulary instead: blocks of up to 1024 rows
 * against column chunks that fill buf's chunk * V floats, each row's log-sum-exp merged online
 * (a bigger product per weight pass; the sum's rounding differs from the row path's).
 * Returns the summed (not mean) loss over rows with a target, accumulated in double.
 * Backward recomputes each chunk's logits from x, W and lse, turns them into
 * dlogits = (softmax - onehot) * scale in place, then dx (M, d) += dlogits @ W and
 * dW (V, d) += dlogits^T @ x (chunks with no target row are skipped). buf (chunk, V) scratch.
 * Naive twins: one row at a time, double dot products, libm exp. */
double lmhead_ce_forward(float *logits, float *lse, const float *x, const float *W, const int *targets, float *buf,
                         int chunk, int M, int d, int V);
/* The same, and *correct (not NULL) += the rows with a target whose first arg-max logit is the
 * target (next-token top-1 accuracy). */
double lmhead_ce_forward_acc(float *logits, float *lse, const float *x, const float *W, const int *targets,
                             float *buf, int chunk, int M, int d, int V, long *correct);
double lmhead_ce_forward_naive(float *logits, float *lse, const float *x, const float *W, const int *targets, int M,
                               int d, int V);
void lmhead_ce_backward(float *dx, float *dW, const float *x, const float *W, const int *targets, const float *lse,
                        float scale, float *buf, int chunk, int M, int d, int V);
void lmhead_ce_backward_naive(float *dx, float *dW, const float *x, const float *W, const int *targets,
                              const float *lse, float scale, int M, int d, int V);

/* Number of threads elementwise/scan kernels may use (OpenMP); BLAS threads are set separately. */
void ops_set_threads(int n);
int ops_get_threads(void);
/* allow = 0 keeps the ops that have a hand-written AVX-512 version (ssm_gate_forward,
 * ssm_decay_forward) on their portable vector code even on AVX-512 CPUs (tests compare the two);
 * default 1. Returns 1 when the AVX-512 versions will run (allowed and the CPU has AVX-512F).
 * Takes effect at the next call; not to be changed while ops run in other threads. */
int ops_set_avx512(int allow);

#endif
