/* test_ops.c — every op of ops.h against finite differences, naive references and hand values.
 *
 * Gradient checks (table `grad_cases`): each op is wrapped as out = f(inputs); the loss is the
 * random projection sum(out * r) accumulated in double; central differences per input element
 * are compared with the analytic backward (called with dout = r). The same table drives two
 * more checks: backward accumulates (a second call doubles every gradient) and any gradient may
 * be NULL (asking for one gradient at a time gives the same numbers). Sizes are small and odd.
 * Fast kernels are compared with their naive twins (and the scan with an independent double
 * recurrence written here), with 1 and 2 threads; the fused inference kernels (conv1d + SiLU,
 * dt_proj + softplus + scan + gate, accumulating matmul) also with the unfused chain they replace. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "numerics.h"
#include "ops.h"
#include "util.h"

#define MAXT 6

static float *randv(pl_rng *r, size_t n, float lo, float hi)
{
    float *v = xalloc_floats(n);
    for (size_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * (float)pl_rng_uniform(r);
    return v;
}

static float max_rel_err(const float *a, const float *b, size_t n, float floor_abs)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]) / (fabsf(b[i]) + floor_abs);
        if (!(d <= m)) m = d; /* NaN counts as a failure */
    }
    return m;
}

/* max_i |a - b| / (|b_i| + mean |b|): relative error that does not blow up on the few entries of
 * a sum that happen to cancel to ~0 (float-vs-double accumulation error scales with the terms) */
static float max_err_vs(const float *a, const float *b, size_t n)
{
    double mean = 0.0;
    for (size_t i = 0; i < n; i++) mean += fabsf(b[i]);
    mean = n ? mean / n : 0.0;
    return max_rel_err(a, b, n, (float)mean + 1e-30f);
}

/* ------------------------------------------------------------------ gradient-check harness */

typedef struct gcase gcase;
struct gcase {
    int dims[8];
    int nin;                 /* differentiable inputs */
    float *in[MAXT];         /* inputs (perturbed by the checker) */
    size_t n_in[MAXT];
    float *grad[MAXT];       /* analytic gradients, NULL = not wanted */
    float *aux[MAXT];        /* caches, constant inputs */
    int *labels;
    float *out, *r;          /* out (n_out), projection r (n_out) */
    size_t n_out;
    void (*fwd)(gcase *);    /* out = f(in) (and caches) */
    void (*bwd)(gcase *);    /* grad += J^T r */
};

static void gc_add_in(gcase *g, float *x, size_t n)
{
    g->in[g->nin] = x;
    g->n_in[g->nin] = n;
    g->nin++;
}

static double gc_loss(gcase *g)
{
    g->fwd(g);
    double s = 0.0;
    for (size_t i = 0; i < g->n_out; i++) s += (double)g->out[i] * g->r[i];
    return s;
}

static void gc_free(gcase *g)
{
    for (int i = 0; i < MAXT; i++) {
        free(g->in[i]);
        free(g->grad[i]);
        free(g->aux[i]);
    }
    free(g->labels);
    free(g->out);
    free(g->r);
}

/* Allocate zeroed grads, projection r and out; run forward once (fills caches). */
static void gc_finish(gcase *g, pl_rng *rng, size_t n_out)
{
    g->n_out = n_out;
    g->out = xalloc_floats(n_out);
    g->r = randv(rng, n_out, -1.0f, 1.0f);
    for (int i = 0; i < g->nin; i++) g->grad[i] = xalloc_floats(g->n_in[i]);
    g->fwd(g);
}

/* ---- op wrappers: fwd/bwd in terms of the harness */

/* matmul: dims M I O, has_bias; in: inp, w, [bias] */
static void mm_fwd(gcase *g)
{
    int *d = g->dims;
    matmul_forward(g->out, g->in[0], g->in[1], d[3] ? g->in[2] : NULL, d[0], d[1], d[2]);
}
static void mm_bwd(gcase *g)
{
    int *d = g->dims;
    matmul_backward(g->grad[0], g->grad[1], d[3] ? g->grad[2] : NULL, g->r, g->in[0], g->in[1], d[0], d[1], d[2]);
}
static void setup_matmul(gcase *g, pl_rng *r, int M, int I, int O, int bias)
{
    g->dims[0] = M, g->dims[1] = I, g->dims[2] = O, g->dims[3] = bias;
    gc_add_in(g, randv(r, (size_t)M * I, -1, 1), (size_t)M * I);
    gc_add_in(g, randv(r, (size_t)O * I, -1, 1), (size_t)O * I);
    if (bias) gc_add_in(g, randv(r, O, -1, 1), O);
    g->fwd = mm_fwd, g->bwd = mm_bwd;
    gc_finish(g, r, (size_t)M * O);
}
static void setup_matmul_bias(gcase *g, pl_rng *r) { setup_matmul(g, r, 7, 5, 3, 1); }
static void setup_matmul_nobias(gcase *g, pl_rng *r) { setup_matmul(g, r, 4, 9, 6, 0); }

/* rmsnorm: dims M C; in: inp, w; aux0 rstd */
static void rms_fwd(gcase *g) { rmsnorm_forward(g->out, g->aux[0], g->in[0], g->in[1], g->dims[0], g->dims[1], PL_RMSNORM_EPS); }
static void rms_bwd(gcase *g)
{
    rmsnorm_backward(g->grad[0], g->grad[1], g->r, g->in[0], g->in[1], g->aux[0], g->dims[0], g->dims[1]);
}
static void setup_rmsnorm(gcase *g, pl_rng *r)
{
    int M = 5, C = 7;
    g->dims[0] = M, g->dims[1] = C;
    gc_add_in(g, randv(r, (size_t)M * C, -2, 2), (size_t)M * C);
    gc_add_in(g, randv(r, C, 0.5f, 1.5f), C);
    g->aux[0] = xalloc_floats(M);
    g->fwd = rms_fwd, g->bwd = rms_bwd;
    gc_finish(g, r, (size_t)M * C);
}

/* conv1d: dims B L E K; in: inp, w, bias */
static void conv_fwd(gcase *g)
{
    int *d = g->dims;
    conv1d_forward(g->out, g->in[0], g->in[1], g->in[2], d[0], d[1], d[2], d[3]);
}
static void conv_bwd(gcase *g)
{
    int *d = g->dims;
    conv1d_backward(g->grad[0], g->grad[1], g->grad[2], g->r, g->in[0], g->in[1], d[0], d[1], d[2], d[3]);
}
static void setup_conv(gcase *g, pl_rng *r, int B, int L, int E, int K)
{
    g->dims[0] = B, g->dims[1] = L, g->dims[2] = E, g->dims[3] = K;
    size_t n = (size_t)B * L * E;
    gc_add_in(g, randv(r, n, -1, 1), n);
    gc_add_in(g, randv(r, (size_t)E * K, -1, 1), (size_t)E * K);
    gc_add_in(g, randv(r, E, -1, 1), E);
    g->fwd = conv_fwd, g->bwd = conv_bwd;
    gc_finish(g, r, n);
}
static void setup_conv_odd(gcase *g, pl_rng *r) { setup_conv(g, r, 2, 6, 5, 3); }
static void setup_conv_k_gt_l(gcase *g, pl_rng *r) { setup_conv(g, r, 2, 3, 4, 5); }
static void setup_conv_wide(gcase *g, pl_rng *r) { setup_conv(g, r, 1, 4, 37, 4); } /* > one channel block */

/* elementwise: dims n; in: x (and z for gate) */
static void silu_f(gcase *g) { silu_forward(g->out, g->in[0], g->n_in[0]); }
static void silu_b(gcase *g) { silu_backward(g->grad[0], g->r, g->in[0], g->n_in[0]); }
static void softplus_f(gcase *g) { softplus_forward(g->out, g->in[0], g->n_in[0]); }
static void softplus_b(gcase *g) { softplus_backward(g->grad[0], g->r, g->in[0], g->n_in[0]); }
static void gelu_f(gcase *g) { gelu_forward(g->out, g->in[0], g->n_in[0]); }
static void gelu_b(gcase *g) { gelu_backward(g->grad[0], g->r, g->in[0], g->n_in[0]); }
static void gate_f(gcase *g) { gate_forward(g->out, g->in[0], g->in[1], g->n_in[0]); }
static void gate_b(gcase *g) { gate_backward(g->grad[0], g->grad[1], g->r, g->in[0], g->in[1], g->n_in[0]); }

