/* model_io.c — checkpoint I/O and description of the patch-Mamba model (DESIGN.md 3-4).
 *
 * Save: every parameter as F32 in checkpoint order, conv1d.weight as (E, 1, K), and
 * __metadata__ {"format": "pt", "prunelab": "<JSON>"} where the JSON records patch size, image
 * shape, classes, dataset, normalisation, original layer indices and provenance.
 * Load: the tensor shapes are the truth. Layers are counted from backbone.layers.{i}.norm.weight;
 * each layer's E, N, R, K, M come from its tensors and every other shape is checked against
 * them. Without our metadata (files from PyTorch or HF) C and P follow from patch_embed's width
 * (C*P*P with C in {1, 3}: 3k^2 = m^2 has no integer solution, so the split is unique), the
 * image is square with L = (H/P)^2 tokens, classes = head rows; dataset_hint names the dataset.
 * Floating dtypes (F32, F16, BF16, F64) are converted to F32; anything else is refused. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

/* ------------------------------------------------------------------ save */

static char *metadata_json(const model_config *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "patch_size", json_integer(c->P));
    json_object_set_new(o, "image", json_pack("[iii]", c->C, c->H, c->W));
    json_object_set_new(o, "classes", json_integer(c->classes));
    json_object_set_new(o, "dataset", json_string(c->dataset));
    json_t *mean = json_array(), *std = json_array();
    for (int i = 0; i < c->C && i < 3; i++) {
        json_array_append_new(mean, json_real(c->norm_mean[i]));
        json_array_append_new(std, json_real(c->norm_std[i]));
    }
    json_object_set_new(o, "normalisation", json_pack("{s:o,s:o}", "mean", mean, "std", std));
    json_t *layers = json_array();
    for (int i = 0; i < c->n_layers; i++) json_array_append_new(layers, json_integer(c->orig_index[i]));
    json_object_set_new(o, "layers", layers);
    json_t *prov = c->provenance[0] ? json_loads(c->provenance, 0, NULL) : NULL;
    json_object_set_new(o, "provenance", prov ? prov : json_object());
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    return s;
}

int model_save(const model *m, const char *path, char *err, size_t errlen)
{
    st_writer *w = st_writer_new();
    for (int i = 0; i < m->n_tensors; i++) {
        const param_info *p = &m->info[i];
        st_writer_add(w, p->name, ST_F32, p->ndim, p->shape, m->params + p->offset);
    }
    char *meta = metadata_json(&m->cfg);
    st_writer_meta(w, "format", "pt");
    st_writer_meta(w, "prunelab", meta);
    int rc = st_writer_save(w, path, err, errlen);
    free(meta);
    st_writer_free(w);
    return rc;
}

/* ------------------------------------------------------------------ load */

static const st_tensor *need(const st_file *f, const char *name, char *err, size_t errlen)
{
    const st_tensor *t = st_find(f, name);
    if (!t) pl_err(err, errlen, "checkpoint has no tensor %s", name);
    return t;
}

static int isqrt_exact(long v)
{
    if (v <= 0) return -1;
    long r = lround(sqrt((double)v));
    for (long k = r - 1; k <= r + 1; k++)
        if (k > 0 && k * k == v) return (int)k;
    return -1;
}

