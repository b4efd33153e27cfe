/* model.c — the patch-Mamba classifier and the causal LM: parameter layout, initialisation,
 * masks, activations and the forward/backward passes (DESIGN.md section 3).
 *
 * Layout: model_layout() turns a model_config into the size table m->info (checkpoint order) and
 * one float block per family (params, grads, mask). Views in m->w / m->g point into the blocks.
 * Activations: one block per model_acts, carved into named per-layer views. With training = 0
 * every layer shares one set of buffers (the residual stream is updated in place) and the scan
 * keeps no states, so inference memory does not grow with depth. Inference without an observer
 * takes a fused path (layer_forward_infer: fewer passes over memory, chunks of samples that stay
 * in cache); the training forward and observed forwards run the unfused ops that backward and
 * the calibration hooks rely on. Both compute the same function up to float rounding.
 *
 * Causal LM (details DESIGN.md 3 leaves open, fixed here):
 * - Layout (checkpoint order): backbone.embeddings.weight (V, d), the layers, norm_f, then
 *   lm_head.weight (V, d) only when untied. Embedding and lm_head count as 2-D weight matrices
 *   for weight decay. Init: embeddings N(0, 0.02) drawn first, the layers exactly as the
 *   image model's, an untied head U(+-1/sqrt(d)) last; init --task lm ties by default.
 * - T (tokens per window) is not part of the model: model_acts_new_lm sizes the activations
 *   for B x T, and a forward may use any 2 <= T' <= T. Windows are independent samples, so the
 *   threading below splits a batch of windows exactly as a batch of images.
 * - The head and the cross-entropy run in chunks of MODEL_CE_ROWS rows (ops.c
 *   lmhead_ce_forward/backward): the training forward keeps only each row's log-sum-exp; backward
 *   recomputes each chunk's logits (one extra (rows, d) x (d, V) GEMM) instead of keeping
 *   (B*T, V) floats. Full logits exist only with keep_logits.
 * - Loss = sum over the B*(T-1) predicted positions / (B*(T-1)); each slice returns its sum.
 *
 * Letters: d d_model, E d_inner, N d_state, R dt_rank, K d_conv, M MLP width, P patch,
 * L tokens (image L, LM T), B batch, V classes or vocabulary, BL = B*L rows. */
#include "model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numerics.h"
#include "blas.h"
#include "ops.h"
#include "util.h"

/* ------------------------------------------------------------------ presets and config */

int model_config_from_hparams(model_config *cfg, const model_hparams *hp, int C, int H, int W, int classes,
                              char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    if (hp->d < 1 || hp->d > 65536) return pl_err(err, errlen, "d_model %d out of range [1, 65536]", hp->d);
    if (hp->n_layers < 1 || hp->n_layers > MODEL_MAX_LAYERS)
        return pl_err(err, errlen, "layers %d out of range [1, %d]", hp->n_layers, MODEL_MAX_LAYERS);
    if (hp->d_state < 1 || hp->d_state > 1024) return pl_err(err, errlen, "d_state %d out of range [1, 1024]", hp->d_state);
    if (hp->d_conv < 1 || hp->d_conv > 64) return pl_err(err, errlen, "d_conv %d out of range [1, 64]", hp->d_conv);
    if (!(hp->expand > 0.0f) || hp->expand > 64.0f) return pl_err(err, errlen, "expand %g out of range (0, 64]", hp->expand);
    if (!(hp->mlp_ratio >= 0.0f) || hp->mlp_ratio > 64.0f)
        return pl_err(err, errlen, "mlp_ratio %g out of range [0, 64]", hp->mlp_ratio);
    if (hp->patch < 1) return pl_err(err, errlen, "patch %d must be >= 1", hp->patch);
    if (C < 1 || C > 3 || H < 1 || W < 1) return pl_err(err, errlen, "image shape %dx%dx%d not supported", C, H, W);
    if (H % hp->patch || W % hp->patch)
        return pl_err(err, errlen, "image %dx%d is not divisible by the patch size %d", H, W, hp->patch);
    if (classes < 2) return pl_err(err, errlen, "classes %d must be >= 2", classes);
    int E = (int)lroundf(hp->expand * (float)hp->d);
    if (E < 1) return pl_err(err, errlen, "expand %g gives d_inner 0", hp->expand);
    int M = (int)lroundf(hp->mlp_ratio * (float)hp->d);
    int R = hp->dt_rank > 0 ? hp->dt_rank : (hp->d + 15) / 16;
    cfg->d = hp->d;
    cfg->n_layers = hp->n_layers;
    cfg->C = C, cfg->H = H, cfg->W = W, cfg->P = hp->patch;
    cfg->L = (H / hp->patch) * (W / hp->patch);
    cfg->classes = classes;
    for (int i = 0; i < hp->n_layers; i++) {
        cfg->layers[i] = (layer_dims){.E = E, .N = hp->d_state, .R = R, .K = hp->d_conv, .M = M};
        cfg->orig_index[i] = i;
    }
    for (int c = 0; c < 3; c++) cfg->norm_mean[c] = 0.0f, cfg->norm_std[c] = 1.0f;
    cfg->eps = PL_RMSNORM_EPS;
    return 0;
}

const char *const model_task_names[MODEL_TASK_COUNT + 1] = {"image_classifier", "causal_lm", NULL};

int model_config_lm(model_config *cfg, const model_hparams *hp, int V, int tied, char *err, size_t errlen)
{
    /* the backbone checks of the image path, on a dummy 1x1 image with patch 1 */
    model_hparams h = *hp;
    h.patch = 1;
    if (model_config_from_hparams(cfg, &h, 1, 1, 1, 2, err, errlen) != 0) return -1;
    if (V < 2 || V > (1 << 24)) return pl_err(err, errlen, "vocab %d out of range [2, %d]", V, 1 << 24);
    cfg->task = MODEL_TASK_LM;
    cfg->C = cfg->H = cfg->W = cfg->P = cfg->L = cfg->classes = 0;
    cfg->vocab = V;
    cfg->tied = tied ? 1 : 0;
    return 0;
}

/* ------------------------------------------------------------------ layout */

