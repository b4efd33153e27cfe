/* test_prune_shrink.c — structured selections applied as a mask (prune_selection_to_mask) and by
 * physical shrinking (prune_shrink).
 *
 * For every unit type alone and for all of them at once, on random tiny models with odd,
 * per-layer-different dims (one layer without an MLP, d_conv 4 and 3): the masked and the shrunk
 * model give the same logits; the shrunk model has exactly the expected dims and parameter count;
 * the mask zeroes exactly the weights an independent predicate (written from prune.h's table)
 * says a unit owns and nothing else; every shrunk weight comes from the right source tensor,
 * at most once, with its mask entry; shrunk models save, load, train and shrink again;
 * orig_index follows dropped blocks; bad selections are refused with a message. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "optim.h"
#include "prune.h"
#include "util.h"

enum { U_ROW = 1, U_NEURON = 2, U_CHANNEL = 4, U_TAP = 8, U_STATE = 16, U_RANK = 32, U_LAYER = 64, U_ALL = 127 };
static const int unit_cases[] = {U_ROW, U_NEURON, U_CHANNEL, U_TAP, U_STATE, U_RANK, U_LAYER, U_ALL};
static const char *unit_names[] = {"row", "neuron", "channel", "tap", "state", "rank", "layer", "all"};
#define N_CASES ((int)(sizeof unit_cases / sizeof unit_cases[0]))
#define BATCH 5

/* 1x8x12 images, P 4 -> L 6 tokens; d 7; 3 classes. Layer 1 has no MLP and d_conv 3. */
static void tiny_cfg(model_config *c)
{
    memset(c, 0, sizeof *c);
    c->d = 7, c->n_layers = 3, c->C = 1, c->H = 8, c->W = 12, c->P = 4, c->L = 6, c->classes = 3;
    c->layers[0] = (layer_dims){.E = 9, .N = 5, .R = 3, .K = 4, .M = 11};
    c->layers[1] = (layer_dims){.E = 7, .N = 3, .R = 2, .K = 3, .M = 0};
    c->layers[2] = (layer_dims){.E = 5, .N = 4, .R = 2, .K = 4, .M = 6};
    for (int i = 0; i < c->n_layers; i++) c->orig_index[i] = i;
    snprintf(c->dataset, sizeof c->dataset, "synthetic");
    for (int i = 0; i < 3; i++) c->norm_mean[i] = 0.5f, c->norm_std[i] = 0.25f;
}

static void new_model(model *m, uint64_t seed)
{
    model_config c;
    tiny_cfg(&c);
    char err[PL_ERRLEN];
    ck_assert_msg(model_create(m, &c, seed, err, sizeof err) == 0, "%s", err);
    /* perturb everything so that no unit is trivially inert (biases 0, norms 1, D 1, ...) */
    pl_rng r;
    pl_rng_seed(&r, seed ^ 0x5eed);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.2f * pl_rng_normal(&r);
    /* delta near softplus(0) instead of the init's 1e-3..1e-1, so the dt path matters visibly */
    for (int i = 0; i < m->cfg.n_layers; i++)
        for (int e = 0; e < m->cfg.layers[i].E; e++) m->w.layers[i].dt_proj_b[e] = 0.5f * pl_rng_normal(&r);
}

static void clone_model(model *dst, const model *src)
{
    char err[PL_ERRLEN];
    ck_assert_msg(model_alloc(dst, &src->cfg, err, sizeof err) == 0, "%s", err);
    memcpy(dst->params, src->params, src->n_params * sizeof(float));
    if (src->mask) {
        model_alloc_mask(dst);
        memcpy(dst->mask, src->mask, src->n_params * sizeof(float));
    }
}

static float *random_images(const model_config *c, int B, uint64_t seed)
{
    size_t n = (size_t)B * c->C * c->H * c->W;
    float *x = xmalloc(n * sizeof *x);
    pl_rng r;
    pl_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = pl_rng_normal(&r);
    return x;
}

