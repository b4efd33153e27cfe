/* api.h — prunelabd's REST handlers for jobs, models and datasets (api_jobs.c, api_models.c).
 *
 * The daemon embeds an api_ctx as the FIRST member of its own struct and passes that struct as
 * the http app pointer, so every handler casts `void *app` to `api_ctx *`. Everything the
 * handlers need is reached through the context; the handlers own no global state.
 *
 * Auth: writes need "Authorization: Bearer TOKEN" of an active token (401 without or with an
 * unknown token, 403 token_revoked for a revoked one); a token sent with a read is checked the
 * same way; reads are
 * anonymous unless cfg->anonymous_reads is false. Only a job's (model's) owner or an admin may
 * cancel, retry or delete it (403). Every error is {"error": {"code", "message", "field"}}. */
#ifndef PL_SERVER_API_H
#define PL_SERVER_API_H

#include <stddef.h>

#include "config.h"
#include "http.h"
#include "store.h"

struct scheduler;

typedef struct {
    store *st;                   /* shared store (required) */
    struct scheduler *sched;     /* NULL: jobs are queued but nobody is woken */
    const pl_config *cfg;        /* limits (max_cells_per_job, max_attempts, anonymous_reads) */
    const char *data_dir;        /* DATA_DIR (tmp/ lives below it) */
    const char *models_dir;      /* DATA_DIR/models: uploaded checkpoints land here */
    const char *engine_bin;      /* prunelab binary, for `inspect` and `components` */
    const char *sql_dir;         /* unused by the handlers; may be NULL */
    const char *datasets_dir;    /* where dataset files live (NULL: $PRUNELAB_DATA or ./data) */
} api_ctx;

/* The API route table (static storage; *n receives the row count). Every row's handler expects
 * app to point at an api_ctx. */
const http_route *api_routes(size_t *n);

/* ------------------------------------------------------------------ shared by the handlers */

enum { API_READ = 0, API_WRITE = 1 };

/* Authenticate the request. Returns 1 with *u filled (free with store_user_free) for a valid
 * bearer token; 0 for an anonymous read that the config allows (*u zeroed); -1 after replying
 * 401 (no / malformed / unknown token), 403 (revoked token) or 500 — the handler then returns 0. */
int api_auth(http_request *req, api_ctx *ctx, int need, store_user *u);

/* Reply for a store failure: STORE_NOTFOUND 404, STORE_CONFLICT 409, STORE_INVALID 400, else
 * 500. what names the object ("job 12"). Returns the http_reply_error value. */
int api_reply_store(http_request *req, int rc, const char *what, const char *err);

/* The body of a GET /api/v1/jobs page for filter f (api_jobs.c): compact JSON
 * {"jobs": [...], "next_page_token": T-or-null} and "\n", as http_reply_json writes it.
 * _reference builds it with one jansson object per job; _lean writes the same bytes into one
 * buffer; _cached serves the lean page from the store's read cache (store_memo_get) while the
 * commit counter is unchanged (*hit, may be NULL, says whether it did). Each returns STORE_OK
 * with *out (malloc'd, NUL-terminated, caller frees) and *len, or store_jobs_list's rc with err
 * (STORE_INVALID for a bad page token). */
int api_jobs_page_reference(store *st, const store_job_filter *f, char **out, size_t *len, char *err, size_t errlen);
int api_jobs_page_lean(store *st, const store_job_filter *f, char **out, size_t *len, char *err, size_t errlen);
int api_jobs_page_cached(store *st, const store_job_filter *f, char **out, size_t *len, int *hit, char *err,
                         size_t errlen);

/* Model handlers (api_models.c). */
int api_models_list(http_request *req, void *app);
int api_model_get(http_request *req, void *app);
int api_model_put(http_request *req, void *app);
int api_model_delete(http_request *req, void *app);
int api_model_components(http_request *req, void *app);
int api_datasets_list(http_request *req, void *app);

#endif
