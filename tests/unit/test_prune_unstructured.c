/* test_prune_unstructured.c — unstructured pruning, mask files, sparsity reports and whole specs.
 *
 * Checks: layer-wise pruning zeroes exactly round(rate * count) weights per layer and they are
 * the smallest in magnitude; global pruning zeroes exactly round(rate * total) and really ranks
 * across layers (a layer with larger weights keeps more); a second prune at a higher rate removes
 * only the difference (same result as one prune), a lower rate changes nothing; ties go to the
 * lower index; masks survive a save / load round trip onto a fresh model, mismatched masks are
 * refused and leave the model untouched; sparsity JSON equals naive zero counts; a spec's
 * structured entries remove exact unit counts, and the masked and shrunk results of a hybrid
 * spec (unstructured + structured) give the same logits; masked weights stay zero through
 * training steps.
 * Model: 3 layers with odd, different dims; layer 1 has no MLP. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "data.h"
#include "prune.h"
#include "safetensors.h"
#include "train.h"
#include "util.h"

/* 1x8x12 images, P 4 -> L 6 tokens, d 6, 3 classes. */
static void small_config(model_config *c, int E0)
{
    memset(c, 0, sizeof *c);
    c->d = 6, c->n_layers = 3, c->C = 1, c->H = 8, c->W = 12, c->P = 4, c->L = 6, c->classes = 3;
    c->layers[0] = (layer_dims){.E = E0, .N = 3, .R = 2, .K = 3, .M = 5};
    c->layers[1] = (layer_dims){.E = 5, .N = 2, .R = 1, .K = 4, .M = 0};
    c->layers[2] = (layer_dims){.E = 9, .N = 4, .R = 2, .K = 2, .M = 3};
    for (int i = 0; i < 3; i++) c->orig_index[i] = i;
    snprintf(c->dataset, sizeof c->dataset, "synthetic");
    for (int i = 0; i < 3; i++) c->norm_mean[i] = 0.5f, c->norm_std[i] = 0.25f;
}

/* A model whose parameters are all distinct and non-zero (perturbed init). */
static void new_model_e(model *m, uint64_t seed, int E0)
{
    model_config c;
    small_config(&c, E0);
    char err[PL_ERRLEN];
    ck_assert_msg(model_create(m, &c, seed, err, sizeof err) == 0, "%s", err);
    pl_rng r;
    pl_rng_seed(&r, seed + 7);
    for (size_t i = 0; i < m->n_params; i++) {
        m->params[i] += 0.1f * pl_rng_normal(&r);
        if (m->params[i] == 0.0f) m->params[i] = 1e-3f;
    }
}

static void new_model(model *m, uint64_t seed) { new_model_e(m, seed, 7); }

static size_t zeros_in(const model *m, prune_component c, int layer, size_t *count)
{
    prune_slice s[PRUNE_MAX_SLICES];
    int ns = prune_component_slices(m, c, layer, s);
    size_t z = 0, n = 0;
    for (int k = 0; k < ns; k++)
        for (size_t i = 0; i < s[k].count; i++) z += m->params[m->info[s[k].tensor].offset + s[k].start + i] == 0.0f;
    for (int k = 0; k < ns; k++) n += s[k].count;
    if (count) *count = n;
    return z;
}

static long expect_round(double rate, size_t n) { return (long)floor(rate * (double)n + 0.5); }

static prune_entry entry(prune_component c, float rate, prune_scope scope)
{
    prune_entry e;
    memset(&e, 0, sizeof e);
    e.component = c;
    e.granularity = PG_UNSTRUCTURED;
    e.rate = rate;
    e.criterion = PCR_MAGNITUDE;
    e.scope = scope;
    e.apply = PA_MASK;
    return e;
}

static long prune1(model *m, prune_component c, float rate, prune_scope scope)
{
    char err[PL_ERRLEN];
    prune_entry e = entry(c, rate, scope);
    long r = prune_unstructured(m, &e, NULL, 1, err, sizeof err);
    ck_assert_msg(r >= 0, "%s", err);
    return r;
}

/* ---------------------------------------------------------------- unstructured */

