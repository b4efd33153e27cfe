/* prune_calib.c — calibration statistics for the activation, wanda and taylor criteria.
 *
 * What: prune_calib_collect runs n samples of a dataset (the first n when seed is 0, else a
 * seeded sample without replacement) through a private copy of the model, in batches of at
 * most CALIB_BATCH, forward (with a layer hook) and backward, and accumulates per layer:
 *   ss_* / sa_*  sum over tokens of x^2 and |x| for every linear's input feature
 *                (a: in_proj, x: conv1d, u: x_proj, dtl: dt_proj, g: out_proj, a2: fc1,
 *                f1g: fc2) and sa_mix / sa_mlp (|out_proj output|, |fc2 output|),
 *                s_bc[n] = sum_t |B_n(t)| * |C_n(t)|;
 *   t_*          per-unit taylor sums: per batch |sum_t a(t) dL/da(t)|, summed over batches;
 *   taylor_w     per weight, sum over batches of |w * dL/dw|.
 * On a token dataset a sample is a window of T tokens (task.h); "tokens" are then B * T rows.
 * Gradients are those of the batch's summed loss (model_backward gives the mean; we scale by
 * the batch's predictions: B images, or B * (T - 1) next-token predictions), so the taylor sums do not depend on how samples are split into batches
 * except through the per-batch absolute value.
 *
 * Unit taylor from parameter gradients. Scaling a group of parameters by (1 + s) changes the
 * loss at first order by s * sum_k w_k dL/dw_k. When the group is an output row of a linear
 * (weights and bias), that sum equals sum_t a(t) dL/da(t) for the row's output a. We use:
 *   out_proj row j   out_proj row j                    -> mix_out_j
 *   neuron j         fc1 row j + fc1 bias j            -> fc1 pre-activation j (GELU(0) = 0,
 *                                                         so zeroing it removes the neuron)
 *   channel e        out_proj column e                 -> g_e (gate and in_proj both)
 *   state n          x_proj rows R+n and R+N+n         -> B_n and C_n together
 *   rank r           x_proj row r                      -> dt_low_r
 *   tap k            conv1d.weight[:, k]               -> the tap's contribution to every channel
 *   layer            out_proj + fc2 (weight and bias)  -> mix_out and mlp_out
 *
 * Memory: a scratch copy of the parameters and gradients, one float per parameter for
 * taylor_w, O(units) doubles per layer, and activations for one batch — nothing grows with n
 * except the index list of the dataset when sampling. The caller's model is never written.
 * Ownership: the returned prune_calib is the caller's; free with prune_calib_free. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prune.h"
#include "task.h"
#include "train.h"
#include "util.h"

#define CALIB_BATCH 32


enum {
    ST_SS_A, ST_SA_A, ST_SS_X, ST_SA_X, ST_SS_U, ST_SA_U, ST_SS_DTL, ST_SA_DTL, ST_SS_G, ST_SA_G,
    ST_SS_A2, ST_SA_A2, ST_SS_F1G, ST_SA_F1G, ST_SA_MIX, ST_SA_MLP, ST_S_BC,
    ST_T_ROW, ST_T_NEURON, ST_T_CHANNEL, ST_T_STATE, ST_T_RANK, ST_T_TAP, ST_T_LAYER,
    ST_COUNT
};

static const char *const stat_names[] = {
    "ss_a", "sa_a", "ss_x", "sa_x", "ss_u", "sa_u", "ss_dtl", "sa_dtl", "ss_g", "sa_g",
    "ss_a2", "sa_a2", "ss_f1g", "sa_f1g", "sa_mix", "sa_mlp", "s_bc",
    "t_row", "t_neuron", "t_channel", "t_state", "t_rank", "t_tap", "t_layer",
};
_Static_assert(sizeof stat_names / sizeof stat_names[0] == ST_COUNT, "stat_names matches ST_COUNT");

typedef struct {
    double *v[ST_COUNT]; /* views into prune_calib.block */
    int len[ST_COUNT];
} calib_layer;

