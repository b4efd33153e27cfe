/* rsst.c — RSST and iterative magnitude pruning with rewind and refill (rsst.h, DESIGN.md 5).
 *
 * Design:
 *   - Selection reuses the pruning base: unstructured entries run prune_unstructured at the
 *     cumulative rate 1 - (1 - rate)^r on a scratch copy of the model, so the exact-count rule
 *     and the ranking are prune_unstructured.c's; structured entries add their removals to one
 *     cumulative prune_selection (prune_select_structured in its cumulative form; the scoring
 *     is prune_score_units, the unit -> weight coupling is prune_selection_to_mask, again on the scratch copy). The targeted weights are those the
 *     copy masks and the model does not: a byte per parameter.
 *   - The penalty lambda(t) * sum w^2 enters training through train_config.penalty (train.h),
 *     called after backward and before the mask and clipping; its gradient is 2 lambda w on the
 *     targets only.
 *   - The model keeps its full shape through every round (rewind needs the initial layout;
 *     selections refer to it); a requested shrink happens once, after the last round.
 *   - rewind {"step": k} copies the weights the penalty hook sees at global step k of round 1
 *     (the weights after k steps: regularisation steps first, then fine-tuning steps). Round 1
 *     rewinds only when k <= reg_steps (later snapshots do not exist yet when round 1 rewinds).
 * Assumptions: the spec was parsed against the model (layer indices valid); train and test match
 * the model's image shape. Ownership: rsst_run owns its scratch buffers and frees them; the
 * caller owns m, the spec, the datasets and the result (rsst_result_free). Letters as in model.h. */
#include "rsst.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "measure.h"
#include "train.h"
#include "util.h"

/* ------------------------------------------------------------------ penalty */

double rsst_lambda(double lambda_max, double power, long T, long t)
{
    if (T <= 0) return lambda_max;
    if (t < 0) t = 0;
    if (t > T) t = T;
    return lambda_max * pow((double)t / (double)T, power);
}

double rsst_penalty(model *m, const uint8_t *target, double lambda)
{
    double sum = 0.0;
    const float *w = m->params;
    float *g = m->grads;
    float two_l = (float)(2.0 * lambda);
    for (size_t i = 0; i < m->n_params; i++) {
        if (!target[i]) continue;
        sum += (double)w[i] * w[i];
        g[i] += two_l * w[i];
    }
    return lambda * sum;
}

/* ------------------------------------------------------------------ helpers */


static long round_count(double rate, long n) { return (long)floor(rate * (double)n + 0.5); }

/* Cumulative removal rate after `round` rounds of `rate` each. */
static double cum_rate(float rate, int round) { return 1.0 - pow(1.0 - (double)rate, round); }

typedef struct {
    float key1, key2; /* sort keys: ascending key1, then ascending key2, then index */
    int idx;
} ranked;

static int ranked_cmp(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->key1 != y->key1) return x->key1 < y->key1 ? -1 : 1;
    if (x->key2 != y->key2) return x->key2 < y->key2 ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* 1 when weight i is still alive in m (unmasked and non-zero). */
static int alive_weight(const model *m, size_t i) { return (!m->mask || m->mask[i] != 0.0f) && m->params[i] != 0.0f; }

/* ------------------------------------------------------------------ selection */

long rsst_select(const model *m, const rsst_spec *s, int round, const prune_calib *calib, prune_selection *sel,
                 uint8_t *target, char *err, size_t errlen)
{
    memset(target, 0, m->n_params);
    if (round < 1) return pl_err(err, errlen, "round %d: rounds are 1-based", round);
    model c;
    if (model_copy(&c, m, err, errlen) != 0) return -1;
    long rc = -1;
    for (int i = 0; i < s->prune.n; i++) {
        const prune_entry *e = &s->prune.entries[i];
        double cum = cum_rate(e->rate, round);
        char e2[PL_ERRLEN];
        if (e->granularity == PG_UNSTRUCTURED) {
            prune_entry ec = *e;
            ec.rate = (float)cum;
            if (ec.rate >= 1.0f) ec.rate = nextafterf(1.0f, 0.0f);
            if (prune_unstructured(&c, &ec, calib, s->prune.seed, e2, sizeof e2) < 0) {
                pl_err(err, errlen, "prune[%d] (%s): %s", i, prune_component_name(e->component), e2);
                goto done;
            }
        } else if (prune_select_structured(m, e, cum, 1, calib, s->prune.seed, sel, NULL, e2, sizeof e2) != 0) {
            pl_err(err, errlen, "prune[%d] (%s): %s", i, prune_component_name(e->component), e2);
            goto done;
        }
    }
    prune_selection_to_mask(&c, sel);
    long n = 0;
    for (size_t i = 0; i < m->n_params; i++)
        if (c.mask[i] == 0.0f && (!m->mask || m->mask[i] != 0.0f)) {
            target[i] = 1;
            n++;
        }
    rc = n;
done:
    model_free(&c);
    return rc;
}

