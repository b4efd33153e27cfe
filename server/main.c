/* main.c — prunelabd: configuration, data directory, HTTP routes, signals.
 *
 * Start-up: config (defaults < --config file < flags) -> DATA_DIR, DATA_DIR/models and
 * DATA_DIR/tmp created -> DATA_DIR/prunelabd.lock taken (one daemon per data directory: it is
 * the only writer of the database) -> stale upload temp files removed -> HTTP started ->
 * DATA_DIR/prunelabd.port written -> "prunelabd listening on http://HOST:PORT/" on stdout.
 * SIGTERM / SIGINT: stop accepting, shut the services down, give requests in flight up to
 * DRAIN_S seconds, close connections, exit 0.
 *
 * Extension points. `struct daemon` is the application state every handler receives; the
 * store, the scheduler and the executor join it, are opened in daemon_open, stopped (with the
 * scheduler's grace period) in daemon_shutdown and freed in daemon_close. `routes[]` is the
 * whole API surface; /api/v1/openapi.json is generated from it.
 *
 * Routes answered so far: /healthz, /metrics, /api/v1/openapi.json. POST /api/v1/jobs parses
 * its body strictly (400 bad_json with the position, 413 over body_max) and answers 501
 * not_implemented for valid JSON; GET /api/v1/models/{name} answers 501; PUT
 * /api/v1/models/{name} streams its body (up to upload_max) to DATA_DIR/tmp and answers 501,
 * the temp file being removed. They become real when the store and the scheduler land.
 *
 * Signals are blocked in every thread and taken synchronously by the main thread
 * (sigwaitinfo), so no handler code runs in signal context. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "http.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif

#define ERRLEN 512
#define DRAIN_S 5.0 /* on SIGTERM, seconds given to requests in flight before connections close */

struct daemon {
    pl_config cfg;
    http_server *http;
    double started;          /* monotonic seconds */
    char *models_dir;        /* DATA_DIR/models */
    char *tmp_dir;           /* DATA_DIR/tmp: upload temp files */
    char *port_path;         /* DATA_DIR/prunelabd.port */
    int lock_fd;             /* flock'ed DATA_DIR/prunelabd.lock, -1 when not held */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "DIR/name", malloc'd; NULL on out-of-memory. */
static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ------------------------------------------------------------------ handlers */

static int handle_healthz(http_request *req, void *app) {
    struct daemon *d = app;
    return http_reply_json(req, 200,
                           json_pack("{s:s, s:s, s:I}", "status", "ok", "version",
                                     PACKAGE_VERSION, "uptime_s",
                                     (json_int_t)(now_s() - d->started)));
}

static int handle_metrics(http_request *req, void *app) {
    struct daemon *d = app;
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
            now_s() - d->started, d->cfg.workers);
    if (http_server_metrics_write(d->http, f) != 0) goto cleanup;
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

/* A minimal OpenAPI 3 document listing the route table. */
static int handle_openapi(http_request *req, void *app) {
    struct daemon *d = app;
    size_t n;
    const http_route *routes = http_server_routes(d->http, &n);
    json_t *paths = json_object();
    json_t *doc = json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:o}", "openapi", "3.0.3", "info", "title", "prunelabd",
        "version", PACKAGE_VERSION, "description",
        "Pruning experiments on Mamba image classifiers. Errors are JSON "
        "{\"error\": {\"code\", \"message\", \"field\"}}; writes need Authorization: Bearer TOKEN.",
        "paths", paths);
    if (!doc) return -1;
    for (size_t i = 0; i < n; i++) {
        const http_route *r = &routes[i];
        json_t *item = json_object_get(paths, r->pattern);
        if (!item) {
            item = json_object();
            if (json_object_set_new(paths, r->pattern, item) != 0) goto fail;
        }
        char method[16];
        size_t k;
        for (k = 0; r->method[k] && k + 1 < sizeof method; k++)
            method[k] = (char)(r->method[k] >= 'A' && r->method[k] <= 'Z' ? r->method[k] + 32
                                                                           : r->method[k]);
        method[k] = '\0';
        json_t *op = json_pack("{s:s, s:{s:{s:s}}}", "summary", r->summary ? r->summary : "",
                               "responses", "default", "description",
                               "JSON body, or an error object");
        if (!op || json_object_set_new(item, method, op) != 0) goto fail;
        json_t *params = json_array();
        if (!params) goto fail;
        for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{')) {
            const char *e = strchr(p, '}');
            if (!e) break;
            json_array_append_new(params,
                                  json_pack("{s:s%, s:s, s:b, s:{s:s}}", "name", p + 1,
                                            (size_t)(e - p - 1), "in", "path", "required", 1,
                                            "schema", "type", "string"));
        }
        if (json_array_size(params)) json_object_set(op, "parameters", params);
        json_decref(params);
        if (strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0) {
            const char *ct = r->body == HTTP_BODY_FILE ? "application/octet-stream"
                                                       : "application/json";
            json_object_set_new(op, "requestBody",
                                json_pack("{s:b, s:{s:{}}}", "required", 1, "content", ct));
        }
    }
    return http_reply_json(req, 200, doc);
