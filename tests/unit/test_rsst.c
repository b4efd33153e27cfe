/* test_rsst.c — RSST, IMP rounds, rewind and refill (engine/rsst.c).
 *
 * Checks: lambda(t) schedule values; the penalty's gradient equals a central finite difference
 * of lambda * sum w^2 over exactly the targeted weights and is exactly zero elsewhere; the
 * selection targets exact counts (unstructured weights, structured units with every coupled
 * weight); regularisation shrinks the targeted weights' norm far more than the others';
 * removal zeroes exactly the targeted count; IMP rounds reach round((1 - (1 - rate)^r) * n)
 * zeros per layer in every round, structured rounds the same in units; masked weights stay
 * exactly zero through fine-tuning; rewind "init" gives the surviving weights their initial
 * values bit-exactly before fine-tuning, {"step": k} those after k steps of round 1; refill gives
 * a structured selection with fully dense kept units and the budgeted unit count, and shrinks;
 * the masked and the shrunk result of a structured run give the same logits; bad specs are
 * refused with the field's name.
 * Model: 3 layers with odd, different dims (layer 1 has no MLP); synthetic data. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "model.h"
#include "prune.h"
#include "rsst.h"
#include "train.h"
#include "util.h"

/* 1x8x8 images, P 4 -> L 4 tokens, d 5, 3 classes. */
static void rs_config(model_config *c)
{
    memset(c, 0, sizeof *c);
    c->d = 5, c->n_layers = 3, c->C = 1, c->H = 8, c->W = 8, c->P = 4, c->L = 4, c->classes = 3;
    c->layers[0] = (layer_dims){.E = 7, .N = 3, .R = 2, .K = 3, .M = 5};
    c->layers[1] = (layer_dims){.E = 5, .N = 2, .R = 1, .K = 4, .M = 0};
    c->layers[2] = (layer_dims){.E = 6, .N = 4, .R = 1, .K = 2, .M = 3};
    for (int i = 0; i < 3; i++) c->orig_index[i] = i;
    snprintf(c->dataset, sizeof c->dataset, "synthetic");
    for (int i = 0; i < 3; i++) c->norm_mean[i] = 0.5f, c->norm_std[i] = 0.25f;
}

static void rs_model(model *m, uint64_t seed)
{
    model_config c;
    rs_config(&c);
    char err[PL_ERRLEN];
    ck_assert_msg(model_create(m, &c, seed, err, sizeof err) == 0, "%s", err);
    /* no exact zeros anywhere (biases start at 0), so counts are the pruning's alone */
    pl_rng r;
    pl_rng_seed(&r, seed + 77);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.05f * pl_rng_normal(&r);
}

static const char *DS = "synthetic:n=96,classes=3,c=1,h=8,w=8,seed=3";

static void rs_data(dataset *train, dataset *test)
{
    char err[PL_ERRLEN];
    ck_assert_msg(dataset_load(train, DS, NULL, "train", err, sizeof err) == 0, "%s", err);
    if (test) ck_assert_msg(dataset_load(test, DS, NULL, "test", err, sizeof err) == 0, "%s", err);
}

static void rs_parse(const char *text, const model *m, rsst_spec *s)
{
    char err[PL_ERRLEN];
    ck_assert_msg(rsst_spec_parse(text, m, s, err, sizeof err) == 0, "spec refused: %s\n%s", err, text);
}

static long round_half(double x) { return (long)floor(x + 0.5); }

/* Expected zeros of prune_unstructured at the cumulative rate after r rounds of `rate`. */
static long expect_zeros(float rate, int r, size_t n)
{
    float cum = (float)(1.0 - pow(1.0 - (double)rate, r));
    return round_half((double)cum * (double)n);
}

static size_t zeros_in(const float *p, size_t n)
{
    size_t z = 0;
    for (size_t i = 0; i < n; i++) z += p[i] == 0.0f;
    return z;
}

/* ------------------------------------------------------------------ schedule and penalty */

