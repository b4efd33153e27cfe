/* api_jobs.c — the /api/v1/jobs handlers, auth, and the API route table.
 *
 * Thin handlers (STYLE 9-16): each one authenticates, parses its path / query / body, calls the
 * store (all SQL lives in store.c) or jobspec (validation and expansion), and answers with one
 * http_reply_*. Nothing is kept between requests; every string a handler allocates is freed
 * before it returns (`int rc` + one cleanup label). app is an api_ctx (see api.h).
 *
 * POST /api/v1/jobs?dry_run=1 (or true) runs every check of a submission (auth, Idempotency-Key
 * syntax, model lookup, validation and expansion, name clash of a train job's output) and answers
 * 200 {"dry_run": true, "cells": N, "type": T} without writing anything.
 *
 * GET /api/v1/jobs is served from a read cache keyed by the commit counter (see the section's
 * comment below); the other reads go to the store each time.
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

#include "jobspec.h"
#include "scheduler.h"

#define API_WAIT_MAX_S 300.0
#define API_WAIT_SLICE_MS 500

/* ------------------------------------------------------------------ shared helpers */

int api_auth(http_request *req, api_ctx *ctx, int need, store_user *u)
{
    memset(u, 0, sizeof *u);
    const char *token = NULL;
    enum http_auth a = http_request_auth(req, &token);
    if (a == HTTP_AUTH_NONE) {
        if (need == API_READ && (!ctx->cfg || ctx->cfg->anonymous_reads)) return 0;
        http_reply_error(req, 401, "unauthorized", NULL, "this request needs \"Authorization: Bearer TOKEN\"");
        http_reply_header(req, "WWW-Authenticate", "Bearer");
        return -1;
    }
    if (a == HTTP_AUTH_MALFORMED) {
        http_reply_error(req, 401, "unauthorized", NULL,
                         "malformed Authorization header (expected \"Bearer TOKEN\")");
        http_reply_header(req, "WWW-Authenticate", "Bearer error=\"invalid_request\"");
        return -1;
    }
    char err[256] = "";
    int rc = store_token_lookup(ctx->st, token, u, err, sizeof err);
    if (rc == STORE_OK) return 1;
    if (rc == STORE_NOTFOUND) {
        http_reply_error(req, 401, "invalid_token", NULL, "the bearer token is unknown");
        http_reply_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        return -1;
    }
    if (rc == STORE_CONFLICT) {
        http_reply_error(req, 403, "token_revoked", NULL,
                         "the bearer token was revoked; ask an admin for a new one (prunelabd user add)");
        return -1;
    }
    http_reply_error(req, 500, "internal", NULL, "token lookup failed: %s", err);
    return -1;
}

int api_reply_store(http_request *req, int rc, const char *what, const char *err)
{
    switch (rc) {
    case STORE_NOTFOUND: return http_reply_error(req, 404, "not_found", NULL, "%s not found", what);
    case STORE_CONFLICT: return http_reply_error(req, 409, "conflict", NULL, "%s: %s", what, err && *err ? err : "conflict");
    case STORE_INVALID: return http_reply_error(req, 400, "invalid", NULL, "%s: %s", what, err && *err ? err : "invalid");
    default: return http_reply_error(req, 500, "internal", NULL, "%s: %s", what, err && *err ? err : "store error");
    }
}

/* Parsed JSON text, or JSON null (never NULL unless out of memory). */
static json_t *json_text(const char *text)
{
    if (!text) return json_null();
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    return v ? v : json_string(text);
}

static json_t *json_num_or_null(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *job_json(const store_job *j, int with_spec)
{
    json_t *counts = json_object();
    for (int s = 0; s < STORE_STATE_COUNT; s++)
        json_object_set_new(counts, store_state_name((store_state)s), json_integer(j->counts[s]));
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(j->id));
    json_object_set_new(o, "owner", json_string(j->owner ? j->owner : ""));
    json_object_set_new(o, "type", json_string(store_job_type_name(j->type)));
    json_object_set_new(o, "model", j->model ? json_string(j->model) : json_null());
    json_object_set_new(o, "priority", json_integer(j->priority));
    json_object_set_new(o, "state", json_string(store_state_name(j->state)));
    json_object_set_new(o, "cells", json_integer(j->n_cells));
    json_object_set_new(o, "counts", counts);
    json_object_set_new(o, "progress", json_num_or_null(j->progress));
    json_object_set_new(o, "created_ms", json_integer(j->created_ms));
    json_object_set_new(o, "started_ms", j->started_ms ? json_integer(j->started_ms) : json_null());
    json_object_set_new(o, "finished_ms", j->finished_ms ? json_integer(j->finished_ms) : json_null());
    json_object_set_new(o, "error", j->error ? json_string(j->error) : json_null());
    json_object_set_new(o, "baseline", json_text(j->baseline_json));
    if (with_spec) json_object_set_new(o, "spec", json_text(j->spec_json));
    return o;
}

/* The {id} path parameter: > 0, or -1 after replying 404. */
static int64_t path_job_id(http_request *req)
{
    const char *s = http_request_param(req, "id");
    char *end = NULL;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v <= 0) {
        http_reply_error(req, 404, "not_found", "id", "job %s not found", s ? s : "");
        return -1;
    }
    return (int64_t)v;
}

/* Load job id for a write by its owner or an admin. Returns 0 with *j filled, or -1 after
 * replying (401/403/404/500). u is filled on success (free it). */