static void add_tensor(model *m, int *cap, int layer, int decay, const char *name, int ndim, int64_t s0,
                       int64_t s1, int64_t s2)
{
    if (m->n_tensors == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        m->info = xrealloc(m->info, (size_t)*cap * sizeof *m->info);
    }
    param_info *p = &m->info[m->n_tensors++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    int64_t s[3] = {s0, s1, s2};
    p->numel = 1;
    for (int i = 0; i < ndim; i++) p->shape[i] = s[i], p->numel *= (size_t)s[i];
    p->offset = m->n_params;
    p->layer = layer;
    p->decay = decay;
    m->n_params += p->numel;
}

/* Build the size table for m->cfg (checkpoint order). */
static void model_layout(model *m)
{
    const model_config *c = &m->cfg;
    int cap = 0;
    char nm[96];
    m->n_tensors = 0;
    m->n_params = 0;
    int cpp = c->C * c->P * c->P, lm = c->task == MODEL_TASK_LM;
    if (lm) {
        add_tensor(m, &cap, -1, 1, "backbone.embeddings.weight", 2, c->vocab, c->d, 0);
    } else {
        add_tensor(m, &cap, -1, 1, "patch_embed.weight", 2, c->d, cpp, 0);
        add_tensor(m, &cap, -1, 0, "patch_embed.bias", 1, c->d, 0, 0);
        add_tensor(m, &cap, -1, 0, "pos_embed", 2, c->L, c->d, 0);
    }
    for (int i = 0; i < c->n_layers; i++) {
        const layer_dims *ld = &c->layers[i];
#define LT(decay, suffix, ndim, a, b, cc)                                      \
    do {                                                                       \
        snprintf(nm, sizeof nm, "backbone.layers.%d.%s", i, suffix);           \
        add_tensor(m, &cap, i, decay, nm, ndim, a, b, cc);                     \
    } while (0)
        LT(0, "norm.weight", 1, c->d, 0, 0);
        LT(1, "mixer.in_proj.weight", 2, 2 * ld->E, c->d, 0);
        LT(1, "mixer.conv1d.weight", 3, ld->E, 1, ld->K);
        LT(0, "mixer.conv1d.bias", 1, ld->E, 0, 0);
        LT(1, "mixer.x_proj.weight", 2, ld->R + 2 * ld->N, ld->E, 0);
        LT(1, "mixer.dt_proj.weight", 2, ld->E, ld->R, 0);
        LT(0, "mixer.dt_proj.bias", 1, ld->E, 0, 0);
        LT(0, "mixer.A_log", 2, ld->E, ld->N, 0);
        LT(0, "mixer.D", 1, ld->E, 0, 0);
        LT(1, "mixer.out_proj.weight", 2, c->d, ld->E, 0);
        if (ld->M > 0) {
            LT(0, "norm2.weight", 1, c->d, 0, 0);
            LT(1, "mlp.fc1.weight", 2, ld->M, c->d, 0);
            LT(0, "mlp.fc1.bias", 1, ld->M, 0, 0);
            LT(1, "mlp.fc2.weight", 2, c->d, ld->M, 0);
            LT(0, "mlp.fc2.bias", 1, c->d, 0, 0);
        }
#undef LT
    }
    add_tensor(m, &cap, -1, 0, "backbone.norm_f.weight", 1, c->d, 0, 0);
    if (lm) {
        if (!c->tied) add_tensor(m, &cap, -1, 1, "lm_head.weight", 2, c->vocab, c->d, 0);
    } else {
        add_tensor(m, &cap, -1, 1, "head.weight", 2, c->classes, c->d, 0);
        add_tensor(m, &cap, -1, 0, "head.bias", 1, c->classes, 0, 0);
    }
}

/* Point the named views of v into block (NULL block -> all views NULL). Relies on the order
 * written by model_layout. */
static void model_point(const model *m, model_params *v, float *block)
{
    memset(v, 0, sizeof *v);
    if (!block) return;
    int k = 0;
    const param_info *in = m->info;
#define NEXT() (block + in[k++].offset)
    int lm = m->cfg.task == MODEL_TASK_LM;
    if (lm) {
        v->embed = NEXT();
    } else {
        v->patch_w = NEXT();
        v->patch_b = NEXT();
        v->pos = NEXT();
    }
    for (int i = 0; i < m->cfg.n_layers; i++) {
        layer_params *lp = &v->layers[i];
        lp->norm_w = NEXT();
        lp->in_proj_w = NEXT();
        lp->conv_w = NEXT();
        lp->conv_b = NEXT();
        lp->x_proj_w = NEXT();
        lp->dt_proj_w = NEXT();
        lp->dt_proj_b = NEXT();
        lp->A_log = NEXT();
        lp->D = NEXT();
        lp->out_proj_w = NEXT();
        if (m->cfg.layers[i].M > 0) {
            lp->norm2_w = NEXT();
            lp->fc1_w = NEXT();
            lp->fc1_b = NEXT();
            lp->fc2_w = NEXT();
            lp->fc2_b = NEXT();
        }
    }
    v->norm_f_w = NEXT();
    if (!lm) {
        v->head_w = NEXT();
        v->head_b = NEXT();
    } else if (!m->cfg.tied) {
        v->head_w = NEXT();
    }
#undef NEXT
}

int model_alloc(model *m, const model_config *cfg, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (cfg->n_layers < 0 || cfg->n_layers > MODEL_MAX_LAYERS)
        return pl_err(err, errlen, "layer count %d out of range [0, %d]", cfg->n_layers, MODEL_MAX_LAYERS);
    if ((unsigned)cfg->task >= MODEL_TASK_COUNT) return pl_err(err, errlen, "invalid model task %d", (int)cfg->task);
    if (cfg->task == MODEL_TASK_LM) {
        if (cfg->d < 1 || cfg->vocab < 1)
            return pl_err(err, errlen, "invalid LM config (d %d, vocab %d)", cfg->d, cfg->vocab);
    } else if (cfg->d < 1 || cfg->L < 1 || cfg->classes < 1 || cfg->C < 1 || cfg->P < 1) {
        return pl_err(err, errlen, "invalid model config (d %d, tokens %d, classes %d)", cfg->d, cfg->L, cfg->classes);
    }
    if (!(cfg->eps >= 0.0f) || cfg->eps > 1.0f) return pl_err(err, errlen, "layer_norm_epsilon %g out of range", cfg->eps);
    for (int i = 0; i < cfg->n_layers; i++) {
        const layer_dims *l = &cfg->layers[i];
        if (l->E < 1 || l->N < 1 || l->R < 1 || l->K < 1 || l->M < 0)
            return pl_err(err, errlen, "layer %d has invalid dims (E %d, N %d, R %d, K %d, M %d)", i, l->E, l->N,
                          l->R, l->K, l->M);
    }
    m->cfg = *cfg;
    if (m->cfg.eps == 0.0f) m->cfg.eps = PL_RMSNORM_EPS;
    model_layout(m);
    m->params = xalloc_floats(m->n_params);
    model_point(m, &m->w, m->params);
    return 0;
}

const param_info *model_find(const model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->info[i].name, name) == 0) return &m->info[i];
    return NULL;
}

/* ------------------------------------------------------------------ initialisation */

static void fill_uniform(float *p, size_t n, float bound, pl_rng *r)
{
    for (size_t i = 0; i < n; i++) p[i] = (float)((2.0 * pl_rng_uniform(r) - 1.0) * bound);
}

static void fill_const(float *p, size_t n, float v)
{
    for (size_t i = 0; i < n; i++) p[i] = v;
}

