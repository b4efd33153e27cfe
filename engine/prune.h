/* prune.h — pruning of the patch-Mamba model (DESIGN.md section 5, SEED.md).
 *
 * Vocabulary
 *   component    what is pruned (table below); the notes' names are accepted as aliases (their
 *                spelling lives in spec/vocab.c only).
 *   granularity  unstructured (single weights, layer-wise or global threshold) or structured
 *                (whole units, physically removable).
 *   criterion    how weights/units are scored; the lowest scores are removed.
 *   selection    the structured result: per layer, which units are kept. A selection is applied
 *                either as a mask (shapes kept, coupled weights zeroed) or by shrinking (a smaller,
 *                valid model). Both give the same logits.
 *   mask         model->mask (one float block, 1 keep / 0 pruned, same layout as params); on disk
 *                a safetensors file of U8 tensors, one per masked parameter, same name and shape.
 *
 * | component                  | unstructured weights            | structured unit                 |
 * |----------------------------|---------------------------------|---------------------------------|
 * | out_proj                   | out_proj.weight                 | output row j of d (masked; the  |
 * |                            |                                 | forward computes kept rows only)|
 * | mlp                        | fc1.weight, fc2.weight          | neuron: fc1 row+bias, fc2 column|
 * | gate                       | in_proj rows E..2E-1            | d_inner channel                 |
 * | in_proj                    | in_proj rows 0..E-1             | d_inner channel (expand)        |
 * | conv1d                     | conv1d.weight                   | kernel tap (oldest taps first)  |
 * | x_proj_bc                  | x_proj rows R..R+2N-1           | state n: x_proj rows R+n, R+N+n,|
 * |                            |                                 |   A_log column n                |
 * | dt                         | x_proj rows 0..R-1, dt_proj.w   | rank r: x_proj row r, dt_proj   |
 * |                            |                                 |   column r                      |
 * | A_log                      | A_log        (not recommended)  | none                            |
 * | D                          | D            (not recommended)  | none                            |
 * | layer                      | every weight matrix of the block| the block                       |
 * A d_inner channel e couples in_proj rows e and E+e, conv1d[e] (weight and bias), x_proj column
 * e, dt_proj row e and bias e, A_log row e, D[e] and out_proj column e.
 * Letters as in model.h: d, E, N, R, K, M; L tokens. */
#ifndef PL_PRUNE_H
#define PL_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#include "data.h"
#include "model.h"
#include "spec.h"
#include "vocab.h"

/* Statistics gathered on calibration batches (forward + backward), owned by the caller. */
typedef struct prune_calib prune_calib;

/* The vocabulary (prune_component, granularity, criterion, scope, apply and their names) and the
 * spec structs (prune_entry, prune_spec) live in spec/ (vocab.h, spec.h), shared with prunelabd. */

/* ------------------------------------------------------------------ weights of a component */

/* A contiguous float range of one parameter tensor. */
typedef struct {
    int tensor;       /* index into m->info */
    size_t start;     /* float offset within the tensor */
    size_t count;
} prune_slice;

#define PRUNE_MAX_SLICES 16

/* The unstructured weights of component c in layer `layer`. Returns the slice count (0 when the
 * layer lacks the component, e.g. mlp in a layer with M = 0). */
int prune_component_slices(const model *m, prune_component c, int layer, prune_slice *out);
/* Every parameter the component owns in that layer (weights, biases and coupled vectors), for
 * the "share of params" report. */
size_t prune_component_params(const model *m, prune_component c, int layer);
/* Number of structured units of c in that layer (d, M, E, E, K, N, R, -, -, 1). */
int prune_component_units(const model *m, prune_component c, int layer);
/* Everything the component owns in that layer (the slices above plus its biases / norms), as
 * slices; the nine components partition a block (ownership in prune_components.c). Returns the
 * slice count; prune_component_params is the sum of their counts. */
int prune_component_owned(const model *m, prune_component c, int layer, prune_slice *out);

/* ------------------------------------------------------------------ specs */

/* Parse {"prune": [{...}, ...], "finetune": {"steps", "lr"}, "calibration": {"samples"}, "seed"}.
 * Strict: unknown keys, unknown components/criteria, rates outside [0, 1) or NaN, structured
 * granularity for a component without units, layer indices out of range (when m != NULL) are
 * refused with a message naming the field (e.g. "prune[1].rate: 1.5 is outside [0, 1)").
 * Returns 0 or -1 with err. Free with prune_spec_free. */
