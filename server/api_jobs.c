/* api_jobs.c — the /api/v1/jobs handlers.
 *
 * Thin handlers (STYLE 9-16): each one authenticates (auth.c), parses its path / query / body,
 * calls the job service (jobs.c: the business rules) or the store (reads), and answers with one
 * http_reply_* built by jobs_view.c. Nothing is kept between requests; every string a handler
 * allocates is freed before it returns (`int rc` + one cleanup label). app is an api_ctx (see
 * api.h).
 *
 * POST /api/v1/jobs?dry_run=1 (or true) runs every check of a submission (auth, Idempotency-Key
 * syntax, model lookup, validation and expansion, name clash of a train job's output) and answers
 * 200 {"dry_run": true, "cells": N, "type": T} without writing anything.
 *
 * GET /api/v1/jobs is served from a read cache keyed by the commit counter (jobs_page.c); the
 * other reads go to the store each time.
 *
 * A job's cells and results.json are pages (?limit, page_token, state), keyset-paged on the cell
 * idx like the job list, so a request costs one page whatever the job's size; a page's results
 * carry their sparsity report cut to its summaries (?include=sparsity, or GET .../cells/{idx},
 * for the whole report). results.csv is the whole table, streamed a page at a time.
 *
 * Long-poll: GET /api/v1/jobs/{id}?wait=S[&since=V] returns at once when the store's commit
 * counter differs from V, else sleeps in store_wait slices (so a stopping server is noticed
 * within half a second) until the job's visible state changes or S seconds pass. The response
 * carries "version" to pass as since next time. */
#include "api.h"
#include "api_vocab.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "jobs_view.h"

#define API_WAIT_MAX_S 300.0
#define API_WAIT_SLICE_MS 500

/* ------------------------------------------------------------------ shared helpers */

int api_reply_jobs_error(http_request *req, const jobs_error *e)
{
    return http_reply_error(req, (unsigned)e->status, e->code, e->field[0] ? e->field : NULL, "%s", e->message);
}

int api_reply_store(http_request *req, int rc, const char *what, const char *err)
{
    jobs_error e;
    jobs_error_store(&e, rc, what, err);
    return api_reply_jobs_error(req, &e);
}

static jobs_env env_of(const api_ctx *ctx)
{
    return (jobs_env){ctx->st, __atomic_load_n(&ctx->sched, __ATOMIC_ACQUIRE), ctx->cfg};
}

/* The {id} path parameter: decimal digits only, no leading zero ("+1", " 1", "01" name no job),
 * > 0; or -1 after replying 404. */
static int64_t path_job_id(http_request *req)
{
    const char *s = http_request_param(req, "id");
    char *end = NULL;
    errno = 0;
    long long v = s && *s >= '1' && *s <= '9' ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || v <= 0 || *end || errno) {
        http_reply_error(req, 404, "not_found", "id", "job %s not found", s ? s : "");
        return -1;
    }
    return (int64_t)v;
}

/* ------------------------------------------------------------------ POST /api/v1/jobs */

/* ?dry_run=: 1 for "1" / "true", 0 when absent or "0" / "false" / "", -1 after replying 400. */
static int dry_run_parse(http_request *req)
{
    const char *q = http_request_query(req, "dry_run");
    if (!q || !*q || strcmp(q, "0") == 0 || strcmp(q, "false") == 0) return 0;
    if (strcmp(q, "1") == 0 || strcmp(q, "true") == 0) return 1;
    http_reply_error(req, 400, "bad_query", "dry_run", "dry_run: must be 1, true, 0 or false");
    return -1;
}

