/* lite.c — lite models (lite.h; the notes' stage 3, DESIGN.md section 5 "Lite model").
 *
 * What: a lite model is the physical shrink (prune_shrink) of ONE prune_selection built from
 * target dims; the selection keeps, per kept layer of the source,
 *   d_inner channels  the round(expand * d) channels with the highest gate score + in_proj score
 *                     (prune_score_units of PC_GATE and PC_IN_PROJ, summed per channel: the gate
 *                     half and the x half of in_proj are one channel, and a channel matters when
 *                     either its gate or its SSM path does; under magnitude this is the L1 of
 *                     in_proj rows e and E+e plus out_proj column e);
 *   states            the d_state states with the highest x_proj_bc unit scores;
 *   conv taps         the d_conv taps nearest t (keep_taps; the oldest taps go whatever the
 *                     criterion, as in prune_apply.c);
 *   MLP neurons       the round(mlp_ratio * d) neurons with the highest mlp unit scores;
 *                     mlp_ratio 0 removes every neuron, so the layer loses its MLP;
 *   blocks            the n_layers blocks with the highest layer scores, in their original order
 *                     (orig_index records them).
 * dt rank and out_proj rows are never touched. Ties keep the lower index. Every score is taken
 * on the source model as given (with its mask applied), calibrated on the dataset when the
 * criterion needs it (activation, taylor, wanda); prune_shrink carries the source's mask onto
 * the kept weights, and fine-tuning (train_run) keeps it fixed.
 * Assumptions: targets are checked against every source layer (a target larger than some layer
 * is refused even if that layer would be dropped); a lite model only shrinks. mlp_ratio applies
 * to the layers that have an MLP: a layer without one stays without (a source with no MLP at all
 * refuses mlp_ratio > 0).
 * Ownership: the caller owns the source, the lite model (*dst) and the report text (malloc'd).
 * Letters as in model.h: d, E, N, R, K, M; B batch. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lite.h"
#include "measure.h"
#include "train.h"
#include "util.h"


static int round_int(double x) { return (int)floor(x + 0.5); }

void lite_run_opts_init(lite_run_opts *o)
{
    memset(o, 0, sizeof *o);
    o->latency_batch = 64;
    o->latency_reps = 0;
    o->eval_batch = 256;
    o->eval_source = 1;
}

/* ------------------------------------------------------------------ selection */

typedef struct {
    float score;
    int idx;
} ranked;

/* Highest score first; ties: lower index first. */
static int ranked_desc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score > y->score) return -1;
    if (x->score < y->score) return 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* keep (n): 1 for the k highest scores (ties to the lower index), else 0. Returns 0, or -1 with
 * err when a score is not finite (what names the unit type for the message). */
static int keep_top(const float *scores, int n, int k, uint8_t *keep, const char *what, int layer, char *err,
                    size_t errlen)
{
    ranked *r = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *r);
    for (int i = 0; i < n; i++) {
        if (!isfinite(scores[i])) {
            free(r);
            return pl_err(err, errlen, "score of %s %d in layer %d is not finite", what, i, layer);
        }
        r[i] = (ranked){.score = scores[i], .idx = i};
    }
    qsort(r, (size_t)n, sizeof *r, ranked_desc);
    for (int i = 0; i < n; i++) keep[r[i].idx] = i < k;
    free(r);
    return 0;
}

/* Score component c's units in layer li (n of them) into a new array (*out, caller frees). */
static int score_units(const model *src, prune_component c, int li, int n, const lite_spec *spec,
                       const prune_calib *calib, float **out, char *err, size_t errlen)
{
    float *s = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *s);
    char e2[PL_ERRLEN];
    if (prune_score_units(src, c, li, spec->criterion, calib, spec->seed, s, e2, sizeof e2) != 0) {
        free(s);
        return pl_err(err, errlen, "scoring %s units of layer %d (%s): %s", prune_component_name(c), li,
                      prune_criterion_name(spec->criterion), e2);
    }
    *out = s;
    return 0;
}

