/* rsst.h — RSST (regularised structured sparse training) and its iterative form (IMP with rewind
 * and refill), DESIGN.md section 5, SEED.md "Three stages of the RSST strategy".
 *
 * One round:
 *   1. select   the weights (unstructured entries) or units (structured entries, every coupled
 *               weight of the unit) that this round removes, by the entry's criterion;
 *   2. regularise  train with  task loss + lambda(t) * sum w^2  over exactly those weights,
 *               lambda(t) = lambda_max * (t / T)^p, t = 1..T (step s, 0-based, uses t = s + 1:
 *               the last step uses lambda_max);
 *   3. remove   mask them (params and mask set to 0);
 *   4. refill   (optional) make the unstructured masks channel-structured within the same budget;
 *   5. rewind   (optional) reset the surviving weights to the model given at the start ("init")
 *               or to the weights after k training steps of round 1 ({"step": k});
 *   6. fine-tune  with the masks fixed.
 * Round r (1-based) of `rounds` removes `rate` of what remains: unstructured entries reach
 * exactly round((1 - (1 - rate)^r) * count) zero weights (prune_unstructured's exact count, at
 * the cumulative rate); structured entries reach round((1 - (1 - rate)^r) * units) removed units
 * per layer (clamped like prune_apply_spec: a layer keeps one channel / state / rank / tap, the
 * model one block; structured gate and in_proj entries share the layer's d_inner channels, so the
 * later entry counts the earlier one's removals as already removed). The model keeps its full shape through every round (a mask); structured
 * removals with apply "shrink" (and refill with apply "shrink") are realised by prune_shrink
 * after the last round, giving the same logits.
 *
 * Spec JSON (strict; errors start with the field, e.g. "rsst.power: ..."):
 *   {"prune": [...entries as in prune specs...],
 *    "rsst": {"reg_steps": 100, "lambda_max": 1.0, "power": 1.0, "lr": 1e-3},
 *    "rounds": 1, "rewind": "none" | "init" | {"step": k},
 *    "refill": {"fillback_rate": 0.0, "apply": "shrink" | "mask"},   (or absent / null = no refill)
 *    "finetune": {"steps": 0, "lr": 1e-3}, "calibration": {"samples": 512}, "batch": 64, "seed": 1}
 * Letters as in model.h. */
#ifndef PL_RSST_H
#define PL_RSST_H

#include <stddef.h>
#include <stdint.h>

#include "data.h"
#include "model.h"
#include "prune.h"

/* rsst_rewind and rsst_spec live in spec/spec.h (spec_rsst_parse, shared with prunelabd). */

/* Parse a spec (format above). m (may be NULL) validates layer indices. Refused with a message
 * naming the field: unknown keys, wrong types, out-of-range values, rewind step beyond round 1,
 * refill on entries whose component has no structured unit (A_log, D) or is "layer".
 * Returns 0 or -1 with err. Free with rsst_spec_free. */
int rsst_spec_parse(const char *json_text, const model *m, rsst_spec *s, char *err, size_t errlen);

/* lambda(t) = lambda_max * (t / T)^p with t clamped to [0, T]; T <= 0 gives lambda_max. */
double rsst_lambda(double lambda_max, double power, long T, long t);

/* The penalty lambda * sum_{i: target[i]} params[i]^2. Adds its gradient 2 * lambda * w into
 * m->grads on the targeted entries only (grads must be allocated) and returns its value.
 * target (m->n_params): 1 = penalised. */
double rsst_penalty(model *m, const uint8_t *target, double lambda);

/* Step 1 of round `round` (1-based): set target[i] = 1 (m->n_params entries, others 0) for every
 * weight this round removes, and add this round's structured removals to *sel (the cumulative
 * selection, full shape, owned by the caller; only ever loses units). calib may be NULL when no
 * entry's criterion needs calibration. m is not modified. Returns the number of targeted weights
 * (>= 0) or -1 with err. */
long rsst_select(const model *m, const rsst_spec *s, int round, const prune_calib *calib, prune_selection *sel,
                 uint8_t *target, char *err, size_t errlen);

