/* test_prune_score.c — pruning criteria and calibration (engine/prune_score.c, prune_calib.c).
 *
 * magnitude / l2 against hand-set weights; random determinism; wanda and activation scores
 * against statistics recomputed here from a layer hook; taylor unit scores against a
 * finite-difference derivative of the summed loss when the unit is scaled by (1 + eps), and
 * taylor weight scores against per-weight finite differences; calibration leaves the model
 * untouched; refusals. Tiny models with odd, per-layer-different dims (one layer has no MLP). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "model.h"
#include "prune.h"
#include "util.h"

#define NL 3

/* 1x8x12 images, P 4 -> L 6 tokens, d 6, 3 classes; layer 1 has no MLP. */
static void small_model(model *m, uint64_t seed)
{
    model_config c;
    memset(&c, 0, sizeof c);
    c.d = 6, c.n_layers = NL, c.C = 1, c.H = 8, c.W = 12, c.P = 4, c.L = 6, c.classes = 3;
    c.layers[0] = (layer_dims){.E = 7, .N = 3, .R = 2, .K = 3, .M = 5};
    c.layers[1] = (layer_dims){.E = 5, .N = 2, .R = 1, .K = 4, .M = 0};
    c.layers[2] = (layer_dims){.E = 4, .N = 4, .R = 3, .K = 2, .M = 3};
    for (int i = 0; i < NL; i++) c.orig_index[i] = i;
    snprintf(c.dataset, sizeof c.dataset, "synthetic");
    for (int i = 0; i < 3; i++) c.norm_mean[i] = 0.5f, c.norm_std[i] = 0.25f;
    char err[PL_ERRLEN];
    ck_assert_msg(model_create(m, &c, seed, err, sizeof err) == 0, "%s", err);
    /* perturb everything so norms, biases and A are not at their trivial init */
    pl_rng r;
    pl_rng_seed(&r, seed + 7);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.2f * pl_rng_normal(&r);
}

static void load_data(dataset *ds, int n)
{
    char name[96], err[PL_ERRLEN];
    snprintf(name, sizeof name, "synthetic:n=%d,classes=3,c=1,h=8,w=12,seed=5", n);
    ck_assert_msg(dataset_load(ds, name, NULL, "train", err, sizeof err) == 0, "%s", err);
}

static int close_to(double a, double b, double rel, double abs_tol)
{
    return fabs(a - b) <= abs_tol + rel * fabs(b);
}

/* ---------------------------------------------------------------- magnitude, l2 */

