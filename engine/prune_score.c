/* prune_score.c — importance scores of weights (unstructured) and units (structured).
 *
 * What: prune_score_weights gives one score per weight of a component in one layer, in
 * prune_component_slices order; prune_score_units gives one score per structured unit. Low
 * scores are removed. Scores never depend on the mask: a pruned weight is simply 0 in params.
 *
 * Criteria (DESIGN.md 5). Letters as in model.h; T = calibration tokens (samples * L).
 *   magnitude  weight: |w|.            unit: L1 norm of the unit's weights (table below).
 *   l2         weight: w^2.            unit: L2 norm of the same weights.
 *   random     uniform [0, 1) from pl_rng seeded with (seed, layer, component, granularity):
 *              deterministic for a seed, different across seeds, layers and components.
 *   wanda      weight w_ij of a linear: |w_ij| * ||x_j||_2, x_j the linear's input feature j over
 *              all T calibration tokens (in_proj: a, x_proj: u, dt_proj: dt_low, out_proj: g,
 *              fc1: a2, fc2: gelu(fc1)). conv1d.weight[e, k]: the conv input x of channel e
 *              (norm over tokens; the per-tap shift is ignored). A bias sees the constant input
 *              1 (norm sqrt(T)). A_log, D and norm weights have no input feature: magnitude.
 *              unit: sum of the weight scores over the unit's weights (layer: mean).
 *   activation weight: |w| * mean_t |x_j| (same input feature as wanda; A_log / D / norms:
 *              magnitude). unit: mean |activation of the unit| over the calibration tokens:
 *              out_proj row j: |mix_out_j|; neuron j: |gelu(fc1)_j|; d_inner channel e (gate,
 *              in_proj): |g_e|, the channel's input to out_proj; state n: |B_n| * |C_n| (per
 *              token, then mean); rank r: |dt_low_r|; tap k: mean over channels e of
 *              |conv_w[e, k]| * mean_t |x_e|; layer: mean |mix_out| + mean |mlp_out|.
 *   taylor     weight: sum over calibration batches of |w * dL/dw| (dL/dw of the batch's summed
 *              loss). unit: sum over batches of |sum_t a(t) dL/da(t)|, computed from parameter
 *              gradients in prune_calib.c (see there for which parameters define each unit).
 *
 * Unit weights for magnitude / l2 / wanda:
 *   out_proj row j     out_proj row j (E)
 *   neuron j           fc1 row j (d) + fc2 column j (d); biases excluded
 *   gate channel e     in_proj row E+e (d)
 *   in_proj channel e  in_proj row e (d) + out_proj column e (d): the channel's input and output
 *                      weights (the x-branch row alone ignores what the channel contributes)
 *   conv1d tap k       conv1d.weight[:, k] (E)
 *   state n            x_proj rows R+n and R+N+n (2E)
 *   rank r             x_proj row r (E) + dt_proj column r (E)
 *   layer              every 2-D weight tensor of the block (in_proj, conv1d, x_proj, dt_proj,
 *                      out_proj, fc1, fc2): L1 / count, sqrt(sum w^2 / count), wanda / count,
 *                      so that blocks with and without an MLP compare.
 *
 * Calibration statistics are read through the small internal interface of prune_calib.c,
 * declared below. Ownership: callers own every buffer; nothing here allocates beyond scratch. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "prune.h"
#include "util.h"

/* ------------------------------------------------------------------ helpers */

/* Distinct deterministic stream per (seed, layer, component, granularity). */
static void score_rng(pl_rng *r, uint64_t seed, int layer, prune_component c, int structured)
{
    uint64_t s = seed;
    s ^= (uint64_t)(layer + 1) * 0x9E3779B97F4A7C15ull;
    s ^= (uint64_t)(c + 1) * 0xC2B2AE3D27D4EB4Full;
    s ^= (uint64_t)(structured + 1) * 0x165667B19E3779F9ull;
    pl_rng_seed(r, s);
}

static const char *comp_name(prune_component c)
{
    const char *s = prune_component_name(c);
    return s ? s : "?";
}

