/* jobspec.h — validation and expansion of a typed job POST body into cell specs.
 *
 * Pure: no I/O, no store access. The handler looks the model up first (jobspec_model_name gives
 * the name to look up) and passes what the expansion needs to know about it in jobspec_limits.
 *
 * Body types (every type also takes "priority" (integer -1000..1000), "dataset" (default: the
 * model's), "eval" {"split": test|train, "max_samples" >= 1}, "calibration" {"samples" >= 1},
 * "seed" (integer >= 0); a causal LM job also "seq_len" (integer 2..65536) and "eval.max_tokens"
 * (integer >= 1), passed to every cell):
 *   train        "name" (the model to produce, required), "dataset" (required), "preset"
 *                (tiny|small|base) and/or dims (top level or inside "dims": d_model, layers,
 *                d_state, expand, d_conv, mlp_ratio, patch, dt_rank), "epochs", "batch", "lr",
 *                "min_lr", "warmup", "weight_decay", "optimizer", "momentum", "clip",
 *                "max_steps", "augment", optional "model" (an init checkpoint)   -> 1 cell
 *   ablation     "model", "components" [..], "rates" [..], "seeds" [..] (optional, else [seed]),
 *                "granularity", "criterion", "scope", "apply", "finetune"
 *                                                    -> components x rates x seeds cells
 *   sensitivity  "model", "layers" [..] or "all", "components" [..], "rate", "granularity",
 *                "criterion", "apply", "finetune"    -> layers x components cells
 *   joint        "model", "configs" [{component: rate, ...}, ...], "granularity", "criterion",
 *                "scope", "apply", "finetune"        -> one cell per config
 *   rsst         "model", "spec" {rsst spec}, "finetune" -> 1 cell
 *   lite         "model", "spec" {lite spec}, "finetune" -> 1 cell
 * Cell order: the first axis varies slowest (ablation: component, then rate, then seed).
 *
 * Cell specs follow engine/cell.h with two differences the scheduler resolves at launch:
 * "model" holds the MODEL NAME (not a path), and a train cell's "out" holds the NAME of the
 * model to register. The scheduler adds paths, "threads" and "baseline". Component names are
 * kept as the user wrote them (canonical name or alias).
 *
 * Tasks: a model whose info says config.task "causal_lm" is a causal LM and takes a token dataset
 * (dataset_names.h) whose vocabulary, when its name fixes it, fits the model's; an image model
 * takes an image dataset; either mismatch is invalid_value naming "dataset". */
#ifndef PL_SERVER_JOBSPEC_H
#define PL_SERVER_JOBSPEC_H

#include <stddef.h>

#include <jansson.h>

#include "store.h"

#define JOBSPEC_MAX_CELLS_DEFAULT 10000

typedef struct {
    const char *model_dataset; /* the model's dataset, the default "dataset"; may be NULL */
    int model_layers;          /* the model's layer count; 0 = unknown ("all" then refused) */
    int max_cells;             /* grid cap; <= 0 means JOBSPEC_MAX_CELLS_DEFAULT */
    const char *model_info;    /* the model's info JSON (prunelab inspect output): its dims, against
                                * which every expanded cell is checked; NULL = checked without a model */
    size_t max_cell_memory;    /* a cell whose estimated memory (cell_memory.h) is above this is refused
                                * ("too_large", naming the field that drives it); 0 = CELL_MEMORY_DEFAULT_MAX */
    int threads;               /* threads per cell, for the estimate; <= 0 = 1 */
} jobspec_limits;

typedef struct {
    char code[32];       /* "unknown_field", "missing_field", "invalid_value",
                          * "unknown_component", "empty_grid", "grid_too_large", "too_large"
                          * (a cell's memory estimate is above max_cell_memory) */
    char field[128];     /* path of the offending field, e.g. "rates[2]", "configs[1].mlp" */
    char message[256];   /* starts with the field path */
} jobspec_error;

typedef struct {
    store_job_type type;
    char *model;         /* model name, NULL for a train job without an init model */
    char *out;           /* train: name of the model produced, else NULL */
    char *dataset;       /* resolved dataset (NULL only when not needed) */
    int priority;
    char *spec_json;     /* canonical text of the body (sorted keys, compact) */
    char **cells;        /* n_cells cell spec JSON texts */
    size_t n_cells;
} jobspec;

/* What a model's info JSON says about its task (prunelab inspect: config.task, vocab, tied). */
typedef struct {
    int is_lm; /* config.task is "causal_lm" (else an image classifier, also when absent) */
    int vocab; /* LM vocabulary, 0 when unknown */
    int tied;  /* LM head tied to the embeddings */
} jobspec_task;

/* Fill *t from info_json (NULL or unparsable: an image classifier). Returns t->is_lm. */
int jobspec_info_task(const char *info_json, jobspec_task *t);

/* The "model" member of body when it is a string, else NULL (borrowed from body). */
const char *jobspec_model_name(const json_t *body);

/* Validate body and expand it. Returns 0 with *out filled (free with jobspec_free), or -1 with
 * *e filled (out then holds nothing to free). */
int jobspec_expand(const json_t *body, const jobspec_limits *lim, jobspec *out, jobspec_error *e);
void jobspec_free(jobspec *js); /* NULL-safe; frees the contents */

/* The layer count recorded in a model's info JSON (prunelab inspect output: config.n_layers,
 * or n_layers, or the length of "layers"); 0 when unknown or info_json is NULL. */
int jobspec_info_layers(const char *info_json);

#endif