START_TEST(test_layerwise_exact_and_smallest)
{
    static const prune_component comps[] = {PC_OUT_PROJ, PC_MLP, PC_GATE, PC_IN_PROJ, PC_CONV1D,
                                            PC_X_PROJ_BC, PC_DT, PC_A_LOG, PC_D, PC_LAYER};
    static const float rates[] = {0.0f, 0.13f, 0.5f, 0.37f, 0.9f};
    for (size_t ci = 0; ci < sizeof comps / sizeof comps[0]; ci++)
        for (size_t ri = 0; ri < sizeof rates / sizeof rates[0]; ri++) {
            model m;
            new_model(&m, 5);
            float *orig = xmalloc(m.n_params * sizeof *orig);
            memcpy(orig, m.params, m.n_params * sizeof *orig);
            long removed = prune1(&m, comps[ci], rates[ri], PS_LAYER);
            long total = 0;
            for (int li = 0; li < 3; li++) {
                size_t n, z = zeros_in(&m, comps[ci], li, &n);
                ck_assert_msg((long)z == expect_round(rates[ri], n), "%s rate %g layer %d: %zu zeros of %zu",
                              prune_component_name(comps[ci]), rates[ri], li, z, n);
                total += (long)z;
                /* every removed weight was no larger in magnitude than every survivor */
                prune_slice s[PRUNE_MAX_SLICES];
                int ns = prune_component_slices(&m, comps[ci], li, s);
                float max_removed = 0.0f, min_kept = INFINITY;
                for (int k = 0; k < ns; k++)
                    for (size_t i = 0; i < s[k].count; i++) {
                        size_t idx = m.info[s[k].tensor].offset + s[k].start + i;
                        ck_assert(m.mask[idx] == (m.params[idx] != 0.0f ? 1.0f : 0.0f));
                        if (m.params[idx] == 0.0f) max_removed = fmaxf(max_removed, fabsf(orig[idx]));
                        else min_kept = fminf(min_kept, fabsf(orig[idx]));
                    }
                ck_assert(max_removed <= min_kept);
            }
            ck_assert_int_eq(removed, total);
            /* nothing outside the component changed */
            prune_slice all[3][PRUNE_MAX_SLICES];
            int na[3];
            for (int li = 0; li < 3; li++) na[li] = prune_component_slices(&m, comps[ci], li, all[li]);
            for (size_t i = 0; i < m.n_params; i++) {
                int inside = 0;
                for (int li = 0; li < 3 && !inside; li++)
                    for (int k = 0; k < na[li]; k++) {
                        size_t b = m.info[all[li][k].tensor].offset + all[li][k].start;
                        if (i >= b && i < b + all[li][k].count) inside = 1;
                    }
                if (!inside) ck_assert(m.params[i] == orig[i] && m.mask[i] == 1.0f);
            }
            free(orig);
            model_free(&m);
        }
}
END_TEST

