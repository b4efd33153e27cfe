/* static.c — the dashboard's files, served read-only by prunelabd (see static.h for the URL map).
 *
 * Safety rests on three checks made for every request, in this order: the URL path must be one
 * of the mapped shapes (a short allow-list of directories and extensions, no segment starting
 * with '.'); the file's realpath must lie strictly inside the root's realpath (a symlink may
 * point anywhere inside web/, never out of it); the opened descriptor must be a regular file.
 * The file is opened once and streamed from that descriptor, so what was checked is what is
 * sent. Nothing is cached in memory: the ETag (size, mtime, inode) is recomputed per request,
 * so an edited file is seen at once (Cache-Control: no-cache makes browsers revalidate).
 *
 * Ownership: static_site owns its root path; a static_plan owns its descriptor until
 * static_handle hands it to the response (closed by the response's free callback). */
#include "static.h"
#include "selfdir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct static_site {
    char *root; /* realpath of the web directory, no trailing '/' (unless it is "/") */
};

/* ------------------------------------------------------------------ directory */

static int has_index(const char *dir) {
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/index.html", dir) >= (int)sizeof p) return 0;
    return access(p, R_OK) == 0;
}

char *static_dir_resolve(const char *configured, const char *compiled, const char *argv0,
                         const char **source) {
    const char *src = "web_dir";
    const char *env = getenv("PRUNELAB_WEB_DIR");
    char *out = NULL;
    char self[PATH_MAX];
    if (configured && *configured) {
        out = strdup(configured);
        goto done;
    }
    if (env && *env) {
        src = "PRUNELAB_WEB_DIR";
        out = strdup(env);
        goto done;
    }
    if (compiled && *compiled && has_index(compiled)) {
        src = "install";
        out = strdup(compiled);
        goto done;
    }
    src = "binary";
    if (selfdir_get(argv0, self, sizeof self) != 0) strcpy(self, ".");
    size_t len = strlen(self) + sizeof "/web";
    out = malloc(len);
    if (out) snprintf(out, len, "%s/web", self);
done:
    if (source) *source = src;
    return out;
}

int static_site_open(static_site **out, const char *dir, char *err, size_t errlen) {
    *out = NULL;
    char *root = realpath(dir, NULL);
    struct stat st;
    if (!root || stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "web directory %s: %s", dir,
                 root ? "not a directory" : strerror(errno));
        free(root);
        return -1;
    }
    static_site *s = malloc(sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        free(root);
        return -1;
    }
    s->root = root;
    *out = s;
    return 0;
}

void static_site_free(static_site *s) {
    if (!s) return;
    free(s->root);
    free(s);
}

const char *static_site_dir(const static_site *s) { return s->root; }

/* ------------------------------------------------------------------ types and tags */

static const struct {
    const char *ext, *type;
} content_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"json", "application/json"},
    {"ico", "image/x-icon"},
};

static const char *extension(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && dot != name ? dot + 1 : NULL;
}

const char *static_content_type(const char *name) {
    const char *ext = extension(name);
    if (!ext) return NULL;
    for (size_t i = 0; i < sizeof content_types / sizeof content_types[0]; i++)
        if (strcmp(content_types[i].ext, ext) == 0) return content_types[i].type;
    return NULL;
}

int static_etag_matches(const char *header, const char *etag) {
    if (!header || !etag) return 0;
    const char *e = etag;
    if (strncmp(e, "W/", 2) == 0) e += 2;
    size_t elen = strlen(e);
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        const char *start = p;
        if (*p == '*') {
            p++;
            while (*p == ' ' || *p == '\t') p++;
            if (*p == '\0' || *p == ',') return 1;
            continue;
        }
        if (strncmp(p, "W/", 2) == 0) p += 2;
        const char *tag = p;
        if (*p == '"') {
            const char *close = strchr(p + 1, '"');
            if (!close) return 0;
            p = close + 1;
        } else {
            while (*p && *p != ',') p++; /* malformed element: skip it */
            continue;
        }
        if ((size_t)(p - tag) == elen && memcmp(tag, e, elen) == 0) return 1;
        if (p == start) p++; /* always advance */
    }
    return 0;
}

/* ------------------------------------------------------------------ URL -> file */

/* Served directories and the extensions each serves ("" = the root). */
static const struct {
    const char *dir;
    const char *exts[3];
} served_dirs[] = {
    {"", {"html", "svg", "ico"}},
    {"js", {"js", "json", NULL}},
    {"css", {"css", "svg", NULL}},
};

