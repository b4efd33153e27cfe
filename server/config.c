/* config.c — prunelabd settings: defaults, `key = value` file, flags, validation.
 *
 * Every file key is one row of config_keys[] (name, type, field offset, range, help); the file
 * parser, config_set and the --help key list all walk that table, so a new setting is one row
 * plus its field in pl_config. Strings in pl_config are malloc'd and owned by it
 * (config_free). Nothing here aborts: every failure returns -1 with a message for the caller
 * (prunelabd's main) to print. */
#include "config.h"
#include "selfdir.h"
#include "errbuf.h"
#include "executor.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif

/* strdup that reports failure instead of aborting; NULL on out-of-memory. */
/* ------------------------------------------------------------------ key table */

enum cfg_type {
    CFG_TYPE_STR,
    CFG_TYPE_INT,
    CFG_TYPE_SIZE,
    CFG_TYPE_BOOL,
    CFG_TYPE_LISTEN,
    CFG_TYPE_EXECUTOR,
};

typedef struct {
    const char *name;
    enum cfg_type type;
    size_t offset;          /* of the field in pl_config (unused for LISTEN) */
    long long min, max;     /* INT and SIZE ranges, inclusive */
    const char *help;
} cfg_key;

#define MIB (1024LL * 1024LL)
#define GIB (1024LL * MIB)

static const cfg_key config_keys[] = {
    {"listen", CFG_TYPE_LISTEN, 0, 0, 0, "HOST:PORT to serve on (port 0 = any free port)"},
    {"data_dir", CFG_TYPE_STR, offsetof(pl_config, data_dir), 0, 0,
     "database, models/, tmp/ and prunelabd.port live here"},
    {"web_dir", CFG_TYPE_STR, offsetof(pl_config, web_dir), 0, 0,
     "dashboard files (default $PRUNELAB_WEB_DIR, the install directory, or web/ beside the "
     "binary)"},
    {"workers", CFG_TYPE_INT, offsetof(pl_config, workers), 1, 1024,
     "cells running at once (default cores / threads_per_cell)"},
    {"threads_per_cell", CFG_TYPE_INT, offsetof(pl_config, threads_per_cell), 1, 1024,
     "BLAS threads of each cell"},
    {"max_attempts", CFG_TYPE_INT, offsetof(pl_config, max_attempts), 1, 100,
     "runs of a cell before it is marked failed"},
    {"owner_running_cap", CFG_TYPE_INT, offsetof(pl_config, owner_running_cap), 0, 1024,
     "running cells per owner (0 = fair share: ceil(workers / owners with queued cells))"},
    {"max_cell_memory", CFG_TYPE_SIZE, offsetof(pl_config, max_cell_memory), 64 * MIB, 1024 * GIB,
     "largest estimated memory of one cell (K/M/G suffix); cells run under an address-space limit "
     "of twice this plus 1 GiB"},
    {"lease_seconds", CFG_TYPE_INT, offsetof(pl_config, lease_s), 5, 86400,
     "lease of a claimed cell, renewed while it runs"},
    {"grace_seconds", CFG_TYPE_INT, offsetof(pl_config, grace_s), 0, 3600,
     "on shutdown or cancel: wait this long before SIGKILL / requeue"},
    {"cell_nice", CFG_TYPE_INT, offsetof(pl_config, cell_nice), 0, 19,
     "nice steps of cell processes below the daemon, so request threads keep the CPU"},
    {"max_cells_per_job", CFG_TYPE_INT, offsetof(pl_config, max_cells_per_job), 1, 1000000,
     "largest grid a job may expand to"},
    {"executor", CFG_TYPE_EXECUTOR, offsetof(pl_config, executor), 0, 0,
     "how cells run: local"},
    {"engine_bin", CFG_TYPE_STR, offsetof(pl_config, engine_bin), 0, 0,
     "path of the prunelab engine binary"},
    {"anonymous_reads", CFG_TYPE_BOOL, offsetof(pl_config, anonymous_reads), 0, 0,
     "allow GET requests without a bearer token"},
    {"body_max", CFG_TYPE_SIZE, offsetof(pl_config, body_max), 1024, GIB,
     "request body cap (K/M/G suffix)"},
    {"upload_max", CFG_TYPE_SIZE, offsetof(pl_config, upload_max), 1024, 64 * GIB,
     "model upload cap (K/M/G suffix)"},
    {"uploads_per_user", CFG_TYPE_INT, offsetof(pl_config, uploads_per_user), 0, 1024,
     "model uploads one user may stream at once (0 = no limit)"},
    {"max_connections", CFG_TYPE_INT, offsetof(pl_config, max_connections), 1, 65536,
     "simultaneous HTTP connections"},
    {"max_connections_per_ip", CFG_TYPE_INT, offsetof(pl_config, max_connections_per_ip), 0,
     65536, "simultaneous connections from one address (0 = no limit)"},
    {"connection_timeout", CFG_TYPE_INT, offsetof(pl_config, connection_timeout_s), 1, 86400,
     "idle connection timeout, seconds"},
    {"header_timeout", CFG_TYPE_INT, offsetof(pl_config, header_timeout_s), 1, 3600,
     "seconds to send a request's complete headers (from accept, or from the previous "
     "response on a kept-alive connection); also the grace before body_min_rate applies"},
    {"body_min_rate", CFG_TYPE_SIZE, offsetof(pl_config, body_min_rate), 0, GIB,
     "slowest accepted request body, bytes per second averaged (K/M/G suffix, 0 = no minimum)"},
    {"max_pending_connections", CFG_TYPE_INT, offsetof(pl_config, max_pending_connections), 0,
     65536, "connections still sending headers or idle between requests (0 = three quarters of "
     "max_connections; the rest is kept for requests being answered)"},
    {"max_pending_per_ip", CFG_TYPE_INT, offsetof(pl_config, max_pending_per_ip), 0, 65536,
     "pending connections from one address (0 = half of max_connections_per_ip)"},
    {"log_requests", CFG_TYPE_BOOL, offsetof(pl_config, log_requests), 0, 0,
     "access-log line per request on stderr"},
};
#define CONFIG_KEY_COUNT (sizeof config_keys / sizeof config_keys[0])

