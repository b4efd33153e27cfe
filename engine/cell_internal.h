/* cell_internal.h — what the cell's files share (cell.c runs a cell, cell_events.c writes its
 * events, cell_spec.c parses its spec, cell_<recipe>.c hold the recipes). Not for use outside
 * the cell: the public interface is cell.h.
 *
 * Events: one writer per cell (cell_ctx), guarded by a mutex; a heartbeat thread repeats the last
 * progress line when nothing was written for CELL_HEARTBEAT_S seconds. Progress lines from the
 * work are at most every CELL_PROGRESS_MIN_S seconds, except at a phase change or when forced.
 * Recipes: each fills a recipe_out from a recipe_env; the common tail in cell.c fine-tunes,
 * evaluates, times and saves what the recipe produced. */
#ifndef PL_CELL_INTERNAL_H
#define PL_CELL_INTERNAL_H

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>

#include "cell.h"
#include "data.h"
#include "model.h"

#define CELL_PROGRESS_MIN_S 1.0 /* progress lines from the work are at most this frequent */
#define CELL_LATENCY_BATCH 64
#define CELL_EVAL_BATCH 256
#define CELL_MAX_PHASES 16

/* ------------------------------------------------------------------ events (cell_events.c) */

typedef struct {
    FILE *out;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t ticker;
    int ticker_on, stop, final_sent;
    double t0, last_emit;
    json_t *last;                  /* last progress event (for the heartbeat), owned */
    char phase[32];
    double overall;
    int n_plan;
    struct {
        const char *name;
        double weight;
    } plan[CELL_MAX_PHASES];
    /* training progress */
    const char *train_phase;
    json_t *series;                /* per-epoch series of the train recipe (borrowed) */
} cell_ctx;

void cell_ctx_init(cell_ctx *c, FILE *out); /* starts the heartbeat thread */
void cell_ctx_free(cell_ctx *c);            /* stops it; frees the last line */

/* Add a phase with its rough share of the wall time to the cell's plan (for "overall"). */
void cell_plan_add(cell_ctx *c, const char *name, double weight);

/* A progress event for phase at fraction f; the overall progress is taken at plan_f of
 * plan_phase. extra (stolen, may be NULL) adds fields. Written at a phase change, when force is
 * set, or when the last line is CELL_PROGRESS_MIN_S old; otherwise kept as the heartbeat's next
 * line. cell_progress is the same with plan_phase = phase. */
void cell_progress_ex(cell_ctx *c, const char *phase, double f, const char *plan_phase, double plan_f, json_t *extra,
                      int force);
void cell_progress(cell_ctx *c, const char *phase, double f, json_t *extra, int force);

/* The one final event (result or error; borrowed); stops the heartbeat first. */
void cell_emit_final(cell_ctx *c, json_t *ev);
json_t *cell_error_event(cell_error code, const char *message); /* new reference */

/* SIGTERM / SIGINT guard of the output model: the handler removes "<out>.tmp.<pid>" and, once
 * cell_guard_out_written was called, the output itself; then re-raises with the default action. */
void cell_guard_output(const char *out);
void cell_guard_out_written(void);
void cell_guard_release(void);

/* ------------------------------------------------------------------ helpers (cell_spec.c) */

/* Format err and return CELL_ERR_BAD_SPEC. */
cell_error cell_bad(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A JSON number, or null when x is not finite (jansson refuses NaN / inf). */
static inline json_t *cell_jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }


/* ------------------------------------------------------------------ recipes (cell_<recipe>.c) */

/* What a recipe hands back to the common tail. */
typedef struct {
    model produced;   /* the model written to out and evaluated */
    model twin;       /* realised (shrunk) twin when produced is masked structurally; n_params 0 if none */
    int have_produced;
    json_t *extra;    /* recipe fields merged into the metrics (owned) */
} recipe_out;

typedef struct {
    const cell_spec *s;
    cell_ctx *c;
    model *input;             /* the loaded / created input model */
    const dataset *eval;      /* evaluation view (max_samples applied) */
    const dataset *train;     /* NULL unless loaded */
    char *err;
    size_t errlen;
} recipe_env;

cell_error cell_run_train(recipe_env *env, recipe_out *ro);
cell_error cell_run_prune(recipe_env *env, recipe_out *ro); /* ablation, sensitivity, joint */
cell_error cell_run_rsst(recipe_env *env, recipe_out *ro);
/* lite: the fine-tuning of the lite spec is returned for the common tail to run */
cell_error cell_run_lite(recipe_env *env, recipe_out *ro, long *ft_steps, float *ft_lr, int *ft_batch);

/* Create the model of a train cell that has no "model" (cell_train.c). */
cell_error cell_create_model(const cell_spec *s, model *m, char *err, size_t errlen);

/* Fine-tune m on train for `steps` optimizer steps (AdamW, cosine lr -> lr/100, masks fixed),
 * with "finetune" progress lines. *info receives a JSON summary (owned by the caller). Returns 0
 * or -1 with err. (cell_train.c) */
int cell_finetune(cell_ctx *c, model *m, const dataset *train, long steps, float lr, int batch, uint64_t seed,
                  json_t **info, char *err, size_t errlen);

/* Adapter from measure.h's progress callback to cell_progress (user = the cell_ctx). */
void cell_measure_progress(void *user, const char *phase, double fraction, long done, long total);

#endif