static void setup_unary(gcase *g, pl_rng *r, float lo, float hi, void (*f)(gcase *), void (*b)(gcase *))
{
    size_t n = 37;
    gc_add_in(g, randv(r, n, lo, hi), n);
    g->fwd = f, g->bwd = b;
    gc_finish(g, r, n);
}
static void setup_silu(gcase *g, pl_rng *r) { setup_unary(g, r, -6, 6, silu_f, silu_b); }
static void setup_gelu(gcase *g, pl_rng *r) { setup_unary(g, r, -4, 4, gelu_f, gelu_b); }
static void setup_softplus(gcase *g, pl_rng *r)
{
    setup_unary(g, r, -8, 8, softplus_f, softplus_b);
    g->in[0][0] = 25.0f;  /* above the guard: identity */
    g->in[0][1] = -30.0f; /* deep negative: ~e^v */
    g->in[0][2] = 19.0f;
    g->fwd(g);
}
static void setup_gate(gcase *g, pl_rng *r)
{
    size_t n = 37;
    gc_add_in(g, randv(r, n, -2, 2), n);
    gc_add_in(g, randv(r, n, -6, 6), n);
    g->fwd = gate_f, g->bwd = gate_b;
    gc_finish(g, r, n);
}

/* scan: dims B L E N; in: u, delta, A_log, Bm, Cm, D. No state cache (as the model calls it):
 * the backward recomputes the states. scan_bn runs the naive backward through the same checks. */
static void scan_f(gcase *g)
{
    int *d = g->dims;
    scan_forward(g->out, NULL, g->in[0], g->in[1], g->in[2], g->in[3], g->in[4], g->in[5], d[0], d[1], d[2], d[3]);
}
static void scan_b(gcase *g)
{
    int *d = g->dims;
    scan_backward(g->grad[0], g->grad[1], g->grad[2], g->grad[3], g->grad[4], g->grad[5], g->r, g->in[0], g->in[1],
                  g->in[2], g->in[3], g->in[4], g->in[5], d[0], d[1], d[2], d[3]);
}
static void scan_bn(gcase *g)
{
    int *d = g->dims;
    scan_backward_naive(g->grad[0], g->grad[1], g->grad[2], g->grad[3], g->grad[4], g->grad[5], g->r, g->in[0],
                        g->in[1], g->in[2], g->in[3], g->in[4], g->in[5], d[0], d[1], d[2], d[3]);
}
static void setup_scan_dims(gcase *g, pl_rng *r, int B, int L, int E, int N)
{
    g->dims[0] = B, g->dims[1] = L, g->dims[2] = E, g->dims[3] = N;
    size_t nx = (size_t)B * L * E, nb = (size_t)B * L * N;
    gc_add_in(g, randv(r, nx, -1, 1), nx);                      /* u */
    gc_add_in(g, randv(r, nx, 0.1f, 0.8f), nx);                 /* delta > 0 */
    gc_add_in(g, randv(r, (size_t)E * N, -0.5f, 1.0f), (size_t)E * N); /* A_log */
    gc_add_in(g, randv(r, nb, -1, 1), nb);                      /* Bm */
    gc_add_in(g, randv(r, nb, -1, 1), nb);                      /* Cm */
    gc_add_in(g, randv(r, E, -1, 1), E);                        /* D */
    g->fwd = scan_f, g->bwd = scan_b;
    gc_finish(g, r, nx);
}
static void setup_scan(gcase *g, pl_rng *r) { setup_scan_dims(g, r, 2, 6, 5, 3); }
static void setup_scan_wide(gcase *g, pl_rng *r) { setup_scan_dims(g, r, 3, 4, 35, 17); } /* 2 full blocks + tail */
static void setup_scan_naive(gcase *g, pl_rng *r)
{
    setup_scan_dims(g, r, 2, 5, 7, 4);
    g->bwd = scan_bn;
}

/* posembed: dims B L d; in: pos; aux0 = x (constant) */
static void pos_f(gcase *g)
{
    memcpy(g->out, g->aux[0], g->n_out * sizeof(float));
    posembed_forward(g->out, g->in[0], g->dims[0], g->dims[1], g->dims[2]);
}
static void pos_b(gcase *g) { posembed_backward(g->grad[0], g->r, g->dims[0], g->dims[1], g->dims[2]); }
static void setup_pos(gcase *g, pl_rng *r)
{
    int B = 3, L = 5, d = 2;
    g->dims[0] = B, g->dims[1] = L, g->dims[2] = d;
    g->aux[0] = randv(r, (size_t)B * L * d, -1, 1);
    gc_add_in(g, randv(r, (size_t)L * d, -1, 1), (size_t)L * d);
    g->fwd = pos_f, g->bwd = pos_b;
    gc_finish(g, r, (size_t)B * L * d);
}

/* meanpool: dims B L d; in: inp */
static void pool_f(gcase *g) { meanpool_forward(g->out, g->in[0], g->dims[0], g->dims[1], g->dims[2]); }
static void pool_b(gcase *g) { meanpool_backward(g->grad[0], g->r, g->dims[0], g->dims[1], g->dims[2]); }
static void setup_pool(gcase *g, pl_rng *r)
{
    int B = 2, L = 7, d = 3;
    g->dims[0] = B, g->dims[1] = L, g->dims[2] = d;
    gc_add_in(g, randv(r, (size_t)B * L * d, -1, 1), (size_t)B * L * d);
    g->fwd = pool_f, g->bwd = pool_b;
    gc_finish(g, r, (size_t)B * d);
}

/* crossentropy: dims B V; in: logits; aux0 probs; out = losses. The backward takes one scale for
 * all rows, so the projection is a constant r = 0.7 (= scale). */
static void ce_f(gcase *g) { crossentropy_forward(g->out, g->aux[0], g->in[0], g->labels, g->dims[0], g->dims[1]); }
static void ce_b(gcase *g) { crossentropy_backward(g->grad[0], g->aux[0], g->labels, 0.7f, g->dims[0], g->dims[1]); }
static void setup_ce(gcase *g, pl_rng *r)
{
    int B = 3, V = 5;
    g->dims[0] = B, g->dims[1] = V;
    gc_add_in(g, randv(r, (size_t)B * V, -3, 3), (size_t)B * V);
    g->aux[0] = xalloc_floats((size_t)B * V);
    g->labels = xmalloc(B * sizeof(int));
    for (int b = 0; b < B; b++) g->labels[b] = (int)pl_rng_below(r, V);
    g->fwd = ce_f, g->bwd = ce_b;
    gc_finish(g, r, B);
    for (int b = 0; b < B; b++) g->r[b] = 0.7f;
}

typedef struct {
    const char *name;
    void (*setup)(gcase *, pl_rng *);
    float h;           /* finite-difference step */
    float atol, rtol;  /* |num - ana| <= atol + rtol |ana| */
} grad_case;

static const grad_case grad_cases[] = {
    {"matmul M7 I5 O3 bias", setup_matmul_bias, 1e-2f, 2e-4f, 1e-3f},
    {"matmul M4 I9 O6 nobias", setup_matmul_nobias, 1e-2f, 2e-4f, 1e-3f},
    {"rmsnorm M5 C7", setup_rmsnorm, 1e-3f, 1e-3f, 2e-3f},
    {"conv1d B2 L6 E5 K3", setup_conv_odd, 1e-2f, 2e-4f, 1e-3f},
    {"conv1d K>L B2 L3 E4 K5", setup_conv_k_gt_l, 1e-2f, 2e-4f, 1e-3f},
    {"conv1d E37 (two blocks)", setup_conv_wide, 1e-2f, 2e-4f, 1e-3f},
    {"silu n37", setup_silu, 1e-3f, 5e-4f, 2e-3f},
    {"softplus n37 (+-guard)", setup_softplus, 1e-3f, 5e-4f, 2e-3f},
    {"gelu n37", setup_gelu, 1e-3f, 5e-4f, 2e-3f},
    {"gate n37", setup_gate, 1e-3f, 5e-4f, 2e-3f},
    {"scan B2 L6 E5 N3", setup_scan, 1e-3f, 1e-3f, 3e-3f},
    {"scan B3 L4 E35 N17", setup_scan_wide, 1e-3f, 2e-3f, 3e-3f},
    {"scan naive backward B2 L5 E7 N4", setup_scan_naive, 1e-3f, 1e-3f, 3e-3f},
    {"posembed B3 L5 d2", setup_pos, 1e-2f, 2e-4f, 1e-3f},
    {"meanpool B2 L7 d3", setup_pool, 1e-2f, 2e-4f, 1e-3f},
    {"crossentropy B3 V5", setup_ce, 1e-3f, 5e-4f, 2e-3f},
};
#define N_GRAD_CASES ((int)(sizeof grad_cases / sizeof grad_cases[0]))

static void gc_setup(gcase *g, int i)
{
    memset(g, 0, sizeof *g);
    pl_rng r;
    pl_rng_seed(&r, 1000 + (uint64_t)i);
    grad_cases[i].setup(g, &r);
}