static const cfg_key *key_find(const char *name) {
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++)
        if (strcmp(config_keys[i].name, name) == 0) return &config_keys[i];
    return NULL;
}

/* ------------------------------------------------------------------ defaults */

static int detect_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 && n <= 65536 ? (int)n : 1;
}

/* The prunelab binary installed beside this executable, else the name for a PATH lookup.
 * Returns a malloc'd string or NULL on out-of-memory. */
static char *default_engine_bin(void) {
    char dir[PATH_MAX], bin[PATH_MAX + sizeof "/prunelab"];
    if (selfdir_get(NULL, dir, sizeof dir) == 0) {
        snprintf(bin, sizeof bin, "%s/prunelab", dir);
        if (access(bin, X_OK) == 0) return strdup(bin);
    }
    return strdup("prunelab");
}

static int default_workers(const pl_config *c) {
    int w = c->cores / c->threads_per_cell;
    return w < 1 ? 1 : w;
}

void config_init(pl_config *c) {
    memset(c, 0, sizeof *c);
    c->listen_host = strdup("127.0.0.1");
    c->listen_port = 8080;
    c->body_max = (size_t)MIB;
    c->upload_max = (size_t)(512 * MIB);
    c->uploads_per_user = 2;
    c->max_connections = 256;
    c->max_connections_per_ip = 64;
    c->connection_timeout_s = 60;
    c->header_timeout_s = 10;
    c->body_min_rate = 1024;
    c->log_requests = true;
    c->data_dir = strdup("./var");
    c->anonymous_reads = true;
    c->cores = detect_cores();
    c->threads_per_cell = 1;
    c->workers = default_workers(c);
    c->max_attempts = 2;
    c->owner_running_cap = 0;
    c->max_cell_memory = (size_t)(4 * GIB);
    c->lease_s = 30;
    c->grace_s = 20;
    c->cell_nice = 10;
    c->max_cells_per_job = 10000;
    c->executor = strdup("local");
    c->engine_bin = default_engine_bin();
}

void config_free(pl_config *c) {
    if (!c) return;
    free(c->listen_host);
    free(c->data_dir);
    free(c->executor);
    free(c->engine_bin);
    free(c->web_dir);
    c->listen_host = c->data_dir = c->executor = c->engine_bin = c->web_dir = NULL;
}

/* ------------------------------------------------------------------ value parsers */