/* mamba_ssm init (DESIGN.md 3), one tensor at a time in checkpoint order from one stream. */
int model_create(model *m, const model_config *cfg, uint64_t seed, char *err, size_t errlen)
{
    if (model_alloc(m, cfg, err, errlen) != 0) return -1;
    pl_rng r;
    pl_rng_seed(&r, seed);
    const model_config *c = &m->cfg;
    float layer_scale = 1.0f / sqrtf((float)(c->n_layers > 0 ? c->n_layers : 1));
    int cpp = c->C * c->P * c->P, lm = c->task == MODEL_TASK_LM;
    if (lm) {
        for (size_t i = 0; i < (size_t)c->vocab * c->d; i++) m->w.embed[i] = 0.02f * pl_rng_normal(&r);
    } else {
        fill_uniform(m->w.patch_w, (size_t)c->d * cpp, 1.0f / sqrtf((float)cpp), &r);
        for (size_t i = 0; i < (size_t)c->L * c->d; i++) m->w.pos[i] = 0.02f * pl_rng_normal(&r);
    }
    for (int i = 0; i < c->n_layers; i++) {
        const layer_dims *ld = &c->layers[i];
        layer_params *lp = &m->w.layers[i];
        int E = ld->E, N = ld->N, R = ld->R, K = ld->K, M = ld->M, d = c->d;
        fill_const(lp->norm_w, d, 1.0f);
        fill_uniform(lp->in_proj_w, (size_t)2 * E * d, 1.0f / sqrtf((float)d), &r);
        fill_uniform(lp->conv_w, (size_t)E * K, 1.0f / sqrtf((float)K), &r);
        fill_uniform(lp->x_proj_w, (size_t)(R + 2 * N) * E, 1.0f / sqrtf((float)E), &r);
        fill_uniform(lp->dt_proj_w, (size_t)E * R, 1.0f / sqrtf((float)R), &r);
        /* dt = exp(U(ln 1e-3, ln 1e-1)) clamped at 1e-4; bias = softplus^-1(dt) */
        for (int e = 0; e < E; e++) {
            double lo = log(1e-3), hi = log(1e-1);
            double dt = exp(lo + (hi - lo) * pl_rng_uniform(&r));
            if (dt < 1e-4) dt = 1e-4;
            lp->dt_proj_b[e] = pl_softplus_inv((float)dt);
        }
        for (int e = 0; e < E; e++)
            for (int n = 0; n < N; n++) lp->A_log[(size_t)e * N + n] = logf((float)(n + 1));
        fill_const(lp->D, E, 1.0f);
        fill_uniform(lp->out_proj_w, (size_t)d * E, layer_scale / sqrtf((float)E), &r);
        if (M > 0) {
            fill_const(lp->norm2_w, d, 1.0f);
            fill_uniform(lp->fc1_w, (size_t)M * d, 1.0f / sqrtf((float)d), &r);
            fill_uniform(lp->fc2_w, (size_t)d * M, layer_scale / sqrtf((float)M), &r);
        }
    }
    fill_const(m->w.norm_f_w, c->d, 1.0f);
    if (!lm) fill_uniform(m->w.head_w, (size_t)c->classes * c->d, 1.0f / sqrtf((float)c->d), &r);
    else if (!c->tied) fill_uniform(m->w.head_w, (size_t)c->vocab * c->d, 1.0f / sqrtf((float)c->d), &r);
    return 0;
}

void model_free(model *m)
{
    if (!m) return;
    free(m->params);
    free(m->grads);
    free(m->mask);
    free(m->info);
    memset(m, 0, sizeof *m);
}

void model_alloc_grads(model *m)
{
    if (m->grads) return;
    m->grads = xalloc_floats(m->n_params);
    model_point(m, &m->g, m->grads);
}

void model_zero_grads(model *m)
{
    if (m->grads) memset(m->grads, 0, m->n_params * sizeof(float));
}

void model_alloc_mask(model *m)
{
    if (m->mask) return;
    m->mask = xalloc_floats(m->n_params);
    fill_const(m->mask, m->n_params, 1.0f);
}

int model_copy(model *dst, const model *src, char *err, size_t errlen)
{
    memset(dst, 0, sizeof *dst);
    if (model_alloc(dst, &src->cfg, err, errlen) != 0) return -1;
    memcpy(dst->params, src->params, src->n_params * sizeof(float));
    if (src->mask) {
        model_alloc_mask(dst);
        memcpy(dst->mask, src->mask, src->n_params * sizeof(float));
    }
    return 0;
}

void model_shape(const model *m, spec_shape *sh)
{
    memset(sh, 0, sizeof *sh);
    sh->d = m->cfg.d;
    sh->n_layers = m->cfg.n_layers;
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const layer_dims *l = &m->cfg.layers[i];
        sh->layers[i] = (spec_layer_dims){l->E, l->N, l->R, l->K, l->M};
    }
}

size_t model_count_nonzero(const model *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_params; i++) n += m->params[i] != 0.0f;
    return n;
}

void model_apply_mask(model *m)
{
    if (!m->mask) return;
    for (size_t i = 0; i < m->n_params; i++) m->params[i] *= m->mask[i];
    if (m->grads)
        for (size_t i = 0; i < m->n_params; i++) m->grads[i] *= m->mask[i];
}

/* ------------------------------------------------------------------ FLOPs */

double model_flops_per_sample(const model_config *c)
{
    int lm = c->task == MODEL_TASK_LM;
    double d = c->d, L = lm ? 1.0 : c->L, cpp = (double)c->C * c->P * c->P;
    double f = lm ? d : 2.0 * L * d * cpp + L * d; /* embedding copy, or patch embed + pos */
    for (int i = 0; i < c->n_layers; i++) {
        const layer_dims *l = &c->layers[i];
        double E = l->E, N = l->N, R = l->R, K = l->K, M = l->M;
        double t = 0.0;
        t += 4.0 * d;                /* rmsnorm */
        t += 2.0 * 2.0 * E * d;      /* in_proj */
        t += 2.0 * E * K + 4.0 * E;  /* conv + bias + silu */
        t += 2.0 * (R + 2.0 * N) * E;/* x_proj */
        t += 2.0 * E * R + 2.0 * E;  /* dt_proj + softplus */
        t += 7.0 * E * N + 2.0 * E;  /* scan: exp, decay, input, readout; D skip */
        t += 5.0 * E;                /* gate */
        t += 2.0 * d * E + d;        /* out_proj + residual */
        if (l->M > 0) t += 4.0 * d + 4.0 * d * M + 3.0 * M + 2.0 * d; /* norm2, fc1, gelu, fc2, residual */
        f += L * t;
    }
    if (lm) f += 4.0 * d + 2.0 * c->vocab * d + 4.0 * c->vocab; /* norm_f, head, softmax */
    else f += 4.0 * L * d + L * d + 2.0 * c->classes * d; /* norm_f, mean, head */
    return f;
}

/* ------------------------------------------------------------------ activations */

typedef struct {
    float *h;     /* (BL, d) residual stream entering the layer */
    float *rstd1; /* (BL) */
    float *a;     /* (BL, d) norm(h) */
    float *x;     /* (BL, E) in_proj SSM branch */
    float *z;     /* (BL, E) in_proj gate branch */
    float *xc;    /* (BL, E) conv1d(x) */
    float *u;     /* (BL, E) silu(xc) */
    float *dtl;   /* (BL, R) */
    float *Bm;    /* (BL, N) */
    float *Cm;    /* (BL, N) */
    float *dtr;   /* (BL, E) dt_proj(dtl) + bias, before softplus */
    float *delta; /* (BL, E) */
    float *y;     /* (BL, E) scan output */
    float *g;     /* (BL, E) y * silu(z) */
    float *hmid;  /* (BL, d) residual after the mixer */
    float *rstd2; /* (BL) */
    float *a2;    /* (BL, d) */
    float *f1;    /* (BL, M) fc1 output before GELU */
    float *f1g;   /* (BL, M) */
    float *xdbl;  /* (BL, R+2N) x_proj output [dt_low | B | C] of the fused inference path, else NULL */
} layer_acts;

/* Rows of the LM head per chunk (ops.c lmhead_ce_*): a (rows, V) logits chunk is 25 MB at
 * V = 50,280, big enough for an efficient GEMM against the (V, d) head. */
#ifndef MODEL_CE_ROWS
#define MODEL_CE_ROWS 128
#endif