static int job_for_write(http_request *req, api_ctx *ctx, int64_t id, store_user *u, store_job *j)
{
    memset(j, 0, sizeof *j);
    if (api_auth(req, ctx, API_WRITE, u) < 0) return -1;
    char err[256] = "", what[64];
    snprintf(what, sizeof what, "job %" PRId64, id);
    int rc = store_job_get(ctx->st, id, j, err, sizeof err);
    if (rc != STORE_OK) {
        api_reply_store(req, rc, what, err);
        store_user_free(u);
        return -1;
    }
    if (!u->admin && (!j->owner || strcmp(j->owner, u->name) != 0)) {
        http_reply_error(req, 403, "forbidden", NULL, "only the owner of %s (%s) or an admin may do this",
                         what, j->owner ? j->owner : "?");
        store_user_free(u);
        store_job_free(j);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ POST /api/v1/jobs */

static int idem_key_valid(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 200) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e) return 0;
    return 1;
}

/* ?dry_run=: 1 for "1" / "true", 0 when absent or "0" / "false" / "", -1 after replying 400. */
static int dry_run_parse(http_request *req)
{
    const char *q = http_request_query(req, "dry_run");
    if (!q || !*q || strcmp(q, "0") == 0 || strcmp(q, "false") == 0) return 0;
    if (strcmp(q, "1") == 0 || strcmp(q, "true") == 0) return 1;
    http_reply_error(req, 400, "bad_query", "dry_run", "dry_run: must be 1, true, 0 or false");
    return -1;
}