static int read_metadata(model_config *c, const char *text, char *err, size_t errlen)
{
    json_error_t je;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return pl_err(err, errlen, "metadata \"prunelab\" is not a JSON object (%s)", o ? "wrong type" : je.text);
    }
    int rc = -1;
    json_t *img = json_object_get(o, "image");
    json_t *ps = json_object_get(o, "patch_size");
    json_t *cl = json_object_get(o, "classes");
    if (!json_is_array(img) || json_array_size(img) != 3 || !json_is_integer(ps) || !json_is_integer(cl)) {
        pl_err(err, errlen, "metadata \"prunelab\" lacks image [C,H,W], patch_size or classes");
        goto out;
    }
    c->C = (int)json_integer_value(json_array_get(img, 0));
    c->H = (int)json_integer_value(json_array_get(img, 1));
    c->W = (int)json_integer_value(json_array_get(img, 2));
    c->P = (int)json_integer_value(ps);
    c->classes = (int)json_integer_value(cl);
    if (c->C < 1 || c->C > 3 || c->P < 1 || c->H < c->P || c->W < c->P || c->H % c->P || c->W % c->P) {
        pl_err(err, errlen, "metadata image %dx%dx%d / patch %d is inconsistent", c->C, c->H, c->W, c->P);
        goto out;
    }
    c->L = (c->H / c->P) * (c->W / c->P);
    json_t *ds = json_object_get(o, "dataset");
    if (json_is_string(ds)) snprintf(c->dataset, sizeof c->dataset, "%s", json_string_value(ds));
    json_t *nm = json_object_get(o, "normalisation");
    json_t *mean = json_object_get(nm, "mean"), *std = json_object_get(nm, "std");
    for (int i = 0; i < 3; i++) {
        json_t *mv = json_array_get(mean, (size_t)i), *sv = json_array_get(std, (size_t)i);
        if (json_is_number(mv) && json_is_number(sv)) {
            c->norm_mean[i] = (float)json_number_value(mv);
            c->norm_std[i] = (float)json_number_value(sv);
        }
    }
    json_t *layers = json_object_get(o, "layers");
    if (json_is_array(layers)) {
        for (size_t i = 0; i < json_array_size(layers) && i < MODEL_MAX_LAYERS; i++)
            c->orig_index[i] = (int)json_integer_value(json_array_get(layers, i));
    }
    json_t *prov = json_object_get(o, "provenance");
    if (json_is_object(prov)) {
        char *s = json_dumps(prov, JSON_COMPACT);
        if (s && strlen(s) < sizeof c->provenance) snprintf(c->provenance, sizeof c->provenance, "%s", s);
        free(s);
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

static int shape_is(const st_tensor *t, int ndim, int64_t a, int64_t b, int64_t c, char *err, size_t errlen)
{
    int64_t want[3] = {a, b, c};
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
    if (ok) return 0;
    char got[128] = "", exp[96] = "";
    size_t gl = 0, el = 0;
    for (int i = 0; i < t->ndim && gl < sizeof got - 24; i++)
        gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    for (int i = 0; i < ndim; i++)
        el += (size_t)snprintf(exp + el, sizeof exp - el, "%s%lld", i ? ", " : "", (long long)want[i]);
    return pl_err(err, errlen, "tensor %s has shape [%s], expected [%s]", t->name, got, exp);
}

/* Derive the config from tensor shapes (and metadata). */
static int config_from_file(model_config *c, const st_file *f, const char *dataset_hint, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < 3; i++) c->norm_std[i] = 1.0f;
    const st_tensor *pe = need(f, "patch_embed.weight", err, errlen);
    const st_tensor *pos = pe ? need(f, "pos_embed", err, errlen) : NULL;
    const st_tensor *head = pos ? need(f, "head.weight", err, errlen) : NULL;
    if (!head) return -1;
    if (pe->ndim != 2 || pos->ndim != 2 || head->ndim != 2)
        return pl_err(err, errlen, "patch_embed.weight, pos_embed and head.weight must be 2-D");
    c->d = (int)pe->shape[0];
    if (c->d < 1) return pl_err(err, errlen, "patch_embed.weight has no rows");
    const char *meta = st_meta(f, "prunelab");
    if (meta) {
        if (read_metadata(c, meta, err, errlen) != 0) return -1;
    } else {
        long width = (long)pe->shape[1];
        int p1 = isqrt_exact(width), p3 = width % 3 == 0 ? isqrt_exact(width / 3) : -1;
        if (p1 > 0) c->C = 1, c->P = p1;
        else if (p3 > 0) c->C = 3, c->P = p3;
        else return pl_err(err, errlen, "patch_embed.weight width %ld is not C*P*P with C = 1 or 3", width);
        int side = isqrt_exact((long)pos->shape[0]);
        if (side < 1) return pl_err(err, errlen, "pos_embed has %lld tokens, not a square grid; add prunelab metadata",
                                    (long long)pos->shape[0]);
        c->H = c->W = side * c->P;
        c->L = side * side;
        c->classes = (int)head->shape[0];
        for (int i = 0; i < MODEL_MAX_LAYERS; i++) c->orig_index[i] = i;
        if (dataset_hint && *dataset_hint) {
            snprintf(c->dataset, sizeof c->dataset, "%s", dataset_hint);
            int ch = 0;
            if (dataset_norm(dataset_hint, &ch, c->norm_mean, c->norm_std) == 0 && ch != c->C)
                return pl_err(err, errlen, "dataset %s has %d channels but the checkpoint's patch_embed expects %d",
                              dataset_hint, ch, c->C);
        }
    }
    if (pe->shape[1] != (int64_t)c->C * c->P * c->P)
        return pl_err(err, errlen, "patch_embed.weight width %lld != C*P*P = %d", (long long)pe->shape[1],
                      c->C * c->P * c->P);
    if (shape_is(pos, 2, c->L, c->d, 0, err, errlen) != 0) return -1;
    if (head->shape[0] != c->classes)
        return pl_err(err, errlen, "head.weight has %lld rows but the metadata says %d classes",
                      (long long)head->shape[0], c->classes);
    char nm[128];
    int n = 0;
    for (;; n++) {
        snprintf(nm, sizeof nm, "backbone.layers.%d.norm.weight", n);
        if (!st_find(f, nm)) break;
        if (n == MODEL_MAX_LAYERS) return pl_err(err, errlen, "more than %d layers", MODEL_MAX_LAYERS);
    }
    c->n_layers = n;
    for (int i = 0; i < n; i++) {
        layer_dims *l = &c->layers[i];
        const st_tensor *t;
        snprintf(nm, sizeof nm, "backbone.layers.%d.mixer.in_proj.weight", i);
        if (!(t = need(f, nm, err, errlen))) return -1;
        if (t->ndim != 2 || t->shape[0] % 2 || t->shape[0] < 2)
            return pl_err(err, errlen, "%s must be [2E, d] with an even row count", nm);
        l->E = (int)(t->shape[0] / 2);
        snprintf(nm, sizeof nm, "backbone.layers.%d.mixer.A_log", i);
        if (!(t = need(f, nm, err, errlen))) return -1;
        if (t->ndim != 2) return pl_err(err, errlen, "%s must be [E, N]", nm);
        l->N = (int)t->shape[1];
        snprintf(nm, sizeof nm, "backbone.layers.%d.mixer.dt_proj.weight", i);
        if (!(t = need(f, nm, err, errlen))) return -1;
        if (t->ndim != 2) return pl_err(err, errlen, "%s must be [E, R]", nm);
        l->R = (int)t->shape[1];
        snprintf(nm, sizeof nm, "backbone.layers.%d.mixer.conv1d.weight", i);
        if (!(t = need(f, nm, err, errlen))) return -1;
        if (t->ndim != 3) return pl_err(err, errlen, "%s must be [E, 1, K]", nm);
        l->K = (int)t->shape[2];
        snprintf(nm, sizeof nm, "backbone.layers.%d.mlp.fc1.weight", i);
        t = st_find(f, nm);
        l->M = t ? (int)(t->ndim == 2 ? t->shape[0] : -1) : 0;
        if (l->E < 1 || l->N < 1 || l->R < 1 || l->K < 1 || l->M < 0)
            return pl_err(err, errlen, "layer %d has invalid dims (E %d, N %d, R %d, K %d, M %d)", i, l->E, l->N, l->R,
                          l->K, l->M);
        if (!meta) c->orig_index[i] = i;
    }
    return 0;
}

