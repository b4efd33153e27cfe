/* prune_unstructured.c — unstructured pruning into model->mask, mask files, and sparsity reports.
 *
 * Unstructured pruning (prune_unstructured): the entry's weights (prune_component_slices of every
 * selected layer) are scored by prune_score_weights, then
 *   scope layer:  per layer, exactly round(rate * count) of the component's weights are zero;
 *   scope global: one ranking over every selected layer, exactly round(rate * total) zero.
 * A weight counts as already removed when its mask is 0 or its value is exactly 0; only the
 * difference to the target is removed (lowest score first, ties by position: layer order, slice
 * order, then index), so pruning 0.5 then 0.7 equals pruning 0.7 once with the same scores on
 * the survivors, and a lower rate never restores anything. Removed weights get mask 0 and value 0
 * (and gradient 0 when grads exist), so training keeps them at zero; weights of the entry that
 * were already exactly zero get mask 0 too.
 *
 * Mask files (DESIGN.md 4): safetensors, one U8 tensor (1 keep / 0 pruned) per parameter with at
 * least one masked entry, same name and shape; a model without a mask writes a file without
 * tensors. Loading validates every tensor (name known, dtype U8 or BOOL, shape equal, values 0/1)
 * before touching the model, then ANDs the file into m->mask (tensors absent from the file keep
 * their mask) and applies it.
 *
 * Sparsity (prune_sparsity_json) counts zeros in m->params, never the mask, so it agrees with a
 * naive count of zero weights. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune.h"
#include "safetensors.h"
#include "util.h"

/* ------------------------------------------------------------------ unstructured pruning */

typedef struct {
    float score;
    size_t pos;   /* position in the pool (tie-break) */
    size_t param; /* index into m->params */
} cand;

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score < y->score) return -1;
    if (x->score > y->score) return 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static int is_removed(const model *m, size_t i) { return (m->mask && m->mask[i] == 0.0f) || m->params[i] == 0.0f; }

static void remove_weight(model *m, size_t i)
{
    m->mask[i] = 0.0f;
    m->params[i] = 0.0f;
    if (m->grads) m->grads[i] = 0.0f;
}

/* Remove the lowest-scored `need` candidates of pool[0..n). Returns the count removed. */
static long remove_lowest(model *m, cand *pool, size_t n, long need)
{
    if (need <= 0 || n == 0) return 0;
    if ((size_t)need > n) need = (long)n;
    qsort(pool, n, sizeof *pool, cand_cmp);
    for (long i = 0; i < need; i++) remove_weight(m, pool[i].param);
    return need;
}

long prune_unstructured(model *m, const prune_entry *e, const prune_calib *calib, uint64_t seed, char *err,
                        size_t errlen)
{
    int layers[MODEL_MAX_LAYERS], nl = 0;
    if (e->n_layers > 0) {
        for (int i = 0; i < e->n_layers; i++) {
            if (e->layers[i] < 0 || e->layers[i] >= m->cfg.n_layers)
                return pl_err(err, errlen, "layer %d is out of range (the model has %d layers)", e->layers[i],
                              m->cfg.n_layers);
            layers[nl++] = e->layers[i];
        }
    } else {
        for (int i = 0; i < m->cfg.n_layers; i++) layers[nl++] = i;
    }
    if (!(e->rate >= 0.0f && e->rate < 1.0f)) return pl_err(err, errlen, "rate %g is outside [0, 1)", e->rate);

    /* total weights, to size the pool once */
    size_t total = 0;
    for (int li = 0; li < nl; li++) {
        prune_slice s[PRUNE_MAX_SLICES];
        int ns = prune_component_slices(m, e->component, layers[li], s);
        for (int k = 0; k < ns; k++) total += s[k].count;
    }
    if (total == 0) return 0;
    model_alloc_mask(m);
    model_apply_mask(m);
    cand *pool = xmalloc(total * sizeof *pool);
    float *scores = NULL;
    size_t scores_cap = 0;
    size_t npool = 0, pos = 0, all = 0, already_all = 0;
    long removed = 0;
    for (int li = 0; li < nl; li++) {
        int layer = layers[li];
        prune_slice s[PRUNE_MAX_SLICES];
        int ns = prune_component_slices(m, e->component, layer, s);
        size_t n = 0;
        for (int k = 0; k < ns; k++) n += s[k].count;
        if (n == 0) continue;
        if (n > scores_cap) {
            free(scores);
            scores = xmalloc(n * sizeof *scores);
            scores_cap = n;
        }
        if (prune_score_weights(m, e->component, layer, e->criterion, calib, seed, scores, err, errlen) != 0) {
            free(scores);
            free(pool);
            return -1;
        }
        if (e->scope == PS_LAYER) npool = 0;
        size_t already = 0, j = 0;
        for (int k = 0; k < ns; k++) {
            size_t base = m->info[s[k].tensor].offset + s[k].start;
            for (size_t q = 0; q < s[k].count; q++, j++, pos++) {
                size_t idx = base + q;
                if (is_removed(m, idx)) {
                    remove_weight(m, idx); /* an exact zero is frozen like a masked weight */
                    already++;
                    continue;
                }
                if (!isfinite(scores[j])) {
                    pl_err(err, errlen, "%s score of weight %zu in layer %d is not finite",
                           prune_criterion_name(e->criterion), j, layer);
                    free(scores);
                    free(pool);
                    return -1;
                }
                pool[npool++] = (cand){.score = scores[j], .pos = pos, .param = idx};
            }
        }
        if (e->scope == PS_LAYER) {
            long target = (long)floor((double)e->rate * (double)n + 0.5);
            removed += remove_lowest(m, pool, npool, target - (long)already);
        }
        all += n;
        already_all += already;
    }
    if (e->scope == PS_GLOBAL) {
        long target = (long)floor((double)e->rate * (double)all + 0.5);
        removed += remove_lowest(m, pool, npool, target - (long)already_all);
    }
    free(scores);
    free(pool);
    return removed;
}