/* ------------------------------------------------------------------ refill */

/* Parameter indices of the component's weights in unit u of layer li (the unstructured weights a
 * unit owns: out_proj row; fc1 row + fc2 column; in_proj row E+e (gate) or e (in_proj); conv1d
 * column k; x_proj rows R+n, R+N+n; x_proj row r + dt_proj column r). idx holds at least
 * 2 * max(d, E) entries. Returns the count. */
static size_t unit_weights(const model *m, prune_component c, int li, int u, size_t *idx)
{
    const layer_dims *ld = &m->cfg.layers[li];
    const layer_params *w = &m->w.layers[li];
    size_t d = (size_t)m->cfg.d, E = (size_t)ld->E, N = (size_t)ld->N, R = (size_t)ld->R, K = (size_t)ld->K,
           M = (size_t)ld->M, uu = (size_t)u, n = 0;
    switch (c) {
    case PC_OUT_PROJ: { /* out_proj (d, E): row u */
        size_t o = (size_t)(w->out_proj_w - m->params) + uu * E;
        for (size_t k = 0; k < E; k++) idx[n++] = o + k;
        break;
    }
    case PC_MLP: { /* fc1 (M, d): row u; fc2 (d, M): column u */
        size_t o1 = (size_t)(w->fc1_w - m->params) + uu * d, o2 = (size_t)(w->fc2_w - m->params) + uu;
        for (size_t k = 0; k < d; k++) idx[n++] = o1 + k;
        for (size_t k = 0; k < d; k++) idx[n++] = o2 + k * M;
        break;
    }
    case PC_GATE:
    case PC_IN_PROJ: { /* in_proj (2E, d): row E+u (gate) or u */
        size_t row = c == PC_GATE ? E + uu : uu;
        size_t o = (size_t)(w->in_proj_w - m->params) + row * d;
        for (size_t k = 0; k < d; k++) idx[n++] = o + k;
        break;
    }
    case PC_CONV1D: { /* conv (E, K): column u */
        size_t o = (size_t)(w->conv_w - m->params) + uu;
        for (size_t e = 0; e < E; e++) idx[n++] = o + e * K;
        break;
    }
    case PC_X_PROJ_BC: { /* x_proj (R+2N, E): rows R+u, R+N+u */
        size_t o = (size_t)(w->x_proj_w - m->params);
        for (size_t k = 0; k < E; k++) idx[n++] = o + (R + uu) * E + k;
        for (size_t k = 0; k < E; k++) idx[n++] = o + (R + N + uu) * E + k;
        break;
    }
    case PC_DT: { /* x_proj row u (E); dt_proj (E, R) column u */
        size_t o1 = (size_t)(w->x_proj_w - m->params) + uu * E, o2 = (size_t)(w->dt_proj_w - m->params) + uu;
        for (size_t k = 0; k < E; k++) idx[n++] = o1 + k;
        for (size_t e = 0; e < E; e++) idx[n++] = o2 + e * R;
        break;
    }
    default: break;
    }
    return n;
}

/* 1 when unit u of component c in layer li is still kept by sel. */
static int unit_alive(const prune_selection *sel, const model *m, prune_component c, int li, int u)
{
    if (sel->drop_layer[li]) return 0;
    const uint8_t *k = NULL;
    switch (c) {
    case PC_OUT_PROJ: k = sel->keep_row[li]; break;
    case PC_MLP: k = sel->keep_neuron[li]; break;
    case PC_GATE:
    case PC_IN_PROJ: k = sel->keep_channel[li]; break;
    case PC_X_PROJ_BC: k = sel->keep_state[li]; break;
    case PC_DT: k = sel->keep_rank[li]; break;
    case PC_CONV1D: {
        int K = m->cfg.layers[li].K, T = sel->keep_taps[li];
        return T <= 0 || T >= K || u >= K - T;
    }
    default: return 1;
    }
    return !k || k[u];
}

