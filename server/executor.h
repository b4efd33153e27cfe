/* executor.h — runs experiment cells for the scheduler (DESIGN.md sections 1 and 6).
 *
 * An executor is an ops table behind one small struct, so that "local" (posix_spawn of
 * `prunelab cell` on this machine, executor_local.c) and a later "slurm" (`srun ... prunelab
 * cell`, same protocol) are interchangeable for the scheduler.
 *
 * Model of use. One thread (the scheduler's) owns the executor: it calls executor_start for a
 * claimed cell, then executor_poll in its loop; executor_poll multiplexes every running cell with
 * poll(2), parses their stdout JSON lines and calls the callbacks below from inside
 * executor_poll, on that same thread. executor_wake is the only call that other threads (or a
 * signal handler) may make: it interrupts a blocked executor_poll. Callbacks may call
 * executor_start, executor_cancel, executor_info and executor_list, but not executor_poll,
 * executor_kill_all or executor_free.
 *
 * A running cell is named by its cell id (the store's row id): ids are unique among running
 * cells, and an id stays valid until its on_exit callback has returned — there is no handle
 * pointer that could dangle.
 *
 * Outcome rules (executor_outcome.status), applied when the cell process has exited:
 *   done       a result event, then exit status 0;
 *   failed     an error event: code and message from it; retriable unless the code is
 *              "bad_spec" or "bad_model". Also a protocol violation on stdout (a line that is not
 *              a JSON object with a string "event", a line longer than max_line, a malformed
 *              result/error event, a second result/error): code "protocol", retriable; the cell
 *              is terminated as soon as the violation is seen;
 *   died       no result and a signal or an exit status (0 included), or a result followed by a
 *              non-zero status or a signal: code "died", retriable, the message names the signal
 *              or status; code "hung" when it was killed because no stdout line came for hang_s;
 *   cancelled  executor_cancel (code "cancelled", not retriable) or executor_kill_all (code
 *              "shutdown", retriable) — unless the cell completed (result + exit 0) first, which
 *              is then "done".
 * Whatever the status, the outcome carries the last stderr_tail bytes of stderr.
 *
 * Process hygiene (local executor): each cell is the leader of its own process group; stdin is
 * fed the spec without blocking the poll loop; only fds 0, 1, 2 reach the child; every signal
 * disposition and the signal mask are reset to defaults in the child. Terminating a cell sends
 * SIGTERM to the group, then SIGKILL after grace_s. When the leader has exited, anything left in
 * its group is killed with SIGKILL and reaped (the executor makes the daemon a child subreaper,
 * see executor_config.subreaper), and on_exit is called once the group is empty (or after a few
 * seconds, if something escaped). Requirements on the rest of the daemon: SIGCHLD must not be
 * ignored (SIG_IGN would auto-reap and hide exit statuses) and nothing may call wait() or
 * waitpid(-1, ...).
 *
 * Times are monotonic seconds (executor_clock). Strings passed in are copied. */
#ifndef PL_EXECUTOR_H
#define PL_EXECUTOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define EXECUTOR_ERRLEN 512

typedef enum {
    EXECUTOR_DONE,
    EXECUTOR_FAILED,
    EXECUTOR_DIED,
    EXECUTOR_CANCELLED,
    EXECUTOR_STATUS_COUNT
} executor_status;

/* "done", "failed", "died", "cancelled"; "?" out of range. */
const char *executor_status_name(executor_status s);

/* What became of one cell; passed to on_exit. Every pointer is owned by the executor and valid
 * only during the callback (copy or json_incref what you keep). */
typedef struct {
    int64_t cell_id;
    executor_status status;
    int retriable;           /* 1: another attempt may succeed */
    const char *code;        /* "ok" (done) | the error event's code | "protocol" | "died" | "hung" |
                              * "cancelled" | "shutdown"; never NULL */
    const char *message;     /* for humans, never NULL ("" when done) */
    int exit_code;           /* exit status, or -1 when killed by a signal */
    int term_signal;         /* the signal that killed the leader, 0 if it exited */
    const char *signal_name; /* "SIGKILL", ... or NULL */
    const char *stderr_tail; /* the last stderr_tail bytes of stderr, valid UTF-8, never NULL */
    const json_t *metrics;   /* the result event's metrics (also when a result was followed by a
                              * bad exit), else NULL. Store it only when status is done. */
    pid_t pid;               /* the leader, = the process group id */
    double started;          /* executor_clock() at start */
    double wall_s;           /* start to exit */
    int n_lines;             /* stdout lines received */
} executor_outcome;

/* Callbacks, each optional (NULL). user is executor_callbacks.user. */
typedef struct {
    void *user;
    /* A progress event. phase is NULL and fraction / overall NaN when absent or null; line is the
     * whole parsed event (heartbeat repeats carry "heartbeat": true). */
    void (*on_progress)(void *user, int64_t cell_id, const char *phase, double fraction, double overall,
                        const json_t *line);
    /* The result event, when it arrives (the cell is not done before on_exit says so). */
    void (*on_result)(void *user, int64_t cell_id, const json_t *metrics);
    /* An error event. */
    void (*on_error)(void *user, int64_t cell_id, const char *code, const char *message);
    /* The cell is over (exactly once per started cell). */
    void (*on_exit)(void *user, const executor_outcome *outcome);
} executor_callbacks;

