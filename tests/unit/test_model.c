/* test_model.c — the whole patch-Mamba model: an independent double-precision reference forward
 * written straight from DESIGN.md section 3, a finite-difference check of every parameter's
 * gradient, checkpoint round trips and refusals, masks, batching and inference/training parity.
 * Models are tiny and have odd, per-layer-different dims (one layer without an MLP). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "ops.h"
#include "safetensors.h"
#include "util.h"

/* 1x8x12 images, P 4 -> L = 2*3 = 6 tokens, d 6, 3 classes; layer 0 has an MLP, layer 1 not. */
static void tiny_config(model_config *c)
{
    memset(c, 0, sizeof *c);
    c->d = 6, c->n_layers = 2, c->C = 1, c->H = 8, c->W = 12, c->P = 4, c->L = 6, c->classes = 3;
    c->layers[0] = (layer_dims){.E = 7, .N = 3, .R = 2, .K = 3, .M = 5};
    c->layers[1] = (layer_dims){.E = 5, .N = 2, .R = 1, .K = 4, .M = 0};
    c->orig_index[0] = 0, c->orig_index[1] = 1;
    snprintf(c->dataset, sizeof c->dataset, "synthetic");
    for (int i = 0; i < 3; i++) c->norm_mean[i] = 0.5f, c->norm_std[i] = 0.25f;
}

static void make_model(model *m, uint64_t seed)
{
    model_config c;
    tiny_config(&c);
    char err[PL_ERRLEN];
    ck_assert_msg(model_create(m, &c, seed, err, sizeof err) == 0, "%s", err);
    /* perturb every parameter a little so no gradient is trivially zero (norm weights = 1 etc.) */
    pl_rng r;
    pl_rng_seed(&r, seed + 100);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.1f * pl_rng_normal(&r);
}

static float *random_images(int B, const model_config *c, uint64_t seed)
{
    float *x = xmalloc((size_t)B * c->C * c->H * c->W * sizeof(float));
    pl_rng r;
    pl_rng_seed(&r, seed);
    for (int i = 0; i < B * c->C * c->H * c->W; i++) x[i] = pl_rng_normal(&r);
    return x;
}

/* ---------------------------------------------------------------- double reference forward */

static double ref_softplus(double v) { return v > 20.0 ? v : log1p(exp(v)); }
static double ref_silu(double v) { return v / (1.0 + exp(-v)); }
static double ref_gelu(double v) { return 0.5 * v * (1.0 + erf(v / sqrt(2.0))); }

static void ref_rmsnorm(double *out, const double *x, const float *w, int d)
{
    double ss = 0;
    for (int i = 0; i < d; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / d + 1e-5);
    for (int i = 0; i < d; i++) out[i] = x[i] * r * w[i];
}

