/* jobs_page.c — the body of a GET /api/v1/jobs page, and its read cache.
 *
 * The page body comes from three renderers that must agree byte for byte (tested in
 * tests/unit/test_store.c):
 *  - api_jobs_page_reference: store_jobs_list + one jansson object per job (jobs_view_page);
 *  - api_jobs_page_lean: the same rows written into one growing buffer by hand (the escaping and
 *    number formats of jansson's compact dump), jansson only for each job's baseline, which is
 *    stored text that the reference re-serialises; any string that jansson would refuse (bad
 *    UTF-8) sends the whole page to the reference renderer;
 *  - api_jobs_page_cached: the lean page kept in the store's read cache under the normalised
 *    filter, tagged with the commit counter, so repeated GETs while nothing is committed are a
 *    lookup and a copy, and the first GET after any commit renders the page once.
 * The list shows every job to every reader allowed to read (no per-caller filtering), so the
 * cache key is the filter alone; auth runs before the cache. */
#include "api.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_view.h"

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
 * zeros in the exponent); null when not finite (as jobs_view does). */
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

/* Stored JSON text re-serialised as jobs_view_stored() + the compact dump do. -1: leave it to jansson. */
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

/* One job as jobs_view_job(j, 0) dumps it. -1 when the reference must render the page. */
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
int api_jobs_page_reference(store *st, const store_job_filter *f, char **out, size_t *len, char *err, size_t errlen)
{
    store_job *jobs = NULL;
    size_t n = 0;
    char next[STORE_PAGE_TOKEN_LEN] = "";
    *out = NULL;
    *len = 0;
    int rc = store_jobs_list(st, f, &jobs, &n, next, err, errlen);
    if (rc == STORE_OK && jobs_view_page(jobs, n, next, out, len) != 0) {
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
        if (jobs_view_page(jobs, n, next, &b.buf, &b.len) != 0) b.oom = 1;
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