int prune_spec_parse(const char *json_text, const model *m, prune_spec *spec, char *err, size_t errlen);

/* ------------------------------------------------------------------ structured selections */

typedef struct {
    /* per layer; a NULL array means "keep all" for that unit type */
    uint8_t *keep_row[MODEL_MAX_LAYERS];     /* (d) out_proj output rows */
    uint8_t *keep_neuron[MODEL_MAX_LAYERS];  /* (M) */
    uint8_t *keep_channel[MODEL_MAX_LAYERS]; /* (E) d_inner channels */
    uint8_t *keep_state[MODEL_MAX_LAYERS];   /* (N) */
    uint8_t *keep_rank[MODEL_MAX_LAYERS];    /* (R) */
    int keep_taps[MODEL_MAX_LAYERS];         /* taps kept, nearest t; 0 = all (K) */
    uint8_t drop_layer[MODEL_MAX_LAYERS];    /* 1 = block removed */
} prune_selection;

void prune_selection_init(prune_selection *s);
void prune_selection_free(prune_selection *s);
/* The keep array of component c's units in layer li (row / neuron / channel (gate and in_proj
 * share it) / state / rank), created all-ones with n entries when absent. NULL for components
 * without a keep array (conv1d taps, layer, A_log, D). */
uint8_t *prune_selection_keep(prune_selection *s, prune_component c, int li, int n);

/* The layers entry e selects in m (its explicit list, else every layer), into out (MODEL_MAX_LAYERS
 * entries). Returns the count. */
int prune_entry_layers(const model *m, const prune_entry *e, int *out);

/* What prune_select_structured chose for one entry, per selected layer (layers without units of
 * the component are left out, except for the layer component: one row per selected block). */
typedef struct {
    int layer;
    int units;    /* U (1 for a block) */
    long removed; /* units the entry's target removes (blocks: 1 when the block is dropped) */
    float score;  /* layer component: the block's score (0 when not scored) */
} prune_select_layer;
typedef struct {
    int n;
    prune_select_layer layers[MODEL_MAX_LAYERS];
    long units, removed;
    int clamped; /* a removal was cut to keep one unit (or one block) */
} prune_select_report;

/* The structured selector of prune and RSST: adds to sel the removals of structured entry e at
 * `rate` (e->rate is not read). Per selected layer round(rate * U) units go, lowest scores
 * (prune_score_units) first, ties to the lower index; conv1d removes its oldest taps whatever the
 * criterion; the layer component drops round(rate * selected blocks) blocks. A layer keeps at
 * least one unit except for mlp and out_proj; the model keeps one block. cumulative = 0: the
 * entry's lowest units of all U are removed (another entry's removals do not count); cumulative
 * = 1 (a round of RSST): units sel already removes count toward the target, only kept units
 * compete, and blocks sel drops are skipped. rep (may be NULL) receives what was chosen.
 * Returns 0 or -1 with err (a score failed or is not finite). */
int prune_select_structured(const model *m, const prune_entry *e, double rate, int cumulative,
                            const prune_calib *calib, uint64_t seed, prune_selection *sel, prune_select_report *rep,
                            char *err, size_t errlen);

/* Zero every weight the selection removes, coupled tensors included (sets m->mask, allocating it,
 * and applies it). A masked model and prune_shrink of the same selection give the same logits. */
void prune_selection_to_mask(model *m, const prune_selection *s);
/* Build dst: a smaller valid model without the removed units (dims per layer shrink; removed
 * blocks disappear and cfg.orig_index records the survivors). out_proj rows cannot shrink d:
 * they stay as zero rows, which the forward skips. Returns 0 or -1 with err. */
int prune_shrink(const model *src, const prune_selection *s, model *dst, char *err, size_t errlen);

/* ------------------------------------------------------------------ scores and calibration */

/* Statistics gathered on calibration batches (prune_calib.c) are declared near the top. */
/* Run n samples of ds (first n, or seeded random sample) through m. Returns NULL with err. */
prune_calib *prune_calib_collect(const model *m, const dataset *ds, int n, uint64_t seed, char *err, size_t errlen);
void prune_calib_free(prune_calib *c);
/* Accessors for the scorers and tests: 0 when c was collected on a model shaped like m (else -1
 * with err); calibration token count (samples * L); a named per-layer statistic (see
 * prune_calib.c for the names, e.g. "ss_a" sum of squares of in_proj's input features) with its
 * length, NULL if absent; per-weight sum over batches of |w * dL/dw| in params layout. */
