/* http.c — libmicrohttpd wrapper: listening socket, route table dispatch, body limits, JSON
 * replies, per-route metrics, access log.
 *
 * Threads. MHD runs one polling thread that accepts and one thread per connection
 * (MHD_USE_THREAD_PER_CONNECTION); the access handler, the handlers it dispatches to and the
 * completion callback of a request all run on that connection's thread. Shared state is the
 * read-only route table and the per-route counters, updated with relaxed atomics.
 *
 * Request life cycle (one owner: MHD's *req_cls).
 *   first call      request_new: copy method and path, validate and decode the path, route it,
 *                   decode the query, check Content-Length against the route's cap, run the
 *                   route's before_body check (uploads: auth, name, conflict). Any
 *                   failure queues a 400/404/405/413 at once (MHD then skips the body).
 *   body calls      append to memory or to a temp file; past the cap, data is discarded and
 *                   the request ends in 413 (bodies without Content-Length).
 *   last call       run the handler (or 413 / 500), queue its response.
 *   completed       MHD_OPTION_NOTIFY_COMPLETED: count, log, free the request, unlink an
 *                   untaken temp file. Nothing else frees a request.
 *
 * Paths. MHD's own %-decoding is switched off (identity MHD_OPTION_UNESCAPE_CALLBACK) so a
 * segment is decoded here, on its own: an encoded '/' (%2F), a "." or ".." segment, a control
 * character or invalid UTF-8 is refused with 400 bad_path before routing. Query values are
 * decoded the same way ('+' is a space), '/' allowed.
 *
 * The listening socket is opened here (close-on-exec, so spawned cells never hold the port)
 * and handed to MHD with MHD_OPTION_LISTEN_SOCKET; that gives a precise bind error.
 *
 * Slow clients (header deadline, body minimum rate, pending-connection pool with a reserve,
 * per-address shares, rate-limited refusal log): see that section. The client address used
 * for the caps and the access log is always the TCP peer; X-Forwarded-For, X-Real-IP and
 * Forwarded are never read, so behind a reverse proxy every client has the proxy's address. */
#define _GNU_SOURCE /* mkostemp */
#include "http.h"
#include "errbuf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ types */

/* Latency histogram upper bounds, seconds; one more bucket for +Inf. */
static const double latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1.0,   2.5,  5.0,  10.0};
#define N_BOUNDS (sizeof latency_bounds / sizeof latency_bounds[0])
#define CODE_MIN 100
#define CODE_MAX 599

typedef struct {
    uint64_t codes[CODE_MAX - CODE_MIN + 1]; /* answered requests by status */
    uint64_t buckets[N_BOUNDS + 1];          /* non-cumulative; last is +Inf */
    uint64_t sum_us;                         /* total latency, microseconds */
    uint64_t count;
} route_stats;

typedef struct {
    int nseg;
    char *segs[HTTP_MAX_SEGMENTS];   /* literal text, or "{name}" */
} route_pattern;

struct http_server {
    struct MHD_Daemon *mhd;
    int port;
    http_options opt;        /* host and tmp_dir point at the copies below */
    char *host, *tmp_dir;
    http_route *routes;      /* n_routes, copied */
    route_pattern *patterns; /* n_routes */
    route_stats *stats;      /* n_routes + 1: the last counts unmatched requests */
    size_t n_routes;
    void *app;
    int stopping;            /* atomic flag */
    int quiesced;            /* listen socket handed back and closed */
    int64_t in_flight;       /* atomic gauge */
    /* slow clients (see that section) */
    pthread_mutex_t conn_lock;   /* conns, reaper_stop */
    pthread_cond_t reaper_cond;
    pthread_mutex_t log_lock;    /* glog */
    int locks_ready;
    struct conn_slot *conns;     /* n_conns = MHD's connection limit */
    size_t n_conns;
    int total_cap, per_ip_cap, pending_cap, pending_ip_cap, header_timeout_s;
    size_t body_min_rate;
    pthread_t reaper;
    int reaper_started, reaper_stop;
    struct glog_bucket *glog;    /* GLOG_BUCKETS */
};

struct http_request {
    http_server *srv;
    struct MHD_Connection *conn;
    struct conn_slot *slot;            /* the connection's, or NULL */
    char *method;
    char *path;                        /* raw */
    char *segbuf;                      /* decoded segments, NUL-separated */
    char *seg[HTTP_MAX_SEGMENTS];
    int nseg;
    int route;                         /* index, or -1 */
    char *qkey[HTTP_MAX_QUERY], *qval[HTTP_MAX_QUERY];
    int nq;
    int query_bad;                     /* set by the query iterator */
    char query_msg[192];
    size_t body_limit;
    char *body;                        /* memory body, NUL-terminated */
    size_t body_len, body_alloc;
    int fd;                            /* file body */
    char *file_path;
    int keep_file;
    int too_large, io_error, responded;
    struct MHD_Response *resp;
    unsigned status;
    double t0;
    void (*on_free)(void *);           /* http_request_on_free */
    void *on_free_arg;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------ decoding */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* 1 if s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return 0;
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += len;
    }
    return 1;
}

/* Decode raw[0..n) into out (room for n + 1) with %XX, and '+' as space when plus_space.
 * Refuses bad escapes, control characters (raw or decoded), a decoded '/' when !allow_slash,
 * and invalid UTF-8. Returns the decoded length, or -1 with a reason in msg. */
static long decode_component(const char *raw, size_t n, char *out, int plus_space,
                             int allow_slash, char *msg, size_t msglen) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c == '%') {
            int hi = i + 1 < n ? hexval((unsigned char)raw[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)raw[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                snprintf(msg, msglen, "bad percent-escape");
                return -1;
            }
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
            if (c == '/' && !allow_slash) {
                snprintf(msg, msglen, "an encoded '/' inside a path segment is refused");
                return -1;
            }
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (c < 0x20 || c == 0x7f) {
            snprintf(msg, msglen, "control character 0x%02x refused", c);
            return -1;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    if (!utf8_valid((const unsigned char *)out, o)) {
        snprintf(msg, msglen, "invalid UTF-8 refused");
        return -1;
    }
    return (long)o;
}

/* Split and decode req->path into req->seg. Returns 0, -1 for a bad path (400, msg set), or
 * 1 for a path deeper than HTTP_MAX_SEGMENTS (no route can match: 404). */
static int path_split(http_request *req, char *msg, size_t msglen) {
    const char *p = req->path;
    if (*p != '/') {
        snprintf(msg, msglen, "path must start with '/'");
        return -1;
    }
    size_t n = strlen(p);
    req->segbuf = malloc(n + 1);
    if (!req->segbuf) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    char *out = req->segbuf;
    req->nseg = 0;
    if (n == 1) return 0;
    const char *s = p + 1;
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t len = slash ? (size_t)(slash - s) : strlen(s);
        if (req->nseg == HTTP_MAX_SEGMENTS) return 1;
        char m[96];
        long d = decode_component(s, len, out, 0, 0, m, sizeof m);
        if (d < 0) {
            snprintf(msg, msglen, "segment %d of the path: %s", req->nseg + 1, m);
            return -1;
        }
        if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0) {
            snprintf(msg, msglen, "'%s' path segments are refused (path traversal)", out);
            return -1;
        }
        req->seg[req->nseg++] = out;
        out += d + 1;
        if (!slash) break;
        s = slash + 1;
    }
    return 0;
}