/* ------------------------------------------------------------------ mask files */

int prune_mask_save(const model *m, const char *path, char *err, size_t errlen)
{
    st_writer *w = st_writer_new();
    uint8_t **bufs = xcalloc((size_t)m->n_tensors + 1, sizeof *bufs);
    for (int t = 0; m->mask && t < m->n_tensors; t++) {
        const param_info *p = &m->info[t];
        const float *mk = m->mask + p->offset;
        size_t z = 0;
        for (size_t i = 0; i < p->numel; i++) z += mk[i] == 0.0f;
        if (z == 0) continue;
        bufs[t] = xmalloc(p->numel ? p->numel : 1);
        for (size_t i = 0; i < p->numel; i++) bufs[t][i] = mk[i] != 0.0f;
        st_writer_add(w, p->name, ST_U8, p->ndim, p->shape, bufs[t]);
    }
    st_writer_meta(w, "format", "pt");
    st_writer_meta(w, "prunelab_mask", "1 keep / 0 pruned, one tensor per masked parameter");
    int rc = st_writer_save(w, path, err, errlen);
    st_writer_free(w);
    for (int t = 0; t < m->n_tensors; t++) free(bufs[t]);
    free(bufs);
    return rc;
}

static void shape_text(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

int prune_mask_load(model *m, const char *path, char *err, size_t errlen)
{
    char e2[PL_ERRLEN];
    st_file *f = st_load(path, e2, sizeof e2);
    if (!f) return pl_err(err, errlen, "cannot read mask file %s: %s", path, e2);
    int rc = -1;
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->tensors[i];
        const param_info *p = model_find(m, t->name);
        if (!p) {
            pl_err(err, errlen, "mask %s: tensor %s is not a parameter of the model", path, t->name);
            goto done;
        }
        if (t->dtype != ST_U8 && t->dtype != ST_BOOL) {
            pl_err(err, errlen, "mask %s: tensor %s has dtype %s (expected U8)", path, t->name,
                   st_dtype_name(t->dtype));
            goto done;
        }
        int same = t->ndim == p->ndim;
        for (int k = 0; same && k < p->ndim; k++) same = t->shape[k] == p->shape[k];
        if (!same) {
            char a[96], b[96];
            shape_text(a, sizeof a, t->ndim, t->shape);
            shape_text(b, sizeof b, p->ndim, p->shape);
            pl_err(err, errlen, "mask %s: tensor %s has shape %s but the model's is %s", path, t->name, a, b);
            goto done;
        }
        const uint8_t *v = t->data;
        for (size_t k = 0; k < p->numel; k++)
            if (v[k] > 1) {
                pl_err(err, errlen, "mask %s: tensor %s holds %u at %zu (expected 0 or 1)", path, t->name, v[k], k);
                goto done;
            }
    }
    if (f->n > 0) {
        model_alloc_mask(m);
        for (int i = 0; i < f->n; i++) {
            const st_tensor *t = &f->tensors[i];
            const param_info *p = model_find(m, t->name);
            const uint8_t *v = t->data;
            for (size_t k = 0; k < p->numel; k++)
                if (!v[k]) m->mask[p->offset + k] = 0.0f;
        }
        model_apply_mask(m);
    }
    rc = 0;
done:
    st_free(f);
    return rc;
}