/* The one file served from node_modules. */
#define VENDOR_PLOTLY_URL "plotly.min.js"
#define VENDOR_PLOTLY_FILE "node_modules/plotly.js-dist-min/plotly.min.js"

static int plan_refuse(static_plan *p, const char *fmt, const char *arg) {
    p->status = 404;
    snprintf(p->reason, sizeof p->reason, fmt, arg);
    return 0;
}

/* A segment we accept: non-empty, no '.' first (dotfiles, "." and ".."), no '/' or '\\'. */
static int segment_ok(const char *s, size_t n) {
    if (n == 0 || s[0] == '.') return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || s[i] == '\\' || (unsigned char)s[i] < 0x20) return 0;
    return 1;
}

/* rel (at least PATH_MAX) = the file under the root that url_path names, or a 404 in p. Returns
 * 1 when rel is set, 0 after plan_refuse. */
static int url_map(const char *url_path, char *rel, size_t rellen, static_plan *p) {
    if (url_path[0] != '/') return plan_refuse(p, "%s: not an absolute path", url_path);
    const char *path = url_path + 1;
    if (*path == '\0') path = "index.html";
    const char *slash = strchr(path, '/');
    char dir[16] = "";
    const char *name = path;
    if (slash) {
        size_t dlen = (size_t)(slash - path);
        if (!segment_ok(path, dlen) || dlen >= sizeof dir || strchr(slash + 1, '/'))
            return plan_refuse(p, "%s: not a dashboard file", url_path);
        memcpy(dir, path, dlen);
        dir[dlen] = '\0';
        name = slash + 1;
    }
    if (!segment_ok(name, strlen(name)))
        return plan_refuse(p, "%s: hidden or empty names are not served", url_path);
    if (strcmp(dir, "vendor") == 0) {
        if (strcmp(name, VENDOR_PLOTLY_URL) != 0)
            return plan_refuse(p, "%s: not a vendored file", url_path);
        snprintf(rel, rellen, "%s", VENDOR_PLOTLY_FILE);
        return 1;
    }
    const char *ext = extension(name);
    for (size_t i = 0; i < sizeof served_dirs / sizeof served_dirs[0]; i++) {
        if (strcmp(served_dirs[i].dir, dir) != 0) continue;
        for (size_t k = 0; ext && k < 3 && served_dirs[i].exts[k]; k++) {
            if (strcmp(served_dirs[i].exts[k], ext) != 0) continue;
            if (snprintf(rel, rellen, "%s%s%s", dir, *dir ? "/" : "", name) >= (int)rellen)
                return plan_refuse(p, "%s: name too long", url_path);
            return 1;
        }
        return plan_refuse(p, "%s: this file type is not served here", url_path);
    }
    return plan_refuse(p, "%s: not a dashboard file", url_path);
}

int static_plan_make(const static_site *s, const char *url_path, const char *if_none_match,
                     static_plan *p) {
    memset(p, 0, sizeof *p);
    p->fd = -1;
    p->status = 404;
    char rel[PATH_MAX], full[PATH_MAX];
    if (!url_map(url_path, rel, sizeof rel, p)) return 0;
    if (snprintf(full, sizeof full, "%s/%s", s->root, rel) >= (int)sizeof full)
        return plan_refuse(p, "%s: name too long", url_path);
    char *real = realpath(full, NULL);
    if (!real) {
        if (errno == ENOMEM) {
            snprintf(p->reason, sizeof p->reason, "out of memory");
            return -1;
        }
        return plan_refuse(p, "%s: no such file", url_path);
    }
    size_t rl = strlen(s->root);
    int inside = strncmp(real, s->root, rl) == 0 && (real[rl] == '/' || strcmp(s->root, "/") == 0);
    if (!inside || strlen(real) >= sizeof p->file) {
        free(real);
        return plan_refuse(p, "%s: resolves outside the web directory", url_path);
    }
    snprintf(p->file, sizeof p->file, "%s", real);
    free(real);
    /* the checked path has no symlinks left; O_NOFOLLOW refuses one swapped in since */
    int fd = open(p->file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        p->file[0] = '\0';
        return plan_refuse(p, "%s: not a readable regular file", url_path);
    }
    p->content_type = static_content_type(rel);
    p->size = (uint64_t)st.st_size;
    snprintf(p->etag, sizeof p->etag, "\"%llx-%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ULL +
                 (unsigned long long)st.st_mtim.tv_nsec,
             (unsigned long long)st.st_ino);
    if (static_etag_matches(if_none_match, p->etag)) {
        close(fd);
        p->status = 304;
        return 0;
    }
    p->fd = fd;
    p->status = 200;
    return 0;
}

