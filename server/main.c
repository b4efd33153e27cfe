/* main.c — prunelabd: configuration, data directory, store, scheduler, HTTP routes, signals,
 * and the `prunelabd user add|list|token|revoke` commands.
 *
 * Start-up: config (defaults < --config file < flags) -> DATA_DIR, DATA_DIR/models and
 * DATA_DIR/tmp created -> DATA_DIR/prunelabd.lock taken (one daemon per data directory: it is
 * the only daemon writing the database) -> stale upload temp files removed -> the store opened
 * at DATA_DIR/prunelab.db (migrations applied) -> the scheduler started (it first requeues the
 * cells a dead daemon left running) -> HTTP started -> DATA_DIR/prunelabd.port written ->
 * "prunelabd listening on http://HOST:PORT/" on stdout.
 * SIGTERM / SIGINT: stop accepting, stop the scheduler (running cells get cfg.grace_s seconds to
 * finish, then are terminated and released back to the queue), give requests in flight up to
 * DRAIN_S seconds, close connections, close the store, exit 0.
 *
 * Migrations directory (sql_dir_find), first that holds 001_init.sql:
 *   1. $PRUNELAB_SQL_DIR (environment);
 *   2. the source tree beside the binary: DIR/sql, where DIR is the directory of
 *      /proc/self/exe (else of argv[0]) — a build in the source tree;
 *   3. DIR/../share/prunelab — an installed prefix moved as a whole;
 *   4. PRUNELAB_SQL_DIR, the compile-time install directory (pkgdatadir).
 *
 * Dashboard directory: static_dir_resolve (static.h) — config web_dir / --web-dir, then
 * $PRUNELAB_WEB_DIR, then PRUNELAB_WEB_DIR (compile-time, pkgdatadir/web) when it holds
 * index.html, then DIR/web beside the binary. A missing directory is a warning, not an error:
 * the API serves on and the dashboard routes answer 404.
 *
 * State. `struct daemon` owns everything; every handler receives its api_ctx (api.h), the one
 * app type, as the http app pointer. The route table is api_routes.c's (app_routes): the
 * daemon's own rows (healthz, metrics, openapi), the API's, then the dashboard's static routes
 * LAST. /api/v1/openapi.json serves the hand-written document (openapi.h); at start-up
 * openapi_check compares it with the route table and a mismatch is logged as a warning.
 *
 * The user commands open the store directly (WAL and the busy timeout make that safe while a
 * daemon runs on the same data directory).
 *
 * Signals are blocked in every thread and taken synchronously by the main thread
 * (sigwaitinfo), so no handler code runs in signal context. SIGCHLD keeps its default
 * disposition (the executor needs exit statuses). */
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

#include "api.h"
#include "config.h"
#include "http.h"
#include "openapi.h"
#include "scheduler.h"
#include "selfdir.h"
#include "static.h"
#include "store.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif

#define ERRLEN 512
#ifndef PRUNELAB_SQL_DIR
#define PRUNELAB_SQL_DIR "/usr/local/share/prunelab"
#endif
#ifndef PRUNELAB_WEB_DIR
#define PRUNELAB_WEB_DIR PRUNELAB_SQL_DIR "/web"
#endif
#define DRAIN_S 5.0 /* on SIGTERM, seconds given to requests in flight before connections close */

struct daemon {
    api_ctx api;             /* what every handler receives as its app pointer */
    pl_config cfg;
    http_server *http;
    store *st;               /* DATA_DIR/prunelab.db */
    scheduler *sched;
    char *sql_dir;           /* migrations */
    char *models_dir;        /* DATA_DIR/models */
    char *tmp_dir;           /* DATA_DIR/tmp: upload temp files */
    char *port_path;         /* DATA_DIR/prunelabd.port */
    int lock_fd;             /* flock'ed DATA_DIR/prunelabd.lock, -1 when not held */
    static_site *web;        /* the dashboard's files; NULL when no web directory was found */
};