START_TEST(test_grad_fd)
{
    const grad_case *c = &grad_cases[_i];
    gcase g;
    gc_setup(&g, _i);
    g.bwd(&g);
    for (int k = 0; k < g.nin; k++)
        for (size_t j = 0; j < g.n_in[k]; j++) {
            float *x = &g.in[k][j], x0 = *x;
            *x = x0 + c->h;
            double lp = gc_loss(&g);
            *x = x0 - c->h;
            double lm = gc_loss(&g);
            *x = x0;
            double num = (lp - lm) / (2.0 * c->h), ana = g.grad[k][j];
            ck_assert_msg(fabs(num - ana) <= c->atol + c->rtol * fabs(ana),
                          "%s: input %d elem %zu: numeric %.7g analytic %.7g", c->name, k, j, num, ana);
        }
    gc_free(&g);
}
END_TEST

START_TEST(test_grad_accumulates)
{
    const grad_case *c = &grad_cases[_i];
    gcase g;
    gc_setup(&g, _i);
    g.bwd(&g);
    float *once[MAXT];
    for (int k = 0; k < g.nin; k++) {
        once[k] = xalloc_floats(g.n_in[k]);
        memcpy(once[k], g.grad[k], g.n_in[k] * sizeof(float));
    }
    g.bwd(&g);
    for (int k = 0; k < g.nin; k++) {
        for (size_t j = 0; j < g.n_in[k]; j++)
            ck_assert_msg(fabsf(g.grad[k][j] - 2.0f * once[k][j]) <= 1e-6f * (1.0f + fabsf(once[k][j])),
                          "%s: input %d elem %zu: second call gave %g, first %g", c->name, k, j, g.grad[k][j],
                          once[k][j]);
        free(once[k]);
    }
    gc_free(&g);
}
END_TEST

START_TEST(test_grad_null_ok)
{
    const grad_case *c = &grad_cases[_i];
    gcase g;
    gc_setup(&g, _i);
    g.bwd(&g);
    float *all[MAXT];
    for (int k = 0; k < g.nin; k++) all[k] = g.grad[k];
    for (int k = 0; k < g.nin; k++) {
        for (int j = 0; j < g.nin; j++) g.grad[j] = NULL;
        g.grad[k] = xalloc_floats(g.n_in[k]);
        g.bwd(&g);
        ck_assert_msg(max_rel_err(g.grad[k], all[k], g.n_in[k], 1e-6f) <= 1e-6f, "%s: input %d alone differs",
                      c->name, k);
        free(g.grad[k]);
    }
    for (int k = 0; k < g.nin; k++) g.grad[k] = all[k];
    for (int j = 0; j < g.nin; j++) g.grad[j] = NULL;
    g.bwd(&g); /* all NULL: must not crash */
    for (int k = 0; k < g.nin; k++) g.grad[k] = all[k];
    gc_free(&g);
}
END_TEST

/* ------------------------------------------------------------------ fast vs naive */

/* {300, 40, 80}: narrow and tall enough for the row split among threads (ops.c gemm_nt) */
static const int mm_shapes[][3] = {{7, 5, 3}, {1, 1, 1}, {64, 33, 17}, {128, 64, 256}, {49, 128, 36}, {3, 200, 2}, {300, 40, 80}};
#define N_MM ((int)(sizeof mm_shapes / sizeof mm_shapes[0]))

START_TEST(test_matmul_vs_naive)
{
    int M = mm_shapes[_i][0], I = mm_shapes[_i][1], O = mm_shapes[_i][2];
    pl_rng r;
    pl_rng_seed(&r, 7 + (uint64_t)_i);
    float *x = randv(&r, (size_t)M * I, -1, 1), *w = randv(&r, (size_t)O * I, -1, 1), *b = randv(&r, O, -1, 1);
    float *g = randv(&r, (size_t)M * O, -1, 1);
    float *o1 = xalloc_floats((size_t)M * O), *o2 = xalloc_floats((size_t)M * O);
    matmul_forward(o1, x, w, b, M, I, O);
    matmul_forward_naive(o2, x, w, b, M, I, O);
    ck_assert_msg(max_err_vs(o1, o2, (size_t)M * O) < 1e-5f, "forward %dx%dx%d", M, I, O);
    matmul_forward(o1, x, w, NULL, M, I, O);
    matmul_forward_naive(o2, x, w, NULL, M, I, O);
    ck_assert_msg(max_err_vs(o1, o2, (size_t)M * O) < 1e-5f, "forward nobias %dx%dx%d", M, I, O);
    /* backward onto non-zero starting gradients (accumulation) */
    float *dx1 = randv(&r, (size_t)M * I, -1, 1), *dw1 = randv(&r, (size_t)O * I, -1, 1), *db1 = randv(&r, O, -1, 1);
    float *dx2 = xalloc_floats((size_t)M * I), *dw2 = xalloc_floats((size_t)O * I), *db2 = xalloc_floats(O);
    memcpy(dx2, dx1, (size_t)M * I * 4), memcpy(dw2, dw1, (size_t)O * I * 4), memcpy(db2, db1, (size_t)O * 4);
    matmul_backward(dx1, dw1, db1, g, x, w, M, I, O);
    matmul_backward_naive(dx2, dw2, db2, g, x, w, M, I, O);
    ck_assert_msg(max_err_vs(dx1, dx2, (size_t)M * I) < 1e-5f, "dinp %dx%dx%d", M, I, O);
    ck_assert_msg(max_err_vs(dw1, dw2, (size_t)O * I) < 1e-5f, "dw %dx%dx%d", M, I, O);
    ck_assert_msg(max_err_vs(db1, db2, O) < 1e-5f, "dbias %dx%dx%d", M, I, O);
    free(x), free(w), free(b), free(g), free(o1), free(o2);
    free(dx1), free(dw1), free(db1), free(dx2), free(dw2), free(db2);
}
END_TEST

static const int conv_shapes[][4] = {{2, 6, 5, 3}, {2, 3, 4, 5}, {3, 49, 128, 4}, {1, 9, 70, 1}, {2, 5, 33, 2}};
#define N_CONV ((int)(sizeof conv_shapes / sizeof conv_shapes[0]))

START_TEST(test_conv1d_vs_naive)
{
    const int *s = conv_shapes[_i];
    int B = s[0], L = s[1], E = s[2], K = s[3];
    size_t n = (size_t)B * L * E;
    pl_rng r;
    pl_rng_seed(&r, 31 + (uint64_t)_i);
    float *x = randv(&r, n, -1, 1), *w = randv(&r, (size_t)E * K, -1, 1), *b = randv(&r, E, -1, 1);
    float *o1 = xalloc_floats(n), *o2 = xalloc_floats(n);
    conv1d_forward_naive(o2, x, w, b, B, L, E, K);
    for (int th = 1; th <= 2; th++) {
        ops_set_threads(th);
        conv1d_forward(o1, x, w, b, B, L, E, K);
        ck_assert_msg(max_err_vs(o1, o2, n) < 1e-5f, "conv B%d L%d E%d K%d threads %d", B, L, E, K, th);
        conv1d_forward(o1, x, w, NULL, B, L, E, K);
        for (size_t i = 0; i < n; i++) o2[i] -= b[i % E];
        ck_assert_msg(max_err_vs(o1, o2, n) < 1e-5f, "conv nobias threads %d", th);
        for (size_t i = 0; i < n; i++) o2[i] += b[i % E];
    }
    /* backward: 2 threads equal 1 thread */
    float *g = randv(&r, n, -1, 1);
    float *dx[2], *dw[2], *db[2];
    for (int th = 1; th <= 2; th++) {
        ops_set_threads(th);
        dx[th - 1] = xalloc_floats(n), dw[th - 1] = xalloc_floats((size_t)E * K), db[th - 1] = xalloc_floats(E);
        conv1d_backward(dx[th - 1], dw[th - 1], db[th - 1], g, x, w, B, L, E, K);
    }
    ops_set_threads(1);
    ck_assert(max_err_vs(dx[1], dx[0], n) < 1e-5f);
    ck_assert(max_err_vs(dw[1], dw[0], (size_t)E * K) < 1e-5f);
    ck_assert(max_err_vs(db[1], db[0], E) < 1e-5f);
    for (int i = 0; i < 2; i++) free(dx[i]), free(dw[i]), free(db[i]);
    free(x), free(w), free(b), free(o1), free(o2), free(g);
}
END_TEST

/* Independent reference: the recurrence in double, state by state (loops n outermost). */
static void scan_ref_double(double *y, double *hs, const float *u, const float *delta, const float *A_log,
                            const float *Bm, const float *Cm, const float *D, int B, int L, int E, int N)
{
    for (int b = 0; b < B; b++)
        for (int e = 0; e < E; e++) {
            for (int t = 0; t < L; t++) {
                size_t ix = ((size_t)b * L + t) * E + e;
                y[ix] = (double)D[e] * u[ix];
            }
            for (int n = 0; n < N; n++) {
                double A = -exp((double)A_log[e * N + n]), h = 0.0;
                for (int t = 0; t < L; t++) {
                    size_t ix = ((size_t)b * L + t) * E + e, bt = (size_t)b * L + t;
                    h = exp((double)delta[ix] * A) * h + (double)delta[ix] * Bm[bt * N + n] * u[ix];
                    hs[ix * N + n] = h;
                    y[ix] += (double)Cm[bt * N + n] * h;
                }
            }
        }
}

