/* api_service.c — the daemon's own endpoints: /healthz, /metrics (Prometheus text),
 * /api/v1/openapi.json and the dashboard's static files. Like every handler they receive the
 * api_ctx (api.h); the store, scheduler, start time and dashboard are reached through it and the
 * HTTP layer's counters through the request's server. */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "openapi.h"
#include "scheduler.h"
#include "static.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif

double api_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int api_healthz(http_request *req, void *app)
{
    api_ctx *ctx = app;
    return http_reply_json(req, 200,
                           json_pack("{s:s, s:s, s:I}", "status", "ok", "version", PACKAGE_VERSION, "uptime_s",
                                     (json_int_t)(api_now_s() - ctx->started_s)));
}

/* Queue and cell gauges from the store, counters from the scheduler. Returns 0, or -1 when
 * writing to f failed; a store error becomes a comment line (the endpoint stays up). */
static int metrics_service_write(api_ctx *ctx, FILE *f)
{
    store_metrics m;
    char err[512];
    if (ctx->st && store_metrics_get(ctx->st, &m, err, sizeof err) == STORE_OK) {
        fprintf(f,
                "# HELP prunelabd_queue_depth Cells waiting to run.\n"
                "# TYPE prunelabd_queue_depth gauge\nprunelabd_queue_depth %lld\n",
                (long long)m.cells[STORE_STATE_QUEUED]);
        fprintf(f, "# HELP prunelabd_cells Cells in the database per state.\n"
                   "# TYPE prunelabd_cells gauge\n");
        for (int i = 0; i < STORE_STATE_COUNT; i++)
            fprintf(f, "prunelabd_cells{state=\"%s\"} %lld\n", store_state_name((store_state)i),
                    (long long)m.cells[i]);
        fprintf(f, "# HELP prunelabd_cells_done Cells finished with a result.\n"
                   "# TYPE prunelabd_cells_done gauge\nprunelabd_cells_done %lld\n"
                   "# HELP prunelabd_cells_failed Cells failed after their last attempt.\n"
                   "# TYPE prunelabd_cells_failed gauge\nprunelabd_cells_failed %lld\n",
                (long long)m.cells[STORE_STATE_DONE], (long long)m.cells[STORE_STATE_FAILED]);
        fprintf(f, "# HELP prunelabd_jobs Jobs in the database per state.\n"
                   "# TYPE prunelabd_jobs gauge\n");
        for (int i = 0; i < STORE_STATE_COUNT; i++)
            fprintf(f, "prunelabd_jobs{state=\"%s\"} %lld\n", store_state_name((store_state)i),
                    (long long)m.jobs[i]);
        fprintf(f,
                "# HELP prunelabd_users Registered users.\n# TYPE prunelabd_users gauge\n"
                "prunelabd_users %lld\n"
                "# HELP prunelabd_models Registered models.\n# TYPE prunelabd_models gauge\n"
                "prunelabd_models %lld\n",
                (long long)m.users, (long long)m.models);
    } else {
        fprintf(f, "# store metrics unavailable\n");
    }
    scheduler_stats_t ss;
    if (scheduler_stats(__atomic_load_n(&ctx->sched, __ATOMIC_ACQUIRE), &ss) == 0)
        fprintf(f,
                "# HELP prunelabd_cells_running Cell processes running now.\n"
                "# TYPE prunelabd_cells_running gauge\nprunelabd_cells_running %d\n"
                "# HELP prunelabd_cell_attempts_total Cell attempts since start, by outcome.\n"
                "# TYPE prunelabd_cell_attempts_total counter\n"
                "prunelabd_cell_attempts_total{outcome=\"started\"} %lld\n"
                "prunelabd_cell_attempts_total{outcome=\"done\"} %lld\n"
                "prunelabd_cell_attempts_total{outcome=\"failed\"} %lld\n"
                "prunelabd_cell_attempts_total{outcome=\"released\"} %lld\n",
                ss.running, (long long)ss.started, (long long)ss.done, (long long)ss.failed,
                (long long)ss.released);
    return ferror(f) ? -1 : 0;
}

/* /metrics is a read like any other: anonymous only while anonymous_reads is on (its counts say
 * who is busy with what). */
int api_metrics(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    if (api_auth(req, ctx, API_READ, &u) < 0) return 0;
    store_user_free(&u);
    int rc = -1;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) goto cleanup;
    fprintf(f,
            "# HELP prunelabd_up 1 while the daemon serves.\n# TYPE prunelabd_up gauge\n"
            "prunelabd_up 1\n"
            "# HELP prunelabd_uptime_seconds Seconds since start.\n"
            "# TYPE prunelabd_uptime_seconds gauge\nprunelabd_uptime_seconds %.3f\n"
            "# HELP prunelabd_workers Cells allowed to run at once.\n"
            "# TYPE prunelabd_workers gauge\nprunelabd_workers %d\n",
            api_now_s() - ctx->started_s, ctx->cfg ? ctx->cfg->workers : 0);
    if (metrics_service_write(ctx, f) != 0) goto cleanup;
    if (http_server_metrics_write(http_request_server(req), f) != 0) goto cleanup;
    if (fclose(f) != 0) {
        f = NULL;
        goto cleanup;
    }
    f = NULL;
    rc = http_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
cleanup:
    if (f) fclose(f);
    free(text);
    return rc;
}

/* The hand-written OpenAPI document (server/openapi.json, compiled in). */
int api_openapi(http_request *req, void *app)
{
    (void)app;
    size_t len = 0;
    const char *doc = openapi_document(&len);
    if (!doc) return -1;
    if (http_reply_text(req, 200, "application/json", doc, len) != 0) return -1;
    return http_reply_header(req, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
}

/* The dashboard's files (static.h). */
int api_static(http_request *req, void *app)
{
    api_ctx *ctx = app;
    return static_handle(req, ctx->web);
}