static int parse_int(const char *s, long long min, long long max, long long *out) {
    if (!*s || isspace((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

/* "123", "64K", "1M", "2G" (powers of 1024, case-insensitive, optional trailing "iB"/"B"). */
static int parse_size(const char *s, long long min, long long max, long long *out) {
    if (!isdigit((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -1;
    unsigned long long mult = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mult = 1024ULL; end++; break;
    case 'M': mult = 1024ULL * 1024; end++; break;
    case 'G': mult = 1024ULL * 1024 * 1024; end++; break;
    default: break;
    }
    if (mult > 1 && (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0)) end += strlen(end);
    if (*end || v > (unsigned long long)LLONG_MAX / mult) return -1;
    long long r = (long long)(v * mult);
    if (r < min || r > max) return -1;
    *out = r;
    return 0;
}

static int parse_bool(const char *s, bool *out) {
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = true; return 0; }
        if (strcasecmp(s, no[i]) == 0) { *out = false; return 0; }
    }
    return -1;
}

int config_parse_listen(const char *s, char **host, int *port, char *err, size_t errlen) {
    const char *colon;
    const char *h0 = s;
    size_t hlen;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return errbuf_set(err, errlen, "'%s' is not [IPV6]:PORT", s);
        h0 = s + 1;
        hlen = (size_t)(close - h0);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return errbuf_set(err, errlen, "'%s' is not HOST:PORT (e.g. 127.0.0.1:8080)", s);
        if (memchr(s, ':', (size_t)(colon - s)))
            return errbuf_set(err, errlen, "'%s': write an IPv6 address in brackets, [::1]:8080", s);
        hlen = (size_t)(colon - s);
    }
    long long p;
    if (parse_int(colon + 1, 0, 65535, &p) != 0)
        return errbuf_set(err, errlen, "'%s': port must be an integer in 0..65535", s);
    for (size_t i = 0; i < hlen; i++)
        if (isspace((unsigned char)h0[i]) || h0[i] == '/')
            return errbuf_set(err, errlen, "'%s': bad host", s);
    char *h = malloc(hlen ? hlen + 1 : sizeof "127.0.0.1");
    if (!h) return errbuf_set(err, errlen, "out of memory");
    if (hlen) {
        memcpy(h, h0, hlen);
        h[hlen] = '\0';
    } else {
        strcpy(h, "127.0.0.1");
    }
    *host = h;
    *port = (int)p;
    return 0;
}

/* ------------------------------------------------------------------ set one key */

int config_set(pl_config *c, const char *key, const char *value, char *err, size_t errlen) {
    const cfg_key *k = key_find(key);
    if (!k) return errbuf_set(err, errlen, "unknown key '%s' (prunelabd --help lists the keys)", key);
    char *field = (char *)c + k->offset;
    long long v;
    switch (k->type) {
    case CFG_TYPE_LISTEN: {
        char *host;
        int port;
        char e[CONFIG_ERRLEN];
        if (config_parse_listen(value, &host, &port, e, sizeof e) != 0)
            return errbuf_set(err, errlen, "%s: %s", key, e);
        free(c->listen_host);
        c->listen_host = host;
        c->listen_port = port;
        return 0;
    }
    case CFG_TYPE_EXECUTOR:
        if (!executor_known(value)) {
            char names[128];
            executor_names(names, sizeof names);
            return errbuf_set(err, errlen, "%s: unknown executor '%s' (available: %s)", key, value, names);
        }
        /* fall through */
    case CFG_TYPE_STR: {
        if (!*value) return errbuf_set(err, errlen, "%s: must not be empty", key);
        char *d = strdup(value);
        if (!d) return errbuf_set(err, errlen, "out of memory");
        char **slot = (char **)field;
        free(*slot);
        *slot = d;
        return 0;
    }
    case CFG_TYPE_INT:
        if (parse_int(value, k->min, k->max, &v) != 0)
            return errbuf_set(err, errlen, "%s: '%s' is not an integer in %lld..%lld", key, value,
                           k->min, k->max);
        *(int *)field = (int)v;
        if (strcmp(key, "workers") == 0) c->workers_explicit = true;
        return 0;
    case CFG_TYPE_SIZE:
        if (parse_size(value, k->min, k->max, &v) != 0)
            return errbuf_set(err, errlen,
                           "%s: '%s' is not a size in %lld..%lld bytes (suffix K, M or G allowed)",
                           key, value, k->min, k->max);
        *(size_t *)field = (size_t)v;
        return 0;
    case CFG_TYPE_BOOL:
        if (parse_bool(value, (bool *)field) != 0)
            return errbuf_set(err, errlen, "%s: '%s' is not a boolean (true/false, yes/no, on/off)",
                           key, value);
        return 0;
    }
    return errbuf_set(err, errlen, "%s: unhandled key type", key);
}

/* ------------------------------------------------------------------ file */

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

/* Split one line in place into key and value; comments and quotes handled. Returns 1 for a
 * key line, 0 for a blank/comment line, -1 with err on a syntax error. */
static int line_split(char *line, char **key, char **value, char *err, size_t errlen) {
    /* strip the comment: the first # outside double quotes */
    bool quoted = false;
    for (char *p = line; *p; p++) {
        if (*p == '"') quoted = !quoted;
        else if (*p == '#' && !quoted) { *p = '\0'; break; }
    }
    if (quoted) return errbuf_set(err, errlen, "unterminated double quote");
    char *s = trim(line);
    if (!*s) return 0;
    char *eq = strchr(s, '=');
    if (!eq) return errbuf_set(err, errlen, "expected 'key = value', got '%s'", s);
    *eq = '\0';
    char *k = trim(s), *v = trim(eq + 1);
    if (!*k) return errbuf_set(err, errlen, "missing key before '='");
    for (char *p = k; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return errbuf_set(err, errlen, "bad key '%s' (letters, digits and _ only)", k);
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v[n - 1] = '\0';
        v++;
    } else if (strchr(v, '"')) {
        return errbuf_set(err, errlen, "quote the whole value: key = \"...\"");
    }
    *key = k;
    *value = v;
    return 1;
}

int config_load_file(pl_config *c, const char *path, char *err, size_t errlen) {
    int rc = -1;
    int first_line[CONFIG_KEY_COUNT] = {0};
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    FILE *f = fopen(path, "r");
    if (!f) return errbuf_set(err, errlen, "%s: cannot open config file: %s", path, strerror(errno));
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if ((size_t)len != strlen(line)) {
            errbuf_set(err, errlen, "%s:%d: NUL byte in line", path, lineno);
            goto cleanup;
        }
        char *key = NULL, *value = NULL, e[CONFIG_ERRLEN];
        int r = line_split(line, &key, &value, e, sizeof e);
        if (r < 0) {
            errbuf_set(err, errlen, "%s:%d: %s", path, lineno, e);
            goto cleanup;
        }
        if (r == 0) continue;
        const cfg_key *k = key_find(key);
        if (!k) {
            errbuf_set(err, errlen, "%s:%d: unknown key '%s' (prunelabd --help lists the keys)", path,
                    lineno, key);
            goto cleanup;
        }
        size_t ki = (size_t)(k - config_keys);
        if (first_line[ki]) {
            errbuf_set(err, errlen, "%s:%d: duplicate key '%s' (first set on line %d)", path, lineno,
                    key, first_line[ki]);
            goto cleanup;
        }
        first_line[ki] = lineno;
        if (config_set(c, key, value, e, sizeof e) != 0) {
            errbuf_set(err, errlen, "%s:%d: %s", path, lineno, e);
            goto cleanup;
        }
    }
    if (ferror(f)) {
        errbuf_set(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto cleanup;
    }
    rc = 0;
cleanup:
    free(line);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------ validation */

int config_validate(const pl_config *c, char *err, size_t errlen) {
    if (!c->listen_host || !c->data_dir || !c->executor || !c->engine_bin)
        return errbuf_set(err, errlen, "out of memory while reading the configuration");
    if (c->upload_max < c->body_max)
        return errbuf_set(err, errlen, "upload_max (%zu) must be at least body_max (%zu)",
                       c->upload_max, c->body_max);
    if (c->max_connections_per_ip > c->max_connections)
        return errbuf_set(err, errlen,
                       "max_connections_per_ip (%d) must not exceed max_connections (%d)",
                       c->max_connections_per_ip, c->max_connections);
    if (c->max_pending_connections > c->max_connections)
        return errbuf_set(err, errlen,
                       "max_pending_connections (%d) must not exceed max_connections (%d)",
                       c->max_pending_connections, c->max_connections);
    if (c->owner_running_cap > c->workers)
        return errbuf_set(err, errlen,
                       "owner_running_cap (%d) exceeds workers (%d): it would never bind; use 0 "
                       "for no cap",
                       c->owner_running_cap, c->workers);
    return 0;
}

int config_warnings(const pl_config *c, FILE *f) {
    int n = 0;
    if ((long long)c->workers * c->threads_per_cell > c->cores) {
        fprintf(f,
                "prunelabd: warning: workers (%d) x threads_per_cell (%d) = %lld exceeds the %d "
                "cores; cells will compete for CPU\n",
                c->workers, c->threads_per_cell, (long long)c->workers * c->threads_per_cell,
                c->cores);
        n++;
    }
    return n;
}

/* ------------------------------------------------------------------ command line */

void config_print_usage(const pl_config *c, FILE *f) {
    fprintf(f,
            "usage: prunelabd [--listen HOST:PORT] [--data-dir DIR] [--workers N] [--web-dir DIR]\n"
            "                 [--config FILE]\n"
            "       prunelabd --help | --version\n"
            "\n"
            "Serve the prunelab experiment API (REST under /api/v1, /healthz, /metrics) and the\n"
            "dashboard (at /).\n"
            "\n"
            "  --listen HOST:PORT  address to serve on (default %s:%d; port 0 = any free port)\n"
            "  --data-dir DIR      database, checkpoints and the port file (default %s)\n"
            "  --workers N         cells running at once (default %d: %d cores / %d thread(s)\n"
            "                      per cell; keep workers x threads_per_cell <= cores)\n"
            "  --web-dir DIR       dashboard files (default $PRUNELAB_WEB_DIR, the install\n"
            "                      directory, or web/ beside the binary)\n"
            "  --config FILE       `key = value` settings; the flags above override the file\n"
            "\n"
            "Config file keys:\n",
            c->listen_host, c->listen_port, c->data_dir, default_workers(c), c->cores,
            c->threads_per_cell);
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++)
        fprintf(f, "  %-24s %s\n", config_keys[i].name, config_keys[i].help);
    fprintf(f, "\nOn SIGTERM or SIGINT prunelabd stops accepting connections and exits 0.\n");
}

enum config_action config_from_args(pl_config *c, int argc, char **argv, char *err,
                                    size_t errlen) {
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"data-dir", required_argument, NULL, 'd'},
        {"workers", required_argument, NULL, 'w'},
        {"web-dir", required_argument, NULL, 'W'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = NULL, *data_dir = NULL, *workers = NULL, *web_dir = NULL, *file = NULL;
    char e[CONFIG_ERRLEN];
    opterr = 0;
    optind = 0; /* glibc: full re-initialisation, so the parser can run more than once */
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 'l': listen = optarg; break;
        case 'd': data_dir = optarg; break;
        case 'w': workers = optarg; break;
        case 'W': web_dir = optarg; break;
        case 'c': file = optarg; break;
        case 'h': config_print_usage(c, stdout); return CONFIG_ACTION_HELP;
        case 'V': printf("prunelabd %s\n", PACKAGE_VERSION); return CONFIG_ACTION_VERSION;
        case ':':
            errbuf_set(err, errlen, "option %s needs a value; try 'prunelabd --help'",
                    argv[optind - 1]);
            return CONFIG_ACTION_ERROR;
        default:
            errbuf_set(err, errlen, "unknown option '%s'; try 'prunelabd --help'", argv[optind - 1]);
            return CONFIG_ACTION_ERROR;
        }
    }
    if (optind < argc) {
        errbuf_set(err, errlen, "unexpected argument '%s'; try 'prunelabd --help'", argv[optind]);
        return CONFIG_ACTION_ERROR;
    }
    if (file && config_load_file(c, file, err, errlen) != 0) return CONFIG_ACTION_ERROR;
    struct { const char *flag, *key, *value; } flags[] = {
        {"--listen", "listen", listen},
        {"--data-dir", "data_dir", data_dir},
        {"--workers", "workers", workers},
        {"--web-dir", "web_dir", web_dir},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (!flags[i].value) continue;
        if (config_set(c, flags[i].key, flags[i].value, e, sizeof e) != 0) {
            /* config_set says "key: ..."; name the flag instead */
            size_t kl = strlen(flags[i].key);
            const char *msg = strncmp(e, flags[i].key, kl) == 0 && e[kl] == ':' ? e + kl + 2 : e;
            errbuf_set(err, errlen, "%s: %s", flags[i].flag, msg);
            return CONFIG_ACTION_ERROR;
        }
    }
    if (!c->workers_explicit) c->workers = default_workers(c);
    if (config_validate(c, err, errlen) != 0) return CONFIG_ACTION_ERROR;
    return CONFIG_ACTION_RUN;
}