START_TEST(test_global_exact_and_really_global)
{
    model m;
    new_model(&m, 6);
    /* layer 2's out_proj is larger by 10 in magnitude: a global threshold must take most from layers 0 and 1 */
    prune_slice s[PRUNE_MAX_SLICES];
    int ns = prune_component_slices(&m, PC_OUT_PROJ, 2, s);
    ck_assert_int_eq(ns, 1);
    for (size_t i = 0; i < s[0].count; i++) {
        float *w = &m.params[m.info[s[0].tensor].offset + i];
        *w = copysignf(fabsf(*w) + 10.0f, *w);
    }
    model lw;
    new_model(&lw, 6);
    memcpy(lw.params, m.params, m.n_params * sizeof(float));

    long removed = prune1(&m, PC_OUT_PROJ, 0.45f, PS_GLOBAL); /* 0.45 * 126 = 56.7 -> 57 */
    size_t n[3], z[3], total = 0, zt = 0;
    for (int li = 0; li < 3; li++) {
        z[li] = zeros_in(&m, PC_OUT_PROJ, li, &n[li]);
        total += n[li];
        zt += z[li];
    }
    ck_assert_int_eq((long)zt, expect_round(0.45, total));
    ck_assert_int_eq(removed, (long)zt);
    ck_assert_uint_eq(z[2], 0); /* the large layer keeps everything */
    ck_assert_uint_gt(z[0], expect_round(0.45, n[0]));

    /* layer-wise on the same weights prunes the large layer like the others */
    prune1(&lw, PC_OUT_PROJ, 0.4f, PS_LAYER);
    ck_assert_int_eq((long)zeros_in(&lw, PC_OUT_PROJ, 2, NULL), expect_round(0.4, n[2]));

    /* global over an explicit layer subset counts only those layers */
    model g2;
    new_model(&g2, 6);
    char err[PL_ERRLEN];
    prune_entry e = entry(PC_MLP, 0.5f, PS_GLOBAL);
    e.n_layers = 2, e.layers[0] = 2, e.layers[1] = 0;
    ck_assert(prune_unstructured(&g2, &e, NULL, 1, err, sizeof err) >= 0);
    size_t n0, n2, z0 = zeros_in(&g2, PC_MLP, 0, &n0), z2 = zeros_in(&g2, PC_MLP, 2, &n2);
    ck_assert_int_eq((long)(z0 + z2), expect_round(0.5, n0 + n2));
    model_free(&g2);
    model_free(&lw);
    model_free(&m);
}
END_TEST

START_TEST(test_second_prune_removes_difference)
{
    model a, b;
    new_model(&a, 8);
    new_model(&b, 8);
    long r1 = prune1(&a, PC_GATE, 0.3f, PS_LAYER);
    float *mask1 = xmalloc(a.n_params * sizeof *mask1);
    memcpy(mask1, a.mask, a.n_params * sizeof *mask1);
    long r2 = prune1(&a, PC_GATE, 0.6f, PS_LAYER);
    long rb = prune1(&b, PC_GATE, 0.6f, PS_LAYER);
    ck_assert_int_eq(r1 + r2, rb);
    for (size_t i = 0; i < a.n_params; i++) {
        if (mask1[i] == 0.0f) ck_assert(a.mask[i] == 0.0f); /* first-round removals stay */
        ck_assert(a.mask[i] == b.mask[i]);                  /* same as one prune at 0.6 */
    }
    /* a lower rate restores and removes nothing */
    memcpy(mask1, a.mask, a.n_params * sizeof *mask1);
    ck_assert_int_eq(prune1(&a, PC_GATE, 0.2f, PS_LAYER), 0);
    ck_assert_int_eq(memcmp(mask1, a.mask, a.n_params * sizeof *mask1), 0);
    /* weights already exactly zero count as removed (and get masked) */
    model c;
    new_model(&c, 9);
    prune_slice s[PRUNE_MAX_SLICES];
    prune_component_slices(&c, PC_D, 0, s);
    float *D = c.params + c.info[s[0].tensor].offset;
    D[1] = 0.0f, D[4] = 0.0f; /* 2 of E = 7 */
    prune_entry e = entry(PC_D, 0.43f, PS_LAYER);
    e.n_layers = 1, e.layers[0] = 0;
    char err[PL_ERRLEN];
    ck_assert_int_eq(prune_unstructured(&c, &e, NULL, 1, err, sizeof err), 1); /* round(3.01) = 3: one more */
    ck_assert_int_eq((long)zeros_in(&c, PC_D, 0, NULL), 3);
    ck_assert(c.mask[c.info[s[0].tensor].offset + 1] == 0.0f);
    free(mask1);
    model_free(&a);
    model_free(&b);
    model_free(&c);
}
END_TEST