START_TEST(test_magnitude_l2_hand_values)
{
    model m;
    small_model(&m, 1);
    char err[PL_ERRLEN];
    int li = 0, d = m.cfg.d;
    const layer_dims *l = &m.cfg.layers[li];
    int E = l->E, N = l->N, R = l->R, K = l->K, M = l->M;
    layer_params *w = &m.w.layers[li];
    /* hand values: out_proj row j = (j+1) * (-1)^k / 10; L1 = E (j+1)/10, L2 = sqrt(E) (j+1)/10.
     * Rows are set in a shuffled order so the ranking is not the index order. */
    static const int perm[6] = {3, 0, 5, 1, 4, 2};
    for (int j = 0; j < d; j++)
        for (int k = 0; k < E; k++) w->out_proj_w[j * E + k] = (float)((perm[j] + 1) * (k % 2 ? -1 : 1)) / 10.0f;
    float s[64], s2[64];
    ck_assert(prune_score_units(&m, PC_OUT_PROJ, li, PCR_MAGNITUDE, NULL, 0, s, err, sizeof err) == 0);
    ck_assert(prune_score_units(&m, PC_OUT_PROJ, li, PCR_L2, NULL, 0, s2, err, sizeof err) == 0);
    for (int j = 0; j < d; j++) {
        ck_assert(close_to(s[j], E * (perm[j] + 1) / 10.0, 1e-6, 1e-6));
        ck_assert(close_to(s2[j], sqrt((double)E) * (perm[j] + 1) / 10.0, 1e-6, 1e-6));
    }
    ck_assert(s[2] > s[4] && s[4] > s[0] && s[0] > s[3] && s[3] > s[1]); /* perm 5 > 4 > 3 > 1 > 0 */

    /* weight scores: |w| and w^2, in slice order (out_proj is one whole-tensor slice) */
    float *ws = xmalloc((size_t)d * E * sizeof(float));
    ck_assert(prune_score_weights(&m, PC_OUT_PROJ, li, PCR_MAGNITUDE, NULL, 0, ws, err, sizeof err) == 0);
    for (int i = 0; i < d * E; i++) ck_assert(ws[i] == fabsf(w->out_proj_w[i]));
    ck_assert(prune_score_weights(&m, PC_OUT_PROJ, li, PCR_L2, NULL, 0, ws, err, sizeof err) == 0);
    for (int i = 0; i < d * E; i++) ck_assert(ws[i] == w->out_proj_w[i] * w->out_proj_w[i]);
    free(ws);

    /* gate: weights are in_proj rows E..2E-1; a large row E+2 must rank channel 2 first */
    for (int k = 0; k < d; k++) w->in_proj_w[(E + 2) * d + k] = 5.0f;
    ck_assert(prune_score_units(&m, PC_GATE, li, PCR_MAGNITUDE, NULL, 0, s, err, sizeof err) == 0);
    ck_assert(close_to(s[2], 5.0 * d, 1e-6, 1e-6));
    float *gw = xmalloc((size_t)E * d * sizeof(float));
    ck_assert(prune_score_weights(&m, PC_GATE, li, PCR_MAGNITUDE, NULL, 0, gw, err, sizeof err) == 0);
    ck_assert(gw[2 * d] == 5.0f && gw[2 * d + d - 1] == 5.0f);
    free(gw);

    /* the remaining units against independent loops */
    double ref1[64], ref2[64];
    for (int e = 0; e < E; e++) { /* in_proj channel: in_proj row e + out_proj column e */
        ref1[e] = ref2[e] = 0;
        for (int k = 0; k < d; k++) {
            double a = w->in_proj_w[e * d + k], b = w->out_proj_w[k * E + e];
            ref1[e] += fabs(a) + fabs(b), ref2[e] += a * a + b * b;
        }
    }
    ck_assert(prune_score_units(&m, PC_IN_PROJ, li, PCR_MAGNITUDE, NULL, 0, s, err, sizeof err) == 0);
    ck_assert(prune_score_units(&m, PC_IN_PROJ, li, PCR_L2, NULL, 0, s2, err, sizeof err) == 0);
    for (int e = 0; e < E; e++) ck_assert(close_to(s[e], ref1[e], 1e-5, 0) && close_to(s2[e], sqrt(ref2[e]), 1e-5, 0));
    for (int j = 0; j < M; j++) { /* neuron: fc1 row j + fc2 column j */
        ref1[j] = 0;
        for (int k = 0; k < d; k++) ref1[j] += fabs(w->fc1_w[j * d + k]) + fabs(w->fc2_w[k * M + j]);
    }
    ck_assert(prune_score_units(&m, PC_MLP, li, PCR_MAGNITUDE, NULL, 0, s, err, sizeof err) == 0);
    for (int j = 0; j < M; j++) ck_assert(close_to(s[j], ref1[j], 1e-5, 0));
    for (int k = 0; k < K; k++) { /* tap k: conv1d[:, k] */
        ref2[k] = 0;
        for (int e = 0; e < E; e++) ref2[k] += (double)w->conv_w[e * K + k] * w->conv_w[e * K + k];
    }
    ck_assert(prune_score_units(&m, PC_CONV1D, li, PCR_L2, NULL, 0, s, err, sizeof err) == 0);
    for (int k = 0; k < K; k++) ck_assert(close_to(s[k], sqrt(ref2[k]), 1e-5, 0));
    for (int n = 0; n < N; n++) { /* state n: x_proj rows R+n, R+N+n */
        ref1[n] = 0;
        for (int e = 0; e < E; e++) ref1[n] += fabs(w->x_proj_w[(R + n) * E + e]) + fabs(w->x_proj_w[(R + N + n) * E + e]);
    }
    ck_assert(prune_score_units(&m, PC_X_PROJ_BC, li, PCR_MAGNITUDE, NULL, 0, s, err, sizeof err) == 0);
    for (int n = 0; n < N; n++) ck_assert(close_to(s[n], ref1[n], 1e-5, 0));
    for (int r = 0; r < R; r++) { /* rank r: x_proj row r + dt_proj column r */
        ref1[r] = 0;
        for (int e = 0; e < E; e++) ref1[r] += fabs(w->x_proj_w[r * E + e]) + fabs(w->dt_proj_w[e * R + r]);
    }
    ck_assert(prune_score_units(&m, PC_DT, li, PCR_MAGNITUDE, NULL, 0, s, err, sizeof err) == 0);
    for (int r = 0; r < R; r++) ck_assert(close_to(s[r], ref1[r], 1e-5, 0));

    /* layer: mean |w| over its weight matrices; layer 1 (no MLP) over five of them */
    for (int i = 0; i < NL; i++) {
        double sum = 0, cnt = 0;
        for (int t = 0; t < m.n_tensors; t++)
            if (m.info[t].layer == i && m.info[t].decay) {
                for (size_t k = 0; k < m.info[t].numel; k++) sum += fabs(m.params[m.info[t].offset + k]);
                cnt += (double)m.info[t].numel;
            }
        ck_assert(prune_score_units(&m, PC_LAYER, i, PCR_MAGNITUDE, NULL, 0, s, err, sizeof err) == 0);
        ck_assert(close_to(s[0], sum / cnt, 1e-5, 0));
    }
    /* mlp in a layer without one: zero units, zero weights, no error */
    ck_assert_int_eq(prune_score_units(&m, PC_MLP, 1, PCR_L2, NULL, 0, s, err, sizeof err), 0);
    model_free(&m);
}
END_TEST