/* logits (B, V), malloc'd */
static float *logits_of(const model *m, const float *x, int B)
{
    model_acts *a = model_acts_new(m, B, 0);
    model_forward(m, a, x, NULL, B);
    size_t n = (size_t)B * m->cfg.classes;
    float *out = xmalloc(n * sizeof *out);
    memcpy(out, model_acts_logits(a), n * sizeof *out);
    model_acts_free(a);
    return out;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* keep flags for n units: about 40% removed, at least one kept and (n >= 2) one removed */
static uint8_t *rand_keep(int n, pl_rng *r)
{
    uint8_t *k = xmalloc((size_t)n);
    int kept = 0;
    for (int i = 0; i < n; i++) kept += k[i] = pl_rng_uniform(r) >= 0.4;
    if (kept == 0) k[pl_rng_below(r, (uint32_t)n)] = 1;
    if (kept == n && n >= 2) k[pl_rng_below(r, (uint32_t)n)] = 0;
    return k;
}

static int count_kept(const uint8_t *k, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++) c += !k || k[i];
    return c;
}

/* Random selection of the unit types in `types` over every layer. U_LAYER alone drops layer 2
 * (with MLP), mixed with others it drops layer 1 (without MLP). */
static void random_selection(const model *m, prune_selection *s, int types, uint64_t seed)
{
    pl_rng r;
    pl_rng_seed(&r, seed);
    prune_selection_init(s);
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const layer_dims *l = &m->cfg.layers[i];
        if (types & U_ROW) s->keep_row[i] = rand_keep(m->cfg.d, &r);
        if ((types & U_NEURON) && l->M > 0) s->keep_neuron[i] = rand_keep(l->M, &r);
        if (types & U_CHANNEL) s->keep_channel[i] = rand_keep(l->E, &r);
        if (types & U_TAP) s->keep_taps[i] = 1 + (int)pl_rng_below(&r, (uint32_t)(l->K - 1));
        if (types & U_STATE) s->keep_state[i] = rand_keep(l->N, &r);
        if (types & U_RANK) s->keep_rank[i] = rand_keep(l->R, &r);
    }
    if (types & U_LAYER) s->drop_layer[types == U_LAYER ? 2 : 1] = 1;
}

/* Parameter count written straight from DESIGN.md's tensor table. */
static size_t expected_params(const model_config *c)
{
    size_t d = c->d, n = d * c->C * c->P * c->P + d + (size_t)c->L * d;
    for (int i = 0; i < c->n_layers; i++) {
        const layer_dims *l = &c->layers[i];
        size_t E = l->E, N = l->N, R = l->R, K = l->K, M = l->M;
        n += d + 2 * E * d + E * K + E + (R + 2 * N) * E + E * R + E + E * N + E + d * E;
        if (M > 0) n += d + M * d + M + d * M + d;
    }
    return n + d + (size_t)c->classes * d + c->classes;
}

static int unit_removed(const uint8_t *keep, int i) { return keep && !keep[i]; }

/* Independent statement of which weights a selection zeroes (prune.h's table), by tensor name
 * and flat index. */
static int mask_removes(const model *m, const prune_selection *s, const param_info *p, size_t idx)
{
    int li, off = 0;
    if (sscanf(p->name, "backbone.layers.%d.%n", &li, &off) != 1 || off == 0) return 0;
    const char *t = p->name + off;
    const layer_dims *l = &m->cfg.layers[li];
    int d = m->cfg.d, E = l->E, N = l->N, R = l->R, K = l->K, M = l->M;
    const uint8_t *ch = s->keep_channel[li], *st = s->keep_state[li], *rk = s->keep_rank[li];
    const uint8_t *nr = s->keep_neuron[li], *rw = s->keep_row[li];
    int T = s->keep_taps[li];
    if (s->drop_layer[li])
        return !strcmp(t, "mixer.out_proj.weight") || !strcmp(t, "mlp.fc2.weight") || !strcmp(t, "mlp.fc2.bias");
    int row, col;
    if (!strcmp(t, "mixer.in_proj.weight")) return unit_removed(ch, (int)(idx / d) % E);
    if (!strcmp(t, "mixer.conv1d.weight")) {
        row = (int)(idx / K), col = (int)(idx % K);
        return unit_removed(ch, row) || (T > 0 && col < K - T);
    }
    if (!strcmp(t, "mixer.conv1d.bias") || !strcmp(t, "mixer.dt_proj.bias") || !strcmp(t, "mixer.D"))
        return unit_removed(ch, (int)idx);
    if (!strcmp(t, "mixer.x_proj.weight")) {
        row = (int)(idx / E), col = (int)(idx % E);
        if (unit_removed(ch, col)) return 1;
        return row < R ? unit_removed(rk, row) : unit_removed(st, (row - R) % N);
    }
    if (!strcmp(t, "mixer.dt_proj.weight")) return unit_removed(ch, (int)(idx / R)) || unit_removed(rk, (int)(idx % R));
    if (!strcmp(t, "mixer.A_log")) return unit_removed(ch, (int)(idx / N)) || unit_removed(st, (int)(idx % N));
    if (!strcmp(t, "mixer.out_proj.weight")) return unit_removed(rw, (int)(idx / E)) || unit_removed(ch, (int)(idx % E));
    if (!strcmp(t, "mlp.fc1.weight")) return unit_removed(nr, (int)(idx / d));
    if (!strcmp(t, "mlp.fc1.bias")) return unit_removed(nr, (int)idx);
    if (!strcmp(t, "mlp.fc2.weight")) return unit_removed(nr, (int)(idx % M));
    if (!strcmp(t, "mlp.fc2.bias")) return nr && count_kept(nr, M) == 0;
    return 0;
}