/* "DIR/name", malloc'd; NULL on out-of-memory. */
static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Find and open the dashboard directory; a failure is a warning (d->web stays NULL). */
static void web_open(struct daemon *d, const char *argv0) {
    const char *source = NULL;
    char err[ERRLEN];
    char *dir = static_dir_resolve(d->cfg.web_dir, PRUNELAB_WEB_DIR, argv0, &source);
    if (!dir) {
        fprintf(stderr, "prunelabd: warning: out of memory locating the dashboard\n");
        return;
    }
    if (static_site_open(&d->web, dir, err, sizeof err) != 0) {
        fprintf(stderr, "prunelabd: warning: %s (from %s); the dashboard at / answers 404\n",
                err, source);
    } else {
        char index[PATH_MAX];
        snprintf(index, sizeof index, "%s/index.html", static_site_dir(d->web));
        if (access(index, R_OK) != 0)
            fprintf(stderr, "prunelabd: warning: %s has no index.html\n", static_site_dir(d->web));
        snprintf(index, sizeof index, "%s/node_modules/plotly.js-dist-min/plotly.min.js",
                 static_site_dir(d->web));
        if (access(index, R_OK) != 0)
            fprintf(stderr,
                    "prunelabd: warning: %s/node_modules lacks plotly.js-dist-min: run `npm ci "
                    "--prefix web` for the dashboard's charts\n",
                    static_site_dir(d->web));
    }
    free(dir);
}

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

/* 1 when dir holds the first migration. */
static int sql_dir_usable(const char *dir) {
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/001_init.sql", dir) >= (int)sizeof p) return 0;
    return access(p, R_OK) == 0;
}

/* The migrations directory (order in the design comment at the top). Returns a malloc'd path;
 * when none holds the migrations, the compile-time directory (store_open then says what is
 * missing). NULL only on out-of-memory. */
static char *sql_dir_find(const char *argv0) {
    const char *env = getenv("PRUNELAB_SQL_DIR");
    if (env && *env) return strdup(env);
    char self[PATH_MAX];
    if (selfdir_get(argv0, self, sizeof self) == 0) {
        const char *rel[] = {"sql", "../share/prunelab"};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            char cand[PATH_MAX];
            if (snprintf(cand, sizeof cand, "%s/%s", self, rel[i]) >= (int)sizeof cand) continue;
            if (sql_dir_usable(cand)) return strdup(cand);
        }
    }
    return strdup(PRUNELAB_SQL_DIR);
}

/* Open DATA_DIR/prunelab.db with the migrations of sql_dir. Returns STORE_OK with *st, or
 * another store_rc with err. */
static int store_open_in(const char *data_dir, const char *sql_dir, store **st, char *err,
                         size_t errlen) {
    char *db = path_join(data_dir, "prunelab.db");
    if (!db) return snprintf(err, errlen, "out of memory"), STORE_ERR;
    int rc = store_open(db, sql_dir, st, err, errlen);
    free(db);
    return rc;
}

/* Directories, lock, temp clean-up, store, the handlers' context. Returns 0 or -1 with err;
 * daemon_close undoes a partial open. No cell starts here: the scheduler waits until the port
 * is bound (daemon_start_cells), so a daemon that cannot listen has run nothing. */
static int daemon_open(struct daemon *d, const char *argv0, char *err, size_t errlen) {
    const char *dir = d->cfg.data_dir;
    d->models_dir = path_join(dir, "models");
    d->tmp_dir = path_join(dir, "tmp");
    d->port_path = path_join(dir, "prunelabd.port");
    d->sql_dir = sql_dir_find(argv0);
    if (!d->models_dir || !d->tmp_dir || !d->port_path || !d->sql_dir)
        return snprintf(err, errlen, "out of memory"), -1;
    if (mkdir_p(dir, err, errlen) != 0 || mkdir_p(d->models_dir, err, errlen) != 0 ||
        mkdir_p(d->tmp_dir, err, errlen) != 0)
        return -1;
    d->lock_fd = lock_take(dir, err, errlen);
    if (d->lock_fd < 0) return -1;
    tmp_clean(d->tmp_dir);
    if (store_open_in(dir, d->sql_dir, &d->st, err, errlen) != STORE_OK) return -1;
    d->api.st = d->st;
    d->api.sched = NULL; /* until daemon_start_cells: jobs submitted meanwhile wait in the queue */
    d->api.cfg = &d->cfg;
    d->api.data_dir = d->cfg.data_dir;
    d->api.models_dir = d->models_dir;
    d->api.engine_bin = d->cfg.engine_bin;
    d->api.sql_dir = d->sql_dir;
    d->api.datasets_dir = NULL;
    size_t n_routes = 0;
    const http_route *routes = app_routes(&n_routes);
    if (openapi_check(routes, n_routes, err, errlen) != 0)
        fprintf(stderr, "prunelabd: warning: server/openapi.json disagrees with the routes: %s\n",
                err);
    web_open(d, argv0);
    d->api.web = d->web;
    return 0;
}

/* The scheduler, once HTTP listens; the handlers see it from then on (a job accepted before
 * waits in the queue, and the scheduler's first pass claims it). Returns 0 or -1 with err. */
