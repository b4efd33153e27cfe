/* api.h — prunelabd's REST handlers for jobs, models and datasets (api_jobs.c, api_models.c),
 * their route table (api_routes.c) and the job list page (jobs_page.c).
 *
 * The api_ctx is the one app type: the daemon passes its api_ctx as the http app pointer and
 * every handler (the daemon's own endpoints in api_service.c included) casts `void *app` to
 * `api_ctx *`. Everything the handlers need is reached through the context; the handlers own no
 * global state.
 *
 * Auth is auth.h's (bearer tokens; anonymous reads unless cfg->anonymous_reads is false; only a
 * job's (model's) owner or an admin may cancel, retry or delete it, 403). Every error is
 * {"error": {"code", "message", "field"}}. */
#ifndef PL_SERVER_API_H
#define PL_SERVER_API_H

#include <stddef.h>

#include "auth.h"
#include "config.h"
#include "http.h"
#include "jobs.h"
#include "store.h"

struct scheduler;
struct static_site;

typedef struct {
    store *st;                   /* shared store (required) */
    struct scheduler *sched;     /* NULL: jobs are queued but nobody is woken */
    const pl_config *cfg;        /* limits (max_cells_per_job, max_attempts, anonymous_reads) */
    const char *data_dir;        /* DATA_DIR (tmp/ lives below it) */
    const char *models_dir;      /* DATA_DIR/models: uploaded checkpoints land here */
    const char *engine_bin;      /* prunelab binary, for `inspect` and `components` */
    const char *sql_dir;         /* unused by the handlers; may be NULL */
    const char *datasets_dir;    /* where dataset files live (NULL: $PRUNELAB_DATA or ./data) */
    double started_s;            /* api_now_s() at start, for uptime */
    const struct static_site *web; /* the dashboard's files; NULL: its routes answer 404 */
} api_ctx;

/* The daemon's route table (api_routes.c; static storage, *n receives the row count): its own
 * endpoints, the API, the dashboard's static rows last. Every handler expects an api_ctx. */
const http_route *app_routes(size_t *n);
/* The same table without the dashboard's rows: what server/openapi.json documents. */
const http_route *api_routes(size_t *n);

/* Monotonic seconds (api_service.c). */
double api_now_s(void);

/* The daemon's own endpoints (api_service.c). */
int api_healthz(http_request *req, void *app);
int api_metrics(http_request *req, void *app);
int api_openapi(http_request *req, void *app);
int api_static(http_request *req, void *app);

/* ------------------------------------------------------------------ shared by the handlers */

/* Authenticate the request (auth.h): 1 with *u (free it), 0 for an allowed anonymous read, -1
 * after replying — the handler then returns 0. */
static inline int api_auth(http_request *req, api_ctx *ctx, int need, store_user *u)
{
    return auth_request(req, ctx->st, ctx->cfg, need, u);
}

/* Reply with a service error (jobs.h): its status, code, field and message. */
int api_reply_jobs_error(http_request *req, const jobs_error *e);

/* Reply for a store failure: STORE_NOTFOUND 404, STORE_CONFLICT 409, STORE_INVALID 400, else
 * 500. what names the object ("job 12"). Returns the http_reply_error value. */
int api_reply_store(http_request *req, int rc, const char *what, const char *err);

/* The body of a GET /api/v1/jobs page for filter f (jobs_page.c): compact JSON
 * {"jobs": [...], "next_page_token": T-or-null} and "\n", as http_reply_json writes it.
 * _reference builds it with one jansson object per job; _cached serves the same page from the
 * store's read cache (store_memo_get) while the commit counter is unchanged (*hit, may be NULL,
 * says whether it did). Each returns STORE_OK with *out (malloc'd, NUL-terminated, caller frees)
 * and *len, or store_jobs_list's rc with err (STORE_INVALID for a bad page token). */
int api_jobs_page_reference(store *st, const store_job_filter *f, char **out, size_t *len, char *err, size_t errlen);
int api_jobs_page_cached(store *st, const store_job_filter *f, char **out, size_t *len, int *hit, char *err,
                         size_t errlen);

/* Job handlers (api_jobs.c). */
int api_jobs_create(http_request *req, void *app);
int api_jobs_list(http_request *req, void *app);
int api_job_get(http_request *req, void *app);
int api_job_delete(http_request *req, void *app);
int api_job_cancel(http_request *req, void *app);
int api_job_retry(http_request *req, void *app);
int api_job_cells(http_request *req, void *app);
int api_job_cell(http_request *req, void *app);
int api_job_results_json(http_request *req, void *app);
int api_job_results_csv(http_request *req, void *app);

/* Model handlers (api_models.c). */
int api_models_list(http_request *req, void *app);
int api_model_get(http_request *req, void *app);
int api_model_put(http_request *req, void *app);
int api_model_put_headers(http_request *req, void *app); /* the PUT route's before_body */
int api_model_delete(http_request *req, void *app);
int api_model_components(http_request *req, void *app);

/* Dataset handlers (api_datasets.c). */
int api_datasets_list(http_request *req, void *app);
int api_dataset_register(http_request *req, void *app); /* admins only */

#endif
