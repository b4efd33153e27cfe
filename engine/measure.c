/* measure.c — accuracy / loss of a model on a dataset and paired inference latency (measure.h).
 * Both run the inference forward (task.h: model_forward or model_forward_lm, without gradients)
 * in fixed batches; the evaluation accumulates the loss in double. Everything allocated is freed before returning. */
#include "measure.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"
#include "train.h"
#include "util.h"

static void tell(const measure_progress *p, double f, long done, long total)
{
    if (p && p->fn) p->fn(p->user, p->phase, f, done, total);
}

int measure_eval_full(const model *m, const dataset *ds, int batch, const measure_progress *p, measure_eval_out *r,
                      char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (train_check_compat(m, ds, err, errlen) != 0) return -1;
    if (ds->n < 1) return pl_err(err, errlen, "dataset %s (%s) is empty", ds->name, ds->split);
    if (batch <= 0) batch = 256;
    if (ds->tokens) batch = measure_lm_batch(batch, ds->T);
    int Bb = batch < ds->n ? batch : ds->n;
    long per = task_preds_per_sample(ds);
    model_acts *a = task_acts_new(m, ds, Bb, 0);
    task_batch tb;
    task_batch_init(&tb, ds, Bb);
    int *idx = xmalloc((size_t)Bb * sizeof(int));
    double loss_sum = 0.0, t = 0.0;
    long correct = 0;
    int nb = 0;
    tell(p, 0.0, -1, ds->n);
    for (int start = 0; start < ds->n; start += Bb) {
        int b = ds->n - start < Bb ? ds->n - start : Bb;
        for (int i = 0; i < b; i++) idx[i] = start + i;
        task_batch_fill(&tb, ds, idx, b, NULL, 0);
        double t0 = pl_now();
        float l = task_forward(m, a, &tb, b, &correct);
        t += pl_now() - t0;
        nb++;
        loss_sum += (double)l * b;
        tell(p, (double)(start + b) / ds->n, start + b, ds->n);
    }
    r->n = ds->n;
    r->predictions = (long)ds->n * per;
    r->accuracy = (double)correct / (double)r->predictions;
    r->loss = loss_sum / ds->n;
    r->forward_s = t;
    r->batches = nb;
    r->batch = Bb;
    free(idx);
    task_batch_free(&tb);
    model_acts_free(a);
    return 0;
}

int measure_eval_timed(const model *m, const dataset *ds, int batch, const measure_progress *p, double *acc,
                       double *loss, double *forward_s, int *batches, char *err, size_t errlen)
{
    measure_eval_out r;
    if (measure_eval_full(m, ds, batch, p, &r, err, errlen) != 0) return -1;
    *acc = r.accuracy;
    *loss = r.loss;
    if (forward_s) *forward_s = r.forward_s;
    if (batches) *batches = r.batches;
    return 0;
}

int measure_lm_batch(int batch, int T)
{
    int cap = MEASURE_LM_BATCH_TOKENS / (T > 0 ? T : 1);
    if (cap < 1) cap = 1;
    return batch < cap ? batch : cap;
}