int lite_select(const model *src, const lite_spec *spec, const prune_calib *calib, prune_selection *sel, char *err,
                size_t errlen)
{
    const lite_target *t = &spec->target;
    const model_config *c = &src->cfg;
    if (lite_target_check(src, t, err, errlen) != 0) return -1;
    if (prune_criterion_needs_calib(spec->criterion) && !calib)
        return pl_err(err, errlen, "criterion: %s needs calibration data (give a dataset)",
                      prune_criterion_name(spec->criterion));
    int nl = c->n_layers, d = c->d;

    /* blocks: the n_layers highest layer scores survive, in their original order */
    if (t->n_layers != LITE_UNSET && t->n_layers < nl) {
        float *ls = xmalloc((size_t)nl * sizeof *ls);
        for (int i = 0; i < nl; i++) {
            char e2[PL_ERRLEN];
            if (prune_score_units(src, PC_LAYER, i, spec->criterion, calib, spec->seed, &ls[i], e2, sizeof e2) != 0) {
                free(ls);
                return pl_err(err, errlen, "scoring block %d (%s): %s", i, prune_criterion_name(spec->criterion), e2);
            }
        }
        uint8_t keep[MODEL_MAX_LAYERS];
        int rc = keep_top(ls, nl, t->n_layers, keep, "block", -1, err, errlen);
        free(ls);
        if (rc != 0) return -1;
        for (int i = 0; i < nl; i++) sel->drop_layer[i] = !keep[i];
    }

    for (int li = 0; li < nl; li++) {
        if (sel->drop_layer[li]) continue;
        const layer_dims *ld = &c->layers[li];
        /* d_inner channels: gate score + in_proj score */
        int E2 = t->expand != LITE_UNSET ? round_int((double)t->expand * d) : ld->E;
        if (E2 < ld->E) {
            float *g = NULL, *x = NULL;
            if (score_units(src, PC_GATE, li, ld->E, spec, calib, &g, err, errlen) != 0) return -1;
            if (score_units(src, PC_IN_PROJ, li, ld->E, spec, calib, &x, err, errlen) != 0) {
                free(g);
                return -1;
            }
            for (int e = 0; e < ld->E; e++) g[e] += x[e];
            free(sel->keep_channel[li]);
            sel->keep_channel[li] = xmalloc((size_t)ld->E);
            int rc = keep_top(g, ld->E, E2, sel->keep_channel[li], "d_inner channel", li, err, errlen);
            free(g);
            free(x);
            if (rc != 0) return -1;
        }
        /* states */
        if (t->d_state != LITE_UNSET && t->d_state < ld->N) {
            float *s = NULL;
            if (score_units(src, PC_X_PROJ_BC, li, ld->N, spec, calib, &s, err, errlen) != 0) return -1;
            free(sel->keep_state[li]);
            sel->keep_state[li] = xmalloc((size_t)ld->N);
            int rc = keep_top(s, ld->N, t->d_state, sel->keep_state[li], "state", li, err, errlen);
            free(s);
            if (rc != 0) return -1;
        }
        /* conv taps: the nearest t */
        if (t->d_conv != LITE_UNSET && t->d_conv < ld->K) sel->keep_taps[li] = t->d_conv;
        /* MLP neurons */
        if (t->mlp_ratio != LITE_UNSET && ld->M > 0) {
            int M2 = round_int((double)t->mlp_ratio * d);
            if (M2 < ld->M) {
                free(sel->keep_neuron[li]);
                sel->keep_neuron[li] = xcalloc((size_t)ld->M, 1);
                if (M2 > 0) {
                    float *s = NULL;
                    if (score_units(src, PC_MLP, li, ld->M, spec, calib, &s, err, errlen) != 0) return -1;
                    int rc = keep_top(s, ld->M, M2, sel->keep_neuron[li], "MLP neuron", li, err, errlen);
                    free(s);
                    if (rc != 0) return -1;
                }
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ build */

static void report_progress(lite_progress_fn fn, void *user, const char *phase, double f)
{
    if (fn) fn(phase, f, user);
}

/* Record how the lite model was made in its provenance (the source's provenance nested when it
 * fits in the field). */
static void set_provenance(model *dst, const model *src, const lite_spec *spec)
{
    json_t *o = json_object();
    json_object_set_new(o, "created_by", json_string("prunelab lite"));
    json_object_set_new(o, "target", spec_lite_target_json(&spec->target));
    json_object_set_new(o, "criterion", json_string(prune_criterion_name(spec->criterion)));
    json_object_set_new(o, "source_layers", json_integer(src->cfg.n_layers));
    json_t *sp = src->cfg.provenance[0] ? json_loads(src->cfg.provenance, 0, NULL) : NULL;
    if (sp) json_object_set_new(o, "source", sp);
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(8));
    if (text && strlen(text) >= sizeof dst->cfg.provenance && sp) {
        free(text);
        json_object_del(o, "source");
        text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(8));
    }
    if (text && strlen(text) < sizeof dst->cfg.provenance)
        snprintf(dst->cfg.provenance, sizeof dst->cfg.provenance, "%s", text);
    free(text);
    json_decref(o);
}

int lite_build(const model *src, const lite_spec *spec, const dataset *calib_ds, model *dst, lite_progress_fn progress,
               void *user, char *err, size_t errlen)
{
    memset(dst, 0, sizeof *dst);
    if (lite_target_check(src, &spec->target, err, errlen) != 0) return -1;
    report_progress(progress, user, "score", 0.0);
    prune_calib *calib = NULL;
    if (prune_criterion_needs_calib(spec->criterion)) {
        if (!calib_ds)
            return pl_err(err, errlen, "criterion: %s needs calibration data (give a dataset)",
                          prune_criterion_name(spec->criterion));
        char e2[PL_ERRLEN];
        calib = prune_calib_collect(src, calib_ds, spec->calib_samples, spec->seed, e2, sizeof e2);
        if (!calib) return pl_err(err, errlen, "calibration on %s: %s", calib_ds->name, e2);
        report_progress(progress, user, "score", 0.5);
    }
    prune_selection sel;
    prune_selection_init(&sel);
    int rc = lite_select(src, spec, calib, &sel, err, errlen);
    prune_calib_free(calib);
    if (rc == 0) {
        report_progress(progress, user, "score", 1.0);
        report_progress(progress, user, "build", 0.0);
        char e2[PL_ERRLEN];
        rc = prune_shrink(src, &sel, dst, e2, sizeof e2);
        if (rc != 0) {
            pl_err(err, errlen, "building the lite model: %s", e2);
            model_free(dst);
            memset(dst, 0, sizeof *dst);
        } else {
            set_provenance(dst, src, spec);
            report_progress(progress, user, "build", 1.0);
        }
    }
    prune_selection_free(&sel);
    return rc;
}

/* ------------------------------------------------------------------ the whole recipe */

static json_t *model_json(const model *m)
{
    json_t *o = json_object();
    json_object_set_new(o, "n_layers", json_integer(m->cfg.n_layers));
    json_object_set_new(o, "layers", model_dims_json(m));
    json_object_set_new(o, "params", json_integer((json_int_t)m->n_params));
    json_object_set_new(o, "flops_per_sample", json_real(model_flops_per_sample(&m->cfg)));
    return o;
}

static int eval_json(const model *m, const dataset *ds, int batch, json_t **out, double *acc, char *err,
                     size_t errlen)
{
    double a, l;
    if (measure_eval(m, ds, batch, NULL, &a, &l, err, errlen) != 0) return -1;
    *out = json_pack("{s:f,s:f,s:i}", "accuracy", a, "loss", l, "n", ds->n);
    if (dataset_is_tokens(ds)) measure_lm_into(*out, "", ds, l);
    if (acc) *acc = a;
    return 0;
}

typedef struct {
    lite_progress_fn fn;
    void *user;
} ft_relay;

static void ft_progress(const train_progress *p, void *user)
{
    const ft_relay *r = user;
    if (r->fn) r->fn("finetune", p->fraction, r->user);
}

/* measure.h progress -> lite progress: the paired latency fills 0.4 .. 1.0 of the final "eval" */
typedef struct {
    lite_progress_fn fn;
    void *user;
} lat_relay;

static void lat_progress(void *user, const char *phase, double fraction, long done, long total)
{
    const lat_relay *r = user;
    (void)done, (void)total;
    if (r->fn && fraction > 0.0 && fraction < 1.0) r->fn(phase, 0.4 + 0.6 * fraction, r->user);
}

int lite_run(const model *src, const lite_spec *spec, const dataset *train, const dataset *test,
             const lite_run_opts *opts, model *dst, char **report, char *err, size_t errlen)
{
    double t0 = pl_now();
    *report = NULL;
    memset(dst, 0, sizeof *dst);
    lite_run_opts o;
    if (opts)
        o = *opts;
    else
        lite_run_opts_init(&o);
    if (o.latency_batch < 1) o.latency_batch = 64;
    if (o.eval_batch < 1) o.eval_batch = 256;
    int finetune = spec->finetune_steps > 0 || spec->finetune_epochs > 0;
    if (finetune && !train) return pl_err(err, errlen, "finetune: fine-tuning needs a training set");
    if (spec->finetune_steps > 0 && spec->finetune_epochs > 0)
        return pl_err(err, errlen, "finetune.epochs: give finetune.steps or finetune.epochs, not both");
    const dataset *lat_ds = test ? test : train;
    if (train && train_check_compat(src, train, err, errlen) != 0) return -1;
    if (test && train_check_compat(src, test, err, errlen) != 0) return -1;

    if (lite_build(src, spec, train, dst, o.progress, o.progress_user, err, errlen) != 0) return -1;

    json_t *rep = json_object(), *js = model_json(src), *jl = NULL, *tr = json_object(), *ft = json_null();
    json_t *spec_j = json_object(), *timing = NULL;
    json_object_set_new(spec_j, "target", spec_lite_target_json(&spec->target));
    json_object_set_new(spec_j, "criterion", json_string(prune_criterion_name(spec->criterion)));
    if (prune_criterion_needs_calib(spec->criterion)) json_object_set_new(spec_j, "calibration_samples", json_integer(spec->calib_samples));
    json_object_set_new(spec_j, "seed", json_integer((json_int_t)spec->seed));
    double src_acc = -1.0, lite_acc = -1.0;

    /* right after transfer */
    report_progress(o.progress, o.progress_user, "eval", 0.0);
    if (test) {
        json_t *e;
        if (o.eval_source) {
            if (eval_json(src, test, o.eval_batch, &e, &src_acc, err, errlen) != 0) goto fail;
            json_object_set_new(js, "test", e);
        }
        report_progress(o.progress, o.progress_user, "eval", 0.5);
        if (eval_json(dst, test, o.eval_batch, &e, &lite_acc, err, errlen) != 0) goto fail;
        json_object_set_new(tr, "test", e);
    }
    report_progress(o.progress, o.progress_user, "eval", 1.0);

    if (finetune) {
        train_config tc;
        train_config_finetune(&tc, train, spec->finetune_epochs > 0 ? 0 : spec->finetune_steps, spec->finetune_epochs,
                              spec->finetune_lr, spec->finetune_batch, spec->seed);
        int Bb = tc.batch < train->n ? tc.batch : train->n;
        long spe = train->n / Bb;
        tc.report_every_s = 2.0;
        ft_relay relay = {o.progress, o.progress_user};
        tc.progress = o.progress ? ft_progress : NULL;
        tc.progress_user = &relay;
        report_progress(o.progress, o.progress_user, "finetune", 0.0);
        train_result r;
        char e2[PL_ERRLEN];
        if (train_run(dst, train, NULL, &tc, &r, e2, sizeof e2) != 0) {
            pl_err(err, errlen, "fine-tuning: %s", e2);
            goto fail;
        }
        report_progress(o.progress, o.progress_user, "finetune", 1.0);
        ft = json_object();
        json_object_set_new(ft, "steps", json_integer(r.steps));
        json_object_set_new(ft, "epochs", json_real((double)r.steps / (double)spe));
        json_object_set_new(ft, "lr", json_real(round((double)spec->finetune_lr * 1e9) / 1e9));
        json_object_set_new(ft, "batch", json_integer(Bb));
        json_object_set_new(ft, "seconds", json_real(r.seconds));
        json_object_set_new(ft, "train_loss", json_real(r.train_loss));
    }

    /* after fine-tuning, and speed */
    report_progress(o.progress, o.progress_user, "eval", 0.0);
    if (finetune && test) {
        json_t *e;
        if (eval_json(dst, test, o.eval_batch, &e, &lite_acc, err, errlen) != 0) goto fail;
        json_object_set_new(ft, "test", e);
    }
    report_progress(o.progress, o.progress_user, "eval", 0.4);
    double s_ms = 0, s_sps = 0, l_ms = 0, l_sps = 0, speedup = 0;
    if (lat_ds) { /* timed as a cell times it: pairs of passes, source then lite (measure.h) */
        measure_latency_opts lo = MEASURE_LATENCY_DEFAULT;
        lo.batch = o.latency_batch;
        if (o.latency_reps > 0) lo.min_reps = lo.max_reps = o.latency_reps;
        int pairs = 0;
        lat_relay lr = {o.progress, o.progress_user};
        measure_progress mp = {o.progress ? lat_progress : NULL, &lr, "eval"};
        if (measure_latency_pair(src, dst, lat_ds, &lo, &mp, &s_ms, &l_ms, &speedup, &pairs, err, errlen) != 0)
            goto fail;
        s_sps = s_ms > 0 ? 1000.0 * lo.batch / s_ms : 0.0;
        l_sps = l_ms > 0 ? 1000.0 * lo.batch / l_ms : 0.0;
        json_object_set_new(js, "latency_ms_per_batch", json_real(s_ms));
        json_object_set_new(js, "samples_per_s", json_real(s_sps));
        timing = measure_latency_timing_json(&lo, pairs);
    }
    report_progress(o.progress, o.progress_user, "eval", 1.0);

    jl = model_json(dst);
    if (lat_ds) {
        json_object_set_new(jl, "latency_ms_per_batch", json_real(l_ms));
        json_object_set_new(jl, "samples_per_s", json_real(l_sps));
    }
    json_t *ftspec = json_object();
    if (spec->finetune_epochs > 0) json_object_set_new(ftspec, "epochs", json_integer(spec->finetune_epochs));
    if (spec->finetune_steps > 0) json_object_set_new(ftspec, "steps", json_integer(spec->finetune_steps));
    if (finetune) {
        json_object_set_new(ftspec, "lr", json_real(round((double)spec->finetune_lr * 1e9) / 1e9));
        json_object_set_new(ftspec, "batch", json_integer(spec->finetune_batch));
    }
    json_object_set_new(spec_j, "finetune", ftspec);
    json_object_set_new(rep, "spec", spec_j);
    json_object_set_new(rep, "source", js);
    json_object_set_new(rep, "lite", jl);
    json_object_set_new(rep, "transfer", tr);
    json_object_set_new(rep, "finetune", ft);
    json_object_set_new(rep, "latency_batch", json_integer(o.latency_batch));
    json_object_set_new(rep, "speedup", json_real(lat_ds && isfinite(speedup) ? speedup : 0.0));
    json_object_set_new(rep, "latency_timing", timing ? timing : json_null());
    timing = NULL;
    json_object_set_new(rep, "params_ratio", json_real((double)dst->n_params / (double)src->n_params));
    double fs = model_flops_per_sample(&src->cfg), fl = model_flops_per_sample(&dst->cfg);
    json_object_set_new(rep, "flops_ratio", json_real(fs > 0 ? fl / fs : 0.0));
    if (src_acc >= 0 && lite_acc >= 0) json_object_set_new(rep, "accuracy_drop", json_real(src_acc - lite_acc));
    json_object_set_new(rep, "seconds", json_real(pl_now() - t0));
    *report = json_dumps(rep, JSON_COMPACT | JSON_REAL_PRECISION(8));
    json_decref(rep);
    return 0;

fail:
    json_decref(timing);
    json_decref(rep);
    json_decref(js);
    json_decref(jl);
    json_decref(tr);
    json_decref(ft);
    json_decref(spec_j);
    model_free(dst);
    memset(dst, 0, sizeof *dst);
    return -1;
}
