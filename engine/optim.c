/* optim.c — AdamW and SGD(+momentum, optional Nesterov) over flat parameter blocks, the
 * warmup + cosine learning-rate schedule and global-norm gradient clipping.
 *
 * Assumptions: params, grads and the optimizer state share one layout (model.h); the
 * param_info table covers [0, n) and says which ranges get weight decay. The optimizer owns
 * only its state block; it never allocates or frees model memory. Updates are elementwise and
 * run in a fixed order, so a run is bit-reproducible for the same inputs. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *const kind_names[] = {"adamw", "sgd"};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == OPTIM_KIND_COUNT, "kind_names vs optim_kind");

const char *optim_kind_name(optim_kind k)
{
    return (k >= 0 && k < OPTIM_KIND_COUNT) ? kind_names[k] : "?";
}

int optim_kind_parse(const char *s, optim_kind *k)
{
    for (int i = 0; i < OPTIM_KIND_COUNT; i++)
        if (strcmp(s, kind_names[i]) == 0) {
            *k = (optim_kind)i;
            return 0;
        }
    return -1;
}

void optim_config_default(optim_config *c)
{
    memset(c, 0, sizeof *c);
    c->kind = OPTIM_ADAMW;
    c->lr = SPEC_TRAIN_LR;
    c->min_lr = SPEC_TRAIN_LR * 0.01f;
    c->weight_decay = SPEC_TRAIN_WEIGHT_DECAY;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->momentum = SPEC_TRAIN_MOMENTUM;
    c->nesterov = 0;
    c->clip = SPEC_TRAIN_CLIP;
}

int optim_init(optim *o, const optim_config *cfg, size_t n, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    if (cfg->kind < 0 || cfg->kind >= OPTIM_KIND_COUNT) return pl_err(err, errlen, "unknown optimizer kind");
    if (!(cfg->lr > 0.0f) || !isfinite(cfg->lr)) return pl_err(err, errlen, "learning rate must be > 0 (got %g)", cfg->lr);
    if (!(cfg->min_lr >= 0.0f) || cfg->min_lr > cfg->lr)
        return pl_err(err, errlen, "min learning rate must be in [0, lr] (got %g, lr %g)", cfg->min_lr, cfg->lr);
    if (!(cfg->weight_decay >= 0.0f)) return pl_err(err, errlen, "weight decay must be >= 0 (got %g)", cfg->weight_decay);
    if (cfg->warmup_steps < 0 || cfg->total_steps < 0) return pl_err(err, errlen, "negative warmup or total steps");
    if (cfg->kind == OPTIM_ADAMW) {
        if (!(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f) || !(cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f))
            return pl_err(err, errlen, "AdamW betas must be in [0, 1) (got %g, %g)", cfg->beta1, cfg->beta2);
        if (!(cfg->eps > 0.0f)) return pl_err(err, errlen, "AdamW eps must be > 0 (got %g)", cfg->eps);
    } else if (!(cfg->momentum >= 0.0f && cfg->momentum < 1.0f)) {
        return pl_err(err, errlen, "SGD momentum must be in [0, 1) (got %g)", cfg->momentum);
    }
    o->cfg = *cfg;
    o->n = n;
    o->step = 0;
    o->state_len = cfg->kind == OPTIM_ADAMW ? 2 * n : n;
    o->state = xalloc_floats(o->state_len);
    return 0;
}

void optim_free(optim *o)
{
    if (!o) return;
    free(o->state);
    o->state = NULL;
    o->state_len = 0;
}

float optim_lr_at(const optim_config *c, long step)
{
    if (step < 0) step = 0;
    if (c->warmup_steps > 0 && step < c->warmup_steps)
        return c->lr * (float)(step + 1) / (float)c->warmup_steps;
    long span = c->total_steps - c->warmup_steps;
    if (span < 1) span = 1;
    double p = (double)(step - c->warmup_steps) / (double)span;
    if (p > 1.0) p = 1.0;
    if (p < 0.0) p = 0.0;
    return (float)(c->min_lr + (c->lr - c->min_lr) * 0.5 * (1.0 + cos(M_PI * p)));
}

double optim_grad_norm(const float *g, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    return sqrt(s);
}

double optim_clip(float *g, size_t n, float max_norm)
{
    double norm = optim_grad_norm(g, n);
    if (max_norm > 0.0f && norm > (double)max_norm && isfinite(norm)) {
        float scale = (float)((double)max_norm / norm);
        for (size_t i = 0; i < n; i++) g[i] *= scale;
    }
    return norm;
}

/* AdamW on one range [0, n) of the block, PyTorch torch.optim.AdamW:
 *   p <- p - lr*wd*p (decay ranges only);  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
 *   p <- p - lr * (m / bc1) / (sqrt(v / bc2) + eps),  bc_i = 1 - b_i^t */
static void adamw_range(float *p, const float *g, float *m, float *v, size_t n, float lr, float wd, float b1,
                        float b2, float eps, float bc1, float bc2)
{
    float decay = 1.0f - lr * wd;
    float step_size = lr / bc1;
    float inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

/* SGD with momentum, PyTorch torch.optim.SGD (dampening 0; weight decay as L2 on the grad):
 *   g' = g + wd p;  buf <- mu buf + g';  d = nesterov ? g' + mu buf : buf;  p <- p - lr d */
static void sgd_range(float *p, const float *g, float *buf, size_t n, float lr, float wd, float mu, int nesterov)
{
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * p[i];
        float b = mu * buf[i] + gi;
        buf[i] = b;
        float d = nesterov ? gi + mu * b : b;
        p[i] -= lr * d;
    }
}

void optim_update(optim *o, float *params, const float *grads, const param_info *info, int n_tensors, float lr)
{
    const optim_config *c = &o->cfg;
    o->step++;
    double t = (double)o->step;
    float bc1 = (float)(1.0 - pow((double)c->beta1, t));
    float bc2 = (float)(1.0 - pow((double)c->beta2, t));
    for (int k = 0; k < n_tensors; k++) {
        const param_info *pi = &info[k];
        size_t off = pi->offset, n = pi->numel;
        if (off + n > o->n) n = off < o->n ? o->n - off : 0;
        float wd = pi->decay ? c->weight_decay : 0.0f;
        if (c->kind == OPTIM_ADAMW)
            adamw_range(params + off, grads + off, o->state + off, o->state + o->n + off, n, lr, wd, c->beta1,
                        c->beta2, c->eps, bc1, bc2);
        else
            sgd_range(params + off, grads + off, o->state + off, n, lr, wd, c->momentum, c->nesterov);
    }
}

float optim_step(optim *o, model *m)
{
    float lr = optim_lr_at(&o->cfg, o->step);
    optim_update(o, m->params, m->grads, m->info, m->n_tensors, lr);
    if (m->mask) model_apply_mask(m);
    return lr;
}
