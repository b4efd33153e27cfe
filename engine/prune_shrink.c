/* prune_shrink.c — physical shrinking: a selection (prune.h) -> a smaller, valid model.
 *
 * Each surviving layer gets its own E', N', R', K', M' (the counts of kept channels, states,
 * ranks, taps and neurons); dropped blocks disappear and cfg.orig_index keeps the original
 * index of the survivors. Every kept weight is gathered from src: row / column index lists per
 * tensor, the same lists for the parameters and (when src has one) the mask, so an unstructured
 * mask on the kept weights survives. out_proj rows cannot shrink d: a removed row is copied as
 * a zero row and masked, so training keeps it zero.
 *
 * The gather lists mirror prune_selection_to_mask (prune_select.c), which is why the masked and
 * the shrunk model compute the same logits:
 *   in_proj (2E', d)        rows ch, E+ch
 *   conv1d  (E', K'), (E')  rows ch, taps K-K'..K-1
 *   x_proj  (R'+2N', E')    rows rank, R+state, R+N+state; columns ch
 *   dt_proj (E', R'), (E')  rows ch, columns rank
 *   A_log   (E', N'), D     rows ch, columns state
 *   out_proj (d, E')        columns ch
 *   fc1 (M', d), (M'); fc2 (d, M')   neurons
 * A layer whose neurons are all removed loses its MLP (M' = 0).
 *
 * Refused (err names the layer and unit): a kept layer left with no channel, state or rank,
 * keep_taps outside [0, K], every block dropped.
 * Ownership: dst is initialised here (zeroed first, so model_free(dst) is safe after an error)
 * and owned by the caller; src is not modified; dst must not alias src.
 *
 * Letters as in model.h: d, E, N, R, K, M. */
#include "prune.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Indices i in [0, n) with keep[i] set (every index when keep is NULL). Returns the count;
 * *out is malloc'd (n entries at most), freed by the caller. */
static int kept_indices(const uint8_t *keep, int n, int **out)
{
    int *idx = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *idx);
    int c = 0;
    for (int i = 0; i < n; i++)
        if (!keep || keep[i]) idx[c++] = i;
    *out = idx;
    return c;
}

/* Kept unit lists of one source layer. */
typedef struct {
    int nch, nst, nrk, nnr, taps; /* E', N', R', M', K' */
    int *ch, *st, *rk, *nr;       /* (E'), (N'), (R'), (M') source indices */
} layer_keep;

static void layer_keep_free(layer_keep *k)
{
    free(k->ch), free(k->st), free(k->rk), free(k->nr);
    memset(k, 0, sizeof *k);
}

/* Fill k for source layer li, or return -1 with err for a selection that leaves it unusable. */
static int layer_keep_build(const model *src, const prune_selection *s, int li, layer_keep *k, char *err,
                            size_t errlen)
{
    const layer_dims *ld = &src->cfg.layers[li];
    memset(k, 0, sizeof *k);
    int T = s->keep_taps[li];
    if (T < 0 || T > ld->K)
        return pl_err(err, errlen, "layer %d: keep_taps %d is outside [0, d_conv %d] (0 keeps every tap)", li, T,
                      ld->K);
    k->taps = T == 0 ? ld->K : T;
    k->nch = kept_indices(s->keep_channel[li], ld->E, &k->ch);
    k->nst = kept_indices(s->keep_state[li], ld->N, &k->st);
    k->nrk = kept_indices(s->keep_rank[li], ld->R, &k->rk);
    k->nnr = kept_indices(ld->M > 0 ? s->keep_neuron[li] : NULL, ld->M, &k->nr);
    const char *unit = k->nch == 0 ? "d_inner channel" : k->nst == 0 ? "state" : k->nrk == 0 ? "dt rank" : NULL;
    if (unit) {
        int total = k->nch == 0 ? ld->E : k->nst == 0 ? ld->N : ld->R;
        layer_keep_free(k);
        return pl_err(err, errlen,
                      "layer %d: every %s (%d of %d) would be removed; keep at least one, or drop the layer", li,
                      unit, total, total);
    }
    return 0;
}