/* logits (V) of one image, straight from the equations */
static void ref_forward(const model *m, const float *img, double *logits)
{
    const model_config *c = &m->cfg;
    int d = c->d, L = c->L, P = c->P, gw = c->W / P;
    double *h = calloc((size_t)L * d, sizeof(double));
    for (int t = 0; t < L; t++) {
        int ph = t / gw, pw = t % gw;
        for (int o = 0; o < d; o++) {
            double s = m->w.patch_b[o];
            for (int ch = 0; ch < c->C; ch++)
                for (int py = 0; py < P; py++)
                    for (int px = 0; px < P; px++) {
                        int f = ch * P * P + py * P + px;
                        s += m->w.patch_w[o * c->C * P * P + f] *
                             img[(ch * c->H + ph * P + py) * c->W + pw * P + px];
                    }
            h[t * d + o] = s + m->w.pos[t * d + o];
        }
    }
    for (int li = 0; li < c->n_layers; li++) {
        const layer_dims *ld = &c->layers[li];
        const layer_params *w = &m->w.layers[li];
        int E = ld->E, N = ld->N, R = ld->R, K = ld->K, M = ld->M;
        double *a = calloc(d, sizeof(double));
        double *x = calloc((size_t)L * E, sizeof(double)), *z = calloc((size_t)L * E, sizeof(double));
        for (int t = 0; t < L; t++) {
            ref_rmsnorm(a, h + t * d, w->norm_w, d);
            for (int e = 0; e < 2 * E; e++) {
                double s = 0;
                for (int k = 0; k < d; k++) s += w->in_proj_w[e * d + k] * a[k];
                if (e < E) x[t * E + e] = s;
                else z[t * E + e - E] = s;
            }
        }
        double *u = calloc((size_t)L * E, sizeof(double));
        for (int t = 0; t < L; t++)
            for (int e = 0; e < E; e++) {
                double s = w->conv_b[e];
                for (int k = 0; k < K; k++) {
                    int src = t - K + 1 + k;
                    if (src >= 0) s += w->conv_w[e * K + k] * x[src * E + e];
                }
                u[t * E + e] = ref_silu(s);
            }
        double *hstate = calloc((size_t)E * N, sizeof(double));
        double *yg = calloc(E, sizeof(double));
        for (int t = 0; t < L; t++) {
            double xp[64];
            for (int r = 0; r < R + 2 * N; r++) {
                double s = 0;
                for (int e = 0; e < E; e++) s += w->x_proj_w[r * E + e] * u[t * E + e];
                xp[r] = s;
            }
            for (int e = 0; e < E; e++) {
                double s = w->dt_proj_b[e];
                for (int r = 0; r < R; r++) s += w->dt_proj_w[e * R + r] * xp[r];
                double delta = ref_softplus(s), y = 0;
                for (int n = 0; n < N; n++) {
                    double A = -exp((double)w->A_log[e * N + n]);
                    double *hs = &hstate[e * N + n];
                    *hs = exp(delta * A) * *hs + delta * xp[R + n] * u[t * E + e];
                    y += xp[R + N + n] * *hs;
                }
                y += w->D[e] * u[t * E + e];
                yg[e] = y * ref_silu(z[t * E + e]);
            }
            for (int o = 0; o < d; o++) {
                double s = 0;
                for (int e = 0; e < E; e++) s += w->out_proj_w[o * E + e] * yg[e];
                h[t * d + o] += s;
            }
        }
        if (M > 0) {
            double *f = calloc(M, sizeof(double));
            for (int t = 0; t < L; t++) {
                ref_rmsnorm(a, h + t * d, w->norm2_w, d);
                for (int j = 0; j < M; j++) {
                    double s = w->fc1_b[j];
                    for (int k = 0; k < d; k++) s += w->fc1_w[j * d + k] * a[k];
                    f[j] = ref_gelu(s);
                }
                for (int o = 0; o < d; o++) {
                    double s = w->fc2_b[o];
                    for (int j = 0; j < M; j++) s += w->fc2_w[o * M + j] * f[j];
                    h[t * d + o] += s;
                }
            }
            free(f);
        }
        free(a), free(x), free(z), free(u), free(hstate), free(yg);
    }
    double *pooled = calloc(d, sizeof(double)), *tmp = calloc(d, sizeof(double));
    for (int t = 0; t < L; t++) {
        ref_rmsnorm(tmp, h + t * d, m->w.norm_f_w, d);
        for (int k = 0; k < d; k++) pooled[k] += tmp[k] / L;
    }
    for (int v = 0; v < c->classes; v++) {
        double s = m->w.head_b[v];
        for (int k = 0; k < d; k++) s += m->w.head_w[v * d + k] * pooled[k];
        logits[v] = s;
    }
    free(pooled), free(tmp), free(h);
}

