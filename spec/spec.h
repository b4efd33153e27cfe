/* spec.h — every spec prunelab accepts, parsed once by the same code in both processes: pruning
 * specs (prune entries, fine-tuning, calibration), RSST specs, lite specs and cell specs
 * (DESIGN.md section 6). The engine parses a cell's spec before it runs; prunelabd parses every
 * cell it expands from a job before it accepts the job, so a job the engine would refuse is
 * refused at submission with the same message.
 *
 * Parsers take a jansson object and fill plain structs; a parsed cell spec holds the parsed
 * rsst / lite spec. Checks that need the model (layer indices, components a layer lacks, lite
 * targets larger than the model) take a spec_shape: the model's dims, which the engine reads
 * from a loaded model and prunelabd from the model's inspect JSON.
 *
 * Errors: every refusal fills a spec_error whose field is the path of the offending value
 * ("rsst.prune[1].rate", "target.d_state", "bogus") and whose message starts with that field
 * ("rsst.prune[1].rate: 1.5 is outside [0, 1)"). The path argument of each parser is the prefix
 * under which its object sits ("" at the top, "rsst" inside a cell spec).
 * Ownership: a parsed spec owns its arrays and strings; free with the matching *_free (NULL-safe,
 * and safe after a failed parse). */
#ifndef PL_SPEC_SPEC_H
#define PL_SPEC_SPEC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "vocab.h"

/* ------------------------------------------------------------------ errors and fields */

typedef struct {
    const char *code;  /* "unknown_field", "missing_field", "invalid_value", "unknown_component" */
    char field[160];   /* path of the offending value; "" for the whole spec */
    char message[512]; /* starts with the field */
} spec_error;

