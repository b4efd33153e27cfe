/* http.h — prunelabd's HTTP layer: libmicrohttpd setup, a route table, body limits, JSON
 * helpers, per-route metrics and the access log.
 *
 * A handler receives a request whose path is already validated and routed, whose body is
 * complete (in memory, or in a temp file for routes that declare HTTP_BODY_FILE), and answers
 * by calling exactly one http_reply_* function, then returning 0. A handler that returns -1 or
 * sets no response gets a 500 JSON error. Handlers run on the connection's own thread
 * (thread-per-connection), so they may block (long-poll) without stalling other clients.
 *
 * Error bodies everywhere are {"error": {"code": C, "message": M, "field": F-or-null}}.
 * Codes produced here: bad_path, bad_query, bad_json, bad_header, not_found,
 * method_not_allowed, body_too_large, internal. */
#ifndef PL_SERVER_HTTP_H
#define PL_SERVER_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define HTTP_ERRLEN 512
#define HTTP_MAX_SEGMENTS 32 /* path segments; deeper paths answer 404 */
#define HTTP_MAX_QUERY 64    /* query arguments; more answer 400 */

typedef struct http_server http_server;
typedef struct http_request http_request;

/* Returns 0 after calling one http_reply_*, or -1 (the dispatcher answers 500). app is the
 * pointer given to http_server_start (prunelabd's `struct daemon`). */
typedef int (*http_handler_fn)(http_request *req, void *app);

enum http_body_mode {
    HTTP_BODY_MEMORY = 0, /* accumulated in memory up to body_max (default: server body_max) */
    HTTP_BODY_FILE,       /* streamed to a temp file under tmp_dir, up to body_max (default:
                             server upload_max), fsync'ed before the handler runs */
};

/* One row of the route table. Patterns are literal segments and {name} segments; a {name}
 * matches one non-empty segment, available decoded via http_request_param. The first row
 * whose method and pattern match wins, so list literal rows before {name} rows that overlap.
 * A GET row also answers HEAD. */
typedef struct {
    const char *method;        /* "GET", "POST", "PUT", "DELETE", ... */
    const char *pattern;       /* "/api/v1/jobs/{id}" */
    http_handler_fn handler;
    enum http_body_mode body;
    size_t body_max;           /* 0 = the server default for the mode */
    const char *summary;       /* one line, for the OpenAPI document */
    /* Optional: runs when the headers are in, before any byte of the body is read. It either
     * returns 0 without replying (the body is then read and `handler` runs) or replies (then the
     * request ends there: no body is read or stored, and a client that sent
     * `Expect: 100-continue` never sends it). For uploads: auth, name, conflict, size. */
    http_handler_fn before_body;
} http_route;

typedef struct {
    const char *host;          /* numeric address or name; "127.0.0.1" */
    int port;                  /* 0 = any free port; see http_server_port */
    int max_connections;       /* simultaneous connections (see "Slow clients" in http.c) */
    int max_connections_per_ip;/* from one address, 0 = none */
    int connection_timeout_s;  /* MHD_OPTION_CONNECTION_TIMEOUT (idle) */
    int header_timeout_s;      /* to complete a request's headers; 0 = connection_timeout_s */
    size_t body_min_rate;      /* bytes/s a body must average after header_timeout_s; 0 = none */
    int max_pending_connections;/* connections without complete headers; 0 = 3/4 of the max */
    int max_pending_per_ip;    /* of those, from one address; 0 = max_connections_per_ip / 2 */
    size_t body_max;           /* default cap of HTTP_BODY_MEMORY routes */
    size_t upload_max;         /* default cap of HTTP_BODY_FILE routes */
    const char *tmp_dir;       /* where HTTP_BODY_FILE bodies land; must exist */
    bool log_requests;         /* access log lines on stderr */
} http_options;

/* ------------------------------------------------------------------ server */

/* Bind HOST:PORT (close-on-exec socket), start the MHD daemon with the route table (copied:
 * routes and app must outlive the server, the strings in routes too). Returns 0 and *out, or
 * -1 with err: "cannot listen on 127.0.0.1:8080: Address already in use", bad route patterns,
 * MHD start failure. Free with http_server_free. */
int http_server_start(http_server **out, const http_options *opt, const http_route *routes,
                      size_t n_routes, void *app, char *err, size_t errlen);

/* The bound port (the real one when opt->port was 0). */
int http_server_port(const http_server *s);

/* Stop accepting new connections (the listening socket is closed); requests in flight go on.
 * Idempotent. After it, http_server_stopping is true (long-poll handlers should return). */
void http_server_quiesce(http_server *s);
bool http_server_stopping(const http_server *s);

/* Wait until no request is in flight or timeout_s passes (after http_server_quiesce, so the
 * count can only fall). Returns the number of requests still in flight. */
int http_server_drain(http_server *s, double timeout_s);