static enum MHD_Result query_collect(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value) {
    http_request *req = cls;
    (void)kind;
    if (req->nq == HTTP_MAX_QUERY) {
        snprintf(req->query_msg, sizeof req->query_msg, "more than %d query arguments",
                 HTTP_MAX_QUERY);
        req->query_bad = 1;
        return MHD_NO;
    }
    const char *v = value ? value : "";
    size_t kl = strlen(key), vl = strlen(v);
    char *k = malloc(kl + 1), *d = malloc(vl + 1);
    if (!k || !d) {
        free(k);
        free(d);
        snprintf(req->query_msg, sizeof req->query_msg, "out of memory");
        req->query_bad = 2;
        return MHD_NO;
    }
    char m[96];
    if (decode_component(key, kl, k, 1, 1, m, sizeof m) < 0 ||
        decode_component(v, vl, d, 1, 1, m, sizeof m) < 0) {
        snprintf(req->query_msg, sizeof req->query_msg, "query argument '%.40s': %s",
                 utf8_valid((const unsigned char *)key, kl) ? key : "?", m);
        free(k);
        free(d);
        req->query_bad = 1;
        return MHD_NO;
    }
    req->qkey[req->nq] = k;
    req->qval[req->nq] = d;
    req->nq++;
    return MHD_YES;
}

/* MHD's unescaping is done per segment in path_split / query_collect instead. */
static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s) {
    (void)cls;
    (void)c;
    return strlen(s);
}

/* ------------------------------------------------------------------ routes */

static int pattern_compile(const char *pattern, route_pattern *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!pattern || pattern[0] != '/')
        return errbuf_set(err, errlen, "route pattern '%s' must start with '/'",
                       pattern ? pattern : "(null)");
    if (pattern[1] == '\0') return 0;
    const char *s = pattern + 1;
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t len = slash ? (size_t)(slash - s) : strlen(s);
        if (len == 0) return errbuf_set(err, errlen, "route pattern '%s' has an empty segment", pattern);
        if (out->nseg == HTTP_MAX_SEGMENTS)
            return errbuf_set(err, errlen, "route pattern '%s' is too deep", pattern);
        if (s[0] == '{') {
            if (len < 3 || s[len - 1] != '}')
                return errbuf_set(err, errlen, "route pattern '%s': bad {name} segment", pattern);
            for (size_t i = 1; i + 1 < len; i++)
                if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'))
                    return errbuf_set(err, errlen, "route pattern '%s': {name} takes [a-z0-9_]",
                                   pattern);
        }
        char *seg = malloc(len + 1);
        if (!seg) return errbuf_set(err, errlen, "out of memory");
        memcpy(seg, s, len);
        seg[len] = '\0';
        out->segs[out->nseg++] = seg;
        if (!slash) break;
        s = slash + 1;
    }
    return 0;
}

static void pattern_free(route_pattern *p) {
    for (int i = 0; i < p->nseg; i++) free(p->segs[i]);
    p->nseg = 0;
}

static int pattern_matches(const route_pattern *p, const http_request *req) {
    if (p->nseg != req->nseg) return 0;
    for (int i = 0; i < p->nseg; i++) {
        if (p->segs[i][0] == '{') {
            if (req->seg[i][0] == '\0') return 0;
        } else if (strcmp(p->segs[i], req->seg[i]) != 0) {
            return 0;
        }
    }
    return 1;
}

static int method_matches(const char *route_method, const char *method) {
    return strcmp(route_method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

/* ------------------------------------------------------------------ replies */

json_t *http_error_body(const char *code, const char *message, const char *field) {
    return json_pack("{s:{s:s, s:s, s:s?}}", "error", "code", code, "message", message, "field",
                     field);
}

static void response_set(http_request *req, unsigned status, struct MHD_Response *resp) {
    if (req->resp) MHD_destroy_response(req->resp);
    req->resp = resp;
    req->status = status;
}

char *http_json_text(json_t *body, size_t *len) {
    if (!body) return NULL;
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) return NULL;
    size_t n = strlen(text);
    char *t = realloc(text, n + 2);
    if (!t) {
        free(text);
        return NULL;
    }
    t[n++] = '\n';
    t[n] = '\0';
    *len = n;
    return t;
}

int http_reply_json(http_request *req, unsigned status, json_t *body) {
    size_t len = 0;
    char *t = http_json_text(body, &len);
    if (!t) return -1;
    return http_reply_json_text(req, status, t, len);
}

int http_reply_json_text(http_request *req, unsigned status, char *text, size_t len) {
    if (!text) return -1;
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, text, free);
    if (!resp) {
        free(text);
        return -1;
    }
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES) {
        MHD_destroy_response(resp);
        return -1;
    }
    response_set(req, status, resp);
    return 0;
}

int http_reply_text(http_request *req, unsigned status, const char *content_type,
                    const char *text, size_t len) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!resp) return -1;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
        MHD_destroy_response(resp);
        return -1;
    }
    response_set(req, status, resp);
    return 0;
}

int http_reply_error(http_request *req, unsigned status, const char *code, const char *field,
                     const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* a message quoting client input may hold bytes jansson refuses: keep it ASCII */
    if (!utf8_valid((const unsigned char *)msg, strlen(msg)))
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p >= 0x80) *p = '?';
    return http_reply_json(req, status, http_error_body(code, msg, field));
}

int http_reply_stream(http_request *req, unsigned status, const char *content_type,
                      uint64_t size, MHD_ContentReaderCallback reader, void *cls,
                      MHD_ContentReaderFreeCallback free_cb) {
    struct MHD_Response *resp = MHD_create_response_from_callback(size, 16 * 1024, reader, cls,
                                                                  free_cb);
    if (!resp) return -1;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
        MHD_destroy_response(resp); /* calls free_cb */
        return -1;
    }
    response_set(req, status, resp);
    return 0;
}