int rsst_refill(model *m, const rsst_spec *s, const prune_calib *calib, prune_selection *sel, const float *restore,
                char *err, size_t errlen)
{
    model_alloc_mask(m);
    size_t cap = 2 * (size_t)(m->cfg.d > 0 ? m->cfg.d : 1);
    for (int i = 0; i < m->cfg.n_layers; i++)
        if (2 * (size_t)m->cfg.layers[i].E > cap) cap = 2 * (size_t)m->cfg.layers[i].E;
    size_t *idx = xmalloc(cap * sizeof *idx);
    /* kept units to re-densify after every decision: (entry, layer) -> keep flags */
    typedef struct {
        prune_component c;
        int li, U;
        uint8_t *kept;
    } dense_unit_set;
    dense_unit_set *sets = xcalloc((size_t)s->prune.n * MODEL_MAX_LAYERS + 1, sizeof *sets);
    int nsets = 0, rc = -1;

    for (int i = 0; i < s->prune.n; i++) {
        const prune_entry *e = &s->prune.entries[i];
        if (e->granularity != PG_UNSTRUCTURED) continue;
        int layers[MODEL_MAX_LAYERS];
        int nl = prune_entry_layers(m, e, layers);
        for (int j = 0; j < nl; j++) {
            int li = layers[j];
            int U = prune_component_units(m, e->component, li);
            if (U <= 0 || sel->drop_layer[li]) continue;
            float *sc = xmalloc((size_t)U * sizeof *sc);
            if (e->component != PC_CONV1D &&
                prune_score_units(m, e->component, li, e->criterion, calib, s->prune.seed, sc, err, errlen) != 0) {
                free(sc);
                goto done;
            }
            ranked *rk = xmalloc((size_t)U * sizeof *rk);
            int alive = 0;
            size_t surviving = 0, unit_size = 0;
            for (int u = 0; u < U; u++) {
                size_t n = unit_weights(m, e->component, li, u, idx);
                unit_size = n;
                if (!unit_alive(sel, m, e->component, li, u)) continue;
                size_t sv = 0;
                for (size_t k = 0; k < n; k++) sv += alive_weight(m, idx[k]);
                surviving += sv;
                float tie = e->component == PC_CONV1D ? (float)u : sc[u];
                if (!isfinite(tie)) tie = 0.0f;
                /* descending survivors, then descending score: negate for the ascending sort */
                rk[alive++] = (ranked){.key1 = -(float)sv, .key2 = -tie, .idx = u};
            }
            free(sc);
            if (unit_size == 0) {
                free(rk);
                continue;
            }
            long dense = round_count((double)surviving / (double)unit_size, 1);
            if (dense > alive) dense = alive;
            long keep_n = dense + round_count(s->fillback_rate, alive - dense);
            int may_empty = e->component == PC_MLP || e->component == PC_OUT_PROJ;
            if (!may_empty && keep_n < 1 && alive > 0) keep_n = 1;
            if (e->component == PC_CONV1D) {
                /* taps: the keep_n nearest t stay (the only tap selection a shrink can realise) */
                int K = U;
                if (sel->keep_taps[li] == 0 || keep_n < sel->keep_taps[li] || sel->keep_taps[li] >= K)
                    sel->keep_taps[li] = (int)keep_n;
                uint8_t *kept = xcalloc((size_t)U, 1);
                for (int u = K - (int)keep_n; u < K; u++) kept[u] = 1;
                sets[nsets++] = (dense_unit_set){.c = e->component, .li = li, .U = U, .kept = kept};
                free(rk);
                continue;
            }
            qsort(rk, (size_t)alive, sizeof *rk, ranked_cmp);
            uint8_t *keep = prune_selection_keep(sel, e->component, li, U);
            uint8_t *kept = xcalloc((size_t)U, 1);
            for (int r = 0; r < alive; r++) {
                if (r < keep_n) kept[rk[r].idx] = 1;
                else keep[rk[r].idx] = 0;
            }
            sets[nsets++] = (dense_unit_set){.c = e->component, .li = li, .U = U, .kept = kept};
            free(rk);
        }
    }
    /* re-densify the kept units of every refilled component, then re-apply the whole selection
     * (removed units, coupled tensors included, go back to zero) */
    for (int k = 0; k < nsets; k++)
        for (int u = 0; u < sets[k].U; u++) {
            if (!sets[k].kept[u]) continue;
            size_t n = unit_weights(m, sets[k].c, sets[k].li, u, idx);
            for (size_t q = 0; q < n; q++) {
                size_t p = idx[q];
                m->mask[p] = 1.0f;
                if (m->params[p] == 0.0f && restore) m->params[p] = restore[p];
            }
        }
    prune_selection_to_mask(m, sel);
    rc = 0;
done:
    for (int k = 0; k < nsets; k++) free(sets[k].kept);
    free(sets);
    free(idx);
    return rc;
}