void static_plan_clear(static_plan *p) {
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
}

/* ------------------------------------------------------------------ HTTP */

typedef struct {
    int fd;
    uint64_t size;
} file_reader;

static ssize_t file_read(void *cls, uint64_t pos, char *buf, size_t max) {
    file_reader *r = cls;
    if (pos >= r->size) return MHD_CONTENT_READER_END_OF_STREAM;
    if (max > r->size - pos) max = (size_t)(r->size - pos);
    ssize_t n;
    do {
        n = pread(r->fd, buf, max, (off_t)pos);
    } while (n < 0 && errno == EINTR);
    /* a file shrunk while being sent: end the connection rather than send a short body */
    return n > 0 ? n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void file_reader_free(void *cls) {
    file_reader *r = cls;
    if (r->fd >= 0) close(r->fd);
    free(r);
}

/* Rebuild "/js/app.js" from the route pattern "/js/{file}" and its decoded parameters. Returns
 * 0, or -1 when it does not fit. */
static int url_from_route(http_request *req, char *out, size_t outlen) {
    const http_route *route = http_request_route(req);
    const char *pat = route ? route->pattern : "/";
    size_t used = 0;
    out[0] = '\0';
    if (strcmp(pat, "/") == 0) return snprintf(out, outlen, "/") < (int)outlen ? 0 : -1;
    const char *s = pat + 1;
    while (*s) {
        const char *slash = strchr(s, '/');
        size_t len = slash ? (size_t)(slash - s) : strlen(s);
        char seg[64];
        if (len >= sizeof seg) return -1;
        memcpy(seg, s, len);
        seg[len] = '\0';
        const char *val = seg;
        if (seg[0] == '{' && len > 2) {
            seg[len - 1] = '\0';
            val = http_request_param(req, seg + 1);
            if (!val) return -1;
        }
        int n = snprintf(out + used, outlen - used, "/%s", val);
        if (n < 0 || (size_t)n >= outlen - used) return -1;
        used += (size_t)n;
        s += len;
        if (*s == '/') s++;
    }
    return 0;
}

static int headers_add(http_request *req, const static_plan *p) {
    if (http_reply_header(req, MHD_HTTP_HEADER_ETAG, p->etag) != 0 ||
        http_reply_header(req, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") != 0 ||
        http_reply_header(req, "X-Content-Type-Options", "nosniff") != 0 ||
        http_reply_header(req, "Content-Security-Policy", STATIC_CSP) != 0 ||
        http_reply_header(req, "Referrer-Policy", "same-origin") != 0)
        return -1;
    return 0;
}

int static_handle(http_request *req, const static_site *s) {
    int rc = -1;
    static_plan p;
    memset(&p, 0, sizeof p);
    p.fd = -1;
    char url[1024];
    if (url_from_route(req, url, sizeof url) != 0) {
        rc = http_reply_error(req, 404, "not_found", NULL, "no such resource");
        goto cleanup;
    }
    if (!s) {
        rc = http_reply_error(req, 404, "not_found", NULL,
                              "%s: the dashboard is not installed (no web directory)", url);
        goto cleanup;
    }
    if (static_plan_make(s, url, http_request_header(req, MHD_HTTP_HEADER_IF_NONE_MATCH),
                         &p) != 0) {
        rc = http_reply_error(req, 500, "internal", NULL, "%s", p.reason);
        goto cleanup;
    }
    if (p.status == 404) {
        rc = http_reply_error(req, 404, "not_found", NULL, "no such resource: %s", p.reason);
        if (rc == 0) http_reply_header(req, "X-Content-Type-Options", "nosniff");
        goto cleanup;
    }
    if (p.status == 304) {
        if (http_reply_text(req, 304, p.content_type, "", 0) != 0) goto cleanup;
        rc = headers_add(req, &p);
        goto cleanup;
    }
    file_reader *r = malloc(sizeof *r);
    if (!r) goto cleanup;
    r->fd = p.fd;
    r->size = p.size;
    p.fd = -1; /* the reader owns it now */
    /* on failure the reader may or may not have been freed by MHD (it depends on the step that
     * failed); a leak on an out-of-memory path is preferred to a double close */
    if (http_reply_stream(req, 200, p.content_type, p.size, file_read, r, file_reader_free) != 0)
        goto cleanup;
    rc = headers_add(req, &p);
cleanup:
    static_plan_clear(&p);
    return rc;
}