/* Activations of one slice of the batch (rows b0..b0+B of a model_acts). */
typedef struct {
    int B, training;
    int Lcap;        /* tokens per sample the buffers hold: image L, LM T */
    int L;           /* tokens per sample of the current pass (<= Lcap) */
    float *block;
    float *patches;  /* (BL, C*P*P), image only */
    int *tgt;        /* (BL) LM next-token targets, -1 at each window's last token */
    long correct;    /* LM: top-1 correct predictions of the last forward */
    float *lse;      /* (BL) LM per-row log-sum-exp of the logits (backward's cache) */
    float *cebuf;    /* (MODEL_CE_ROWS, V) LM logits chunk */
    layer_acts layers[MODEL_MAX_LAYERS];
    float *hL;       /* (BL, d) residual after the last layer */
    float *rstdf;    /* (BL) */
    float *hf;       /* (BL, d) norm_f(hL) */
    float *pooled;   /* (B, d) */
    float *logits;   /* (B, V) */
    float *probs;    /* (B, V) */
    float *losses;   /* (B) */
    float *tmp;      /* (BL, d) projection output before the residual add */
    float *tmp2;     /* (BL, d) mixer output kept for an observer (only with a hook) */
    float *wbuf;     /* (d, Emax) compact out_proj weight when rows are pruned */
    int *kept;       /* (d) kept out_proj rows */
    model_layer_hook hook;
    void *hook_user;
    /* backward scratch, sized by the widest layer */
    float *d_logits, *d_pooled, *d_hf, *dh, *d_a, *d_E1, *d_E2, *d_E3, *d_E4, *d_E5, *d_N1, *d_N2, *d_R, *d_M1,
        *d_M2;
} slice_acts;

/* Threading: a batch is split into up to ops_get_threads() contiguous slices, each with its own
 * activations; one parallel region runs every slice's whole forward (or backward) with
 * single-threaded kernels and BLAS, so a step has no barrier per op. Each slice but the first
 * accumulates weight gradients into a private block, added to m->grads in slice order after the
 * region (deterministic for a given thread count). A batch of one sample, or a model_acts with
 * an observer hook, runs its slices in order with the kernels' own threading instead. */
#define MODEL_MAX_SLICES 16
struct model_acts {
    int B, training, nslices;
    int T, keep_logits;              /* LM: window length the acts hold; full logits kept */
    slice_acts *s[MODEL_MAX_SLICES];
    float *logits;                   /* image (B, V) gathered from the slices; LM (B, T, V) or NULL */
    float *gblock[MODEL_MAX_SLICES]; /* (n_params) private gradients of slices 1.., lazily */
    model_layer_hook hook;
    void *hook_user;
};

/* Carving helper: first pass counts, second pass points. */
typedef struct {
    float *base;
    size_t used;
} carver;

static float *carve(carver *c, size_t n)
{
    float *p = c->base ? c->base + c->used : NULL;
    c->used += (n + 15) & ~(size_t)15; /* keep 64-byte alignment */
    return p;
}

static void acts_carve(slice_acts *a, const model *m, carver *cv)
{
    const model_config *c = &m->cfg;
    size_t BL = (size_t)a->B * a->Lcap, d = c->d;
    int lm = c->task == MODEL_TASK_LM;
    int Emax = 1, Nmax = 1, Rmax = 1, Mmax = 1;
    for (int i = 0; i < c->n_layers; i++) {
        const layer_dims *l = &c->layers[i];
        Emax = l->E > Emax ? l->E : Emax, Nmax = l->N > Nmax ? l->N : Nmax;
        Rmax = l->R > Rmax ? l->R : Rmax, Mmax = l->M > Mmax ? l->M : Mmax;
    }
    if (lm) {
        a->lse = carve(cv, BL);
        a->cebuf = carve(cv, (size_t)(BL < MODEL_CE_ROWS ? BL : MODEL_CE_ROWS) * c->vocab);
    } else {
        a->patches = carve(cv, BL * c->C * c->P * c->P);
    }
    layer_acts shared;
    for (int i = 0; i < c->n_layers; i++) {
        const layer_dims *l = &c->layers[i];
        layer_acts *la = &a->layers[i];
        if (!a->training && i > 0) {
            *la = shared;
            continue;
        }
        size_t E = a->training ? (size_t)l->E : (size_t)Emax, N = a->training ? (size_t)l->N : (size_t)Nmax;
        size_t R = a->training ? (size_t)l->R : (size_t)Rmax, M = a->training ? (size_t)l->M : (size_t)Mmax;
        la->h = carve(cv, BL * d);
        la->rstd1 = carve(cv, BL);
        la->a = carve(cv, BL * d);
        la->x = carve(cv, BL * E);
        la->z = carve(cv, BL * E);
        la->xc = carve(cv, BL * E);
        la->u = carve(cv, BL * E);
        la->dtl = carve(cv, BL * R);
        la->Bm = carve(cv, BL * N);
        la->Cm = carve(cv, BL * N);
        la->dtr = carve(cv, BL * E);
        la->delta = carve(cv, BL * E);
        la->y = carve(cv, BL * E);
        la->g = carve(cv, BL * E);
        /* inference: the mixer output lands in hmid = h (in place) */
        la->hmid = a->training ? carve(cv, BL * d) : la->h;
        la->rstd2 = carve(cv, BL);
        la->a2 = carve(cv, BL * d);
        la->f1 = carve(cv, BL * M);
        la->f1g = carve(cv, BL * M);
        la->xdbl = a->training ? NULL : carve(cv, BL * (R + 2 * N));
        shared = *la;
    }
    a->hL = a->training || c->n_layers == 0 ? carve(cv, BL * d) : a->layers[0].h;
    a->rstdf = carve(cv, BL);
    a->hf = carve(cv, BL * d);
    if (!lm) {
        a->pooled = carve(cv, (size_t)a->B * d);
        a->logits = carve(cv, (size_t)a->B * c->classes);
        a->probs = carve(cv, (size_t)a->B * c->classes);
        a->losses = carve(cv, (size_t)a->B);
    }
    a->tmp = carve(cv, BL * d);
    a->tmp2 = carve(cv, BL * d);
    a->wbuf = carve(cv, d * (size_t)Emax);
    if (a->training) {
        if (!lm) {
            a->d_logits = carve(cv, (size_t)a->B * c->classes);
            a->d_pooled = carve(cv, (size_t)a->B * d);
        }
        a->d_hf = carve(cv, BL * d);
        a->dh = carve(cv, BL * d);
        a->d_a = carve(cv, BL * d);
        a->d_E1 = carve(cv, BL * Emax);
        a->d_E2 = carve(cv, BL * Emax);
        a->d_E3 = carve(cv, BL * Emax);
        a->d_E4 = carve(cv, BL * Emax);
        a->d_E5 = carve(cv, BL * Emax);
        a->d_N1 = carve(cv, BL * Nmax);
        a->d_N2 = carve(cv, BL * Nmax);
        a->d_R = carve(cv, BL * Rmax);
        a->d_M1 = carve(cv, BL * Mmax);
        a->d_M2 = carve(cv, BL * Mmax);
    }
}

static slice_acts *slice_new(const model *m, int B, int L, int training)
{
    slice_acts *a = xcalloc(1, sizeof *a);
    a->B = B;
    a->training = training;
    a->Lcap = a->L = L;
    carver cv = {NULL, 0};
    acts_carve(a, m, &cv);
    a->block = xalloc_floats(cv.used);
    cv = (carver){a->block, 0};
    acts_carve(a, m, &cv);
    a->kept = xcalloc((size_t)m->cfg.d, sizeof(int));
    if (m->cfg.task == MODEL_TASK_LM) a->tgt = xcalloc((size_t)B * L, sizeof(int));
    return a;
}

static void slice_free(slice_acts *a)
{
    if (!a) return;
    free(a->block);
    free(a->kept);
    free(a->tgt);
    free(a);
}