struct prune_calib {
    model_config cfg;
    size_t n_params;
    int n_samples;
    double tokens;       /* samples * L */
    calib_layer *layers; /* (n_layers) */
    double *block;       /* every layer's statistics */
    float *taylor_w;     /* (n_params) */
};

static int stat_len(int s, int d, const layer_dims *l)
{
    int M = l->M;
    switch (s) {
    case ST_SS_A: case ST_SA_A: case ST_SA_MIX: case ST_T_ROW: return d;
    case ST_SS_X: case ST_SA_X: case ST_SS_U: case ST_SA_U: case ST_SS_G: case ST_SA_G: case ST_T_CHANNEL:
        return l->E;
    case ST_SS_DTL: case ST_SA_DTL: case ST_T_RANK: return l->R;
    case ST_SS_A2: case ST_SA_A2: case ST_SA_MLP: return M > 0 ? d : 0;
    case ST_SS_F1G: case ST_SA_F1G: case ST_T_NEURON: return M;
    case ST_S_BC: case ST_T_STATE: return l->N;
    case ST_T_TAP: return l->K;
    case ST_T_LAYER: return 1;
    default: return 0;
    }
}

static prune_calib *calib_new(const model *m)
{
    prune_calib *c = xcalloc(1, sizeof *c);
    c->cfg = m->cfg;
    c->n_params = m->n_params;
    int nl = m->cfg.n_layers;
    c->layers = xcalloc(nl > 0 ? (size_t)nl : 1, sizeof *c->layers);
    size_t total = 0;
    for (int i = 0; i < nl; i++)
        for (int s = 0; s < ST_COUNT; s++) total += (size_t)stat_len(s, m->cfg.d, &m->cfg.layers[i]);
    c->block = xcalloc(total > 0 ? total : 1, sizeof(double));
    size_t off = 0;
    for (int i = 0; i < nl; i++)
        for (int s = 0; s < ST_COUNT; s++) {
            int n = stat_len(s, m->cfg.d, &m->cfg.layers[i]);
            c->layers[i].v[s] = c->block + off;
            c->layers[i].len[s] = n;
            off += (size_t)n;
        }
    c->taylor_w = xalloc_floats(m->n_params);
    return c;
}

void prune_calib_free(prune_calib *c)
{
    if (!c) return;
    free(c->layers);
    free(c->block);
    free(c->taylor_w);
    free(c);
}

/* ------------------------------------------------------------------ internal interface */

int prune_calib_check(const prune_calib *c, const model *m, char *err, size_t errlen)
{
    int same = c->n_params == m->n_params && c->cfg.n_layers == m->cfg.n_layers && c->cfg.d == m->cfg.d;
    for (int i = 0; same && i < m->cfg.n_layers; i++)
        same = memcmp(&c->cfg.layers[i], &m->cfg.layers[i], sizeof(layer_dims)) == 0;
    if (!same) return pl_err(err, errlen, "calibration statistics were collected on a model of different shape");
    return 0;
}

double prune_calib_tokens(const prune_calib *c) { return c->tokens; }

const double *prune_calib_stat(const prune_calib *c, int layer, const char *name, int *len)
{
    if (len) *len = 0;
    if (layer < 0 || layer >= c->cfg.n_layers) return NULL;
    for (int s = 0; s < ST_COUNT; s++)
        if (strcmp(stat_names[s], name) == 0) {
            if (len) *len = c->layers[layer].len[s];
            return c->layers[layer].v[s];
        }
    return NULL;
}

const float *prune_calib_taylor_weights(const prune_calib *c) { return c->taylor_w; }

/* ------------------------------------------------------------------ collection */

/* ss[j] += sum_r x[r, j]^2, sa[j] += sum_r |x[r, j]|, x (rows, n) */
static void col_sums(double *ss, double *sa, const float *x, int rows, int n)
{
    if (!x || n <= 0) return;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        for (int j = 0; j < n; j++) {
            double v = xr[j];
            if (ss) ss[j] += v * v;
            sa[j] += fabs(v);
        }
    }
}

