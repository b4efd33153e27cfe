/* lite.h — lite models (the notes' stage 3, "aggressive structured"; DESIGN.md section 5).
 *
 * A lite model has target dims (expand, d_conv, d_state, mlp_ratio, n_layers; any subset, the
 * rest unchanged per layer). It is built from a source model by keeping its most important
 * units under a criterion (prune_criterion; calibration data when the criterion needs it):
 *   d_inner channels  round(expand * d) per layer, ranked by gate score + in_proj score
 *   states            d_state per layer (x_proj_bc unit scores)
 *   conv taps         the d_conv taps nearest t (whatever the criterion)
 *   MLP neurons       round(mlp_ratio * d) per layer (mlp unit scores); mlp_ratio 0 removes the MLP;
 *                     a layer without an MLP stays without
 *   blocks            the n_layers highest-scoring blocks (layer scores), order kept
 * as ONE prune_selection, then prune_shrink, then optionally fine-tuned (train_run; masks of the
 * source are carried onto the kept weights and stay fixed). A lite model only shrinks: a target
 * larger than the source (in any layer) is refused, as is a target leaving nothing (0 channels,
 * states, taps or layers).
 * Letters as in model.h: d, E, N, R, K, M. */
#ifndef PL_LITE_H
#define PL_LITE_H

#include <stdint.h>

#include "data.h"
#include "model.h"
#include "prune.h"

/* lite_target, lite_spec, LITE_UNSET and lite_spec_init live in spec/spec.h (spec_lite_parse,
 * shared with prunelabd). */

/* Parse {"target": {"expand", "d_conv", "d_state", "mlp_ratio", "n_layers"}, "criterion",
 *        "calibration": {"samples"}, "finetune": {"steps" | "epochs", "lr", "batch"}, "seed"}.
 * Strict: unknown keys, wrong types, out-of-range values are refused with a message that starts
 * with the field ("target.n_layers: 0 is outside [1, 256]"). Targets are checked against a model
 * by lite_select / lite_build, not here. Returns 0 or -1 with err. */
int lite_spec_parse(const char *json_text, lite_spec *spec, char *err, size_t errlen);

/* Check t against src: -1 with err naming the field when t asks for more than src has in some
 * layer ("target.d_state: 32 is larger than the source's 16 in layer 1"), or for nothing
 * (0 d_inner channels after rounding, ...). Returns 0 when valid. */
int lite_target_check(const model *src, const lite_target *t, char *err, size_t errlen);

/* Build the selection of the lite model of src (scores on src; calib may be NULL unless the
 * criterion needs it). sel must be initialised (prune_selection_init); the caller frees it.
 * Returns 0 or -1 with err. */
int lite_select(const model *src, const lite_spec *spec, const prune_calib *calib, prune_selection *sel, char *err,
                size_t errlen);

/* Progress: phase is "score" | "build" | "finetune" | "eval"; fraction in [0, 1] within the phase
 * (each phase reports 0 at its start and 1 at its end, finetune also in between). */
typedef void (*lite_progress_fn)(const char *phase, double fraction, void *user);

/* Score (calibrating on calib_ds when the criterion needs it; calib_ds may otherwise be NULL)
 * and shrink: *dst receives the lite model, not fine-tuned (zeroed first, so model_free(dst) is
 * safe after an error; owned by the caller). Returns 0 or -1 with err. */
int lite_build(const model *src, const lite_spec *spec, const dataset *calib_ds, model *dst, lite_progress_fn progress,
               void *user, char *err, size_t errlen);

/* Options of lite_run. */
typedef struct {
    int latency_batch;         /* default 64 */
    int latency_reps;          /* timed pairs (source pass, lite pass); 0 (default): as a cell times them,
                                  MEASURE_LATENCY_DEFAULT (measure.h) */
    int eval_batch;            /* evaluation batch (default 256) */
    int eval_source;           /* 1 (default): evaluate the source on test too (report "source.test") */
    lite_progress_fn progress; /* NULL = silent */
    void *progress_user;
} lite_run_opts;

void lite_run_opts_init(lite_run_opts *o);

/* The whole recipe: lite_build (calibrating on train), evaluation on test right after the
 * transfer (and of the source), fine-tuning on train (when the spec asks for it: train_run,
 * AdamW, cosine from lr to lr/100, seed = spec seed, the mask kept fixed), evaluation after
 * fine-tuning, latency of source and lite model timed in pairs (measure_latency_pair, as a cell). Progress phases in order: score, build, eval
 * (source + transfer), finetune (only when fine-tuning), eval (final + latency).
 * train may be NULL when the spec neither fine-tunes nor calibrates; test may be NULL (no
 * accuracy fields then; latency is measured on train). opts may be NULL
 * (defaults). *dst receives the (fine-tuned) lite model, *report a malloc'd JSON object text:
 *   {"spec": {...target, criterion, finetune...},
 *    "source": {"layers": [{"index", "E", "N", "R", "K", "M"}], "n_layers", "params",
 *               "flops_per_sample", "latency_ms_per_batch", "samples_per_s", "test": {"accuracy", "loss"}},
 *    "lite":   {"layers": [{"index" (orig_index), "E", ...}], "n_layers", "params", "flops_per_sample",
 *               "latency_ms_per_batch", "samples_per_s"},
 *    "transfer": {"test": {"accuracy", "loss"}},
 *    "finetune": {"steps", "epochs", "lr", "batch", "seconds", "train_loss", "test": {"accuracy", "loss"}}
 *                (null when no fine-tuning),
 *    "latency_batch": 64, "speedup": median of the per-pair ratios source / lite (a cell's speedup),
 *    "latency_timing": measure_latency_timing_json (null without a latency set), "params_ratio", "flops_ratio",
 *    "accuracy_drop": source test accuracy - final lite test accuracy (when both are known),
 *    "seconds": wall time}
 * Returns 0 or -1 with err; on error *dst is freeable and *report is NULL. Both owned by the caller. */
int lite_run(const model *src, const lite_spec *spec, const dataset *train, const dataset *test,
             const lite_run_opts *opts, model *dst, char **report, char *err, size_t errlen);

#endif