int http_reply_header(http_request *req, const char *name, const char *value) {
    if (!req->resp) return -1;
    return MHD_add_response_header(req->resp, name, value) == MHD_YES ? 0 : -1;
}

/* Queue the response held by req (a 500 if there is none); the request is answered. */
static enum MHD_Result request_send(http_request *req) {
    if (!req->resp &&
        http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
                         "the request could not be answered") != 0) {
        /* out of memory even for the error: a static body */
        static const char body[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\","
                                   "\"field\":null}}\n";
        struct MHD_Response *r =
            MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        response_set(req, MHD_HTTP_INTERNAL_SERVER_ERROR, r);
    }
    req->responded = 1;
    enum MHD_Result ret = MHD_queue_response(req->conn, req->status, req->resp);
    MHD_destroy_response(req->resp);
    req->resp = NULL;
    return ret;
}

/* ------------------------------------------------------------------ request accessors */

http_server *http_request_server(http_request *req) { return req->srv; }
const char *http_request_method(const http_request *req) { return req->method; }
const char *http_request_path(const http_request *req) { return req->path; }

const http_route *http_request_route(const http_request *req) {
    return req->route >= 0 ? &req->srv->routes[req->route] : NULL;
}

const char *http_request_param(const http_request *req, const char *name) {
    if (req->route < 0) return NULL;
    const route_pattern *p = &req->srv->patterns[req->route];
    size_t n = strlen(name);
    for (int i = 0; i < p->nseg; i++) {
        const char *s = p->segs[i];
        if (s[0] == '{' && strncmp(s + 1, name, n) == 0 && s[n + 1] == '}' && s[n + 2] == '\0')
            return req->seg[i];
    }
    return NULL;
}

const char *http_request_query(const http_request *req, const char *key) {
    for (int i = 0; i < req->nq; i++)
        if (strcmp(req->qkey[i], key) == 0) return req->qval[i];
    return NULL;
}

const char *http_request_header(const http_request *req, const char *name) {
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

enum http_auth http_request_auth(const http_request *req, const char **token) {
    const char *h = http_request_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
    if (token) *token = NULL;
    if (!h) return HTTP_AUTH_NONE;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return HTTP_AUTH_MALFORMED;
    const char *t = h + 6;
    while (*t == ' ' || *t == '\t') t++;
    if (!*t) return HTTP_AUTH_MALFORMED;
    for (const char *p = t; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) return HTTP_AUTH_MALFORMED;
    if (token) *token = t;
    return HTTP_AUTH_BEARER;
}

const char *http_request_body(const http_request *req, size_t *len) {
    const http_route *r = http_request_route(req);
    if (r && r->body == HTTP_BODY_FILE) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = req->body_len;
    return req->body ? req->body : "";
}

const char *http_request_body_file(const http_request *req, size_t *len) {
    if (len) *len = req->file_path ? req->body_len : 0;
    return req->file_path;
}

void http_request_body_file_keep(http_request *req) { req->keep_file = 1; }

json_t *http_request_json(http_request *req) {
    size_t len;
    const char *body = http_request_body(req, &len);
    if (!body) {
        http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
                         "this route streams its body to a file; it has no JSON body");
        return NULL;
    }
    size_t i = 0;
    while (i < len && isspace((unsigned char)body[i])) i++;
    if (i == len) {
        http_reply_error(req, MHD_HTTP_BAD_REQUEST, "bad_json", NULL,
                         "the request body is empty: a JSON object is expected");
        return NULL;
    }
    json_error_t e;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        http_reply_error(req, MHD_HTTP_BAD_REQUEST, "bad_json", NULL,
                         "malformed JSON: %s at line %d column %d (byte %d)", e.text, e.line,
                         e.column, e.position);
        return NULL;
    }
    if (!json_is_object(j)) {
        static const char *names[] = {"an object", "an array", "a string", "an integer",
                                      "a number", "true", "false", "null"};
        json_type t = json_typeof(j);
        json_decref(j);
        http_reply_error(req, MHD_HTTP_BAD_REQUEST, "bad_json", NULL,
                         "the request body must be a JSON object, got %s",
                         (unsigned)t < 8 ? names[t] : "another value");
        return NULL;
    }
    return j;
}

/* ------------------------------------------------------------------ request life cycle */

static void request_free(http_request *req) {
    if (!req) return;
    if (req->on_free) req->on_free(req->on_free_arg);
    if (req->resp) MHD_destroy_response(req->resp);
    if (req->fd >= 0) close(req->fd);
    if (req->file_path && !req->keep_file) unlink(req->file_path);
    free(req->file_path);
    free(req->body);
    for (int i = 0; i < req->nq; i++) {
        free(req->qkey[i]);
        free(req->qval[i]);
    }
    free(req->segbuf);
    free(req->method);
    free(req->path);
    free(req);
}

/* Route req (path already split). Returns the route index, or -1 after setting a 404 / 405
 * response. */
static int request_route(http_request *req) {
    http_server *s = req->srv;
    char allow[256] = "";
    size_t used = 0;
    int path_known = 0;
    for (size_t i = 0; i < s->n_routes; i++) {
        if (!pattern_matches(&s->patterns[i], req)) continue;
        path_known = 1;
        if (method_matches(s->routes[i].method, req->method)) return (int)i;
        const char *m = s->routes[i].method;
        if (!strstr(allow, m) && used + strlen(m) + 12 < sizeof allow) {
            used += (size_t)snprintf(allow + used, sizeof allow - used, "%s%s", used ? ", " : "", m);
            if (strcmp(m, "GET") == 0)
                used += (size_t)snprintf(allow + used, sizeof allow - used, ", HEAD");
        }
    }
    if (!path_known) {
        http_reply_error(req, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no such resource: %s",
                         req->path);
    } else if (http_reply_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", NULL,
                                "%s is not allowed on %s (allowed: %s)", req->method, req->path,
                                allow) == 0) {
        http_reply_header(req, MHD_HTTP_HEADER_ALLOW, allow);
    }
    return -1;
}

struct length_scan {
    int n;              /* Content-Length headers seen */
    int differ;         /* two of them disagree */
    const char *first;
};

static enum MHD_Result length_collect(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value) {
    struct length_scan *ls = cls;
    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) != 0) return MHD_YES;
    if (ls->n++ == 0) ls->first = value ? value : "";
    else if (strcmp(ls->first, value ? value : "") != 0) ls->differ = 1;
    return MHD_YES;
}