/* ------------------------------------------------------------------ the run */

typedef struct {
    const rsst_spec *s;
    const rsst_options *opt;
    const uint8_t *target;  /* NULL outside regularisation */
    int round;
    const char *phase;
    long phase_offset;      /* global round-1 step of this phase's step 0 */
    long steps_before;      /* training steps of earlier phases (whole run) */
    long planned;           /* planned training steps of the whole run */
    double last_lambda, last_penalty;
    float *rewind_buf;      /* RSST_REWIND_STEP: filled at round-1 step k */
    int rewind_have;
    model *m;
} run_ctx;

static void emit(run_ctx *c, const char *phase, double phase_fraction, long step, long steps, float loss)
{
    if (!c->opt || !c->opt->progress) return;
    rsst_progress p = {0};
    p.phase = phase;
    p.round = c->round;
    p.rounds = c->s->rounds;
    double done = (double)c->steps_before + (double)step;
    p.fraction = c->planned > 0 ? done / (double)c->planned : (double)(c->round - 1 + phase_fraction) / c->s->rounds;
    if (p.fraction > 1.0) p.fraction = 1.0;
    p.phase_fraction = phase_fraction;
    p.step = step;
    p.steps = steps;
    p.loss = loss;
    p.lambda = c->last_lambda;
    p.penalty = c->last_penalty;
    p.m = c->m;
    c->opt->progress(&p, c->opt->progress_user);
}

static void capture_rewind(run_ctx *c, const model *m, long global_step)
{
    if (c->s->rewind != RSST_REWIND_STEP || c->round != 1 || c->rewind_have) return;
    if (global_step != c->s->rewind_step) return;
    memcpy(c->rewind_buf, m->params, m->n_params * sizeof(float));
    c->rewind_have = 1;
}

static double penalty_hook(model *m, long step, long total, void *user)
{
    run_ctx *c = user;
    (void)total;
    capture_rewind(c, m, c->phase_offset + step); /* params = the weights after `step` steps */
    if (!c->target) return 0.0;
    c->last_lambda = rsst_lambda(c->s->lambda_max, c->s->power, c->s->reg_steps, step + 1);
    c->last_penalty = rsst_penalty(m, c->target, c->last_lambda);
    return c->last_penalty;
}

static void train_progress_hook(const train_progress *p, void *user)
{
    run_ctx *c = user;
    emit(c, c->phase, p->total_steps > 0 ? (double)p->step / p->total_steps : 1.0, p->step, p->total_steps, p->loss);
}

/* Train `steps` steps (0 = nothing). target != NULL adds the penalty. */
static int run_phase(run_ctx *c, model *m, const dataset *train, const char *phase, long steps, float lr,
                     const uint8_t *target, uint64_t seed, char *err, size_t errlen)
{
    c->phase = phase;
    c->target = target;
    emit(c, phase, 0.0, 0, steps, 0.0f);
    if (steps > 0) {
        train_config tc;
        train_config_default(&tc);
        int Bb = c->s->batch < train->n ? c->s->batch : train->n;
        long spe = train->n / Bb;
        tc.batch = c->s->batch;
        tc.epochs = (int)((steps + spe - 1) / spe);
        tc.max_steps = steps;
        tc.opt.lr = lr;
        /* regularisation: constant after warmup (lambda ramps up to the end); fine-tuning: cosine to lr/100 */
        tc.opt.min_lr = target ? lr : lr * 0.01f;
        tc.seed = seed;
        tc.report_every_s = c->opt && c->opt->report_every_s > 0 ? c->opt->report_every_s : 2.0;
        tc.progress = train_progress_hook;
        tc.progress_user = c;
        tc.penalty = penalty_hook;
        tc.penalty_user = c;
        train_result tr;
        char e2[PL_ERRLEN];
        int rc = train_run(m, train, NULL, &tc, &tr, e2, sizeof e2);
        c->target = NULL;
        if (rc != 0) return pl_err(err, errlen, "round %d, %s: %s", c->round, phase, e2);
    }
    capture_rewind(c, m, c->phase_offset + steps); /* the weights after the whole phase */
    c->target = NULL;
    emit(c, phase, 1.0, steps, steps, 0.0f);
    c->steps_before += steps;
    return 0;
}