static model_acts *acts_new(const model *m, int B, int L, int training)
{
    model_acts *a = xcalloc(1, sizeof *a);
    int T = ops_get_threads();
    T = T < 1 ? 1 : T > MODEL_MAX_SLICES ? MODEL_MAX_SLICES : T;
    if (T > B) T = B > 0 ? B : 1;
    a->B = B;
    a->training = training;
    a->nslices = T;
    omp_set_max_active_levels(1); /* kernels inside a slice region run single-threaded */
    for (int k = 0; k < T; k++) a->s[k] = slice_new(m, (B + T - 1) / T, L, training);
    return a;
}

model_acts *model_acts_new(const model *m, int B, int training)
{
    if (m->cfg.task != MODEL_TASK_IMAGE)
        pl_die(NULL, "internal: model_acts_new on a causal LM (use model_acts_new_lm)");
    model_acts *a = acts_new(m, B, m->cfg.L, training);
    a->logits = xalloc_floats((size_t)(B > 0 ? B : 1) * m->cfg.classes);
    return a;
}

model_acts *model_acts_new_lm(const model *m, int B, int T, int training, int keep_logits)
{
    if (m->cfg.task != MODEL_TASK_LM) pl_die(NULL, "internal: model_acts_new_lm on an image model");
    if (B < 1 || T < 1) pl_die(NULL, "internal: model_acts_new_lm with batch %d x %d tokens", B, T);
    model_acts *a = acts_new(m, B, T, training);
    a->T = T;
    a->keep_logits = keep_logits ? 1 : 0;
    if (keep_logits) a->logits = xalloc_floats((size_t)B * T * m->cfg.vocab);
    return a;
}

void model_acts_free(model_acts *a)
{
    if (!a) return;
    for (int k = 0; k < a->nslices; k++) {
        slice_free(a->s[k]);
        free(a->gblock[k]);
    }
    free(a->logits);
    free(a);
}

const float *model_acts_logits(const model_acts *a) { return a->logits; }

void model_acts_set_hook(model_acts *a, model_layer_hook fn, void *user)
{
    a->hook = fn;
    a->hook_user = user;
    for (int k = 0; k < a->nslices; k++) a->s[k]->hook = fn, a->s[k]->hook_user = user;
}

/* Slices used for a batch of B: at most nslices, at most B; slice k holds rows [b0(k), b0(k+1)). */
static int slices_for(const model_acts *a, int B) { return a->nslices < B ? a->nslices : (B > 0 ? B : 1); }
static int slice_b0(int B, int T, int k) { return (int)((long)B * k / T); }

/* ------------------------------------------------------------------ forward */

/* out (BL, d) = g (BL, E) @ W^T, W (d, E). Output rows of W that are entirely zero (structured
 * out_proj pruning: d cannot shrink, so pruned rows stay as zero rows) are skipped: the kept rows
 * are gathered into wbuf (d', E), one (BL, E) x (E, d') GEMM writes a compact (BL, d') result into
 * out, which is then spread in place to (BL, d) with zeros in the pruned columns (rows and
 * columns walked backwards, so nothing is overwritten before it is read). */
static void out_proj_forward(float *out, float *wbuf, int *kept, const float *g, const float *W, int BL, int E, int d)
{
    int dk = 0;
    for (int j = 0; j < d; j++) {
        const float *row = W + (size_t)j * E;
        int nz = 0;
        for (int e = 0; e < E && !nz; e++) nz = row[e] != 0.0f;
        if (nz) kept[dk++] = j;
    }
    if (dk == d) {
        matmul_forward(out, g, W, NULL, BL, E, d);
        return;
    }
    for (int k = 0; k < dk; k++) memcpy(wbuf + (size_t)k * E, W + (size_t)kept[k] * E, (size_t)E * sizeof(float));
    if (dk > 0) matmul_forward(out, g, wbuf, NULL, BL, E, dk);
    for (long r = BL - 1; r >= 0; r--) {
        float *dst = out + (size_t)r * d;
        const float *src = out + (size_t)r * dk;
        int k = dk - 1;
        for (int j = d - 1; j >= 0; j--) dst[j] = (k >= 0 && kept[k] == j) ? src[k--] : 0.0f;
    }
}

/* Rows (tokens) per chunk of the inference forward: the chunk's activations (x, z, u, g: rows x E
 * floats each) stay in L2 while the GEMMs still see a few hundred rows. */
#ifndef MODEL_INFER_ROWS
#define MODEL_INFER_ROWS 512
#endif

/* h (BL, d) += g (BL, E) @ W^T, W (d, E), straight into the residual stream (inference). Output
 * rows of W that are entirely zero (structured out_proj pruning) are skipped as in
 * out_proj_forward: the kept rows go through one compact GEMM into cbuf (BL, d'), which is then
 * added to the kept columns of h. kept (d) is scratch. */
static void out_proj_residual(float *h, float *cbuf, float *wbuf, int *kept, const float *g, const float *W, int BL,
                              int E, int d)
{
    int dk = 0;
    for (int j = 0; j < d; j++) {
        const float *row = W + (size_t)j * E;
        int nz = 0;
        for (int e = 0; e < E && !nz; e++) nz = row[e] != 0.0f;
        if (nz) memcpy(wbuf + (size_t)dk * E, row, (size_t)E * sizeof(float)), kept[dk++] = j;
    }
    if (dk == d) {
        matmul_forward_acc(h, d, g, W, BL, E, d);
        return;
    }
    if (dk == 0) return;
    matmul_forward(cbuf, g, wbuf, NULL, BL, E, dk);
    add_cols_forward(h, cbuf, dk, kept, dk, BL, d);
}

/* Inference forward of one layer (no observer, no backward) on samples b0 .. b0+B of the slice:
 * their rows of the residual stream h are updated in place; the other buffers are scratch used
 * from row 0, so a small chunk keeps reusing the same cache-resident memory. Same math as
 * layer_forward in fewer passes over memory: conv1d + SiLU in one kernel; one x_proj GEMM into
 * xdbl = [dt_low | B | C]; dt_proj, softplus, the scan and the gate fused per block of channels
 * (ssm_gate_forward: delta, y and the pre-softplus dt are never written); out_proj and fc2
 * accumulate into h in the GEMM (no temporary, no residual pass; pruned out_proj rows skipped).
 * Only float rounding differs from layer_forward (summation order, FMA contraction). */