int measure_eval(const model *m, const dataset *ds, int batch, const measure_progress *p, double *acc, double *loss,
                 char *err, size_t errlen)
{
    return measure_eval_timed(m, ds, batch, p, acc, loss, NULL, NULL, err, errlen);
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double measure_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], dbl_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int measure_latency_pair(const model *m0, const model *m, const dataset *ds, const measure_latency_opts *o,
                         const measure_progress *p, double *ms0, double *ms, double *speedup, int *pairs, char *err,
                         size_t errlen)
{
    measure_latency_opts d = MEASURE_LATENCY_DEFAULT;
    if (!o) o = &d;
    if (train_check_compat(m, ds, err, errlen) != 0 || train_check_compat(m0, ds, err, errlen) != 0) return -1;
    if (ds->n < 1) return pl_err(err, errlen, "dataset %s (%s) is empty", ds->name, ds->split);
    if (o->batch < 1 || o->min_reps < 1 || o->max_reps < o->min_reps || o->max_reps > MEASURE_MAX_REPS || o->warm < 0)
        return pl_err(err, errlen, "latency: bad options (batch %d, reps %d..%d)", o->batch, o->min_reps, o->max_reps);
    const int B = o->batch;
    task_batch tb;
    task_batch_init(&tb, ds, B);
    int *idx = xmalloc((size_t)B * sizeof(int));
    for (int i = 0; i < B; i++) idx[i] = i % ds->n;
    task_batch_fill(&tb, ds, idx, B, NULL, 0);
    model_acts *a = task_acts_new(m, ds, B, 0), *a0 = task_acts_new(m0, ds, B, 0);
    double *t = xmalloc(3 * (size_t)o->max_reps * sizeof(double));
    double *t0 = t + o->max_reps, *r = t0 + o->max_reps;
    int n = 0;
    double t_begin = pl_now();
    tell(p, 0.0, -1, 0);
    for (int i = 0; i < o->warm; i++) {
        task_forward_infer(m0, a0, &tb, B);
        task_forward_infer(m, a, &tb, B);
    }
    while (n < o->max_reps) {
        double s0 = pl_now();
        task_forward_infer(m0, a0, &tb, B);
        double s1 = pl_now();
        task_forward_infer(m, a, &tb, B);
        double s2 = pl_now();
        t0[n] = s1 - s0;
        t[n] = s2 - s1;
        r[n] = t[n] > 0 ? t0[n] / t[n] : NAN;
        n++;
        tell(p, (double)n / o->max_reps, n, 0);
        if (n >= o->min_reps && pl_now() - t_begin > o->budget_s) break;
    }
    *ms = 1000.0 * measure_median(t, n);
    *ms0 = 1000.0 * measure_median(t0, n);
    *speedup = measure_median(r, n);
    if (pairs) *pairs = n;
    free(t);
    model_acts_free(a);
    model_acts_free(a0);
    free(idx);
    task_batch_free(&tb);
    return 0;
}

json_t *measure_latency_timing_json(const measure_latency_opts *o, int pairs)
{
    measure_latency_opts d = MEASURE_LATENCY_DEFAULT;
    if (!o) o = &d;
    return json_pack("{s:s,s:s,s:i,s:i,s:i}", "method", "paired", "speedup", "median of per-pair ratios", "batch",
                     o->batch, "warm", o->warm, "pairs", pairs);
}

static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }

void measure_lm_into(json_t *into, const char *prefix, const dataset *ds, double loss)
{
    char k[64];
    snprintf(k, sizeof k, "%sperplexity", prefix);
    json_object_set_new(into, k, jnum(exp(loss)));
    snprintf(k, sizeof k, "%sbits_per_token", prefix);
    json_object_set_new(into, k, jnum(loss / M_LN2));
    if (ds->bytes_per_token > 0.0) {
        snprintf(k, sizeof k, "%sbits_per_byte", prefix);
        json_object_set_new(into, k, jnum(loss / M_LN2 / ds->bytes_per_token));
    }
}

int measure_latency_into(json_t *into, const model *m0, const model *m, const dataset *ds,
                         const measure_latency_opts *o, const measure_progress *p, char *err, size_t errlen)
{
    measure_latency_opts d = MEASURE_LATENCY_DEFAULT;
    if (!o) o = &d;
    double ms0 = NAN, ms = NAN, speedup = NAN;
    int pairs = 0;
    if (measure_latency_pair(m0, m, ds, o, p, &ms0, &ms, &speedup, &pairs, err, errlen) != 0) return -1;
    json_object_set_new(into, "latency_batch", json_integer(o->batch));
    json_object_set_new(into, "latency_ms_per_batch", jnum(ms));
    json_object_set_new(into, "samples_per_s", jnum(ms > 0 ? 1000.0 * o->batch / ms : NAN));
    json_object_set_new(into, "baseline_latency_ms_per_batch", jnum(ms0));
    json_object_set_new(into, "baseline_samples_per_s", jnum(ms0 > 0 ? 1000.0 * o->batch / ms0 : NAN));
    if (ds->tokens) {
        json_object_set_new(into, "latency_seq_len", json_integer(ds->T));
        json_object_set_new(into, "tokens_per_s", jnum(ms > 0 ? 1000.0 * o->batch * ds->T / ms : NAN));
        json_object_set_new(into, "baseline_tokens_per_s", jnum(ms0 > 0 ? 1000.0 * o->batch * ds->T / ms0 : NAN));
    }
    json_object_set_new(into, "speedup", jnum(speedup));
    json_object_set_new(into, "latency_timing", measure_latency_timing_json(o, pairs));
    return 0;
}