static const int scan_shapes[][4] = {{2, 6, 5, 3},  {1, 49, 128, 16}, {3, 7, 33, 16}, {2, 5, 40, 1},
                                     {1, 1, 3, 5},  {2, 9, 16, 17},    {3, 4, 21, 8}};
#define N_SCAN ((int)(sizeof scan_shapes / sizeof scan_shapes[0]))

START_TEST(test_scan_vs_naive)
{
    const int *s = scan_shapes[_i];
    int B = s[0], L = s[1], E = s[2], N = s[3];
    size_t nx = (size_t)B * L * E, nb = (size_t)B * L * N, nh = nx * N;
    pl_rng r;
    pl_rng_seed(&r, 77 + (uint64_t)_i);
    float *u = randv(&r, nx, -1, 1), *dl = randv(&r, nx, 0.001f, 2.0f), *Al = randv(&r, (size_t)E * N, -1, 3);
    float *Bm = randv(&r, nb, -1, 1), *Cm = randv(&r, nb, -1, 1), *D = randv(&r, E, -1, 1);
    dl[0] = 40.0f;  /* delta * A far below -87: the decay underflows to 0 */
    if (E > 1) dl[1] = 1e7f; /* and far below -2^22 / log2(e) */
    float *y1 = xalloc_floats(nx), *y2 = xalloc_floats(nx), *y3 = xalloc_floats(nx);
    float *h1 = xalloc_floats(nh), *h2 = xalloc_floats(nh);
    double *yd = xmalloc(nx * sizeof(double)), *hd = xmalloc(nh * sizeof(double));
    float *yf = xalloc_floats(nx), *hf = xalloc_floats(nh);
    scan_forward_naive(y2, h2, u, dl, Al, Bm, Cm, D, B, L, E, N);
    scan_ref_double(yd, hd, u, dl, Al, Bm, Cm, D, B, L, E, N);
    for (size_t i = 0; i < nx; i++) yf[i] = (float)yd[i];
    for (size_t i = 0; i < nh; i++) hf[i] = (float)hd[i];
    ck_assert_msg(max_err_vs(y2, yf, nx) < 1e-5f, "naive y vs double recurrence: %g", max_err_vs(y2, yf, nx));
    ck_assert_msg(max_err_vs(h2, hf, nh) < 1e-5f, "naive hs vs double recurrence: %g", max_err_vs(h2, hf, nh));
    for (int th = 1; th <= 2; th++) {
        ops_set_threads(th);
        scan_forward(y1, h1, u, dl, Al, Bm, Cm, D, B, L, E, N);
        scan_forward(y3, NULL, u, dl, Al, Bm, Cm, D, B, L, E, N);
        /* against the double recurrence: the fast path rounds A log2(e) where the naive rounds
         * delta A, so each is off by ~|delta A| 1e-7 in every decay (|delta A| up to 40 here) */
        ck_assert_msg(max_err_vs(y1, yf, nx) < 2e-5f, "y threads %d: %g", th, max_err_vs(y1, yf, nx));
        ck_assert_msg(max_err_vs(h1, hf, nh) < 2e-5f, "hs threads %d: %g", th, max_err_vs(h1, hf, nh));
        ck_assert_msg(max_rel_err(y3, y1, nx, 1e-6f) == 0.0f, "y without hs output differs, threads %d", th);
    }
    /* backward: fast (1 and 2 threads) against the naive twin; gradients accumulate onto a
     * nonzero start, and 2 threads agree with 1 */
    float *g = randv(&r, nx, -1, 1);
    float *gr[3][6];
    size_t sz[6] = {nx, nx, (size_t)E * N, nb, nb, (size_t)E};
    for (int v = 0; v < 3; v++) {
        for (int k = 0; k < 6; k++) {
            gr[v][k] = xalloc_floats(sz[k]);
            for (size_t i = 0; i < sz[k]; i++) gr[v][k][i] = 0.25f;
        }
        float **q = gr[v];
        if (v == 0) {
            scan_backward_naive(q[0], q[1], q[2], q[3], q[4], q[5], g, u, dl, Al, Bm, Cm, D, B, L, E, N);
        } else {
            ops_set_threads(v);
            scan_backward(q[0], q[1], q[2], q[3], q[4], q[5], g, u, dl, Al, Bm, Cm, D, B, L, E, N);
        }
    }
    ops_set_threads(1);
    static const char *names[6] = {"du", "ddelta", "dA_log", "dBm", "dCm", "dD"};
    for (int k = 0; k < 6; k++) {
        for (size_t i = 0; i < sz[k]; i++) ck_assert(isfinite(gr[1][k][i]));
        float e1 = max_err_vs(gr[1][k], gr[0][k], sz[k]), e2 = max_err_vs(gr[2][k], gr[1][k], sz[k]);
        ck_assert_msg(e1 < 1e-4f, "%s fast vs naive: %g", names[k], e1);
        ck_assert_msg(e2 < 1e-5f, "%s differs across threads: %g", names[k], e2);
        for (int v = 0; v < 3; v++) free(gr[v][k]);
    }
    free(u), free(dl), free(Al), free(Bm), free(Cm), free(D), free(y1), free(y2), free(y3), free(h1), free(h2);
    free(yd), free(hd), free(yf), free(hf), free(g);
}
END_TEST

/* Fused conv1d + SiLU against its naive twin and against the unfused fast chain; the optional
 * pre-activation output equals conv1d_forward. */
START_TEST(test_conv1d_silu_vs_naive)
{
    const int *s = conv_shapes[_i];
    int B = s[0], L = s[1], E = s[2], K = s[3];
    size_t n = (size_t)B * L * E;
    pl_rng r;
    pl_rng_seed(&r, 131 + (uint64_t)_i);
    float *x = randv(&r, n, -3, 3), *w = randv(&r, (size_t)E * K, -1, 1), *b = randv(&r, E, -1, 1);
    float *u1 = xalloc_floats(n), *u2 = xalloc_floats(n), *xc1 = xalloc_floats(n), *xc2 = xalloc_floats(n);
    float *c3 = xalloc_floats(n), *u3 = xalloc_floats(n);
    conv1d_silu_forward_naive(u2, xc2, x, w, b, B, L, E, K);
    for (int th = 1; th <= 2; th++) {
        ops_set_threads(th);
        conv1d_forward(c3, x, w, b, B, L, E, K);
        silu_forward(u3, c3, n);
        for (size_t i = 0; i < n; i++) u1[i] = xc1[i] = NAN;
        conv1d_silu_forward(u1, xc1, x, w, b, B, L, E, K);
        ck_assert_msg(max_err_vs(u1, u2, n) < 1e-5f, "u vs naive B%d L%d E%d K%d threads %d: %g", B, L, E, K, th,
                      max_err_vs(u1, u2, n));
        ck_assert_msg(max_err_vs(xc1, xc2, n) < 1e-5f, "xc vs naive, threads %d", th);
        ck_assert_msg(max_err_vs(u1, u3, n) < 1e-6f, "u vs conv1d_forward + silu_forward, threads %d", th);
        for (size_t i = 0; i < n; i++) u1[i] = NAN;
        conv1d_silu_forward(u1, NULL, x, w, NULL, B, L, E, K);
        conv1d_silu_forward_naive(u2, NULL, x, w, NULL, B, L, E, K);
        ck_assert_msg(max_err_vs(u1, u2, n) < 1e-5f, "u without xc and bias, threads %d", th);
        conv1d_silu_forward_naive(u2, xc2, x, w, b, B, L, E, K);
    }
    ops_set_threads(1);
    free(x), free(w), free(b), free(u1), free(u2), free(xc1), free(xc2), free(c3), free(u3);
}
END_TEST

/* matmul_forward_acc adds into a strided output and leaves the padding columns alone;
 * matmul_forward without bias overwrites whatever out held (NaN included). */