static void layer_forward_infer(const model *m, slice_acts *ma, int li, int b0, int B)
{
    layer_acts *la = &ma->layers[li];
    const layer_params *w = &m->w.layers[li];
    const layer_dims *ld = &m->cfg.layers[li];
    const model_config *c = &m->cfg;
    int L = ma->L, d = c->d, BL = B * L;
    float eps = c->eps;
    int E = ld->E, N = ld->N, R = ld->R, K = ld->K, M = ld->M, X = R + 2 * N;
    float *h = la->h + (size_t)b0 * L * d; /* samples b0 .. b0+B of the slice; scratch from row 0 */
    /* a = h * w / sqrt(mean(h^2) + eps) */
    rmsnorm_forward(la->a, NULL, h, w->norm_w, BL, d, eps);
    /* [x | z] = in_proj(a) */
    matmul_forward(la->x, la->a, w->in_proj_w, NULL, BL, d, E);
    matmul_forward(la->z, la->a, w->in_proj_w + (size_t)E * d, NULL, BL, d, E);
    /* u = silu(conv1d(x)) */
    conv1d_silu_forward(la->u, NULL, la->x, w->conv_w, w->conv_b, B, L, E, K);
    /* [dt_low | B | C] = x_proj(u): one GEMM over the three row groups */
    matmul_forward(la->xdbl, la->u, w->x_proj_w, NULL, BL, E, X);
    /* g = selective_scan(u, softplus(dt_proj(dt_low)), A, B, C, D) * silu(z) */
    ssm_gate_forward(la->g, la->u, la->z, la->xdbl, X, w->dt_proj_w, w->dt_proj_b, w->A_log, w->D, B, L, E, N, R);
    /* h += out_proj(g) */
    out_proj_residual(h, ma->tmp, ma->wbuf, ma->kept, la->g, w->out_proj_w, BL, E, d);
    if (M > 0) {
        /* h += fc2(gelu(fc1(norm2(h)))): fc2's bias joins h in the norm's pass, the GEMM adds the rest */
        rmsnorm_addbias_forward(la->a2, h, w->norm2_w, w->fc2_b, BL, d, eps);
        matmul_forward(la->f1, la->a2, w->fc1_w, w->fc1_b, BL, d, M);
        gelu_forward(la->f1g, la->f1, (size_t)BL * M);
        matmul_forward_acc(h, d, la->f1g, w->fc2_w, BL, M, d);
    }
}

/* One Mamba layer: hmid = h + mixer(norm(h)); hout = hmid + mlp(norm2(hmid)) if M > 0.
 * In inference hmid == h == hout (in place). tmp (BL, d) is scratch. */
static void layer_forward(const model *m, slice_acts *ma, int li, float *hout, int B)
{
    layer_acts *la = &ma->layers[li];
    const layer_params *w = &m->w.layers[li];
    const layer_dims *ld = &m->cfg.layers[li];
    float *tmp = ma->tmp;
    const model_config *c = &m->cfg;
    int L = ma->L, d = c->d, BL = B * L;
    float eps = c->eps;
    int E = ld->E, N = ld->N, R = ld->R, K = ld->K, M = ld->M;
    size_t nd = (size_t)BL * d, ne = (size_t)BL * E;
    /* a = h * w / sqrt(mean(h^2) + eps) */
    rmsnorm_forward(la->a, la->rstd1, la->h, w->norm_w, BL, d, eps);
    /* [x | z] = in_proj(a): weight rows 0..E-1 -> x, rows E..2E-1 -> z */
    matmul_forward(la->x, la->a, w->in_proj_w, NULL, BL, d, E);
    matmul_forward(la->z, la->a, w->in_proj_w + (size_t)E * d, NULL, BL, d, E);
    /* u = silu(conv1d(x)) */
    conv1d_forward(la->xc, la->x, w->conv_w, w->conv_b, B, L, E, K);
    silu_forward(la->u, la->xc, ne);
    /* [dt_low | B | C] = x_proj(u) */
    matmul_forward(la->dtl, la->u, w->x_proj_w, NULL, BL, E, R);
    matmul_forward(la->Bm, la->u, w->x_proj_w + (size_t)R * E, NULL, BL, E, N);
    matmul_forward(la->Cm, la->u, w->x_proj_w + (size_t)(R + N) * E, NULL, BL, E, N);
    /* delta = softplus(dt_proj(dt_low) + b) */
    matmul_forward(la->dtr, la->dtl, w->dt_proj_w, w->dt_proj_b, BL, R, E);
    softplus_forward(la->delta, la->dtr, ne);
    /* y = selective_scan(u, delta, A = -exp(A_log), B, C, D) */
    scan_forward(la->y, NULL, la->u, la->delta, w->A_log, la->Bm, la->Cm, w->D, B, L, E, N);
    /* hmid = h + out_proj(y * silu(z)) */
    gate_forward(la->g, la->y, la->z, ne);
    out_proj_forward(tmp, ma->wbuf, ma->kept, la->g, w->out_proj_w, BL, E, d);
    for (size_t i = 0; i < nd; i++) la->hmid[i] = la->h[i] + tmp[i];
    model_layer_view v = {.layer = li, .rows = BL, .a = la->a, .x = la->x, .z = la->z, .u = la->u, .dtl = la->dtl,
                          .Bm = la->Bm, .Cm = la->Cm, .delta = la->delta, .y = la->y, .g = la->g, .mix_out = tmp};
    if (ma->hook && M > 0) { /* tmp is reused by fc2 below */
        memcpy(ma->tmp2, tmp, nd * sizeof(float));
        v.mix_out = ma->tmp2;
    }
    if (M > 0) {
        /* hout = hmid + fc2(gelu(fc1(norm2(hmid)))) */
        rmsnorm_forward(la->a2, la->rstd2, la->hmid, w->norm2_w, BL, d, eps);
        matmul_forward(la->f1, la->a2, w->fc1_w, w->fc1_b, BL, d, M);
        gelu_forward(la->f1g, la->f1, (size_t)BL * M);
        matmul_forward(tmp, la->f1g, w->fc2_w, w->fc2_b, BL, M, d);
        for (size_t i = 0; i < nd; i++) hout[i] = la->hmid[i] + tmp[i];
        v.a2 = la->a2, v.f1g = la->f1g, v.mlp_out = tmp;
    } else if (hout != la->hmid) {
        memcpy(hout, la->hmid, nd * sizeof(float));
    }
    if (ma->hook) ma->hook(&v, ma->hook_user);
}

/* Every layer on the slice's B samples of a->L tokens: h0 in layers[0].h (or hL without layers)
 * -> hL. */
static void layers_forward(const model *m, slice_acts *a, int B)
{
    const model_config *c = &m->cfg;
    int L = a->L;
    if (!a->training && !a->hook && c->n_layers > 0 && a->hL == a->layers[0].h) {
        /* inference: every layer on a chunk of samples at a time, so the chunk's activations stay
         * in cache from one op to the next (samples are independent until the pooling) */
        int cb = MODEL_INFER_ROWS / L > 0 ? MODEL_INFER_ROWS / L : 1, nchunk = (B + cb - 1) / cb;
        cb = (B + nchunk - 1) / nchunk; /* balanced: 32 samples -> 4 x 8, not 10 + 10 + 10 + 2 */
        for (int b0 = 0; b0 < B; b0 += cb)
            for (int i = 0; i < c->n_layers; i++) layer_forward_infer(m, a, i, b0, B - b0 < cb ? B - b0 : cb);
    } else {
        for (int i = 0; i < c->n_layers; i++) {
            float *hout = i + 1 < c->n_layers ? a->layers[i + 1].h : a->hL;
            layer_forward(m, a, i, hout, B);
        }
    }
}

/* Forward of one slice; returns the summed (not mean) loss when labels are given. */
static double slice_forward(const model *m, slice_acts *a, const float *images, const int *labels, int B)
{
    const model_config *c = &m->cfg;
    int L = c->L, d = c->d, BL = B * L, cpp = c->C * c->P * c->P, V = c->classes;
    /* h0 = patch_embed(patches) + pos_embed */
    float *h0 = c->n_layers > 0 ? a->layers[0].h : a->hL;
    patchify_forward(a->patches, images, B, c->C, c->H, c->W, c->P);
    matmul_forward(h0, a->patches, m->w.patch_w, m->w.patch_b, BL, cpp, d);
    posembed_forward(h0, m->w.pos, B, L, d);
    layers_forward(m, a, B);
    /* logits = head(mean_t(norm_f(h))) */
    rmsnorm_forward(a->hf, a->rstdf, a->hL, m->w.norm_f_w, BL, d, c->eps);
    meanpool_forward(a->pooled, a->hf, B, L, d);
    matmul_forward(a->logits, a->pooled, m->w.head_w, m->w.head_b, B, d, V);
    if (!labels) return 0.0;
    return (double)crossentropy_forward(a->losses, a->probs, a->logits, labels, B, V) * B;
}