int model_load(model *m, const char *path, const char *dataset_hint, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    char e2[PL_ERRLEN];
    st_file *f = st_load(path, e2, sizeof e2);
    if (!f) return pl_err(err, errlen, "%s", e2); /* st_load's messages name the path already */
    model_config cfg;
    if (config_from_file(&cfg, f, dataset_hint, e2, sizeof e2) != 0 || model_alloc(m, &cfg, e2, sizeof e2) != 0) {
        st_free(f);
        model_free(m);
        return pl_err(err, errlen, "%s: %s", path, e2);
    }
    /* every expected tensor present with the exact shape; nothing unexpected */
    for (int i = 0; i < m->n_tensors; i++) {
        const param_info *p = &m->info[i];
        const st_tensor *t = st_find(f, p->name);
        if (!t) {
            pl_err(e2, sizeof e2, "checkpoint has no tensor %s", p->name);
            goto fail;
        }
        if (shape_is(t, p->ndim, p->shape[0], p->shape[1], p->shape[2], e2, sizeof e2) != 0) goto fail;
        if (st_to_f32(t, m->params + p->offset, e2, sizeof e2) != 0) goto fail;
        st_release(f, t);
        for (size_t k = 0; k < p->numel; k++) {
            if (!isfinite(m->params[p->offset + k])) {
                pl_err(e2, sizeof e2, "tensor %s holds a non-finite value at index %zu", p->name, k);
                goto fail;
            }
        }
    }
    for (int i = 0; i < f->n; i++) {
        if (!model_find(m, f->tensors[i].name)) {
            pl_err(e2, sizeof e2, "unexpected tensor %s (not part of the patch-Mamba layout)", f->tensors[i].name);
            goto fail;
        }
    }
    st_free(f);
    return 0;
fail:
    st_free(f);
    model_free(m);
    return pl_err(err, errlen, "%s: %s", path, e2);
}

