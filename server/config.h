/* config.h — prunelabd settings: built-in defaults, a `key = value` file, command-line flags.
 *
 * Precedence, lowest first: defaults (config_init), the file named by --config, the flags.
 * Defaults serve one machine with no configuration: listen 127.0.0.1:8080, data in ./var,
 * anonymous reads allowed, and as many workers as the cores allow.
 *
 * Worker rule. Each running cell uses threads_per_cell BLAS threads, and the daemon keeps
 * workers x threads_per_cell <= cores, so cells never compete for a core:
 *     default workers = max(1, cores / threads_per_cell)
 *     (2 cores, 1 thread per cell -> 2 workers; 8 cores, 2 threads per cell -> 4 workers).
 * An explicit `workers` above that is accepted (a laptop may want to oversubscribe) and
 * config_warnings() says so.
 *
 * File format: one `key = value` per line; `#` starts a comment (outside double quotes);
 * blank lines ignored; a value may be double-quoted to keep `#` or surrounding spaces.
 * Unknown keys, duplicate keys and bad values are refused with the line number.
 * Sizes accept a K, M or G suffix (powers of 1024); booleans true/false, yes/no, on/off, 1/0.
 * `prunelabd --help` prints every key (config_print_usage). */
#ifndef PL_SERVER_CONFIG_H
#define PL_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CONFIG_ERRLEN 512

typedef struct {
    /* HTTP */
    char *listen_host;         /* "127.0.0.1"; an IPv6 address is written [::1]:8080 */
    int listen_port;           /* 8080; 0 = any free port (the bound port is reported) */
    size_t body_max;           /* request body cap for ordinary routes, bytes (1 MiB) */
    size_t upload_max;         /* cap for routes that stream to a file (model upload, 512 MiB) */
    int uploads_per_user;      /* model uploads one user may stream at once (2; 0 = no limit) */
    int max_connections;       /* simultaneous connections (256) */
    int max_connections_per_ip;/* simultaneous connections from one address (64) */
    int connection_timeout_s;  /* idle connection timeout, seconds (60) */
    int header_timeout_s;      /* to send a request's complete headers, seconds (10) */
    size_t body_min_rate;      /* slowest body, bytes/s after header_timeout_s (1K; 0 = none) */
    int max_pending_connections;/* headers not complete yet (0 = 3/4 of max_connections) */
    int max_pending_per_ip;    /* of those, from one address (0 = max_connections_per_ip / 2) */
    bool log_requests;         /* one access-log line per request on stderr (true) */
    /* storage */
    char *data_dir;            /* "./var": prunelab.db, models/, tmp/, prunelabd.port */
    char *web_dir;             /* dashboard files; NULL = $PRUNELAB_WEB_DIR, the install
                                  directory, or web/ beside the binary (static.h) */
    /* auth */
    bool anonymous_reads;      /* GET without a token allowed (true); writes always need one */
    /* scheduling and execution */
    int cores;                 /* online CPUs, detected (not a key) */
    int threads_per_cell;      /* BLAS threads of each cell (1) */
    int workers;               /* cells running at once (cores / threads_per_cell) */
    bool workers_explicit;     /* workers came from the file or the flags */
    int max_attempts;          /* runs of a cell before it is failed (2) */
    int owner_running_cap;     /* running cells per owner; 0 = fair share: while several owners
                                  have queued cells each gets ceil(workers / owners), a lone
                                  owner every worker (0) */
    size_t max_cell_memory;    /* estimated memory one cell may ask for, bytes (4 GiB): larger
                                  jobs are refused at submission; cells run under RLIMIT_AS of
                                  twice this plus 1 GiB */
    int lease_s;               /* cell lease, renewed while the cell runs (30) */
    int cell_nice;             /* cells run this many nice steps below the daemon (10) */
    int grace_s;               /* SIGTERM / cancel: seconds before SIGKILL or requeue (20) */
    int max_cells_per_job;     /* grid size cap (10000) */
    char *executor;            /* "local" (the only one so far) */
    char *engine_bin;          /* prunelab binary: next to prunelabd if present, else "prunelab" */
} pl_config;

/* Fill c with the defaults above (detecting the core count). Never fails; config_free later. */
void config_init(pl_config *c);

/* Free the strings of c; c may be NULL. */
void config_free(pl_config *c);

/* Apply a config file over c. Returns 0, or -1 with err ("FILE:LINE: message"); c may then
 * hold some of the file's values (callers exit). */
int config_load_file(pl_config *c, const char *path, char *err, size_t errlen);

/* Set one key from text (file and tests use it). Returns 0, or -1 with err "key: message". */
int config_set(pl_config *c, const char *key, const char *value, char *err, size_t errlen);

/* Parse "HOST:PORT", "[V6]:PORT" or ":PORT" (host 127.0.0.1). Returns 0 or -1 with err; *host
 * is malloc'd (caller frees) only on success. */
int config_parse_listen(const char *s, char **host, int *port, char *err, size_t errlen);

/* Cross-field checks after everything is applied. Returns 0 or -1 with err. */
int config_validate(const pl_config *c, char *err, size_t errlen);

/* Write one "prunelabd: warning: ..." line per advisory (oversubscribed cores) to f.
 * Returns the number of warnings. */
int config_warnings(const pl_config *c, FILE *f);

/* Outcome of config_from_args. */
enum config_action {
    CONFIG_ACTION_RUN = 0,     /* c is ready */
    CONFIG_ACTION_HELP,        /* --help: usage printed to stdout, exit 0 */
    CONFIG_ACTION_VERSION,     /* --version printed, exit 0 */
    CONFIG_ACTION_ERROR        /* err holds the message (usage errors end with a hint) */
};

/* The whole chain for `prunelabd [--listen HOST:PORT] [--data-dir DIR] [--workers N]
 * [--web-dir DIR] [--config FILE]`: defaults, then the file, then the flags, then config_validate.
 * argv[0] is the program name. c must be config_init'ed. */
enum config_action config_from_args(pl_config *c, int argc, char **argv, char *err,
                                    size_t errlen);

/* Usage text and the key list (defaults shown from c). */
void config_print_usage(const pl_config *c, FILE *f);

#endif