START_TEST(test_lambda_schedule)
{
    ck_assert(fabs(rsst_lambda(2.0, 2.0, 10, 5) - 0.5) < 1e-12);
    ck_assert(fabs(rsst_lambda(2.0, 2.0, 10, 10) - 2.0) < 1e-12);
    ck_assert(rsst_lambda(2.0, 2.0, 10, 0) == 0.0);
    ck_assert(fabs(rsst_lambda(2.0, 2.0, 10, 25) - 2.0) < 1e-12); /* clamped at T */
    ck_assert(rsst_lambda(2.0, 2.0, 10, -3) == 0.0);
    ck_assert(fabs(rsst_lambda(3.0, 1.0, 4, 3) - 2.25) < 1e-12);
    ck_assert(fabs(rsst_lambda(1.0, 0.5, 16, 4) - 0.5) < 1e-12);
    ck_assert(fabs(rsst_lambda(3.0, 0.0, 4, 1) - 3.0) < 1e-12); /* p = 0: constant */
    ck_assert(fabs(rsst_lambda(3.0, 1.0, 0, 0) - 3.0) < 1e-12); /* no phase: lambda_max */
    /* monotone in t for p > 0 */
    double prev = -1.0;
    for (long t = 0; t <= 20; t++) {
        double v = rsst_lambda(0.7, 3.0, 20, t);
        ck_assert(v >= prev);
        prev = v;
    }
}
END_TEST

/* lambda * sum over the targets of w^2, in double. */
static double naive_penalty(const model *m, const uint8_t *target, double lambda)
{
    double s = 0.0;
    for (size_t i = 0; i < m->n_params; i++)
        if (target[i]) s += (double)m->params[i] * m->params[i];
    return lambda * s;
}

