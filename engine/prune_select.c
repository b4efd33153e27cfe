/* prune_select.c — structured selections (prune.h) and their application as a mask.
 *
 * A prune_selection says, per layer, which structured units survive. prune_selection_to_mask
 * zeroes, in m->mask, every weight a removed unit owns — coupled tensors included — and applies
 * the mask, so that the masked model computes exactly what prune_shrink's smaller model computes
 * (the argument for each unit is written above its loop below).
 *
 * Assumptions: the selection's arrays are sized for m's layer dims (keep_row d, keep_neuron M,
 * keep_channel E, keep_state N, keep_rank R); keep_taps outside (0, K) keeps every tap.
 * Ownership: the selection owns its arrays (malloc'd, freed by prune_selection_free); the mask
 * belongs to the model (allocated here when absent, freed by model_free).
 *
 * Choosing a selection (prune_select_structured) is shared by prune_apply_spec and RSST: per
 * layer the lowest-scoring units go (ties to the lower index), conv1d taps go oldest first, the
 * layer component drops blocks across the entry's layers. Fresh (prune): each entry removes its
 * round(rate * U) lowest units of all U, whatever other entries removed. Cumulative (RSST rounds):
 * units the selection already removes count toward the target and only kept units compete.
 *
 * Letters as in model.h: d, E, N, R, K, M. */
#include "prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void prune_selection_init(prune_selection *s) { memset(s, 0, sizeof *s); }

void prune_selection_free(prune_selection *s)
{
    if (!s) return;
    for (int i = 0; i < MODEL_MAX_LAYERS; i++) {
        free(s->keep_row[i]);
        free(s->keep_neuron[i]);
        free(s->keep_channel[i]);
        free(s->keep_state[i]);
        free(s->keep_rank[i]);
    }
    memset(s, 0, sizeof *s);
}

/* The mask entries of the parameter view p (a pointer into m->params). */
static float *mask_at(model *m, const float *p) { return m->mask + (p - m->params); }

/* Zero n entries of mask starting at p, stride apart. */
static void zero_strided(float *p, size_t n, size_t stride)
{
    for (size_t i = 0; i < n; i++) p[i * stride] = 0.0f;
}

