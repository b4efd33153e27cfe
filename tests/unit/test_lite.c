/* test_lite.c — lite models (lite.h): spec parsing, target checks, selection, build, fine-tune.
 *
 * Tiny models with odd, per-layer-different dims (layer 1 has no MLP and d_conv 3) on the
 * synthetic set (1x8x8 images, P 4 -> L 4 tokens, 4 classes). Checked: the lite model has exactly
 * the target dims for several targets; the kept channels / states / neurons / blocks are the
 * planted (large-weight) ones, in source order, and every kept weight is the right source
 * weight (conv taps: the nearest t); a target equal to the source gives the source's logits;
 * the lite model saves, loads and trains; the source's mask is carried and stays fixed while
 * fine-tuning; refusals name the field; fine-tuning lowers the test loss versus right after the
 * transfer; the report and the progress phases. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lite.h"
#include "model.h"
#include "prune.h"
#include "train.h"
#include "util.h"

#define SYN "synthetic:n=256,classes=4,c=1,h=8,w=8,seed=3"

/* d 8; layer 0 E17 N5 R2 K4 M13; layer 1 E16 N4 R1 K3 M0; layer 2 E19 N6 R2 K4 M9. */
static void hetero_cfg(model_config *c)
{
    memset(c, 0, sizeof *c);
    c->d = 8, c->n_layers = 3, c->C = 1, c->H = 8, c->W = 8, c->P = 4, c->L = 4, c->classes = 4;
    c->layers[0] = (layer_dims){.E = 17, .N = 5, .R = 2, .K = 4, .M = 13};
    c->layers[1] = (layer_dims){.E = 16, .N = 4, .R = 1, .K = 3, .M = 0};
    c->layers[2] = (layer_dims){.E = 19, .N = 6, .R = 2, .K = 4, .M = 9};
    for (int i = 0; i < c->n_layers; i++) c->orig_index[i] = i;
    snprintf(c->dataset, sizeof c->dataset, "synthetic");
    for (int i = 0; i < 3; i++) c->norm_mean[i] = 0.5f, c->norm_std[i] = 0.25f;
}

/* Model with cfg, init from seed, plus small noise so no weight ties. */
static void new_model(model *m, const model_config *c, uint64_t seed)
{
    char err[PL_ERRLEN];
    ck_assert_msg(model_create(m, c, seed, err, sizeof err) == 0, "%s", err);
    pl_rng r;
    pl_rng_seed(&r, seed + 77);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.02f * pl_rng_normal(&r);
}

static void hetero_model(model *m, uint64_t seed)
{
    model_config c;
    hetero_cfg(&c);
    new_model(m, &c, seed);
}

static lite_target target(float expand, int d_conv, int d_state, float mlp_ratio, int n_layers)
{
    return (lite_target){.expand = expand, .d_conv = d_conv, .d_state = d_state, .mlp_ratio = mlp_ratio,
                         .n_layers = n_layers};
}

static void load_syn(dataset *ds, const char *split)
{
    char err[PL_ERRLEN];
    ck_assert_msg(dataset_load(ds, SYN, NULL, split, err, sizeof err) == 0, "%s", err);
}

/* ------------------------------------------------------------------ spec parsing */