START_TEST(test_forward_matches_reference)
{
    model m;
    make_model(&m, 1);
    int B = 3;
    float *x = random_images(B, &m.cfg, 2);
    for (int training = 0; training <= 1; training++) {
        model_acts *a = model_acts_new(&m, B, training);
        model_forward(&m, a, x, NULL, B);
        const float *lg = model_acts_logits(a);
        for (int b = 0; b < B; b++) {
            double ref[8];
            ref_forward(&m, x + (size_t)b * m.cfg.H * m.cfg.W, ref);
            for (int v = 0; v < m.cfg.classes; v++)
                ck_assert_msg(fabs(lg[b * 3 + v] - ref[v]) < 1e-4 * (1 + fabs(ref[v])),
                              "training=%d b=%d v=%d: %g vs reference %g", training, b, v, lg[b * 3 + v], ref[v]);
        }
        model_acts_free(a);
    }
    free(x);
    model_free(&m);
}
END_TEST

/* Structured out_proj pruning leaves zero rows that the forward skips; logits must not change
 * against the reference, which multiplies every row. */
START_TEST(test_out_proj_zero_rows_skipped)
{
    model m;
    make_model(&m, 21);
    int B = 2;
    float *x = random_images(B, &m.cfg, 22);
    int E0 = m.cfg.layers[0].E, E1 = m.cfg.layers[1].E;
    for (int j = 0; j < m.cfg.d; j++)
        if (j == 1 || j == 4 || j == 5) memset(m.w.layers[0].out_proj_w + (size_t)j * E0, 0, (size_t)E0 * sizeof(float));
    memset(m.w.layers[1].out_proj_w, 0, (size_t)m.cfg.d * E1 * sizeof(float)); /* every row */
    for (int training = 0; training <= 1; training++) {
        model_acts *a = model_acts_new(&m, B, training);
        model_forward(&m, a, x, NULL, B);
        for (int b = 0; b < B; b++) {
            double ref[8];
            ref_forward(&m, x + (size_t)b * m.cfg.H * m.cfg.W, ref);
            for (int v = 0; v < 3; v++)
                ck_assert_msg(fabs(model_acts_logits(a)[b * 3 + v] - ref[v]) < 1e-4 * (1 + fabs(ref[v])),
                              "b=%d v=%d: %g vs %g", b, v, model_acts_logits(a)[b * 3 + v], ref[v]);
        }
        model_acts_free(a);
    }
    free(x);
    model_free(&m);
}
END_TEST