/* Removed units of one layer -> zeros in the mask views of lp. */
static void layer_to_mask(model *m, const prune_selection *s, int li)
{
    const layer_dims *ld = &m->cfg.layers[li];
    const layer_params *w = &m->w.layers[li];
    size_t d = (size_t)m->cfg.d, E = (size_t)ld->E, N = (size_t)ld->N, R = (size_t)ld->R, K = (size_t)ld->K,
           M = (size_t)ld->M;
    /* out_proj (d, E), fc2 (d, M), fc2_b (d), ... as mask views */
    float *in_proj = mask_at(m, w->in_proj_w), *conv_w = mask_at(m, w->conv_w), *conv_b = mask_at(m, w->conv_b);
    float *x_proj = mask_at(m, w->x_proj_w), *dt_w = mask_at(m, w->dt_proj_w), *dt_b = mask_at(m, w->dt_proj_b);
    float *A_log = mask_at(m, w->A_log), *D = mask_at(m, w->D), *out_proj = mask_at(m, w->out_proj_w);

    if (s->drop_layer[li]) {
        /* h += out_proj(g) and h += fc2(f) + b2 both add 0: the block is the identity on h. */
        zero_strided(out_proj, d * E, 1);
        if (M > 0) {
            zero_strided(mask_at(m, w->fc2_w), d * M, 1);
            zero_strided(mask_at(m, w->fc2_b), d, 1);
        }
        return;
    }
    /* out_proj row j: the mixer adds 0 to feature j (shrinking keeps it as a zero row). */
    if (s->keep_row[li])
        for (size_t j = 0; j < d; j++)
            if (!s->keep_row[li][j]) zero_strided(out_proj + j * E, E, 1);
    /* neuron j: fc1 row j and bias j -> f1_j = 0 -> gelu(0) = 0; fc2 column j reads it.
     * With every neuron removed the MLP adds only fc2's bias, which goes too (shrink gives M = 0). */
    if (s->keep_neuron[li] && M > 0) {
        float *fc1_w = mask_at(m, w->fc1_w), *fc1_b = mask_at(m, w->fc1_b), *fc2_w = mask_at(m, w->fc2_w);
        size_t kept = 0;
        for (size_t j = 0; j < M; j++) {
            if (s->keep_neuron[li][j]) {
                kept++;
                continue;
            }
            zero_strided(fc1_w + j * d, d, 1);
            fc1_b[j] = 0.0f;
            zero_strided(fc2_w + j, d, M);
        }
        if (kept == 0) zero_strided(mask_at(m, w->fc2_b), d, 1);
    }
    /* d_inner channel e: in_proj rows e, E+e -> x_e = z_e = 0; conv row and bias -> xc_e = 0 ->
     * u_e = silu(0) = 0; the scan input delta*B*u_e is 0 so h[e,:] stays 0 whatever dt_proj and
     * A_log give, and D[e] u_e = 0 -> y_e = 0 -> g_e = y_e silu(z_e) = 0. x_proj column e and
     * out_proj column e read the dead channel; dt_proj row/bias, A_log row and D are its own. */
    if (s->keep_channel[li])
        for (size_t e = 0; e < E; e++) {
            if (s->keep_channel[li][e]) continue;
            zero_strided(in_proj + e * d, d, 1);
            zero_strided(in_proj + (E + e) * d, d, 1);
            zero_strided(conv_w + e * K, K, 1);
            conv_b[e] = 0.0f;
            zero_strided(x_proj + e, R + 2 * N, E);
            zero_strided(dt_w + e * R, R, 1);
            dt_b[e] = 0.0f;
            zero_strided(A_log + e * N, N, 1);
            D[e] = 0.0f;
            zero_strided(out_proj + e, d, E);
        }
    /* taps: u_t = sum_k w[k] x_{t-K+1+k}; keeping T taps k = K-T..K-1 is a width-T causal conv
     * (w'[k'] = w[K-T+k'] reads x_{t-T+1+k'}), so the older taps k < K-T contribute 0. */
    int T = s->keep_taps[li];
    if (T > 0 && (size_t)T < K)
        for (size_t e = 0; e < E; e++) zero_strided(conv_w + e * K, K - (size_t)T, 1);
    /* state n: x_proj rows R+n, R+N+n -> B_n = C_n = 0 -> h[:,n] = decay*h + delta*0*u stays 0 and
     * C_n h = 0; A_log column n only acts on that zero state. */
    if (s->keep_state[li])
        for (size_t n = 0; n < N; n++) {
            if (s->keep_state[li][n]) continue;
            zero_strided(x_proj + (R + n) * E, E, 1);
            zero_strided(x_proj + (R + N + n) * E, E, 1);
            zero_strided(A_log + n, E, N);
        }
    /* rank r: x_proj row r -> dt_low_r = 0; dt_proj column r reads it. */
    if (s->keep_rank[li])
        for (size_t r = 0; r < R; r++) {
            if (s->keep_rank[li][r]) continue;
            zero_strided(x_proj + r * E, E, 1);
            zero_strided(dt_w + r, E, R);
        }
}

void prune_selection_to_mask(model *m, const prune_selection *s)
{
    model_alloc_mask(m);
    for (int i = 0; i < m->cfg.n_layers; i++) layer_to_mask(m, s, i);
    model_apply_mask(m);
}

uint8_t *prune_selection_keep(prune_selection *s, prune_component c, int li, int n)
{
    uint8_t **slot = NULL;
    switch (c) {
    case PC_OUT_PROJ: slot = &s->keep_row[li]; break;
    case PC_MLP: slot = &s->keep_neuron[li]; break;
    case PC_GATE:
    case PC_IN_PROJ: slot = &s->keep_channel[li]; break;
    case PC_X_PROJ_BC: slot = &s->keep_state[li]; break;
    case PC_DT: slot = &s->keep_rank[li]; break;
    default: return NULL;
    }
    if (!*slot) {
        *slot = xmalloc((size_t)n);
        memset(*slot, 1, (size_t)n);
    }
    return *slot;
}

/* ------------------------------------------------------------------ choosing a selection */

int prune_entry_layers(const model *m, const prune_entry *e, int *out)
{
    int n = 0;
    if (e->n_layers > 0)
        for (int i = 0; i < e->n_layers; i++) out[n++] = e->layers[i];
    else
        for (int i = 0; i < m->cfg.n_layers; i++) out[n++] = i;
    return n;
}

typedef struct {
    float score;
    int idx;
} unit_score;

