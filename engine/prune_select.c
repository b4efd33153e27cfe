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
 * Letters as in model.h: d, E, N, R, K, M. */
#include "prune.h"

#include <stdlib.h>
#include <string.h>

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