static int handle_jobs_create(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_model m;
    memset(&m, 0, sizeof m);
    jobspec js;
    memset(&js, 0, sizeof js);
    json_t *body = NULL;
    char err[256] = "";
    int rc = 0, have_model = 0;

    /* A malformed body is answered 400 before auth looks at the token. */
    int dry = dry_run_parse(req);
    if (dry < 0) return 0;
    body = http_request_json(req);
    if (!body) return 0;
    if (api_auth(req, ctx, API_WRITE, &u) < 0) {
        json_decref(body);
        return 0;
    }
    const char *idem = http_request_header(req, "Idempotency-Key");
    if (idem && !idem_key_valid(idem)) {
        rc = http_reply_error(req, 400, "invalid_value", "Idempotency-Key",
                              "Idempotency-Key must be 1 to 200 printable ASCII characters");
        goto cleanup;
    }
    const char *mname = jobspec_model_name(body);
    if (mname && store_name_valid(mname)) {
        int src = store_model_get(ctx->st, mname, &m, err, sizeof err);
        if (src == STORE_NOTFOUND) {
            rc = http_reply_error(req, 404, "unknown_model", "model", "model: no model named '%s'", mname);
            goto cleanup;
        }
        if (src != STORE_OK) {
            rc = api_reply_store(req, src, "model", err);
            goto cleanup;
        }
        have_model = 1;
    }
    jobspec_limits lim = {have_model ? m.dataset : NULL, have_model ? jobspec_info_layers(m.info_json) : 0,
                          ctx->cfg ? ctx->cfg->max_cells_per_job : 0, have_model ? m.info_json : NULL};
    jobspec_error e;
    if (jobspec_expand(body, &lim, &js, &e) != 0) {
        rc = http_reply_error(req, strcmp(e.code, "internal") == 0 ? 500 : 400, e.code, e.field[0] ? e.field : NULL,
                              "%s", e.message);
        goto cleanup;
    }
    if (js.out) {
        store_model other;
        int src = store_model_get(ctx->st, js.out, &other, err, sizeof err);
        if (src == STORE_OK) {
            store_model_free(&other);
            rc = http_reply_error(req, 409, "model_exists", "name", "name: a model named '%s' already exists", js.out);
            goto cleanup;
        }
    }
    if (dry) { /* every check of a real submission passed: report, create nothing */
        rc = http_reply_json(req, 200,
                             json_pack("{s:b, s:I, s:s}", "dry_run", 1, "cells", (json_int_t)js.n_cells, "type",
                                       store_job_type_name(js.type)));
        goto cleanup;
    }
    store_job_new nj = {
        .owner = u.name,
        .type = js.type,
        .spec_json = js.spec_json,
        .model = js.model,
        .priority = js.priority,
        .idem_key = idem,
        .max_attempts = ctx->cfg ? ctx->cfg->max_attempts : 0,
        .baseline_json = NULL,
        .cell_specs = (const char *const *)js.cells,
        .n_cells = js.n_cells,
    };
    int64_t id = 0;
    int src = store_job_create(ctx->st, &nj, &id, err, sizeof err);
    if (src == STORE_CONFLICT) {
        rc = http_reply_error(req, 409, "idempotency_conflict", "Idempotency-Key",
                              "Idempotency-Key '%s' already names job %" PRId64 " with a different body", idem, id);
        goto cleanup;
    }
    if (src != STORE_OK && src != STORE_EXISTS) {
        rc = api_reply_store(req, src, "job", err);
        goto cleanup;
    }
    if (src == STORE_OK && ctx->sched) scheduler_wake(ctx->sched);
    rc = http_reply_json(req, 202,
                         json_pack("{s:I, s:I, s:s, s:s, s:b}", "id", (json_int_t)id, "cells",
                                   (json_int_t)js.n_cells, "type", store_job_type_name(js.type), "state",
                                   "queued", "replayed", src == STORE_EXISTS));
    char loc[64];
    snprintf(loc, sizeof loc, "/api/v1/jobs/%" PRId64, id);
    http_reply_header(req, "Location", loc);
cleanup:
    json_decref(body);
    jobspec_free(&js);
    if (have_model) store_model_free(&m);
    store_user_free(&u);
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ GET /api/v1/jobs
 *
 * The page body comes from three renderers that must agree byte for byte (tested in
 * tests/unit/test_store.c):
 *  - api_jobs_page_reference: store_jobs_list + one jansson object per job (job_json), dumped;
 *  - api_jobs_page_lean: the same rows written into one growing buffer by hand (the escaping and
 *    number formats of jansson's compact dump), jansson only for each job's baseline, which is
 *    stored text that the reference re-serialises; any string that jansson would refuse (bad
 *    UTF-8) sends the whole page to the reference renderer;
 *  - api_jobs_page_cached: the lean page kept in the store's read cache under the normalised
 *    filter, tagged with the commit counter, so repeated GETs while nothing is committed are a
 *    lookup and a copy, and the first GET after any commit renders the page once.
 * The list shows every job to every reader allowed to read (no per-caller filtering), so the
 * cache key is the filter alone; auth runs before the cache. */

/* A growing text; oom is set (and further writes ignored) when memory runs out. */
typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} text_buf;

static int text_reserve(text_buf *b, size_t more)
{
    if (b->oom) return -1;
    if (b->len + more < b->cap) return 0;
    size_t cap = (b->cap + more) * 2;
    char *p = realloc(b->buf, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->buf = p;
    b->cap = cap;
    return 0;
}

static void text_putn(text_buf *b, const char *s, size_t n)
{
    if (text_reserve(b, n + 1)) return;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void text_puts(text_buf *b, const char *s) { text_putn(b, s, strlen(s)); }

static void text_i64(text_buf *b, int64_t v)
{
    char num[32];
    int n = snprintf(num, sizeof num, "%" PRId64, v);
    text_putn(b, num, (size_t)n);
}

/* 1 if s is valid UTF-8 (what jansson accepts for a string). */
static int utf8_ok(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s;
        size_t len;
        unsigned cp;
        if (c < 0x80) { s++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        s += len;
    }
    return 1;
}

/* A JSON string as jansson's dump writes it: \" \\ \b \f \n \r \t, other controls \u00XX,
 * everything else (UTF-8 included) as is. Returns -1 for text jansson would refuse. */
static int text_json_str(text_buf *b, const char *s)
{
    if (!utf8_ok((const unsigned char *)s)) return -1;
    text_putn(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        text_putn(b, run, (size_t)(s - run));
        char esc[8];
        switch (c) {
        case '"': text_putn(b, "\\\"", 2); break;
        case '\\': text_putn(b, "\\\\", 2); break;
        case '\b': text_putn(b, "\\b", 2); break;
        case '\f': text_putn(b, "\\f", 2); break;
        case '\n': text_putn(b, "\\n", 2); break;
        case '\r': text_putn(b, "\\r", 2); break;
        case '\t': text_putn(b, "\\t", 2); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04X", c);
            text_putn(b, esc, 6);
        }
        run = s + 1;
    }
    text_putn(b, run, (size_t)(s - run));
    text_putn(b, "\"", 1);
    return 0;
}

/* A real as jansson's dump writes it ("%.17g", ".0" added to integral values, no '+' or leading
 * zeros in the exponent); null when not finite (json_num_or_null). */
static void text_real(text_buf *b, double x)
{
    if (!isfinite(x)) {
        text_putn(b, "null", 4);
        return;
    }
    char num[64];
    int n = snprintf(num, sizeof num, "%.17g", x);
    if (n < 0 || (size_t)n >= sizeof num - 3) {
        text_putn(b, "null", 4);
        return;
    }
    for (char *p = num; *p; p++)
        if (*p == ',') *p = '.'; /* a locale's decimal comma */
    if (!strchr(num, '.') && !strchr(num, 'e')) {
        memcpy(num + n, ".0", 3);
        n += 2;
    }
    char *e = strchr(num, 'e');
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-') start++;
        while (*end == '0') end++;
        if (end != start) memmove(start, end, strlen(end) + 1);
    }
    text_puts(b, num);
}

/* Stored JSON text re-serialised as json_text() + the compact dump do. -1: leave it to jansson. */
static int text_json_stored(text_buf *b, const char *stored)
{
    if (!stored) {
        text_putn(b, "null", 4);
        return 0;
    }
    json_t *v = json_loads(stored, JSON_DECODE_ANY, NULL);
    if (!v) return text_json_str(b, stored);
    char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (!d) return -1;
    text_puts(b, d);
    free(d);
    return 0;
}

/* One job as job_json(j, 0) dumps it. -1 when the reference must render the page. */
static int text_job(text_buf *b, const store_job *j)
{
    const char *type = store_job_type_name(j->type), *state = store_state_name(j->state);
    if (!type || !state) return -1;
    text_puts(b, "{\"id\":");
    text_i64(b, j->id);
    text_puts(b, ",\"owner\":");
    if (text_json_str(b, j->owner ? j->owner : "")) return -1;
    text_puts(b, ",\"type\":\"");
    text_puts(b, type);
    text_puts(b, "\",\"model\":");
    if (!j->model) text_puts(b, "null");
    else if (text_json_str(b, j->model)) return -1;
    text_puts(b, ",\"priority\":");
    text_i64(b, j->priority);
    text_puts(b, ",\"state\":\"");
    text_puts(b, state);
    text_puts(b, "\",\"cells\":");
    text_i64(b, j->n_cells);
    text_puts(b, ",\"counts\":{");
    for (int k = 0; k < STORE_STATE_COUNT; k++) {
        text_puts(b, k ? ",\"" : "\"");
        text_puts(b, store_state_name((store_state)k));
        text_puts(b, "\":");
        text_i64(b, j->counts[k]);
    }
    text_puts(b, "},\"progress\":");
    text_real(b, j->progress);
    text_puts(b, ",\"created_ms\":");
    text_i64(b, j->created_ms);
    text_puts(b, ",\"started_ms\":");
    if (j->started_ms) text_i64(b, j->started_ms);
    else text_puts(b, "null");
    text_puts(b, ",\"finished_ms\":");
    if (j->finished_ms) text_i64(b, j->finished_ms);
    else text_puts(b, "null");
    text_puts(b, ",\"error\":");
    if (!j->error) text_puts(b, "null");
    else if (text_json_str(b, j->error)) return -1;
    text_puts(b, ",\"baseline\":");
    if (text_json_stored(b, j->baseline_json)) return -1;
    text_puts(b, "}");
    return 0;
}

/* The page body of jobs[0..n) as the reference renders it. */
static int page_reference_text(const store_job *jobs, size_t n, const char *next, char **out, size_t *len)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) json_array_append_new(arr, job_json(&jobs[i], 0));
    json_t *page = json_pack("{s:o, s:o}", "jobs", arr, "next_page_token", next[0] ? json_string(next) : json_null());
    char *text = page ? json_dumps(page, JSON_COMPACT) : NULL;
    json_decref(page);
    if (!text) return -1;
    size_t l = strlen(text);
    char *t = realloc(text, l + 2);
    if (!t) {
        free(text);
        return -1;
    }
    t[l++] = '\n';
    t[l] = '\0';
    *out = t;
    *len = l;
    return 0;
}