fail:
    json_decref(doc);
    return -1;
}

static int handle_jobs_create(http_request *req, void *app) {
    (void)app;
    json_t *spec = http_request_json(req);
    if (!spec) return 0; /* 400 already set */
    json_decref(spec);
    return http_reply_error(req, 501, "not_implemented", NULL,
                            "job submission is not available in this build yet");
}

static int handle_model_get(http_request *req, void *app) {
    (void)app;
    return http_reply_error(req, 501, "not_implemented", NULL,
                            "model %s: the model registry is not available in this build yet",
                            http_request_param(req, "name"));
}

static int handle_model_put(http_request *req, void *app) {
    (void)app;
    size_t len;
    http_request_body_file(req, &len); /* left in place: removed after the response */
    return http_reply_error(req, 501, "not_implemented", NULL,
                            "model upload (%zu bytes received) is not available in this build yet",
                            len);
}

/* The API. Literal rows before {name} rows that overlap them (first match wins). */
static const http_route routes[] = {
    {"GET", "/healthz", handle_healthz, HTTP_BODY_MEMORY, 0, "liveness: status and version"},
    {"GET", "/metrics", handle_metrics, HTTP_BODY_MEMORY, 0,
     "Prometheus text: request counts and latencies"},
    {"GET", "/api/v1/openapi.json", handle_openapi, HTTP_BODY_MEMORY, 0, "this document"},
    {"POST", "/api/v1/jobs", handle_jobs_create, HTTP_BODY_MEMORY, 0,
     "submit a job (JSON spec); 202 with id and cell count"},
    {"GET", "/api/v1/models/{name}", handle_model_get, HTTP_BODY_MEMORY, 0, "one model"},
    {"PUT", "/api/v1/models/{name}", handle_model_put, HTTP_BODY_FILE, 0,
     "upload a safetensors checkpoint (body up to upload_max)"},
};

/* ------------------------------------------------------------------ daemon state */

static int mkdir_p(const char *path, char *err, size_t errlen) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory %.300s: %s", buf, strerror(errno));
            return -1;
        }
        *p = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a directory", path);
        return -1;
    }
    return 0;
}

/* Take DATA_DIR/prunelabd.lock (flock, released by the kernel when the process dies, kill -9
 * included) and record our pid in it. Returns the fd, or -1 with err. */
static int lock_take(const char *data_dir, char *err, size_t errlen) {
    char *path = path_join(data_dir, "prunelabd.lock");
    if (!path) return snprintf(err, errlen, "out of memory"), -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        snprintf(err, errlen,
                 "data directory %s is in use by another prunelabd%s%s%s; stop it or choose "
                 "another --data-dir",
                 data_dir, *pid ? " (pid " : "", pid, *pid ? ")" : "");
        close(fd);
        free(path);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        fprintf(stderr, "prunelabd: warning: cannot record the pid in %s\n", path);
    free(path);
    return fd;
}

/* Remove upload-* files left in DATA_DIR/tmp by a daemon that died mid-upload. */
static void tmp_clean(const char *tmp_dir) {
    DIR *dir = opendir(tmp_dir);
    if (!dir) return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, "upload-", 7) != 0) continue;
        if (unlinkat(dirfd(dir), e->d_name, 0) == 0)
            fprintf(stderr, "prunelabd: removed a stale upload %s/%s\n", tmp_dir, e->d_name);
    }
    closedir(dir);
}

/* Directories, lock, temp clean-up. The store opens here, after the lock. Returns 0 or -1
 * with err; daemon_close undoes a partial open. */