float model_forward(const model *m, model_acts *a, const float *images, const int *labels, int B)
{
    const model_config *c = &m->cfg;
    if (a->T) pl_die(NULL, "internal: model_forward on causal-LM activations (use model_forward_lm)");
    if (B > a->B || B < 1)
        pl_die("use a batch no larger than the activations were sized for",
               "internal: batch %d outside the activation batch 1..%d", B, a->B);
    int T = slices_for(a, B), V = c->classes, par = T > 1 && !a->hook;
    size_t img = (size_t)c->C * c->H * c->W;
    double loss[MODEL_MAX_SLICES] = {0};
    int bt = par ? blas_threads() : 0;
    if (par) blas_set_threads(1);
#pragma omp parallel for num_threads(T) schedule(static, 1) if (par)
    for (int k = 0; k < T; k++) {
        int b0 = slice_b0(B, T, k), nb = slice_b0(B, T, k + 1) - b0;
        loss[k] = slice_forward(m, a->s[k], images + (size_t)b0 * img, labels ? labels + b0 : NULL, nb);
        memcpy(a->logits + (size_t)b0 * V, a->s[k]->logits, (size_t)nb * V * sizeof(float));
    }
    if (par) blas_set_threads(bt);
    double total = 0.0;
    for (int k = 0; k < T; k++) total += loss[k];
    return labels ? (float)(total / B) : 0.0f;
}

/* ------------------------------------------------------------------ backward */

static void zero(float *p, size_t n) { memset(p, 0, n * sizeof(float)); }

/* Backward of one layer. On entry dh (BL, d) holds dLoss/dhout; on exit dLoss/dh (layer input). */
static void layer_backward(const model *m, slice_acts *a, model_params *gv, int li, int B)
{
    const model_config *c = &m->cfg;
    const layer_dims *ld = &c->layers[li];
    const layer_acts *la = &a->layers[li];
    const layer_params *w = &m->w.layers[li];
    layer_params *g = &gv->layers[li];
    int L = a->L, d = c->d, BL = B * L;
    int E = ld->E, N = ld->N, R = ld->R, K = ld->K, M = ld->M;
    size_t nd = (size_t)BL * d, ne = (size_t)BL * E;
    float *dh = a->dh;
    if (M > 0) {
        /* hout = hmid + fc2(gelu(fc1(norm2(hmid)))): dh flows to hmid directly and through the MLP */
        float *df1g = a->d_M1, *df1 = a->d_M2, *da2 = a->d_a;
        zero(df1g, (size_t)BL * M), zero(df1, (size_t)BL * M), zero(da2, nd);
        matmul_backward(df1g, g->fc2_w, g->fc2_b, dh, la->f1g, w->fc2_w, BL, M, d);
        gelu_backward(df1, df1g, la->f1, (size_t)BL * M);
        matmul_backward(da2, g->fc1_w, g->fc1_b, df1, la->a2, w->fc1_w, BL, d, M);
        rmsnorm_backward(dh, g->norm2_w, da2, la->hmid, w->norm2_w, la->rstd2, BL, d);
    }
    /* hmid = h + out_proj(g): dh flows to h directly and through the mixer */
    float *dg = a->d_E1, *dy = a->d_E2, *dz = a->d_E3, *du = a->d_E4, *ddelta = a->d_E5;
    zero(dg, ne), zero(dy, ne), zero(dz, ne), zero(du, ne), zero(ddelta, ne);
    matmul_backward(dg, g->out_proj_w, NULL, dh, la->g, w->out_proj_w, BL, E, d);
    gate_backward(dy, dz, dg, la->y, la->z, ne);
    float *dBm = a->d_N1, *dCm = a->d_N2, *ddtl = a->d_R;
    zero(dBm, (size_t)BL * N), zero(dCm, (size_t)BL * N), zero(ddtl, (size_t)BL * R);
    scan_backward(du, ddelta, g->A_log, dBm, dCm, g->D, dy, la->u, la->delta, w->A_log, la->Bm, la->Cm, w->D, B, L, E,
                  N);
    /* delta = softplus(dtr): reuse dg as ddtr */
    float *ddtr = dg;
    zero(ddtr, ne);
    softplus_backward(ddtr, ddelta, la->dtr, ne);
    matmul_backward(ddtl, g->dt_proj_w, g->dt_proj_b, ddtr, la->dtl, w->dt_proj_w, BL, R, E);
    /* [dt_low | B | C] = x_proj(u) */
    matmul_backward(du, g->x_proj_w, NULL, ddtl, la->u, w->x_proj_w, BL, E, R);
    matmul_backward(du, g->x_proj_w + (size_t)R * E, NULL, dBm, la->u, w->x_proj_w + (size_t)R * E, BL, E, N);
    matmul_backward(du, g->x_proj_w + (size_t)(R + N) * E, NULL, dCm, la->u, w->x_proj_w + (size_t)(R + N) * E, BL,
                    E, N);
    /* u = silu(xc), xc = conv1d(x): reuse dy as dxc and ddelta as dx */
    float *dxc = dy, *dx = ddelta;
    zero(dxc, ne), zero(dx, ne);
    silu_backward(dxc, du, la->xc, ne);
    conv1d_backward(dx, g->conv_w, g->conv_b, dxc, la->x, w->conv_w, B, L, E, K);
    /* [x | z] = in_proj(a) */
    float *da = a->d_a;
    zero(da, nd);
    matmul_backward(da, g->in_proj_w, NULL, dx, la->a, w->in_proj_w, BL, d, E);
    matmul_backward(da, g->in_proj_w + (size_t)E * d, NULL, dz, la->a, w->in_proj_w + (size_t)E * d, BL, d, E);
    rmsnorm_backward(dh, g->norm_w, da, la->h, w->norm_w, la->rstd1, BL, d);
}

/* Backward of one slice of B rows into the gradient views g; scale = 1 / (whole batch). */
static void slice_backward(const model *m, slice_acts *a, model_params *g, const int *labels, int B, float scale)
{
    const model_config *c = &m->cfg;
    int L = c->L, d = c->d, BL = B * L, cpp = c->C * c->P * c->P, V = c->classes;
    size_t nd = (size_t)BL * d;
    /* loss = mean_b CE(logits_b) over the whole batch */
    zero(a->d_logits, (size_t)B * V);
    crossentropy_backward(a->d_logits, a->probs, labels, scale, B, V);
    zero(a->d_pooled, (size_t)B * d);
    matmul_backward(a->d_pooled, g->head_w, g->head_b, a->d_logits, a->pooled, m->w.head_w, B, d, V);
    zero(a->d_hf, nd);
    meanpool_backward(a->d_hf, a->d_pooled, B, L, d);
    zero(a->dh, nd);
    rmsnorm_backward(a->dh, g->norm_f_w, a->d_hf, a->hL, m->w.norm_f_w, a->rstdf, BL, d);
    for (int i = c->n_layers - 1; i >= 0; i--) layer_backward(m, a, g, i, B);
    /* h0 = patch_embed(patches) + pos */
    posembed_backward(g->pos, a->dh, B, L, d);
    matmul_backward(NULL, g->patch_w, g->patch_b, a->dh, a->patches, m->w.patch_w, BL, cpp, d);
}