/* Fill e (message = "FIELD: text", or text when field is empty); returns -1. */
int spec_fail(spec_error *e, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* path + "." + key (or key at the top) into buf; returns buf. */
const char *spec_path(char *buf, size_t n, const char *path, const char *key);

/* The strict field readers every parser uses. Absent optional fields keep *out. */
int spec_check_keys(json_t *o, const char *path, const char *const *allowed, spec_error *e);
int spec_get_obj(json_t *o, const char *path, const char *key, json_t **out, spec_error *e); /* absent: NULL */
int spec_get_str(json_t *o, const char *path, const char *key, int required, const char **out, spec_error *e);
int spec_get_int(json_t *o, const char *path, const char *key, long long lo, long long hi, long long *out,
                 spec_error *e);
/* A number in lo..hi, each end open or closed; NaN and infinities never pass. */
int spec_get_num(json_t *o, const char *path, const char *key, double lo, int lo_open, double hi, int hi_open,
                 double *out, spec_error *e);
/* A string that must be one of names (NULL-terminated); *out receives its index. */
int spec_get_choice(json_t *o, const char *path, const char *key, const char *const *names, int *out, spec_error *e);
int spec_get_bool(json_t *o, const char *path, const char *key, int *out, spec_error *e);
/* A criterion name. */
int spec_get_criterion(json_t *o, const char *path, const char *key, prune_criterion *out, spec_error *e);
/* A component name or alias (v may be NULL: required). */
int spec_parse_component(json_t *v, const char *field, prune_component *c, spec_error *e);
/* A pruning rate in [0, 1) (v may be NULL: required); 0.99999999 is kept below 1 as a float. */
int spec_parse_rate(json_t *v, const char *field, float *rate, spec_error *e);

/* ------------------------------------------------------------------ model shapes */

typedef struct {
    int E, N, R, K, M; /* d_inner, d_state, dt_rank, d_conv, MLP width (0 = none) */
} spec_layer_dims;

typedef struct {
    int d;        /* d_model */
    int n_layers; /* 0 = unknown: nothing is checked against the model */
    spec_layer_dims layers[SPEC_MAX_LAYERS];
} spec_shape;

/* The shape of a model's inspect JSON ({"config": {"d_model", "n_layers"}, "layers": [{"d_inner",
 * "d_state", "dt_rank", "d_conv", "mlp"}, ...]}), or of a cell result that wrote a model (its
 * "config" and "layers" [{"E", "N", "R", "K", "M"}, ...], engine/cell.h). Returns 0, or -1
 * (sh->n_layers 0) when the JSON does not describe the layers. */
int spec_shape_from_info(const json_t *info, spec_shape *sh);
/* Structured units of c in layer li (d, M, E, E, K, N, R, 0, 0, 1). */
int spec_shape_units(const spec_shape *sh, prune_component c, int li);
/* 1 when layer li has weights of c (the MLP of a layer with M = 0 does not exist). */
int spec_shape_has(const spec_shape *sh, prune_component c, int li);

/* ------------------------------------------------------------------ pruning specs */

typedef struct {
    prune_component component;
    prune_granularity granularity;
    float rate;                 /* fraction of weights (unstructured) or units (structured) removed, [0, 1) */
    prune_criterion criterion;
    prune_scope scope;          /* unstructured: per-layer or global threshold */
    int n_layers;               /* 0 = every layer */
    int layers[SPEC_MAX_LAYERS];
    prune_apply apply;          /* structured: shrink (default) or mask */
} prune_entry;

typedef struct {
    int n;
    prune_entry *entries;       /* owned */
    int finetune_steps;         /* 0 = none */
    float finetune_lr;
    int calib_samples;          /* calibration set size for activation/taylor/wanda (default 512) */
    uint64_t seed;              /* random criterion and calibration sampling */
} prune_spec;

/* {"prune": [{"component", "granularity", "rate", "criterion", "scope", "layers", "apply"}, ...],
 *  "finetune": {"steps", "lr"}, "calibration": {"samples"}, "seed"} (rules in spec_prune.c).
 * sh may be NULL (layers then checked only against SPEC_MAX_LAYERS). */
int spec_prune_parse(json_t *root, const char *path, const spec_shape *sh, prune_spec *out, spec_error *e);
/* The same fields without the unknown-key check of root (for specs that embed them). */
int spec_prune_parse_fields(json_t *root, const char *path, const spec_shape *sh, prune_spec *out, spec_error *e);
/* The model-dependent checks of a parsed spec: layer indices in range, layers having the component. */
int spec_prune_check(const prune_spec *s, const char *path, const spec_shape *sh, spec_error *e);
void prune_spec_free(prune_spec *spec);

/* ------------------------------------------------------------------ rsst specs (rsst.h) */

typedef enum { RSST_REWIND_NONE, RSST_REWIND_INIT, RSST_REWIND_STEP, RSST_REWIND_COUNT } rsst_rewind;

typedef struct {
    prune_spec prune;        /* entries (owned), finetune steps / lr, calibration samples, seed */
    int reg_steps;           /* T, regularisation steps per round (0 = plain IMP, no penalty phase) */
    float lambda_max;
    float power;             /* p >= 0 */
    float reg_lr;            /* learning rate of the regularisation phase (constant after warmup) */
    int rounds;              /* >= 1 */
    rsst_rewind rewind;
    long rewind_step;        /* k for RSST_REWIND_STEP: 0..reg_steps + finetune_steps of round 1 */
    int refill;              /* 1 when "refill" is given */
    float fillback_rate;     /* f in [0, 1] */
    prune_apply refill_apply;/* shrink (default) or mask */
    int batch;               /* training batch (default 64) */
} rsst_spec;

/* The format of rsst.h. sh may be NULL. */
int spec_rsst_parse(json_t *root, const char *path, const spec_shape *sh, rsst_spec *out, spec_error *e);
void rsst_spec_free(rsst_spec *s);

/* ------------------------------------------------------------------ lite specs (lite.h) */

#define LITE_UNSET (-1) /* a target field that keeps the source's value in every layer */
typedef struct {
    float expand;     /* E' = round(expand * d) in every kept layer */
    int d_conv;       /* K' */
    int d_state;      /* N' */
    float mlp_ratio;  /* M' = round(mlp_ratio * d); 0 removes the MLP */
    int n_layers;     /* blocks kept */
} lite_target;

typedef struct {
    lite_target target;
    prune_criterion criterion; /* default magnitude */
    int calib_samples;         /* calibration samples for activation / taylor / wanda (default 512) */
    long finetune_steps;       /* > 0: fine-tune this many optimizer steps */
    int finetune_epochs;       /* > 0: fine-tune this many epochs (steps and epochs are exclusive) */
    float finetune_lr;         /* default 1e-3 */
    int finetune_batch;        /* default 64 */
    uint64_t seed;             /* calibration sampling, random criterion, fine-tune shuffling (default 1) */
} lite_spec;

void lite_spec_init(lite_spec *s); /* defaults; every target field LITE_UNSET, no fine-tuning */
/* {"target": {"expand", "d_conv", "d_state", "mlp_ratio", "n_layers"}, "criterion",
 *  "calibration": {"samples"}, "finetune": {"steps" | "epochs", "lr", "batch"}, "seed"}. */
int spec_lite_parse(json_t *root, const char *path, lite_spec *out, spec_error *e);
/* The target against the source's shape: refused when it asks for more than the source has in
 * some layer, or for nothing ("target.d_state: 32 is larger than the source's 16 in layer 1"). */
int spec_lite_check(const lite_target *t, const char *path, const spec_shape *sh, spec_error *e);

/* ------------------------------------------------------------------ parsed specs as JSON */

/* Every field explicit (defaults included); each parses back to the same struct. New references. */
json_t *spec_prune_json(const prune_spec *s);
json_t *spec_rsst_json(const rsst_spec *s);
json_t *spec_lite_json(const lite_spec *s);
json_t *spec_lite_target_json(const lite_target *t); /* only the fields that are set */

/* ------------------------------------------------------------------ cell specs (cell.h) */

#define CELL_MAX_ENTRIES PC_COUNT
#define SPEC_SEQ_LEN 256 /* a cell's default seq_len (causal LMs) */

typedef struct {
    cell_recipe recipe;
    char *model;              /* NULL for a train cell that creates its model */
    char *dataset;
    char *data_dir;           /* NULL = default lookup */
    char *out;                /* NULL = no model written */
    uint64_t seed;
    int threads;              /* 0 = default */
    int have_baseline, have_baseline_loss;
    double baseline_accuracy, baseline_loss;
    int eval_train_split;     /* 1: evaluate on the train split */
    int eval_max_samples;     /* 0 = the whole split (an LM cell: windows) */
    long long eval_max_tokens; /* LM: 0 = the whole split, else the first ceil(max_tokens / seq_len) windows */
    int seq_len;              /* LM: tokens per window, 2..65536 (default SPEC_SEQ_LEN) */
    int finetune_steps;
    float finetune_lr;
    int finetune_batch;
    int have_finetune, have_calibration;
    int calib_samples;
    /* ablation / sensitivity / joint */
    int n_entries;
    prune_entry entries[CELL_MAX_ENTRIES];
    int layer;                /* sensitivity: the layer (-1 otherwise) */
    char entry_field[CELL_MAX_ENTRIES][48]; /* field naming each entry ("component", "components[1]", "config.mlp") */
    /* train */
    model_hparams hp;
    int have_dims;
    int epochs, batch, optimizer_sgd, augment;
    float lr, min_lr, weight_decay, momentum, clip;
    long warmup, max_steps;   /* warmup < 0 = automatic; max_steps 0 = none */
    char preset[16];
    /* rsst / lite: the recipe's own spec, with the cell-level finetune / calibration / seed
     * filled in where the recipe's object lacks them */
    rsst_spec rsst;
    lite_spec lite;
} cell_spec;

/* Everything of a cell spec that needs neither the files nor the model. */
int spec_cell_parse(json_t *root, cell_spec *s, spec_error *e);
/* The checks against the input model's shape (sensitivity layer, components the model lacks,
 * rsst layers, lite targets). */
int spec_cell_check(const cell_spec *s, const spec_shape *sh, spec_error *e);
/* 1 when the cell needs training data (it trains, fine-tunes or calibrates). */
int spec_cell_needs_train_data(const cell_spec *s);
void cell_spec_free(cell_spec *s); /* NULL-safe */

#endif