int api_jobs_page_reference(store *st, const store_job_filter *f, char **out, size_t *len, char *err, size_t errlen)
{
    store_job *jobs = NULL;
    size_t n = 0;
    char next[STORE_PAGE_TOKEN_LEN] = "";
    *out = NULL;
    *len = 0;
    int rc = store_jobs_list(st, f, &jobs, &n, next, err, errlen);
    if (rc == STORE_OK && page_reference_text(jobs, n, next, out, len) != 0) {
        snprintf(err, errlen, "out of memory rendering the job list");
        rc = STORE_ERR;
    }
    store_jobs_free(jobs, n);
    return rc;
}

int api_jobs_page_lean(store *st, const store_job_filter *f, char **out, size_t *len, char *err, size_t errlen)
{
    store_job *jobs = NULL;
    size_t n = 0;
    char next[STORE_PAGE_TOKEN_LEN] = "";
    store_job_filter lf = *f;
    lf.without_spec = 1; /* the list does not show the spec */
    *out = NULL;
    *len = 0;
    int rc = store_jobs_list(st, &lf, &jobs, &n, next, err, errlen);
    if (rc != STORE_OK) return rc;
    text_buf b = {NULL, 0, 0, 0};
    int fallback = 0;
    text_reserve(&b, 64 + n * 400);
    text_puts(&b, "{\"jobs\":[");
    for (size_t i = 0; i < n && !fallback; i++) {
        if (i) text_putn(&b, ",", 1);
        fallback = text_job(&b, &jobs[i]) != 0;
    }
    text_puts(&b, "],\"next_page_token\":");
    if (next[0]) {
        text_putn(&b, "\"", 1);
        text_puts(&b, next); /* [no][0-9a-f]+: nothing to escape */
        text_putn(&b, "\"", 1);
    } else {
        text_puts(&b, "null");
    }
    text_puts(&b, "}\n");
    if (fallback) {
        free(b.buf);
        b.buf = NULL;
        if (page_reference_text(jobs, n, next, &b.buf, &b.len) != 0) b.oom = 1;
    }
    store_jobs_free(jobs, n);
    if (b.oom) {
        free(b.buf);
        snprintf(err, errlen, "out of memory rendering the job list");
        return STORE_ERR;
    }
    *out = b.buf;
    *len = b.len;
    return STORE_OK;
}

typedef struct {
    store *st;
    const store_job_filter *f;
} page_build_ctx;

static int page_build(void *cls, char **blob, size_t *len, char *err, size_t errlen)
{
    page_build_ctx *c = cls;
    return api_jobs_page_lean(c->st, c->f, blob, len, err, errlen);
}

