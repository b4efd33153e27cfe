/* measure.h — how a model is measured: accuracy and loss on a dataset, and inference latency
 * paired with a baseline. Cells and the CLI commands use these, so they report the same numbers
 * for the same models. Letters as in model.h.
 *
 * Progress: the optional callback gets the phase, the fraction done and, for evaluation, the
 * samples done of total (done = -1 on the first call of a phase, which should always be shown;
 * total = 0 when there is no sample count, as for latency). */
#ifndef PL_MEASURE_H
#define PL_MEASURE_H

#include <jansson.h>
#include <stddef.h>

#include "data.h"
#include "model.h"

typedef void (*measure_progress_fn)(void *user, const char *phase, double fraction, long done, long total);

typedef struct {
    measure_progress_fn fn; /* NULL = silent */
    void *user;
    const char *phase;      /* handed to fn */
} measure_progress;

/* One evaluation. For a token dataset a sample is a window of T tokens: accuracy is next-token
 * top-1 over n * (T - 1) predictions and loss the mean cross-entropy per prediction (nats). */
typedef struct {
    int n;              /* samples (windows) */
    long predictions;   /* n (images) or n * (T - 1) */
    double accuracy, loss;
    double forward_s;   /* forward time alone (batch filling excluded) */
    int batches, batch; /* batches run, samples per batch */
} measure_eval_out;
/* LM evaluation batches hold at most this many tokens (activations stay small whatever T). */
#define MEASURE_LM_BATCH_TOKENS 16384
/* batch capped to MEASURE_LM_BATCH_TOKENS / T windows (at least 1). */
int measure_lm_batch(int batch, int T);
int measure_eval_full(const model *m, const dataset *ds, int batch, const measure_progress *p, measure_eval_out *r,
                      char *err, size_t errlen);

/* Accuracy and mean cross-entropy of m on the first ds->n samples, in batches of `batch`
 * (<= 0: 256). Returns 0 or -1 with err (shape mismatch, empty dataset). */
int measure_eval(const model *m, const dataset *ds, int batch, const measure_progress *p, double *acc, double *loss,
                 char *err, size_t errlen);
/* Same, and (each may be NULL) the forward time alone in seconds (batch filling excluded) and the
 * number of batches run: train_evaluate's numbers. */
int measure_eval_timed(const model *m, const dataset *ds, int batch, const measure_progress *p, double *acc,
                       double *loss, double *forward_s, int *batches, char *err, size_t errlen);

/* Inference latency of m and of the baseline m0 on a batch of `batch` samples of ds (repeated
 * when ds is smaller), timed in pairs: a pass of m0, then a pass of m, so both see the same
 * machine (a shared machine's speed drifts over seconds, and adjacent passes drift together).
 * `warm` untimed pairs, then min_reps to max_reps timed pairs (stops adding pairs after
 * budget_s seconds once min_reps are done). *ms0 / *ms are the medians of each model's passes
 * in milliseconds, *speedup the median of the per-pair ratios t0 / t, *pairs (may be NULL) the
 * number of timed pairs. Returns 0 or -1 with err. */
typedef struct {
    int batch, warm, min_reps, max_reps;
    double budget_s;
} measure_latency_opts;
#define MEASURE_LATENCY_DEFAULT ((measure_latency_opts){64, 2, 5, 15, 3.0})
#define MEASURE_MAX_REPS 1000

int measure_latency_pair(const model *m0, const model *m, const dataset *ds, const measure_latency_opts *o,
                         const measure_progress *p, double *ms0, double *ms, double *speedup, int *pairs, char *err,
                         size_t errlen);

/* How a paired latency was taken, as every report of one shows it (a cell's metrics and
 * `prunelab lite`): {"method": "paired", "speedup": "median of per-pair ratios", "batch", "warm",
 * "pairs"}. o NULL = MEASURE_LATENCY_DEFAULT. A new reference. */
json_t *measure_latency_timing_json(const measure_latency_opts *o, int pairs);

/* measure_latency_pair of m against the baseline m0, written into the object `into` under the
 * names every report uses (a cell's metrics, `prunelab prune` and `prunelab rsst`):
 * latency_batch, latency_ms_per_batch, samples_per_s, baseline_latency_ms_per_batch,
 * baseline_samples_per_s, speedup (null when not finite) and latency_timing; for a token dataset
 * (samples = windows of T tokens) also latency_seq_len, tokens_per_s and baseline_tokens_per_s. o NULL =
 * MEASURE_LATENCY_DEFAULT. Returns 0 or -1 with err (into unchanged). */
int measure_latency_into(json_t *into, const model *m0, const model *m, const dataset *ds,
                         const measure_latency_opts *o, const measure_progress *p, char *err, size_t errlen);

/* The LM numbers of a mean next-token loss (nats) on token dataset ds, into `into` under
 * prefix (e.g. "" or "baseline_"): perplexity = exp(loss), bits_per_token = loss / ln 2 and,
 * when ds knows its bytes per token, bits_per_byte. Non-finite values become null. */
void measure_lm_into(json_t *into, const char *prefix, const dataset *ds, double loss);

/* Median of v[0..n) (sorts v); n >= 1. */
double measure_median(double *v, int n);

#endif