void model_backward(model *m, model_acts *a, const int *labels, int B)
{
    if (!a->training || !m->grads)
        pl_die(NULL, "internal: model_backward needs training activations and allocated gradients");
    if (a->T) pl_die(NULL, "internal: model_backward on causal-LM activations (use model_backward_lm)");
    int T = slices_for(a, B), par = T > 1 && !a->hook;
    model_params gv[MODEL_MAX_SLICES];
    gv[0] = m->g;
    for (int k = 1; k < T; k++) {
        if (!a->gblock[k]) a->gblock[k] = xalloc_floats(m->n_params);
        else memset(a->gblock[k], 0, m->n_params * sizeof(float));
        model_point(m, &gv[k], a->gblock[k]);
    }
    int bt = par ? blas_threads() : 0;
    if (par) blas_set_threads(1);
#pragma omp parallel for num_threads(T) schedule(static, 1) if (par)
    for (int k = 0; k < T; k++) {
        int b0 = slice_b0(B, T, k), nb = slice_b0(B, T, k + 1) - b0;
        slice_backward(m, a->s[k], &gv[k], labels + b0, nb, 1.0f / (float)B);
    }
    if (par) blas_set_threads(bt);
    for (int k = 1; k < T; k++)
        for (size_t i = 0; i < m->n_params; i++) m->grads[i] += a->gblock[k][i];
}

/* ------------------------------------------------------------------ causal LM */

/* The head: lm_head.weight, or the embedding matrix when tied (v = weights or gradients). */
static float *lm_head_of(const model *m, const model_params *v) { return m->cfg.tied ? v->embed : v->head_w; }

/* Forward of one slice of B windows of a->L tokens; returns the summed loss of its predictions.
 * logits (B*L, V) receives every row's logits when not NULL. */
static double slice_forward_lm(const model *m, slice_acts *a, const int *ids, int B, float *logits)
{
    const model_config *c = &m->cfg;
    int L = a->L, d = c->d, BL = B * L, V = c->vocab;
    /* h0 = E[ids] */
    float *h0 = c->n_layers > 0 ? a->layers[0].h : a->hL;
    embedding_forward(h0, ids, m->w.embed, BL, d);
    layers_forward(m, a, B);
    /* targets: position t predicts ids[t + 1]; the window's last token predicts nothing */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++) a->tgt[b * L + t] = t + 1 < L ? ids[b * L + t + 1] : -1;
    /* logits = norm_f(h) @ W_head^T, loss = CE(logits, targets), a chunk of rows at a time */
    rmsnorm_forward(a->hf, a->rstdf, a->hL, m->w.norm_f_w, BL, d, c->eps);
    a->correct = 0;
    return lmhead_ce_forward_acc(logits, a->lse, a->hf, lm_head_of(m, &m->w), a->tgt, a->cebuf, MODEL_CE_ROWS, BL, d,
                                 V, &a->correct);
}

static void lm_check(const model *m, const model_acts *a, const int *ids, int B, int T, const char *what)
{
    if (m->cfg.task != MODEL_TASK_LM || !a->T) pl_die(NULL, "internal: %s needs an LM and LM activations", what);
    if (B < 1 || B > a->B || T < 2 || T > a->T)
        pl_die("use windows of at least 2 tokens, no more than the activations were sized for",
               "internal: %s on %d x %d tokens, activations hold %d x %d", what, B, T, a->B, a->T);
    size_t n = (size_t)B * T;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab)
            pl_die("token ids must lie in [0, vocab)", "%s: token %d at index %zu is outside [0, %d)", what, ids[i],
                   i, m->cfg.vocab);
}

float model_forward_lm(const model *m, model_acts *a, const int *ids, int B, int T)
{
    lm_check(m, a, ids, B, T, "model_forward_lm");
    int S = slices_for(a, B), V = m->cfg.vocab, par = S > 1 && !a->hook;
    double loss[MODEL_MAX_SLICES] = {0};
    int bt = par ? blas_threads() : 0;
    if (par) blas_set_threads(1);
#pragma omp parallel for num_threads(S) schedule(static, 1) if (par)
    for (int k = 0; k < S; k++) {
        int b0 = slice_b0(B, S, k), nb = slice_b0(B, S, k + 1) - b0;
        a->s[k]->L = T;
        float *lg = a->logits ? a->logits + (size_t)b0 * T * V : NULL;
        loss[k] = slice_forward_lm(m, a->s[k], ids + (size_t)b0 * T, nb, lg);
    }
    if (par) blas_set_threads(bt);
    double total = 0.0;
    for (int k = 0; k < S; k++) total += loss[k];
    return (float)(total / ((double)B * (T - 1)));
}

long model_acts_lm_correct(const model_acts *a, int B)
{
    long c = 0;
    for (int k = 0; k < slices_for(a, B); k++) c += a->s[k]->correct;
    return c;
}

/* Backward of one slice into the gradient views g; scale = 1 / (predictions of the whole batch). */
static void slice_backward_lm(const model *m, slice_acts *a, model_params *g, const int *ids, int B, float scale)
{
    const model_config *c = &m->cfg;
    int L = a->L, d = c->d, BL = B * L, V = c->vocab;
    size_t nd = (size_t)BL * d;
    /* d norm_f(h) and d W_head from the chunked cross-entropy (logits recomputed per chunk) */
    zero(a->d_hf, nd);
    lmhead_ce_backward(a->d_hf, lm_head_of(m, g), a->hf, lm_head_of(m, &m->w), a->tgt, a->lse, scale, a->cebuf,
                       MODEL_CE_ROWS, BL, d, V);
    zero(a->dh, nd);
    rmsnorm_backward(a->dh, g->norm_f_w, a->d_hf, a->hL, m->w.norm_f_w, a->rstdf, BL, d);
    for (int i = c->n_layers - 1; i >= 0; i--) layer_backward(m, a, g, i, B);
    /* h0 = E[ids]: scatter into the rows (a tied head's gradient is already there) */
    embedding_backward(g->embed, a->dh, ids, BL, d);
}

void model_backward_lm(model *m, model_acts *a, const int *ids, int B, int T)
{
    if (!a->training || !m->grads)
        pl_die(NULL, "internal: model_backward_lm needs training activations and allocated gradients");
    lm_check(m, a, ids, B, T, "model_backward_lm");
    int S = slices_for(a, B), par = S > 1 && !a->hook;
    model_params gv[MODEL_MAX_SLICES];
    gv[0] = m->g;
    for (int k = 1; k < S; k++) {
        if (!a->gblock[k]) a->gblock[k] = xalloc_floats(m->n_params);
        else memset(a->gblock[k], 0, m->n_params * sizeof(float));
        model_point(m, &gv[k], a->gblock[k]);
    }
    float scale = (float)(1.0 / ((double)B * (T - 1)));
    int bt = par ? blas_threads() : 0;
    if (par) blas_set_threads(1);
#pragma omp parallel for num_threads(S) schedule(static, 1) if (par)
    for (int k = 0; k < S; k++) {
        int b0 = slice_b0(B, S, k), nb = slice_b0(B, S, k + 1) - b0;
        slice_backward_lm(m, a->s[k], &gv[k], ids + (size_t)b0 * T, nb, scale);
    }
    if (par) blas_set_threads(bt);
    for (int k = 1; k < S; k++)
        for (size_t i = 0; i < m->n_params; i++) m->grads[i] += a->gblock[k][i];
}