static int daemon_open(struct daemon *d, char *err, size_t errlen) {
    const char *dir = d->cfg.data_dir;
    d->models_dir = path_join(dir, "models");
    d->tmp_dir = path_join(dir, "tmp");
    d->port_path = path_join(dir, "prunelabd.port");
    if (!d->models_dir || !d->tmp_dir || !d->port_path)
        return snprintf(err, errlen, "out of memory"), -1;
    if (mkdir_p(dir, err, errlen) != 0 || mkdir_p(d->models_dir, err, errlen) != 0 ||
        mkdir_p(d->tmp_dir, err, errlen) != 0)
        return -1;
    d->lock_fd = lock_take(dir, err, errlen);
    if (d->lock_fd < 0) return -1;
    tmp_clean(d->tmp_dir);
    return 0;
}

/* Stop the services that run cells; HTTP has stopped accepting. The scheduler's grace period
 * (cfg.grace_s: let running cells finish, else requeue them) belongs here. */
static void daemon_shutdown(struct daemon *d) { (void)d; }

static void daemon_close(struct daemon *d) {
    http_server_free(d->http);
    d->http = NULL;
    if (d->port_path && d->lock_fd >= 0) unlink(d->port_path);
    if (d->lock_fd >= 0) close(d->lock_fd);
    d->lock_fd = -1;
    free(d->models_dir);
    free(d->tmp_dir);
    free(d->port_path);
    config_free(&d->cfg);
}

static int port_file_write(const char *path, int port, char *err, size_t errlen) {
    int rc = -1;
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return snprintf(err, errlen, "out of memory"), -1;
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    int bad = fprintf(f, "%d\n", port) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        goto cleanup;
    }
    rc = 0;
cleanup:
    free(tmp);
    return rc;
}

/* ------------------------------------------------------------------ commands */

/* `prunelabd user add|list|revoke` manages bearer tokens in the database. */
static int cmd_user(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "prunelabd: 'user' commands need the user database, which this build does "
                    "not include yet\n");
    return 2;
}

static int serve(struct daemon *d) {
    char err[ERRLEN];
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    /* blocked before any thread starts, so every thread inherits the mask */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (daemon_open(d, err, sizeof err) != 0) {
        fprintf(stderr, "prunelabd: %s\n", err);
        return 1;
    }
    http_options ho = {
        .host = d->cfg.listen_host,
        .port = d->cfg.listen_port,
        .max_connections = d->cfg.max_connections,
        .max_connections_per_ip = d->cfg.max_connections_per_ip,
        .connection_timeout_s = d->cfg.connection_timeout_s,
        .body_max = d->cfg.body_max,
        .upload_max = d->cfg.upload_max,
        .tmp_dir = d->tmp_dir,
        .log_requests = d->cfg.log_requests,
    };
    if (http_server_start(&d->http, &ho, routes, sizeof routes / sizeof routes[0], d, err,
                          sizeof err) != 0) {
        fprintf(stderr, "prunelabd: %s\n", err);
        return 1;
    }
    int port = http_server_port(d->http);
    if (port_file_write(d->port_path, port, err, sizeof err) != 0) {
        fprintf(stderr, "prunelabd: %s\n", err);
        return 1;
    }
    const char *h = d->cfg.listen_host;
    int v6 = strchr(h, ':') != NULL;
    fprintf(stderr, "prunelabd %s: data %s, %d worker(s) (%d cores, %d thread(s) per cell)\n",
            PACKAGE_VERSION, d->cfg.data_dir, d->cfg.workers, d->cfg.cores,
            d->cfg.threads_per_cell);
    printf("prunelabd listening on http://%s%s%s:%d/\n", v6 ? "[" : "", h, v6 ? "]" : "", port);
    fflush(stdout);

    int sig;
    do {
        sig = sigwaitinfo(&sigs, NULL);
    } while (sig < 0 && errno == EINTR);
    fprintf(stderr, "prunelabd: %s received, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    http_server_quiesce(d->http);
    daemon_shutdown(d);
    int left = http_server_drain(d->http, DRAIN_S);
    if (left > 0) fprintf(stderr, "prunelabd: closing %d unfinished request(s)\n", left);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "user") == 0) return cmd_user(argc - 1, argv + 1);
    struct daemon d;
    memset(&d, 0, sizeof d);
    d.lock_fd = -1;
    d.started = now_s();
    char err[ERRLEN];
    config_init(&d.cfg);
    int rc;
    switch (config_from_args(&d.cfg, argc, argv, err, sizeof err)) {
    case CONFIG_ACTION_RUN:
        config_warnings(&d.cfg, stderr);
        rc = serve(&d);
        break;
    case CONFIG_ACTION_HELP:
    case CONFIG_ACTION_VERSION:
        rc = 0;
        break;
    default:
        fprintf(stderr, "prunelabd: %s\n", err);
        rc = 2;
        break;
    }
    daemon_close(&d);
    return rc;
}