START_TEST(test_matmul_acc_vs_naive)
{
    int M = mm_shapes[_i][0], I = mm_shapes[_i][1], O = mm_shapes[_i][2], ldo = O + 3;
    pl_rng r;
    pl_rng_seed(&r, 17 + (uint64_t)_i);
    float *x = randv(&r, (size_t)M * I, -1, 1), *w = randv(&r, (size_t)O * I, -1, 1);
    float *o1 = randv(&r, (size_t)M * ldo, -1, 1), *o2 = xalloc_floats((size_t)M * ldo);
    float *o0 = xalloc_floats((size_t)M * ldo);
    memcpy(o0, o1, (size_t)M * ldo * sizeof(float));
    float *p1 = xalloc_floats((size_t)M * O), *p2 = xalloc_floats((size_t)M * O);
    for (int th = 1; th <= 2; th++) { /* 2 threads: narrow tall products are split by rows */
        ops_set_threads(th);
        memcpy(o1, o0, (size_t)M * ldo * sizeof(float)), memcpy(o2, o0, (size_t)M * ldo * sizeof(float));
        matmul_forward_acc(o1, ldo, x, w, M, I, O);
        matmul_forward_acc_naive(o2, ldo, x, w, M, I, O);
        ck_assert_msg(max_err_vs(o1, o2, (size_t)M * ldo) < 1e-5f, "acc %dx%dx%d threads %d", M, I, O, th);
        for (int m = 0; m < M; m++)
            for (int k = O; k < ldo; k++) ck_assert_float_eq(o1[(size_t)m * ldo + k], o2[(size_t)m * ldo + k]);
        for (size_t i = 0; i < (size_t)M * O; i++) p1[i] = NAN;
        matmul_forward(p1, x, w, NULL, M, I, O);
        matmul_forward_naive(p2, x, w, NULL, M, I, O);
        ck_assert_msg(max_err_vs(p1, p2, (size_t)M * O) < 1e-5f, "forward nobias over NaN %dx%dx%d threads %d", M, I, O,
                      th);
    }
    ops_set_threads(1);
    free(x), free(w), free(o0), free(o1), free(o2), free(p1), free(p2);
}
END_TEST

/* add_cols_forward: the kept columns receive their compact column, the others stay untouched.
 * Case 0: sorted columns over two full 16-column vectors and a tail (the vector path, and the
 * scalar fallback for the last rows' windows); case 1: the same columns unsorted (scalar path);
 * case 2: every column kept. */
START_TEST(test_add_cols_vs_naive)
{
    int M = 37, C = 37, cols[37], n = 0;
    for (int j = 0; j < C; j++)
        if (_i == 2 || j % 3 != 1) cols[n++] = j;
    if (_i == 1)
        for (int k = 0; k + 1 < n; k += 2) {
            int t = cols[k];
            cols[k] = cols[k + 1], cols[k + 1] = t;
        }
    int lds = n + (_i == 0 ? 0 : 3), col_of[37];
    for (int j = 0; j < C; j++) col_of[j] = -1;
    for (int k = 0; k < n; k++) col_of[cols[k]] = k;
    pl_rng r;
    pl_rng_seed(&r, 5 + (uint64_t)_i);
    float *src = randv(&r, (size_t)M * lds, -1, 1), *h1 = randv(&r, (size_t)M * C, -1, 1);
    float *h2 = xalloc_floats((size_t)M * C), *h0 = xalloc_floats((size_t)M * C);
    memcpy(h2, h1, (size_t)M * C * sizeof(float)), memcpy(h0, h1, (size_t)M * C * sizeof(float));
    add_cols_forward(h1, src, lds, cols, n, M, C);
    add_cols_forward_naive(h2, src, lds, cols, n, M, C);
    for (int m = 0; m < M; m++)
        for (int j = 0; j < C; j++) {
            size_t i = (size_t)m * C + j;
            ck_assert_float_eq(h1[i], h2[i]);
            if (col_of[j] < 0) ck_assert_float_eq(h1[i], h0[i]);
            else ck_assert_float_eq(h1[i], h0[i] + src[(size_t)m * lds + col_of[j]]);
        }
    free(src), free(h1), free(h2), free(h0);
}
END_TEST

/* rmsnorm_addbias_forward: out equals rmsnorm_forward of the input rows, h gains the bias after. */
START_TEST(test_rmsnorm_addbias_vs_naive)
{
    int M = 29, C = 45;
    size_t n = (size_t)M * C;
    pl_rng r;
    pl_rng_seed(&r, 9);
    float *h1 = randv(&r, n, -2, 2), *w = randv(&r, C, -1, 1), *b = randv(&r, C, -1, 1);
    float *h2 = xalloc_floats(n), *h0 = xalloc_floats(n), *o1 = xalloc_floats(n), *o2 = xalloc_floats(n);
    float *o3 = xalloc_floats(n);
    memcpy(h2, h1, n * sizeof(float)), memcpy(h0, h1, n * sizeof(float));
    rmsnorm_forward(o3, NULL, h0, w, M, C, PL_RMSNORM_EPS);
    rmsnorm_addbias_forward(o1, h1, w, b, M, C, PL_RMSNORM_EPS);
    rmsnorm_addbias_forward_naive(o2, h2, w, b, M, C, PL_RMSNORM_EPS);
    ck_assert_msg(max_err_vs(o1, o2, n) < 1e-6f, "out vs naive: %g", max_err_vs(o1, o2, n));
    ck_assert_msg(max_err_vs(o1, o3, n) == 0.0f, "out vs rmsnorm_forward");
    for (size_t i = 0; i < n; i++) ck_assert_float_eq(h1[i], h0[i] + b[i % C]);
    ck_assert(memcmp(h1, h2, n * sizeof(float)) == 0);
    rmsnorm_addbias_forward(o1, h1, w, NULL, M, C, PL_RMSNORM_EPS); /* no bias: h unchanged */
    for (size_t i = 0; i < n; i++) ck_assert_float_eq(h1[i], h0[i] + b[i % C]);
    free(h1), free(w), free(b), free(h2), free(h0), free(o1), free(o2), free(o3);
}
END_TEST

/* Fused dt_proj + softplus + scan + gate: against the naive twin (libm, double sums), against
 * the unfused fast chain the model's training forward runs, and 2 threads equal 1 exactly.
 * Shapes cover the register paths (N 16 and 8), the general one, partial channel blocks, a
 * padded x_proj row (ldx > R + 2N) and windows of several runs of the chunked scan. */
static const int ssm_shapes[][5] = {{2, 6, 5, 3, 2},   {1, 49, 96, 16, 4}, {3, 7, 33, 16, 1}, {2, 9, 21, 8, 3},
                                    {2, 5, 40, 1, 2},  {1, 1, 3, 5, 1},    {2, 4, 17, 16, 4}, {1, 12, 16, 8, 2},
                                    /* longer than a run of the chunked scan (64 tokens): state carried across runs */
                                    {1, 150, 40, 16, 3}, {2, 131, 16, 8, 2}, {1, 128, 32, 16, 2}, {1, 70, 20, 5, 2}};
#define N_SSM ((int)(sizeof ssm_shapes / sizeof ssm_shapes[0]))

START_TEST(test_ssm_gate_vs_naive)
{
    const int *s = ssm_shapes[_i];
    int B = s[0], L = s[1], E = s[2], N = s[3], R = s[4], X = R + 2 * N, ldx = X + 2;
    size_t BL = (size_t)B * L, nx = BL * E;
    pl_rng r;
    pl_rng_seed(&r, 177 + (uint64_t)_i);
    float *u = randv(&r, nx, -1, 1), *z = randv(&r, nx, -4, 4), *xd = randv(&r, BL * ldx, -1, 1);
    float *dw = randv(&r, (size_t)E * R, -1, 1), *db = randv(&r, E, -5, 1), *Al = randv(&r, (size_t)E * N, -1, 3);
    float *D = randv(&r, E, -1, 1);
    xd[0] = 30.0f; /* dt_proj of token 0 above 20 on some channels: the softplus guard */
    z[0] = -100.0f, z[nx - 1] = 100.0f; /* silu far in both tails */
    float *g1 = xalloc_floats(nx), *g2 = xalloc_floats(nx), *g3 = xalloc_floats(nx);
    ssm_gate_forward_naive(g2, u, z, xd, ldx, dw, db, Al, D, B, L, E, N, R);
    /* the unfused chain: dt_low, B, C copied out of xdbl, then the ops layer_forward calls */
    float *dtl = xalloc_floats(BL * R), *Bm = xalloc_floats(BL * N), *Cm = xalloc_floats(BL * N);
    float *dtr = xalloc_floats(nx), *delta = xalloc_floats(nx), *y = xalloc_floats(nx), *g4 = xalloc_floats(nx);
    for (size_t i = 0; i < BL; i++) {
        for (int k = 0; k < R; k++) dtl[i * R + k] = xd[i * ldx + k];
        for (int n = 0; n < N; n++) Bm[i * N + n] = xd[i * ldx + R + n], Cm[i * N + n] = xd[i * ldx + R + N + n];
    }
    matmul_forward(dtr, dtl, dw, db, (int)BL, R, E);
    softplus_forward(delta, dtr, nx);
    scan_forward(y, NULL, u, delta, Al, Bm, Cm, D, B, L, E, N);
    gate_forward(g4, y, z, nx);
    /* both code paths: the AVX-512 one (where the CPU has it) and the portable vector one */
    float *gp = xalloc_floats(nx);
    for (int simd = 1; simd >= 0; simd--) {
        ops_set_avx512(simd);
        for (int th = 1; th <= 2; th++) {
            ops_set_threads(th);
            float *g = th == 1 ? g1 : g3;
            for (size_t i = 0; i < nx; i++) g[i] = NAN;
            ssm_gate_forward(g, u, z, xd, ldx, dw, db, Al, D, B, L, E, N, R);
            ck_assert_msg(max_err_vs(g, g2, nx) < 2e-5f, "B%d L%d E%d N%d R%d simd %d threads %d vs naive: %g", B, L,
                          E, N, R, simd, th, max_err_vs(g, g2, nx));
            ck_assert_msg(max_err_vs(g, g4, nx) < 2e-6f, "simd %d threads %d vs unfused chain: %g", simd, th,
                          max_err_vs(g, g4, nx));
        }
        ops_set_threads(1);
        ck_assert_msg(memcmp(g1, g3, nx * sizeof(float)) == 0, "simd %d: 2 threads differ from 1", simd);
        if (simd) memcpy(gp, g1, nx * sizeof(float));
    }
    ops_set_avx512(1);
    ck_assert_msg(max_err_vs(gp, g1, nx) < 2e-6f, "AVX-512 vs portable path: %g", max_err_vs(gp, g1, nx));
    free(gp);
    free(u), free(z), free(xd), free(dw), free(db), free(Al), free(D), free(g1), free(g2), free(g3);
    free(dtl), free(Bm), free(Cm), free(dtr), free(delta), free(y), free(g4);
}
END_TEST

