/* prune_components.c — where each component of prune.h lives in a model (its names, aliases and
 * units are in spec/vocab.c): which floats of a layer it prunes (slices) and owns (parameter
 * count), its unit count, and the "is this our Mamba model" check.
 *
 * Ownership for the "share of params" report: the nine components partition a block, so their
 * counts add up to the block's parameters (tests check it):
 *   in_proj   in_proj rows 0..E-1 and the mixer's input RMSNorm weight (norm.weight)
 *   gate      in_proj rows E..2E-1
 *   conv1d    conv1d.weight and conv1d.bias
 *   x_proj_bc x_proj rows R..R+2N-1
 *   dt        x_proj rows 0..R-1, dt_proj.weight, dt_proj.bias
 *   A_log, D  themselves
 *   out_proj  out_proj.weight
 *   mlp       norm2.weight, fc1 weight and bias, fc2 weight and bias
 *   layer     every parameter of the block
 * The vectors a d_inner channel couples (conv1d[e], x_proj column e, dt_proj row e, A_log row e,
 * D[e], out_proj column e) are counted under the component that owns their tensor, not under
 * in_proj / gate: a structured channel removal takes them with it, but the report never counts a
 * parameter twice.
 * Tensor indices come from the names in m->info (model_find), so the code holds for any layout
 * that uses our names. Nothing here allocates. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "prune.h"

/* ------------------------------------------------------------------ slices */

/* Index into m->info of backbone.layers.<layer>.<suffix>, or -1. */
static int layer_tensor(const model *m, int layer, const char *suffix)
{
    char nm[128];
    snprintf(nm, sizeof nm, "backbone.layers.%d.%s", layer, suffix);
    const param_info *p = model_find(m, nm);
    return p ? (int)(p - m->info) : -1;
}

/* Append a slice (skipped when the tensor is absent or the range empty). */
static int push(prune_slice *out, int n, int tensor, size_t start, size_t count)
{
    if (tensor < 0 || count == 0) return n;
    out[n].tensor = tensor;
    out[n].start = start;
    out[n].count = count;
    return n + 1;
}

static int push_whole(const model *m, prune_slice *out, int n, int tensor)
{
    return tensor < 0 ? n : push(out, n, tensor, 0, m->info[tensor].numel);
}

static int valid_layer(const model *m, int layer) { return m && layer >= 0 && layer < m->cfg.n_layers; }

int prune_component_slices(const model *m, prune_component c, int layer, prune_slice *out)
{
    if (!valid_layer(m, layer)) return 0;
    const layer_dims *ld = &m->cfg.layers[layer];
    size_t d = (size_t)m->cfg.d, E = (size_t)ld->E, N = (size_t)ld->N, R = (size_t)ld->R;
    int n = 0;
    switch (c) {
    case PC_OUT_PROJ:
        n = push_whole(m, out, n, layer_tensor(m, layer, "mixer.out_proj.weight"));
        break;
    case PC_MLP:
        n = push_whole(m, out, n, layer_tensor(m, layer, "mlp.fc1.weight"));
        n = push_whole(m, out, n, layer_tensor(m, layer, "mlp.fc2.weight"));
        break;
    case PC_GATE:
        n = push(out, n, layer_tensor(m, layer, "mixer.in_proj.weight"), E * d, E * d);
        break;
    case PC_IN_PROJ:
        n = push(out, n, layer_tensor(m, layer, "mixer.in_proj.weight"), 0, E * d);
        break;
    case PC_CONV1D:
        n = push_whole(m, out, n, layer_tensor(m, layer, "mixer.conv1d.weight"));
        break;
    case PC_X_PROJ_BC:
        n = push(out, n, layer_tensor(m, layer, "mixer.x_proj.weight"), R * E, 2 * N * E);
        break;
    case PC_DT:
        n = push(out, n, layer_tensor(m, layer, "mixer.x_proj.weight"), 0, R * E);
        n = push_whole(m, out, n, layer_tensor(m, layer, "mixer.dt_proj.weight"));
        break;
    case PC_A_LOG:
        n = push_whole(m, out, n, layer_tensor(m, layer, "mixer.A_log"));
        break;
    case PC_D:
        n = push_whole(m, out, n, layer_tensor(m, layer, "mixer.D"));
        break;
    case PC_LAYER: {
        static const char *const mats[] = {"mixer.in_proj.weight", "mixer.conv1d.weight", "mixer.x_proj.weight",
                                           "mixer.dt_proj.weight", "mixer.out_proj.weight", "mlp.fc1.weight",
                                           "mlp.fc2.weight"};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
            n = push_whole(m, out, n, layer_tensor(m, layer, mats[i]));
        break;
    }
    case PC_COUNT:
        break;
    }
    return n;
}

int prune_component_owned(const model *m, prune_component c, int layer, prune_slice *out)
{
    if (!valid_layer(m, layer)) return 0;
    int n = 0;
    switch (c) {
    case PC_IN_PROJ:
        n = push_whole(m, out, n, layer_tensor(m, layer, "norm.weight"));
        n += prune_component_slices(m, c, layer, out + n);
        break;
    case PC_CONV1D:
        n = prune_component_slices(m, c, layer, out);
        n = push_whole(m, out, n, layer_tensor(m, layer, "mixer.conv1d.bias"));
        break;
    case PC_DT:
        n = prune_component_slices(m, c, layer, out);
        n = push_whole(m, out, n, layer_tensor(m, layer, "mixer.dt_proj.bias"));
        break;
    case PC_MLP:
        if (m->cfg.layers[layer].M <= 0) break;
        n = push_whole(m, out, n, layer_tensor(m, layer, "norm2.weight"));
        n = push_whole(m, out, n, layer_tensor(m, layer, "mlp.fc1.weight"));
        n = push_whole(m, out, n, layer_tensor(m, layer, "mlp.fc1.bias"));
        n = push_whole(m, out, n, layer_tensor(m, layer, "mlp.fc2.weight"));
        n = push_whole(m, out, n, layer_tensor(m, layer, "mlp.fc2.bias"));
        break;
    case PC_LAYER:
        for (int t = 0; t < m->n_tensors && n < PRUNE_MAX_SLICES; t++)
            if (m->info[t].layer == layer) n = push_whole(m, out, n, t);
        break;
    default:
        n = prune_component_slices(m, c, layer, out);
        break;
    }
    return n;
}