int prune_calib_check(const prune_calib *c, const model *m, char *err, size_t errlen);
double prune_calib_tokens(const prune_calib *c);
const double *prune_calib_stat(const prune_calib *c, int layer, const char *name, int *len);
const float *prune_calib_taylor_weights(const prune_calib *c);

/* Unstructured scores of component c in layer `layer`, one per weight in prune_component_slices
 * order (concatenated). calib may be NULL for magnitude / l2 / random. Returns 0 or -1 with err. */
int prune_score_weights(const model *m, prune_component c, int layer, prune_criterion crit, const prune_calib *calib,
                        uint64_t seed, float *scores, char *err, size_t errlen);
/* Structured scores, one per unit. Returns 0 or -1 with err. */
int prune_score_units(const model *m, prune_component c, int layer, prune_criterion crit, const prune_calib *calib,
                      uint64_t seed, float *scores, char *err, size_t errlen);

/* ------------------------------------------------------------------ applying a spec */

/* Apply every entry of spec to m: unstructured entries update m->mask; structured entries build one
 * selection, applied as a mask (apply = mask) or by shrinking (apply = shrink; m is replaced by
 * the shrunk model). ds provides calibration data when a criterion needs it (may be NULL
 * otherwise). Returns 0 or -1 with err. */
int prune_apply_spec(model *m, const prune_spec *spec, const dataset *ds, char *err, size_t errlen);
/* Same, and *report (when report != NULL) receives a malloc'd JSON array text, one object per
 * entry saying what was removed (per layer: units or weights before / removed). */
int prune_apply_spec_report(model *m, const prune_spec *spec, const dataset *ds, char **report, char *err,
                            size_t errlen);
/* The prune recipe a cell and `prunelab prune` both run: *out = a copy of in pruned by spec
 * (prune_apply_spec_report; *report as there, may be NULL). When a structured entry is applied
 * as masks, *twin = the same selection shrunk, the realised model whose speed is measured;
 * otherwise twin->n_params is 0. The caller frees out and twin (model_free). Returns 0 or -1 with
 * err (out and twin then empty). */
int prune_run(const model *in, const prune_spec *spec, const dataset *ds, model *out, model *twin, char **report,
              char *err, size_t errlen);
/* Unstructured pruning of one entry (the notes' prune_mamba_unstructured): scores the entry's
 * weights (prune_score_weights) and masks the lowest ones — per layer (scope layer) or in one
 * ranking over the selected layers (scope global) — so that exactly round(rate * count) weights
 * are zero. Weights already zero (masked or exactly 0) count as removed: a second call at a
 * higher rate removes only the difference, at a lower rate nothing. Ties: lower index first.
 * layer indices of e refer to m. Returns the number of weights newly removed (>= 0), or -1 with
 * err. */
long prune_unstructured(model *m, const prune_entry *e, const prune_calib *calib, uint64_t seed, char *err,
                        size_t errlen);

/* ------------------------------------------------------------------ masks on disk, sparsity */

int prune_mask_save(const model *m, const char *path, char *err, size_t errlen);
/* Load a mask file onto m (names and shapes must match m); allocates m->mask, applies it. */
int prune_mask_load(model *m, const char *path, char *err, size_t errlen);

/* Sparsity as JSON text (malloc'd): overall, per tensor, per component, per layer; counts of
 * zeros agree with counting zero weights in m->params. */
char *prune_sparsity_json(const model *m);

/* The notes' checklist under our names:
 *   is_mamba_model()            prune_is_mamba_model (our tensor names and consistent shapes)
 *   get_prunable_layers()       prune_component_slices / prune_component_units per layer
 *                               (`prunelab components`)
 *   prune_mamba_unstructured()  prune_unstructured
 *   prune_mamba_structured()    prune_score_units + prune_selection_* + prune_shrink, one unit
 *                               type per component (prune_apply_spec does the whole spec)
 *   extract_mask_mamba()        prune_mask_save (model->mask to a U8 file)
 *   apply_mask_mamba()          prune_mask_load / model_apply_mask
 *   check_sparsity_mamba()      prune_sparsity_json
 * Returns 1 when m has our tensor names with consistent shapes, else 0. */
int prune_is_mamba_model(const model *m);

#endif