/* pl_v16_exp2 (the scan's decays) against libm over [-126, 0], its underflow and NaN */
START_TEST(test_v16_exp2)
{
    double me = 0.0;
    float xs[16];
    for (double x0 = -126.0; x0 <= 0.0; x0 += 16 * 1e-4) {
        for (int j = 0; j < 16; j++) xs[j] = (float)(x0 + j * 1e-4 > 0.0 ? 0.0 : x0 + j * 1e-4);
        pl_v16f y = pl_v16_exp2(pl_v16_load(xs));
        for (int j = 0; j < 16; j++) {
            double ref = exp2((double)xs[j]);
            me = fmax(me, fabs(y[j] - ref) / ref);
        }
    }
    ck_assert_msg(me < 3e-7, "v16_exp2 rel err %g", me);
    const float sp[16] = {0.0f, -1.0f, -126.0f, -126.4f, -126.6f, -127.0f, -150.0f, -1e6f,
                          -4194304.0f, -5e6f, -12582912.0f, -2e7f, -1e30f, -3e38f, NAN, 1.0f};
    pl_v16f y = pl_v16_exp2(pl_v16_load(sp));
    ck_assert(y[0] == 1.0f && y[1] == 0.5f && y[15] == 2.0f);
    ck_assert(y[2] > 0.0f && fabsf(y[2] / exp2f(-126.0f) - 1.0f) < 1e-6f);
    for (int j = 4; j < 14; j++) ck_assert_msg(y[j] == 0.0f, "lane %d (x = %g): %g", j, sp[j], y[j]);
    ck_assert(y[3] > 0.0f && y[3] < 0x1p-126f && fabs(y[3] / exp2(-126.4) - 1.0) < 1e-5); /* denormal */
    ck_assert(isnan(y[14]));
}
END_TEST

/* ssm_decay_forward (the fused scan's decays) on both code paths: rel err against libm over
 * (-125.5, 0] (dt a power of two in [1/8, 2], so dt * at is exact whether or not it is fused),
 * exactly 1 at 0, +0 for very negative arguments without denormals (AVX-512 path), NaN kept,
 * any n (tails). */
START_TEST(test_ssm_decay)
{
    size_t n = 0, cap = 1 << 20;
    float *dt = xalloc_floats(cap), *at = xalloc_floats(cap), *a = xalloc_floats(cap);
    pl_rng r;
    pl_rng_seed(&r, 31);
    for (double x = -125.49; x <= 0.0 && n < cap; x += 1.3e-4, n++) {
        dt[n] = ldexpf(1.0f, (int)(pl_rng_uniform(&r) * 5.0) - 3); /* 1/8 .. 2: dt * at exact in float */
        at[n] = (float)x / dt[n];
    }
    for (int simd = 1; simd >= 0; simd--) {
        int avx = ops_set_avx512(simd);
        ssm_decay_forward(a, dt, at, n);
        double me = 0.0;
        for (size_t i = 0; i < n; i++) {
            double ref = exp2((double)dt[i] * at[i]);
            me = fmax(me, fabs(a[i] - ref) / ref);
        }
        ck_assert_msg(me < 3e-7, "simd %d: decay rel err %g", simd, me);
        /* x = dt * at:        0     -0    0     -1    -1    -125.5  -126   -126.4 -127   -150 */
        const float sx[19] = {0.0f, -0.0f, 1.0f, 1.0f, 2.0f, 0.5f, 1.0f, 1.0f, 1.0f, 3.0f,
                              /*  -150  -1e6  -5e6  -1e30  0   -inf      -inf  NaN   -125 */
                              1.0f, 1.0f, 1.0f, 1.0f, 0.0f, 1.0f, INFINITY, 1.0f, 1.0f};
        const float sa[19] = {-3.0f, -1.0f, 0.0f, -1.0f, -0.5f, -251.0f, -126.0f, -126.4f, -127.0f, -50.0f,
                              -150.0f, -1e6f, -5e6f, -1e30f, 0.0f, -INFINITY, -1.0f, NAN, -125.0f};
        float sy[19];
        ssm_decay_forward(sy, sx, sa, 19);
        ck_assert(sy[0] == 1.0f && sy[1] == 1.0f && sy[2] == 1.0f && sy[14] == 1.0f);
        ck_assert(fabsf(sy[3] - 0.5f) < 1e-7f && fabsf(sy[4] - 0.5f) < 1e-7f);
        ck_assert(sy[18] >= 0x1p-126f && fabs(sy[18] / exp2(-125.0) - 1.0) < 3e-7);
        for (int j = 8; j < 14; j++) ck_assert_msg(sy[j] == 0.0f, "simd %d lane %d: %g", simd, j, sy[j]);
        ck_assert(isnan(sy[17]));
        if (avx) { /* scalef path: +0 from -125.5 down, -inf included; no denormal anywhere */
            for (int j = 5; j < 8; j++) ck_assert_msg(sy[j] == 0.0f, "lane %d: %g", j, sy[j]);
            ck_assert(sy[15] == 0.0f && sy[16] == 0.0f);
            for (int j = 0; j < 19; j++) ck_assert_msg(!(fabsf(sy[j]) > 0.0f && fabsf(sy[j]) < 0x1p-126f), "%d", j);
        } else { /* pl_v16_exp2: normal down to -126, one denormal band, then +0 */
            ck_assert(fabs(sy[5] / exp2(-125.5) - 1.0) < 3e-7 && fabs(sy[6] / exp2(-126.0) - 1.0) < 1e-6);
            ck_assert(sy[7] > 0.0f && sy[7] < 0x1p-126f);
        }
    }
    ops_set_avx512(1);
    free(dt), free(at), free(a);
}
END_TEST

/* ------------------------------------------------------------------ elementwise numerics */

/* fast primitives (numerics.h) against glibc over dense grids */
START_TEST(test_fast_primitives)
{
    double me = 0, ml = 0, m1 = 0;
    for (double x = -87.0; x <= 88.7; x += 1e-3) {
        float f = (float)x;
        double e = fabs(pl_expf_fast(f) - exp((double)f)) / exp((double)f);
        me = e > me ? e : me;
    }
    ck_assert_msg(me < 4e-7, "expf_fast rel err %g", me);
    ck_assert(pl_expf_fast(-87.5f) == 0.0f && pl_expf_fast(-1e30f) == 0.0f);
    ck_assert(isinf(pl_expf_fast(89.0f)) && isinf(pl_expf_fast(1e30f)));
    ck_assert(isnan(pl_expf_fast(NAN)));
    ck_assert(pl_expf_fast(0.0f) == 1.0f);
    for (double x = 1e-30; x < 1e30; x *= 1.001) {
        float f = (float)x;
        double ref = log((double)f);
        if (fabs(ref) > 1e-3) ml = fmax(ml, fabs(pl_logf_fast(f) - ref) / fabs(ref));
        m1 = fmax(m1, fabs(pl_log1pf_fast(f) - log1p((double)f)) / log1p((double)f));
    }
    ck_assert_msg(ml < 3e-7, "logf_fast rel err %g", ml);
    ck_assert_msg(m1 < 4e-7, "log1pf_fast rel err %g", m1);
    double mp = 0;
    for (double v = -5.6; v <= 5.6; v += 1e-3) {
        float f = (float)v;
        double ref = 0.5 * erfc(-(double)f / sqrt(2.0));
        mp = fmax(mp, fabs(pl_phi_fast(f) - ref) / ref);
    }
    ck_assert_msg(mp < 2e-6, "phi_fast rel err %g", mp);
}
END_TEST