static int daemon_start_cells(struct daemon *d, char *err, size_t errlen) {
    d->sched = scheduler_start(d->st, &d->cfg, d->cfg.engine_bin, d->models_dir, err, errlen);
    if (!d->sched) return -1;
    __atomic_store_n(&d->api.sched, d->sched, __ATOMIC_RELEASE);
    return 0;
}

/* Stop the services that run cells; HTTP has stopped accepting. Running cells get
 * cfg.grace_s seconds to finish, then are released back to the queue. */
static void daemon_shutdown(struct daemon *d) {
    if (!d->sched) return;
    __atomic_store_n(&d->api.sched, NULL, __ATOMIC_RELEASE);
    scheduler_stop(d->sched, (double)d->cfg.grace_s);
    d->sched = NULL;
}

static void daemon_close(struct daemon *d) {
    http_server_free(d->http); /* no handler runs past this point */
    d->http = NULL;
    if (d->sched) {
        d->api.sched = NULL;
        scheduler_stop(d->sched, 0);
        d->sched = NULL;
    }
    store_close(d->st);
    d->st = NULL;
    d->api.st = NULL;
    if (d->port_path && d->lock_fd >= 0) unlink(d->port_path);
    if (d->lock_fd >= 0) close(d->lock_fd);
    d->lock_fd = -1;
    static_site_free(d->web);
    d->web = NULL;
    free(d->sql_dir);
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

static void user_usage(FILE *f) {
    fputs("usage: prunelabd user add NAME [--admin] [--data-dir DIR] [--config FILE]\n"
          "       prunelabd user list [--json] [--data-dir DIR] [--config FILE]\n"
          "       prunelabd user token NAME [--data-dir DIR] [--config FILE]\n"
          "       prunelabd user revoke NAME [--data-dir DIR] [--config FILE]\n"
          "'add' prints the new bearer token once (only its hash is stored); 'token' prints a\n"
          "new token for an existing user (after a revoke, or a lost token; older tokens stay\n"
          "as they are); 'revoke' revokes every active token of the user.\n",
          f);
}

/* "--opt VALUE" or "--opt=VALUE" at argv[*i]: 1 with *val set (advancing *i), 0 when argv[*i]
 * is not opt, -1 when the value is missing. */
static int opt_value(int argc, char **argv, int *i, const char *opt, const char **val) {
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0) return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0') return 0;
    if (*i + 1 >= argc) return -1;
    *val = argv[++*i];
    return 1;
}

static void time_format(int64_t ms, char *buf, size_t len) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "%lld", (long long)ms);
}

/* A parsed `prunelabd user` command line; the strings are argv's. */
typedef struct {
    const char *sub;                    /* "add", "list", "token" or "revoke" */
    const char *name;                   /* NULL for list */
    const char *data_dir, *config_file; /* NULL when not given */
    int admin, as_json;
} user_args;

/* The options and NAME after the subcommand (argv[2..]) into a. Returns 0, or -1 after printing
 * the usage error. */
static int user_opts_parse(int argc, char **argv, user_args *a) {
    for (int i = 2; i < argc; i++) {
        int r;
        if ((r = opt_value(argc, argv, &i, "--data-dir", &a->data_dir)) != 0 ||
            (r = opt_value(argc, argv, &i, "--config", &a->config_file)) != 0) {
            if (r < 0) {
                fprintf(stderr, "prunelabd: %s needs a value\n", argv[i]);
                return -1;
            }
        } else if (strcmp(argv[i], "--admin") == 0 && strcmp(a->sub, "add") == 0) {
            a->admin = 1;
        } else if (strcmp(argv[i], "--json") == 0 && strcmp(a->sub, "list") == 0) {
            a->as_json = 1;
        } else if (argv[i][0] == '-' || a->name || strcmp(a->sub, "list") == 0) {
            fprintf(stderr, "prunelabd: user %s: unexpected argument '%s'; try 'prunelabd user "
                            "--help'\n", a->sub, argv[i]);
            return -1;
        } else {
            a->name = argv[i];
        }
    }
    return 0;
}

/* argv (argv[0] is "user") into a. Returns -1 when the command is to run, else the exit status:
 * 0 after --help, 2 after a usage error (printed). */
static int user_args_parse(int argc, char **argv, user_args *a) {
    memset(a, 0, sizeof *a);
    a->sub = argc > 1 ? argv[1] : NULL;
    if (!a->sub || strcmp(a->sub, "--help") == 0 || strcmp(a->sub, "-h") == 0) {
        user_usage(a->sub ? stdout : stderr);
        return a->sub ? 0 : 2;
    }
    if (strcmp(a->sub, "add") != 0 && strcmp(a->sub, "list") != 0 && strcmp(a->sub, "token") != 0 &&
        strcmp(a->sub, "revoke") != 0) {
        fprintf(stderr, "prunelabd: unknown user command '%s'; try 'prunelabd user --help'\n", a->sub);
        return 2;
    }
    if (user_opts_parse(argc, argv, a) != 0) return 2;
    if (strcmp(a->sub, "list") != 0 && !a->name) {
        fprintf(stderr, "prunelabd: user %s needs a NAME; try 'prunelabd user --help'\n", a->sub);
        return 2;
    }
    return -1;
}