/* Expected shrunk dims, from the selection. */
static void expected_config(const model *src, const prune_selection *s, model_config *c)
{
    *c = src->cfg;
    int lo = 0;
    for (int i = 0; i < src->cfg.n_layers; i++) {
        if (s->drop_layer[i]) continue;
        const layer_dims *l = &src->cfg.layers[i];
        c->layers[lo] = (layer_dims){
            .E = count_kept(s->keep_channel[i], l->E), .N = count_kept(s->keep_state[i], l->N),
            .R = count_kept(s->keep_rank[i], l->R), .K = s->keep_taps[i] ? s->keep_taps[i] : l->K,
            .M = l->M > 0 ? count_kept(s->keep_neuron[i], l->M) : 0};
        c->orig_index[lo] = src->cfg.orig_index[i];
        lo++;
    }
    c->n_layers = lo;
}

static void assert_dims(const model *got, const model_config *want)
{
    ck_assert_int_eq(got->cfg.n_layers, want->n_layers);
    for (int i = 0; i < want->n_layers; i++) {
        const layer_dims *g = &got->cfg.layers[i], *w = &want->layers[i];
        ck_assert_msg(g->E == w->E && g->N == w->N && g->R == w->R && g->K == w->K && g->M == w->M,
                      "layer %d: got E%d N%d R%d K%d M%d, want E%d N%d R%d K%d M%d", i, g->E, g->N, g->R, g->K, g->M,
                      w->E, w->N, w->R, w->K, w->M);
        ck_assert_int_eq(got->cfg.orig_index[i], want->orig_index[i]);
    }
    ck_assert_uint_eq(got->n_params, expected_params(want));
}

/* The tensor holding flat index i. */
static const param_info *tensor_of(const model *m, size_t i)
{
    for (int t = 0; t < m->n_tensors; t++)
        if (i >= m->info[t].offset && i < m->info[t].offset + m->info[t].numel) return &m->info[t];
    return NULL;
}

/* Tensor name with the layer index replaced by `layer` (or unchanged for non-layer tensors). */
static void renamed(const param_info *p, int layer, char *out, size_t n)
{
    int li, off = 0;
    if (sscanf(p->name, "backbone.layers.%d.%n", &li, &off) == 1 && off > 0)
        snprintf(out, n, "backbone.layers.%d.%s", layer, p->name + off);
    else
        snprintf(out, n, "%s", p->name);
}

/* ------------------------------------------------------------------ masked == shrunk, per unit type */