int api_jobs_page_cached(store *st, const store_job_filter *f, char **out, size_t *len, int *hit, char *err,
                         size_t errlen)
{
    /* The normalised filter: defaults applied, query spelling (order of arguments, empty values)
     * gone. '\n' cannot occur in a query value (controls are refused by the HTTP layer). */
    char key[STORE_MEMO_KEY_MAX + 2];
    int limit = f->limit <= 0 ? 50 : f->limit > STORE_PAGE_MAX ? STORE_PAGE_MAX : f->limit;
    int kl = snprintf(key, sizeof key, "jobs\n%d\n%d\n%d\n%d\n%s\n%s%s", f->type, f->state, (int)f->order, limit,
                      f->page_token ? f->page_token : "", f->owner ? "=" : "-", f->owner ? f->owner : "");
    page_build_ctx c = {st, f};
    if (kl < 0 || (size_t)kl >= sizeof key) { /* too long to cache: render it */
        if (hit) *hit = 0;
        return api_jobs_page_lean(st, f, out, len, err, errlen);
    }
    return store_memo_get(st, key, page_build, &c, out, len, hit, err, errlen);
}

static int handle_jobs_list(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    char err[256] = "", *page = NULL;
    size_t len = 0;
    int rc = 0;
    if (api_auth(req, ctx, API_READ, &u) < 0) return 0;

    store_job_filter f = {.owner = NULL, .type = -1, .state = -1, .order = STORE_ORDER_NEWEST, .limit = 50};
    const char *q;
    if ((q = http_request_query(req, "owner")) && *q) f.owner = q;
    if ((q = http_request_query(req, "type")) && *q && (f.type = store_job_type_parse(q)) < 0) {
        rc = http_reply_error(req, 400, "bad_query", "type", "type: unknown job type '%s'", q);
        goto cleanup;
    }
    if ((q = http_request_query(req, "state")) && *q && (f.state = store_state_parse(q)) < 0) {
        rc = http_reply_error(req, 400, "bad_query", "state", "state: unknown state '%s'", q);
        goto cleanup;
    }
    if ((q = http_request_query(req, "order")) && *q) {
        if (strcmp(q, "newest") == 0) f.order = STORE_ORDER_NEWEST;
        else if (strcmp(q, "oldest") == 0) f.order = STORE_ORDER_OLDEST;
        else {
            rc = http_reply_error(req, 400, "bad_query", "order", "order: must be newest or oldest");
            goto cleanup;
        }
    }
    if ((q = http_request_query(req, "limit")) && *q) {
        char *end;
        long v = strtol(q, &end, 10);
        if (*end || v < 1 || v > STORE_PAGE_MAX) {
            rc = http_reply_error(req, 400, "bad_query", "limit", "limit: must be an integer in [1, %d]",
                                  STORE_PAGE_MAX);
            goto cleanup;
        }
        f.limit = (int)v;
    }
    f.page_token = http_request_query(req, "page_token");
    int src = api_jobs_page_cached(ctx->st, &f, &page, &len, NULL, err, sizeof err);
    if (src == STORE_INVALID) {
        rc = http_reply_error(req, 400, "bad_query", "page_token", "page_token: %s", err);
        goto cleanup;
    }
    if (src != STORE_OK) {
        rc = api_reply_store(req, src, "jobs", err);
        goto cleanup;
    }
    rc = http_reply_json_text(req, 200, page, len);
    page = NULL; /* taken by the reply */
cleanup:
    free(page);
    store_user_free(&u);
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ GET /api/v1/jobs/{id} */

static int job_same(const store_job *a, const store_job *b)
{
    if (a->state != b->state || fabs(a->progress - b->progress) > 1e-9) return 0;
    if ((a->baseline_json == NULL) != (b->baseline_json == NULL)) return 0;
    for (int s = 0; s < STORE_STATE_COUNT; s++)
        if (a->counts[s] != b->counts[s]) return 0;
    return 1;
}

static int handle_job_get(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_job j, k;
    memset(&j, 0, sizeof j);
    memset(&k, 0, sizeof k);
    char err[256] = "", what[64];
    int rc = 0;
    if (api_auth(req, ctx, API_READ, &u) < 0) return 0;
    int64_t id = path_job_id(req);
    if (id < 0) goto cleanup;
    snprintf(what, sizeof what, "job %" PRId64, id);

    double wait_s = 0;
    const char *q = http_request_query(req, "wait");
    if (q) {
        char *end;
        wait_s = strtod(q, &end);
        if (!*q || *end || !isfinite(wait_s) || wait_s < 0 || wait_s > API_WAIT_MAX_S) {
            rc = http_reply_error(req, 400, "bad_query", "wait", "wait: seconds in [0, %g]", API_WAIT_MAX_S);
            goto cleanup;
        }
    }
    int have_since = 0;
    uint64_t since = 0;
    if ((q = http_request_query(req, "since"))) {
        char *end;
        errno = 0;
        since = strtoull(q, &end, 10);
        if (!*q || *end || errno || *q == '-') {
            rc = http_reply_error(req, 400, "bad_query", "since", "since: a version number from an earlier response");
            goto cleanup;
        }
        have_since = 1;
    }
    uint64_t version = store_version(ctx->st);
    int src = store_job_get(ctx->st, id, &j, err, sizeof err);
    if (src != STORE_OK) {
        rc = api_reply_store(req, src, what, err);
        goto cleanup;
    }
    if (wait_s > 0 && !(have_since && since != version) && j.state != STORE_STATE_DONE &&
        j.state != STORE_STATE_FAILED && j.state != STORE_STATE_CANCELLED) {
        double left_ms = wait_s * 1000.0;
        http_server *srv = http_request_server(req);
        while (left_ms > 0 && !(srv && http_server_stopping(srv))) {
            int slice = left_ms < API_WAIT_SLICE_MS ? (int)left_ms + 1 : API_WAIT_SLICE_MS;
            uint64_t v = store_wait(ctx->st, version, slice);
            left_ms -= slice;
            if (v == version) continue;
            version = v;
            src = store_job_get(ctx->st, id, &k, err, sizeof err);
            if (src != STORE_OK) {
                rc = api_reply_store(req, src, what, err);
                goto cleanup;
            }
            int same = job_same(&j, &k);
            store_job_free(&j);
            j = k;
            memset(&k, 0, sizeof k);
            if (!same) break;
        }
    }
    json_t *o = job_json(&j, 1);
    json_object_set_new(o, "version", json_integer((json_int_t)version));
    rc = http_reply_json(req, 200, o);
cleanup:
    store_job_free(&j);
    store_job_free(&k);
    store_user_free(&u);
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ cancel / retry / delete */

static int handle_job_cancel(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_job j;
    store_running *running = NULL;
    size_t n_running = 0;
    char err[256] = "", what[64];
    int rc = 0;
    int64_t id = path_job_id(req);
    if (id < 0) return 0;
    if (job_for_write(req, ctx, id, &u, &j) < 0) return 0;
    snprintf(what, sizeof what, "job %" PRId64, id);
    int src = store_job_cancel(ctx->st, id, &running, &n_running, err, sizeof err);
    if (src == STORE_NOOP) {
        rc = http_reply_error(req, 409, "not_cancellable", NULL, "%s is already %s", what, store_state_name(j.state));
        goto cleanup;
    }
    if (src != STORE_OK) {
        rc = api_reply_store(req, src, what, err);
        goto cleanup;
    }
    if (ctx->sched) scheduler_cancel_job(ctx->sched, id);
    rc = http_reply_json(req, 200, json_pack("{s:I, s:s, s:I}", "id", (json_int_t)id, "state", "cancelled",
                                             "running_cells_signalled", (json_int_t)n_running));
cleanup:
    store_running_free(running, n_running);
    store_job_free(&j);
    store_user_free(&u);
    return rc < 0 ? -1 : 0;
}

static int handle_job_retry(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_job j;
    char err[256] = "", what[64];
    int rc = 0, n = 0;
    int64_t id = path_job_id(req);
    if (id < 0) return 0;
    if (job_for_write(req, ctx, id, &u, &j) < 0) return 0;
    snprintf(what, sizeof what, "job %" PRId64, id);
    int src = store_job_retry_failed(ctx->st, id, &n, err, sizeof err);
    if (src == STORE_NOOP) {
        rc = http_reply_error(req, 409, "nothing_to_retry", NULL, "%s has no failed cells", what);
        goto cleanup;
    }
    if (src != STORE_OK) {
        rc = api_reply_store(req, src, what, err);
        goto cleanup;
    }
    if (ctx->sched) scheduler_wake(ctx->sched);
    rc = http_reply_json(req, 200, json_pack("{s:I, s:i}", "id", (json_int_t)id, "requeued", n));
cleanup:
    store_job_free(&j);
    store_user_free(&u);
    return rc < 0 ? -1 : 0;
}

static int handle_job_delete(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_job j;
    char err[256] = "", what[64];
    int rc = 0;
    int64_t id = path_job_id(req);
    if (id < 0) return 0;
    if (job_for_write(req, ctx, id, &u, &j) < 0) return 0;
    snprintf(what, sizeof what, "job %" PRId64, id);
    int src = store_job_delete(ctx->st, id, err, sizeof err);
    if (src == STORE_CONFLICT) {
        rc = http_reply_error(req, 409, "job_running", NULL, "%s has running cells; cancel it first", what);
        goto cleanup;
    }
    if (src != STORE_OK) {
        rc = api_reply_store(req, src, what, err);
        goto cleanup;
    }
    rc = http_reply_json(req, 200, json_pack("{s:I, s:b}", "id", (json_int_t)id, "deleted", 1));
cleanup:
    store_job_free(&j);
    store_user_free(&u);
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ cells and results */

static json_t *cell_json(const store_cell *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(c->id));
    json_object_set_new(o, "idx", json_integer(c->idx));
    json_object_set_new(o, "state", json_string(store_state_name(c->state)));
    json_object_set_new(o, "attempts", json_integer(c->attempts));
    json_object_set_new(o, "max_attempts", json_integer(c->max_attempts));
    json_object_set_new(o, "progress", json_num_or_null(c->progress));
    json_object_set_new(o, "phase", c->phase ? json_string(c->phase) : json_null());
    json_object_set_new(o, "spec", json_text(c->spec_json));
    json_object_set_new(o, "result", json_text(c->result_json));
    json_object_set_new(o, "error", c->error_code || c->error_message
                                        ? json_pack("{s:s?, s:s?}", "code", c->error_code, "message",
                                                    c->error_message)
                                        : json_null());
    json_object_set_new(o, "stderr_tail", c->stderr_tail ? json_string(c->stderr_tail) : json_null());
    json_object_set_new(o, "started_ms", c->started_ms ? json_integer(c->started_ms) : json_null());
    json_object_set_new(o, "finished_ms", c->finished_ms ? json_integer(c->finished_ms) : json_null());
    return o;
}

/* Load the job's cells for a read (auth, id, optional ?state=). Returns 0 or -1 after replying. */
static int load_cells(http_request *req, api_ctx *ctx, int64_t *id, store_job *j, store_cell **cells, size_t *n)
{
    store_user u;
    char err[256] = "", what[64];
    memset(j, 0, sizeof *j);
    if (api_auth(req, ctx, API_READ, &u) < 0) return -1;
    store_user_free(&u);
    if ((*id = path_job_id(req)) < 0) return -1;
    snprintf(what, sizeof what, "job %" PRId64, *id);
    int state = -1;
    const char *q = http_request_query(req, "state");
    if (q && *q && (state = store_state_parse(q)) < 0) {
        http_reply_error(req, 400, "bad_query", "state", "state: unknown state '%s'", q);
        return -1;
    }
    int src = store_job_get(ctx->st, *id, j, err, sizeof err);
    if (src == STORE_OK) src = store_cells_list(ctx->st, *id, state, cells, n, err, sizeof err);
    if (src != STORE_OK) {
        store_job_free(j);
        api_reply_store(req, src, what, err);
        return -1;
    }
    return 0;
}

static int handle_job_cells(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_job j;
    store_cell *cells = NULL;
    size_t n = 0;
    int64_t id;
    if (load_cells(req, ctx, &id, &j, &cells, &n) < 0) return 0;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, cell_json(&cells[i]));
    int rc = http_reply_json(req, 200, json_pack("{s:I, s:o}", "job", (json_int_t)id, "cells", arr));
    store_cells_free(cells, n);
    store_job_free(&j);
    return rc < 0 ? -1 : 0;
}

/* Columns of the results table: grid coordinates from the cell spec, then metrics. */
static const char *const COORD_COLS[] = {"component", "components", "layer", "rate", "seed", "config"};
static const char *const METRIC_COLS[] = {
    "accuracy", "loss", "baseline_accuracy", "delta_accuracy", "delta_loss", "sparsity", "params",
    "params_nonzero", "params_baseline", "flops_per_sample", "baseline_flops_per_sample",
    "latency_ms_per_batch", "samples_per_s", "speedup", "wall_s"};
#define N_COORD (sizeof COORD_COLS / sizeof COORD_COLS[0])
#define N_METRIC (sizeof METRIC_COLS / sizeof METRIC_COLS[0])

/* One flat row for a cell; values are JSON scalars (config is a compact "a=0.3;b=0.5" string,
 * sparsity the overall fraction when the engine reports an object). */
static json_t *result_row(const store_cell *c)
{
    json_t *spec = c->spec_json ? json_loads(c->spec_json, 0, NULL) : NULL;
    json_t *res = c->result_json ? json_loads(c->result_json, 0, NULL) : NULL;
    json_t *row = json_object();
    json_object_set_new(row, "idx", json_integer(c->idx));
    json_object_set_new(row, "cell_id", json_integer(c->id));
    json_object_set_new(row, "state", json_string(store_state_name(c->state)));
    for (size_t i = 0; i < N_COORD; i++) {
        json_t *v = json_object_get(spec, COORD_COLS[i]);
        if (json_is_object(v)) {
            char buf[512] = "";
            size_t used = 0;
            const char *k;
            json_t *x;
            json_object_foreach(v, k, x) {
                if (used < sizeof buf)
                    used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s=%g", used ? ";" : "", k,
                                             json_number_value(x));
            }
            json_object_set_new(row, COORD_COLS[i], json_string(buf));
        } else if (strcmp(COORD_COLS[i], "components") == 0 && json_is_array(v)) {
            json_object_set_new(row, "components", json_string(json_string_value(json_array_get(v, 0))));
        } else {
            json_object_set_new(row, COORD_COLS[i], v ? json_deep_copy(v) : json_null());
        }
    }
    json_t *metrics = json_object_get(res, "metrics");
    if (!metrics) metrics = res;
    for (size_t i = 0; i < N_METRIC; i++) {
        json_t *v = json_object_get(metrics, METRIC_COLS[i]);
        if (json_is_object(v)) {
            json_t *o = json_object_get(v, "overall"); /* {"overall": {"sparsity": x, ...}, ...} */
            if (json_is_object(o)) o = json_object_get(o, "sparsity");
            if (!o) o = json_object_get(v, "sparsity");
            v = json_is_number(o) ? o : NULL;
        } else if (json_is_array(v)) {
            v = NULL;
        }
        json_object_set_new(row, METRIC_COLS[i], v ? json_deep_copy(v) : json_null());
    }
    json_object_set_new(row, "error", c->error_code ? json_string(c->error_code) : json_null());
    json_decref(spec);
    json_decref(res);
    return row;
}

