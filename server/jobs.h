/* jobs.h — the job service of prunelabd: submit, cancel, retry and delete, without HTTP.
 *
 * The handlers in api_jobs.c authenticate and parse the request, call one of these and turn the
 * result into a response. Each function returns 0, or -1 with *e filled: a stable error code
 * ("unknown_model", "not_cancellable", ...), the offending field ("" for none), a message for
 * the user and the HTTP status that fits (400, 403, 404, 409, 500). Nothing here is kept between
 * calls; the caller owns every argument. */
#ifndef PL_SERVER_JOBS_H
#define PL_SERVER_JOBS_H

#include <jansson.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

struct scheduler;

typedef struct {
    store *st;               /* required */
    struct scheduler *sched; /* NULL: jobs are queued but nobody is woken */
    const pl_config *cfg;    /* max_cells_per_job, max_attempts; NULL: defaults */
} jobs_env;

typedef struct {
    int status;         /* HTTP status that fits the error */
    char code[48];      /* "unknown_model", "conflict", "internal", ... */
    char field[128];    /* "model", "Idempotency-Key", ...; "" for none */
    char message[512];
} jobs_error;

typedef struct {
    int64_t id;          /* 0 for a dry run */
    int64_t n_cells;
    store_job_type type;
    int replayed;        /* the Idempotency-Key named an existing job with the same body */
    store_state state;   /* queued for a new job; a replayed job's state now */
} jobs_submitted;

/* Validate and expand body (a job spec) for owner u and, unless dry, store it with its cells and
 * wake the scheduler. idem (may be NULL) is the Idempotency-Key. A dry run does every check and
 * writes nothing. Returns 0 with *out, or -1 with *e. */
int jobs_submit(const jobs_env *env, const store_user *u, json_t *body, const char *idem, int dry,
                jobs_submitted *out, jobs_error *e);

/* Cancel job id (u must own it or be an admin); running cells are signalled. *n_signalled gets
 * the number of running cells. Returns 0 or -1 with *e (403, 404, 409 not_cancellable). */
int jobs_cancel(const jobs_env *env, const store_user *u, int64_t id, int *n_signalled, jobs_error *e);

/* Requeue the failed cells of job id; *n_requeued gets their number. Returns 0 or -1 with *e
 * (403, 404, 409 nothing_to_retry). */
int jobs_retry(const jobs_env *env, const store_user *u, int64_t id, int *n_requeued, jobs_error *e);

/* Delete job id and its cells. Returns 0 or -1 with *e (403, 404, 409 job_running). */
int jobs_delete(const jobs_env *env, const store_user *u, int64_t id, jobs_error *e);

/* Fill *e for a store failure rc about what ("job 12"): STORE_NOTFOUND 404 not_found,
 * STORE_CONFLICT 409 conflict, STORE_INVALID 400 invalid, else 500 internal. Returns -1. */
int jobs_error_store(jobs_error *e, int rc, const char *what, const char *err);

/* Fill *e with status, code, field (may be NULL) and a printf message. Returns -1. */
__attribute__((format(printf, 5, 6))) int jobs_error_set(jobs_error *e, int status, const char *code,
                                                         const char *field, const char *fmt, ...);

#endif