static void calib_hook(const model_layer_view *v, void *user)
{
    prune_calib *c = user;
    calib_layer *cl = &c->layers[v->layer];
    const layer_dims *l = &c->cfg.layers[v->layer];
    int rows = v->rows, d = c->cfg.d;
    col_sums(cl->v[ST_SS_A], cl->v[ST_SA_A], v->a, rows, d);
    col_sums(cl->v[ST_SS_X], cl->v[ST_SA_X], v->x, rows, l->E);
    col_sums(cl->v[ST_SS_U], cl->v[ST_SA_U], v->u, rows, l->E);
    col_sums(cl->v[ST_SS_DTL], cl->v[ST_SA_DTL], v->dtl, rows, l->R);
    col_sums(cl->v[ST_SS_G], cl->v[ST_SA_G], v->g, rows, l->E);
    col_sums(NULL, cl->v[ST_SA_MIX], v->mix_out, rows, d);
    if (l->M > 0) {
        col_sums(cl->v[ST_SS_A2], cl->v[ST_SA_A2], v->a2, rows, d);
        col_sums(cl->v[ST_SS_F1G], cl->v[ST_SA_F1G], v->f1g, rows, l->M);
        col_sums(NULL, cl->v[ST_SA_MLP], v->mlp_out, rows, d);
    }
    double *bc = cl->v[ST_S_BC];
    for (int r = 0; r < rows; r++)
        for (int n = 0; n < l->N; n++)
            bc[n] += fabs((double)v->Bm[(size_t)r * l->N + n]) * fabs((double)v->Cm[(size_t)r * l->N + n]);
}

/* sum_i w[i*stride] * g[i*stride], i < count */
static double dot_strided(const float *w, const float *g, size_t count, size_t stride)
{
    double s = 0;
    for (size_t i = 0; i < count; i++) s += (double)w[i * stride] * g[i * stride];
    return s;
}

/* Accumulate the taylor statistics of one batch from s's gradients (of the mean loss over B). */
static void calib_taylor_batch(prune_calib *c, const model *s, double scale)
{
    /* scale: mean-loss gradients -> summed-loss gradients (the batch's predictions) */
    for (size_t i = 0; i < s->n_params; i++) c->taylor_w[i] += (float)fabs(scale * s->params[i] * s->grads[i]);
    size_t d = (size_t)s->cfg.d;
    for (int li = 0; li < s->cfg.n_layers; li++) {
        const layer_dims *l = &s->cfg.layers[li];
        const layer_params *w = &s->w.layers[li], *g = &s->g.layers[li];
        calib_layer *cl = &c->layers[li];
        size_t E = (size_t)l->E, N = (size_t)l->N, R = (size_t)l->R, K = (size_t)l->K, M = (size_t)l->M;
        double layer_sum = 0;
        for (size_t j = 0; j < d; j++) { /* out_proj (d, E): row j -> mix_out_j */
            double t = dot_strided(w->out_proj_w + j * E, g->out_proj_w + j * E, E, 1);
            cl->v[ST_T_ROW][j] += fabs(scale * t);
            layer_sum += t;
        }
        for (size_t e = 0; e < E; e++) /* out_proj column e -> g_e */
            cl->v[ST_T_CHANNEL][e] += fabs(scale * dot_strided(w->out_proj_w + e, g->out_proj_w + e, d, E));
        for (size_t n = 0; n < N; n++) { /* x_proj (R+2N, E): rows R+n (B_n), R+N+n (C_n) */
            double t = dot_strided(w->x_proj_w + (R + n) * E, g->x_proj_w + (R + n) * E, E, 1) +
                       dot_strided(w->x_proj_w + (R + N + n) * E, g->x_proj_w + (R + N + n) * E, E, 1);
            cl->v[ST_T_STATE][n] += fabs(scale * t);
        }
        for (size_t r = 0; r < R; r++) /* x_proj row r -> dt_low_r */
            cl->v[ST_T_RANK][r] += fabs(scale * dot_strided(w->x_proj_w + r * E, g->x_proj_w + r * E, E, 1));
        for (size_t k = 0; k < K; k++) /* conv1d (E, K): column k */
            cl->v[ST_T_TAP][k] += fabs(scale * dot_strided(w->conv_w + k, g->conv_w + k, E, K));
        if (M > 0) {
            for (size_t j = 0; j < M; j++) { /* fc1 (M, d) row j + bias j -> fc1 output j */
                double t = dot_strided(w->fc1_w + j * d, g->fc1_w + j * d, d, 1) + (double)w->fc1_b[j] * g->fc1_b[j];
                cl->v[ST_T_NEURON][j] += fabs(scale * t);
            }
            layer_sum += dot_strided(w->fc2_w, g->fc2_w, d * M, 1) + dot_strided(w->fc2_b, g->fc2_b, d, 1);
        }
        cl->v[ST_T_LAYER][0] += fabs(scale * layer_sum);
    }
}