int api_jobs_create(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    jobs_submitted s;
    jobs_error e;
    /* A malformed body is answered 400 before auth looks at the token. */
    int dry = dry_run_parse(req);
    if (dry < 0) return 0;
    json_t *body = http_request_json(req);
    if (!body) return 0;
    int rc = 0;
    if (api_auth(req, ctx, API_WRITE, &u) < 0) goto cleanup;
    jobs_env env = env_of(ctx);
    if (jobs_submit(&env, &u, body, http_request_header(req, "Idempotency-Key"), dry, &s, &e) != 0) {
        rc = api_reply_jobs_error(req, &e);
    } else if (dry) { /* every check of a real submission passed: report, create nothing */
        rc = http_reply_json(req, 200, json_pack("{s:b, s:I, s:s}", "dry_run", 1, "cells", (json_int_t)s.n_cells,
                                                 "type", store_job_type_name(s.type)));
    } else {
        rc = http_reply_json(req, 202,
                             json_pack("{s:I, s:I, s:s, s:s, s:b}", "id", (json_int_t)s.id, "cells",
                                       (json_int_t)s.n_cells, "type", store_job_type_name(s.type), "state",
                                       store_state_name(s.state), "replayed", s.replayed));
        char loc[64];
        snprintf(loc, sizeof loc, "/api/v1/jobs/%" PRId64, s.id);
        http_reply_header(req, "Location", loc);
    }
    store_user_free(&u);
cleanup:
    json_decref(body);
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ GET /api/v1/jobs */

/* ?limit=: 1..STORE_PAGE_MAX into *limit; 0, or -1 after replying 400. */
static int limit_parse(http_request *req, int *limit)
{
    const char *q = http_request_query(req, "limit");
    if (!q || !*q) return 0;
    char *end;
    long v = strtol(q, &end, 10);
    if (*end || v < 1 || v > STORE_PAGE_MAX) {
        http_reply_error(req, 400, "bad_query", "limit", "limit: must be an integer in [1, %d]", STORE_PAGE_MAX);
        return -1;
    }
    *limit = (int)v;
    return 0;
}

/* The list filter from ?owner, type, state, order, limit, page_token. 0, or -1 after replying. */
static int list_filter_parse(http_request *req, store_job_filter *f)
{
    *f = (store_job_filter){.owner = NULL, .type = -1, .state = -1, .order = STORE_ORDER_NEWEST, .limit = 50};
    const char *q;
    if ((q = http_request_query(req, "owner")) && *q) f->owner = q;
    if ((q = http_request_query(req, "type")) && *q && (f->type = store_job_type_parse(q)) < 0)
        return http_reply_error(req, 400, "bad_query", "type", "type: unknown job type '%s'", q), -1;
    if ((q = http_request_query(req, "state")) && *q && (f->state = store_state_parse(q)) < 0)
        return http_reply_error(req, 400, "bad_query", "state", "state: unknown state '%s'", q), -1;
    if ((q = http_request_query(req, "order")) && *q) {
        if (strcmp(q, "newest") == 0) f->order = STORE_ORDER_NEWEST;
        else if (strcmp(q, "oldest") == 0) f->order = STORE_ORDER_OLDEST;
        else return http_reply_error(req, 400, "bad_query", "order", "order: must be newest or oldest"), -1;
    }
    if (limit_parse(req, &f->limit) < 0) return -1;
    f->page_token = http_request_query(req, "page_token");
    return 0;
}

int api_jobs_list(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_job_filter f;
    char err[256] = "", *page = NULL;
    size_t len = 0;
    int rc = 0;
    if (api_auth(req, ctx, API_READ, &u) < 0) return 0;
    if (list_filter_parse(req, &f) < 0) goto cleanup;
    int src = api_jobs_page_cached(ctx->st, &f, &page, &len, NULL, err, sizeof err);
    if (src == STORE_INVALID) {
        rc = http_reply_error(req, 400, "bad_query", "page_token", "page_token: %s", err);
    } else if (src != STORE_OK) {
        rc = api_reply_store(req, src, "jobs", err);
    } else {
        rc = http_reply_json_text(req, 200, page, len);
        page = NULL; /* taken by the reply */
    }
cleanup:
    free(page);
    store_user_free(&u);
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ GET /api/v1/jobs/{id} */

typedef struct {
    double wait_s;  /* 0: answer at once */
    int have_since;
    uint64_t since;
} wait_args;

/* ?wait=S&since=V. 0, or -1 after replying 400. */
static int wait_parse(http_request *req, wait_args *w)
{
    *w = (wait_args){0, 0, 0};
    const char *q = http_request_query(req, "wait");
    char *end;
    if (q) {
        w->wait_s = strtod(q, &end);
        if (!*q || *end || !isfinite(w->wait_s) || w->wait_s < 0 || w->wait_s > API_WAIT_MAX_S)
            return http_reply_error(req, 400, "bad_query", "wait", "wait: seconds in [0, %g]", API_WAIT_MAX_S), -1;
    }
    if ((q = http_request_query(req, "since"))) {
        errno = 0;
        w->since = strtoull(q, &end, 10);
        if (!*q || *end || errno || *q == '-')
            return http_reply_error(req, 400, "bad_query", "since", "since: a version number from an earlier response"),
                   -1;
        w->have_since = 1;
    }
    return 0;
}

static int job_same(const store_job *a, const store_job *b)
{
    if (a->state != b->state || fabs(a->progress - b->progress) > 1e-9) return 0;
    if ((a->baseline_json == NULL) != (b->baseline_json == NULL)) return 0;
    for (int s = 0; s < STORE_STATE_COUNT; s++)
        if (a->counts[s] != b->counts[s]) return 0;
    return 1;
}

/* Sleep until *j's visible state changes (then *j is the new one), w->wait_s passes or the
 * server stops; *version follows the commit counter. STORE_OK, or a store rc with err. */
static int job_wait(http_request *req, store *st, const wait_args *w, store_job *j, uint64_t *version, char *err,
                    size_t errlen)
{
    if (w->wait_s <= 0 || (w->have_since && w->since != *version) || j->state == STORE_STATE_DONE ||
        j->state == STORE_STATE_FAILED || j->state == STORE_STATE_CANCELLED)
        return STORE_OK;
    double left_ms = w->wait_s * 1000.0;
    http_server *srv = http_request_server(req);
    while (left_ms > 0 && !(srv && http_server_stopping(srv))) {
        int slice = left_ms < API_WAIT_SLICE_MS ? (int)left_ms + 1 : API_WAIT_SLICE_MS;
        uint64_t v = store_wait(st, *version, slice);
        left_ms -= slice;
        if (v == *version) continue;
        *version = v;
        store_job k;
        memset(&k, 0, sizeof k);
        int src = store_job_get(st, j->id, &k, err, errlen);
        if (src != STORE_OK) {
            store_job_free(&k);
            return src;
        }
        int same = job_same(j, &k);
        store_job_free(j);
        *j = k;
        if (!same) break;
    }
    return STORE_OK;
}

int api_job_get(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_job j;
    memset(&j, 0, sizeof j);
    wait_args w;
    char err[256] = "", what[64];
    int rc = 0;
    if (api_auth(req, ctx, API_READ, &u) < 0) return 0;
    int64_t id = path_job_id(req);
    if (id < 0 || wait_parse(req, &w) < 0) goto cleanup;
    snprintf(what, sizeof what, "job %" PRId64, id);
    uint64_t version = store_version(ctx->st);
    int src = store_job_get(ctx->st, id, &j, err, sizeof err);
    if (src == STORE_OK) src = job_wait(req, ctx->st, &w, &j, &version, err, sizeof err);
    if (src != STORE_OK) {
        rc = api_reply_store(req, src, what, err);
        goto cleanup;
    }
    json_t *o = jobs_view_job(&j, 1);
    json_object_set_new(o, "version", json_integer((json_int_t)version));
    rc = http_reply_json(req, 200, o);
cleanup:
    store_job_free(&j);
    store_user_free(&u);
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ cancel / retry / delete */

/* The common shape of the three writes: path id, auth, the service call, its reply. */
typedef enum { JOB_CANCEL, JOB_RETRY, JOB_DELETE } job_change;

static int job_change_handle(http_request *req, api_ctx *ctx, job_change what)
{
    store_user u;
    jobs_error e;
    int n = 0, rc = -1;
    int64_t id = path_job_id(req);
    if (id < 0) return 0;
    if (api_auth(req, ctx, API_WRITE, &u) < 0) return 0;
    jobs_env env = env_of(ctx);
    if (what == JOB_CANCEL) rc = jobs_cancel(&env, &u, id, &n, &e);
    else if (what == JOB_RETRY) rc = jobs_retry(&env, &u, id, &n, &e);
    else rc = jobs_delete(&env, &u, id, &e);
    json_int_t jid = (json_int_t)id;
    if (rc != 0) rc = api_reply_jobs_error(req, &e);
    else if (what == JOB_CANCEL)
        rc = http_reply_json(req, 200, json_pack("{s:I, s:s, s:I}", "id", jid, "state", "cancelled",
                                                 "running_cells_signalled", (json_int_t)n));
    else if (what == JOB_RETRY) rc = http_reply_json(req, 200, json_pack("{s:I, s:i}", "id", jid, "requeued", n));
    else rc = http_reply_json(req, 200, json_pack("{s:I, s:b}", "id", jid, "deleted", 1));
    store_user_free(&u);
    return rc < 0 ? -1 : 0;
}

int api_job_cancel(http_request *req, void *app) { return job_change_handle(req, app, JOB_CANCEL); }
int api_job_retry(http_request *req, void *app) { return job_change_handle(req, app, JOB_RETRY); }
int api_job_delete(http_request *req, void *app) { return job_change_handle(req, app, JOB_DELETE); }

/* ------------------------------------------------------------------ cells and results */

/* ?include=: "" or absent -> 0, "sparsity" -> 1; -1 after replying 400. */
static int include_parse(http_request *req)
{
    const char *q = http_request_query(req, "include");
    if (!q || !*q) return 0;
    if (strcmp(q, "sparsity") == 0) return 1;
    http_reply_error(req, 400, "bad_query", "include", "include: must be sparsity");
    return -1;
}

/* ?state=: -1 when absent, the state, or -2 after replying 400. */
static int cell_state_parse(http_request *req)
{
    const char *q = http_request_query(req, "state");
    int state = -1;
    if (q && *q && (state = store_state_parse(q)) < 0) {
        http_reply_error(req, 400, "bad_query", "state", "state: unknown state '%s'", q);
        return -2;
    }
    return state;
}

/* The start of every cells / results read: auth, the {id}, the job (*j, free it). 0, or -1
 * after replying (401/403, 404). */
static int job_for_read(http_request *req, api_ctx *ctx, store_job *j)
{
    store_user u;
    char err[256] = "", what[64];
    memset(j, 0, sizeof *j);
    if (api_auth(req, ctx, API_READ, &u) < 0) return -1;
    store_user_free(&u);
    int64_t id = path_job_id(req);
    if (id < 0) return -1;
    snprintf(what, sizeof what, "job %" PRId64, id);
    int src = store_job_get(ctx->st, id, j, err, sizeof err);
    if (src != STORE_OK) {
        store_job_free(j);
        api_reply_store(req, src, what, err);
        return -1;
    }
    return 0;
}

typedef enum { CELLS_JSON, RESULTS_JSON } cells_view;

/* GET .../cells and .../results.json: one page (?state, limit, page_token; cells also
 * ?include=sparsity), keyset-paged like the job list. */
static int cells_page_handle(http_request *req, api_ctx *ctx, cells_view view)
{
    store_job j;
    store_cell *cells = NULL;
    size_t n = 0;
    char err[256] = "", next[STORE_PAGE_TOKEN_LEN] = "";
    if (job_for_read(req, ctx, &j) < 0) return 0;
    store_cell_filter f = {.state = cell_state_parse(req), .limit = 50, .page_token = NULL, .with_sparsity = 0};
    int rc = 0;
    if (f.state < -1 || limit_parse(req, &f.limit) < 0) goto cleanup;
    if (view == CELLS_JSON && (f.with_sparsity = include_parse(req)) < 0) goto cleanup;
    f.page_token = http_request_query(req, "page_token");
    int src = store_cells_page(ctx->st, j.id, &f, &cells, &n, next, err, sizeof err);
    if (src == STORE_INVALID) {
        rc = http_reply_error(req, 400, "bad_query", "page_token", "%s", err);
    } else if (src != STORE_OK) {
        rc = api_reply_store(req, src, "cells", err);
    } else {
        size_t len = 0;
        char *text = view == CELLS_JSON ? jobs_view_cells_page_text(j.id, cells, n, next, &len)
                                        : jobs_view_results_page_text(&j, cells, n, next, &len);
        rc = text ? http_reply_json_text(req, 200, text, len)
                  : http_reply_error(req, 500, "internal", NULL, "out of memory rendering the page");
    }
cleanup:
    store_cells_free(cells, n);
    store_job_free(&j);
    return rc < 0 ? -1 : 0;
}

int api_job_cells(http_request *req, void *app) { return cells_page_handle(req, app, CELLS_JSON); }
int api_job_results_json(http_request *req, void *app) { return cells_page_handle(req, app, RESULTS_JSON); }

/* GET .../cells/{idx}: one cell, whole (its result with the full sparsity report). */
int api_job_cell(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_job j;
    store_cell c;
    memset(&c, 0, sizeof c);
    char err[256] = "", what[96];
    if (job_for_read(req, ctx, &j) < 0) return 0;
    const char *s = http_request_param(req, "idx");
    char *end = NULL;
    errno = 0;
    long v = s && (strcmp(s, "0") == 0 || (*s >= '1' && *s <= '9')) ? strtol(s, &end, 10) : -1;
    int rc;
    if (v < 0 || v > INT32_MAX || *end || errno) {
        rc = http_reply_error(req, 404, "not_found", "idx", "job %" PRId64 " has no cell %s", j.id, s ? s : "");
        goto cleanup;
    }
    snprintf(what, sizeof what, "cell %ld of job %" PRId64, v, j.id);
    int src = store_cell_get_idx(ctx->st, j.id, (int)v, &c, err, sizeof err);
    if (src == STORE_NOTFOUND)
        rc = http_reply_error(req, 404, "not_found", "idx", "job %" PRId64 " has no cell %ld", j.id, v);
    else if (src != STORE_OK) rc = api_reply_store(req, src, what, err);
    else rc = http_reply_json(req, 200, jobs_view_cell(&c));
cleanup:
    store_cell_free(&c);
    store_job_free(&j);
    return rc < 0 ? -1 : 0;
}

/* GET .../results.csv, streamed: the reader renders one keyset page of cells at a time (each
 * page its own short read, so the writer and WAL checkpoints never wait on a slow client) and
 * hands it to MHD in pieces. The stream owns its state (the store outlives the HTTP server);
 * MHD calls csv_stream_free when the response is done, sent or not. A store error after the
 * header went out ends the response early (MHD closes the connection). */
#define CSV_STREAM_PAGE 256

typedef struct {
    store *st;
    int64_t job_id;
    int state;                       /* -1: all cells */
    char token[STORE_PAGE_TOKEN_LEN]; /* where the next page starts */
    int header_sent, last_page;      /* last_page: no page after the one in buf */
    char *buf;                       /* rendered rows not yet handed out */
    size_t len, off;
} csv_stream;

static void csv_stream_free(void *cls)
{
    csv_stream *cs = cls;
    if (!cs) return;
    free(cs->buf);
    free(cs);
}

/* The next page into cs->buf. 0, or -1 on a store error or out of memory. */
static int csv_stream_fill(csv_stream *cs)
{
    store_cell *cells = NULL;
    size_t n = 0;
    char err[256] = "", next[STORE_PAGE_TOKEN_LEN] = "";
    store_cell_filter f = {.state = cs->state, .limit = CSV_STREAM_PAGE, .page_token = cs->token, .with_sparsity = 0};
    int src = store_cells_page(cs->st, cs->job_id, &f, &cells, &n, next, err, sizeof err);
    if (src != STORE_OK) {
        fprintf(stderr, "prunelabd: results.csv of job %" PRId64 ": %s\n", cs->job_id, err);
        return -1;
    }
    free(cs->buf);
    cs->buf = jobs_view_results_csv_part(cells, n, !cs->header_sent, &cs->len);
    store_cells_free(cells, n);
    if (!cs->buf) return -1;
    cs->off = 0;
    cs->header_sent = 1;
    cs->last_page = next[0] == '\0';
    memcpy(cs->token, next, sizeof cs->token);
    return 0;
}

static ssize_t csv_stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    csv_stream *cs = cls;
    (void)pos;
    while (cs->off == cs->len) { /* never 0: MHD would call again at once */
        if (cs->header_sent && cs->last_page) return MHD_CONTENT_READER_END_OF_STREAM;
        if (csv_stream_fill(cs) != 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t k = cs->len - cs->off < max ? cs->len - cs->off : max;
    memcpy(out, cs->buf + cs->off, k);
    cs->off += k;
    return (ssize_t)k;
}

int api_job_results_csv(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_job j;
    if (job_for_read(req, ctx, &j) < 0) return 0;
    int state = cell_state_parse(req), rc = 0;
    if (state < -1) goto cleanup;
    csv_stream *cs = calloc(1, sizeof *cs);
    if (!cs) {
        rc = http_reply_error(req, 500, "internal", NULL, "out of memory starting the CSV");
        goto cleanup;
    }
    *cs = (csv_stream){.st = ctx->st, .job_id = j.id, .state = state};
    rc = http_reply_stream(req, 200, "text/csv; charset=utf-8", MHD_SIZE_UNKNOWN, csv_stream_read, cs,
                           csv_stream_free); /* cs is the response's now; only when MHD cannot
                                                 allocate the response at all is it not freed */
cleanup:
    store_job_free(&j);
    return rc < 0 ? -1 : 0;
}