/* Validate, route, decode the query and check Content-Length. Returns 0 when the request goes
 * on to its body and handler, -1 when a response is already set. */
static int request_prepare(http_request *req) {
    char msg[256];
    int r = path_split(req, msg, sizeof msg);
    if (r < 0) {
        http_reply_error(req, MHD_HTTP_BAD_REQUEST, "bad_path", NULL, "%s", msg);
        return -1;
    }
    if (r > 0) {
        http_reply_error(req, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no such resource");
        return -1;
    }
    req->route = request_route(req);
    if (req->route < 0) return -1;
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_collect, req);
    if (req->query_bad) {
        if (req->query_bad == 2)
            http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "%s",
                             req->query_msg);
        else
            http_reply_error(req, MHD_HTTP_BAD_REQUEST, "bad_query", NULL, "%s", req->query_msg);
        return -1;
    }
    const http_route *route = &req->srv->routes[req->route];
    req->body_limit = route->body_max ? route->body_max
                      : route->body == HTTP_BODY_FILE ? req->srv->opt.upload_max
                                                      : req->srv->opt.body_max;
    /* Content-Length. A value that is not a number (`abc`, `-1`) or too large for MHD never
     * reaches this point: libmicrohttpd 0.9.75 parses the header itself, before it calls the
     * access handler, and answers 400 (or 413) with its built-in HTML page
     * (transmit_error_response in connection.c), with no option or callback to replace that
     * body. Two Content-Length headers that disagree do reach us (MHD reads the body by the
     * first one): a request-smuggling shape (RFC 9112 section 6.3), refused here and the
     * connection closed, since where its body ends is unknown. Equal repeats are accepted. */
    struct length_scan ls = {0, 0, NULL};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, length_collect, &ls);
    if (ls.differ) {
        if (http_reply_error(req, MHD_HTTP_BAD_REQUEST, "bad_header", "Content-Length",
                             "%d Content-Length headers with different values", ls.n) == 0)
            http_reply_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
        return -1;
    }
    const char *cl = http_request_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == ERANGE || n > req->body_limit) {
            http_reply_error(req, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large", NULL,
                             "the request body (%s bytes) exceeds the %zu-byte limit of %s %s",
                             cl, req->body_limit, route->method, route->pattern);
            return -1;
        }
    }
    if (route->before_body) {
        if (route->before_body(req, req->srv->app) != 0 && !req->resp)
            http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
                             "internal error while checking %s %s", req->method, req->path);
        if (req->resp) return -1;
    }
    return 0;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void request_body_append(http_request *req, const char *data, size_t n) {
    if (req->too_large || req->io_error) return;
    if (n > req->body_limit - req->body_len) {
        req->too_large = 1;
        return;
    }
    const http_route *route = &req->srv->routes[req->route];
    if (route->body == HTTP_BODY_FILE) {
        if (req->fd < 0) {
            size_t pl = strlen(req->srv->tmp_dir) + sizeof "/upload-XXXXXX";
            req->file_path = malloc(pl);
            if (!req->file_path) {
                req->io_error = 1;
                return;
            }
            snprintf(req->file_path, pl, "%s/upload-XXXXXX", req->srv->tmp_dir);
            req->fd = mkostemp(req->file_path, O_CLOEXEC);
            if (req->fd < 0) {
                fprintf(stderr, "prunelabd: cannot create an upload file in %s: %s\n",
                        req->srv->tmp_dir, strerror(errno));
                free(req->file_path);
                req->file_path = NULL;
                req->io_error = 1;
                return;
            }
        }
        if (write_all(req->fd, data, n) != 0) {
            fprintf(stderr, "prunelabd: writing %s: %s\n", req->file_path, strerror(errno));
            req->io_error = 1;
            return;
        }
        req->body_len += n;
        return;
    }
    if (req->body_len + n + 1 > req->body_alloc) {
        size_t cap = req->body_alloc ? req->body_alloc : 4096;
        while (cap < req->body_len + n + 1) cap *= 2;
        if (cap > req->body_limit + 1) cap = req->body_limit + 1;
        char *b = realloc(req->body, cap);
        if (!b) {
            req->io_error = 1;
            return;
        }
        req->body = b;
        req->body_alloc = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    req->body[req->body_len] = '\0';
}

/* The body is complete: answer it. */
static void request_run(http_request *req) {
    const http_route *route = &req->srv->routes[req->route];
    if (req->too_large) {
        http_reply_error(req, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large", NULL,
                         "the request body exceeds the %zu-byte limit of %s %s", req->body_limit,
                         route->method, route->pattern);
        return;
    }
    if (req->fd >= 0) {
        if (fsync(req->fd) != 0) req->io_error = 1;
        if (close(req->fd) != 0) req->io_error = 1;
        req->fd = -1;
    }
    if (req->io_error) {
        http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
                         "the request body could not be stored");
        return;
    }
    if (route->handler(req, req->srv->app) != 0 || !req->resp) {
        fprintf(stderr, "prunelabd: handler of %s %s failed without a response\n", route->method,
                route->pattern);
        http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
                         "internal error while answering %s %s", req->method, req->path);
    }
}

/* ------------------------------------------------------------------ slow clients
 *
 * Every connection has a slot in s->conns (registered by MHD_CONNECTION_NOTIFY_STARTED on the
 * accepting thread, cleared by MHD_CONNECTION_NOTIFY_CLOSED before MHD closes the socket) with
 * its address, socket and phase:
 *   CONN_PENDING  headers not complete: just accepted, or idle after a response (keep-alive)
 *   CONN_BODY     headers in, body being received (bytes counted)
 *   CONN_ANSWER   the handler runs or the response is being sent (no deadline here)
 * Policy, applied in on_accept (MHD's accept policy callback, same thread as STARTED, so a
 * decision and the registration it leads to never interleave with another accept):
 *   - pending connections are capped at pending_cap (max_connections minus a reserve), and at
 *     pending_ip_cap per address; all connections at max_connections and per_ip_cap per address.
 *   - when a cap is reached and a pending connection counts against it, the oldest such is
 *     closed (shutdown) and the new one admitted: a new connection has sent nothing yet, while
 *     the oldest unfinished one has had the longest time to send its headers and has not, so it
 *     is the best evidence of a slow client. A /healthz whose headers arrive at once therefore
 *     always gets in and leaves the pending pool within a round trip. When no pending one
 *     counts against the full cap (every connection is being answered), the new one is refused.
 * A reaper thread closes pending connections past header_timeout_s and bodies averaging under
 * body_min_rate once header_timeout_s has passed. It and on_accept call shutdown() only on a
 * slot still registered, under conn_lock, which the CLOSED notification also takes: a socket
 * number reused after close is never touched. A closed slot stays counted until CLOSED, but
 * not against the caps (`closing`), so MHD's own limit is set above max_connections by a slack
 * that absorbs connections being torn down.
 * Refusals, evictions and MHD's own messages are logged at most once a second per kind, with
 * the count of the ones suppressed (the reaper prints the counts left over). */