prune_calib *prune_calib_collect(const model *m, const dataset *ds, int n, uint64_t seed, char *err, size_t errlen)
{
    const model_config *cfg = &m->cfg;
    if (!ds || ds->n < 1) return pl_err(err, errlen, "calibration needs a non-empty dataset"), NULL;
    if (n < 1) return pl_err(err, errlen, "calibration sample count %d must be at least 1", n), NULL;
    char e2[PL_ERRLEN]; /* images: fewer classes than the model is fine for statistics */
    if (train_check_compat(m, ds, e2, sizeof e2) != 0 && !(!ds->tokens && ds->classes <= cfg->classes &&
                                                           ds->c == cfg->C && ds->h == cfg->H && ds->w == cfg->W))
        return pl_err(err, errlen, "calibration: %s", e2), NULL;
    if (n > ds->n) n = ds->n;

    /* a private copy: forward/backward write only its grads, never m */
    model s;
    if (model_alloc(&s, cfg, err, errlen) != 0) return NULL;
    memcpy(s.params, m->params, m->n_params * sizeof(float));
    if (m->mask) /* statistics of the pruned model even if m's params were not re-masked */
        for (size_t i = 0; i < s.n_params; i++) s.params[i] *= m->mask[i];
    model_alloc_grads(&s);

    int *idx = xmalloc((size_t)ds->n * sizeof(int));
    for (int i = 0; i < ds->n; i++) idx[i] = i;
    if (seed != 0) { /* partial Fisher-Yates: the first n are a uniform sample */
        pl_rng r;
        pl_rng_seed(&r, seed);
        for (int i = 0; i < n; i++) {
            int j = i + (int)pl_rng_below(&r, (uint32_t)(ds->n - i));
            int t = idx[i];
            idx[i] = idx[j], idx[j] = t;
        }
    }

    prune_calib *c = calib_new(m);
    int Bmax = n < CALIB_BATCH ? n : CALIB_BATCH;
    model_acts *acts = task_acts_new(&s, ds, Bmax, 1);
    model_acts_set_hook(acts, calib_hook, c);
    task_batch tb;
    task_batch_init(&tb, ds, Bmax);
    long per = task_preds_per_sample(ds);
    for (int b0 = 0; b0 < n; b0 += Bmax) {
        int B = n - b0 < Bmax ? n - b0 : Bmax;
        task_batch_fill(&tb, ds, idx + b0, B, NULL, 0);
        model_zero_grads(&s);
        task_forward(&s, acts, &tb, B, NULL);
        task_backward(&s, acts, &tb, B);
        calib_taylor_batch(c, &s, (double)B * per);
    }
    c->n_samples = n;
    c->tokens = (double)n * (ds->tokens ? ds->T : cfg->L);
    task_batch_free(&tb);
    free(idx);
    model_acts_free(acts);
    model_free(&s);
    return c;
}