static void csv_field(text_buf *b, const char *s)
{
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    if (text_reserve(b, strlen(s) * 2 + 4)) return;
    char *p = b->buf + b->len;
    if (quote) *p++ = '"';
    for (; *s; s++) {
        if (*s == '"') *p++ = '"';
        *p++ = *s;
    }
    if (quote) *p++ = '"';
    b->len = (size_t)(p - b->buf);
}

static void csv_sep(text_buf *b, char c)
{
    if (text_reserve(b, 2)) return;
    b->buf[b->len++] = c;
}

static int handle_job_results(http_request *req, void *app, int csv)
{
    api_ctx *ctx = app;
    store_job j;
    store_cell *cells = NULL;
    size_t n = 0;
    int64_t id;
    if (load_cells(req, ctx, &id, &j, &cells, &n) < 0) return 0;
    json_t *rows = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(rows, result_row(&cells[i]));
    int rc;
    if (!csv) {
        rc = http_reply_json(req, 200, json_pack("{s:I, s:s, s:o, s:o}", "job", (json_int_t)id, "type",
                                                 store_job_type_name(j.type), "baseline",
                                                 json_text(j.baseline_json), "rows", rows));
    } else {
        text_buf b = {NULL, 0, 0, 0};
        const char *const fixed[] = {"idx", "cell_id", "state"};
        const char *cols[3 + N_COORD + N_METRIC + 1];
        size_t nc = 0;
        for (size_t i = 0; i < 3; i++) cols[nc++] = fixed[i];
        for (size_t i = 0; i < N_COORD; i++) cols[nc++] = COORD_COLS[i];
        for (size_t i = 0; i < N_METRIC; i++) cols[nc++] = METRIC_COLS[i];
        cols[nc++] = "error";
        for (size_t i = 0; i < nc; i++) {
            if (i) csv_sep(&b, ',');
            csv_field(&b, cols[i]);
        }
        csv_sep(&b, '\n');
        size_t k;
        json_t *row;
        json_array_foreach(rows, k, row) {
            for (size_t i = 0; i < nc; i++) {
                if (i) csv_sep(&b, ',');
                json_t *v = json_object_get(row, cols[i]);
                char num[64];
                const char *s = "";
                if (json_is_string(v)) {
                    s = json_string_value(v);
                } else if (json_is_integer(v)) {
                    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                    s = num;
                } else if (json_is_real(v)) {
                    snprintf(num, sizeof num, "%.10g", json_real_value(v));
                    s = num;
                } else if (json_is_boolean(v)) {
                    s = json_is_true(v) ? "true" : "false";
                }
                csv_field(&b, s);
            }
            csv_sep(&b, '\n');
        }
        json_decref(rows);
        if (b.oom) rc = http_reply_error(req, 500, "internal", NULL, "out of memory building the CSV");
        else rc = http_reply_text(req, 200, "text/csv; charset=utf-8", b.buf ? b.buf : "", b.len);
        free(b.buf);
    }
    store_cells_free(cells, n);
    store_job_free(&j);
    return rc < 0 ? -1 : 0;
}

