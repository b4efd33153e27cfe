/* optim.h — optimizers (AdamW, SGD with momentum), the learning-rate schedule and gradient
 * clipping, as flat loops over a model's parameter / gradient blocks (STYLE.md 3).
 *
 * The optimizer state (moments) lives in ONE block `state` of `state_len` floats with the same
 * layout as model->params: AdamW keeps m (first moment) then v (second moment), SGD keeps the
 * velocity. Saving / restoring `state` and `step` is all a checkpoint needs (see train.h).
 *
 * Weight decay is decoupled (AdamW, Loshchilov & Hutter 2019) and is applied only to tensors
 * whose param_info.decay is set (2-D weight matrices, DESIGN.md 3). */
#ifndef PL_OPTIM_H
#define PL_OPTIM_H

#include <stddef.h>

#include "model.h"

typedef enum { OPTIM_ADAMW, OPTIM_SGD, OPTIM_KIND_COUNT } optim_kind;

const char *optim_kind_name(optim_kind k);      /* "adamw", "sgd" */
int optim_kind_parse(const char *s, optim_kind *k); /* 0, or -1 for an unknown name */

typedef struct {
    optim_kind kind;
    float lr;            /* peak learning rate (after warmup) */
    float min_lr;        /* floor reached at the end of the cosine */
    long warmup_steps;   /* linear warmup from lr/warmup to lr over this many steps */
    long total_steps;    /* schedule length (warmup included) */
    float weight_decay;  /* decoupled, only where param_info.decay */
    float beta1, beta2, eps; /* AdamW */
    float momentum;      /* SGD; 0 = plain SGD */
    int nesterov;        /* SGD: Nesterov momentum */
    float clip;          /* max global gradient norm; <= 0 disables clipping */
} optim_config;

/* AdamW defaults: lr 2e-3, min_lr 2e-5, betas (0.9, 0.999), eps 1e-8, wd 0.05, clip 1.0,
 * momentum 0.9 (for SGD). warmup_steps / total_steps are left 0 for the caller to fill. */
void optim_config_default(optim_config *c);

typedef struct {
    optim_config cfg;
    size_t n;            /* parameters covered (= model->n_params) */
    long step;           /* optimizer steps taken so far */
    size_t state_len;    /* floats in state: 2n (AdamW) or n (SGD) */
    float *state;        /* (state_len): AdamW m (n) then v (n); SGD velocity (n) */
} optim;

/* Allocate a zeroed state for n parameters. Returns 0, or -1 with err for a bad config
 * (non-positive lr, betas outside [0,1), ...). Free with optim_free. */
int optim_init(optim *o, const optim_config *cfg, size_t n, char *err, size_t errlen);
void optim_free(optim *o); /* NULL-safe */

/* Learning rate for 0-based step `step`:
 *   step < warmup:  lr * (step + 1) / warmup
 *   afterwards:     min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * p)),
 *                   p = (step - warmup) / max(1, total - warmup), clamped to [0, 1]. */
float optim_lr_at(const optim_config *c, long step);

/* Global L2 norm of g (n), accumulated in double. */
double optim_grad_norm(const float *g, size_t n);
/* If max_norm > 0 and the global norm exceeds it, scale g by max_norm / norm.
 * Returns the norm before clipping. */
double optim_clip(float *g, size_t n, float max_norm);

/* One update of the flat parameter block with the given learning rate. info (n_tensors) tells
 * which ranges are decayed. Increments o->step. params, grads (o->n). */
void optim_update(optim *o, float *params, const float *grads, const param_info *info, int n_tensors, float lr);

/* One step on a model: optim_update over m->params with m->grads at optim_lr_at(o->step),
 * then model_apply_mask when m->mask is set (masked weights stay zero). Clipping is the
 * caller's (optim_clip). Returns the learning rate used. */
float optim_step(optim *o, model *m);

#endif