static int check_common(const model *m, prune_component c, int layer, prune_criterion crit, const prune_calib *calib,
                        char *err, size_t errlen)
{
    if ((int)c < 0 || c >= PC_COUNT) return pl_err(err, errlen, "unknown component %d", (int)c);
    if ((int)crit < 0 || crit >= PCR_COUNT) return pl_err(err, errlen, "unknown criterion %d", (int)crit);
    if (layer < 0 || layer >= m->cfg.n_layers)
        return pl_err(err, errlen, "layer %d out of range [0, %d)", layer, m->cfg.n_layers);
    if (prune_criterion_needs_calib(crit)) {
        if (!calib)
            return pl_err(err, errlen, "criterion %s needs calibration data (give a dataset)",
                          prune_criterion_name(crit));
        if (prune_calib_check(calib, m, err, errlen) != 0) return -1;
    }
    return 0;
}

/* Which tensor of a layer a param_info is, from its name suffix. */
typedef enum {
    TK_IN_PROJ,
    TK_CONV_W,
    TK_X_PROJ,
    TK_DT_PROJ,
    TK_OUT_PROJ,
    TK_FC1,
    TK_FC2,
    TK_BIAS,  /* conv1d.bias, dt_proj.bias, fc1.bias, fc2.bias: input is the constant 1 */
    TK_OTHER, /* A_log, D, norm weights, non-layer tensors: no input feature */
} tensor_kind;

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static tensor_kind kind_of(const param_info *p)
{
    if (p->layer < 0) return TK_OTHER;
    if (ends_with(p->name, "mixer.in_proj.weight")) return TK_IN_PROJ;
    if (ends_with(p->name, "mixer.conv1d.weight")) return TK_CONV_W;
    if (ends_with(p->name, "mixer.x_proj.weight")) return TK_X_PROJ;
    if (ends_with(p->name, "mixer.dt_proj.weight")) return TK_DT_PROJ;
    if (ends_with(p->name, "mixer.out_proj.weight")) return TK_OUT_PROJ;
    if (ends_with(p->name, "mlp.fc1.weight")) return TK_FC1;
    if (ends_with(p->name, "mlp.fc2.weight")) return TK_FC2;
    if (ends_with(p->name, ".bias")) return TK_BIAS;
    return TK_OTHER;
}

/* Per-input-feature statistics of one tensor: sum of squares and sum of |x| (NULL for
 * TK_BIAS / TK_OTHER), and whether the feature index is the row (conv1d) or the column. */
typedef struct {
    const double *ss, *sa;
    int by_row;
    size_t cols;
} input_stats;

static void input_stats_of(const prune_calib *calib, const param_info *p, input_stats *st)
{
    memset(st, 0, sizeof *st);
    st->cols = p->ndim >= 2 ? (size_t)p->shape[p->ndim - 1] : 1;
    const char *feat = NULL;
    switch (kind_of(p)) {
    case TK_IN_PROJ: feat = "a"; break;
    case TK_CONV_W: feat = "x", st->by_row = 1; break;
    case TK_X_PROJ: feat = "u"; break;
    case TK_DT_PROJ: feat = "dtl"; break;
    case TK_OUT_PROJ: feat = "g"; break;
    case TK_FC1: feat = "a2"; break;
    case TK_FC2: feat = "f1g"; break;
    default: return;
    }
    char nm[16];
    int len;
    snprintf(nm, sizeof nm, "ss_%s", feat);
    st->ss = prune_calib_stat(calib, p->layer, nm, &len);
    snprintf(nm, sizeof nm, "sa_%s", feat);
    st->sa = prune_calib_stat(calib, p->layer, nm, &len);
}

/* Score of the weight at float index idx of tensor p (crit is not random). */
static float weight_score(const model *m, const param_info *p, size_t idx, prune_criterion crit,
                          const prune_calib *calib, const input_stats *st, double T)
{
    float w = m->params[p->offset + idx];
    switch (crit) {
    case PCR_MAGNITUDE: return fabsf(w);
    case PCR_L2: return w * w;
    case PCR_TAYLOR: return prune_calib_taylor_weights(calib)[p->offset + idx];
    case PCR_WANDA:
    case PCR_ACTIVATION: {
        tensor_kind k = kind_of(p);
        if (k == TK_BIAS) return crit == PCR_WANDA ? (float)(fabsf(w) * sqrt(T)) : fabsf(w);
        if (!st->ss) return fabsf(w); /* A_log, D, norms: magnitude */
        size_t j = st->by_row ? idx / st->cols : idx % st->cols;
        if (crit == PCR_WANDA) return (float)(fabsf(w) * sqrt(st->ss[j]));
        return (float)(fabsf(w) * (T > 0 ? st->sa[j] / T : 0.0));
    }
    default: return 0.0f;
    }
}

/* ------------------------------------------------------------------ weights */