START_TEST(test_masked_equals_shrunk)
{
    int types = unit_cases[_i];
    const char *nm = unit_names[_i];
    char err[PL_ERRLEN];
    model src, masked, small;
    new_model(&src, 100 + (uint64_t)_i);
    prune_selection s;
    random_selection(&src, &s, types, 200 + (uint64_t)_i);

    clone_model(&masked, &src);
    prune_selection_to_mask(&masked, &s);
    ck_assert_msg(prune_shrink(&src, &s, &small, err, sizeof err) == 0, "%s: %s", nm, err);

    model_config want;
    expected_config(&src, &s, &want);
    assert_dims(&small, &want);
    /* the selection really removes something in every case */
    ck_assert_msg(small.n_params < src.n_params || (types & U_ROW), "%s: nothing removed", nm);

    float *x = random_images(&src.cfg, BATCH, 300 + (uint64_t)_i);
    float *lo = logits_of(&src, x, BATCH), *lm = logits_of(&masked, x, BATCH), *ls = logits_of(&small, x, BATCH);
    size_t nl = (size_t)BATCH * src.cfg.classes;
    double dm = max_diff(lm, ls, nl), dorig = max_diff(lo, lm, nl);
    ck_assert_msg(dm <= 1e-5, "%s: masked vs shrunk logits differ by %g", nm, dm);
    ck_assert_msg(dorig > 1e-4, "%s: the selection did not change the logits (%g)", nm, dorig);

    /* removed out_proj rows stay as zero rows, held by the mask */
    if (types & U_ROW) {
        ck_assert_ptr_nonnull(small.mask);
        int lo_i = 0;
        for (int i = 0; i < src.cfg.n_layers; i++) {
            if (s.drop_layer[i]) continue;
            int E2 = small.cfg.layers[lo_i].E;
            const float *w = small.w.layers[lo_i].out_proj_w, *mk = small.mask + (w - small.params);
            for (int j = 0; j < src.cfg.d; j++)
                for (int e = 0; e < E2; e++) {
                    size_t k = (size_t)j * E2 + e;
                    if (!s.keep_row[i][j]) ck_assert(w[k] == 0.0f && mk[k] == 0.0f);
                    else ck_assert(mk[k] == 1.0f);
                }
            lo_i++;
        }
    } else {
        ck_assert_ptr_null(small.mask); /* nothing to hold: no mask invented */
    }
    free(x), free(lo), free(lm), free(ls);
    prune_selection_free(&s);
    model_free(&src), model_free(&masked), model_free(&small);
}
END_TEST

/* ------------------------------------------------------------------ to_mask zeroes exactly the owned weights */