static int evaluate(run_ctx *c, const model *m, const dataset *test, double *acc, double *loss, char *err,
                    size_t errlen)
{
    *acc = *loss = -1.0;
    if (!test) return 0;
    emit(c, "eval", 0.0, 0, 0, 0.0f);
    int batch = c->opt && c->opt->eval_batch > 0 ? c->opt->eval_batch : 256;
    if (measure_eval(m, test, batch, NULL, acc, loss, err, errlen) != 0) return -1;
    emit(c, "eval", 1.0, 0, 0, 0.0f);
    return 0;
}

/* in_comp[i] = 1 for the unstructured weights of every entry's component in its layers. */
static void component_membership(const model *m, const rsst_spec *s, uint8_t *in_comp)
{
    memset(in_comp, 0, m->n_params);
    for (int i = 0; i < s->prune.n; i++) {
        const prune_entry *e = &s->prune.entries[i];
        int layers[MODEL_MAX_LAYERS];
        int nl = prune_entry_layers(m, e, layers);
        for (int j = 0; j < nl; j++) {
            prune_slice sl[PRUNE_MAX_SLICES];
            int ns = prune_component_slices(m, e->component, layers[j], sl);
            for (int k = 0; k < ns; k++)
                memset(in_comp + m->info[sl[k].tensor].offset + sl[k].start, 1, sl[k].count);
        }
    }
}

/* L2 norms of the targeted weights and of the other live weights of the pruned components. */
static void norms(const model *m, const uint8_t *target, const uint8_t *in_comp, double *tn, double *on)
{
    double a = 0.0, b = 0.0;
    for (size_t i = 0; i < m->n_params; i++) {
        double w = m->params[i];
        if (target[i]) a += w * w;
        else if (in_comp[i] && (!m->mask || m->mask[i] != 0.0f)) b += w * w;
    }
    *tn = sqrt(a);
    *on = sqrt(b);
}

