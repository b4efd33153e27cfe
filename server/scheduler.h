/* scheduler.h — claims queued cells from the store and runs them on the executor.
 *
 * One scheduler thread owns the executor (see executor.h): it claims cells with
 * store_cell_claim while fewer than cfg->workers run, builds each cell's stdin spec, and turns
 * executor callbacks into store updates (progress/lease, result, failure with retry, model
 * registration for train cells). Every function below except scheduler_start/scheduler_stop
 * may be called from any thread (HTTP handlers). The store must outlive the scheduler.
 *
 * A result whose commit fails (full disk) is retried without re-running the cell, and spooled
 * under cfg->data_dir/spool so a restart commits it (scheduler.c, "Results").
 *
 * Runtime fields added to a cell's spec (the stored cell spec is left as is):
 *   "model"    a model NAME in the cell or job spec -> models_dir/NAME.safetensors (a value
 *              containing '/' is kept as a path)
 *   "out"      train cells: models_dir/NAME.safetensors.part-<cell id>, linked into place (never
 *              over an existing file) and registered in the models table (store_model_insert)
 *              when the cell is done; NAME is the cell spec's "out" (a name, see jobspec.h),
 *              else a "name" in the cell spec (removed) or in the job spec
 *   "threads"  cfg->threads_per_cell
 *   "baseline" the job's baseline JSON once known (the first result carrying
 *              baseline_accuracy / baseline_loss sets it) */
#ifndef PL_SCHEDULER_H
#define PL_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

typedef struct scheduler scheduler;

/* Commit the results spooled by an earlier run, recover cells left running by a dead daemon
 * (store_recover), create the local executor and
 * start the scheduler thread. cfg, engine_bin and models_dir are copied where needed (cfg must
 * stay valid until scheduler_stop). Returns the scheduler, or NULL with err. */
scheduler *scheduler_start(store *st, const pl_config *cfg, const char *engine_bin,
                           const char *models_dir, char *err, size_t errlen);

/* New work was queued (job created, retry): claim without waiting for the next tick. */
void scheduler_wake(scheduler *s);

/* After store_job_cancel: terminate the running cells of job_id (SIGTERM, SIGKILL after the
 * executor grace). Their outcome is recorded as cancelled. */
void scheduler_cancel_job(scheduler *s, int64_t job_id);

/* Stop claiming; let running cells finish within grace_s, then terminate them and release
 * them back to queued (store_cell_release, the attempt is not counted). Joins the thread and
 * frees s. NULL-safe. */
void scheduler_stop(scheduler *s, double grace_s);

typedef struct {
    int running;          /* cells running now */
    int committing;       /* finished cells whose result commit failed and is being retried */
    int workers;          /* the worker cap */
    int64_t started;      /* cells started since scheduler_start */
    int64_t done;         /* ... finished with a result */
    int64_t failed;       /* ... attempts that failed (retried or not) */
    int64_t released;     /* ... released back to queued at shutdown */
    int64_t models;       /* train cells that registered a model */
} scheduler_stats_t;

/* Fill *out (thread-safe). Returns 0, or -1 when s or out is NULL. */
int scheduler_stats(scheduler *s, scheduler_stats_t *out);

#endif