int prune_score_weights(const model *m, prune_component c, int layer, prune_criterion crit, const prune_calib *calib,
                        uint64_t seed, float *scores, char *err, size_t errlen)
{
    if (check_common(m, c, layer, crit, calib, err, errlen) != 0) return -1;
    prune_slice sl[PRUNE_MAX_SLICES];
    int ns = prune_component_slices(m, c, layer, sl); /* 0 when the layer lacks the component */
    if (crit == PCR_RANDOM) {
        pl_rng r;
        score_rng(&r, seed, layer, c, 0);
        size_t o = 0;
        for (int s = 0; s < ns; s++)
            for (size_t i = 0; i < sl[s].count; i++) scores[o++] = (float)pl_rng_uniform(&r);
        return 0;
    }
    double T = calib ? prune_calib_tokens(calib) : 0.0;
    size_t o = 0;
    for (int s = 0; s < ns; s++) {
        const param_info *p = &m->info[sl[s].tensor];
        input_stats st;
        memset(&st, 0, sizeof st);
        if (calib && (crit == PCR_WANDA || crit == PCR_ACTIVATION)) input_stats_of(calib, p, &st);
        for (size_t i = 0; i < sl[s].count; i++)
            scores[o++] = weight_score(m, p, sl[s].start + i, crit, calib, &st, T);
    }
    return 0;
}

/* ------------------------------------------------------------------ units */

/* A strided run of one tensor: floats offset start, start+stride, ... (count of them). */
typedef struct {
    int tensor;
    size_t start, count, stride;
} unit_run;

#define UNIT_MAX_RUNS 16

static int layer_tensor(const model *m, int layer, const char *suffix)
{
    char nm[96];
    snprintf(nm, sizeof nm, "backbone.layers.%d.%s", layer, suffix);
    const param_info *p = model_find(m, nm);
    return p ? (int)(p - m->info) : -1;
}

/* The weights that define unit u of component c (header table). Returns the run count. */
static int unit_runs(const model *m, prune_component c, int layer, int u, unit_run *runs)
{
    const layer_dims *l = &m->cfg.layers[layer];
    size_t d = (size_t)m->cfg.d, E = (size_t)l->E, N = (size_t)l->N, R = (size_t)l->R, K = (size_t)l->K;
    size_t M = (size_t)l->M, uu = (size_t)u;
    int n = 0;
#define RUN(sfx, st, cnt, strd)                                                                 \
    do {                                                                                        \
        int t_ = layer_tensor(m, layer, sfx);                                                   \
        if (t_ >= 0) runs[n++] = (unit_run){t_, (st), (cnt), (strd)};                           \
    } while (0)
    switch (c) {
    case PC_OUT_PROJ: RUN("mixer.out_proj.weight", uu * E, E, 1); break;
    case PC_MLP:
        RUN("mlp.fc1.weight", uu * d, d, 1);
        RUN("mlp.fc2.weight", uu, d, M);
        break;
    case PC_GATE: RUN("mixer.in_proj.weight", (E + uu) * d, d, 1); break;
    case PC_IN_PROJ:
        RUN("mixer.in_proj.weight", uu * d, d, 1);
        RUN("mixer.out_proj.weight", uu, d, E);
        break;
    case PC_CONV1D: RUN("mixer.conv1d.weight", uu, E, K); break;
    case PC_X_PROJ_BC:
        RUN("mixer.x_proj.weight", (R + uu) * E, E, 1);
        RUN("mixer.x_proj.weight", (R + N + uu) * E, E, 1);
        break;
    case PC_DT:
        RUN("mixer.x_proj.weight", uu * E, E, 1);
        RUN("mixer.dt_proj.weight", uu, E, R);
        break;
    case PC_LAYER:
        for (int t = 0; t < m->n_tensors && n < UNIT_MAX_RUNS; t++) {
            const param_info *p = &m->info[t];
            if (p->layer == layer && p->decay) runs[n++] = (unit_run){t, 0, p->numel, 1};
        }
        break;
    default: break;
    }
#undef RUN
    return n;
}

static double mean_of(const double *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    return n > 0 ? s / n : 0.0;
}