int rsst_run(model *m, const rsst_spec *s, const dataset *train, const dataset *test, const rsst_options *opt,
             rsst_result *res, char *err, size_t errlen)
{
    rsst_result rdummy;
    if (!res) res = &rdummy;
    memset(res, 0, sizeof *res);
    if (!train) return pl_err(err, errlen, "rsst needs a training set");
    if (train_check_compat(m, train, err, errlen) != 0) return -1;
    if (test && train_check_compat(m, test, err, errlen) != 0) return -1;
    if (s->rounds < 1) return pl_err(err, errlen, "rounds must be >= 1 (got %d)", s->rounds);
    for (int i = 0; i < s->prune.n; i++)
        for (int j = 0; j < s->prune.entries[i].n_layers; j++)
            if (s->prune.entries[i].layers[j] >= m->cfg.n_layers)
                return pl_err(err, errlen, "prune[%d].layers[%d]: layer %d is out of range (the model has %d layers)",
                              i, j, s->prune.entries[i].layers[j], m->cfg.n_layers);
    int any_calib = 0, shrink = s->refill && s->refill_apply == PA_SHRINK;
    for (int i = 0; i < s->prune.n; i++) {
        const prune_entry *e = &s->prune.entries[i];
        any_calib |= prune_criterion_needs_calib(e->criterion) && !(e->granularity == PG_STRUCTURED && e->component == PC_CONV1D);
        shrink |= e->granularity == PG_STRUCTURED && e->apply == PA_SHRINK;
    }

    double t_start = pl_now();
    size_t n = m->n_params;
    run_ctx c = {.s = s, .opt = opt, .m = m};
    c.planned = (long)s->rounds * ((long)s->reg_steps + s->prune.finetune_steps);
    uint8_t *target = xmalloc(n);
    uint8_t *in_comp = xmalloc(n);
    float *init = NULL, *snapshot = NULL;
    if (s->rewind == RSST_REWIND_INIT) {
        init = xalloc_floats(n);
        memcpy(init, m->params, n * sizeof(float));
    }
    if (s->rewind == RSST_REWIND_STEP) c.rewind_buf = xalloc_floats(n);
    if (s->refill) snapshot = xalloc_floats(n);
    prune_selection sel;
    prune_selection_init(&sel);
    prune_calib *calib = NULL;
    component_membership(m, s, in_comp);
    res->rounds = xcalloc((size_t)s->rounds, sizeof *res->rounds);
    res->params_before = n;
    res->flops_before = model_flops_per_sample(&m->cfg);
    int rc = -1;
    c.round = 1;
    if (evaluate(&c, m, test, &res->base_acc, &res->base_loss, err, errlen) != 0) goto done;

    for (int r = 1; r <= s->rounds; r++) {
        double t0 = pl_now();
        rsst_round *rr = &res->rounds[r - 1];
        rr->round = r;
        c.round = r;
        c.last_lambda = c.last_penalty = 0.0;
        /* 1. select */
        emit(&c, "prune", 0.0, 0, 0, 0.0f);
        if (any_calib) {
            char e2[PL_ERRLEN];
            calib = prune_calib_collect(m, train, s->prune.calib_samples, s->prune.seed + (uint64_t)r, e2, sizeof e2);
            if (!calib) {
                pl_err(err, errlen, "round %d, calibration on %s: %s", r, train->name, e2);
                goto done;
            }
        }
        long nt = rsst_select(m, s, r, calib, &sel, target, err, errlen);
        if (nt < 0) goto done;
        rr->targeted = nt;
        norms(m, target, in_comp, &rr->target_norm_before, &rr->other_norm_before);
        /* 2. regularise */
        c.phase_offset = 0;
        if (run_phase(&c, m, train, "regularise", s->reg_steps, s->reg_lr, target, s->prune.seed + 2 * (uint64_t)r,
                      err, errlen) != 0)
            goto done;
        rr->reg_steps = s->reg_steps;
        rr->lambda_end = s->reg_steps > 0 ? c.last_lambda : 0.0;
        rr->penalty_end = s->reg_steps > 0 ? c.last_penalty : 0.0;
        norms(m, target, in_comp, &rr->target_norm_after, &rr->other_norm_after);
        /* 3. remove, 4. refill, 5. rewind */
        emit(&c, "prune", 0.5, 0, 0, 0.0f);
        if (snapshot) memcpy(snapshot, m->params, n * sizeof(float));
        model_alloc_mask(m);
        for (size_t i = 0; i < n; i++)
            if (target[i]) {
                m->mask[i] = 0.0f;
                m->params[i] = 0.0f;
                if (m->grads) m->grads[i] = 0.0f;
            }
        if (s->refill && rsst_refill(m, s, calib, &sel, snapshot, err, errlen) != 0) goto done;
        prune_calib_free(calib);
        calib = NULL;
        const float *rw = s->rewind == RSST_REWIND_INIT ? init : c.rewind_have ? c.rewind_buf : NULL;
        if (evaluate(&c, m, test, &rr->pruned_acc, &rr->pruned_loss, err, errlen) != 0) goto done;
        if (rw)
            for (size_t i = 0; i < n; i++) m->params[i] = m->mask[i] != 0.0f ? rw[i] : 0.0f;
        emit(&c, "prune", 1.0, 0, 0, 0.0f);
        /* 6. fine-tune */
        c.phase_offset = s->reg_steps;
        if (run_phase(&c, m, train, "finetune", s->prune.finetune_steps, s->prune.finetune_lr, NULL,
                      s->prune.seed + 2 * (uint64_t)r + 1, err, errlen) != 0)
            goto done;
        rr->finetune_steps = s->prune.finetune_steps;
        if (s->prune.finetune_steps > 0 || rw) {
            if (evaluate(&c, m, test, &rr->finetuned_acc, &rr->finetuned_loss, err, errlen) != 0) goto done;
        } else {
            rr->finetuned_acc = rr->pruned_acc;
            rr->finetuned_loss = rr->pruned_loss;
        }
        rr->steps = c.steps_before;
        size_t z = 0, cw = 0, cz = 0;
        for (size_t i = 0; i < n; i++) {
            int zero = m->params[i] == 0.0f;
            z += zero;
            if (in_comp[i]) {
                cw++;
                cz += zero;
            }
        }
        rr->params = n;
        rr->nonzero = n - z;
        rr->sparsity = n ? (double)z / (double)n : 0.0;
        rr->component_weights = cw;
        rr->component_zeros = cz;
        rr->component_sparsity = cw ? (double)cz / (double)cw : 0.0;
        rr->seconds = pl_now() - t0;
        res->n_rounds = r;
    }
    if (shrink) {
        emit(&c, "prune", 0.0, 0, 0, 0.0f);
        model dst;
        char e2[PL_ERRLEN];
        if (prune_shrink(m, &sel, &dst, e2, sizeof e2) != 0) {
            model_free(&dst);
            pl_err(err, errlen, "shrinking after the last round: %s", e2);
            goto done;
        }
        model_free(m);
        *m = dst;
        c.m = m;
        res->shrunk = 1;
        emit(&c, "prune", 1.0, 0, 0, 0.0f);
    }
    if (evaluate(&c, m, test, &res->final_acc, &res->final_loss, err, errlen) != 0) goto done;
    res->params_after = m->n_params;
    res->nonzero_after = model_count_nonzero(m);
    res->flops_after = model_flops_per_sample(&m->cfg);
    rc = 0;
done:
    res->seconds = pl_now() - t_start;
    prune_calib_free(calib);
    prune_selection_free(&sel);
    free(target);
    free(in_comp);
    free(init);
    free(snapshot);
    free(c.rewind_buf);
    if (res == &rdummy) rsst_result_free(res);
    return rc;
}