/* ------------------------------------------------------------------ sparsity */

static size_t count_zeros(const float *p, size_t n)
{
    size_t z = 0;
    for (size_t i = 0; i < n; i++) z += p[i] == 0.0f;
    return z;
}

static json_t *bucket(size_t params, size_t zeros)
{
    json_t *o = json_object();
    json_object_set_new(o, "params", json_integer((json_int_t)params));
    json_object_set_new(o, "zeros", json_integer((json_int_t)zeros));
    json_object_set_new(o, "nonzero", json_integer((json_int_t)(params - zeros)));
    json_object_set_new(o, "sparsity", json_real(params ? (double)zeros / (double)params : 0.0));
    return o;
}

/* Sum params / zeros over the slices of component c in layer. */
static void slice_counts(const model *m, prune_component c, int layer, size_t *params, size_t *zeros)
{
    prune_slice s[PRUNE_MAX_SLICES];
    int ns = prune_component_slices(m, c, layer, s);
    for (int k = 0; k < ns; k++) {
        *params += s[k].count;
        *zeros += count_zeros(m->params + m->info[s[k].tensor].offset + s[k].start, s[k].count);
    }
}

char *prune_sparsity_json(const model *m)
{
    json_t *root = json_object();
    size_t all_z = count_zeros(m->params, m->n_params);
    json_object_set_new(root, "overall", bucket(m->n_params, all_z));

    /* prunable weight matrices: the layer component's slices of every block */
    size_t wp = 0, wz = 0;
    for (int i = 0; i < m->cfg.n_layers; i++) slice_counts(m, PC_LAYER, i, &wp, &wz);
    json_object_set_new(root, "weights", bucket(wp, wz));

    json_t *tensors = json_object();
    for (int t = 0; t < m->n_tensors; t++) {
        const param_info *p = &m->info[t];
        json_object_set_new(tensors, p->name, bucket(p->numel, count_zeros(m->params + p->offset, p->numel)));
    }
    json_object_set_new(root, "tensors", tensors);

    json_t *comps = json_object();
    for (int c = 0; c < PC_COUNT; c++) {
        size_t cp = 0, cz = 0;
        for (int i = 0; i < m->cfg.n_layers; i++) slice_counts(m, (prune_component)c, i, &cp, &cz);
        json_t *b = bucket(cp, cz);
        json_object_set_new(b, "alias", json_string(prune_component_alias((prune_component)c)));
        json_object_set_new(comps, prune_component_name((prune_component)c), b);
    }
    json_object_set_new(root, "components", comps);

    json_t *layers = json_array();
    for (int i = 0; i < m->cfg.n_layers; i++) {
        size_t lp = 0, lz = 0;
        for (int t = 0; t < m->n_tensors; t++)
            if (m->info[t].layer == i) {
                lp += m->info[t].numel;
                lz += count_zeros(m->params + m->info[t].offset, m->info[t].numel);
            }
        json_t *l = bucket(lp, lz);
        json_object_set_new(l, "layer", json_integer(i));
        json_object_set_new(l, "orig_index", json_integer(m->cfg.orig_index[i]));
        json_t *lc = json_object();
        for (int c = 0; c < PC_COUNT; c++) {
            size_t cp = 0, cz = 0;
            slice_counts(m, (prune_component)c, i, &cp, &cz);
            if (cp) json_object_set_new(lc, prune_component_name((prune_component)c), bucket(cp, cz));
        }
        json_object_set_new(l, "components", lc);
        json_array_append_new(layers, l);
    }
    json_object_set_new(root, "layers", layers);
    char *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(root);
    return text;
}