static int handle_job_results_json(http_request *req, void *app) { return handle_job_results(req, app, 0); }
static int handle_job_results_csv(http_request *req, void *app) { return handle_job_results(req, app, 1); }

/* ------------------------------------------------------------------ route table */

static const http_route API_ROUTES[] = {
    {"POST", "/api/v1/jobs", handle_jobs_create, HTTP_BODY_MEMORY, 0,
     "submit a job (train, ablation, sensitivity, joint, rsst, lite); Idempotency-Key honoured"},
    {"GET", "/api/v1/jobs", handle_jobs_list, HTTP_BODY_MEMORY, 0,
     "list jobs (owner, type, state, order, limit, page_token)"},
    {"GET", "/api/v1/jobs/{id}", handle_job_get, HTTP_BODY_MEMORY, 0,
     "one job with per-state cell counts and progress; ?wait=S&since=V long-polls"},
    {"DELETE", "/api/v1/jobs/{id}", handle_job_delete, HTTP_BODY_MEMORY, 0, "delete a job (owner or admin)"},
    {"POST", "/api/v1/jobs/{id}/cancel", handle_job_cancel, HTTP_BODY_MEMORY, 0, "cancel a job (owner or admin)"},
    {"POST", "/api/v1/jobs/{id}/retry", handle_job_retry, HTTP_BODY_MEMORY, 0,
     "requeue the failed cells of a job (owner or admin)"},
    {"GET", "/api/v1/jobs/{id}/cells", handle_job_cells, HTTP_BODY_MEMORY, 0, "the cells of a job with results"},
    {"GET", "/api/v1/jobs/{id}/results.json", handle_job_results_json, HTTP_BODY_MEMORY, 0,
     "one row per cell: grid coordinates and metrics (JSON)"},
    {"GET", "/api/v1/jobs/{id}/results.csv", handle_job_results_csv, HTTP_BODY_MEMORY, 0,
     "one row per cell: grid coordinates and metrics (CSV)"},
    {"GET", "/api/v1/models", api_models_list, HTTP_BODY_MEMORY, 0, "list models"},
    {"GET", "/api/v1/models/{name}", api_model_get, HTTP_BODY_MEMORY, 0, "one model"},
    {"PUT", "/api/v1/models/{name}", api_model_put, HTTP_BODY_FILE, 0,
     "upload a safetensors checkpoint (validated by prunelab inspect)"},
    {"DELETE", "/api/v1/models/{name}", api_model_delete, HTTP_BODY_MEMORY, 0, "delete a model (owner or admin)"},
    {"GET", "/api/v1/models/{name}/components", api_model_components, HTTP_BODY_MEMORY, 0,
     "prunable components of a model with their share of params"},
    {"GET", "/api/v1/datasets", api_datasets_list, HTTP_BODY_MEMORY, 0, "datasets and their availability"},
    {"GET", "/api/v1/vocabulary", api_vocabulary_get, HTTP_BODY_MEMORY, 0,
     "the names specs accept: components, criteria, granularities, job types and their keys"},
};

const http_route *api_routes(size_t *n)
{
    if (n) *n = sizeof API_ROUTES / sizeof API_ROUTES[0];
    return API_ROUTES;
}