typedef struct {
    const char *bin;         /* default engine binary (run as `BIN cell`); required unless every
                              * request names its own */
    const char *coretype;    /* OPENBLAS_CORETYPE for every cell (chosen once by the daemon);
                              * NULL = the child inherits the daemon's environment as is */
    int threads;             /* default thread count per cell (OPENBLAS_NUM_THREADS and
                              * OMP_NUM_THREADS); 0 = leave them as inherited */
    double grace_s;          /* SIGTERM -> SIGKILL delay (default 5) */
    double hang_s;           /* no stdout line for this long -> terminated, died "hung"; 0 = never
                              * (default 120; the engine writes a line at least every 2 s) */
    size_t max_line;         /* longest stdout line accepted (default 1 MiB) */
    size_t stderr_tail;      /* stderr bytes kept (default 8 KiB) */
    int subreaper;           /* 1 (default): make this process a child subreaper (prctl), so that
                              * orphans of a cell are reaped here and never outlive its outcome */
    int nice;                /* each cell runs this many nice steps below the daemon (capped at
                              * 19; 0 = same priority): numerics yield the CPU to the daemon's
                              * request threads */
    unsigned long long mem_limit; /* RLIMIT_AS of each cell process, bytes (0 = none); a cell that
                              * dies after hitting it is reported with the limit in its message */
} executor_config;

void executor_config_default(executor_config *c);

/* One cell to start. Only cell_id and spec are required. */
typedef struct {
    int64_t cell_id;
    const char *spec;        /* the cell spec, JSON text, written to the child's stdin */
    const char *bin;         /* NULL = executor_config.bin */
    int threads;             /* > 0 overrides executor_config.threads */
    const char *const *env;  /* extra "NAME=value" entries (NULL-terminated), override the rest */
} executor_request;

/* A running cell, as seen by the scheduler (lease extension, hung-cell detection, /metrics). */
typedef struct {
    int64_t cell_id;
    pid_t pid;               /* leader = process group id */
    double started;          /* executor_clock() at start */
    double last_line;        /* time of the last stdout line (= started before the first) */
    int n_lines;
    double overall;          /* last progress "overall", NaN before the first */
    char phase[32];          /* last progress phase, "" before the first */
    int terminating;         /* SIGTERM sent (cancel, shutdown, hang or protocol violation) */
} executor_cell_info;

typedef struct executor executor;

struct executor_ops {
    const char *name; /* "local", "slurm" */
    int (*start)(executor *ex, const executor_request *req, char *err, size_t errlen);
    int (*poll)(executor *ex, int timeout_ms);
    int (*cancel)(executor *ex, int64_t cell_id);
    int (*kill_all)(executor *ex, double grace_s);
    int (*info)(executor *ex, int64_t cell_id, executor_cell_info *out);
    int (*list)(executor *ex, executor_cell_info *out, int max);
    void (*wake)(executor *ex);
    void (*free)(executor *ex);
};

/* The common part; an implementation embeds it as its first member. */
struct executor {
    const struct executor_ops *ops;
    executor_config cfg;     /* strings owned (copied) */
    executor_callbacks cb;
};

/* Monotonic clock, seconds. */
double executor_clock(void);

/* The executor registered under name ("local"; executor.c's table), started with cfg and cb as
 * its init function does. Returns NULL with err for an unknown name or a failed init. Free with
 * executor_free. */
executor *executor_new(const char *name, const executor_config *cfg, const executor_callbacks *cb, char *err,
                       size_t errlen);
/* 1 if name is a registered executor, else 0. */
int executor_known(const char *name);
/* The registered names, ", "-separated, into buf (truncated to len). */
void executor_names(char *buf, size_t len);

/* The local executor. cfg NULL = defaults. Returns NULL with err on failure (SIGCHLD ignored,
 * no memory, pipe creation failed). Free with executor_free. */
executor *executor_local_init(const executor_config *cfg, const executor_callbacks *cb, char *err,
                              size_t errlen);

/* Start a cell. Returns 0, or -1 with err (duplicate running cell id, no binary, spawn failed:
 * e.g. "cannot run /x/prunelab: No such file or directory"); on -1 no callback follows. */
int executor_start(executor *ex, const executor_request *req, char *err, size_t errlen);

/* Wait up to timeout_ms (0 = just look, < 0 = until something happens) for output, exits and
 * deadlines; deliver callbacks. Returns the number of cells whose on_exit was called, or -1 on a
 * poll(2) failure (errno set). */
int executor_poll(executor *ex, int timeout_ms);

/* Terminate a running cell (SIGTERM to its group, SIGKILL after grace_s); its on_exit reports
 * cancelled. Returns 0, or -1 when no cell with that id is running. Calling it twice is harmless. */
int executor_cancel(executor *ex, int64_t cell_id);

/* Daemon shutdown: terminate every running cell with the given grace (< 0 = cfg.grace_s) and
 * poll until all have exited (their on_exit reports cancelled / "shutdown"). Blocks for at most
 * about grace + 10 s. Returns 0 when none is left, -1 otherwise. */
int executor_kill_all(executor *ex, double grace_s);

/* Snapshot of one running cell: 0, or -1 when not running. */
int executor_info(executor *ex, int64_t cell_id, executor_cell_info *out);

/* Snapshot of up to max running cells into out (may be NULL with max 0). Returns the number
 * running (which may exceed max). */
int executor_list(executor *ex, executor_cell_info *out, int max);

/* Number of running cells. */
int executor_running(executor *ex);

/* Interrupt executor_poll from any thread or a signal handler (async-signal-safe). */
void executor_wake(executor *ex);

/* SIGKILL every remaining group, reap, release everything; no callbacks. NULL-safe. */
void executor_free(executor *ex);

#endif