/* dst (nr, nc) = src[rows][cols], src row length src_cols; NULL rows / cols = identity. The
 * same gather copies src's mask into dst's when both exist (dst's mask starts all ones). */
static void gather(const model *src, model *dst, const float *sp, float *dp, int src_cols, const int *rows, int nr,
                   const int *cols, int nc)
{
    if (!sp || !dp) return; /* a tensor the task does not have (image vs LM) */
    const float *sm = src->mask ? src->mask + (sp - src->params) : NULL;
    float *dm = dst->mask ? dst->mask + (dp - dst->params) : NULL;
    for (int i = 0; i < nr; i++) {
        size_t so = (size_t)(rows ? rows[i] : i) * (size_t)src_cols, dof = (size_t)i * (size_t)nc;
        for (int j = 0; j < nc; j++) {
            size_t sj = so + (size_t)(cols ? cols[j] : j);
            dp[dof + j] = sp[sj];
            if (dm && sm) dm[dof + j] = sm[sj];
        }
    }
}

/* Copy one source layer into dst layer lo through its kept lists. */
static void layer_copy(const model *src, const prune_selection *s, int li, const layer_keep *k, model *dst, int lo)
{
    const layer_dims *ld = &src->cfg.layers[li];
    const layer_params *w = &src->w.layers[li];
    layer_params *o = &dst->w.layers[lo];
    int d = src->cfg.d, E = ld->E, N = ld->N, R = ld->R, K = ld->K, M = ld->M;
    int E2 = k->nch, N2 = k->nst, R2 = k->nrk, K2 = k->taps, M2 = k->nnr;

    gather(src, dst, w->norm_w, o->norm_w, d, NULL, 1, NULL, d);
    /* in_proj: x rows ch, then z rows E+ch */
    int *rows = xmalloc((size_t)(2 * E2 + R2 + 2 * N2) * sizeof *rows);
    for (int e = 0; e < E2; e++) rows[e] = k->ch[e], rows[E2 + e] = E + k->ch[e];
    gather(src, dst, w->in_proj_w, o->in_proj_w, d, rows, 2 * E2, NULL, d);
    /* conv1d: the K2 taps nearest t */
    int *taps = xmalloc((size_t)K2 * sizeof *taps);
    for (int j = 0; j < K2; j++) taps[j] = K - K2 + j;
    gather(src, dst, w->conv_w, o->conv_w, K, k->ch, E2, taps, K2);
    gather(src, dst, w->conv_b, o->conv_b, E, NULL, 1, k->ch, E2);
    /* x_proj: dt_low rows rank, B rows R+state, C rows R+N+state; columns ch */
    int nrow = 0;
    for (int r = 0; r < R2; r++) rows[nrow++] = k->rk[r];
    for (int n = 0; n < N2; n++) rows[nrow++] = R + k->st[n];
    for (int n = 0; n < N2; n++) rows[nrow++] = R + N + k->st[n];
    gather(src, dst, w->x_proj_w, o->x_proj_w, E, rows, nrow, k->ch, E2);
    gather(src, dst, w->dt_proj_w, o->dt_proj_w, R, k->ch, E2, k->rk, R2);
    gather(src, dst, w->dt_proj_b, o->dt_proj_b, E, NULL, 1, k->ch, E2);
    gather(src, dst, w->A_log, o->A_log, N, k->ch, E2, k->st, N2);
    gather(src, dst, w->D, o->D, E, NULL, 1, k->ch, E2);
    gather(src, dst, w->out_proj_w, o->out_proj_w, E, NULL, d, k->ch, E2);
    /* removed out_proj rows: zero and masked (dst->mask exists whenever a row is removed) */
    if (s->keep_row[li])
        for (int j = 0; j < d; j++)
            if (!s->keep_row[li][j]) {
                memset(o->out_proj_w + (size_t)j * E2, 0, (size_t)E2 * sizeof(float));
                memset(dst->mask + (o->out_proj_w - dst->params) + (size_t)j * E2, 0, (size_t)E2 * sizeof(float));
            }
    if (M2 > 0) {
        gather(src, dst, w->norm2_w, o->norm2_w, d, NULL, 1, NULL, d);
        gather(src, dst, w->fc1_w, o->fc1_w, d, k->nr, M2, NULL, d);
        gather(src, dst, w->fc1_b, o->fc1_b, M, NULL, 1, k->nr, M2);
        gather(src, dst, w->fc2_w, o->fc2_w, M, NULL, d, k->nr, M2);
        gather(src, dst, w->fc2_b, o->fc2_b, d, NULL, 1, NULL, d);
    }
    free(rows);
    free(taps);
}