START_TEST(test_batch_independence)
{
    model m;
    make_model(&m, 3);
    int B = 4;
    float *x = random_images(B, &m.cfg, 4);
    model_acts *a = model_acts_new(&m, B, 0), *a1 = model_acts_new(&m, 1, 0);
    model_forward(&m, a, x, NULL, B);
    for (int b = 0; b < B; b++) {
        model_forward(&m, a1, x + (size_t)b * m.cfg.H * m.cfg.W, NULL, 1);
        for (int v = 0; v < 3; v++)
            ck_assert_float_eq_tol(model_acts_logits(a)[b * 3 + v], model_acts_logits(a1)[v], 1e-5);
    }
    model_acts_free(a), model_acts_free(a1);
    free(x);
    model_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- gradient check */

static double loss_at(model *m, model_acts *a, const float *x, const int *y, int B)
{
    return model_forward(m, a, x, y, B);
}

START_TEST(test_gradient_finite_differences)
{
    model m;
    make_model(&m, 5);
    int B = 3, y[3] = {0, 2, 1};
    float *x = random_images(B, &m.cfg, 6);
    model_alloc_grads(&m);
    model_acts *a = model_acts_new(&m, B, 1);
    model_zero_grads(&m);
    model_forward(&m, a, x, y, B);
    model_backward(&m, a, y, B);
    int bad = 0, checked = 0;
    double worst = 0;
    char worst_name[256] = "";
    for (int t = 0; t < m.n_tensors; t++) {
        const param_info *p = &m.info[t];
        for (size_t k = 0; k < p->numel; k++) {
            float *w = &m.params[p->offset + k];
            float save = *w;
            float h = 1e-2f * fmaxf(1.0f, fabsf(save));
            *w = save + h;
            double lp = loss_at(&m, a, x, y, B);
            *w = save - h;
            double lm = loss_at(&m, a, x, y, B);
            *w = save;
            double fd = (lp - lm) / (2.0 * ((double)(save + h) - (double)save));
            double g = m.grads[p->offset + k];
            double errv = fabs(g - fd) / (fabs(g) + fabs(fd) + 1e-3);
            checked++;
            if (errv > worst) {
                worst = errv;
                snprintf(worst_name, sizeof worst_name, "%s[%zu] analytic %g fd %g", p->name, k, g, fd);
            }
            if (errv > 2e-2) bad++;
        }
    }
    ck_assert_int_eq(checked, (int)m.n_params);
    ck_assert_msg(bad == 0, "%d of %d gradients disagree with finite differences; worst %s", bad, checked, worst_name);
    /* backward accumulates: a second backward doubles the gradients */
    float *g1 = xmalloc(m.n_params * sizeof(float));
    memcpy(g1, m.grads, m.n_params * sizeof(float));
    model_forward(&m, a, x, y, B);
    model_backward(&m, a, y, B);
    for (size_t i = 0; i < m.n_params; i++) ck_assert_float_eq_tol(m.grads[i], 2 * g1[i], 1e-5 + 1e-4 * fabsf(g1[i]));
    free(g1);
    model_acts_free(a);
    free(x);
    model_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- checkpoints */

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pl_test_model_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

START_TEST(test_save_load_roundtrip)
{
    make_tmpdir();
    model m, m2;
    make_model(&m, 7);
    snprintf(m.cfg.provenance, sizeof m.cfg.provenance, "{\"source\":\"test\"}");
    char path[512], err[PL_ERRLEN];
    snprintf(path, sizeof path, "%s/m.safetensors", tmpdir);
    ck_assert_msg(model_save(&m, path, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(model_load(&m2, path, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(m2.n_params, m.n_params);
    ck_assert_int_eq(memcmp(m.params, m2.params, m.n_params * sizeof(float)), 0);
    ck_assert_int_eq(m2.cfg.layers[1].K, 4);
    ck_assert_int_eq(m2.cfg.layers[1].M, 0);
    ck_assert_int_eq(m2.cfg.H, 8);
    ck_assert_int_eq(m2.cfg.W, 12);
    ck_assert_str_eq(m2.cfg.dataset, "synthetic");
    ck_assert_float_eq_tol(m2.cfg.norm_std[0], 0.25f, 1e-7);
    ck_assert_str_eq(m2.cfg.provenance, "{\"source\":\"test\"}");
    /* the file is plain safetensors: conv weight stored as (E, 1, K) */
    st_file *f = st_load(path, err, sizeof err);
    ck_assert_ptr_nonnull(f);
    const st_tensor *t = st_find(f, "backbone.layers.0.mixer.conv1d.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->ndim, 3);
    ck_assert_int_eq(t->shape[1], 1);
    ck_assert_str_eq(st_meta(f, "format"), "pt");
    st_free(f);
    unlink(path);
    rmdir(tmpdir);
    model_free(&m), model_free(&m2);
}
END_TEST

/* Write m's tensors with one of them replaced by (name, shape) or dropped, no metadata option. */
static void write_variant(const model *m, const char *path, const char *drop, const char *bad_shape_name,
                          int with_meta, const char *extra)
{
    st_writer *w = st_writer_new();
    static float junk[4096];
    for (int i = 0; i < m->n_tensors; i++) {
        const param_info *p = &m->info[i];
        if (drop && strcmp(drop, p->name) == 0) continue;
        int64_t shape[4] = {p->shape[0], p->shape[1], p->shape[2], p->shape[3]};
        if (bad_shape_name && strcmp(bad_shape_name, p->name) == 0) {
            shape[0] += 1;
            st_writer_add(w, p->name, ST_F32, p->ndim, shape, junk);
            continue;
        }
        st_writer_add(w, p->name, ST_F32, p->ndim, shape, m->params + p->offset);
    }
    if (extra) {
        int64_t s1[1] = {2};
        st_writer_add(w, extra, ST_F32, 1, s1, junk);
    }
    char err[PL_ERRLEN];
    st_file *orig = NULL;
    st_writer_meta(w, "format", "pt");
    if (with_meta) { /* copy our metadata from a regular save */
        char p2[600];
        snprintf(p2, sizeof p2, "%s.meta", path);
        ck_assert_msg(model_save(m, p2, err, sizeof err) == 0, "%s", err);
        orig = st_load(p2, err, sizeof err);
        ck_assert_ptr_nonnull(orig);
        unlink(p2);
        st_writer_meta(w, "prunelab", st_meta(orig, "prunelab"));
    }
    ck_assert_msg(st_writer_save(w, path, err, sizeof err) == 0, "%s", err);
    st_writer_free(w);
    st_free(orig);
}

START_TEST(test_load_refusals_and_foreign_files)
{
    make_tmpdir();
    model m, m2;
    make_model(&m, 9);
    char path[512], err[PL_ERRLEN];
    snprintf(path, sizeof path, "%s/v.safetensors", tmpdir);

    write_variant(&m, path, "backbone.layers.1.mixer.D", NULL, 1, NULL);
    ck_assert_int_eq(model_load(&m2, path, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "backbone.layers.1.mixer.D"), "%s", err);

    write_variant(&m, path, NULL, "backbone.layers.0.mixer.out_proj.weight", 1, NULL);
    ck_assert_int_eq(model_load(&m2, path, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "out_proj.weight has shape"), "%s", err);

    write_variant(&m, path, NULL, NULL, 1, "lm_head.weight");
    ck_assert_int_eq(model_load(&m2, path, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "unexpected tensor lm_head.weight"), "%s", err);

    ck_assert_int_eq(model_load(&m2, "/nonexistent/x.safetensors", NULL, err, sizeof err), -1);

    /* a foreign file without prunelab metadata: 8x12 is not square, so it is refused with a hint */
    write_variant(&m, path, NULL, NULL, 0, NULL);
    ck_assert_int_eq(model_load(&m2, path, "synthetic", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "not a square grid"), "%s", err);
    model_free(&m);

    /* square images without metadata load: C and P from patch_embed, H = W from pos_embed */
    model_config c;
    tiny_config(&c);
    c.C = 3, c.H = 8, c.W = 8, c.P = 2, c.L = 16;
    ck_assert(model_create(&m, &c, 3, err, sizeof err) == 0);
    write_variant(&m, path, NULL, NULL, 0, NULL);
    ck_assert_msg(model_load(&m2, path, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(m2.cfg.C, 3);
    ck_assert_int_eq(m2.cfg.P, 2);
    ck_assert_int_eq(m2.cfg.H, 8);
    ck_assert_int_eq(memcmp(m.params, m2.params, m.n_params * sizeof(float)), 0);
    model_free(&m2);
    model_free(&m);
    unlink(path);
    rmdir(tmpdir);
}
END_TEST

START_TEST(test_init_statistics)
{
    model_config c;
    tiny_config(&c);
    char err[PL_ERRLEN];
    model m, m2;
    ck_assert(model_create(&m, &c, 42, err, sizeof err) == 0);
    ck_assert(model_create(&m2, &c, 42, err, sizeof err) == 0);
    ck_assert_int_eq(memcmp(m.params, m2.params, m.n_params * sizeof(float)), 0); /* deterministic */
    const layer_params *w = &m.w.layers[0];
    ck_assert_float_eq_tol(w->A_log[0 * 3 + 2], logf(3.0f), 1e-6); /* A_log[e,n] = ln(n+1) */
    ck_assert_float_eq(w->D[4], 1.0f);
    ck_assert_float_eq(w->norm_w[0], 1.0f);
    ck_assert_float_eq(w->conv_b[0], 0.0f);
    for (int e = 0; e < 7; e++) {
        float sp = w->dt_proj_b[e] > 20 ? w->dt_proj_b[e] : log1pf(expf(w->dt_proj_b[e]));
        ck_assert_msg(sp >= 0.999e-3f && sp <= 1.001e-1f, "dt %g outside [1e-3, 1e-1]", sp);
    }
    float bound = 1.0f / sqrtf(7.0f) / sqrtf(2.0f); /* out_proj: U(+-1/sqrt(E)) / sqrt(n_layers) */
    for (int i = 0; i < 6 * 7; i++) ck_assert(fabsf(w->out_proj_w[i]) <= bound);
    const param_info *p = model_find(&m, "backbone.layers.0.mixer.A_log");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->decay, 0);
    ck_assert_int_eq(model_find(&m, "head.weight")->decay, 1);
    ck_assert_int_eq(model_find(&m, "pos_embed")->decay, 0);
    ck_assert_ptr_null(model_find(&m, "backbone.layers.1.mlp.fc1.weight"));
    model_free(&m), model_free(&m2);
}
END_TEST

START_TEST(test_mask_zeroes_weights)
{
    model m;
    make_model(&m, 11);
    model_alloc_mask(&m);
    model_alloc_grads(&m);
    const param_info *p = model_find(&m, "backbone.layers.0.mixer.out_proj.weight");
    for (size_t k = 0; k < p->numel; k += 2) m.mask[p->offset + k] = 0.0f;
    for (size_t i = 0; i < m.n_params; i++) m.grads[i] = 1.0f;
    model_apply_mask(&m);
    for (size_t k = 0; k < p->numel; k++) {
        float want = (k % 2) ? 1.0f : 0.0f;
        ck_assert_float_eq(m.grads[p->offset + k], want);
        if (k % 2 == 0) ck_assert_float_eq(m.params[p->offset + k], 0.0f);
    }
    model_free(&m);
}
END_TEST

START_TEST(test_presets_and_flops)
{
    model_hparams hp;
    ck_assert_int_eq(model_preset("small", &hp), 0);
    ck_assert_int_eq(model_preset("huge", &hp), -1);
    model_preset("small", &hp);
    model_config c;
    char err[PL_ERRLEN];
    ck_assert_msg(model_config_from_hparams(&c, &hp, 1, 28, 28, 10, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.L, 49);
    ck_assert_int_eq(c.layers[0].E, 128);
    ck_assert_int_eq(c.layers[0].R, 4);
    ck_assert_int_eq(c.layers[0].M, 128);
    model m;
    ck_assert(model_create(&m, &c, 1, err, sizeof err) == 0);
    ck_assert_msg(m.n_params > 190000 && m.n_params < 215000, "small has %zu params", m.n_params);
    /* FLOPs are dominated by the GEMMs: at least 2 * (GEMM weights) * tokens */
    double gemm = 0;
    for (int i = 0; i < m.n_tensors; i++)
        if (m.info[i].decay && m.info[i].ndim == 2 && strcmp(m.info[i].name, "head.weight")) gemm += m.info[i].numel;
    double f = model_flops_per_sample(&c);
    ck_assert_msg(f > 2 * gemm * 49 && f < 3 * gemm * 49, "flops %g vs gemm %g", f, 2 * gemm * 49);
    model_free(&m);
    hp.patch = 5;
    ck_assert_int_eq(model_config_from_hparams(&c, &hp, 1, 28, 28, 10, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "divisible"), "%s", err);
}
END_TEST

/* Batch-split threading: 1, 2 and 3 slices give the same loss, logits and gradients. */
START_TEST(test_threads_agree)
{
    model m;
    make_model(&m, 31);
    model_alloc_grads(&m);
    int B = 5, y[5] = {0, 1, 2, 1, 0};
    float *x = random_images(B, &m.cfg, 32);
    float *g1 = xmalloc(m.n_params * sizeof(float)), logits1[15], loss1 = 0;
    for (int T = 1; T <= 3; T++) {
        ops_set_threads(T);
        model_acts *a = model_acts_new(&m, B, 1);
        model_zero_grads(&m);
        float loss = model_forward(&m, a, x, y, B);
        model_backward(&m, a, y, B);
        if (T == 1) {
            loss1 = loss;
            memcpy(logits1, model_acts_logits(a), sizeof logits1);
            memcpy(g1, m.grads, m.n_params * sizeof(float));
        } else {
            ck_assert_float_eq_tol(loss, loss1, 1e-6);
            for (int i = 0; i < 15; i++) ck_assert_float_eq_tol(model_acts_logits(a)[i], logits1[i], 1e-6);
            for (size_t i = 0; i < m.n_params; i++)
                ck_assert_msg(fabsf(m.grads[i] - g1[i]) <= 1e-6f + 1e-5f * fabsf(g1[i]), "T=%d grad %zu: %g vs %g", T,
                              i, m.grads[i], g1[i]);
        }
        /* a smaller batch through the same activations */
        model_forward(&m, a, x, y, 2);
        for (int i = 0; i < 6; i++) ck_assert_float_eq_tol(model_acts_logits(a)[i], logits1[i], 1e-6);
        model_acts_free(a);
    }
    ops_set_threads(1);
    free(g1);
    free(x);
    model_free(&m);
}
END_TEST

/* The inference forward (fused kernels, projections accumulated into the residual stream) against
 * the training forward (the unfused ops) and an observed inference forward (which takes the
 * unfused path to expose every activation), on a model whose layers reach the scan's register
 * paths (N 16 and 8) and its general one, with partial channel blocks, an MLP-less layer and
 * zeroed out_proj rows; 1 and 2 threads. Also checked against the double reference. */
static void noop_hook(const model_layer_view *v, void *user) { (void)v, (void)user; }

START_TEST(test_inference_path_matches_training_path)
{
    model_config c;
    tiny_config(&c);
    c.n_layers = 3;
    c.layers[0] = (layer_dims){.E = 37, .N = 16, .R = 3, .K = 4, .M = 9};
    c.layers[1] = (layer_dims){.E = 16, .N = 8, .R = 1, .K = 2, .M = 0};
    c.layers[2] = (layer_dims){.E = 20, .N = 5, .R = 2, .K = 3, .M = 4};
    c.orig_index[2] = 2;
    model m;
    char err[PL_ERRLEN];
    ck_assert_msg(model_create(&m, &c, 41, err, sizeof err) == 0, "%s", err);
    pl_rng r;
    pl_rng_seed(&r, 42);
    for (size_t i = 0; i < m.n_params; i++) m.params[i] += 0.1f * pl_rng_normal(&r);
    for (int j = 0; j < c.d; j += 2) memset(m.w.layers[0].out_proj_w + (size_t)j * 37, 0, 37 * sizeof(float));
    memset(m.w.layers[2].out_proj_w + 3 * 20, 0, 20 * sizeof(float));
    /* B 200 runs the inference forward in several chunks of samples (a few hundred rows each) */
    int V = c.classes, Bs[2] = {5, 200};
    for (int bi = 0; bi < 2; bi++) {
        int B = Bs[bi];
        float *x = random_images(B, &c, 43 + (uint64_t)bi);
        float *want = xmalloc((size_t)B * V * sizeof(float)), *got = xmalloc((size_t)B * V * sizeof(float));
        float *seen = xmalloc((size_t)B * V * sizeof(float));
        for (int T = 1; T <= 2; T++) {
            ops_set_threads(T);
            model_acts *at = model_acts_new(&m, B, 1), *ai = model_acts_new(&m, B, 0), *ah = model_acts_new(&m, B, 0);
            model_acts_set_hook(ah, noop_hook, NULL);
            model_forward(&m, at, x, NULL, B);
            memcpy(want, model_acts_logits(at), (size_t)B * V * sizeof(float));
            model_forward(&m, ai, x, NULL, B);
            memcpy(got, model_acts_logits(ai), (size_t)B * V * sizeof(float));
            model_forward(&m, ah, x, NULL, B);
            memcpy(seen, model_acts_logits(ah), (size_t)B * V * sizeof(float));
            for (int i = 0; i < B * V; i++) {
                ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-5f * (1.0f + fabsf(want[i])),
                              "B=%d T=%d logit %d: inference %.9g, training %.9g", B, T, i, got[i], want[i]);
                ck_assert_msg(fabsf(seen[i] - want[i]) <= 1e-5f * (1.0f + fabsf(want[i])),
                              "B=%d T=%d logit %d: observed %.9g", B, T, i, seen[i]);
            }
            for (int b = 0; b < B; b += B > 5 ? 37 : 1) {
                double ref[8];
                ref_forward(&m, x + (size_t)b * c.H * c.W, ref);
                for (int v = 0; v < V; v++)
                    ck_assert_msg(fabs(got[b * V + v] - ref[v]) < 1e-4 * (1 + fabs(ref[v])),
                                  "B=%d T=%d b=%d v=%d: %g vs %g", B, T, b, v, got[b * V + v], ref[v]);
            }
            model_acts_free(at), model_acts_free(ai), model_acts_free(ah);
        }
        free(x), free(want), free(got), free(seen);
    }
    ops_set_threads(1);
    model_free(&m);
}
END_TEST

typedef struct {
    const model *m;
    int calls, order_ok, mlp_ok;
    double max_err;
} hook_state;

static void check_hook(const model_layer_view *v, void *user)
{
    hook_state *st = user;
    const model *m = st->m;
    if (v->layer != st->calls) st->order_ok = 0;
    st->calls++;
    const layer_dims *ld = &m->cfg.layers[v->layer];
    if ((ld->M > 0) != (v->f1g != NULL && v->a2 != NULL && v->mlp_out != NULL)) st->mlp_ok = 0;
    /* mix_out = g @ out_proj^T, recomputed naively */
    const float *W = m->w.layers[v->layer].out_proj_w;
    for (int r = 0; r < v->rows; r++)
        for (int o = 0; o < m->cfg.d; o++) {
            double s = 0;
            for (int e = 0; e < ld->E; e++) s += (double)v->g[(size_t)r * ld->E + e] * W[(size_t)o * ld->E + e];
            double err = fabs(s - v->mix_out[(size_t)r * m->cfg.d + o]);
            if (err > st->max_err) st->max_err = err;
        }
}

START_TEST(test_layer_hook)
{
    model m;
    make_model(&m, 13);
    int B = 2;
    float *x = random_images(B, &m.cfg, 14);
    for (int training = 0; training <= 1; training++) {
        model_acts *a = model_acts_new(&m, B, training);
        hook_state st = {.m = &m, .order_ok = 1, .mlp_ok = 1};
        model_acts_set_hook(a, check_hook, &st);
        model_forward(&m, a, x, NULL, B);
        ck_assert_int_eq(st.calls, m.cfg.n_layers);
        ck_assert(st.order_ok && st.mlp_ok);
        ck_assert_msg(st.max_err < 1e-4, "mix_out differs from g @ out_proj^T by %g", st.max_err);
        model_acts_set_hook(a, NULL, NULL);
        model_forward(&m, a, x, NULL, B);
        ck_assert_int_eq(st.calls, m.cfg.n_layers);
        model_acts_free(a);
    }
    free(x);
    model_free(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_forward_matches_reference);
    tcase_add_test(tc, test_batch_independence);
    tcase_add_test(tc, test_out_proj_zero_rows_skipped);
    tcase_add_test(tc, test_gradient_finite_differences);
    tcase_add_test(tc, test_save_load_roundtrip);
    tcase_add_test(tc, test_load_refusals_and_foreign_files);
    tcase_add_test(tc, test_init_statistics);
    tcase_add_test(tc, test_mask_zeroes_weights);
    tcase_add_test(tc, test_presets_and_flops);
    tcase_add_test(tc, test_layer_hook);
    tcase_add_test(tc, test_threads_agree);
    tcase_add_test(tc, test_inference_path_matches_training_path);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