START_TEST(test_penalty_gradient_fd)
{
    model m;
    rs_model(&m, 3);
    rsst_spec s;
    rs_parse("{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5},"
             " {\"component\": \"mlp\", \"granularity\": \"structured\", \"rate\": 0.4, \"apply\": \"mask\"}]}",
             &m, &s);
    uint8_t *target = xmalloc(m.n_params);
    prune_selection sel;
    prune_selection_init(&sel);
    char err[PL_ERRLEN];
    long nt = rsst_select(&m, &s, 1, NULL, &sel, target, err, sizeof err);
    ck_assert_msg(nt > 0, "%s", err);
    model_alloc_grads(&m);
    model_zero_grads(&m);
    double lambda = 0.37;
    double v = rsst_penalty(&m, target, lambda);
    ck_assert_msg(fabs(v - naive_penalty(&m, target, lambda)) < 1e-9 * (1 + v), "penalty %g vs naive %g", v,
                  naive_penalty(&m, target, lambda));
    float *g = xmalloc(m.n_params * sizeof(float));
    memcpy(g, m.grads, m.n_params * sizeof(float));
    long checked_t = 0, checked_o = 0;
    for (size_t i = 0; i < m.n_params; i++) {
        float w0 = m.params[i];
        const float h = 1e-2f;
        m.params[i] = w0 + h;
        double fp = naive_penalty(&m, target, lambda);
        m.params[i] = w0 - h;
        double fm = naive_penalty(&m, target, lambda);
        m.params[i] = w0;
        double step = (double)(w0 + h) - (double)(w0 - h);
        double fd = (fp - fm) / step;
        if (target[i]) {
            ck_assert_msg(fabs(g[i] - fd) < 1e-4 * (1 + fabs(fd)), "weight %zu: grad %g vs fd %g", i, g[i], fd);
            ck_assert(g[i] != 0.0f);
            checked_t++;
        } else {
            ck_assert_msg(g[i] == 0.0f && fd == 0.0, "untargeted weight %zu: grad %g fd %g", i, g[i], fd);
            checked_o++;
        }
    }
    ck_assert_int_eq(checked_t, nt);
    ck_assert(checked_o > 0);
    /* accumulates (+=) into existing grads */
    rsst_penalty(&m, target, lambda);
    for (size_t i = 0; i < m.n_params; i++) ck_assert(m.grads[i] == 2.0f * g[i] || fabs(m.grads[i] - 2 * g[i]) < 1e-6);
    free(g);
    free(target);
    prune_selection_free(&sel);
    rsst_spec_free(&s);
    model_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ selection counts */

START_TEST(test_select_exact_targets)
{
    model m;
    rs_model(&m, 4);
    rsst_spec s;
    rs_parse("{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5},"
             " {\"component\": \"mlp\", \"granularity\": \"structured\", \"rate\": 0.4, \"apply\": \"mask\"}]}",
             &m, &s);
    uint8_t *target = xmalloc(m.n_params);
    prune_selection sel;
    prune_selection_init(&sel);
    char err[PL_ERRLEN];
    long nt = rsst_select(&m, &s, 1, NULL, &sel, target, err, sizeof err);
    ck_assert_msg(nt >= 0, "%s", err);
    int d = m.cfg.d;
    long expect = 0;
    for (int li = 0; li < 3; li++) {
        const layer_dims *ld = &m.cfg.layers[li];
        const layer_params *w = &m.w.layers[li];
        /* out_proj: exactly round(0.5 * d E) targeted in this layer */
        size_t o = (size_t)(w->out_proj_w - m.params), no = (size_t)d * ld->E;
        long t = 0;
        for (size_t i = 0; i < no; i++) t += target[o + i];
        ck_assert_int_eq(t, round_half(0.5 * (double)no));
        expect += t;
        if (ld->M == 0) continue;
        /* mlp: round(0.4 M) neurons, each fc1 row + bias + fc2 column, all or nothing */
        long k = round_half(0.4 * ld->M), dead = 0;
        size_t f1 = (size_t)(w->fc1_w - m.params), b1 = (size_t)(w->fc1_b - m.params),
               f2 = (size_t)(w->fc2_w - m.params);
        for (int j = 0; j < ld->M; j++) {
            int tgt = target[b1 + j];
            for (int q = 0; q < d; q++) {
                ck_assert_int_eq(target[f1 + (size_t)j * d + q], tgt);
                ck_assert_int_eq(target[f2 + (size_t)q * ld->M + j], tgt);
            }
            ck_assert_int_eq(sel.keep_neuron[li][j], !tgt);
            dead += tgt;
        }
        ck_assert_int_eq(dead, k);
        expect += k * (2 * d + 1);
    }
    ck_assert_int_eq(nt, expect);
    /* round 2 targets only what is still alive: mark round 1 removed, select again */
    model_alloc_mask(&m);
    for (size_t i = 0; i < m.n_params; i++)
        if (target[i]) m.mask[i] = 0.0f, m.params[i] = 0.0f;
    long nt2 = rsst_select(&m, &s, 2, NULL, &sel, target, err, sizeof err);
    ck_assert_msg(nt2 >= 0, "%s", err);
    for (size_t i = 0; i < m.n_params; i++)
        if (target[i]) ck_assert(m.mask[i] != 0.0f);
    for (int li = 0; li < 3; li++) {
        const layer_dims *ld = &m.cfg.layers[li];
        size_t o = (size_t)(m.w.layers[li].out_proj_w - m.params), no = (size_t)d * ld->E;
        long t = 0;
        for (size_t i = 0; i < no; i++) t += target[o + i] || m.mask[o + i] == 0.0f;
        ck_assert_int_eq(t, expect_zeros(0.5f, 2, no));
    }
    free(target);
    prune_selection_free(&sel);
    rsst_spec_free(&s);
    model_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ runs */

/* Progress probe: checks the weights at the start of every fine-tuning phase against a
 * reference: `init` when set, else round 1 against the weights just before removal and later
 * rounds against the weights at the end of round 1's fine-tuning (rewind {"step": T + F}). */
typedef struct {
    const float *init;
    float *before_removal;   /* copy at "prune" 0.5 (after regularisation, before removal) */
    float *ft1_end;          /* copy at the end of round 1's fine-tuning */
    int finetune_starts, checked;
    int bad;
    char msg[256];
    double last_fraction;
    int monotone_bad;
} probe;

static void probe_cb(const rsst_progress *p, void *user)
{
    probe *q = user;
    if (p->fraction + 1e-12 < q->last_fraction) q->monotone_bad = 1;
    q->last_fraction = p->fraction;
    size_t bytes = p->m->n_params * sizeof(float);
    if (strcmp(p->phase, "prune") == 0 && p->phase_fraction == 0.5 && q->before_removal)
        memcpy(q->before_removal, p->m->params, bytes);
    if (strcmp(p->phase, "finetune") == 0 && p->phase_fraction == 1.0 && p->round == 1 && q->ft1_end)
        memcpy(q->ft1_end, p->m->params, bytes);
    if (strcmp(p->phase, "finetune") == 0 && p->phase_fraction == 0.0) {
        q->finetune_starts++;
        const float *ref = q->init ? q->init : p->round == 1 ? q->before_removal : q->ft1_end;
        if (!ref) return;
        const model *m = p->m;
        for (size_t i = 0; i < m->n_params && !q->bad; i++) {
            float want = m->mask[i] != 0.0f ? ref[i] : 0.0f;
            if (memcmp(&want, &m->params[i], sizeof want) != 0) {
                q->bad = 1;
                snprintf(q->msg, sizeof q->msg, "round %d: param %zu is %.9g, expected %.9g (mask %g)", p->round, i,
                         m->params[i], want, m->mask[i]);
            }
        }
        q->checked++;
    }
}

static void run_spec(model *m, const char *text, rsst_result *res, probe *pr)
{
    dataset train, test;
    rs_data(&train, &test);
    rsst_spec s;
    rs_parse(text, m, &s);
    rsst_options o = {.progress = pr ? probe_cb : NULL, .progress_user = pr, .report_every_s = 0.001};
    char err[PL_ERRLEN];
    ck_assert_msg(rsst_run(m, &s, &train, &test, &o, res, err, sizeof err) == 0, "rsst_run: %s", err);
    rsst_spec_free(&s);
    dataset_free(&train);
    dataset_free(&test);
}

START_TEST(test_regularisation_shrinks_targets)
{
    model m;
    rs_model(&m, 5);
    rsst_result r;
    run_spec(&m,
             "{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}, {\"component\": \"mlp\", \"rate\": 0.5}],"
             " \"rsst\": {\"reg_steps\": 40, \"lambda_max\": 2.0, \"power\": 1, \"lr\": 0.01}, \"batch\": 16}",
             &r, NULL);
    ck_assert_int_eq(r.n_rounds, 1);
    const rsst_round *q = &r.rounds[0];
    double rt = q->target_norm_after / q->target_norm_before, ro = q->other_norm_after / q->other_norm_before;
    fprintf(stderr, "regularisation: targeted norm x%.4f, others x%.4f (lambda_end %g)\n", rt, ro, q->lambda_end);
    ck_assert_msg(rt < 0.25 * ro, "targeted norm x%g vs others x%g", rt, ro);
    ck_assert(fabs(q->lambda_end - 2.0) < 1e-9);
    ck_assert(q->penalty_end > 0.0);
    /* exactly the targeted count is gone: per layer round(0.5 n) zeros in out_proj and mlp */
    size_t cw = 0, cz = 0;
    for (int li = 0; li < 3; li++) {
        const layer_dims *ld = &m.cfg.layers[li];
        const layer_params *w = &m.w.layers[li];
        size_t no = (size_t)m.cfg.d * ld->E;
        ck_assert_int_eq(zeros_in(w->out_proj_w, no), round_half(0.5 * no));
        cw += no;
        cz += zeros_in(w->out_proj_w, no);
        if (ld->M) {
            size_t nm = 2 * (size_t)m.cfg.d * ld->M;
            size_t z = zeros_in(w->fc1_w, nm / 2) + zeros_in(w->fc2_w, nm / 2);
            ck_assert_int_eq(z, round_half(0.5 * nm));
            cw += nm;
            cz += z;
        }
    }
    ck_assert_int_eq(q->component_weights, cw);
    ck_assert_int_eq(q->component_zeros, cz);
    ck_assert_int_eq(q->targeted, (long)cz);
    ck_assert(r.base_acc >= 0.0 && q->pruned_acc >= 0.0);
    rsst_result_free(&r);
    model_free(&m);
}
END_TEST

START_TEST(test_imp_rounds_exact_and_masks_hold)
{
    model m;
    rs_model(&m, 6);
    rsst_result r;
    probe pr = {0};
    run_spec(&m,
             "{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.3}, {\"component\": \"gate\", \"rate\": 0.3,"
             " \"scope\": \"global\"}], \"rsst\": {\"reg_steps\": 6, \"lambda_max\": 0.5, \"lr\": 0.005},"
             " \"rounds\": 3, \"finetune\": {\"steps\": 12, \"lr\": 0.01}, \"batch\": 16}",
             &r, &pr);
    ck_assert_int_eq(r.n_rounds, 3);
    ck_assert_int_eq(pr.finetune_starts, 3);
    ck_assert(!pr.monotone_bad);
    /* every round: per layer round((1 - 0.7^r) n) zeros in out_proj; gate globally */
    size_t gate_total = 0;
    for (int li = 0; li < 3; li++) gate_total += (size_t)m.cfg.layers[li].E * m.cfg.d;
    long gate_z = 0;
    for (int li = 0; li < 3; li++) {
        const layer_dims *ld = &m.cfg.layers[li];
        size_t E = (size_t)ld->E, d = (size_t)m.cfg.d;
        gate_z += (long)zeros_in(m.w.layers[li].in_proj_w + E * d, E * d);
        ck_assert_int_eq(zeros_in(m.w.layers[li].out_proj_w, d * E), expect_zeros(0.3f, 3, d * E));
    }
    ck_assert_int_eq(gate_z, expect_zeros(0.3f, 3, gate_total));
    for (int k = 0; k < 3; k++) {
        long want = expect_zeros(0.3f, k + 1, gate_total);
        for (int li = 0; li < 3; li++)
            want += expect_zeros(0.3f, k + 1, (size_t)m.cfg.d * m.cfg.layers[li].E);
        ck_assert_msg(r.rounds[k].component_zeros == (size_t)want, "round %d: %zu zeros, expected %ld", k + 1,
                      r.rounds[k].component_zeros, want);
        ck_assert_int_eq(r.rounds[k].round, k + 1);
        ck_assert_int_eq(r.rounds[k].steps, (k + 1) * 18);
        ck_assert(r.rounds[k].finetuned_acc >= 0.0);
    }
    /* fine-tuning kept every masked weight exactly zero, and nothing else is zero */
    ck_assert_ptr_nonnull(m.mask);
    size_t masked = 0;
    for (size_t i = 0; i < m.n_params; i++)
        if (m.mask[i] == 0.0f) {
            ck_assert_msg(m.params[i] == 0.0f, "masked weight %zu is %g after fine-tuning", i, m.params[i]);
            masked++;
        }
    ck_assert_int_eq(masked, r.rounds[2].component_zeros);
    ck_assert_int_eq(zeros_in(m.params, m.n_params), masked);
    ck_assert_int_eq(r.params_after, m.n_params);
    ck_assert(!r.shrunk);
    rsst_result_free(&r);
    model_free(&m);
}
END_TEST

START_TEST(test_structured_rounds_and_shrink_equals_mask)
{
    const char *fmt = "{\"prune\": [{\"component\": \"mlp\", \"granularity\": \"structured\", \"rate\": 0.5,"
                      " \"apply\": \"%s\"}, {\"component\": \"in_proj\", \"granularity\": \"structured\","
                      " \"rate\": 0.3, \"apply\": \"%s\"}], \"rsst\": {\"reg_steps\": 5}, \"rounds\": 2,"
                      " \"finetune\": {\"steps\": 4}, \"batch\": 16}";
    char t1[600], t2[600];
    snprintf(t1, sizeof t1, fmt, "mask", "mask");
    snprintf(t2, sizeof t2, fmt, "shrink", "shrink");
    model a, b;
    rs_model(&a, 7);
    rs_model(&b, 7);
    rsst_result ra, rb;
    run_spec(&a, t1, &ra, NULL);
    run_spec(&b, t2, &rb, NULL);
    ck_assert(!ra.shrunk && rb.shrunk);
    /* after 2 rounds of 0.5 / 0.3: round(0.75 M) neurons and round(0.51 E) channels gone (one channel kept) */
    model_config c;
    rs_config(&c);
    for (int li = 0; li < 3; li++) {
        int M = c.layers[li].M, E = c.layers[li].E;
        int Mk = M - (int)round_half((1 - 0.25) * M);
        int Ek = E - (int)round_half((double)(float)(1 - pow(0.7, 2)) * E);
        ck_assert_int_eq(b.cfg.layers[li].M, Mk);
        ck_assert_int_eq(b.cfg.layers[li].E, Ek);
        if (M) {
            int dead = 0;
            for (int j = 0; j < M; j++) dead += a.w.layers[li].fc1_b[j] == 0.0f && a.mask[(size_t)(a.w.layers[li].fc1_b - a.params) + j] == 0.0f;
            ck_assert_int_eq(dead, M - Mk);
        }
        int deadc = 0;
        for (int e = 0; e < E; e++) deadc += a.mask[(size_t)(a.w.layers[li].D - a.params) + e] == 0.0f;
        ck_assert_int_eq(deadc, E - Ek);
    }
    ck_assert(rb.params_after < ra.params_after);
    /* same training, then mask vs shrink: same logits */
    dataset test;
    char err[PL_ERRLEN];
    ck_assert(dataset_load(&test, DS, NULL, "test", err, sizeof err) == 0);
    int B = test.n < 8 ? test.n : 8;
    int idx[8];
    for (int i = 0; i < B; i++) idx[i] = i;
    float *x = xmalloc((size_t)B * 64 * sizeof(float));
    dataset_batch(&test, idx, B, x, NULL, NULL, 0);
    model_acts *aa = model_acts_new(&a, B, 0), *ab = model_acts_new(&b, B, 0);
    model_forward(&a, aa, x, NULL, B);
    model_forward(&b, ab, x, NULL, B);
    const float *la = model_acts_logits(aa), *lb = model_acts_logits(ab);
    for (int i = 0; i < B * 3; i++) ck_assert_msg(fabs(la[i] - lb[i]) < 1e-5 * (1 + fabs(la[i])), "logit %d: %g vs %g", i, la[i], lb[i]);
    ck_assert(fabs(ra.final_acc - rb.final_acc) < 1e-9);
    model_acts_free(aa);
    model_acts_free(ab);
    free(x);
    dataset_free(&test);
    rsst_result_free(&ra);
    rsst_result_free(&rb);
    model_free(&a);
    model_free(&b);
}
END_TEST

START_TEST(test_rewind_init_bit_exact)
{
    model m;
    rs_model(&m, 8);
    float *init = xmalloc(m.n_params * sizeof(float));
    memcpy(init, m.params, m.n_params * sizeof(float));
    probe pr = {.init = init};
    rsst_result r;
    run_spec(&m,
             "{\"prune\": [{\"component\": \"mlp\", \"rate\": 0.4}, {\"component\": \"x_proj_bc\","
             " \"granularity\": \"structured\", \"rate\": 0.3, \"apply\": \"mask\"}],"
             " \"rsst\": {\"reg_steps\": 8, \"lr\": 0.01}, \"rounds\": 2, \"rewind\": \"init\","
             " \"finetune\": {\"steps\": 6}, \"batch\": 16}",
             &r, &pr);
    ck_assert_int_eq(pr.checked, 2);
    ck_assert_msg(!pr.bad, "%s", pr.msg);
    /* and training did move the weights (the check is not vacuous) */
    size_t moved = 0;
    for (size_t i = 0; i < m.n_params; i++) moved += m.mask[i] != 0.0f && m.params[i] != init[i];
    ck_assert(moved > m.n_params / 2);
    free(init);
    rsst_result_free(&r);
    model_free(&m);
}
END_TEST

START_TEST(test_rewind_step)
{
    /* k = 0: the initial weights, in every round */
    model m;
    rs_model(&m, 9);
    float *init = xmalloc(m.n_params * sizeof(float));
    memcpy(init, m.params, m.n_params * sizeof(float));
    probe pr = {.init = init};
    rsst_result r;
    run_spec(&m,
             "{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"rsst\": {\"reg_steps\": 7},"
             " \"rounds\": 2, \"rewind\": {\"step\": 0}, \"finetune\": {\"steps\": 5}, \"batch\": 16}",
             &r, &pr);
    ck_assert_int_eq(pr.checked, 2);
    ck_assert_msg(!pr.bad, "%s", pr.msg);
    rsst_result_free(&r);
    model_free(&m);
    free(init);

    /* k = T + F = 12, the end of round 1: round 1 cannot rewind yet (its weights before removal
     * stay), round 2 goes back to the weights at the end of round 1 */
    rs_model(&m, 9);
    probe p2 = {0};
    p2.before_removal = xmalloc(m.n_params * sizeof(float));
    p2.ft1_end = xmalloc(m.n_params * sizeof(float));
    run_spec(&m,
             "{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"rsst\": {\"reg_steps\": 7},"
             " \"rounds\": 2, \"rewind\": {\"step\": 12}, \"finetune\": {\"steps\": 5}, \"batch\": 16}",
             &r, &p2);
    ck_assert_int_eq(p2.checked, 2);
    ck_assert_msg(!p2.bad, "%s", p2.msg);
    /* not vacuous: round 2's regularisation had moved the surviving weights away from ft1_end */
    size_t differ = 0;
    for (size_t i = 0; i < m.n_params; i++) differ += p2.before_removal[i] != p2.ft1_end[i];
    ck_assert(differ > m.n_params / 2);
    free(p2.before_removal);
    free(p2.ft1_end);
    rsst_result_free(&r);
    model_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ refill */

START_TEST(test_refill_dense_units_and_budget)
{
    model m;
    rs_model(&m, 10);
    rsst_result r;
    float f = 0.5f, rate = 0.6f;
    run_spec(&m,
             "{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.6}], \"rsst\": {\"reg_steps\": 4},"
             " \"refill\": {\"fillback_rate\": 0.5, \"apply\": \"mask\"}, \"batch\": 16}",
             &r, NULL);
    int d = m.cfg.d;
    for (int li = 0; li < 3; li++) {
        int E = m.cfg.layers[li].E;
        size_t n = (size_t)d * E;
        long surviving = (long)n - round_half((double)rate * n);
        long dense = round_half((double)surviving / E);
        long keep = dense + round_half((double)f * (d - dense));
        const float *w = m.w.layers[li].out_proj_w;
        const float *mk = m.mask + (w - m.params);
        long kept = 0;
        for (int j = 0; j < d; j++) {
            size_t nz = 0, on = 0;
            for (int e = 0; e < E; e++) {
                nz += w[(size_t)j * E + e] != 0.0f;
                on += mk[(size_t)j * E + e] != 0.0f;
            }
            ck_assert_msg((nz == 0 && on == 0) || (nz == (size_t)E && on == (size_t)E),
                          "layer %d row %d: %zu non-zero, %zu unmasked of %d", li, j, nz, on, E);
            kept += nz == (size_t)E;
        }
        ck_assert_msg(kept == keep, "layer %d: %ld rows kept, budget %ld", li, kept, keep);
    }
    rsst_result_free(&r);
    model_free(&m);

    /* mlp refill with shrink: a smaller model whose neurons are all dense */
    rs_model(&m, 11);
    model_config c0 = m.cfg;
    run_spec(&m,
             "{\"prune\": [{\"component\": \"mlp\", \"rate\": 0.6}], \"rsst\": {\"reg_steps\": 4},"
             " \"refill\": {\"fillback_rate\": 0.5}, \"finetune\": {\"steps\": 3}, \"batch\": 16}",
             &r, NULL);
    ck_assert(r.shrunk);
    for (int li = 0; li < 3; li++) {
        int M0 = c0.layers[li].M;
        if (!M0) {
            ck_assert_int_eq(m.cfg.layers[li].M, 0);
            continue;
        }
        size_t n = 2 * (size_t)d * M0;
        long surviving = (long)n - round_half((double)rate * n);
        long dense = round_half((double)surviving / (2.0 * d));
        long keep = dense + round_half((double)f * (M0 - dense));
        ck_assert_int_eq(m.cfg.layers[li].M, keep);
        size_t nm = (size_t)d * m.cfg.layers[li].M;
        ck_assert_int_eq(zeros_in(m.w.layers[li].fc1_w, nm), 0);
        ck_assert_int_eq(zeros_in(m.w.layers[li].fc2_w, nm), 0);
    }
    rsst_result_free(&r);
    model_free(&m);
}
END_TEST

START_TEST(test_refill_unit_level)
{
    /* hand-made survivors: rsst_refill ranks rows by surviving weights, keeps round(S / E) dense
     * plus f of the rest, restores values from `restore` */
    model m;
    rs_model(&m, 12);
    rsst_spec s;
    rs_parse("{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5, \"layers\": [0]}],"
             " \"refill\": {\"fillback_rate\": 0.0, \"apply\": \"mask\"}}", &m, &s);
    float *restore = xmalloc(m.n_params * sizeof(float));
    memcpy(restore, m.params, m.n_params * sizeof(float));
    model_alloc_mask(&m);
    int d = m.cfg.d, E = m.cfg.layers[0].E; /* 5 rows of 7 */
    float *w = m.w.layers[0].out_proj_w, *mk = m.mask + (w - m.params);
    int alive_per_row[5] = {7, 1, 6, 0, 3}; /* S = 17 -> round(17 / 7) = 2 dense rows: 0 and 2 */
    for (int j = 0; j < d; j++)
        for (int e = 0; e < E; e++)
            if (e >= alive_per_row[j]) w[j * E + e] = 0.0f, mk[j * E + e] = 0.0f;
    prune_selection sel;
    prune_selection_init(&sel);
    char err[PL_ERRLEN];
    ck_assert_msg(rsst_refill(&m, &s, NULL, &sel, restore, err, sizeof err) == 0, "%s", err);
    int want[5] = {1, 0, 1, 0, 0};
    for (int j = 0; j < d; j++) {
        ck_assert_int_eq(sel.keep_row[0][j], want[j]);
        for (int e = 0; e < E; e++) {
            float v = w[j * E + e];
            ck_assert(want[j] ? (v == restore[(w - m.params) + j * E + e] && mk[j * E + e] == 1.0f)
                              : (v == 0.0f && mk[j * E + e] == 0.0f));
        }
    }
    /* other layers untouched */
    ck_assert_ptr_null(sel.keep_row[1]);
    prune_selection_free(&sel);
    free(restore);
    rsst_spec_free(&s);
    model_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ specs */

START_TEST(test_spec_defaults_and_refusals)
{
    model m;
    rs_model(&m, 13);
    rsst_spec s;
    rs_parse("{\"prune\": [{\"component\": \"linear_out\", \"rate\": 0.7}]}", &m, &s);
    ck_assert_int_eq(s.rounds, 1);
    ck_assert_int_eq(s.rewind, RSST_REWIND_NONE);
    ck_assert_int_eq(s.refill, 0);
    ck_assert_int_eq(s.batch, 64);
    ck_assert(s.reg_steps > 0 && s.lambda_max > 0.0f && s.reg_lr > 0.0f);
    ck_assert_int_eq(s.prune.n, 1);
    ck_assert_int_eq(s.prune.entries[0].component, PC_OUT_PROJ);
    rsst_spec_free(&s);
    rs_parse("{\"prune\": [{\"component\": \"mlp\", \"rate\": 0.5}], \"rsst\": {\"reg_steps\": 10,"
             " \"lambda_max\": 0.1, \"power\": 2, \"lr\": 0.002}, \"rounds\": 4, \"rewind\": {\"step\": 12},"
             " \"refill\": {\"fillback_rate\": 0.25, \"apply\": \"mask\"}, \"finetune\": {\"steps\": 5},"
             " \"batch\": 8, \"seed\": 9}", &m, &s);
    ck_assert_int_eq(s.rewind, RSST_REWIND_STEP);
    ck_assert_int_eq(s.rewind_step, 12);
    ck_assert(s.refill && s.fillback_rate == 0.25f && s.refill_apply == PA_MASK);
    ck_assert(s.power == 2.0f && s.rounds == 4 && s.batch == 8 && s.prune.seed == 9);
    rsst_spec_free(&s);

    static const struct {
        const char *spec, *want;
    } bad[] = {
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 1.5}]}", "prune[0].rate"},
        {"{\"prune\": [{\"component\": \"nope\", \"rate\": 0.5}]}", "prune[0].component"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"bogus\": 1}", "unknown key \"bogus\""},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"rsst\": {\"power\": -1}}", "rsst.power"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"rsst\": {\"lambda_max\": \"big\"}}",
         "rsst.lambda_max"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"rsst\": {\"lr\": 0}}", "rsst.lr"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"rsst\": {\"reg_steps\": -2}}",
         "rsst.reg_steps"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"rsst\": {\"steps\": 5}}",
         "rsst.steps: unknown key \"steps\""},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"rounds\": 0}", "rounds"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"rewind\": \"later\"}", "rewind"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"rewind\": {\"step\": 1000},"
         " \"rsst\": {\"reg_steps\": 10}}", "rewind.step"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"rewind\": {\"at\": 3}}", "rewind.at: unknown key"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"refill\": {\"fillback_rate\": 2}}",
         "refill.fillback_rate"},
        {"{\"prune\": [{\"component\": \"A_log\", \"rate\": 0.5}], \"refill\": {}}", "refill: prune[0].component"},
        {"{\"prune\": [{\"component\": \"mlp\", \"rate\": 0.5, \"granularity\": \"structured\"}], \"refill\": {}}",
         "refill: the spec has no unstructured entry"},
        {"{\"prune\": [{\"component\": \"mlp\", \"rate\": 0.5}, {\"component\": \"in_proj\", \"rate\": 0.3,"
         " \"granularity\": \"structured\"}], \"refill\": {\"apply\": \"mask\"}}", "refill.apply"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"batch\": 0}", "batch"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5}], \"finetune\": {\"lr\": -1}}", "finetune.lr"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5, \"layers\": [7]}]}", "prune[0].layers[0]"},
        {"{\"rsst\": {}}", "prune: required"},
        {"[1, 2]", "spec"},
        {"{\"prune\": [], \"rounds\": 2, \"rounds\": 3}", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[PL_ERRLEN] = "";
        ck_assert_msg(rsst_spec_parse(bad[i].spec, &m, &s, err, sizeof err) != 0, "accepted: %s", bad[i].spec);
        ck_assert_msg(strstr(err, bad[i].want) != NULL, "spec %s\nmessage \"%s\" lacks \"%s\"", bad[i].spec, err,
                      bad[i].want);
        ck_assert_ptr_null(s.prune.entries);
    }
    model_free(&m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("rsst");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_lambda_schedule);
    tcase_add_test(tc, test_penalty_gradient_fd);
    tcase_add_test(tc, test_select_exact_targets);
    tcase_add_test(tc, test_regularisation_shrinks_targets);
    tcase_add_test(tc, test_imp_rounds_exact_and_masks_hold);
    tcase_add_test(tc, test_structured_rounds_and_shrink_equals_mask);
    tcase_add_test(tc, test_rewind_init_bit_exact);
    tcase_add_test(tc, test_rewind_step);
    tcase_add_test(tc, test_refill_dense_units_and_budget);
    tcase_add_test(tc, test_refill_unit_level);
    tcase_add_test(tc, test_spec_defaults_and_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