/* Does the selection remove an out_proj row of some surviving layer? */
static int removes_rows(const model *src, const prune_selection *s)
{
    for (int i = 0; i < src->cfg.n_layers; i++) {
        if (s->drop_layer[i] || !s->keep_row[i]) continue;
        for (int j = 0; j < src->cfg.d; j++)
            if (!s->keep_row[i][j]) return 1;
    }
    return 0;
}

int prune_shrink(const model *src, const prune_selection *s, model *dst, char *err, size_t errlen)
{
    memset(dst, 0, sizeof *dst);
    const model_config *sc = &src->cfg;
    int nl = sc->n_layers, kept_layers = 0;
    for (int i = 0; i < nl; i++) kept_layers += !s->drop_layer[i];
    if (kept_layers == 0)
        return pl_err(err, errlen, "every block (%d of %d) would be dropped; keep at least one layer", nl, nl);

    layer_keep *keep = xcalloc((size_t)nl, sizeof *keep);
    model_config cfg = *sc;
    memset(cfg.layers, 0, sizeof cfg.layers);
    memset(cfg.orig_index, 0, sizeof cfg.orig_index);
    int rc = -1, lo = 0;
    for (int i = 0; i < nl; i++) {
        if (s->drop_layer[i]) continue;
        if (layer_keep_build(src, s, i, &keep[i], err, errlen) != 0) goto cleanup;
        cfg.layers[lo] = (layer_dims){.E = keep[i].nch, .N = keep[i].nst, .R = keep[i].nrk, .K = keep[i].taps,
                                      .M = keep[i].nnr};
        cfg.orig_index[lo] = sc->orig_index[i];
        lo++;
    }
    cfg.n_layers = lo;
    if (model_alloc(dst, &cfg, err, errlen) != 0) goto cleanup;
    if (src->mask || removes_rows(src, s)) model_alloc_mask(dst);

    /* non-layer tensors keep their shapes */
    const model_params *w = &src->w;
    model_params *o = &dst->w;
    int d = sc->d, cpp = sc->C * sc->P * sc->P;
    gather(src, dst, w->patch_w, o->patch_w, cpp, NULL, d, NULL, cpp);
    gather(src, dst, w->patch_b, o->patch_b, d, NULL, 1, NULL, d);
    gather(src, dst, w->pos, o->pos, d, NULL, sc->L, NULL, d);
    gather(src, dst, w->norm_f_w, o->norm_f_w, d, NULL, 1, NULL, d);
    int V = sc->task == MODEL_TASK_LM ? sc->vocab : sc->classes;
    gather(src, dst, w->embed, o->embed, d, NULL, sc->vocab, NULL, d);
    gather(src, dst, w->head_w, o->head_w, d, NULL, V, NULL, d); /* an LM's untied lm_head */
    gather(src, dst, w->head_b, o->head_b, sc->classes, NULL, 1, NULL, sc->classes);
    lo = 0;
    for (int i = 0; i < nl; i++)
        if (!s->drop_layer[i]) layer_copy(src, s, i, &keep[i], dst, lo++);
    model_apply_mask(dst);
    rc = 0;

cleanup:
    for (int i = 0; i < nl; i++) layer_keep_free(&keep[i]);
    free(keep);
    if (rc != 0) model_free(dst);
    return rc;
}