/* ascending score, ties to the lower index (a total order: qsort's instability cannot show) */
static int unit_cmp(const void *a, const void *b)
{
    const unit_score *x = a, *y = b;
    if (x->score < y->score) return -1;
    if (x->score > y->score) return 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static long round_count(double rate, long n) { return (long)floor(rate * (double)n + 0.5); }

/* The layer component: blocks of the entry, lowest scores dropped. */
static int select_blocks(const model *m, const prune_entry *e, double rate, int cumulative, const prune_calib *calib,
                         uint64_t seed, prune_selection *sel, prune_select_report *rep, char *err, size_t errlen)
{
    int layers[MODEL_MAX_LAYERS];
    int nl = prune_entry_layers(m, e, layers);
    unit_score *us = xmalloc((size_t)(nl > 0 ? nl : 1) * sizeof *us);
    int nr = 0;
    for (int i = 0; i < nl; i++) {
        rep->layers[i] = (prune_select_layer){.layer = layers[i], .units = 1};
        if (cumulative && sel->drop_layer[layers[i]]) continue;
        float sc;
        if (prune_score_units(m, PC_LAYER, layers[i], e->criterion, calib, seed, &sc, err, errlen) != 0) {
            free(us);
            return -1;
        }
        if (!isfinite(sc)) {
            free(us);
            return pl_err(err, errlen, "%s score of block %d is not finite", prune_criterion_name(e->criterion),
                          layers[i]);
        }
        rep->layers[i].score = sc;
        us[nr++] = (unit_score){.score = sc, .idx = layers[i]};
    }
    long k = round_count(rate, nl);
    int alive = 0;
    for (int i = 0; i < m->cfg.n_layers; i++) alive += !sel->drop_layer[i];
    /* blocks of this entry already dropped (by another entry or an earlier round) count as removed */
    int already = 0;
    for (int i = 0; i < nl; i++) already += sel->drop_layer[layers[i]] != 0;
    long need = k - already;
    if (need > alive - 1) need = alive - 1, rep->clamped = 1;
    qsort(us, (size_t)nr, sizeof *us, unit_cmp);
    for (int i = 0; i < nr && need > 0; i++)
        if (!sel->drop_layer[us[i].idx]) {
            sel->drop_layer[us[i].idx] = 1;
            need--;
        }
    for (int i = 0; i < nl; i++) {
        rep->layers[i].removed = sel->drop_layer[layers[i]] != 0;
        rep->removed += rep->layers[i].removed;
    }
    rep->n = nl;
    rep->units = nl;
    free(us);
    return 0;
}

int prune_select_structured(const model *m, const prune_entry *e, double rate, int cumulative,
                            const prune_calib *calib, uint64_t seed, prune_selection *sel, prune_select_report *rep,
                            char *err, size_t errlen)
{
    prune_select_report scratch;
    if (!rep) rep = &scratch;
    memset(rep, 0, sizeof *rep);
    if (e->component == PC_LAYER) return select_blocks(m, e, rate, cumulative, calib, seed, sel, rep, err, errlen);
    int layers[MODEL_MAX_LAYERS];
    int nl = prune_entry_layers(m, e, layers);
    for (int i = 0; i < nl; i++) {
        int li = layers[i];
        int U = prune_component_units(m, e->component, li);
        if (U <= 0 || (cumulative && sel->drop_layer[li])) continue;
        long k = round_count(rate, U);
        int may_empty = e->component == PC_MLP || e->component == PC_OUT_PROJ;
        if (!may_empty && k > U - 1) k = U - 1, rep->clamped = 1;
        if (e->component == PC_CONV1D) {
            /* taps: the oldest k go, the K - k nearest t stay, whatever the criterion */
            int keep = U - (int)k;
            if (sel->keep_taps[li] == 0 || keep < sel->keep_taps[li]) sel->keep_taps[li] = keep;
        } else {
            uint8_t *keep = NULL;
            long need = k;
            if (cumulative) { /* units already removed count toward the target; only kept units compete */
                keep = prune_selection_keep(sel, e->component, li, U);
                for (int u = 0; u < U; u++) need -= !keep[u];
            }
            if (need > 0) {
                float *sc = xmalloc((size_t)U * sizeof *sc);
                if (prune_score_units(m, e->component, li, e->criterion, calib, seed, sc, err, errlen) != 0) {
                    free(sc);
                    return -1;
                }
                unit_score *us = xmalloc((size_t)U * sizeof *us);
                int nr = 0;
                for (int u = 0; u < U; u++) {
                    if (keep && !keep[u]) continue;
                    if (!isfinite(sc[u])) {
                        free(sc);
                        free(us);
                        return pl_err(err, errlen, "%s score of %s unit %d in layer %d is not finite",
                                      prune_criterion_name(e->criterion), prune_component_name(e->component), u, li);
                    }
                    us[nr++] = (unit_score){.score = sc[u], .idx = u};
                }
                qsort(us, (size_t)nr, sizeof *us, unit_cmp);
                if (!keep) keep = prune_selection_keep(sel, e->component, li, U);
                for (long r = 0; r < need && r < nr; r++) keep[us[r].idx] = 0;
                free(us);
                free(sc);
            }
        }
        rep->layers[rep->n++] = (prune_select_layer){.layer = li, .units = U, .removed = k};
        rep->units += U;
        rep->removed += k;
    }
    return 0;
}