START_TEST(test_mask_exact)
{
    int types = unit_cases[_i];
    model m;
    new_model(&m, 400 + (uint64_t)_i);
    prune_selection s;
    random_selection(&m, &s, types, 500 + (uint64_t)_i);
    float *before = xmalloc(m.n_params * sizeof(float));
    memcpy(before, m.params, m.n_params * sizeof(float));
    prune_selection_to_mask(&m, &s);
    ck_assert_ptr_nonnull(m.mask);
    size_t removed = 0;
    for (int t = 0; t < m.n_tensors; t++) {
        const param_info *p = &m.info[t];
        for (size_t k = 0; k < p->numel; k++) {
            size_t i = p->offset + k;
            int rm = mask_removes(&m, &s, p, k);
            removed += rm;
            ck_assert_msg(m.mask[i] == (rm ? 0.0f : 1.0f), "%s: %s[%zu] mask %g, expected %d", unit_names[_i],
                          p->name, k, m.mask[i], !rm);
            ck_assert_msg(m.params[i] == (rm ? 0.0f : before[i]), "%s: %s[%zu] changed", unit_names[_i], p->name, k);
        }
    }
    ck_assert_msg(removed > 0, "%s: nothing masked", unit_names[_i]);
    /* applying the same selection again changes nothing (idempotent) */
    memcpy(before, m.params, m.n_params * sizeof(float));
    prune_selection_to_mask(&m, &s);
    ck_assert(memcmp(before, m.params, m.n_params * sizeof(float)) == 0);
    free(before);
    prune_selection_free(&s);
    model_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ gather map and kept masks */

START_TEST(test_kept_mask_survives)
{
    char err[PL_ERRLEN];
    model src, ids, small, small_ids, masked;
    new_model(&src, 600);
    /* an unstructured mask: about 30% of all weights */
    model_alloc_mask(&src);
    pl_rng r;
    pl_rng_seed(&r, 601);
    for (size_t i = 0; i < src.n_params; i++) src.mask[i] = pl_rng_uniform(&r) < 0.3 ? 0.0f : 1.0f;
    model_apply_mask(&src);
    prune_selection s;
    /* with and without removed out_proj rows: the kept mask travels either way */
    int types = _i == 0 ? U_ALL : U_ALL & ~U_ROW & ~U_LAYER;
    random_selection(&src, &s, types, 602 + (uint64_t)_i);

    /* a twin whose parameters are their own (index + 1): the shrunk twin tells where each weight came from */
    ck_assert(model_alloc(&ids, &src.cfg, err, sizeof err) == 0);
    ck_assert(src.n_params < (1u << 24));
    for (size_t i = 0; i < ids.n_params; i++) ids.params[i] = (float)(i + 1);
    ck_assert_msg(prune_shrink(&ids, &s, &small_ids, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(prune_shrink(&src, &s, &small, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(small.n_params, small_ids.n_params);
    ck_assert_ptr_nonnull(small.mask);

    uint8_t *used = xcalloc(src.n_params, 1);
    size_t zero_rows = 0;
    for (size_t j = 0; j < small.n_params; j++) {
        float id = small_ids.params[j];
        if (id == 0.0f) { /* a removed out_proj row: zero and masked */
            const param_info *pt = tensor_of(&small, j);
            ck_assert_msg(strstr(pt->name, "out_proj") != NULL, "%s holds a weight from nowhere", pt->name);
            ck_assert(small.params[j] == 0.0f && small.mask[j] == 0.0f);
            zero_rows++;
            continue;
        }
        size_t si = (size_t)id - 1;
        ck_assert_msg(!used[si], "source weight %zu copied twice", si);
        used[si] = 1;
        ck_assert_msg(small.mask[j] == src.mask[si], "mask of source weight %zu lost", si);
        ck_assert(small.params[j] == src.params[si]);
        /* same tensor, in the layer orig_index names */
        const param_info *pd = tensor_of(&small, j), *ps = tensor_of(&src, si);
        char want[128];
        renamed(ps, pd->layer >= 0 ? pd->layer : -1, want, sizeof want);
        if (pd->layer >= 0) ck_assert_int_eq(small.cfg.orig_index[pd->layer], ps->layer);
        ck_assert_msg(strcmp(want, pd->name) == 0, "%s filled from %s", pd->name, ps->name);
        /* and a kept weight never belongs to a removed unit */
        ck_assert_msg(!mask_removes(&src, &s, ps, si - ps->offset), "%s[%zu] is removed but was kept", ps->name,
                      si - ps->offset);
    }
    ck_assert(_i == 0 ? zero_rows > 0 : zero_rows == 0);
    /* the masked model (unstructured mask + selection) computes what the shrunk one does */
    clone_model(&masked, &src);
    prune_selection_to_mask(&masked, &s);
    float *x = random_images(&src.cfg, BATCH, 603);
    float *lm = logits_of(&masked, x, BATCH), *ls = logits_of(&small, x, BATCH);
    ck_assert(max_diff(lm, ls, (size_t)BATCH * src.cfg.classes) <= 1e-5);
    free(x), free(lm), free(ls), free(used);
    prune_selection_free(&s);
    model_free(&src), model_free(&ids), model_free(&small), model_free(&small_ids), model_free(&masked);
}
END_TEST

/* ------------------------------------------------------------------ save, load, train, shrink again */

START_TEST(test_shrunk_lives_on)
{
    char err[PL_ERRLEN];
    model src, small, loaded;
    new_model(&src, 700);
    prune_selection s;
    random_selection(&src, &s, U_ALL, 701); /* drops layer 1 */
    ck_assert_msg(prune_shrink(&src, &s, &small, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(small.cfg.n_layers, 2);
    ck_assert_int_eq(small.cfg.orig_index[0], 0);
    ck_assert_int_eq(small.cfg.orig_index[1], 2);

    /* save / load: same dims, orig_index, weights, logits */
    char path[] = "/tmp/test_prune_shrink_XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    ck_assert_msg(model_save(&small, path, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(model_load(&loaded, path, NULL, err, sizeof err) == 0, "%s", err);
    unlink(path);
    assert_dims(&loaded, &small.cfg);
    ck_assert(memcmp(loaded.params, small.params, small.n_params * sizeof(float)) == 0);
    float *x = random_images(&src.cfg, BATCH, 702);
    float *l1 = logits_of(&small, x, BATCH), *l2 = logits_of(&loaded, x, BATCH);
    ck_assert(max_diff(l1, l2, (size_t)BATCH * src.cfg.classes) == 0.0);

    /* train a few steps on one batch: the loss falls and the removed out_proj rows stay zero */
    int labels[BATCH] = {0, 1, 2, 1, 0};
    optim_config oc;
    optim_config_default(&oc);
    oc.lr = 5e-3f, oc.warmup_steps = 1, oc.total_steps = 10;
    optim o;
    ck_assert_msg(optim_init(&o, &oc, small.n_params, err, sizeof err) == 0, "%s", err);
    model_alloc_grads(&small);
    model_acts *a = model_acts_new(&small, BATCH, 1);
    float first = 0, last = 0;
    for (int step = 0; step < 10; step++) {
        model_zero_grads(&small);
        float loss = model_forward(&small, a, x, labels, BATCH);
        ck_assert(isfinite(loss));
        if (step == 0) first = loss;
        last = loss;
        model_backward(&small, a, labels, BATCH);
        optim_clip(small.grads, small.n_params, oc.clip);
        optim_step(&o, &small);
    }
    ck_assert_msg(last < first, "loss %g -> %g", first, last);
    ck_assert(memcmp(loaded.params, small.params, small.n_params * sizeof(float)) != 0);
    for (size_t i = 0; i < small.n_params; i++)
        if (small.mask[i] == 0.0f) ck_assert(small.params[i] == 0.0f);
    model_acts_free(a);
    optim_free(&o);

    /* shrink the trained model again: drop its first block, thin the other */
    prune_selection s2;
    prune_selection_init(&s2);
    s2.drop_layer[0] = 1;
    s2.keep_channel[1] = xcalloc((size_t)small.cfg.layers[1].E, 1);
    s2.keep_channel[1][0] = s2.keep_channel[1][2] = 1;
    s2.keep_taps[1] = 1;
    model again, masked;
    ck_assert_msg(prune_shrink(&small, &s2, &again, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(again.cfg.n_layers, 1);
    ck_assert_int_eq(again.cfg.orig_index[0], 2);
    ck_assert_int_eq(again.cfg.layers[0].E, 2);
    ck_assert_int_eq(again.cfg.layers[0].K, 1);
    ck_assert_uint_eq(again.n_params, expected_params(&again.cfg));
    clone_model(&masked, &small);
    prune_selection_to_mask(&masked, &s2);
    float *l3 = logits_of(&masked, x, BATCH), *l4 = logits_of(&again, x, BATCH);
    ck_assert(max_diff(l3, l4, (size_t)BATCH * src.cfg.classes) <= 1e-5);

    free(x), free(l1), free(l2), free(l3), free(l4);
    prune_selection_free(&s), prune_selection_free(&s2);
    model_free(&src), model_free(&small), model_free(&loaded), model_free(&again), model_free(&masked);
}
END_TEST

/* ------------------------------------------------------------------ orig_index, MLP removal */

START_TEST(test_orig_index)
{
    char err[PL_ERRLEN];
    model src, a, b;
    new_model(&src, 800);
    prune_selection s;
    prune_selection_init(&s);
    s.drop_layer[0] = s.drop_layer[2] = 1;
    ck_assert_msg(prune_shrink(&src, &s, &a, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(a.cfg.n_layers, 1);
    ck_assert_int_eq(a.cfg.orig_index[0], 1);
    ck_assert_int_eq(a.cfg.layers[0].E, 7);
    ck_assert_int_eq(a.cfg.layers[0].K, 3);
    ck_assert_int_eq(a.cfg.layers[0].M, 0);
    /* the kept block's weights are the source's layer 1, unchanged */
    ck_assert(memcmp(a.w.layers[0].in_proj_w, src.w.layers[1].in_proj_w, 2 * 7 * 7 * sizeof(float)) == 0);
    ck_assert(memcmp(a.w.layers[0].out_proj_w, src.w.layers[1].out_proj_w, 7 * 7 * sizeof(float)) == 0);
    /* the identity selection copies the model exactly */
    prune_selection none;
    prune_selection_init(&none);
    ck_assert(prune_shrink(&src, &none, &b, err, sizeof err) == 0);
    ck_assert_uint_eq(b.n_params, src.n_params);
    ck_assert(memcmp(b.params, src.params, src.n_params * sizeof(float)) == 0);
    ck_assert_ptr_null(b.mask);
    prune_selection_free(&s);
    model_free(&src), model_free(&a), model_free(&b);
}
END_TEST

START_TEST(test_all_neurons_removes_mlp)
{
    char err[PL_ERRLEN];
    model src, masked, small;
    new_model(&src, 900);
    prune_selection s;
    prune_selection_init(&s);
    s.keep_neuron[0] = xcalloc(11, 1); /* every neuron of layer 0 */
    s.keep_taps[0] = 4;                /* = K: keeps every tap */
    ck_assert_msg(prune_shrink(&src, &s, &small, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(small.cfg.layers[0].M, 0);
    ck_assert_int_eq(small.cfg.layers[0].K, 4);
    ck_assert_ptr_null(small.w.layers[0].fc1_w);
    ck_assert_ptr_null(model_find(&small, "backbone.layers.0.norm2.weight"));
    ck_assert_uint_eq(small.n_params, src.n_params - (7 + 11 * 7 + 11 + 7 * 11 + 7));
    clone_model(&masked, &src);
    prune_selection_to_mask(&masked, &s);
    float *x = random_images(&src.cfg, BATCH, 901);
    float *lm = logits_of(&masked, x, BATCH), *ls = logits_of(&small, x, BATCH);
    ck_assert(max_diff(lm, ls, (size_t)BATCH * src.cfg.classes) <= 1e-5);
    free(x), free(lm), free(ls);
    prune_selection_free(&s);
    model_free(&src), model_free(&masked), model_free(&small);
}
END_TEST

/* ------------------------------------------------------------------ refusals */

static void expect_refused(const model *src, const prune_selection *s, const char *want1, const char *want2)
{
    char err[PL_ERRLEN] = "";
    model dst;
    ck_assert_int_eq(prune_shrink(src, s, &dst, err, sizeof err), -1);
    ck_assert_msg(strstr(err, want1) && strstr(err, want2), "message '%s' lacks '%s' / '%s'", err, want1, want2);
    ck_assert_ptr_null(dst.params);
    model_free(&dst); /* safe after a refusal */
}

START_TEST(test_refusals)
{
    model src;
    new_model(&src, 1000);
    prune_selection s;

    prune_selection_init(&s);
    s.keep_channel[1] = xcalloc(7, 1);
    expect_refused(&src, &s, "layer 1", "d_inner channel");
    s.drop_layer[1] = 1; /* ... unless the block goes anyway */
    char err[PL_ERRLEN];
    model ok;
    ck_assert_msg(prune_shrink(&src, &s, &ok, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ok.cfg.n_layers, 2);
    model_free(&ok);
    prune_selection_free(&s);

    prune_selection_init(&s);
    s.keep_state[2] = xcalloc(4, 1);
    expect_refused(&src, &s, "layer 2", "state");
    prune_selection_free(&s);

    prune_selection_init(&s);
    s.keep_rank[0] = xcalloc(3, 1);
    expect_refused(&src, &s, "layer 0", "dt rank");
    prune_selection_free(&s);

    prune_selection_init(&s);
    s.keep_taps[1] = 4; /* layer 1 has d_conv 3 */
    expect_refused(&src, &s, "layer 1", "keep_taps 4");
    s.keep_taps[1] = -1;
    expect_refused(&src, &s, "layer 1", "keep_taps -1");
    prune_selection_free(&s);

    prune_selection_init(&s);
    s.drop_layer[0] = s.drop_layer[1] = s.drop_layer[2] = 1;
    expect_refused(&src, &s, "every block", "3 of 3");
    prune_selection_free(&s);
    prune_selection_free(NULL);
    model_free(&src);
}
END_TEST

static Suite *suite(void)
{
    Suite *su = suite_create("prune_shrink");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_masked_equals_shrunk, 0, N_CASES);
    tcase_add_loop_test(tc, test_mask_exact, 0, N_CASES);
    tcase_add_loop_test(tc, test_kept_mask_survives, 0, 2);
    tcase_add_test(tc, test_shrunk_lives_on);
    tcase_add_test(tc, test_orig_index);
    tcase_add_test(tc, test_all_neurons_removes_mlp);
    tcase_add_test(tc, test_refusals);
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