/* Close all connections, join their threads, free everything; NULL is a no-op. */
void http_server_free(http_server *s);

/* The route table as given. */
const http_route *http_server_routes(const http_server *s, size_t *n);

/* Prometheus text for the HTTP layer: prunelabd_http_requests_total{method,route,code},
 * prunelabd_http_request_duration_seconds histogram {method,route}, in-flight gauge.
 * Returns 0, or -1 if writing to f failed. Requests not matching a route count under
 * route="unmatched", method="any". */
int http_server_metrics_write(http_server *s, FILE *f);

/* ------------------------------------------------------------------ request accessors
 * Strings returned are owned by the request and valid until the handler returns. */

http_server *http_request_server(http_request *req);
const char *http_request_method(const http_request *req);
const char *http_request_path(const http_request *req);   /* raw, as sent (not decoded) */
const http_route *http_request_route(const http_request *req);

/* Decoded value of the {name} segment of the matched pattern, or NULL if the pattern has none.
 * Never contains '/', control characters or invalid UTF-8, and is never "." or "..". */
const char *http_request_param(const http_request *req, const char *name);

/* Decoded query argument ('+' and %XX), "" for a bare `?key`, NULL if absent. The first
 * occurrence wins. Values with control characters or bad UTF-8 were refused with 400. */
const char *http_request_query(const http_request *req, const char *key);

/* A request header (case-insensitive name) or NULL. */
const char *http_request_header(const http_request *req, const char *name);

enum http_auth {
    HTTP_AUTH_NONE = 0,    /* no Authorization header */
    HTTP_AUTH_BEARER,      /* "Authorization: Bearer TOKEN": *token set */
    HTTP_AUTH_MALFORMED,   /* some other scheme, or an empty / spaced token */
};
/* Classify the Authorization header; *token (may be NULL) gets the bearer token. */
enum http_auth http_request_auth(const http_request *req, const char **token);

/* Memory body (NUL-terminated beyond *len; "" when there is none). NULL for file routes. */
const char *http_request_body(const http_request *req, size_t *len);

/* File body: path of the temp file (size in *len), NULL for memory routes or no body.
 * The file is unlinked after the request unless the handler takes it. */
const char *http_request_body_file(const http_request *req, size_t *len);
/* Take ownership of the temp file (e.g. after renaming it): it is no longer unlinked. */
void http_request_body_file_keep(http_request *req);
/* Call fn(arg) once when the request is freed, however it ends (answered, or the client gone
 * mid-body): how a before_body hook gives back what it took. One per request; a second call
 * replaces the first. */
void http_request_on_free(http_request *req, void (*fn)(void *), void *arg);

/* Parse the memory body as one strict JSON object (duplicate keys refused, nothing after it).
 * Returns a new reference (caller json_decref's), or NULL after replying 400 bad_json with
 * "... at line L column C (byte B)" — the handler then just returns 0. */
json_t *http_request_json(http_request *req);

/* ------------------------------------------------------------------ replies
 * Each returns 0, or -1 if the response could not be built (out of memory: the dispatcher then
 * answers 500). Calling a second time replaces the first response. */

/* Steals body (json_decref'ed even on failure). */
int http_reply_json(http_request *req, unsigned status, json_t *body);
/* body as http_reply_json writes it: compact JSON and "\n" (malloc'd, caller frees; *len bytes).
 * Steals body; NULL when body is NULL or memory runs out. */
char *http_json_text(json_t *body, size_t *len);
/* A JSON body already serialised (compact, ending in "\n", as http_reply_json writes it): takes
 * text (malloc'd, freed with free() even on failure), len bytes. Same headers as http_reply_json. */
int http_reply_json_text(http_request *req, unsigned status, char *text, size_t len);
/* Copies text; content_type e.g. "text/plain; version=0.0.4; charset=utf-8". */
int http_reply_text(http_request *req, unsigned status, const char *content_type,
                    const char *text, size_t len);
/* {"error": {"code": code, "message": printf(fmt...), "field": field or null}}. */
__attribute__((format(printf, 5, 6))) int http_reply_error(http_request *req, unsigned status,
                                                           const char *code, const char *field,
                                                           const char *fmt, ...);
/* A streamed body (SSE, CSV export): see MHD_create_response_from_callback; size may be
 * MHD_SIZE_UNKNOWN. free_cb (may be NULL) releases cls when the response is done. */
int http_reply_stream(http_request *req, unsigned status, const char *content_type,
                      uint64_t size, MHD_ContentReaderCallback reader, void *cls,
                      MHD_ContentReaderFreeCallback free_cb);
/* Add a header to the response already set (Location, Allow, Retry-After, ...). Returns 0, or
 * -1 if there is no response yet or MHD refused the header. */
int http_reply_header(http_request *req, const char *name, const char *value);

/* The error object {"error": {...}}; NULL on out-of-memory. field may be NULL. */
json_t *http_error_body(const char *code, const char *message, const char *field);

#endif