/* double-precision references, independent of numerics.h (its scalar float pl_gelu loses the
 * far negative tail to cancellation in 1 + erf) */
static double silu_d(double v) { return v / (1.0 + exp(-v)); }
static double silu_grad_d(double v)
{
    double s = 1.0 / (1.0 + exp(-v));
    return s * (1.0 + v * (1.0 - s));
}
static double softplus_d(double v) { return v > 20.0 ? v : log1p(exp(v)); }
static double softplus_grad_d(double v) { return v > 20.0 ? 1.0 : 1.0 / (1.0 + exp(-v)); }
static double gelu_d(double v) { return v * 0.5 * erfc(-v / sqrt(2.0)); }
static double gelu_grad_d(double v) { return 0.5 * erfc(-v / sqrt(2.0)) + v * exp(-0.5 * v * v) / sqrt(2.0 * M_PI); }

typedef struct {
    const char *name;
    void (*fwd)(float *, const float *, size_t);
    void (*bwd)(float *, const float *, const float *, size_t);
    double (*ref)(double);
    double (*ref_grad)(double);
    float lo, hi, tol, gfloor; /* |fast - ref| <= tol (|ref| + floor); gradient floor gfloor */
} unary_case;

static const unary_case unary_cases[] = {
    {"silu", silu_forward, silu_backward, silu_d, silu_grad_d, -30, 30, 2e-6f, 1e-2f},
    {"softplus", softplus_forward, softplus_backward, softplus_d, softplus_grad_d, -40, 40, 2e-6f, 1e-6f},
    {"gelu", gelu_forward, gelu_backward, gelu_d, gelu_grad_d, -5, 5, 2e-5f, 1e-2f},
};
#define N_UNARY ((int)(sizeof unary_cases / sizeof unary_cases[0]))

/* the vectorised kernels against double references over a dense grid
 * (long enough to span several parallel chunks) */
START_TEST(test_unary_vs_scalar)
{
    const unary_case *c = &unary_cases[_i];
    size_t n = 100003;
    float *x = xalloc_floats(n), *y = xalloc_floats(n), *one = xalloc_floats(n), *g = xalloc_floats(n);
    for (size_t i = 0; i < n; i++) x[i] = c->lo + (c->hi - c->lo) * (float)i / (float)(n - 1), one[i] = 1.0f;
    for (int th = 1; th <= 2; th++) {
        ops_set_threads(th);
        c->fwd(y, x, n);
        memset(g, 0, n * sizeof(float));
        c->bwd(g, one, x, n);
        for (size_t i = 0; i < n; i++) {
            double ry = c->ref(x[i]), rg = c->ref_grad(x[i]);
            ck_assert_msg(fabs(y[i] - ry) <= c->tol * (fabs(ry) + 1e-30), "%s(%g) = %.9g, reference %.9g", c->name,
                          x[i], y[i], ry);
            ck_assert_msg(fabs(g[i] - rg) <= c->tol * (fabs(rg) + c->gfloor), "%s'(%g) = %.9g, reference %.9g",
                          c->name, x[i], g[i], rg);
        }
    }
    ops_set_threads(1);
    free(x), free(y), free(one), free(g);
}
END_TEST

START_TEST(test_softplus_guard)
{
    float x[5] = {20.5f, 25.0f, 1000.0f, -30.0f, -100.0f}, y[5], g[5] = {0}, one[5] = {1, 1, 1, 1, 1};
    softplus_forward(y, x, 5);
    softplus_backward(g, one, x, 5);
    ck_assert(y[0] == 20.5f && y[1] == 25.0f && y[2] == 1000.0f); /* identity above 20, no overflow */
    ck_assert(g[0] == 1.0f && g[1] == 1.0f && g[2] == 1.0f);
    ck_assert_msg(fabs(y[3] - exp(-30.0)) < 1e-5 * exp(-30.0), "softplus(-30) = %g", y[3]);
    ck_assert_msg(fabs(g[3] - exp(-30.0)) < 1e-5 * exp(-30.0), "softplus'(-30) = %g", g[3]);
    ck_assert(y[4] >= 0.0f && y[4] < 1e-30f && g[4] >= 0.0f && g[4] < 1e-30f);
    /* gate at extreme z: finite, silu(-100) ~ 0, silu(100) = 100 */
    float z[2] = {-100.0f, 100.0f}, yy[2] = {2.0f, 3.0f}, o[2];
    gate_forward(o, yy, z, 2);
    ck_assert(fabsf(o[0]) < 1e-30f && fabsf(o[1] - 300.0f) < 1e-4f);
}
END_TEST

/* ------------------------------------------------------------------ the rest */

START_TEST(test_crossentropy_hand)
{
    /* row 0: logits (1, 2, 3), label 2: log(e + e^2 + e^3) - 3 = 0.4076059644
     * row 1: logits (0, 0, 0), label 1: log 3 = 1.0986122887;  mean 0.7531091265 */
    float logits[6] = {1, 2, 3, 0, 0, 0}, losses[2], probs[6], dl[6] = {0};
    int labels[2] = {2, 1};
    float mean = crossentropy_forward(losses, probs, logits, labels, 2, 3);
    ck_assert_msg(fabsf(losses[0] - 0.4076059644f) < 1e-6f, "loss0 %.9g", losses[0]);
    ck_assert_msg(fabsf(losses[1] - 1.0986122887f) < 1e-6f, "loss1 %.9g", losses[1]);
    ck_assert_msg(fabsf(mean - 0.7531091265f) < 1e-6f, "mean %.9g", mean);
    ck_assert(fabsf(probs[3] - 1.0f / 3.0f) < 1e-7f && fabsf(probs[2] - 0.6652409558f) < 1e-6f);
    crossentropy_backward(dl, probs, labels, 0.5f, 2, 3);
    ck_assert(fabsf(dl[2] - 0.5f * (0.6652409558f - 1.0f)) < 1e-6f && fabsf(dl[4] + 0.5f * 2.0f / 3.0f) < 1e-6f);
    /* huge logits: max subtraction keeps it finite */
    float big[3] = {1000.0f, 0.0f, -1000.0f};
    int lab = 1;
    ck_assert(fabsf(crossentropy_forward(NULL, NULL, big, &lab, 1, 3) - 1000.0f) < 1e-3f);
}
END_TEST

START_TEST(test_patchify)
{
    int B = 2, C = 3, H = 6, W = 4, P = 2, nh = H / P, nw = W / P, L = nh * nw, F = C * P * P;
    float *img = xalloc_floats((size_t)B * C * H * W), *out = xalloc_floats((size_t)B * L * F);
    for (int i = 0; i < B * C * H * W; i++) img[i] = (float)i;
    patchify_forward(out, img, B, C, H, W, P);
    for (int b = 0; b < B; b++)
        for (int ph = 0; ph < nh; ph++)
            for (int pw = 0; pw < nw; pw++)
                for (int c = 0; c < C; c++)
                    for (int py = 0; py < P; py++)
                        for (int px = 0; px < P; px++) {
                            int t = ph * nw + pw, f = c * P * P + py * P + px;
                            float want = img[((b * C + c) * H + ph * P + py) * W + pw * P + px];
                            ck_assert_float_eq(out[(b * L + t) * F + f], want);
                        }
    /* a spot value by hand: b 1, token 5 = (ph 2, pw 1), feature 7 = (c 1, py 1, px 1):
     * img[1][1][5][3] = ((1*3 + 1)*6 + 5)*4 + 3 = 119 */
    ck_assert_float_eq(out[(1 * L + 5) * F + 7], 119.0f);
    free(img), free(out);
}
END_TEST

START_TEST(test_threads_setting)
{
    ops_set_threads(3);
    ck_assert_int_eq(ops_get_threads(), 3);
    ops_set_threads(0);
    ck_assert_int_eq(ops_get_threads(), 1);
    ops_set_threads(1);
}
END_TEST

/* ------------------------------------------------------------------ causal LM ops */

/* lmhead_ce_forward/backward against their naive twins: chunk sizes that divide M, do not, and
 * exceed it; rows without a target; 1 and 2 threads; full logits out equal the chunked ones. */