/* Load --config, apply --data-dir, create DATA_DIR and open its store. Returns 0 with *st, or 1
 * after printing why (*st may still need store_close). */
static int user_store_open(const user_args *a, const char *argv0, pl_config *c, store **st) {
    char err[ERRLEN];
    if (a->config_file && config_load_file(c, a->config_file, err, sizeof err) != 0) {
        fprintf(stderr, "prunelabd: %s\n", err);
        return 1;
    }
    if (a->data_dir && config_set(c, "data_dir", a->data_dir, err, sizeof err) != 0) {
        fprintf(stderr, "prunelabd: --data-dir: %s\n", err);
        return 1;
    }
    char *sql_dir = sql_dir_find(argv0); /* only read while the store opens */
    int bad = !sql_dir || mkdir_p(c->data_dir, err, sizeof err) != 0 ||
              store_open_in(c->data_dir, sql_dir, st, err, sizeof err) != STORE_OK;
    if (bad) fprintf(stderr, "prunelabd: %s\n", sql_dir ? err : "out of memory");
    free(sql_dir);
    return bad;
}

/* `user add NAME [--admin]`: prints the new token. Returns the exit status (0 or 1). */
static int user_add(store *st, const user_args *a) {
    char err[ERRLEN], token[STORE_TOKEN_LEN];
    int r = store_user_add(st, a->name, a->admin, token, err, sizeof err);
    if (r == STORE_EXISTS) {
        fprintf(stderr, "prunelabd: user '%s' already exists\n", a->name);
        return 1;
    }
    if (r != STORE_OK) {
        fprintf(stderr, "prunelabd: user add %s: %s\n", a->name, err);
        return 1;
    }
    fprintf(stderr, "prunelabd: created %suser '%s'; its token (shown only now):\n",
            a->admin ? "admin " : "", a->name);
    printf("%s\n", token);
    return 0;
}

/* `user token NAME`: a new token for an existing user (the way back after a revoke). Returns the
 * exit status (0 or 1). */
static int user_token(store *st, const user_args *a) {
    char err[ERRLEN], token[STORE_TOKEN_LEN];
    int r = store_token_create(st, a->name, token, err, sizeof err);
    if (r == STORE_NOTFOUND) {
        fprintf(stderr, "prunelabd: no user '%s'; create it with 'prunelabd user add %s'\n", a->name, a->name);
        return 1;
    }
    if (r != STORE_OK) {
        fprintf(stderr, "prunelabd: user token %s: %s\n", a->name, err);
        return 1;
    }
    fprintf(stderr, "prunelabd: new token for user '%s' (shown only now):\n", a->name);
    printf("%s\n", token);
    return 0;
}

/* `user revoke NAME`: revokes every active token of the user. Returns the exit status. */
static int user_revoke(store *st, const user_args *a) {
    char err[ERRLEN];
    int n = 0;
    int r = store_user_revoke(st, a->name, &n, err, sizeof err);
    if (r == STORE_NOTFOUND) {
        fprintf(stderr, "prunelabd: no user '%s'\n", a->name);
        return 1;
    }
    if (r != STORE_OK && r != STORE_NOOP) {
        fprintf(stderr, "prunelabd: user revoke %s: %s\n", a->name, err);
        return 1;
    }
    printf("revoked %d token(s) of user '%s'\n", r == STORE_NOOP ? 0 : n, a->name);
    return 0;
}

/* One user of `user list`: appended to arr as an object (as_json), else a line of the table. */
static void user_list_row(const store_user *u, int as_json, json_t *arr) {
    char when[64];
    time_format(u->created_ms, when, sizeof when);
    if (as_json)
        json_array_append_new(arr, json_pack("{s:s, s:b, s:i, s:s}", "name", u->name, "admin", u->admin,
                                             "active_tokens", u->active_tokens, "created", when));
    else
        printf("%-24s %-5s %-6d %s\n", u->name, u->admin ? "yes" : "no", u->active_tokens, when);
}

