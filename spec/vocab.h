/* vocab.h — the one vocabulary of prunelab, shared by the engine (prunelab) and the service
 * (prunelabd): pruning components with the notes' aliases, their structured units and tensors,
 * criteria, granularities, scopes, apply modes, cell recipes, job types, model presets, training
 * optimizers and their defaults. Pure C; no OpenBLAS, no I/O.
 *
 * Every name table lives in vocab.c and is tied to its *_COUNT by static_assert; everything else
 * (parsers, the engine, prunelabd, GET /api/v1/vocabulary, the dashboard) reads it from here. */
#ifndef PL_SPEC_VOCAB_H
#define PL_SPEC_VOCAB_H

#include <jansson.h>

#define SPEC_MAX_LAYERS 256

/* ------------------------------------------------------------------ pruning */

typedef enum {
    PC_OUT_PROJ,
    PC_MLP,
    PC_GATE,
    PC_IN_PROJ,
    PC_CONV1D,
    PC_X_PROJ_BC,
    PC_DT,
    PC_A_LOG,
    PC_D,
    PC_LAYER,
    PC_COUNT
} prune_component;

typedef enum { PG_UNSTRUCTURED, PG_STRUCTURED, PG_COUNT } prune_granularity;
typedef enum { PCR_MAGNITUDE, PCR_L2, PCR_ACTIVATION, PCR_TAYLOR, PCR_WANDA, PCR_RANDOM, PCR_COUNT } prune_criterion;
typedef enum { PS_LAYER, PS_GLOBAL, PS_COUNT } prune_scope;
typedef enum { PA_SHRINK, PA_MASK, PA_COUNT } prune_apply;

const char *prune_component_name(prune_component c);    /* canonical, e.g. "out_proj"; "?" out of range */
const char *prune_component_alias(prune_component c);   /* the notes' name, e.g. "linear_out" */
const char *prune_component_unit(prune_component c);    /* "output row", ...; NULL when no structured unit */
const char *prune_component_tensors(prune_component c); /* the weights it prunes, e.g. "in_proj rows E..2E-1" */
int prune_component_not_recommended(prune_component c); /* A_log, D */
/* Canonical name or alias -> component. Returns 0, or -1 for an unknown name (or NULL). */
int prune_component_parse(const char *s, prune_component *c);

const char *prune_criterion_name(prune_criterion c);
int prune_criterion_parse(const char *s, prune_criterion *c);
/* 1 when the criterion scores from a calibration pass (activation, taylor, wanda). */
int prune_criterion_needs_calib(prune_criterion c);

/* NULL-terminated name lists (index = enum value), for choice parsers and messages. */
extern const char *const spec_granularity_names[PG_COUNT + 1];
extern const char *const spec_scope_names[PS_COUNT + 1];
extern const char *const spec_apply_names[PA_COUNT + 1];
extern const char *const spec_criterion_names[PCR_COUNT + 1];

/* ------------------------------------------------------------------ recipes and job types */

typedef enum { CELL_TRAIN, CELL_ABLATION, CELL_SENSITIVITY, CELL_JOINT, CELL_RSST, CELL_LITE, CELL_RECIPE_COUNT } cell_recipe;

extern const char *const spec_recipe_names[CELL_RECIPE_COUNT + 1];
const char *cell_recipe_name(cell_recipe r); /* "?" out of range */

/* The keys of a job body of type t (the recipe names double as job types), NULL-terminated;
 * shared is the list every type takes. NULL for an unknown type. */
const char *const *spec_job_keys(cell_recipe t);
extern const char *const spec_job_shared_keys[];

/* ------------------------------------------------------------------ models and training */

/* Model hyper-parameters (model.h builds the config from them). */
typedef struct {
    int d, n_layers, d_state, d_conv, patch;
    float expand;
    float mlp_ratio; /* M = round(mlp_ratio * d); 0 = no MLP */
    int dt_rank;     /* 0 = ceil(d / 16) */
} model_hparams;

#define SPEC_PRESET_COUNT 3
extern const char *const spec_preset_names[SPEC_PRESET_COUNT + 1]; /* tiny, small, base */
/* Preset dims: tiny d32 L2 N8 x2 K4 M64 P4; small d64 L4 N16 x2 K4 M128 P4; base d128 L8 N16 x2
 * K4 M256 P4. Returns 0, or -1 for an unknown preset (hp zeroed). */
int model_preset(const char *name, model_hparams *hp);

typedef enum { SPEC_OPT_ADAMW, SPEC_OPT_SGD, SPEC_OPT_COUNT } spec_optimizer;
extern const char *const spec_optimizer_names[SPEC_OPT_COUNT + 1];

/* Training defaults (train.h and optim.h start from these). */
#define SPEC_TRAIN_EPOCHS 10
#define SPEC_TRAIN_BATCH 64
#define SPEC_TRAIN_LR 2e-3f
#define SPEC_TRAIN_WEIGHT_DECAY 0.05f
#define SPEC_TRAIN_MOMENTUM 0.9f
#define SPEC_TRAIN_CLIP 1.0f
/* Fine-tuning and calibration defaults of every pruning spec. */
#define SPEC_FINETUNE_LR 1e-3f
#define SPEC_FINETUNE_BATCH 64
#define SPEC_CALIB_SAMPLES 512

/* The whole vocabulary as JSON (GET /api/v1/vocabulary; new reference):
 *   {"components": [{"name", "alias", "tensors", "structured_unit" (null when none),
 *                    "structured", "recommended"}, ...],
 *    "criteria": [{"name", "needs_calibration"}], "granularities": [...], "scopes": [...],
 *    "apply": [...], "presets": [...], "optimizers": [...],
 *    "job_types": [{"name", "keys": [...]}], "shared_keys": [...]} */
json_t *spec_vocabulary_json(void);

#endif