static const int LM_CHUNKS[] = {1, 3, 7, 64};
#define N_LM_CHUNKS ((int)(sizeof LM_CHUNKS / sizeof LM_CHUNKS[0]))
START_TEST(test_lmhead_ce_vs_naive)
{
    int chunk = LM_CHUNKS[_i], M = 10, d = 9, V = 301;
    pl_rng r;
    pl_rng_seed(&r, 77 + (uint64_t)_i);
    float *x = randv(&r, (size_t)M * d, -1.5f, 1.5f), *W = randv(&r, (size_t)V * d, -1.0f, 1.0f);
    int targets[10];
    for (int m = 0; m < M; m++) targets[m] = m % 4 == 3 ? -1 : (int)pl_rng_below(&r, (uint32_t)V);
    float *lse = xalloc_floats(M), *lse_n = xalloc_floats(M), *buf = xalloc_floats((size_t)chunk * V);
    float *lg = xalloc_floats((size_t)M * V), *lg_n = xalloc_floats((size_t)M * V);
    double want = lmhead_ce_forward_naive(lg_n, lse_n, x, W, targets, M, d, V);
    for (int m = 1; m < M; m += 4) { /* a few rows predict their arg-max, so `correct` has hits to count */
        int at = 0;
        for (int v = 1; v < V; v++)
            if (lg_n[(size_t)m * V + v] > lg_n[(size_t)m * V + at]) at = v;
        targets[m] = at;
    }
    want = lmhead_ce_forward_naive(lg_n, lse_n, x, W, targets, M, d, V);
    for (int t = 1; t <= 2; t++) {
        ops_set_threads(t);
        double got = lmhead_ce_forward(NULL, lse, x, W, targets, buf, chunk, M, d, V);
        ck_assert_msg(fabs(got - want) < 1e-5 * fabs(want), "loss %g vs naive %g", got, want);
        ck_assert_msg(max_rel_err(lse, lse_n, M, 1.0f) < 1e-6f, "lse");
        long hits = 0, want_hits = 0;
        for (int m = 0; m < M; m++) {
            if (targets[m] < 0) continue;
            int at = 0;
            for (int v = 1; v < V; v++)
                if (lg_n[(size_t)m * V + v] > lg_n[(size_t)m * V + at]) at = v;
            want_hits += at == targets[m];
        }
        double got2 = lmhead_ce_forward_acc(lg, lse, x, W, targets, buf, chunk, M, d, V, &hits);
        ck_assert_msg(fabs(got2 - got) < 1e-6 * fabs(got), "logits path %g vs chunked %g", got2, got);
        ck_assert_int_eq(hits, want_hits);
        ck_assert_int_ge(want_hits, 3);
        hits = 0;
        lmhead_ce_forward_acc(NULL, lse, x, W, targets, buf, chunk, M, d, V, &hits);
        ck_assert_int_eq(hits, want_hits);
        ck_assert_msg(max_rel_err(lg, lg_n, (size_t)M * V, 1.0f) < 1e-6f, "logits");
        float *dx = xalloc_floats((size_t)M * d), *dW = xalloc_floats((size_t)V * d);
        float *dx_n = xalloc_floats((size_t)M * d), *dW_n = xalloc_floats((size_t)V * d);
        lmhead_ce_backward(dx, dW, x, W, targets, lse, 0.3f, buf, chunk, M, d, V);
        lmhead_ce_backward_naive(dx_n, dW_n, x, W, targets, lse_n, 0.3f, M, d, V);
        ck_assert_msg(max_rel_err(dx, dx_n, (size_t)M * d, 1e-3f) < 1e-4f, "dx");
        ck_assert_msg(max_rel_err(dW, dW_n, (size_t)V * d, 1e-3f) < 1e-4f, "dW");
        /* rows without a target contribute nothing to dx */
        for (int c = 0; c < d; c++) ck_assert_float_eq(dx[3 * d + c], 0.0f);
        free(dx), free(dW), free(dx_n), free(dW_n);
    }
    ops_set_threads(1);
    free(x), free(W), free(lse), free(lse_n), free(buf), free(lg), free(lg_n);
}
END_TEST

/* The loss as a function of x and W against central differences (double accumulation). */
START_TEST(test_lmhead_ce_fd)
{
    int M = 4, d = 5, V = 7, chunk = 3;
    pl_rng r;
    pl_rng_seed(&r, 5);
    float *x = randv(&r, (size_t)M * d, -1.0f, 1.0f), *W = randv(&r, (size_t)V * d, -1.0f, 1.0f);
    int targets[4] = {2, -1, 6, 0};
    float lse[4], buf[3 * 7];
    float *dx = xalloc_floats((size_t)M * d), *dW = xalloc_floats((size_t)V * d);
    lmhead_ce_forward(NULL, lse, x, W, targets, buf, chunk, M, d, V);
    lmhead_ce_backward(dx, dW, x, W, targets, lse, 1.0f, buf, chunk, M, d, V);
    float *ps[2] = {x, W}, *gs[2] = {dx, dW};
    size_t ns[2] = {(size_t)M * d, (size_t)V * d};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < ns[k]; i++) {
            float save = ps[k][i], h = 1e-2f;
            ps[k][i] = save + h;
            double lp = lmhead_ce_forward_naive(NULL, lse, x, W, targets, M, d, V);
            ps[k][i] = save - h;
            double lm = lmhead_ce_forward_naive(NULL, lse, x, W, targets, M, d, V);
            ps[k][i] = save;
            double fd = (lp - lm) / (2.0 * h);
            ck_assert_msg(fabs(fd - gs[k][i]) < 2e-3 * (fabs(fd) + 1e-2), "%s[%zu] fd %g analytic %g", k ? "W" : "x",
                          i, fd, gs[k][i]);
        }
    free(x), free(W), free(dx), free(dW);
}
END_TEST

/* pl_logsumexp_fast agrees with the double reference on long rows with a wide spread. */
START_TEST(test_logsumexp_fast)
{
    pl_rng r;
    pl_rng_seed(&r, 3);
    int ns[3] = {1, 257, 50280};
    for (int k = 0; k < 3; k++) {
        float *x = randv(&r, (size_t)ns[k], -30.0f, 30.0f);
        ck_assert_msg(fabsf(pl_logsumexp_fast(x, ns[k]) - pl_logsumexp(x, ns[k])) < 2e-6f * 30.0f, "n %d", ns[k]);
        free(x);
    }
}
END_TEST

/* embedding: a row copy forward, a scatter-add backward (a repeated id adds twice). */
START_TEST(test_embedding)
{
    float E[3 * 2] = {1, 2, 3, 4, 5, 6}, out[4 * 2], dE[3 * 2] = {0};
    int ids[4] = {2, 0, 2, 1};
    embedding_forward(out, ids, E, 4, 2);
    float want[8] = {5, 6, 1, 2, 5, 6, 3, 4};
    for (int i = 0; i < 8; i++) ck_assert_float_eq(out[i], want[i]);
    float dout[8] = {1, 1, 10, 10, 100, 100, 1000, 1000};
    embedding_backward(dE, dout, ids, 4, 2);
    float wantg[6] = {10, 10, 1000, 1000, 101, 101};
    for (int i = 0; i < 6; i++) ck_assert_float_eq(dE[i], wantg[i]);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("grad");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_grad_fd, 0, N_GRAD_CASES);
    tcase_add_loop_test(tc, test_grad_accumulates, 0, N_GRAD_CASES);
    tcase_add_loop_test(tc, test_grad_null_ok, 0, N_GRAD_CASES);
    suite_add_tcase(s, tc);
    TCase *tn = tcase_create("naive");
    tcase_set_timeout(tn, 60);
    tcase_add_loop_test(tn, test_matmul_vs_naive, 0, N_MM);
    tcase_add_loop_test(tn, test_conv1d_vs_naive, 0, N_CONV);
    tcase_add_loop_test(tn, test_scan_vs_naive, 0, N_SCAN);
    tcase_add_loop_test(tn, test_conv1d_silu_vs_naive, 0, N_CONV);
    tcase_add_loop_test(tn, test_matmul_acc_vs_naive, 0, N_MM);
    tcase_add_loop_test(tn, test_ssm_gate_vs_naive, 0, N_SSM);
    tcase_add_loop_test(tn, test_add_cols_vs_naive, 0, 3);
    tcase_add_test(tn, test_rmsnorm_addbias_vs_naive);
    tcase_add_loop_test(tn, test_lmhead_ce_vs_naive, 0, N_LM_CHUNKS);
    tcase_add_test(tn, test_lmhead_ce_fd);
    suite_add_tcase(s, tn);
    TCase *te = tcase_create("numerics");
    tcase_set_timeout(te, 60);
    tcase_add_test(te, test_fast_primitives);
    tcase_add_test(te, test_v16_exp2);
    tcase_add_test(te, test_ssm_decay);
    tcase_add_loop_test(te, test_unary_vs_scalar, 0, N_UNARY);
    tcase_add_test(te, test_softplus_guard);
    tcase_add_test(te, test_crossentropy_hand);
    tcase_add_test(te, test_logsumexp_fast);
    tcase_add_test(te, test_embedding);
    tcase_add_test(te, test_patchify);
    tcase_add_test(te, test_threads_setting);
    suite_add_tcase(s, te);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ops_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
