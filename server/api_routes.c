/* api_routes.c — prunelabd's route table, the only one: one row per method and path, in match
 * order (the first matching row wins, so literal rows come before {name} rows that overlap):
 * the daemon's own endpoints (api_service.c), the REST API (api_jobs.c, api_models.c), then the
 * dashboard's static files LAST — their one-segment "/{file}" would shadow any literal row after
 * it. Adding a route is adding one row here (and its path to server/openapi.json, which
 * openapi_check compares with the documented rows). Every handler receives the api_ctx. */
#include "api.h"
#include "api_vocab.h"

#define N_STATIC_ROWS 5 /* the dashboard rows at the end: not part of the documented API */

static const http_route ROUTES[] = {
    {"GET", "/healthz", api_healthz, HTTP_BODY_MEMORY, 0, "liveness: status and version", NULL},
    {"GET", "/metrics", api_metrics, HTTP_BODY_MEMORY, 0,
     "Prometheus text: queue depth, running cells, cells per state, request counts and "
     "latencies", NULL},
    {"GET", "/api/v1/openapi.json", api_openapi, HTTP_BODY_MEMORY, 0, "this document", NULL},
    {"POST", "/api/v1/jobs", api_jobs_create, HTTP_BODY_MEMORY, 0,
     "submit a job (train, ablation, sensitivity, joint, rsst, lite); Idempotency-Key honoured", NULL},
    {"GET", "/api/v1/jobs", api_jobs_list, HTTP_BODY_MEMORY, 0,
     "list jobs (owner, type, state, order, limit, page_token)", NULL},
    {"GET", "/api/v1/jobs/{id}", api_job_get, HTTP_BODY_MEMORY, 0,
     "one job with per-state cell counts and progress; ?wait=S&since=V long-polls", NULL},
    {"DELETE", "/api/v1/jobs/{id}", api_job_delete, HTTP_BODY_MEMORY, 0, "delete a job (owner or admin)", NULL},
    {"POST", "/api/v1/jobs/{id}/cancel", api_job_cancel, HTTP_BODY_MEMORY, 0, "cancel a job (owner or admin)", NULL},
    {"POST", "/api/v1/jobs/{id}/retry", api_job_retry, HTTP_BODY_MEMORY, 0,
     "requeue the failed cells of a job (owner or admin)", NULL},
    {"GET", "/api/v1/jobs/{id}/cells", api_job_cells, HTTP_BODY_MEMORY, 0,
     "a page of the cells of a job with results (state, limit, page_token, include)", NULL},
    {"GET", "/api/v1/jobs/{id}/cells/{idx}", api_job_cell, HTTP_BODY_MEMORY, 0,
     "one cell of a job, its whole result (the full sparsity report)", NULL},
    {"GET", "/api/v1/jobs/{id}/results.json", api_job_results_json, HTTP_BODY_MEMORY, 0,
     "a page of rows, one per cell: grid coordinates and metrics (JSON; state, limit, page_token)", NULL},
    {"GET", "/api/v1/jobs/{id}/results.csv", api_job_results_csv, HTTP_BODY_MEMORY, 0,
     "one row per cell: grid coordinates and metrics (CSV, streamed whole)", NULL},
    {"GET", "/api/v1/models", api_models_list, HTTP_BODY_MEMORY, 0, "list models", NULL},
    {"GET", "/api/v1/models/{name}", api_model_get, HTTP_BODY_MEMORY, 0, "one model", NULL},
    {"PUT", "/api/v1/models/{name}", api_model_put, HTTP_BODY_FILE, 0,
     "upload a safetensors checkpoint (validated by prunelab inspect)", api_model_put_headers},
    {"DELETE", "/api/v1/models/{name}", api_model_delete, HTTP_BODY_MEMORY, 0, "delete a model (owner or admin)", NULL},
    {"GET", "/api/v1/models/{name}/components", api_model_components, HTTP_BODY_MEMORY, 0,
     "prunable components of a model with their share of params", NULL},
    {"GET", "/api/v1/datasets", api_datasets_list, HTTP_BODY_MEMORY, 0, "datasets and their availability", NULL},
    {"POST", "/api/v1/datasets", api_dataset_register, HTTP_BODY_MEMORY, 0,
     "register a token or text dataset by its path on the server (admin)", NULL},
    {"GET", "/api/v1/vocabulary", api_vocabulary_get, HTTP_BODY_MEMORY, 0,
     "the names specs accept: components, criteria, granularities, job types and their keys", NULL},
    /* the dashboard, LAST (N_STATIC_ROWS rows) */
    {"GET", "/", api_static, HTTP_BODY_MEMORY, 0, "dashboard: index.html", NULL},
    {"GET", "/{file}", api_static, HTTP_BODY_MEMORY, 0, "dashboard: top-level files", NULL},
    {"GET", "/js/{file}", api_static, HTTP_BODY_MEMORY, 0, "dashboard: ES modules", NULL},
    {"GET", "/css/{file}", api_static, HTTP_BODY_MEMORY, 0, "dashboard: style sheets", NULL},
    {"GET", "/vendor/{file}", api_static, HTTP_BODY_MEMORY, 0, "dashboard: chart library", NULL},
};
#define N_ROUTES (sizeof ROUTES / sizeof ROUTES[0])
_Static_assert(N_ROUTES > N_STATIC_ROWS, "the static rows close the table");

const http_route *app_routes(size_t *n)
{
    if (n) *n = N_ROUTES;
    return ROUTES;
}

const http_route *api_routes(size_t *n)
{
    if (n) *n = N_ROUTES - N_STATIC_ROWS;
    return ROUTES;
}