enum conn_phase { CONN_PENDING = 0, CONN_BODY, CONN_ANSWER };

struct conn_slot {
    int used, closing;
    int fd;
    struct MHD_Connection *conn;
    int family;                 /* AF_INET / AF_INET6, 0 = unknown (not counted per address) */
    unsigned char addr[16];
    enum conn_phase phase;
    double since;               /* start of the phase */
    uint64_t body_bytes;        /* in CONN_BODY */
};

/* Rate-limited log kinds; MHD's messages get buckets keyed by their format string. */
enum glog_kind {
    GLOG_REFUSE_TOTAL = 0,
    GLOG_REFUSE_IP,
    GLOG_EVICT_POOL,
    GLOG_EVICT_IP,
    GLOG_HEADER_TIMEOUT,
    GLOG_SLOW_BODY,
    GLOG_KIND_COUNT
};
#define GLOG_MHD_BUCKETS 16
#define GLOG_BUCKETS (GLOG_KIND_COUNT + GLOG_MHD_BUCKETS + 1) /* + 1 for other MHD messages */

struct glog_bucket {
    const char *key;            /* MHD format string; NULL for our kinds */
    double last;                /* when a line was last printed */
    uint64_t suppressed;        /* events since then not printed */
    char msg[256];              /* the last suppressed event */
};

static void addr_text(int family, const unsigned char *a, char *out, size_t n) {
    if (family == AF_INET6) inet_ntop(AF_INET6, a, out, (socklen_t)n);
    else if (family == AF_INET) inet_ntop(AF_INET, a, out, (socklen_t)n);
    else snprintf(out, n, "-");
}