START_TEST(test_ties_by_index)
{
    model m;
    new_model(&m, 10);
    prune_slice s[PRUNE_MAX_SLICES];
    prune_component_slices(&m, PC_OUT_PROJ, 1, s);
    float *w = m.params + m.info[s[0].tensor].offset;
    for (size_t i = 0; i < s[0].count; i++) w[i] = (i % 2) ? -0.5f : 0.5f; /* all |w| equal */
    prune_entry e = entry(PC_OUT_PROJ, 0.25f, PS_LAYER);
    e.n_layers = 1, e.layers[0] = 1;
    char err[PL_ERRLEN];
    ck_assert(prune_unstructured(&m, &e, NULL, 1, err, sizeof err) >= 0);
    long k = expect_round(0.25, s[0].count);
    for (size_t i = 0; i < s[0].count; i++) ck_assert_msg((w[i] == 0.0f) == ((long)i < k), "weight %zu", i);
    model_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- mask files */

static char *tmp_path(const char *tag)
{
    char *p = xmalloc(256);
    snprintf(p, 256, "/tmp/test_prune_unstructured.%d.%s.safetensors", (int)getpid(), tag);
    return p;
}

START_TEST(test_mask_round_trip)
{
    model m;
    new_model(&m, 12);
    prune1(&m, PC_OUT_PROJ, 0.5f, PS_LAYER);
    prune1(&m, PC_X_PROJ_BC, 0.3f, PS_GLOBAL);
    char err[PL_ERRLEN];
    char *path = tmp_path("rt");
    ck_assert_msg(prune_mask_save(&m, path, err, sizeof err) == 0, "%s", err);

    /* the file: one U8 tensor per parameter with a zero, same name and shape */
    st_file *f = st_load(path, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    int masked = 0;
    for (int t = 0; t < m.n_tensors; t++) {
        const param_info *p = &m.info[t];
        int any = 0;
        for (size_t i = 0; i < p->numel; i++) any |= m.mask[p->offset + i] == 0.0f;
        const st_tensor *st = st_find(f, p->name);
        ck_assert_msg((st != NULL) == any, "%s", p->name);
        if (!st) continue;
        masked++;
        ck_assert_int_eq(st->dtype, ST_U8);
        ck_assert_int_eq(st->ndim, p->ndim);
        for (int k = 0; k < p->ndim; k++) ck_assert_int_eq(st->shape[k], p->shape[k]);
        const uint8_t *v = st->data;
        for (size_t i = 0; i < p->numel; i++) ck_assert_int_eq(v[i], m.mask[p->offset + i] != 0.0f);
    }
    ck_assert_int_eq(f->n, masked);
    ck_assert_int_eq(masked, 3 + 3); /* out_proj and x_proj of three layers */
    st_free(f);

    /* load onto a fresh, unpruned model of the same shape */
    model n;
    new_model(&n, 13);
    ck_assert_msg(prune_mask_load(&n, path, err, sizeof err) == 0, "%s", err);
    ck_assert_ptr_nonnull(n.mask);
    for (size_t i = 0; i < m.n_params; i++) {
        ck_assert(n.mask[i] == m.mask[i]);
        ck_assert((n.params[i] == 0.0f) == (m.mask[i] == 0.0f));
    }
    /* loading ANDs into an existing mask */
    prune1(&n, PC_D, 0.5f, PS_LAYER);
    ck_assert_msg(prune_mask_load(&n, path, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq((long)zeros_in(&n, PC_D, 2, NULL), expect_round(0.5, 9));

    /* an unmasked model writes a file without tensors, and loading it changes nothing */
    model u;
    new_model(&u, 14);
    ck_assert_msg(prune_mask_save(&u, path, err, sizeof err) == 0, "%s", err);
    f = st_load(path, err, sizeof err);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(f->n, 0);
    st_free(f);
    ck_assert_int_eq(prune_mask_load(&u, path, err, sizeof err), 0);
    ck_assert_ptr_null(u.mask);
    unlink(path);
    free(path);
    model_free(&u);
    model_free(&n);
    model_free(&m);
}
END_TEST

START_TEST(test_mask_refusals)
{
    model m;
    new_model(&m, 15);
    prune1(&m, PC_IN_PROJ, 0.5f, PS_LAYER);
    char err[PL_ERRLEN];
    char *path = tmp_path("bad");
    ck_assert_msg(prune_mask_save(&m, path, err, sizeof err) == 0, "%s", err);

    /* a model whose layer 0 has another d_inner: in_proj shapes differ */
    model o;
    new_model_e(&o, 15, 8);
    float *before = xmalloc(o.n_params * sizeof *before);
    memcpy(before, o.params, o.n_params * sizeof *before);
    ck_assert_int_eq(prune_mask_load(&o, path, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "backbone.layers.0.mixer.in_proj.weight has shape [14,6] but the model's is [16,6]"),
                  "%s", err);
    ck_assert_ptr_null(o.mask);
    ck_assert_int_eq(memcmp(before, o.params, o.n_params * sizeof *before), 0);

    /* unknown tensor name, wrong dtype, values other than 0/1 */
    uint8_t bytes[6] = {1, 0, 1, 1, 1, 1};
    float fl[6] = {1, 0, 1, 1, 1, 1};
    uint8_t two[6] = {1, 2, 1, 1, 1, 1};
    const struct {
        const char *name;
        st_dtype dt;
        const void *data;
        const char *msg;
    } t[] = {
        {"backbone.layers.9.norm.weight", ST_U8, bytes, "is not a parameter of the model"},
        {"backbone.layers.0.norm.weight", ST_F32, fl, "dtype F32"},
        {"backbone.layers.0.norm.weight", ST_U8, two, "holds 2"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        st_writer *w = st_writer_new();
        int64_t shape[1] = {6};
        st_writer_add(w, t[i].name, t[i].dt, 1, shape, t[i].data);
        ck_assert_msg(st_writer_save(w, path, err, sizeof err) == 0, "%s", err);
        st_writer_free(w);
        ck_assert_int_eq(prune_mask_load(&o, path, err, sizeof err), -1);
        ck_assert_msg(strstr(err, t[i].msg), "%s", err);
        ck_assert_ptr_null(o.mask);
    }
    ck_assert_int_eq(prune_mask_load(&o, "/nonexistent/mask.safetensors", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "cannot read mask file"), "%s", err);
    unlink(path);
    free(path);
    free(before);
    model_free(&o);
    model_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- sparsity */

static long jint(json_t *o, const char *path1, const char *path2, const char *key)
{
    json_t *v = o;
    if (path1) v = json_object_get(v, path1);
    if (path2) v = json_object_get(v, path2);
    ck_assert_ptr_nonnull(v);
    json_t *x = json_object_get(v, key);
    ck_assert_msg(json_is_integer(x), "%s.%s.%s", path1 ? path1 : "", path2 ? path2 : "", key);
    return (long)json_integer_value(x);
}

START_TEST(test_sparsity_json_naive)
{
    model m;
    new_model(&m, 16);
    prune1(&m, PC_OUT_PROJ, 0.7f, PS_LAYER);
    prune1(&m, PC_MLP, 0.55f, PS_GLOBAL);
    prune1(&m, PC_GATE, 0.4f, PS_LAYER);
    m.w.head_b[1] = 0.0f;         /* a zero outside every component still counts overall */
    m.w.layers[1].conv_b[0] = 0.0f; /* and in its layer */
    char *txt = prune_sparsity_json(&m);
    ck_assert_ptr_nonnull(txt);
    json_error_t je;
    json_t *j = json_loads(txt, 0, &je);
    ck_assert_msg(j != NULL, "%s", je.text);

    size_t z = 0;
    for (size_t i = 0; i < m.n_params; i++) z += m.params[i] == 0.0f;
    ck_assert_int_eq(jint(j, "overall", NULL, "zeros"), (long)z);
    ck_assert_int_eq(jint(j, "overall", NULL, "params"), (long)m.n_params);
    double sp = json_real_value(json_object_get(json_object_get(j, "overall"), "sparsity"));
    ck_assert_double_eq_tol(sp, (double)z / (double)m.n_params, 1e-9);

    for (int t = 0; t < m.n_tensors; t++) {
        size_t zt = 0;
        for (size_t i = 0; i < m.info[t].numel; i++) zt += m.params[m.info[t].offset + i] == 0.0f;
        ck_assert_int_eq(jint(j, "tensors", m.info[t].name, "zeros"), (long)zt);
        ck_assert_int_eq(jint(j, "tensors", m.info[t].name, "params"), (long)m.info[t].numel);
    }
    /* components from the views, not from the slices */
    size_t gz = 0, gn = 0, oz = 0, on = 0, wz = 0, wn = 0;
    for (int li = 0; li < 3; li++) {
        const layer_params *w = &m.w.layers[li];
        const layer_dims *ld = &m.cfg.layers[li];
        size_t d = 6, E = (size_t)ld->E;
        for (size_t i = 0; i < E * d; i++) gz += w->in_proj_w[E * d + i] == 0.0f;
        gn += E * d;
        for (size_t i = 0; i < d * E; i++) oz += w->out_proj_w[i] == 0.0f;
        on += d * E;
    }
    for (int t = 0; t < m.n_tensors; t++)
        if (m.info[t].layer >= 0 && m.info[t].ndim >= 2 && !strstr(m.info[t].name, "A_log")) {
            wn += m.info[t].numel;
            for (size_t i = 0; i < m.info[t].numel; i++) wz += m.params[m.info[t].offset + i] == 0.0f;
        }
    ck_assert_int_eq(jint(j, "components", "gate", "zeros"), (long)gz);
    ck_assert_int_eq(jint(j, "components", "gate", "params"), (long)gn);
    ck_assert_int_eq(jint(j, "components", "out_proj", "zeros"), (long)oz);
    ck_assert_int_eq(jint(j, "components", "out_proj", "params"), (long)on);
    ck_assert_int_eq(jint(j, "weights", NULL, "zeros"), (long)wz);
    ck_assert_int_eq(jint(j, "weights", NULL, "params"), (long)wn);

    json_t *layers = json_object_get(j, "layers");
    ck_assert_int_eq(json_array_size(layers), 3);
    for (int li = 0; li < 3; li++) {
        size_t lz = 0, ln = 0;
        for (int t = 0; t < m.n_tensors; t++)
            if (m.info[t].layer == li) {
                ln += m.info[t].numel;
                for (size_t i = 0; i < m.info[t].numel; i++) lz += m.params[m.info[t].offset + i] == 0.0f;
            }
        json_t *l = json_array_get(layers, (size_t)li);
        ck_assert_int_eq(jint(l, NULL, NULL, "zeros"), (long)lz);
        ck_assert_int_eq(jint(l, NULL, NULL, "params"), (long)ln);
        size_t n, zc = zeros_in(&m, PC_OUT_PROJ, li, &n);
        ck_assert_int_eq(jint(l, "components", "out_proj", "zeros"), (long)zc);
    }
    ck_assert_ptr_null(json_object_get(json_object_get(json_array_get(layers, 1), "components"), "mlp"));
    json_decref(j);
    free(txt);
    model_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- whole specs */

static float *forward_logits(const model *m, const float *x, int B)
{
    model_acts *a = model_acts_new(m, B, 0);
    model_forward(m, a, x, NULL, B);
    float *out = xmalloc((size_t)B * m->cfg.classes * sizeof *out);
    memcpy(out, model_acts_logits(a), (size_t)B * m->cfg.classes * sizeof *out);
    model_acts_free(a);
    return out;
}

static void apply_text(model *m, const char *txt, char **report)
{
    char err[PL_ERRLEN];
    prune_spec s;
    ck_assert_msg(prune_spec_parse(txt, m, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(prune_apply_spec_report(m, &s, NULL, report, err, sizeof err) == 0, "%s", err);
    prune_spec_free(&s);
}

START_TEST(test_spec_structured_counts)
{
    model m;
    new_model(&m, 20);
    apply_text(&m,
               "{\"prune\": [{\"component\": \"linear_out\", \"granularity\": \"structured\", \"rate\": 0.5, "
               "\"apply\": \"mask\"}, {\"component\": \"mlp\", \"granularity\": \"structured\", \"rate\": 0.4, "
               "\"apply\": \"mask\"}]}",
               NULL);
    for (int li = 0; li < 3; li++) {
        int rows = 0;
        for (int j = 0; j < 6; j++) {
            int zero = 1;
            int E = m.cfg.layers[li].E;
            for (int e = 0; e < E; e++) zero &= m.w.layers[li].out_proj_w[j * E + e] == 0.0f;
            rows += zero;
        }
        ck_assert_int_eq(rows, 3); /* round(0.5 * 6) */
        int M = m.cfg.layers[li].M, dead = 0;
        for (int j = 0; j < M; j++) {
            int zero = m.w.layers[li].fc1_b[j] == 0.0f;
            for (int k = 0; k < 6; k++) zero &= m.w.layers[li].fc1_w[j * 6 + k] == 0.0f;
            dead += zero;
        }
        ck_assert_int_eq(dead, (int)expect_round(0.4, (size_t)M));
    }
    model_free(&m);

    /* shrink: dims follow round(rate * units); conv taps keep the newest; a block goes */
    new_model(&m, 21);
    char *rep = NULL;
    apply_text(&m,
               "{\"prune\": [{\"component\": \"in_proj\", \"granularity\": \"structured\", \"rate\": 0.3},"
               " {\"component\": \"conv1d\", \"granularity\": \"structured\", \"rate\": 0.5},"
               " {\"component\": \"linear_B_C\", \"granularity\": \"structured\", \"rate\": 0.5},"
               " {\"component\": \"layer\", \"granularity\": \"structured\", \"rate\": 0.5, \"layers\": [1, 2]}]}",
               &rep);
    ck_assert_ptr_nonnull(rep);
    json_t *r = json_loads(rep, 0, NULL);
    ck_assert_int_eq(json_array_size(r), 4);
    json_decref(r);
    free(rep);
    ck_assert_int_eq(m.cfg.n_layers, 2);
    ck_assert_int_eq(m.cfg.orig_index[0], 0);
    int kept_block = m.cfg.orig_index[1];
    ck_assert(kept_block == 1 || kept_block == 2);
    static const int E0[3] = {7, 5, 9}, N0[3] = {3, 2, 4}, K0[3] = {3, 4, 2};
    for (int li = 0; li < 2; li++) {
        int o = m.cfg.orig_index[li];
        ck_assert_int_eq(m.cfg.layers[li].E, E0[o] - (int)expect_round(0.3, (size_t)E0[o]));
        ck_assert_int_eq(m.cfg.layers[li].N, N0[o] - (int)expect_round(0.5, (size_t)N0[o]));
        ck_assert_int_eq(m.cfg.layers[li].K, K0[o] - (int)expect_round(0.5, (size_t)K0[o]));
    }
    ck_assert_int_eq(prune_is_mamba_model(&m), 1);
    model_free(&m);
}
END_TEST

START_TEST(test_spec_mask_equals_shrink)
{
    const char *base =
        "{\"prune\": [{\"component\": \"linear_gate\", \"rate\": 0.6},"
        " {\"component\": \"out_proj\", \"rate\": 0.3, \"scope\": \"global\"},"
        " {\"component\": \"linear_in\", \"granularity\": \"structured\", \"rate\": 0.4, \"apply\": \"%s\"},"
        " {\"component\": \"mlp\", \"granularity\": \"structured\", \"rate\": 0.7, \"apply\": \"%s\"},"
        " {\"component\": \"linear_out\", \"granularity\": \"structured\", \"rate\": 0.5, \"apply\": \"%s\"},"
        " {\"component\": \"dt\", \"granularity\": \"structured\", \"rate\": 0.5, \"apply\": \"%s\"},"
        " {\"component\": \"conv1d\", \"granularity\": \"structured\", \"rate\": 0.4, \"apply\": \"%s\"}]}";
    char tm[2048], ts[2048];
    snprintf(tm, sizeof tm, base, "mask", "mask", "mask", "mask", "mask");
    snprintf(ts, sizeof ts, base, "shrink", "shrink", "shrink", "shrink", "shrink");
    model a, b;
    new_model(&a, 30);
    new_model(&b, 30);
    apply_text(&a, tm, NULL);
    apply_text(&b, ts, NULL);
    ck_assert_uint_lt(b.n_params, a.n_params);
    ck_assert_uint_eq(a.n_params, a.n_params);
    /* the unstructured gate entry: exactly round(0.6 * E * d) zeros at full shape */
    size_t n, z = zeros_in(&a, PC_GATE, 0, &n);
    ck_assert_uint_ge(z, (size_t)expect_round(0.6, n));
    int B = 3;
    size_t per = (size_t)a.cfg.C * a.cfg.H * a.cfg.W;
    float *x = xmalloc((size_t)B * per * sizeof *x);
    pl_rng r;
    pl_rng_seed(&r, 99);
    for (size_t i = 0; i < (size_t)B * per; i++) x[i] = pl_rng_normal(&r);
    float *la = forward_logits(&a, x, B), *lb = forward_logits(&b, x, B);
    for (int i = 0; i < B * a.cfg.classes; i++) ck_assert_float_eq_tol(la[i], lb[i], 1e-5f);
    /* the shrunk model's non-zero count equals the masked one's */
    size_t nza = 0, nzb = 0;
    for (size_t i = 0; i < a.n_params; i++) nza += a.params[i] != 0.0f;
    for (size_t i = 0; i < b.n_params; i++) nzb += b.params[i] != 0.0f;
    ck_assert_uint_le(nzb, nza);
    free(la);
    free(lb);
    free(x);
    model_free(&a);
    model_free(&b);
}
END_TEST

START_TEST(test_masked_weights_stay_zero_in_training)
{
    model m;
    new_model(&m, 40);
    prune1(&m, PC_OUT_PROJ, 0.5f, PS_LAYER);
    prune1(&m, PC_MLP, 0.5f, PS_GLOBAL);
    prune1(&m, PC_LAYER, 0.3f, PS_GLOBAL);
    char err[PL_ERRLEN];
    dataset ds;
    ck_assert_msg(dataset_load(&ds, "synthetic:n=64,classes=3,c=1,h=8,w=12", NULL, "train", err, sizeof err) == 0,
                  "%s", err);
    train_config tc;
    train_config_default(&tc);
    tc.epochs = 20, tc.batch = 8, tc.max_steps = 120, tc.opt.lr = 1e-2f, tc.opt.min_lr = 1e-3f;
    float *before = xmalloc(m.n_params * sizeof *before);
    memcpy(before, m.params, m.n_params * sizeof *before);
    ck_assert_msg(train_run(&m, &ds, NULL, &tc, NULL, err, sizeof err) == 0, "%s", err);
    size_t changed = 0, masked = 0;
    for (size_t i = 0; i < m.n_params; i++) {
        if (m.mask[i] == 0.0f) {
            ck_assert(m.params[i] == 0.0f);
            masked++;
        }
        changed += m.params[i] != before[i];
    }
    ck_assert_uint_gt(masked, 100);
    ck_assert_uint_gt(changed, (m.n_params - masked) / 2);
    free(before);
    dataset_free(&ds);
    model_free(&m);
}
END_TEST

START_TEST(test_calibration_needs_data)
{
    model m;
    new_model(&m, 50);
    prune_spec s;
    char err[PL_ERRLEN];
    ck_assert(prune_spec_parse("{\"prune\": [{\"component\": \"mlp\", \"rate\": 0.5, \"criterion\": \"wanda\"}]}", &m,
                               &s, err, sizeof err) == 0);
    ck_assert_int_eq(prune_apply_spec(&m, &s, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "prune[0].criterion: wanda needs calibration data"), "%s", err);
    ck_assert_ptr_null(m.mask);
    prune_spec_free(&s);
    model_free(&m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("prune_unstructured");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_layerwise_exact_and_smallest);
    tcase_add_test(tc, test_global_exact_and_really_global);
    tcase_add_test(tc, test_second_prune_removes_difference);
    tcase_add_test(tc, test_ties_by_index);
    tcase_add_test(tc, test_mask_round_trip);
    tcase_add_test(tc, test_mask_refusals);
    tcase_add_test(tc, test_sparsity_json_naive);
    tcase_add_test(tc, test_spec_structured_counts);
    tcase_add_test(tc, test_spec_mask_equals_shrink);
    tcase_add_test(tc, test_masked_weights_stay_zero_in_training);
    tcase_add_test(tc, test_calibration_needs_data);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