/* `user list [--json]`: a table, or a JSON array. Returns the exit status. */
static int user_list(store *st, const user_args *a) {
    char err[ERRLEN];
    store_user *users = NULL;
    size_t n = 0;
    if (store_users_list(st, &users, &n, err, sizeof err) != STORE_OK) {
        fprintf(stderr, "prunelabd: user list: %s\n", err);
        return 1;
    }
    json_t *arr = a->as_json ? json_array() : NULL;
    if (!a->as_json) printf("%-24s %-5s %-6s %s\n", "NAME", "ADMIN", "TOKENS", "CREATED");
    for (size_t i = 0; i < n; i++) user_list_row(&users[i], a->as_json, arr);
    if (a->as_json) {
        char *text = json_dumps(arr, JSON_INDENT(2));
        if (text) printf("%s\n", text);
        free(text);
        json_decref(arr);
    }
    store_users_free(users, n);
    return 0;
}

/* `prunelabd user add|list|token|revoke`: manage bearer tokens in DATA_DIR/prunelab.db. Returns the
 * exit status: 0, 1 (refused or failed), 2 (usage). */
static int cmd_user(int argc, char **argv, const char *argv0) {
    user_args a;
    int rc = user_args_parse(argc, argv, &a);
    if (rc >= 0) return rc;
    pl_config c;
    config_init(&c);
    store *st = NULL;
    rc = user_store_open(&a, argv0, &c, &st);
    if (rc == 0) {
        if (strcmp(a.sub, "add") == 0)
            rc = user_add(st, &a);
        else if (strcmp(a.sub, "revoke") == 0)
            rc = user_revoke(st, &a);
        else if (strcmp(a.sub, "token") == 0)
            rc = user_token(st, &a);
        else
            rc = user_list(st, &a);
    }
    store_close(st);
    config_free(&c);
    return rc;
}

static int serve(struct daemon *d, const char *argv0) {
    char err[ERRLEN];
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    /* blocked before any thread starts, so every thread inherits the mask */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (daemon_open(d, argv0, err, sizeof err) != 0) {
        fprintf(stderr, "prunelabd: %s\n", err);
        return 1;
    }
    http_options ho = {
        .host = d->cfg.listen_host,
        .port = d->cfg.listen_port,
        .max_connections = d->cfg.max_connections,
        .max_connections_per_ip = d->cfg.max_connections_per_ip,
        .connection_timeout_s = d->cfg.connection_timeout_s,
        .header_timeout_s = d->cfg.header_timeout_s,
        .body_min_rate = d->cfg.body_min_rate,
        .max_pending_connections = d->cfg.max_pending_connections,
        .max_pending_per_ip = d->cfg.max_pending_per_ip,
        .body_max = d->cfg.body_max,
        .upload_max = d->cfg.upload_max,
        .tmp_dir = d->tmp_dir,
        .log_requests = d->cfg.log_requests,
    };
    size_t n_routes = 0;
    const http_route *routes = app_routes(&n_routes);
    if (http_server_start(&d->http, &ho, routes, n_routes, &d->api, err, sizeof err) != 0 ||
        daemon_start_cells(d, err, sizeof err) != 0) {
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
    fprintf(stderr,
            "prunelabd %s: data %s, %d worker(s) (%d cores, %d thread(s) per cell), dashboard "
            "%s\n",
            PACKAGE_VERSION, d->cfg.data_dir, d->cfg.workers, d->cfg.cores,
            d->cfg.threads_per_cell, d->web ? static_site_dir(d->web) : "(none)");
    printf("prunelabd listening on http://%s%s%s:%d/\n", v6 ? "[" : "", h, v6 ? "]" : "", port);
    fflush(stdout);

    int sig;
    do {
        sig = sigwaitinfo(&sigs, NULL);
    } while (sig < 0 && errno == EINTR);
    fprintf(stderr, "prunelabd: %s received, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    /* HTTP first: once its threads are joined no handler can reach the scheduler */
    http_server_quiesce(d->http);
    int left = http_server_drain(d->http, DRAIN_S);
    if (left > 0) fprintf(stderr, "prunelabd: closing %d unfinished request(s)\n", left);
    http_server_free(d->http);
    d->http = NULL;
    daemon_shutdown(d);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "user") == 0) return cmd_user(argc - 1, argv + 1, argv[0]);
    struct daemon d;
    memset(&d, 0, sizeof d);
    d.lock_fd = -1;
    d.api.started_s = api_now_s();
    char err[ERRLEN];
    config_init(&d.cfg);
    int rc;
    switch (config_from_args(&d.cfg, argc, argv, err, sizeof err)) {
    case CONFIG_ACTION_RUN:
        config_warnings(&d.cfg, stderr);
        rc = serve(&d, argv[0]);
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