static void addr_key(const struct sockaddr *sa, int *family, unsigned char *a) {
    memset(a, 0, 16);
    *family = 0;
    if (!sa) return;
    if (sa->sa_family == AF_INET) {
        *family = AF_INET;
        memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        *family = AF_INET6;
        memcpy(a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

/* Print "prunelabd: http: MSG" unless a line of this bucket was printed less than a second ago;
 * then count it (the next printed line, or glog_flush, reports the count). */
static void glog_emit(http_server *s, struct glog_bucket *b, const char *msg) {
    double now = now_s();
    pthread_mutex_lock(&s->log_lock);
    if (b->last == 0 || now - b->last >= 1.0) {
        if (b->suppressed)
            fprintf(stderr, "prunelabd: http: %s (and %llu more like it in the last %.1f s)\n",
                    msg, (unsigned long long)b->suppressed, now - b->last);
        else
            fprintf(stderr, "prunelabd: http: %s\n", msg);
        b->last = now;
        b->suppressed = 0;
    } else {
        b->suppressed++;
        snprintf(b->msg, sizeof b->msg, "%s", msg);
    }
    pthread_mutex_unlock(&s->log_lock);
}

__attribute__((format(printf, 3, 4))) static void glog(http_server *s, enum glog_kind k,
                                                       const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    glog_emit(s, &s->glog[k], msg);
}

/* Report the events suppressed more than a second ago that no later line reported. */
static void glog_flush(http_server *s) {
    double now = now_s();
    pthread_mutex_lock(&s->log_lock);
    for (size_t i = 0; i < GLOG_BUCKETS; i++) {
        struct glog_bucket *b = &s->glog[i];
        if (!b->suppressed || now - b->last < 1.0) continue;
        fprintf(stderr, "prunelabd: http: %llu more in the last %.1f s like: %s\n",
                (unsigned long long)b->suppressed, now - b->last, b->msg);
        b->last = now;
        b->suppressed = 0;
    }
    pthread_mutex_unlock(&s->log_lock);
}

/* Close a registered connection (conn_lock held): its thread sees the end of the stream and
 * MHD closes it; the slot goes on CLOSED. */
static void conn_shut(struct conn_slot *c) {
    shutdown(c->fd, SHUT_RDWR);
    c->closing = 1;
}

static enum MHD_Result on_accept(void *cls, const struct sockaddr *sa, socklen_t salen) {
    http_server *s = cls;
    int family;
    unsigned char a[16];
    (void)salen;
    addr_key(sa, &family, a);
    int total = 0, pending = 0, ip_total = 0, ip_pending = 0;
    struct conn_slot *oldest = NULL, *oldest_ip = NULL;
    pthread_mutex_lock(&s->conn_lock);
    for (size_t i = 0; i < s->n_conns; i++) {
        struct conn_slot *c = &s->conns[i];
        if (!c->used || c->closing) continue;
        int same = family && c->family == family && memcmp(c->addr, a, 16) == 0;
        total++;
        ip_total += same;
        if (c->phase != CONN_PENDING) continue;
        pending++;
        if (!oldest || c->since < oldest->since) oldest = c;
        if (same) {
            ip_pending++;
            if (!oldest_ip || c->since < oldest_ip->since) oldest_ip = c;
        }
    }
    struct conn_slot *evict = NULL;
    enum glog_kind why = GLOG_REFUSE_TOTAL;
    int cap = 0, refuse = 0;
    if (family && s->per_ip_cap && ip_total >= s->per_ip_cap) {
        cap = s->per_ip_cap;
        if (oldest_ip) evict = oldest_ip, why = GLOG_EVICT_IP;
        else refuse = 1, why = GLOG_REFUSE_IP;
    } else if (family && s->pending_ip_cap && ip_pending >= s->pending_ip_cap) {
        cap = s->pending_ip_cap;
        evict = oldest_ip, why = GLOG_EVICT_IP;
    } else if (total >= s->total_cap) {
        cap = s->total_cap;
        if (oldest) evict = oldest, why = GLOG_EVICT_POOL;
        else refuse = 1, why = GLOG_REFUSE_TOTAL;
    } else if (pending >= s->pending_cap) {
        cap = s->pending_cap;
        evict = oldest, why = GLOG_EVICT_POOL;
    }
    char ip[INET6_ADDRSTRLEN], old_ip[INET6_ADDRSTRLEN] = "-";
    double age = 0;
    if (evict) {
        addr_text(evict->family, evict->addr, old_ip, sizeof old_ip);
        age = now_s() - evict->since;
        conn_shut(evict);
    }
    pthread_mutex_unlock(&s->conn_lock);
    addr_text(family, a, ip, sizeof ip);
    switch (why) {
    case GLOG_REFUSE_IP:
        if (refuse)
            glog(s, why, "refused a connection from %s: max_connections_per_ip (%d) reached, all "
                 "of them being answered", ip, cap);
        break;
    case GLOG_REFUSE_TOTAL:
        if (refuse)
            glog(s, why, "refused a connection from %s: max_connections (%d) reached, all of "
                 "them being answered", ip, cap);
        break;
    case GLOG_EVICT_IP:
        glog(s, why, "closed a connection from %s that had not completed its request headers in "
             "%.1f s, to admit a new one (per-address cap of %d reached)", old_ip, age, cap);
        break;
    case GLOG_EVICT_POOL:
        glog(s, why, "closed a connection from %s that had not completed its request headers in "
             "%.1f s, to admit one from %s (cap of %d reached)", old_ip, age, ip, cap);
        break;
    default:
        break;
    }
    return refuse ? MHD_NO : MHD_YES;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    http_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct conn_slot *c = *socket_context;
        if (!c) return;
        pthread_mutex_lock(&s->conn_lock);
        memset(c, 0, sizeof *c);
        c->fd = -1;
        pthread_mutex_unlock(&s->conn_lock);
        *socket_context = NULL;
        return;
    }
    if (code != MHD_CONNECTION_NOTIFY_STARTED) return;
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *ai =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    *socket_context = NULL;
    if (!fi) return;
    pthread_mutex_lock(&s->conn_lock);
    for (size_t i = 0; i < s->n_conns; i++) {
        struct conn_slot *c = &s->conns[i];
        if (c->used) continue;
        c->used = 1;
        c->closing = 0;
        c->fd = fi->connect_fd;
        c->conn = conn;
        addr_key(ai ? ai->client_addr : NULL, &c->family, c->addr);
        c->phase = CONN_PENDING;
        c->since = now_s();
        c->body_bytes = 0;
        *socket_context = c;
        break;
    }
    pthread_mutex_unlock(&s->conn_lock);
}

/* The slot of req's connection, or NULL (none free at STARTED: not tracked). */
static struct conn_slot *conn_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void conn_phase_set(http_server *s, struct conn_slot *c, struct MHD_Connection *conn,
                           enum conn_phase phase) {
    if (!c) return;
    pthread_mutex_lock(&s->conn_lock);
    if (c->used && c->conn == conn) {
        c->phase = phase;
        c->since = now_s();
        c->body_bytes = 0;
    }
    pthread_mutex_unlock(&s->conn_lock);
}

static void conn_body_count(http_server *s, struct conn_slot *c, size_t n) {
    if (!c) return;
    pthread_mutex_lock(&s->conn_lock);
    c->body_bytes += n;
    pthread_mutex_unlock(&s->conn_lock);
}

static void *reaper_main(void *arg) {
    http_server *s = arg;
    pthread_mutex_lock(&s->conn_lock);
    while (!s->reaper_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 200 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->reaper_cond, &s->conn_lock, &ts);
        if (s->reaper_stop) break;
        double now = now_s(), limit = (double)s->header_timeout_s;
        for (size_t i = 0; i < s->n_conns; i++) {
            struct conn_slot *c = &s->conns[i];
            if (!c->used || c->closing) continue;
            double age = now - c->since;
            if (age <= limit) continue;
            char ip[INET6_ADDRSTRLEN];
            addr_text(c->family, c->addr, ip, sizeof ip);
            if (c->phase == CONN_PENDING) {
                conn_shut(c);
                glog(s, GLOG_HEADER_TIMEOUT, "closed a connection from %s: no complete request "
                     "headers within header_timeout (%d s)", ip, s->header_timeout_s);
            } else if (c->phase == CONN_BODY && s->body_min_rate &&
                       (double)c->body_bytes < (double)s->body_min_rate * age) {
                conn_shut(c);
                glog(s, GLOG_SLOW_BODY, "closed a connection from %s: its request body came at "
                     "%.0f bytes/s, under body_min_rate (%zu)", ip, (double)c->body_bytes / age,
                     s->body_min_rate);
            }
        }
        pthread_mutex_unlock(&s->conn_lock);
        glog_flush(s);
        pthread_mutex_lock(&s->conn_lock);
    }
    pthread_mutex_unlock(&s->conn_lock);
    return NULL;
}

static void reaper_stop(http_server *s) {
    if (!s->reaper_started) return;
    pthread_mutex_lock(&s->conn_lock);
    s->reaper_stop = 1;
    pthread_cond_signal(&s->reaper_cond);
    pthread_mutex_unlock(&s->conn_lock);
    pthread_join(s->reaper, NULL);
    s->reaper_started = 0;
    glog_flush(s);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **req_cls) {
    http_server *s = cls;
    http_request *req = *req_cls;
    (void)version;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req) return MHD_NO;
        req->t0 = now_s();
        req->srv = s;
        req->conn = conn;
        req->fd = -1;
        req->route = -1;
        req->method = strdup(method);
        req->path = strdup(url);
        *req_cls = req;
        __atomic_fetch_add(&s->in_flight, 1, __ATOMIC_RELAXED);
        req->slot = conn_of(conn);
        conn_phase_set(s, req->slot, conn, CONN_BODY);
        if (!req->method || !req->path) return MHD_NO;
        if (request_prepare(req) != 0) {
            conn_phase_set(s, req->slot, conn, CONN_ANSWER);
            return request_send(req);
        }
        return MHD_YES;
    }
    if (req->responded) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        conn_body_count(s, req->slot, *upload_data_size);
        request_body_append(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    conn_phase_set(s, req->slot, conn, CONN_ANSWER);
    request_run(req);
    return request_send(req);
}