/* Step 4: for every unstructured entry whose component has a structured unit, per selected layer:
 * rank the units still alive in *sel by surviving (non-zero, unmasked) weights of the component,
 * ties by criterion score (higher first), then index; keep the top
 * n_dense = round(surviving / unit_size) units plus round(f * (alive - n_dense)) of the next ones
 * (conv1d taps: that many taps nearest t); write the removals into *sel, give the kept units' weights of the
 * component mask 1 again (values from restore (m->n_params) where the weight is zero, may be NULL
 * = keep zeros), and re-apply *sel as a mask. gate and in_proj share the d_inner channel: a
 * channel survives only if both keep it. Returns 0 or -1 with err. */
int rsst_refill(model *m, const rsst_spec *s, const prune_calib *calib, prune_selection *sel, const float *restore,
                char *err, size_t errlen);

/* Progress of rsst_run. Events at the start (phase_fraction 0) and end (1) of every phase and
 * during training every report_every_s seconds. m is the model being pruned, readable only
 * inside the callback (tests inspect it). */
typedef struct {
    const char *phase;        /* "regularise" | "prune" | "finetune" | "eval" */
    int round, rounds;        /* 1-based */
    double fraction;          /* of the whole run, monotone in [0, 1] */
    double phase_fraction;    /* of this phase */
    long step, steps;         /* training step within the phase and the phase's length */
    float loss;               /* mean task loss since the previous report (training phases; else 0) */
    double lambda;            /* lambda of the last regularisation step (0 elsewhere) */
    double penalty;           /* penalty value of the last regularisation step */
    const model *m;
} rsst_progress;
typedef void (*rsst_progress_fn)(const rsst_progress *p, void *user);

typedef struct {
    rsst_progress_fn progress; /* NULL = silent */
    void *progress_user;
    double report_every_s;     /* training progress period (<= 0: 2 s) */
    int eval_batch;            /* <= 0: 256 */
} rsst_options;

/* One entry of the per-round series. Accuracies / losses are -1 without a test set. */
typedef struct {
    int round;
    long steps;               /* training steps done so far (all rounds, both phases) */
    long reg_steps, finetune_steps;  /* of this round */
    double lambda_end;        /* lambda at the last regularisation step (0 without the phase) */
    double penalty_end;       /* penalty value at the last regularisation step */
    long targeted;            /* weights targeted (and removed) this round */
    double target_norm_before, target_norm_after;  /* L2 norm of the targeted weights before / after regularisation */
    double other_norm_before, other_norm_after;    /* same for the other unmasked weights of the pruned components */
    double pruned_acc, pruned_loss;       /* test, after removal (and refill) */
    double finetuned_acc, finetuned_loss; /* test, after fine-tuning (= pruned when no fine-tuning) */
    double sparsity;          /* zeros / params, whole model (full shape) */
    double component_sparsity;/* zeros / weights of the pruned components' slices in their layers */
    size_t component_weights, component_zeros;
    size_t nonzero, params;
    double seconds;           /* wall time of the round */
} rsst_round;

typedef struct {
    int n_rounds;
    rsst_round *rounds;       /* (n_rounds), owned */
    double base_acc, base_loss;   /* test, on the model as given (-1 without a test set) */
    double final_acc, final_loss; /* test, on the final model (after shrinking) */
    size_t params_before, params_after, nonzero_after;
    double flops_before, flops_after;
    int shrunk;               /* 1 when the final model was physically shrunk */
    double seconds;
} rsst_result;

/* Run every round on m (replaced by the shrunk model when a structured entry or refill asks for
 * shrink; its mask survives). train gives calibration and training batches; test (may be NULL)
 * the evaluations. Returns 0 or -1 with err (m may then be partly pruned). res may be NULL;
 * otherwise free with rsst_result_free. */
int rsst_run(model *m, const rsst_spec *s, const dataset *train, const dataset *test, const rsst_options *opt,
             rsst_result *res, char *err, size_t errlen);
void rsst_result_free(rsst_result *r); /* NULL-safe */
/* The result as a JSON object text (malloc'd): base, final, params, flops, shrunk, seconds and
 * "series": [{round, steps, lambda_end, ..., pruned: {accuracy, loss}, finetuned: {...},
 * sparsity, component_sparsity, nonzero, params}, ...]. */
char *rsst_result_json(const rsst_result *r);

#endif