/* ------------------------------------------------------------------ describe */

char *model_describe_json(const model *m)
{
    const model_config *c = &m->cfg;
    json_t *o = json_object();
    json_t *cfg = json_object();
    json_object_set_new(cfg, "d_model", json_integer(c->d));
    json_object_set_new(cfg, "n_layers", json_integer(c->n_layers));
    json_object_set_new(cfg, "image", json_pack("[iii]", c->C, c->H, c->W));
    json_object_set_new(cfg, "patch_size", json_integer(c->P));
    json_object_set_new(cfg, "tokens", json_integer(c->L));
    json_object_set_new(cfg, "classes", json_integer(c->classes));
    json_object_set_new(cfg, "dataset", json_string(c->dataset));
    json_object_set_new(o, "config", cfg);
    size_t per_layer[MODEL_MAX_LAYERS] = {0}, other = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        if (m->info[i].layer >= 0) per_layer[m->info[i].layer] += m->info[i].numel;
        else other += m->info[i].numel;
    }
    json_t *layers = json_array();
    for (int i = 0; i < c->n_layers; i++) {
        const layer_dims *l = &c->layers[i];
        json_array_append_new(layers, json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:I}", "index", i, "orig_index",
                                                c->orig_index[i], "d_inner", l->E, "d_state", l->N, "dt_rank", l->R,
                                                "d_conv", l->K, "mlp", l->M, "params", (json_int_t)per_layer[i]));
    }
    json_object_set_new(o, "layers", layers);
    json_object_set_new(o, "params", json_integer((json_int_t)m->n_params));
    json_object_set_new(o, "params_outside_layers", json_integer((json_int_t)other));
    json_object_set_new(o, "flops_per_sample", json_real(model_flops_per_sample(c)));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(o);
    return s;
}

json_t *model_dims_json(const model *m)
{
    json_t *dims = json_array();
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const layer_dims *ld = &m->cfg.layers[i];
        json_array_append_new(dims, json_pack("{s:i,s:i,s:i,s:i,s:i,s:i}", "index", m->cfg.orig_index[i], "E", ld->E,
                                              "N", ld->N, "R", ld->R, "K", ld->K, "M", ld->M));
    }
    return dims;
}