static void access_log(http_request *req, double ms, enum MHD_RequestTerminationCode toe) {
    char ip[INET6_ADDRSTRLEN] = "-";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
    }
    /* the path is client text: escape anything that could forge a log line */
    char path[512];
    size_t o = 0;
    for (const char *p = req->path ? req->path : "-"; *p && o + 5 < sizeof path; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            o += (size_t)snprintf(path + o, sizeof path - o, "\\x%02x", c);
        else
            path[o++] = (char)c;
    }
    path[o] = '\0';
    const char *why = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? ""
                      : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? " (timeout)"
                      : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT ? " (client closed)"
                      : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? " (shutdown)"
                                                                      : " (aborted)";
    char status[12] = "-";
    if (req->status) snprintf(status, sizeof status, "%u", req->status);
    fprintf(stderr, "prunelabd: %s %s %s %s %.2f ms%s\n", ip, req->method ? req->method : "-",
            path, status, ms, why);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    http_server *s = cls;
    http_request *req = *req_cls;
    if (!req) return;
    double secs = now_s() - req->t0;
    if (req->status >= CODE_MIN && req->status <= CODE_MAX && req->responded) {
        route_stats *st = &s->stats[req->route >= 0 ? (size_t)req->route : s->n_routes];
        size_t b = 0;
        while (b < N_BOUNDS && secs > latency_bounds[b]) b++;
        __atomic_fetch_add(&st->codes[req->status - CODE_MIN], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&st->buckets[b], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&st->sum_us, (uint64_t)(secs * 1e6), __ATOMIC_RELAXED);
        __atomic_fetch_add(&st->count, 1, __ATOMIC_RELAXED);
    }
    if (s->opt.log_requests) access_log(req, secs * 1e3, toe);
    /* a kept-alive connection now waits for its next request's headers */
    conn_phase_set(s, req->slot, conn, CONN_PENDING);
    __atomic_fetch_sub(&s->in_flight, 1, __ATOMIC_RELAXED);
    request_free(req);
    *req_cls = NULL;
}

/* MHD's messages (e.g. "Server reached connection limit") are rate-limited per format string,
 * like the guard's own lines. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    http_server *s = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = '\0';
    struct glog_bucket *b = &s->glog[GLOG_BUCKETS - 1];
    pthread_mutex_lock(&s->log_lock);
    for (size_t i = GLOG_KIND_COUNT; i < GLOG_BUCKETS - 1; i++) {
        if (s->glog[i].key == fmt || !s->glog[i].key) {
            s->glog[i].key = fmt;
            b = &s->glog[i];
            break;
        }
    }
    pthread_mutex_unlock(&s->log_lock);
    glog_emit(s, b, msg);
}

/* ------------------------------------------------------------------ metrics */

static void label_write(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') fputc('\\', f);
        if (*s == '\n') {
            fputs("\\n", f);
            continue;
        }
        fputc(*s, f);
    }
}

static void route_labels(FILE *f, const http_server *s, size_t i) {
    fputs("method=\"", f);
    label_write(f, i < s->n_routes ? s->routes[i].method : "any");
    fputs("\",route=\"", f);
    label_write(f, i < s->n_routes ? s->routes[i].pattern : "unmatched");
    fputc('"', f);
}

int http_server_metrics_write(http_server *s, FILE *f) {
    fputs("# HELP prunelabd_http_requests_total HTTP requests answered, by route and status.\n"
          "# TYPE prunelabd_http_requests_total counter\n", f);
    for (size_t i = 0; i <= s->n_routes; i++) {
        route_stats *st = &s->stats[i];
        for (int c = CODE_MIN; c <= CODE_MAX; c++) {
            uint64_t n = __atomic_load_n(&st->codes[c - CODE_MIN], __ATOMIC_RELAXED);
            if (!n) continue;
            fputs("prunelabd_http_requests_total{", f);
            route_labels(f, s, i);
            fprintf(f, ",code=\"%d\"} %llu\n", c, (unsigned long long)n);
        }
    }
    fputs("# HELP prunelabd_http_request_duration_seconds Time from request line to response "
          "sent.\n"
          "# TYPE prunelabd_http_request_duration_seconds histogram\n", f);
    for (size_t i = 0; i <= s->n_routes; i++) {
        route_stats *st = &s->stats[i];
        uint64_t count = __atomic_load_n(&st->count, __ATOMIC_RELAXED);
        if (!count) continue;
        uint64_t cum = 0;
        for (size_t b = 0; b <= N_BOUNDS; b++) {
            cum += __atomic_load_n(&st->buckets[b], __ATOMIC_RELAXED);
            fputs("prunelabd_http_request_duration_seconds_bucket{", f);
            route_labels(f, s, i);
            if (b < N_BOUNDS)
                fprintf(f, ",le=\"%g\"} %llu\n", latency_bounds[b], (unsigned long long)cum);
            else
                fprintf(f, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        fputs("prunelabd_http_request_duration_seconds_sum{", f);
        route_labels(f, s, i);
        fprintf(f, "} %.6f\n", 1e-6 * (double)__atomic_load_n(&st->sum_us, __ATOMIC_RELAXED));
        fputs("prunelabd_http_request_duration_seconds_count{", f);
        route_labels(f, s, i);
        /* the buckets were read one by one: report their total so the series stays consistent */
        fprintf(f, "} %llu\n", (unsigned long long)cum);
    }
    fprintf(f,
            "# HELP prunelabd_http_requests_in_flight Requests being received or answered.\n"
            "# TYPE prunelabd_http_requests_in_flight gauge\n"
            "prunelabd_http_requests_in_flight %lld\n",
            (long long)__atomic_load_n(&s->in_flight, __ATOMIC_RELAXED));
    return ferror(f) ? -1 : 0;
}

/* ------------------------------------------------------------------ server */

static void addr_format(char *out, size_t n, const char *host, int port) {
    if (strchr(host, ':')) snprintf(out, n, "[%s]:%d", host, port);
    else snprintf(out, n, "%s:%d", host, port);
}

/* Open, bind and listen. Returns the socket, or -1 with err. *family gets the address family. */
static int listen_open(const char *host, int port, int *family, char *err, size_t errlen) {
    char where[300], portstr[16];
    addr_format(where, sizeof where, host, port);
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int g = getaddrinfo(host, portstr, &hints, &res);
    if (g != 0) return errbuf_set(err, errlen, "cannot listen on %s: %s", where, gai_strerror(g));
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        /* SO_REUSEADDR lets a restarted daemon bind past TIME_WAIT; on Linux it never lets two
         * listeners share a port */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
            *family = ai->ai_family;
            break;
        }
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        const char *hint = saved == EADDRINUSE
                               ? " (another process, perhaps another prunelabd, holds the port; "
                                 "pick another with --listen HOST:PORT)"
                           : saved == EACCES ? " (ports below 1024 need privileges)"
                           : saved == EADDRNOTAVAIL ? " (no such local address)"
                                                    : "";
        return errbuf_set(err, errlen, "cannot listen on %s: %s%s", where, strerror(saved), hint);
    }
    return fd;
}