/* Activation unit score (mean |a| over tokens), from calibration sums. */
static float unit_activation(const model *m, const prune_calib *calib, prune_component c, int layer, int u)
{
    double T = prune_calib_tokens(calib);
    if (T <= 0) return 0.0f;
    int len;
    const layer_dims *l = &m->cfg.layers[layer];
    switch (c) {
    case PC_OUT_PROJ: return (float)(prune_calib_stat(calib, layer, "sa_mix", &len)[u] / T);
    case PC_MLP: return (float)(prune_calib_stat(calib, layer, "sa_f1g", &len)[u] / T);
    case PC_GATE:
    case PC_IN_PROJ: return (float)(prune_calib_stat(calib, layer, "sa_g", &len)[u] / T);
    case PC_X_PROJ_BC: return (float)(prune_calib_stat(calib, layer, "s_bc", &len)[u] / T);
    case PC_DT: return (float)(prune_calib_stat(calib, layer, "sa_dtl", &len)[u] / T);
    case PC_CONV1D: {
        const double *sa = prune_calib_stat(calib, layer, "sa_x", &len);
        const float *w = m->w.layers[layer].conv_w; /* (E, K) */
        double s = 0;
        for (int e = 0; e < l->E; e++) s += fabs((double)w[(size_t)e * l->K + u]) * sa[e] / T;
        return (float)(s / l->E);
    }
    case PC_LAYER: {
        double s = mean_of(prune_calib_stat(calib, layer, "sa_mix", &len), m->cfg.d);
        const double *mlp = prune_calib_stat(calib, layer, "sa_mlp", &len);
        if (mlp && len > 0) s += mean_of(mlp, len);
        return (float)(s / T);
    }
    default: return 0.0f;
    }
}

static float unit_taylor(const prune_calib *calib, prune_component c, int layer, int u)
{
    const char *nm = NULL;
    switch (c) {
    case PC_OUT_PROJ: nm = "t_row"; break;
    case PC_MLP: nm = "t_neuron"; break;
    case PC_GATE:
    case PC_IN_PROJ: nm = "t_channel"; break;
    case PC_CONV1D: nm = "t_tap"; break;
    case PC_X_PROJ_BC: nm = "t_state"; break;
    case PC_DT: nm = "t_rank"; break;
    case PC_LAYER: nm = "t_layer"; break;
    default: return 0.0f;
    }
    int len;
    const double *v = prune_calib_stat(calib, layer, nm, &len);
    return v && u < len ? (float)v[u] : 0.0f;
}

int prune_score_units(const model *m, prune_component c, int layer, prune_criterion crit, const prune_calib *calib,
                      uint64_t seed, float *scores, char *err, size_t errlen)
{
    if (check_common(m, c, layer, crit, calib, err, errlen) != 0) return -1;
    int nu = prune_component_units(m, c, layer);
    if (c == PC_A_LOG || c == PC_D || prune_component_unit(c) == NULL)
        return pl_err(err, errlen, "component %s has no structured unit", comp_name(c));
    if (nu <= 0) return 0; /* e.g. mlp in a layer without an MLP */
    if (crit == PCR_RANDOM) {
        pl_rng r;
        score_rng(&r, seed, layer, c, 1);
        for (int u = 0; u < nu; u++) scores[u] = (float)pl_rng_uniform(&r);
        return 0;
    }
    if (crit == PCR_ACTIVATION) {
        for (int u = 0; u < nu; u++) scores[u] = unit_activation(m, calib, c, layer, u);
        return 0;
    }
    if (crit == PCR_TAYLOR) {
        for (int u = 0; u < nu; u++) scores[u] = unit_taylor(calib, c, layer, u);
        return 0;
    }
    /* magnitude, l2, wanda: over the unit's weights */
    double T = calib ? prune_calib_tokens(calib) : 0.0;
    unit_run runs[UNIT_MAX_RUNS];
    for (int u = 0; u < nu; u++) {
        int nr = unit_runs(m, c, layer, u, runs);
        double s = 0, count = 0;
        for (int k = 0; k < nr; k++) {
            const param_info *p = &m->info[runs[k].tensor];
            const float *w = m->params + p->offset;
            input_stats st;
            memset(&st, 0, sizeof st);
            if (crit == PCR_WANDA) input_stats_of(calib, p, &st);
            for (size_t i = 0; i < runs[k].count; i++) {
                size_t idx = runs[k].start + i * runs[k].stride;
                double v = w[idx];
                if (crit == PCR_MAGNITUDE) s += fabs(v);
                else if (crit == PCR_L2) s += v * v;
                else s += weight_score(m, p, idx, crit, calib, &st, T);
            }
            count += (double)runs[k].count;
        }
        if (c == PC_LAYER && count > 0) s /= count;
        scores[u] = (float)(crit == PCR_L2 ? sqrt(s) : s);
    }
    return 0;
}