void rsst_result_free(rsst_result *r)
{
    if (!r) return;
    free(r->rounds);
    r->rounds = NULL;
    r->n_rounds = 0;
}

static json_t *acc_json(double acc, double loss)
{
    if (acc < 0.0) return json_null();
    return json_pack("{s:f,s:f}", "accuracy", acc, "loss", loss);
}

char *rsst_result_json(const rsst_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "base", acc_json(r->base_acc, r->base_loss));
    json_object_set_new(o, "final", acc_json(r->final_acc, r->final_loss));
    json_object_set_new(o, "params_before", json_integer((json_int_t)r->params_before));
    json_object_set_new(o, "params_after", json_integer((json_int_t)r->params_after));
    json_object_set_new(o, "nonzero_after", json_integer((json_int_t)r->nonzero_after));
    json_object_set_new(o, "flops_per_sample_before", json_real(r->flops_before));
    json_object_set_new(o, "flops_per_sample_after", json_real(r->flops_after));
    json_object_set_new(o, "shrunk", json_boolean(r->shrunk));
    json_object_set_new(o, "seconds", json_real(r->seconds));
    json_t *series = json_array();
    for (int i = 0; i < r->n_rounds; i++) {
        const rsst_round *q = &r->rounds[i];
        json_t *e = json_object();
        json_object_set_new(e, "round", json_integer(q->round));
        json_object_set_new(e, "steps", json_integer(q->steps));
        json_object_set_new(e, "reg_steps", json_integer(q->reg_steps));
        json_object_set_new(e, "finetune_steps", json_integer(q->finetune_steps));
        json_object_set_new(e, "lambda_end", json_real(q->lambda_end));
        json_object_set_new(e, "penalty_end", json_real(q->penalty_end));
        json_object_set_new(e, "targeted", json_integer(q->targeted));
        json_object_set_new(e, "target_norm_before", json_real(q->target_norm_before));
        json_object_set_new(e, "target_norm_after", json_real(q->target_norm_after));
        json_object_set_new(e, "other_norm_before", json_real(q->other_norm_before));
        json_object_set_new(e, "other_norm_after", json_real(q->other_norm_after));
        json_object_set_new(e, "pruned", acc_json(q->pruned_acc, q->pruned_loss));
        json_object_set_new(e, "finetuned", acc_json(q->finetuned_acc, q->finetuned_loss));
        json_object_set_new(e, "sparsity", json_real(q->sparsity));
        json_object_set_new(e, "component_sparsity", json_real(q->component_sparsity));
        json_object_set_new(e, "component_weights", json_integer((json_int_t)q->component_weights));
        json_object_set_new(e, "component_zeros", json_integer((json_int_t)q->component_zeros));
        json_object_set_new(e, "nonzero", json_integer((json_int_t)q->nonzero));
        json_object_set_new(e, "params", json_integer((json_int_t)q->params));
        json_object_set_new(e, "seconds", json_real(q->seconds));
        json_array_append_new(series, e);
    }
    json_object_set_new(o, "series", series);
    char *t = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(o);
    return t;
}