static void server_release(http_server *s) {
    if (!s) return;
    if (s->patterns)
        for (size_t i = 0; i < s->n_routes; i++) pattern_free(&s->patterns[i]);
    free(s->patterns);
    free(s->routes);
    free(s->stats);
    free(s->host);
    free(s->tmp_dir);
    free(s->conns);
    free(s->glog);
    if (s->locks_ready) {
        pthread_mutex_destroy(&s->conn_lock);
        pthread_mutex_destroy(&s->log_lock);
        pthread_cond_destroy(&s->reaper_cond);
    }
    free(s);
}

/* Caps from the options (0 = derived, see http.h) and the locks, slots and log buckets. */
static int guard_init(http_server *s, const http_options *opt, char *err, size_t errlen) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->conn_lock, NULL);
    pthread_mutex_init(&s->log_lock, NULL);
    pthread_cond_init(&s->reaper_cond, &ca);
    pthread_condattr_destroy(&ca);
    s->locks_ready = 1;
    s->total_cap = opt->max_connections > 0 ? opt->max_connections : 1;
    s->per_ip_cap = opt->max_connections_per_ip > 0 ? opt->max_connections_per_ip : 0;
    s->pending_cap = opt->max_pending_connections > 0 ? opt->max_pending_connections
                                                      : s->total_cap - s->total_cap / 4;
    if (s->pending_cap > s->total_cap) s->pending_cap = s->total_cap;
    s->pending_ip_cap = opt->max_pending_per_ip > 0 ? opt->max_pending_per_ip
                        : s->per_ip_cap ? (s->per_ip_cap + 1) / 2 : 0;
    if (s->per_ip_cap && s->pending_ip_cap > s->per_ip_cap) s->pending_ip_cap = s->per_ip_cap;
    s->header_timeout_s = opt->header_timeout_s > 0 ? opt->header_timeout_s
                                                    : opt->connection_timeout_s;
    s->body_min_rate = opt->body_min_rate;
    /* room for the connections being torn down after a shutdown (see the section comment) */
    s->n_conns = (size_t)s->total_cap + (size_t)s->total_cap / 4 + 8;
    s->conns = calloc(s->n_conns, sizeof *s->conns);
    s->glog = calloc(GLOG_BUCKETS, sizeof *s->glog);
    if (!s->conns || !s->glog) return errbuf_set(err, errlen, "out of memory");
    for (size_t i = 0; i < s->n_conns; i++) s->conns[i].fd = -1;
    return 0;
}

int http_server_start(http_server **out, const http_options *opt, const http_route *routes,
                      size_t n_routes, void *app, char *err, size_t errlen) {
    int rc = -1, fd = -1, family = AF_INET;
    *out = NULL;
    http_server *s = calloc(1, sizeof *s);
    if (!s) return errbuf_set(err, errlen, "out of memory");
    s->opt = *opt;
    s->app = app;
    s->n_routes = n_routes;
    s->host = strdup(opt->host ? opt->host : "127.0.0.1");
    s->tmp_dir = strdup(opt->tmp_dir ? opt->tmp_dir : "/tmp");
    s->routes = calloc(n_routes ? n_routes : 1, sizeof *s->routes);
    s->patterns = calloc(n_routes ? n_routes : 1, sizeof *s->patterns);
    s->stats = calloc(n_routes + 1, sizeof *s->stats);
    if (!s->host || !s->tmp_dir || !s->routes || !s->patterns || !s->stats) {
        errbuf_set(err, errlen, "out of memory");
        goto cleanup;
    }
    s->opt.host = s->host;
    s->opt.tmp_dir = s->tmp_dir;
    if (guard_init(s, opt, err, errlen) != 0) goto cleanup;
    for (size_t i = 0; i < n_routes; i++) {
        s->routes[i] = routes[i];
        if (!routes[i].method || !routes[i].method[0] || !routes[i].handler) {
            errbuf_set(err, errlen, "route %zu (%s): method and handler are required", i,
                    routes[i].pattern ? routes[i].pattern : "?");
            goto cleanup;
        }
        if (pattern_compile(routes[i].pattern, &s->patterns[i], err, errlen) != 0) goto cleanup;
    }
    fd = listen_open(s->host, opt->port, &family, err, errlen);
    if (fd < 0) goto cleanup;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (family == AF_INET6) flags |= MHD_USE_IPv6;
    /* The caps live in on_accept; MHD's own limit is the slot count (max_connections plus the
     * slack for connections being closed) and it has no per-address limit of its own. */
    s->mhd = MHD_start_daemon(
        flags, 0, on_accept, s, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)s->n_conns,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)opt->connection_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, s, MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, s, MHD_OPTION_END);
    if (!s->mhd) {
        char where[300];
        addr_format(where, sizeof where, s->host, opt->port);
        errbuf_set(err, errlen, "cannot start the HTTP server on %s (libmicrohttpd refused; see "
                             "the message above)", where);
        goto cleanup;
    }
    fd = -1; /* MHD owns it now */
    if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0) {
        errbuf_set(err, errlen, "cannot start the connection reaper thread");
        MHD_stop_daemon(s->mhd);
        goto cleanup;
    }
    s->reaper_started = 1;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : 0;
    if (!s->port) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        const union MHD_DaemonInfo *li = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_LISTEN_FD);
        if (li && getsockname(li->listen_fd, (struct sockaddr *)&ss, &sl) == 0)
            s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    }
    *out = s;
    rc = 0;
cleanup:
    if (fd >= 0) close(fd);
    if (rc != 0) server_release(s);
    return rc;
}

int http_server_port(const http_server *s) { return s->port; }

void http_server_quiesce(http_server *s) {
    if (!s) return;
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELAXED);
    if (s->quiesced) return;
    MHD_socket fd = MHD_quiesce_daemon(s->mhd);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    s->quiesced = 1;
}

bool http_server_stopping(const http_server *s) {
    return __atomic_load_n(&s->stopping, __ATOMIC_RELAXED) != 0;
}

int http_server_drain(http_server *s, double timeout_s) {
    double end = now_s() + timeout_s;
    int64_t n;
    while ((n = __atomic_load_n(&s->in_flight, __ATOMIC_RELAXED)) > 0 && now_s() < end) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return (int)n;
}

void http_server_free(http_server *s) {
    if (!s) return;
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELAXED);
    reaper_stop(s);
    MHD_stop_daemon(s->mhd);
    server_release(s);
}

const http_route *http_server_routes(const http_server *s, size_t *n) {
    *n = s->n_routes;
    return s->routes;
}

void http_request_on_free(http_request *req, void (*fn)(void *), void *arg) {
    req->on_free = fn;
    req->on_free_arg = arg;
}