START_TEST(test_spec_parse)
{
    lite_spec s;
    char err[PL_ERRLEN];
    const char *full = "{\"target\": {\"expand\": 1, \"d_conv\": 2, \"d_state\": 8, \"mlp_ratio\": 0.5, \"n_layers\": 3},"
                       " \"criterion\": \"taylor\", \"calibration\": {\"samples\": 100},"
                       " \"finetune\": {\"epochs\": 2, \"lr\": 0.002, \"batch\": 32}, \"seed\": 9}";
    ck_assert_msg(lite_spec_parse(full, &s, err, sizeof err) == 0, "%s", err);
    ck_assert(s.target.expand == 1.0f && s.target.d_conv == 2 && s.target.d_state == 8);
    ck_assert(s.target.mlp_ratio == 0.5f && s.target.n_layers == 3);
    ck_assert_int_eq(s.criterion, PCR_TAYLOR);
    ck_assert_int_eq(s.calib_samples, 100);
    ck_assert_int_eq(s.finetune_epochs, 2);
    ck_assert_int_eq(s.finetune_steps, 0);
    ck_assert(fabsf(s.finetune_lr - 0.002f) < 1e-9f);
    ck_assert_int_eq(s.finetune_batch, 32);
    ck_assert_int_eq((int)s.seed, 9);

    /* defaults: unset fields stay LITE_UNSET */
    ck_assert(lite_spec_parse("{\"target\": {\"d_state\": 4}, \"finetune\": {\"steps\": 7}}", &s, err, sizeof err) == 0);
    ck_assert(s.target.expand == LITE_UNSET && s.target.d_conv == LITE_UNSET && s.target.mlp_ratio == LITE_UNSET);
    ck_assert(s.target.n_layers == LITE_UNSET && s.target.d_state == 4);
    ck_assert_int_eq(s.criterion, PCR_MAGNITUDE);
    ck_assert_int_eq(s.finetune_steps, 7);
    ck_assert_int_eq(s.finetune_batch, 64);
    ck_assert_int_eq(s.calib_samples, 512);
    ck_assert(lite_spec_parse("{\"target\": {\"mlp_ratio\": 0}}", &s, err, sizeof err) == 0);
    ck_assert(s.target.mlp_ratio == 0.0f);

    static const struct {
        const char *json, *want1, *want2;
    } bad[] = {
        {"{\"target\": {\"n_layers\": 0}}", "target.n_layers", "outside"},
        {"{\"target\": {\"width\": 2}}", "target.width", "unknown key"},
        {"{\"target\": {\"expand\": 1}, \"extra\": 1}", "extra", "unknown key"},
        {"{\"target\": {\"expand\": 1}, \"finetune\": {\"steps\": 5, \"epochs\": 1}}", "finetune", "not both"},
        {"{\"target\": {\"expand\": 1}, \"finetune\": {\"rate\": 5}}", "finetune.rate", "unknown key"},
        {"{\"target\": {\"expand\": 1}, \"finetune\": {\"lr\": 0}}", "finetune.lr", "outside"},
        {"{\"target\": {\"expand\": 1}, \"criterion\": \"bogus\"}", "criterion", "bogus"},
        {"{\"target\": {\"expand\": 0}}", "target.expand", "outside"},
        {"{\"target\": {\"expand\": \"1\"}}", "target.expand", "number"},
        {"{\"target\": {\"d_state\": 2.5}}", "target.d_state", "integer"},
        {"{\"target\": {\"mlp_ratio\": -1}}", "target.mlp_ratio", "outside"},
        {"{\"target\": {}}", "target", "empty"},
        {"{\"criterion\": \"l2\"}", "target", "required"},
        {"{\"target\": {\"expand\": 1}, \"calibration\": {\"samples\": 0}}", "calibration.samples", "outside"},
        {"{\"target\": {\"expand\": 1}, \"seed\": -1}", "seed", "non-negative"},
        {"{\"target\": {\"expand\": 1, \"expand\": 2}}", "invalid JSON", "duplicate"},
        {"[1]", "spec", "object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        ck_assert_msg(lite_spec_parse(bad[i].json, &s, err, sizeof err) == -1, "accepted %s", bad[i].json);
        ck_assert_msg(strstr(err, bad[i].want1) && strstr(err, bad[i].want2), "%s -> \"%s\" (want %s, %s)",
                      bad[i].json, err, bad[i].want1, bad[i].want2);
    }
}
END_TEST

/* ------------------------------------------------------------------ refusals against a model */

START_TEST(test_refusals)
{
    model m;
    hetero_model(&m, 5);
    char err[PL_ERRLEN];
    static const struct {
        float expand;
        int d_conv, d_state;
        float mlp;
        int n_layers;
        const char *want1, *want2;
    } bad[] = {
        {LITE_UNSET, LITE_UNSET, 6, LITE_UNSET, LITE_UNSET, "target.d_state", "larger than the source's 5 in layer 0"},
        {LITE_UNSET, LITE_UNSET, LITE_UNSET, LITE_UNSET, 4, "target.n_layers", "larger than the source's 3"},
        {LITE_UNSET, LITE_UNSET, LITE_UNSET, LITE_UNSET, 0, "target.n_layers", "no block"},
        {LITE_UNSET, 4, LITE_UNSET, LITE_UNSET, LITE_UNSET, "target.d_conv", "larger than the source's 3 in layer 1"},
        {LITE_UNSET, 0, LITE_UNSET, LITE_UNSET, LITE_UNSET, "target.d_conv", "no conv tap"},
        {LITE_UNSET, LITE_UNSET, 0, LITE_UNSET, LITE_UNSET, "target.d_state", "no state"},
        {2.5f, LITE_UNSET, LITE_UNSET, LITE_UNSET, LITE_UNSET, "target.expand", "more than the source's 17"},
        {0.05f, LITE_UNSET, LITE_UNSET, LITE_UNSET, LITE_UNSET, "target.expand", "0 d_inner channels"},
        {LITE_UNSET, LITE_UNSET, LITE_UNSET, 1.25f, LITE_UNSET, "target.mlp_ratio", "more than the source's 9 in layer 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lite_target t = target(bad[i].expand, bad[i].d_conv, bad[i].d_state, bad[i].mlp, bad[i].n_layers);
        err[0] = 0;
        ck_assert_msg(lite_target_check(&m, &t, err, sizeof err) == -1, "case %zu accepted", i);
        ck_assert_msg(strstr(err, bad[i].want1) && strstr(err, bad[i].want2), "case %zu: \"%s\"", i, err);
        /* lite_build refuses the same way and leaves dst freeable */
        lite_spec s;
        lite_spec_init(&s);
        s.target = t;
        model dst;
        err[0] = 0;
        ck_assert(lite_build(&m, &s, NULL, &dst, NULL, NULL, err, sizeof err) == -1);
        ck_assert_msg(strstr(err, bad[i].want1), "case %zu: \"%s\"", i, err);
        ck_assert(dst.params == NULL);
        model_free(&dst);
    }
    /* the largest valid targets are accepted */
    lite_target ok = target(2.0f, 3, 4, 1.125f, 3);
    ck_assert_msg(lite_target_check(&m, &ok, err, sizeof err) == 0, "%s", err);
    /* a criterion that needs calibration without data */
    lite_spec s;
    lite_spec_init(&s);
    s.target = target(1.0f, LITE_UNSET, LITE_UNSET, LITE_UNSET, LITE_UNSET);
    s.criterion = PCR_ACTIVATION;
    model dst;
    ck_assert(lite_build(&m, &s, NULL, &dst, NULL, NULL, err, sizeof err) == -1);
    ck_assert_msg(strstr(err, "criterion") && strstr(err, "activation"), "%s", err);
    model_free(&dst);
    model_free(&m);

    /* a source without any MLP refuses mlp_ratio > 0 but accepts 0 */
    model_config c;
    hetero_cfg(&c);
    c.layers[0].M = c.layers[2].M = 0;
    new_model(&m, &c, 6);
    lite_target t = target(LITE_UNSET, LITE_UNSET, LITE_UNSET, 0.5f, LITE_UNSET);
    ck_assert(lite_target_check(&m, &t, err, sizeof err) == -1);
    ck_assert_msg(strstr(err, "target.mlp_ratio") && strstr(err, "has none"), "%s", err);
    t.mlp_ratio = 0.0f;
    ck_assert(lite_target_check(&m, &t, err, sizeof err) == 0);
    model_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ exact dims */

static const struct {
    float expand;
    int d_conv, d_state;
    float mlp;
    int n_layers;
} dim_cases[] = {
    {1.0f, 2, 3, 0.5f, 2},                                    /* everything at once */
    {LITE_UNSET, LITE_UNSET, LITE_UNSET, LITE_UNSET, 1},      /* one block */
    {LITE_UNSET, LITE_UNSET, 4, LITE_UNSET, LITE_UNSET},      /* d_state only (layer 1 already 4) */
    {LITE_UNSET, LITE_UNSET, LITE_UNSET, 0.0f, LITE_UNSET},   /* MLP removed */
    {1.5f, 3, LITE_UNSET, LITE_UNSET, LITE_UNSET},            /* expand 12, d_conv 3 */
    {0.125f, 1, 1, 0.125f, 3},                                /* one of everything */
};

START_TEST(test_exact_dims)
{
    model m;
    hetero_model(&m, 11);
    const model_config *sc = &m.cfg;
    lite_spec s;
    lite_spec_init(&s);
    s.target = target(dim_cases[_i].expand, dim_cases[_i].d_conv, dim_cases[_i].d_state, dim_cases[_i].mlp,
                      dim_cases[_i].n_layers);
    model l;
    char err[PL_ERRLEN];
    ck_assert_msg(lite_build(&m, &s, NULL, &l, NULL, NULL, err, sizeof err) == 0, "%s", err);
    int want_layers = s.target.n_layers == LITE_UNSET ? sc->n_layers : s.target.n_layers;
    ck_assert_int_eq(l.cfg.n_layers, want_layers);
    ck_assert_int_eq(l.cfg.d, sc->d);
    for (int i = 0; i < l.cfg.n_layers; i++) {
        int o = l.cfg.orig_index[i];
        ck_assert(o >= 0 && o < sc->n_layers);
        if (i > 0) ck_assert_int_gt(o, l.cfg.orig_index[i - 1]); /* order kept */
        const layer_dims *sd = &sc->layers[o], *ld = &l.cfg.layers[i];
        int E = s.target.expand == LITE_UNSET ? sd->E : (int)lroundf(s.target.expand * sc->d);
        int N = s.target.d_state == LITE_UNSET ? sd->N : s.target.d_state;
        int K = s.target.d_conv == LITE_UNSET ? sd->K : s.target.d_conv;
        int M = s.target.mlp_ratio == LITE_UNSET || sd->M == 0 ? sd->M : (int)lroundf(s.target.mlp_ratio * sc->d);
        ck_assert_msg(ld->E == E && ld->N == N && ld->R == sd->R && ld->K == K && ld->M == M,
                      "case %d layer %d (orig %d): E%d N%d R%d K%d M%d, want E%d N%d R%d K%d M%d", _i, i, o, ld->E,
                      ld->N, ld->R, ld->K, ld->M, E, N, sd->R, K, M);
        ck_assert((l.w.layers[i].fc1_w != NULL) == (M > 0));
    }
    /* the parameter count is that of a fresh model with these dims */
    model fresh;
    ck_assert(model_alloc(&fresh, &l.cfg, err, sizeof err) == 0);
    ck_assert_uint_eq(fresh.n_params, l.n_params);
    ck_assert_uint_le(l.n_params, m.n_params);
    model_free(&fresh);
    ck_assert(strstr(l.cfg.provenance, "prunelab lite") != NULL);
    model_free(&l);
    model_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ planted importance */

static void scale_block(model *m, int li, float f)
{
    layer_params *w = &m->w.layers[li];
    const layer_dims *ld = &m->cfg.layers[li];
    int d = m->cfg.d;
    struct {
        float *p;
        size_t n;
    } t[] = {{w->in_proj_w, (size_t)2 * ld->E * d}, {w->conv_w, (size_t)ld->E * ld->K},
             {w->x_proj_w, (size_t)(ld->R + 2 * ld->N) * ld->E}, {w->dt_proj_w, (size_t)ld->E * ld->R},
             {w->out_proj_w, (size_t)d * ld->E}, {w->fc1_w, (size_t)ld->M * d}, {w->fc2_w, (size_t)d * ld->M}};
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++)
        if (t[k].p)
            for (size_t i = 0; i < t[k].n; i++) t[k].p[i] *= f;
}

/* Make channels ch[0..n) of layer li important: in_proj rows e and E+e, out_proj column e x10. */
static void plant_channels(model *m, int li, const int *ch, int n)
{
    layer_params *w = &m->w.layers[li];
    int d = m->cfg.d, E = m->cfg.layers[li].E;
    for (int k = 0; k < n; k++) {
        int e = ch[k];
        for (int j = 0; j < d; j++) {
            w->in_proj_w[(size_t)e * d + j] *= 10.0f;
            w->in_proj_w[(size_t)(E + e) * d + j] *= 10.0f;
            w->out_proj_w[(size_t)j * E + e] *= 10.0f;
        }
    }
}

static void plant_states(model *m, int li, const int *st, int n)
{
    layer_params *w = &m->w.layers[li];
    int E = m->cfg.layers[li].E, N = m->cfg.layers[li].N, R = m->cfg.layers[li].R;
    for (int k = 0; k < n; k++)
        for (int e = 0; e < E; e++) {
            w->x_proj_w[(size_t)(R + st[k]) * E + e] *= 10.0f;
            w->x_proj_w[(size_t)(R + N + st[k]) * E + e] *= 10.0f;
        }
}

static void plant_neurons(model *m, int li, const int *nr, int n)
{
    layer_params *w = &m->w.layers[li];
    int d = m->cfg.d, M = m->cfg.layers[li].M;
    for (int k = 0; k < n; k++)
        for (int j = 0; j < d; j++) {
            w->fc1_w[(size_t)nr[k] * d + j] *= 10.0f;
            w->fc2_w[(size_t)j * M + nr[k]] *= 10.0f;
        }
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Planted units of the test, per source layer (0 and 2 survive; layer 1 is made unimportant). */
static const int ch0[8] = {2, 5, 11, 16, 0, 9, 13, 7};
static const int ch2[8] = {18, 1, 4, 10, 15, 6, 3, 12};
static const int st0[3] = {4, 1, 3};
static const int st2[3] = {0, 5, 2};
static const int nr0[4] = {12, 3, 6, 8};
static const int nr2[4] = {2, 7, 0, 5};

static void check_layer_copy(const model *src, int so, const model *l, int lo, const int *ch_in, const int *st_in,
                             const int *nr_in)
{
    int ch[8], st[3], nr[4];
    memcpy(ch, ch_in, sizeof ch), memcpy(st, st_in, sizeof st), memcpy(nr, nr_in, sizeof nr);
    qsort(ch, 8, sizeof(int), cmp_int), qsort(st, 3, sizeof(int), cmp_int), qsort(nr, 4, sizeof(int), cmp_int);
    const layer_params *a = &src->w.layers[so], *b = &l->w.layers[lo];
    const layer_dims *sd = &src->cfg.layers[so], *ld = &l->cfg.layers[lo];
    int d = src->cfg.d, E = sd->E, N = sd->N, R = sd->R, K = sd->K, M = sd->M;
    int E2 = ld->E, N2 = ld->N, K2 = ld->K, M2 = ld->M;
    ck_assert(E2 == 8 && N2 == 3 && K2 == 2 && M2 == 4);
    for (int k = 0; k < E2; k++) {
        int e = ch[k];
        for (int j = 0; j < d; j++) {
            ck_assert(b->in_proj_w[(size_t)k * d + j] == a->in_proj_w[(size_t)e * d + j]);
            ck_assert(b->in_proj_w[(size_t)(E2 + k) * d + j] == a->in_proj_w[(size_t)(E + e) * d + j]);
            ck_assert(b->out_proj_w[(size_t)j * E2 + k] == a->out_proj_w[(size_t)j * E + e]);
        }
        /* the taps nearest t: source taps K-2, K-1 */
        for (int t = 0; t < K2; t++) ck_assert(b->conv_w[(size_t)k * K2 + t] == a->conv_w[(size_t)e * K + K - K2 + t]);
        ck_assert(b->conv_b[k] == a->conv_b[e]);
        ck_assert(b->D[k] == a->D[e] && b->dt_proj_b[k] == a->dt_proj_b[e]);
        for (int r = 0; r < R; r++) ck_assert(b->dt_proj_w[(size_t)k * R + r] == a->dt_proj_w[(size_t)e * R + r]);
        for (int n = 0; n < N2; n++) ck_assert(b->A_log[(size_t)k * N2 + n] == a->A_log[(size_t)e * N + st[n]]);
        for (int r = 0; r < R; r++) ck_assert(b->x_proj_w[(size_t)r * E2 + k] == a->x_proj_w[(size_t)r * E + e]);
        for (int n = 0; n < N2; n++) {
            ck_assert(b->x_proj_w[(size_t)(R + n) * E2 + k] == a->x_proj_w[(size_t)(R + st[n]) * E + e]);
            ck_assert(b->x_proj_w[(size_t)(R + N2 + n) * E2 + k] == a->x_proj_w[(size_t)(R + N + st[n]) * E + e]);
        }
    }
    for (int k = 0; k < M2; k++) {
        ck_assert(b->fc1_b[k] == a->fc1_b[nr[k]]);
        for (int j = 0; j < d; j++) {
            ck_assert(b->fc1_w[(size_t)k * d + j] == a->fc1_w[(size_t)nr[k] * d + j]);
            ck_assert(b->fc2_w[(size_t)j * M2 + k] == a->fc2_w[(size_t)j * M + nr[k]]);
        }
    }
}

/* loop index: 0 magnitude, 1 l2 */
START_TEST(test_planted_units_kept)
{
    model m;
    hetero_model(&m, 21);
    plant_channels(&m, 0, ch0, 8), plant_channels(&m, 2, ch2, 8);
    plant_states(&m, 0, st0, 3), plant_states(&m, 2, st2, 3);
    plant_neurons(&m, 0, nr0, 4), plant_neurons(&m, 2, nr2, 4);
    scale_block(&m, 1, 0.1f);

    lite_spec s;
    lite_spec_init(&s);
    s.criterion = _i == 0 ? PCR_MAGNITUDE : PCR_L2;
    s.target = target(1.0f, 2, 3, 0.5f, 2);
    /* the selection itself */
    prune_selection sel;
    prune_selection_init(&sel);
    char err[PL_ERRLEN];
    ck_assert_msg(lite_select(&m, &s, NULL, &sel, err, sizeof err) == 0, "%s", err);
    ck_assert(!sel.drop_layer[0] && sel.drop_layer[1] && !sel.drop_layer[2]);
    int kept = 0;
    for (int e = 0; e < 17; e++) kept += sel.keep_channel[0][e];
    ck_assert_int_eq(kept, 8);
    for (int k = 0; k < 8; k++) ck_assert(sel.keep_channel[0][ch0[k]] && sel.keep_channel[2][ch2[k]]);
    for (int k = 0; k < 3; k++) ck_assert(sel.keep_state[0][st0[k]] && sel.keep_state[2][st2[k]]);
    for (int k = 0; k < 4; k++) ck_assert(sel.keep_neuron[0][nr0[k]] && sel.keep_neuron[2][nr2[k]]);
    ck_assert_int_eq(sel.keep_taps[0], 2);
    prune_selection_free(&sel);

    /* the lite model: blocks 0 and 2 in order, every kept weight from the right place */
    model l;
    ck_assert_msg(lite_build(&m, &s, NULL, &l, NULL, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(l.cfg.n_layers, 2);
    ck_assert_int_eq(l.cfg.orig_index[0], 0);
    ck_assert_int_eq(l.cfg.orig_index[1], 2);
    check_layer_copy(&m, 0, &l, 0, ch0, st0, nr0);
    check_layer_copy(&m, 2, &l, 1, ch2, st2, nr2);
    ck_assert(memcmp(l.w.head_w, m.w.head_w, (size_t)m.cfg.classes * m.cfg.d * sizeof(float)) == 0);
    ck_assert(memcmp(l.w.pos, m.w.pos, (size_t)m.cfg.L * m.cfg.d * sizeof(float)) == 0);
    model_free(&l);

    /* one block: make block 2 the only important one */
    scale_block(&m, 0, 0.05f);
    s.target = target(LITE_UNSET, LITE_UNSET, LITE_UNSET, LITE_UNSET, 1);
    ck_assert_msg(lite_build(&m, &s, NULL, &l, NULL, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(l.cfg.n_layers, 1);
    ck_assert_int_eq(l.cfg.orig_index[0], 2);
    model_free(&l);
    model_free(&m);
}
END_TEST

/* every criterion builds the target dims (activation / taylor / wanda calibrate on data) */
START_TEST(test_criteria_build)
{
    model m;
    hetero_model(&m, 31);
    dataset tr;
    load_syn(&tr, "train");
    lite_spec s;
    lite_spec_init(&s);
    s.criterion = (prune_criterion)_i;
    s.calib_samples = 64;
    s.target = target(1.0f, 2, 3, 0.5f, 2);
    model l;
    char err[PL_ERRLEN];
    ck_assert_msg(lite_build(&m, &s, &tr, &l, NULL, NULL, err, sizeof err) == 0, "%s: %s",
                  prune_criterion_name(s.criterion), err);
    ck_assert_int_eq(l.cfg.n_layers, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(l.cfg.layers[i].E, 8);
        ck_assert_int_eq(l.cfg.layers[i].N, 3);
        ck_assert_int_eq(l.cfg.layers[i].K, 2);
    }
    eval_result r;
    ck_assert(train_evaluate(&l, &tr, 64, &r, err, sizeof err) == 0);
    ck_assert(isfinite(r.loss));
    model_free(&l);
    dataset_free(&tr);
    model_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ identity target */

static void check_same_logits(const model *a, const model *b)
{
    int B = 5;
    size_t img = (size_t)a->cfg.C * a->cfg.H * a->cfg.W;
    float *x = xmalloc((size_t)B * img * sizeof(float)); // x (B, C, H, W)
    pl_rng r;
    pl_rng_seed(&r, 4);
    for (size_t i = 0; i < B * img; i++) x[i] = pl_rng_normal(&r);
    model_acts *aa = model_acts_new(a, B, 0), *ab = model_acts_new(b, B, 0);
    model_forward(a, aa, x, NULL, B);
    model_forward(b, ab, x, NULL, B);
    const float *la = model_acts_logits(aa), *lb = model_acts_logits(ab);
    for (int i = 0; i < B * a->cfg.classes; i++)
        ck_assert_msg(fabsf(la[i] - lb[i]) <= 1e-6f, "logit %d: %g vs %g", i, la[i], lb[i]);
    model_acts_free(aa);
    model_acts_free(ab);
    free(x);
}

START_TEST(test_identity_target)
{
    /* uniform dims: every target field equal to the source */
    model_config c;
    hetero_cfg(&c);
    c.n_layers = 2;
    c.layers[0] = c.layers[1] = (layer_dims){.E = 16, .N = 4, .R = 1, .K = 4, .M = 12};
    model m;
    new_model(&m, &c, 41);
    lite_spec s;
    lite_spec_init(&s);
    s.target = target(2.0f, 4, 4, 1.5f, 2);
    model l;
    char err[PL_ERRLEN];
    ck_assert_msg(lite_build(&m, &s, NULL, &l, NULL, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(l.n_params, m.n_params);
    ck_assert(memcmp(l.params, m.params, m.n_params * sizeof(float)) == 0);
    check_same_logits(&m, &l);
    model_free(&l);
    model_free(&m);

    /* per-layer dims: n_layers equal to the source's */
    hetero_model(&m, 42);
    s.target = target(LITE_UNSET, LITE_UNSET, LITE_UNSET, LITE_UNSET, 3);
    ck_assert_msg(lite_build(&m, &s, NULL, &l, NULL, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(l.n_params, m.n_params);
    check_same_logits(&m, &l);
    model_free(&l);
    model_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ save, load, train; masks */

START_TEST(test_save_load_train)
{
    model m;
    hetero_model(&m, 51);
    lite_spec s;
    lite_spec_init(&s);
    s.target = target(1.0f, 2, 3, 0.5f, 2);
    model l;
    char err[PL_ERRLEN];
    ck_assert_msg(lite_build(&m, &s, NULL, &l, NULL, NULL, err, sizeof err) == 0, "%s", err);
    char path[] = "/tmp/test_lite_XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    ck_assert_msg(model_save(&l, path, err, sizeof err) == 0, "%s", err);
    model r;
    ck_assert_msg(model_load(&r, path, NULL, err, sizeof err) == 0, "%s", err);
    unlink(path);
    ck_assert_int_eq(r.cfg.n_layers, l.cfg.n_layers);
    for (int i = 0; i < r.cfg.n_layers; i++) {
        ck_assert(memcmp(&r.cfg.layers[i], &l.cfg.layers[i], sizeof(layer_dims)) == 0);
        ck_assert_int_eq(r.cfg.orig_index[i], l.cfg.orig_index[i]);
    }
    ck_assert_uint_eq(r.n_params, l.n_params);
    ck_assert(memcmp(r.params, l.params, l.n_params * sizeof(float)) == 0);
    ck_assert(strstr(r.cfg.provenance, "prunelab lite") != NULL);
    check_same_logits(&l, &r);

    dataset tr;
    load_syn(&tr, "train");
    eval_result before, after;
    ck_assert(train_evaluate(&r, &tr, 64, &before, err, sizeof err) == 0);
    train_config tc;
    train_config_default(&tc);
    tc.epochs = 3;
    tc.batch = 32;
    tc.opt.lr = 3e-3f;
    train_result res;
    ck_assert_msg(train_run(&r, &tr, NULL, &tc, &res, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(res.steps, 24);
    ck_assert(train_evaluate(&r, &tr, 64, &after, err, sizeof err) == 0);
    ck_assert_msg(after.loss < before.loss, "training did not lower the loss: %g -> %g", before.loss, after.loss);
    dataset_free(&tr);
    model_free(&r);
    model_free(&l);
    model_free(&m);
}
END_TEST

START_TEST(test_mask_carried)
{
    model m;
    hetero_model(&m, 61);
    plant_channels(&m, 0, ch0, 8);
    plant_neurons(&m, 0, nr0, 4);
    model_alloc_mask(&m);
    /* mask in_proj[5][3] (channel 5 is planted, kept as lite channel 2 of sorted {0,2,5,...})
     * and fc1[12][1] (neuron 12 kept as lite neuron 3 of sorted {3,6,8,12}) */
    int d = m.cfg.d;
    size_t in_off = (size_t)(m.w.layers[0].in_proj_w - m.params), fc_off = (size_t)(m.w.layers[0].fc1_w - m.params);
    m.mask[in_off + 5 * d + 3] = 0.0f;
    m.mask[fc_off + 12 * d + 1] = 0.0f;
    model_apply_mask(&m);

    lite_spec s;
    lite_spec_init(&s);
    s.target = target(1.0f, LITE_UNSET, LITE_UNSET, 0.5f, 3);
    s.finetune_steps = 30;
    s.finetune_lr = 5e-3f;
    s.finetune_batch = 32;
    dataset tr;
    load_syn(&tr, "train");
    lite_run_opts o;
    lite_run_opts_init(&o);
    o.latency_reps = 1;
    model l;
    char *rep = NULL, err[PL_ERRLEN];
    ck_assert_msg(lite_run(&m, &s, &tr, NULL, &o, &l, &rep, err, sizeof err) == 0, "%s", err);
    ck_assert_ptr_nonnull(l.mask);
    size_t lin = (size_t)(l.w.layers[0].in_proj_w - l.params), lfc = (size_t)(l.w.layers[0].fc1_w - l.params);
    ck_assert(l.mask[lin + 2 * d + 3] == 0.0f && l.params[lin + 2 * d + 3] == 0.0f);
    ck_assert(l.mask[lfc + 3 * d + 1] == 0.0f && l.params[lfc + 3 * d + 1] == 0.0f);
    size_t zeros = 0;
    for (size_t i = 0; i < l.n_params; i++) zeros += l.mask[i] == 0.0f;
    ck_assert_uint_eq(zeros, 2); /* nothing else masked */
    ck_assert(l.params[lin + 2 * d + 4] != 0.0f); /* its neighbour trained */
    free(rep);
    dataset_free(&tr);
    model_free(&l);
    model_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ the recipe */

typedef struct {
    char phases[64][16];
    double frac[64];
    int n;
} progress_log;

static void log_progress(const char *phase, double fraction, void *user)
{
    progress_log *p = user;
    if (p->n < 64) {
        snprintf(p->phases[p->n], sizeof p->phases[0], "%s", phase);
        p->frac[p->n++] = fraction;
    }
}

static double jnum(json_t *root, const char *path)
{
    json_t *v = root;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, ".")) v = json_object_get(v, tok);
    ck_assert_msg(v && json_is_number(v), "report lacks %s", path);
    return json_number_value(v);
}

START_TEST(test_finetune_improves)
{
    dataset tr, te;
    load_syn(&tr, "train");
    load_syn(&te, "test");
    model m;
    hetero_model(&m, 71);
    char err[PL_ERRLEN];
    /* a trained source */
    train_config tc;
    train_config_default(&tc);
    tc.epochs = 15;
    tc.batch = 32;
    tc.opt.lr = 3e-3f;
    tc.seed = 2;
    ck_assert_msg(train_run(&m, &tr, NULL, &tc, NULL, err, sizeof err) == 0, "%s", err);

    lite_spec s;
    lite_spec_init(&s);
    s.target = target(0.5f, 2, 2, 0.5f, 2);
    s.finetune_epochs = 10;
    s.finetune_lr = 3e-3f;
    s.finetune_batch = 32;
    s.seed = 3;
    progress_log pl = {0};
    lite_run_opts o;
    lite_run_opts_init(&o);
    o.latency_reps = 3;
    o.progress = log_progress;
    o.progress_user = &pl;
    model l;
    char *rep = NULL;
    ck_assert_msg(lite_run(&m, &s, &tr, &te, &o, &l, &rep, err, sizeof err) == 0, "%s", err);
    json_error_t je;
    json_t *r = json_loads(rep, 0, &je);
    ck_assert_msg(r != NULL, "report is not JSON: %s", je.text);
    double src_loss = jnum(r, "source.test.loss"), tr_loss = jnum(r, "transfer.test.loss");
    double ft_loss = jnum(r, "finetune.test.loss");
    ck_assert_msg(ft_loss < 0.7 * tr_loss, "fine-tuning: test loss %g after transfer, %g after (source %g)", tr_loss,
                  ft_loss, src_loss);
    /* the final model is the one reported */
    eval_result er;
    ck_assert(train_evaluate(&l, &te, 256, &er, err, sizeof err) == 0);
    ck_assert(fabs(er.loss - ft_loss) < 1e-5);
    ck_assert_int_eq((int)jnum(r, "lite.n_layers"), 2);
    ck_assert_int_eq((int)jnum(r, "source.n_layers"), 3);
    ck_assert_int_eq((int)jnum(r, "lite.params"), (int)l.n_params);
    ck_assert_int_eq((int)jnum(r, "source.params"), (int)m.n_params);
    ck_assert_int_eq((int)jnum(r, "finetune.steps"), 10 * (tr.n / 32));
    ck_assert(jnum(r, "speedup") > 0 && jnum(r, "lite.latency_ms_per_batch") > 0);
    ck_assert(jnum(r, "source.samples_per_s") > 0);
    ck_assert(fabs(jnum(r, "flops_ratio") - model_flops_per_sample(&l.cfg) / model_flops_per_sample(&m.cfg)) < 1e-6);
    ck_assert(fabs(jnum(r, "accuracy_drop") - (jnum(r, "source.test.accuracy") - jnum(r, "finetune.test.accuracy"))) <
              1e-9);
    json_t *layers = json_object_get(json_object_get(r, "lite"), "layers");
    ck_assert_int_eq((int)json_array_size(layers), 2);
    ck_assert_int_eq((int)json_integer_value(json_object_get(json_array_get(layers, 0), "E")), 4);
    json_decref(r);
    free(rep);

    /* progress: score, build, eval, finetune, eval; each phase from 0 to 1 */
    const char *order[] = {"score", "build", "eval", "finetune", "eval"};
    int k = 0;
    for (int i = 0; i < pl.n; i++) {
        ck_assert(pl.frac[i] >= 0.0 && pl.frac[i] <= 1.0);
        if (i == 0 || strcmp(pl.phases[i], pl.phases[i - 1]) != 0) {
            ck_assert_msg(k < 5 && strcmp(pl.phases[i], order[k]) == 0, "phase %d is %s", i, pl.phases[i]);
            ck_assert(pl.frac[i] == 0.0);
            if (i > 0) ck_assert(pl.frac[i - 1] == 1.0);
            k++;
        } else {
            ck_assert(pl.frac[i] >= pl.frac[i - 1]);
        }
    }
    ck_assert_int_eq(k, 5);
    ck_assert(pl.frac[pl.n - 1] == 1.0);

    model_free(&l);
    model_free(&m);
    dataset_free(&te);
    dataset_free(&tr);
}
END_TEST

static Suite *suite(void)
{
    Suite *su = suite_create("lite");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_spec_parse);
    tcase_add_test(tc, test_refusals);
    tcase_add_loop_test(tc, test_exact_dims, 0, (int)(sizeof dim_cases / sizeof dim_cases[0]));
    tcase_add_loop_test(tc, test_planted_units_kept, 0, 2);
    tcase_add_loop_test(tc, test_criteria_build, 0, PCR_COUNT);
    tcase_add_test(tc, test_identity_target);
    tcase_add_test(tc, test_save_load_train);
    tcase_add_test(tc, test_mask_carried);
    tcase_add_test(tc, test_finetune_improves);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