size_t prune_component_params(const model *m, prune_component c, int layer)
{
    prune_slice s[PRUNE_MAX_SLICES];
    int n = prune_component_owned(m, c, layer, s);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += s[i].count;
    return total;
}

int prune_component_units(const model *m, prune_component c, int layer)
{
    if (!valid_layer(m, layer)) return 0;
    const layer_dims *ld = &m->cfg.layers[layer];
    switch (c) {
    case PC_OUT_PROJ: return m->cfg.d;
    case PC_MLP: return ld->M > 0 ? ld->M : 0;
    case PC_GATE:
    case PC_IN_PROJ: return ld->E;
    case PC_CONV1D: return ld->K;
    case PC_X_PROJ_BC: return ld->N;
    case PC_DT: return ld->R;
    case PC_LAYER: return 1;
    default: return 0;
    }
}

/* ------------------------------------------------------------------ model type */

/* 1 when tensor t exists under `name` with the given shape (unused trailing dims = 0). */
static int has_shape(const model *m, const char *name, int ndim, int64_t a, int64_t b, int64_t c)
{
    const param_info *p = model_find(m, name);
    if (!p || p->ndim != ndim) return 0;
    int64_t s[3] = {a, b, c};
    for (int i = 0; i < ndim; i++)
        if (p->shape[i] != s[i]) return 0;
    return 1;
}

int prune_is_mamba_model(const model *m)
{
    if (!m || !m->info || !m->params || m->n_tensors <= 0) return 0;
    const model_config *c = &m->cfg;
    int64_t d = c->d;
    if (d < 1 || c->n_layers < 0 || c->n_layers > MODEL_MAX_LAYERS) return 0;
    if (c->task == MODEL_TASK_LM) { /* HF MambaForCausalLM: embeddings, norm_f, lm_head unless tied */
        if (!has_shape(m, "backbone.embeddings.weight", 2, c->vocab, d, 0) ||
            !has_shape(m, "backbone.norm_f.weight", 1, d, 0, 0) ||
            (!c->tied && !has_shape(m, "lm_head.weight", 2, c->vocab, d, 0)) || (c->tied && model_find(m, "lm_head.weight")))
            return 0;
    } else if (!has_shape(m, "patch_embed.weight", 2, d, (int64_t)c->C * c->P * c->P, 0) ||
               !has_shape(m, "pos_embed", 2, c->L, d, 0) || !has_shape(m, "backbone.norm_f.weight", 1, d, 0, 0) ||
               !has_shape(m, "head.weight", 2, c->classes, d, 0)) {
        return 0;
    }
    for (int i = 0; i < c->n_layers; i++) {
        const layer_dims *ld = &c->layers[i];
        int64_t E = ld->E, N = ld->N, R = ld->R, K = ld->K, M = ld->M;
        if (E < 1 || N < 1 || R < 1 || K < 1 || M < 0) return 0;
        char nm[128];
#define HAS(suffix, nd, a, b, cc)                                                     \
    (snprintf(nm, sizeof nm, "backbone.layers.%d.%s", i, suffix), has_shape(m, nm, nd, a, b, cc))
        if (!HAS("norm.weight", 1, d, 0, 0) || !HAS("mixer.in_proj.weight", 2, 2 * E, d, 0) ||
            !HAS("mixer.conv1d.weight", 3, E, 1, K) || !HAS("mixer.conv1d.bias", 1, E, 0, 0) ||
            !HAS("mixer.x_proj.weight", 2, R + 2 * N, E, 0) || !HAS("mixer.dt_proj.weight", 2, E, R, 0) ||
            !HAS("mixer.dt_proj.bias", 1, E, 0, 0) || !HAS("mixer.A_log", 2, E, N, 0) ||
            !HAS("mixer.D", 1, E, 0, 0) || !HAS("mixer.out_proj.weight", 2, d, E, 0))
            return 0;
        if (M > 0 && (!HAS("norm2.weight", 1, d, 0, 0) || !HAS("mlp.fc1.weight", 2, M, d, 0) ||
                      !HAS("mlp.fc1.bias", 1, M, 0, 0) || !HAS("mlp.fc2.weight", 2, d, M, 0) ||
                      !HAS("mlp.fc2.bias", 1, d, 0, 0)))
            return 0;
#undef HAS
        snprintf(nm, sizeof nm, "backbone.layers.%d.mlp.fc1.weight", i);
        if (M == 0 && model_find(m, nm)) return 0;
        /* the nine components partition the block: nothing unknown hides in it */
        size_t sum = 0;
        for (int comp = 0; comp < PC_LAYER; comp++) sum += prune_component_params(m, (prune_component)comp, i);
        if (sum != prune_component_params(m, PC_LAYER, i)) return 0;
    }
    for (int t = 0; t < m->n_tensors; t++)
        if (m->info[t].layer >= c->n_layers) return 0;
    return 1;
}