START_TEST(test_random_deterministic)
{
    model m;
    small_model(&m, 2);
    char err[PL_ERRLEN];
    int n = m.cfg.d * m.cfg.layers[0].E;
    float *a = xmalloc(n * sizeof(float)), *b = xmalloc(n * sizeof(float)), *c = xmalloc(n * sizeof(float));
    ck_assert(prune_score_weights(&m, PC_OUT_PROJ, 0, PCR_RANDOM, NULL, 11, a, err, sizeof err) == 0);
    ck_assert(prune_score_weights(&m, PC_OUT_PROJ, 0, PCR_RANDOM, NULL, 11, b, err, sizeof err) == 0);
    ck_assert(memcmp(a, b, n * sizeof(float)) == 0);
    ck_assert(prune_score_weights(&m, PC_OUT_PROJ, 0, PCR_RANDOM, NULL, 12, c, err, sizeof err) == 0);
    int diff = 0;
    for (int i = 0; i < n; i++) {
        diff += a[i] != c[i];
        ck_assert(a[i] >= 0.0f && a[i] < 1.0f);
    }
    ck_assert_int_gt(diff, n / 2);
    /* another layer with the same seed gives another stream */
    ck_assert(prune_score_weights(&m, PC_OUT_PROJ, 2, PCR_RANDOM, NULL, 11, c, err, sizeof err) == 0);
    ck_assert(memcmp(a, c, m.cfg.d * m.cfg.layers[2].E * sizeof(float)) != 0);
    /* units: same seed -> same, different seed -> different */
    float u1[8], u2[8], u3[8];
    ck_assert(prune_score_units(&m, PC_GATE, 0, PCR_RANDOM, NULL, 5, u1, err, sizeof err) == 0);
    ck_assert(prune_score_units(&m, PC_GATE, 0, PCR_RANDOM, NULL, 5, u2, err, sizeof err) == 0);
    ck_assert(prune_score_units(&m, PC_GATE, 0, PCR_RANDOM, NULL, 6, u3, err, sizeof err) == 0);
    ck_assert(memcmp(u1, u2, 7 * sizeof(float)) == 0);
    ck_assert(memcmp(u1, u3, 7 * sizeof(float)) != 0);
    free(a), free(b), free(c);
    model_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- naive statistics from a hook */

typedef struct {
    double ss_a[NL][8], ss_x[NL][8], ss_u[NL][8], ss_dtl[NL][8], ss_g[NL][8], ss_a2[NL][8], ss_f1g[NL][8];
    double sa_g[NL][8], sa_mix[NL][8], sa_f1g[NL][8], sa_dtl[NL][8], sa_x[NL][8], sa_mlp[NL][8], bc[NL][8];
    double tokens[NL];
    const model *m;
} naive_stats;

static void naive_hook(const model_layer_view *v, void *user)
{
    naive_stats *st = user;
    int i = v->layer, d = st->m->cfg.d;
    const layer_dims *l = &st->m->cfg.layers[i];
    for (int r = 0; r < v->rows; r++) {
        for (int j = 0; j < d; j++) {
            double a = v->a[r * d + j], mo = v->mix_out[r * d + j];
            st->ss_a[i][j] += a * a, st->sa_mix[i][j] += fabs(mo);
            if (l->M > 0) {
                double a2 = v->a2[r * d + j];
                st->ss_a2[i][j] += a2 * a2, st->sa_mlp[i][j] += fabs(v->mlp_out[r * d + j]);
            }
        }
        for (int e = 0; e < l->E; e++) {
            double x = v->x[r * l->E + e], u = v->u[r * l->E + e], g = v->g[r * l->E + e];
            st->ss_x[i][e] += x * x, st->sa_x[i][e] += fabs(x);
            st->ss_u[i][e] += u * u;
            st->ss_g[i][e] += g * g, st->sa_g[i][e] += fabs(g);
        }
        for (int k = 0; k < l->R; k++) {
            double t = v->dtl[r * l->R + k];
            st->ss_dtl[i][k] += t * t, st->sa_dtl[i][k] += fabs(t);
        }
        for (int n = 0; n < l->N; n++) st->bc[i][n] += fabs(v->Bm[r * l->N + n]) * fabs(v->Cm[r * l->N + n]);
        for (int k = 0; k < l->M; k++) {
            double f = v->f1g[r * l->M + k];
            st->ss_f1g[i][k] += f * f, st->sa_f1g[i][k] += fabs(f);
        }
    }
    st->tokens[i] += v->rows;
}

/* The first n samples of ds through m in one inference batch, with naive_hook. */
static void naive_collect(const model *m, const dataset *ds, int n, naive_stats *st)
{
    memset(st, 0, sizeof *st);
    st->m = m;
    int *idx = xmalloc(n * sizeof(int)), *y = xmalloc(n * sizeof(int));
    for (int i = 0; i < n; i++) idx[i] = i;
    float *x = xmalloc((size_t)n * ds->c * ds->h * ds->w * sizeof(float));
    dataset_batch(ds, idx, n, x, y, NULL, 0);
    model_acts *a = model_acts_new(m, n, 0);
    model_acts_set_hook(a, naive_hook, st);
    model_forward(m, a, x, NULL, n);
    model_acts_free(a);
    free(idx), free(y), free(x);
}

/* wanda weight scores of component c in layer i: compare with |w| * sqrt(sum x^2) of the
 * feature each slice's tensor reads. */
static void check_wanda_component(const model *m, const prune_calib *cal, const naive_stats *st, prune_component c,
                                  int i)
{
    char err[PL_ERRLEN];
    prune_slice sl[PRUNE_MAX_SLICES];
    int ns = prune_component_slices(m, c, i, sl);
    size_t total = 0;
    for (int k = 0; k < ns; k++) total += sl[k].count;
    float *s = xmalloc((total + 1) * sizeof(float));
    ck_assert_msg(prune_score_weights(m, c, i, PCR_WANDA, cal, 0, s, err, sizeof err) == 0, "%s", err);
    size_t o = 0;
    for (int k = 0; k < ns; k++) {
        const param_info *p = &m->info[sl[k].tensor];
        size_t cols = (size_t)p->shape[p->ndim - 1];
        for (size_t q = 0; q < sl[k].count; q++, o++) {
            size_t idx = sl[k].start + q, row = idx / cols, col = idx % cols;
            double w = fabs(m->params[p->offset + idx]), ref;
            if (strstr(p->name, "in_proj")) ref = w * sqrt(st->ss_a[i][col]);
            else if (strstr(p->name, "conv1d")) ref = w * sqrt(st->ss_x[i][row]);
            else if (strstr(p->name, "x_proj")) ref = w * sqrt(st->ss_u[i][col]);
            else if (strstr(p->name, "dt_proj")) ref = w * sqrt(st->ss_dtl[i][col]);
            else if (strstr(p->name, "out_proj")) ref = w * sqrt(st->ss_g[i][col]);
            else if (strstr(p->name, "fc1")) ref = w * sqrt(st->ss_a2[i][col]);
            else if (strstr(p->name, "fc2")) ref = w * sqrt(st->ss_f1g[i][col]);
            else ref = w; /* A_log, D: magnitude */
            ck_assert_msg(close_to(s[o], ref, 1e-4, 1e-7), "wanda %s [%zu]: %g vs %g", p->name, idx, s[o], ref);
        }
    }
    free(s);
}

START_TEST(test_wanda_matches_naive)
{
    model m;
    small_model(&m, 3);
    dataset ds;
    load_data(&ds, 64);
    char err[PL_ERRLEN];
    int n = 45; /* two calibration batches (32 + 13) */
    prune_calib *cal = prune_calib_collect(&m, &ds, n, 0, err, sizeof err);
    ck_assert_msg(cal != NULL, "%s", err);
    ck_assert(prune_calib_tokens(cal) == (double)n * m.cfg.L);
    naive_stats *st = xcalloc(1, sizeof *st);
    naive_collect(&m, &ds, n, st);
    for (int i = 0; i < NL; i++) {
        ck_assert(st->tokens[i] == prune_calib_tokens(cal));
        for (int c = 0; c < PC_LAYER + 1; c++) check_wanda_component(&m, cal, st, (prune_component)c, i);
    }
    /* wanda units: sum of the unit's weight scores, e.g. out_proj row j */
    float s[8];
    const layer_dims *l = &m.cfg.layers[2];
    ck_assert(prune_score_units(&m, PC_OUT_PROJ, 2, PCR_WANDA, cal, 0, s, err, sizeof err) == 0);
    for (int j = 0; j < m.cfg.d; j++) {
        double ref = 0;
        for (int e = 0; e < l->E; e++) ref += fabs(m.w.layers[2].out_proj_w[j * l->E + e]) * sqrt(st->ss_g[2][e]);
        ck_assert(close_to(s[j], ref, 1e-4, 1e-7));
    }
    /* unstructured activation = |w| * mean |x|: conv1d weight [e, k] with channel e's input */
    float cw[64];
    ck_assert(prune_score_weights(&m, PC_CONV1D, 1, PCR_ACTIVATION, cal, 0, cw, err, sizeof err) == 0);
    const layer_dims *l1 = &m.cfg.layers[1];
    for (int e = 0; e < l1->E; e++)
        for (int k = 0; k < l1->K; k++) {
            double ref = fabs(m.w.layers[1].conv_w[e * l1->K + k]) * st->sa_x[1][e] / st->tokens[1];
            ck_assert(close_to(cw[e * l1->K + k], ref, 1e-4, 1e-7));
        }
    free(st);
    prune_calib_free(cal);
    dataset_free(&ds);
    model_free(&m);
}
END_TEST

START_TEST(test_activation_units_match_naive)
{
    model m;
    small_model(&m, 4);
    dataset ds;
    load_data(&ds, 48);
    char err[PL_ERRLEN];
    int n = 40;
    prune_calib *cal = prune_calib_collect(&m, &ds, n, 0, err, sizeof err);
    ck_assert_msg(cal != NULL, "%s", err);
    naive_stats *st = xcalloc(1, sizeof *st);
    naive_collect(&m, &ds, n, st);
    float s[16];
    for (int i = 0; i < NL; i++) {
        const layer_dims *l = &m.cfg.layers[i];
        double T = st->tokens[i];
        int d = m.cfg.d;
        ck_assert(prune_score_units(&m, PC_OUT_PROJ, i, PCR_ACTIVATION, cal, 0, s, err, sizeof err) == 0);
        for (int j = 0; j < d; j++) ck_assert(close_to(s[j], st->sa_mix[i][j] / T, 1e-4, 1e-7));
        ck_assert(prune_score_units(&m, PC_MLP, i, PCR_ACTIVATION, cal, 0, s, err, sizeof err) == 0);
        for (int j = 0; j < l->M; j++) ck_assert(close_to(s[j], st->sa_f1g[i][j] / T, 1e-4, 1e-7));
        for (int c = PC_GATE; c <= PC_IN_PROJ; c++) {
            ck_assert(prune_score_units(&m, (prune_component)c, i, PCR_ACTIVATION, cal, 0, s, err, sizeof err) == 0);
            for (int e = 0; e < l->E; e++) ck_assert(close_to(s[e], st->sa_g[i][e] / T, 1e-4, 1e-7));
        }
        ck_assert(prune_score_units(&m, PC_X_PROJ_BC, i, PCR_ACTIVATION, cal, 0, s, err, sizeof err) == 0);
        for (int k = 0; k < l->N; k++) ck_assert(close_to(s[k], st->bc[i][k] / T, 1e-4, 1e-7));
        ck_assert(prune_score_units(&m, PC_DT, i, PCR_ACTIVATION, cal, 0, s, err, sizeof err) == 0);
        for (int k = 0; k < l->R; k++) ck_assert(close_to(s[k], st->sa_dtl[i][k] / T, 1e-4, 1e-7));
        ck_assert(prune_score_units(&m, PC_CONV1D, i, PCR_ACTIVATION, cal, 0, s, err, sizeof err) == 0);
        for (int k = 0; k < l->K; k++) {
            double ref = 0;
            for (int e = 0; e < l->E; e++) ref += fabs(m.w.layers[i].conv_w[e * l->K + k]) * st->sa_x[i][e] / T;
            ck_assert(close_to(s[k], ref / l->E, 1e-4, 1e-7));
        }
        double ref = 0;
        for (int j = 0; j < d; j++) ref += (st->sa_mix[i][j] + st->sa_mlp[i][j]) / (T * d);
        ck_assert(prune_score_units(&m, PC_LAYER, i, PCR_ACTIVATION, cal, 0, s, err, sizeof err) == 0);
        ck_assert(close_to(s[0], ref, 1e-4, 1e-7));
    }
    free(st);
    prune_calib_free(cal);
    dataset_free(&ds);
    model_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- taylor */

/* A group of parameters scaled together: up to 4 strided runs of float pointers. */
typedef struct {
    float *p[4];
    size_t count[4], stride[4];
    int n;
} group;

static void group_add(group *g, float *p, size_t count, size_t stride)
{
    g->p[g->n] = p, g->count[g->n] = count, g->stride[g->n] = stride, g->n++;
}

static void group_scale(group *g, float f)
{
    for (int k = 0; k < g->n; k++)
        for (size_t i = 0; i < g->count[k]; i++) g->p[k][i * g->stride[k]] *= f;
}

/* Summed loss over the batch, in double by way of the mean the forward returns. */
static double batch_loss(const model *m, model_acts *a, const float *x, const int *y, int B)
{
    return (double)model_forward(m, a, x, y, B) * B;
}

/* d(summed loss)/d s at s = 0 when the group is scaled by (1 + s): central difference on a
 * copy of the parameters restored exactly afterwards. */
static double fd_scale(model *m, model_acts *a, const float *x, const int *y, int B, group *g, double eps)
{
    float *save = xmalloc(m->n_params * sizeof(float));
    memcpy(save, m->params, m->n_params * sizeof(float));
    group_scale(g, (float)(1.0 + eps));
    double lp = batch_loss(m, a, x, y, B);
    memcpy(m->params, save, m->n_params * sizeof(float));
    group_scale(g, (float)(1.0 - eps));
    double lm = batch_loss(m, a, x, y, B);
    memcpy(m->params, save, m->n_params * sizeof(float));
    free(save);
    return (lp - lm) / (2 * eps);
}

START_TEST(test_taylor_matches_finite_differences)
{
    model m;
    small_model(&m, 5);
    dataset ds;
    load_data(&ds, 32);
    char err[PL_ERRLEN];
    int B = 24; /* one calibration batch: the taylor sum is |d L / d s| of that batch */
    /* make the dt and B/C paths matter, so their derivatives stand above float noise */
    for (int i = 0; i < NL; i++) {
        const layer_dims *l = &m.cfg.layers[i];
        for (int k = 0; k < l->E * l->R; k++) m.w.layers[i].dt_proj_w[k] *= 8.0f;
        for (int k = 0; k < (l->R + 2 * l->N) * l->E; k++) m.w.layers[i].x_proj_w[k] *= 3.0f;
    }
    prune_calib *cal = prune_calib_collect(&m, &ds, B, 0, err, sizeof err);
    ck_assert_msg(cal != NULL, "%s", err);

    int *idx = xmalloc(B * sizeof(int)), *y = xmalloc(B * sizeof(int));
    for (int i = 0; i < B; i++) idx[i] = i;
    float *x = xmalloc((size_t)B * 96 * sizeof(float));
    dataset_batch(&ds, idx, B, x, y, NULL, 0);
    model_acts *a = model_acts_new(&m, B, 0);
    const double eps = 5e-2; /* summed-loss float noise ~3e-6 -> ~3e-5 in the derivative */
    double worst = 0;
    int checked = 0, strong[PC_COUNT] = {0};
    float s[16];
    for (int i = 0; i < NL; i++) {
        const layer_dims *l = &m.cfg.layers[i];
        layer_params *w = &m.w.layers[i];
        size_t d = m.cfg.d, E = l->E, N = l->N, R = l->R, K = l->K, M = l->M;
        for (int c = 0; c < PC_COUNT; c++) {
            if (c == PC_A_LOG || c == PC_D || c == PC_IN_PROJ) continue; /* in_proj == gate below */
            int nu = prune_component_units(&m, (prune_component)c, i);
            if (nu == 0) continue;
            ck_assert_msg(prune_score_units(&m, (prune_component)c, i, PCR_TAYLOR, cal, 0, s, err, sizeof err) == 0,
                          "%s", err);
            for (int u = 0; u < nu; u++) {
                group g = {.n = 0};
                switch (c) {
                case PC_OUT_PROJ: group_add(&g, w->out_proj_w + u * E, E, 1); break;
                case PC_MLP:
                    group_add(&g, w->fc1_w + u * d, d, 1);
                    group_add(&g, w->fc1_b + u, 1, 1);
                    break;
                case PC_GATE: group_add(&g, w->out_proj_w + u, d, E); break; /* g_e */
                case PC_CONV1D: group_add(&g, w->conv_w + u, E, K); break;
                case PC_X_PROJ_BC:
                    group_add(&g, w->x_proj_w + (R + u) * E, E, 1);
                    group_add(&g, w->x_proj_w + (R + N + u) * E, E, 1);
                    break;
                case PC_DT: group_add(&g, w->x_proj_w + u * E, E, 1); break;
                case PC_LAYER:
                    group_add(&g, w->out_proj_w, d * E, 1);
                    if (M > 0) group_add(&g, w->fc2_w, d * M, 1), group_add(&g, w->fc2_b, d, 1);
                    break;
                }
                double ref = fabs(fd_scale(&m, a, x, y, B, &g, eps));
                double e = fabs(s[u] - ref);
                ck_assert_msg(e <= 1e-4 + 1e-2 * ref, "taylor %s layer %d unit %d: %g vs fd %g",
                              prune_component_name((prune_component)c), i, u, s[u], ref);
                if (e > worst) worst = e;
                checked++;
                strong[c] += ref > 2e-3; /* well above the tolerance's absolute part */
            }
        }
        /* in_proj channels share the gate's score (the channel's output g_e) */
        float s2[16];
        ck_assert(prune_score_units(&m, PC_IN_PROJ, i, PCR_TAYLOR, cal, 0, s2, err, sizeof err) == 0);
        ck_assert(prune_score_units(&m, PC_GATE, i, PCR_TAYLOR, cal, 0, s, err, sizeof err) == 0);
        ck_assert(memcmp(s, s2, E * sizeof(float)) == 0);
    }
    ck_assert_int_gt(checked, 60);
    for (int c = 0; c < PC_COUNT; c++)
        if (c != PC_A_LOG && c != PC_D && c != PC_IN_PROJ)
            ck_assert_msg(strong[c] > 0, "no well-conditioned taylor check for %s", prune_component_name((prune_component)c));

    /* weight taylor: |w * d(summed loss)/dw| for the 4 largest and a few arbitrary weights */
    layer_params *w0 = &m.w.layers[0];
    int nw = m.cfg.d * m.cfg.layers[0].E;
    float *ts = xmalloc((size_t)nw * sizeof(float));
    ck_assert(prune_score_weights(&m, PC_OUT_PROJ, 0, PCR_TAYLOR, cal, 0, ts, err, sizeof err) == 0);
    int pick[8] = {0, 7, 19, 33};
    for (int k = 4; k < 8; k++) { /* the k-th largest */
        int best = -1;
        for (int q = 0; q < nw; q++) {
            int seen = 0;
            for (int j = 4; j < k; j++) seen |= pick[j] == q;
            if (!seen && (best < 0 || ts[q] > ts[best])) best = q;
        }
        pick[k] = best;
    }
    for (int k = 0; k < 8; k++) {
        int q = pick[k];
        group g = {.n = 0};
        group_add(&g, w0->out_proj_w + q, 1, 1);
        double ref = fabs(fd_scale(&m, a, x, y, B, &g, eps));
        ck_assert_msg(fabs(ts[q] - ref) <= 1e-4 + 1e-2 * ref, "weight taylor [%d]: %g vs %g", q, ts[q], ref);
        if (k >= 4) ck_assert_msg(ref > 2e-3, "weight taylor [%d] too small to test: %g", q, ref);
    }
    free(ts);
    model_acts_free(a);
    free(idx), free(y), free(x);
    prune_calib_free(cal);
    dataset_free(&ds);
    model_free(&m);
}
END_TEST

/* taylor sums per batch in absolute value: with 2 batches the score is |t1| + |t2| >= |t1 + t2| */
START_TEST(test_taylor_sums_batches)
{
    model m;
    small_model(&m, 6);
    dataset ds;
    load_data(&ds, 64);
    char err[PL_ERRLEN];
    prune_calib *one = prune_calib_collect(&m, &ds, 32, 0, err, sizeof err);
    ck_assert_msg(one != NULL, "%s", err);
    prune_calib *two = prune_calib_collect(&m, &ds, 64, 0, err, sizeof err); /* batches 0..31, 32..63 */
    ck_assert(two != NULL);
    float s1[8], s2[8];
    ck_assert(prune_score_units(&m, PC_OUT_PROJ, 0, PCR_TAYLOR, one, 0, s1, err, sizeof err) == 0);
    ck_assert(prune_score_units(&m, PC_OUT_PROJ, 0, PCR_TAYLOR, two, 0, s2, err, sizeof err) == 0);
    for (int j = 0; j < m.cfg.d; j++) ck_assert(s2[j] > s1[j]); /* the second batch adds |t2| > 0 */
    prune_calib_free(one);
    prune_calib_free(two);
    dataset_free(&ds);
    model_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- model untouched, sampling, refusals */

START_TEST(test_calib_leaves_model_untouched)
{
    model m;
    small_model(&m, 7);
    model_alloc_mask(&m);
    size_t q = model_find(&m, "backbone.layers.0.mixer.out_proj.weight")->offset + 4;
    m.mask[q] = 0.0f;
    model_apply_mask(&m);
    float *before = xmalloc(m.n_params * sizeof(float)), *mask = xmalloc(m.n_params * sizeof(float));
    memcpy(before, m.params, m.n_params * sizeof(float));
    memcpy(mask, m.mask, m.n_params * sizeof(float));
    dataset ds;
    load_data(&ds, 40);
    char err[PL_ERRLEN];
    prune_calib *c = prune_calib_collect(&m, &ds, 40, 9, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert(memcmp(before, m.params, m.n_params * sizeof(float)) == 0);
    ck_assert(memcmp(mask, m.mask, m.n_params * sizeof(float)) == 0);
    ck_assert(m.grads == NULL && m.g.layers[0].out_proj_w == NULL);
    /* the pruned weight has no taylor score */
    float *ts = xmalloc(m.n_params * sizeof(float));
    ck_assert(prune_score_weights(&m, PC_OUT_PROJ, 0, PCR_TAYLOR, c, 0, ts, err, sizeof err) == 0);
    ck_assert(ts[4] == 0.0f && ts[3] > 0.0f && ts[5] > 0.0f);
    free(ts);
    prune_calib_free(c);
    free(before), free(mask);
    dataset_free(&ds);
    model_free(&m);
}
END_TEST

START_TEST(test_calib_sampling)
{
    model m;
    small_model(&m, 8);
    dataset ds;
    load_data(&ds, 64);
    char err[PL_ERRLEN];
    prune_calib *a = prune_calib_collect(&m, &ds, 16, 21, err, sizeof err);
    prune_calib *b = prune_calib_collect(&m, &ds, 16, 21, err, sizeof err);
    prune_calib *c = prune_calib_collect(&m, &ds, 16, 22, err, sizeof err);
    prune_calib *all = prune_calib_collect(&m, &ds, 1000, 0, err, sizeof err); /* clamped to 64 */
    ck_assert(a && b && c && all);
    int len;
    const double *sa = prune_calib_stat(a, 0, "ss_a", &len), *sb = prune_calib_stat(b, 0, "ss_a", &len);
    const double *sc = prune_calib_stat(c, 0, "ss_a", &len);
    ck_assert_int_eq(len, m.cfg.d);
    ck_assert(memcmp(sa, sb, len * sizeof(double)) == 0);
    ck_assert(memcmp(sa, sc, len * sizeof(double)) != 0);
    ck_assert(prune_calib_tokens(all) == 64.0 * m.cfg.L);
    prune_calib_free(a), prune_calib_free(b), prune_calib_free(c), prune_calib_free(all);
    dataset_free(&ds);
    model_free(&m);
}
END_TEST

START_TEST(test_refusals)
{
    model m, other;
    small_model(&m, 9);
    char err[PL_ERRLEN];
    float s[1024];
    static const prune_criterion needs[] = {PCR_ACTIVATION, PCR_TAYLOR, PCR_WANDA};
    for (int k = 0; k < 3; k++) {
        err[0] = 0;
        ck_assert_int_eq(prune_score_weights(&m, PC_OUT_PROJ, 0, needs[k], NULL, 0, s, err, sizeof err), -1);
        ck_assert_msg(strstr(err, "needs calibration") && strstr(err, prune_criterion_name(needs[k])), "%s", err);
        err[0] = 0;
        ck_assert_int_eq(prune_score_units(&m, PC_MLP, 0, needs[k], NULL, 0, s, err, sizeof err), -1);
        ck_assert_msg(strstr(err, "needs calibration"), "%s", err);
    }
    ck_assert_int_eq(prune_score_units(&m, PC_A_LOG, 0, PCR_MAGNITUDE, NULL, 0, s, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "no structured unit"), "%s", err);
    ck_assert_int_eq(prune_score_units(&m, PC_OUT_PROJ, NL, PCR_MAGNITUDE, NULL, 0, s, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "out of range"), "%s", err);
    /* calibration of another shape */
    model_config oc = m.cfg;
    oc.layers[0].E = 6;
    ck_assert(model_create(&other, &oc, 1, err, sizeof err) == 0);
    dataset ds;
    load_data(&ds, 8);
    prune_calib *c = prune_calib_collect(&other, &ds, 8, 0, err, sizeof err);
    ck_assert(c != NULL);
    ck_assert_int_eq(prune_score_units(&m, PC_OUT_PROJ, 0, PCR_WANDA, c, 0, s, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "different shape"), "%s", err);
    prune_calib_free(c);
    /* dataset of the wrong image shape; bad counts */
    dataset bad;
    ck_assert(dataset_load(&bad, "synthetic:n=8,classes=3,c=1,h=8,w=8", NULL, "train", err, sizeof err) == 0);
    ck_assert(prune_calib_collect(&m, &bad, 8, 0, err, sizeof err) == NULL);
    ck_assert_msg(strstr(err, "8x8") && strstr(err, "8x12"), "%s", err);
    ck_assert(prune_calib_collect(&m, &ds, 0, 0, err, sizeof err) == NULL);
    ck_assert_msg(strstr(err, "at least 1"), "%s", err);
    dataset_free(&bad);
    dataset_free(&ds);
    model_free(&other);
    model_free(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("prune_score");
    TCase *tc = tcase_create("prune_score");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_magnitude_l2_hand_values);
    tcase_add_test(tc, test_random_deterministic);
    tcase_add_test(tc, test_wanda_matches_naive);
    tcase_add_test(tc, test_activation_units_match_naive);
    tcase_add_test(tc, test_taylor_matches_finite_differences);
    tcase_add_test(tc, test_taylor_sums_batches);
    tcase_add_test(tc, test_calib_leaves_model_untouched);
    tcase_add_test(tc, test_calib_sampling);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
