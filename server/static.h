/* static.h — prunelabd serves the dashboard (web/) read-only at "/".
 *
 * URL -> file: "/" -> index.html; "/NAME" (index.html, favicon.svg, favicon.ico); "/js/NAME.js"
 * (also .json); "/css/NAME.css" (also .svg); "/vendor/plotly.min.js" ->
 * node_modules/plotly.js-dist-min/plotly.min.js. Anything else is not served: other
 * directories, other extensions, names starting with '.', and any file whose real path (symlinks
 * resolved) leaves the web directory. Misses answer 404 JSON {"error": {...}}.
 *
 * Responses carry Content-Type, Cache-Control: no-cache with an ETag (If-None-Match -> 304),
 * X-Content-Type-Options: nosniff, a Content-Security-Policy that allows only same-origin
 * scripts (Plotly's inline styles and data:/blob: images allowed), Referrer-Policy.
 *
 * The decision (static_plan) is separate from the HTTP reply (static_handle) so it can be
 * tested without a socket. */
#ifndef PL_SERVER_STATIC_H
#define PL_SERVER_STATIC_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"

#define STATIC_ERRLEN 512

/* Content-Security-Policy sent with every static file. */
#define STATIC_CSP                                                                          \
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "             \
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "               \
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

typedef struct static_site static_site;

/* The web directory, first that applies: configured (config key web_dir / --web-dir), the
 * environment variable PRUNELAB_WEB_DIR, compiled (the install directory, used only if it holds
 * index.html), DIR/web where DIR is the directory of the running binary (/proc/self/exe, else
 * argv0). configured and compiled may be NULL. Returns a malloc'd path (not yet checked to
 * exist; static_site_open does that), NULL on out-of-memory. *source (may be NULL) names where
 * it came from: "web_dir", "PRUNELAB_WEB_DIR", "install", "binary". */
char *static_dir_resolve(const char *configured, const char *compiled, const char *argv0,
                         const char **source);

/* Open the site rooted at dir (its real path is taken now). Returns 0 and *out, or -1 with err
 * (dir missing or not a directory; *out is then NULL). Free with static_site_free. */
int static_site_open(static_site **out, const char *dir, char *err, size_t errlen);

/* Free the site; NULL is a no-op. */
void static_site_free(static_site *s);

/* The real path of the root directory (owned by s). */
const char *static_site_dir(const static_site *s);

/* Content type for a file name's extension, NULL when the extension is not served:
 * html, js (text/javascript), css, svg, json, ico. */
const char *static_content_type(const char *name);

/* 1 when the If-None-Match header value (a list of entity tags, weak or strong, or "*") matches
 * etag (weak comparison, as RFC 9110 asks for If-None-Match), else 0. header may be NULL. */
int static_etag_matches(const char *header, const char *etag);

/* What to answer for one GET/HEAD. */
typedef struct {
    unsigned status;          /* 200, 304 or 404 */
    const char *content_type; /* static string; 200 and 304 */
    char etag[64];            /* quoted strong tag; 200 and 304 */
    uint64_t size;            /* file size; 200 */
    int fd;                   /* open file for 200 (owned: static_plan_clear closes it), else -1 */
    char file[4096];          /* real path of the file served (200, 304), "" otherwise */
    char reason[256];         /* 404: why (for the error message) */
} static_plan;

/* Map a decoded URL path ("/", "/js/app.js") to the answer, checking If-None-Match (may be
 * NULL). Always fills *p (status 404 with a reason for every refusal); returns 0, or -1 only on
 * an internal error (p->reason says which), e.g. a file that vanished between checks. Call
 * static_plan_clear afterwards. */
int static_plan_make(const static_site *s, const char *url_path, const char *if_none_match,
                     static_plan *p);

/* Close the plan's file; safe to call twice. */
void static_plan_clear(static_plan *p);

/* Route handler body: rebuild the decoded URL path from the matched route ("/", "/{file}",
 * "/js/{file}", ...), plan, and reply (file streamed from its descriptor, or 304, or 404 JSON).
 * s may be NULL (no web directory: 404 for everything). Returns 0, or -1 if no response could be
 * built (the dispatcher answers 500). */
int static_handle(http_request *req, const static_site *s);

#endif
