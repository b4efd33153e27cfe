/* executor_local.c — the "local" executor: each cell is `BIN cell` spawned on this machine
 * (executor.h has the contract and the outcome rules; engine/cell.h the protocol).
 *
 * Design.
 * - Processes: proc.c (proc.h) is the one process runner; this file only decides when to
 *   spawn, signal and reap. proc_spawn starts the child as leader of its own process group with
 *   default signal dispositions, an empty signal mask and exactly fds 0/1/2, here a socketpair
 *   (stdin) and two pipes (stdout, stderr), so nothing of the daemon leaks even if some library
 *   forgot O_CLOEXEC. Our own ends are O_CLOEXEC and non-blocking. stdin is a socket so that
 *   writing to a child that has gone away gives EPIPE (send MSG_NOSIGNAL) instead of SIGPIPE;
 *   the spec is written from the poll loop as the child reads it, never blocking.
 * - Environment: the daemon's, minus the names we override: OPENBLAS_CORETYPE (cfg.coretype),
 *   OPENBLAS_NUM_THREADS and OMP_NUM_THREADS (threads), OMP_WAIT_POLICY=PASSIVE, then the
 *   request's extra entries (last one wins, no duplicate names).
 * - One poll loop (executor_poll) serves every cell: the wake pipe, per cell stdin (POLLOUT),
 *   stdout and stderr (POLLIN) and a pidfd (readable when the leader exits; without pidfd the
 *   loop wakes every 50 ms). stdout goes through a line splitter (lines up to cfg.max_line
 *   bytes, each parsed as JSON and dispatched to the callbacks); stderr into a ring buffer of the
 *   last cfg.stderr_tail bytes.
 * - Life of a cell: RUNNING -> (leader exit seen with proc_exited, which does not reap, so the
 *   zombie leader keeps the process group id reserved) SIGKILL to the whole group to remove
 *   leftovers -> REAPING: proc_reap_group reaps the leader and any leftover that was reparented
 *   to us (we are a child subreaper), until proc_group_gone (or 5 s passed) -> outcome decided,
 *   stdout/stderr drained, on_exit, freed. A signal (proc_kill) is only ever sent while the
 *   leader is unreaped, so a reused pid can never be hit.
 * - Termination (cancel, shutdown, hang, protocol violation): SIGTERM to the group, SIGKILL to the
 *   group at grace_s later if the leader is still there.
 * Ownership: the executor owns every cell record, fd, buffer and the parsed result; callbacks
 * see borrowed pointers. Memory failures on the hot path turn into a protocol failure of that
 * one cell, never an abort. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "executor.h"
#include "errbuf.h"
#include "proc.h"

extern char **environ;

#define READ_CHUNK 65536
#define READS_PER_POLL 16     /* fairness: at most this many reads per fd per poll round */
#define REAP_CAP_S 5.0        /* how long leftovers of a group may delay the outcome */
#define NOPIDFD_TICK_MS 50
#define REAP_TICK_MS 10
#define MAX_OVERRIDES 64

/* ------------------------------------------------------------------ small helpers */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int fd_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Move *fd to a number >= 3 (so the dup2 onto 0/1/2 in the child cannot clobber another of
 * our fds when the daemon runs with a closed stdin). Returns 0 or -1. */
static int fd_above2(int *fd)
{
    if (*fd >= 3) return 0;
    int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0) return -1;
    close(*fd);
    *fd = nfd;
    return 0;
}

static void fd_close(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void signal_name(int sig, char *buf, size_t n)
{
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(buf, n, "SIG%s", abbrev);
    else
        snprintf(buf, n, "signal %d", sig);
}

/* Replace what is not valid UTF-8 (and NUL) with '?', in place; jansson and SQLite TEXT then
 * accept the text. */
static void utf8_sanitize(unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b >= 0x01 && b < 0x80) {
            i++;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        } else {
            s[i++] = '?';
            continue;
        }
        int ok = i + need < n;
        for (size_t k = 1; ok && k <= need; k++) {
            unsigned char cb = s[i + k];
            if (k == 1 ? (cb < lo || cb > hi) : (cb < 0x80 || cb > 0xBF)) ok = 0;
        }
        if (!ok) {
            s[i++] = '?';
            continue;
        }
        i += need + 1;
    }
}

/* ------------------------------------------------------------------ cell records */

typedef enum { CELL_RUNNING, CELL_REAPING, CELL_GONE } cell_stage;
typedef enum { CANCEL_NONE, CANCEL_USER, CANCEL_SHUTDOWN } cancel_kind;

typedef struct local_cell {
    struct local_cell *next;
    int64_t id;
    pid_t pid;                 /* leader = pgid */
    int fd_in, fd_out, fd_err; /* our ends, -1 once closed */
    int fd_pid;                /* pidfd of the leader, -1 when unavailable or after exit */
    cell_stage stage;
    /* stdin: the spec, sent from spec_off on; freed once sent */
    char *spec;
    size_t spec_len, spec_off;
    /* stdout line splitter: line_len bytes without a complete line yet */
    char *line;
    size_t line_len, line_cap;
    /* stderr ring: byte k of the stream is at ring[k % ring_cap] */
    char *ring;
    size_t ring_cap, ring_total;
    /* heartbeat and progress */
    double started, last_line;
    int n_lines;
    double overall;
    char phase[32];
    /* terminal events */
    int n_terminal;
    json_t *metrics;           /* result metrics (owned reference) */
    char *err_code, *err_msg;  /* error event */
    char *proto_msg;           /* first protocol violation */
    /* termination */
    cancel_kind cancel;
    int hung;
    int term_sent, kill_sent;
    double kill_at;            /* SIGKILL deadline once term_sent */
    /* exit of the leader */
    int status_known, exited_normally, exit_code, term_signal, core_dumped;
    int leader_reaped;
    double exited_at, reap_until;
    /* indices into the poll array of the current round, -1 = not polled */
    int pi_in, pi_out, pi_err, pi_pid;
} local_cell;

typedef struct {
    executor base;             /* first member: executor* <-> local_executor* */
    local_cell *cells;
    int wake_r, wake_w;
    struct pollfd *pfd;
    size_t pfd_cap;
} local_executor;

static local_cell *cell_find(local_executor *ex, int64_t id)
{
    for (local_cell *c = ex->cells; c; c = c->next)
        if (c->id == id) return c;
    return NULL;
}

static void cell_free(local_cell *c)
{
    if (!c) return;
    fd_close(&c->fd_in);
    fd_close(&c->fd_out);
    fd_close(&c->fd_err);
    fd_close(&c->fd_pid);
    free(c->spec);
    free(c->line);
    free(c->ring);
    json_decref(c->metrics);
    free(c->err_code);
    free(c->err_msg);
    free(c->proto_msg);
    free(c);
}

/* SIGTERM to the group now (once), SIGKILL at now + grace. Only while the leader is unreaped. */
static void cell_terminate(local_cell *c, double grace_s)
{
    if (c->stage != CELL_RUNNING) return; /* the group is being killed and reaped already */
    double now = executor_clock();
    if (!c->term_sent) {
        c->term_sent = 1;
        proc_kill(c->pid, SIGTERM);
        c->kill_at = now + grace_s;
    } else if (now + grace_s < c->kill_at) {
        c->kill_at = now + grace_s;
    }
}

__attribute__((format(printf, 3, 4))) static void cell_protocol(local_executor *ex, local_cell *c,
                                                                const char *fmt, ...)
{
    if (!c->proto_msg) {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        c->proto_msg = strdup(buf);
        if (!c->proto_msg) c->proto_msg = strdup("protocol violation");
    }
    c->line_len = 0;
    cell_terminate(c, ex->base.cfg.grace_s);
}

/* Send what the child can take of the spec; close stdin when all is sent or the child is gone. */
static void cell_feed_stdin(local_cell *c)
{
    while (c->fd_in >= 0 && c->spec_off < c->spec_len) {
        ssize_t n = send(c->fd_in, c->spec + c->spec_off, c->spec_len - c->spec_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->spec_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            break; /* EPIPE, ECONNRESET: the child does not read its stdin */
        }
    }
    fd_close(&c->fd_in);
    free(c->spec);
    c->spec = NULL;
}

static double json_number_or_nan(const json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* One stdout line (without its newline): parse and dispatch. */
static void cell_line(local_executor *ex, local_cell *c, const char *s, size_t n)
{
    const executor_callbacks *cb = &ex->base.cb;
    if (c->proto_msg) return; /* terminating: the rest of the stream is ignored */
    if (n && s[n - 1] == '\r') n--;
    c->last_line = executor_clock();
    c->n_lines++;
    size_t k = 0;
    while (k < n && (s[k] == ' ' || s[k] == '\t')) k++;
    if (k == n) return; /* a blank line only counts as a heartbeat */

    json_error_t jerr;
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
    const json_t *ev = j ? json_object_get(j, "event") : NULL;
    if (!j || !json_is_object(j) || !json_is_string(ev)) {
        char what[200];
        if (j)
            snprintf(what, sizeof what, "not an object with a string \"event\"");
        else
            snprintf(what, sizeof what, "not JSON (%s at column %d)", jerr.text, jerr.column);
        cell_protocol(ex, c, "protocol: stdout line %d is %s: %.*s", c->n_lines, what, n < 80 ? (int)n : 80, s);
        json_decref(j);
        return;
    }
    const char *event = json_string_value(ev);
    if (strcmp(event, "progress") == 0) {
        const json_t *ph = json_object_get(j, "phase");
        const char *phase = json_is_string(ph) ? json_string_value(ph) : NULL;
        double fraction = json_number_or_nan(json_object_get(j, "fraction"));
        double overall = json_number_or_nan(json_object_get(j, "overall"));
        if (phase) snprintf(c->phase, sizeof c->phase, "%s", phase);
        if (isfinite(overall)) c->overall = overall;
        if (cb->on_progress) cb->on_progress(cb->user, c->id, phase, fraction, overall, j);
    } else if (strcmp(event, "result") == 0 || strcmp(event, "error") == 0) {
        int is_result = event[0] == 'r';
        if (c->n_terminal > 0) {
            cell_protocol(ex, c, "protocol: a second result/error event (stdout line %d)", c->n_lines);
        } else if (is_result) {
            json_t *m = json_object_get(j, "metrics");
            if (!json_is_object(m)) {
                cell_protocol(ex, c, "protocol: result event without a metrics object (stdout line %d)",
                              c->n_lines);
            } else {
                c->n_terminal++;
                c->metrics = json_incref(m);
                if (cb->on_result) cb->on_result(cb->user, c->id, m);
            }
        } else {
            const json_t *code = json_object_get(j, "code");
            const json_t *msg = json_object_get(j, "message");
            if (!json_is_string(code) || json_string_length(code) == 0) {
                cell_protocol(ex, c, "protocol: error event without a code (stdout line %d)", c->n_lines);
            } else {
                c->n_terminal++;
                c->err_code = strdup(json_string_value(code));
                c->err_msg = strdup(json_is_string(msg) ? json_string_value(msg) : "");
                if (!c->err_code || !c->err_msg)
                    cell_protocol(ex, c, "protocol: out of memory storing the error event");
                else if (cb->on_error)
                    cb->on_error(cb->user, c->id, c->err_code, c->err_msg);
            }
        }
    }
    /* other events: ignored (forward compatible), they still count as a heartbeat */
    json_decref(j);
}

/* Read stdout: up to READS_PER_POLL chunks, or until EAGAIN / EOF when drain is set. */
static void cell_read_stdout(local_executor *ex, local_cell *c, int drain)
{
    size_t max_line = ex->base.cfg.max_line;
    for (int round = 0; c->fd_out >= 0 && (drain || round < READS_PER_POLL); round++) {
        if (c->line_cap - c->line_len < READ_CHUNK) {
            size_t cap = c->line_len + READ_CHUNK;
            char *nb = realloc(c->line, cap);
            if (!nb) {
                cell_protocol(ex, c, "protocol: out of memory reading stdout");
                c->line_len = 0;
                if (!c->line) return;
                continue; /* keep draining into the old buffer */
            }
            c->line = nb;
            c->line_cap = cap;
        }
        ssize_t n = read(c->fd_out, c->line + c->line_len, c->line_cap - c->line_len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) { /* EOF (or a read error, treated alike): a last line without newline counts */
            if (c->line_len > 0 && !c->proto_msg) cell_line(ex, c, c->line, c->line_len);
            c->line_len = 0;
            fd_close(&c->fd_out);
            return;
        }
        if (c->proto_msg) continue; /* discard: the cell is being terminated */
        size_t old = c->line_len, start = 0, scan = old;
        c->line_len += (size_t)n;
        while (scan < c->line_len) {
            char *nl = memchr(c->line + scan, '\n', c->line_len - scan);
            if (!nl) break;
            size_t end = (size_t)(nl - c->line);
            if (end - start > max_line) {
                cell_protocol(ex, c, "protocol: stdout line %d is longer than %zu bytes", c->n_lines + 1, max_line);
                break;
            }
            cell_line(ex, c, c->line + start, end - start);
            start = end + 1;
            scan = start;
            if (c->proto_msg) break;
        }
        if (c->proto_msg) {
            c->line_len = 0;
            continue;
        }
        memmove(c->line, c->line + start, c->line_len - start);
        c->line_len -= start;
        if (c->line_len > max_line)
            cell_protocol(ex, c, "protocol: stdout line %d is longer than %zu bytes", c->n_lines + 1, max_line);
    }
}

static void ring_put(local_cell *c, const char *b, size_t n)
{
    size_t cap = c->ring_cap;
    if (n > cap) { /* only the last cap bytes can survive */
        b += n - cap;
        c->ring_total += n - cap;
        n = cap;
    }
    size_t at = c->ring_total % cap, first = cap - at < n ? cap - at : n;
    memcpy(c->ring + at, b, first);
    memcpy(c->ring, b + first, n - first);
    c->ring_total += n;
}

/* The stderr tail as a malloc'd string: starts at a line boundary when the ring wrapped (if one
 * is near the start), valid UTF-8. NULL only when out of memory. */
static char *ring_tail(const local_cell *c)
{
    size_t cap = c->ring_cap, n = c->ring_total < cap ? c->ring_total : cap;
    char *t = malloc(n + 1);
    if (!t) return NULL;
    size_t from = c->ring_total - n;
    for (size_t k = 0; k < n; k++) t[k] = c->ring[(from + k) % cap];
    t[n] = '\0';
    size_t skip = 0;
    if (c->ring_total > cap) { /* the first line is cut: drop it if it is short */
        char *nl = memchr(t, '\n', n < 512 ? n : 512);
        if (nl) skip = (size_t)(nl - t) + 1;
        else
            while (skip < n && ((unsigned char)t[skip] & 0xC0) == 0x80) skip++;
    }
    memmove(t, t + skip, n - skip + 1);
    utf8_sanitize((unsigned char *)t, n - skip);
    return t;
}

static void cell_read_stderr(local_cell *c, int drain)
{
    char buf[16384];
    for (int round = 0; c->fd_err >= 0 && (drain || round < READS_PER_POLL); round++) {
        ssize_t n = read(c->fd_err, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            fd_close(&c->fd_err);
            return;
        }
        ring_put(c, buf, (size_t)n);
    }
}

/* Has the leader exited? Looks without reaping (WNOWAIT), so the zombie keeps the group id
 * reserved while we SIGKILL whatever is left in the group. */
static void cell_check_exit(local_cell *c)
{
    proc_exit how;
    int r = proc_exited(c->pid, &how);
    if (r == 0) return; /* still running */
    c->exited_at = executor_clock();
    if (r == 1) {
        c->status_known = 1;
        c->exited_normally = !how.signaled;
        c->exit_code = how.signaled ? -1 : how.code;
        c->term_signal = how.sig;
        c->core_dumped = how.core_dumped;
        proc_kill(c->pid, SIGKILL); /* leftovers of the group; the zombie leader pins the pgid */
    } else {
        /* ECHILD: reaped behind our back (SIGCHLD ignored, or a stray wait): status lost, and
         * the group id may no longer be ours, so no signal is sent */
        c->status_known = 0;
        c->exit_code = -1;
        c->leader_reaped = 1;
    }
    fd_close(&c->fd_pid);
    c->stage = CELL_REAPING;
    c->reap_until = c->exited_at + REAP_CAP_S;
}

/* Reap the leader and leftovers of the group that are our children; GONE when the group is
 * empty or REAP_CAP_S has passed. */
static void cell_reap(local_cell *c, double now)
{
    int st;
    proc_reap_group(c->pid, &c->leader_reaped);
    if (!c->leader_reaped) { /* e.g. the group id changed under us: reap the leader directly */
        int r = proc_reap(c->pid, 1, &st);
        if (r == 1 || (r < 0 && errno == ECHILD)) c->leader_reaped = 1;
    }
    if (c->leader_reaped && proc_group_gone(c->pid)) {
        c->stage = CELL_GONE;
        return;
    }
    if (now >= c->reap_until) {
        if (!c->leader_reaped) { /* unreaped, so its pid (and group id) are still ours */
            proc_kill(c->pid, SIGKILL);
            proc_reap(c->pid, 0, &st);
            c->leader_reaped = 1;
        }
        c->stage = CELL_GONE;
    }
}

/* Decide the outcome of a GONE cell and call on_exit. */
static void cell_report(local_executor *ex, local_cell *c)
{
    const executor_callbacks *cb = &ex->base.cb;
    cell_read_stdout(ex, c, 1);
    cell_read_stderr(c, 1);
    char *tail = ring_tail(c);
    char sig[32] = "", msg[768];
    if (c->term_signal) signal_name(c->term_signal, sig, sizeof sig);
    char how[96];
    if (!c->status_known)
        snprintf(how, sizeof how, "exited with an unknown status (reaped elsewhere)");
    else if (c->term_signal)
        snprintf(how, sizeof how, "killed by %s%s", sig, c->core_dumped ? " (core dumped)" : "");
    else
        snprintf(how, sizeof how, "exited with status %d", c->exit_code);

    executor_outcome o;
    memset(&o, 0, sizeof o);
    o.cell_id = c->id;
    o.exit_code = c->status_known && c->exited_normally ? c->exit_code : -1;
    o.term_signal = c->term_signal;
    o.signal_name = c->term_signal ? sig : NULL;
    o.stderr_tail = tail ? tail : "";
    o.metrics = c->metrics;
    o.pid = c->pid;
    o.started = c->started;
    o.wall_s = c->exited_at - c->started;
    o.n_lines = c->n_lines;
    msg[0] = '\0';
    int clean_result = c->metrics && !c->proto_msg && c->status_known && c->exited_normally && c->exit_code == 0;
    if (clean_result) {
        o.status = EXECUTOR_DONE;
        o.code = "ok";
    } else if (c->cancel != CANCEL_NONE) {
        o.status = EXECUTOR_CANCELLED;
        o.code = c->cancel == CANCEL_USER ? "cancelled" : "shutdown";
        o.retriable = c->cancel == CANCEL_SHUTDOWN;
        snprintf(msg, sizeof msg, "%s; %s", c->cancel == CANCEL_USER ? "cancelled" : "daemon shutdown", how);
    } else if (c->proto_msg) {
        o.status = EXECUTOR_FAILED;
        o.code = "protocol";
        o.retriable = 1;
        snprintf(msg, sizeof msg, "%s; %s", c->proto_msg, how);
    } else if (c->err_code) {
        o.status = EXECUTOR_FAILED;
        o.code = c->err_code;
        o.retriable = strcmp(c->err_code, "bad_spec") != 0 && strcmp(c->err_code, "bad_model") != 0;
        snprintf(msg, sizeof msg, "%s", c->err_msg);
    } else if (c->hung) {
        o.status = EXECUTOR_DIED;
        o.code = "hung";
        o.retriable = 1;
        snprintf(msg, sizeof msg, "no output for %g s; %s", ex->base.cfg.hang_s, how);
    } else {
        o.status = EXECUTOR_DIED;
        o.code = "died";
        o.retriable = 1;
        snprintf(msg, sizeof msg, "%s %s", how, c->metrics ? "after its result" : "without a result");
    }
    /* a cell that ran out of address space under the cap fails for good, naming the cap */
    unsigned long long lim = ex->base.cfg.mem_limit;
    if (lim && (o.status == EXECUTOR_DIED || o.status == EXECUTOR_FAILED) && tail &&
        (strstr(tail, "out of memory") || strstr(tail, "Cannot allocate memory"))) {
        size_t n = strlen(msg);
        snprintf(msg + n, sizeof msg - n, "; the cell ran out of memory under its limit (RLIMIT_AS %llu MiB, "
                 "from max_cell_memory)", lim >> 20);
        o.status = EXECUTOR_FAILED;
        o.code = "memory_limit";
        o.retriable = 0;
    }
    utf8_sanitize((unsigned char *)msg, strlen(msg));
    o.message = msg;
    if (cb->on_exit) cb->on_exit(cb->user, &o);
    free(tail);
}

/* ------------------------------------------------------------------ environment */

static size_t env_key_len(const char *entry)
{
    const char *eq = strchr(entry, '=');
    return eq ? (size_t)(eq - entry) : strlen(entry);
}

static int env_same_key(const char *a, const char *b)
{
    size_t la = env_key_len(a);
    return la == env_key_len(b) && memcmp(a, b, la) == 0;
}

/* environ minus every name in over[], then over[] (a later entry replaces an earlier one with
 * the same name). Returns a malloc'd NULL-terminated array of borrowed strings, NULL when out of
 * memory. */
static char **env_build(char *const *over, int n_over)
{
    size_t n_env = 0;
    for (char **e = environ; e && *e; e++) n_env++;
    char **out = malloc((n_env + (size_t)n_over + 1) * sizeof *out);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        int overridden = 0;
        for (int j = 0; j < n_over && !overridden; j++) overridden = env_same_key(environ[i], over[j]);
        if (!overridden) out[k++] = environ[i];
    }
    for (int j = 0; j < n_over; j++) {
        int later = 0;
        for (int m = j + 1; m < n_over && !later; m++) later = env_same_key(over[j], over[m]);
        if (!later) out[k++] = over[j];
    }
    out[k] = NULL;
    return out;
}

/* Append a formatted "NAME=value" to over[] (room for it is the caller's check). Returns 0 or
 * -1 when out of memory. */
__attribute__((format(printf, 3, 4))) static int over_add(char **over, int *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&over[*n], fmt, ap);
    va_end(ap);
    if (r < 0) return -1;
    (*n)++;
    return 0;
}

/* ------------------------------------------------------------------ start */

/* The three channels of a cell being started; [0] is our end, [1] the child's, -1 = closed. */
typedef struct {
    int in[2];  /* stdin: a socketpair */
    int out[2]; /* stdout: a pipe */
    int err[2]; /* stderr: a pipe */
} cell_fds;

/* Refuse a request without a spec or a binary, or for a cell id that is running. Returns 0, or
 * -1 with err. */
static int start_check(local_executor *ex, const executor_request *req, const char *bin, char *err, size_t errlen)
{
    if (!req || !req->spec) {
        errbuf_set(err, errlen, "executor: no spec");
        return -1;
    }
    if (!bin || !*bin) {
        errbuf_set(err, errlen, "executor: no engine binary configured");
        return -1;
    }
    if (cell_find(ex, req->cell_id)) {
        errbuf_set(err, errlen, "executor: cell %lld is already running", (long long)req->cell_id);
        return -1;
    }
    return 0;
}

/* A record for req with its spec copied and its stderr ring allocated, no fds yet. NULL when out
 * of memory. Free with cell_free. */
static local_cell *cell_new(const local_executor *ex, const executor_request *req)
{
    local_cell *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd_in = c->fd_out = c->fd_err = c->fd_pid = -1;
    c->pi_in = c->pi_out = c->pi_err = c->pi_pid = -1;
    c->id = req->cell_id;
    c->overall = NAN;
    c->spec_len = strlen(req->spec);
    c->spec = strdup(req->spec);
    c->ring_cap = ex->base.cfg.stderr_tail ? ex->base.cfg.stderr_tail : 1;
    c->ring = malloc(c->ring_cap);
    if (!c->spec || !c->ring) {
        cell_free(c);
        return NULL;
    }
    return c;
}

/* Open f's channels, every fd O_CLOEXEC and >= 3. Returns 0, or -1 with err; what was opened is
 * left to fds_close. */
static int fds_open(cell_fds *f, char *err, size_t errlen)
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->in) < 0 || pipe2(f->out, O_CLOEXEC) < 0 ||
        pipe2(f->err, O_CLOEXEC) < 0) {
        errbuf_set(err, errlen, "executor: cannot create pipes: %s", strerror(errno));
        return -1;
    }
    if (fd_above2(&f->in[0]) || fd_above2(&f->in[1]) || fd_above2(&f->out[0]) || fd_above2(&f->out[1]) ||
        fd_above2(&f->err[0]) || fd_above2(&f->err[1])) {
        errbuf_set(err, errlen, "executor: cannot move pipe fds: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void fds_close(cell_fds *f)
{
    for (int i = 0; i < 2; i++) {
        fd_close(&f->in[i]);
        fd_close(&f->out[i]);
        fd_close(&f->err[i]);
    }
}

/* The child's environment (design note above): over[] receives the malloc'd override entries,
 * *n_over of them, which the caller frees whatever the outcome. Returns the envp array (the
 * caller frees the array, not its strings), or NULL with err. */
static char **cell_env(const executor_config *cfg, const executor_request *req, char **over, int *n_over, char *err,
                       size_t errlen)
{
    char **envp = NULL;
    int threads = req->threads > 0 ? req->threads : cfg->threads;
    if ((cfg->coretype && over_add(over, n_over, "OPENBLAS_CORETYPE=%s", cfg->coretype)) ||
        (threads > 0 && (over_add(over, n_over, "OPENBLAS_NUM_THREADS=%d", threads) ||
                         over_add(over, n_over, "OMP_NUM_THREADS=%d", threads))) ||
        over_add(over, n_over, "OMP_WAIT_POLICY=PASSIVE"))
        goto oom;
    for (const char *const *e = req->env; e && *e; e++) {
        if (*n_over == MAX_OVERRIDES) {
            errbuf_set(err, errlen, "executor: more than %d environment entries", MAX_OVERRIDES - 4);
            return NULL;
        }
        if (!strchr(*e, '=') || **e == '=') {
            errbuf_set(err, errlen, "executor: environment entry '%s' is not NAME=value", *e);
            return NULL;
        }
        if (over_add(over, n_over, "%s", *e)) goto oom;
    }
    envp = env_build(over, *n_over);
    if (envp) return envp;
oom:
    errbuf_set(err, errlen, "executor: out of memory");
    return NULL;
}

/* Spawn `BIN cell` with f's child ends as its fds 0/1/2 and envp, then lower its priority by
 * cfg.nice. Returns 0 with c->pid and c->started set, or -1 with err. */
static int cell_spawn(const local_executor *ex, local_cell *c, const char *bin, char **envp, const cell_fds *f,
                      char *err, size_t errlen)
{
    /* child: fds 0/1/2 only, own process group, default signals, empty mask (proc.h) */
    char *argv[] = {(char *)bin, (char *)"cell", NULL};
    pid_t pid;
    char perr[256];
    if (proc_spawn(&pid, argv, 0, envp, f->in[1], f->out[1], f->err[1], perr, sizeof perr) != 0) {
        errbuf_set(err, errlen, "executor: %s", perr);
        return -1;
    }
    c->pid = pid;
    /* cells run `nice` steps below the daemon (capped at 19); the child may run a few
     * instructions at the daemon's priority first; its re-exec inherits the value */
    if (ex->base.cfg.nice > 0) {
        int v = getpriority(PRIO_PROCESS, 0) + ex->base.cfg.nice;
        (void)setpriority(PRIO_PROCESS, (id_t)pid, v > 19 ? 19 : v);
    }
    /* the address-space cap: set before the spec is written (from the poll loop, later), so the
     * cell cannot allocate its model before it holds */
    if (ex->base.cfg.mem_limit > 0) {
        struct rlimit rl = {(rlim_t)ex->base.cfg.mem_limit, (rlim_t)ex->base.cfg.mem_limit};
        if (prlimit(pid, RLIMIT_AS, &rl, NULL) != 0) {
            errbuf_set(err, errlen, "executor: cannot limit the cell's memory: %s", strerror(errno));
            proc_kill(pid, SIGKILL);
            int st;
            proc_reap(pid, 0, &st);
            return -1;
        }
    }
    c->started = c->last_line = executor_clock();
    return 0;
}

/* After the spawn: close the child's ends of f, move our ends into c (non-blocking) and open a
 * pidfd of the leader when the kernel has them. */
static void cell_attach(local_cell *c, cell_fds *f)
{
    fd_close(&f->in[1]);
    fd_close(&f->out[1]);
    fd_close(&f->err[1]);
    c->fd_in = f->in[0];
    c->fd_out = f->out[0];
    c->fd_err = f->err[0];
    f->in[0] = f->out[0] = f->err[0] = -1;
    fd_set_nonblock(c->fd_in);
    fd_set_nonblock(c->fd_out);
    fd_set_nonblock(c->fd_err);
#ifdef SYS_pidfd_open
    c->fd_pid = (int)syscall(SYS_pidfd_open, c->pid, 0); /* O_CLOEXEC implied; -1 = fall back to ticks */
    if (c->fd_pid >= 0 && c->fd_pid < 3) fd_above2(&c->fd_pid);
#endif
}

/* ------------------------------------------------------------------ poll */

static int pfd_add(local_executor *ex, size_t *np, int fd, short events)
{
    if (*np == ex->pfd_cap) {
        size_t cap = ex->pfd_cap ? ex->pfd_cap * 2 : 32;
        struct pollfd *nb = realloc(ex->pfd, cap * sizeof *nb);
        if (!nb) return -1;
        ex->pfd = nb;
        ex->pfd_cap = cap;
    }
    ex->pfd[*np] = (struct pollfd){.fd = fd, .events = events};
    return (int)(*np)++;
}

/* This round's poll set into ex->pfd, *np entries: the wake pipe first, then every open fd of
 * every cell (its index in c->pi_*; one that does not fit in memory waits for a later round).
 * Returns 0, or -1 when not even the wake pipe fits. */
static int poll_set_build(local_executor *ex, size_t *np)
{
    *np = 0;
    if (pfd_add(ex, np, ex->wake_r, POLLIN) < 0) return -1;
    for (local_cell *c = ex->cells; c; c = c->next) {
        c->pi_in = c->fd_in >= 0 ? pfd_add(ex, np, c->fd_in, POLLOUT) : -1;
        c->pi_out = c->fd_out >= 0 ? pfd_add(ex, np, c->fd_out, POLLIN) : -1;
        c->pi_err = c->fd_err >= 0 ? pfd_add(ex, np, c->fd_err, POLLIN) : -1;
        c->pi_pid = c->fd_pid >= 0 ? pfd_add(ex, np, c->fd_pid, POLLIN) : -1;
    }
    return 0;
}

/* Shorten *wait_s (< 0 = unbounded) to t seconds, t clamped at 0. */
static void wait_shorten(double *wait_s, double t)
{
    if (t < 0) t = 0;
    if (*wait_s < 0 || t < *wait_s) *wait_s = t;
}

/* The poll(2) timeout in ms: the caller's timeout_ms (< 0 = none), shortened by the next
 * deadline of any cell (SIGKILL after the grace, hang, the no-pidfd and reaping ticks). */
static int poll_timeout(const local_executor *ex, int timeout_ms, double now)
{
    double hang_s = ex->base.cfg.hang_s;
    double wait_s = timeout_ms < 0 ? -1.0 : timeout_ms / 1000.0;
    for (const local_cell *c = ex->cells; c; c = c->next) {
        if (c->stage == CELL_RUNNING) {
            if (c->fd_pid < 0) wait_shorten(&wait_s, NOPIDFD_TICK_MS / 1000.0);
            if (c->term_sent && !c->kill_sent) wait_shorten(&wait_s, c->kill_at - now);
            if (hang_s > 0 && !c->term_sent) wait_shorten(&wait_s, c->last_line + hang_s - now);
        } else {
            wait_shorten(&wait_s, REAP_TICK_MS / 1000.0);
        }
    }
    return wait_s < 0 ? -1 : (int)ceil(wait_s * 1000.0);
}

/* Serve what poll reported: drain the wake pipe, feed stdin, read stdout and stderr. */
static void poll_serve_io(local_executor *ex)
{
    if (ex->pfd[0].revents) {
        char buf[64];
        while (read(ex->wake_r, buf, sizeof buf) > 0) {
        }
    }
    for (local_cell *c = ex->cells; c; c = c->next) {
        if (c->pi_in >= 0 && ex->pfd[c->pi_in].revents) cell_feed_stdin(c);
        if (c->pi_out >= 0 && ex->pfd[c->pi_out].revents) cell_read_stdout(ex, c, 0);
        if (c->pi_err >= 0 && ex->pfd[c->pi_err].revents) cell_read_stderr(c, 0);
        c->pi_in = c->pi_out = c->pi_err = c->pi_pid = -1;
    }
}

/* Move every cell along at time now: leader exits, SIGKILL once the grace is over, hangs,
 * reaping. */
static void poll_advance(local_executor *ex, double now)
{
    double hang_s = ex->base.cfg.hang_s;
    for (local_cell *c = ex->cells; c; c = c->next) {
        if (c->stage == CELL_RUNNING) cell_check_exit(c);
        if (c->stage == CELL_RUNNING) {
            if (c->term_sent && !c->kill_sent && now >= c->kill_at) {
                proc_kill(c->pid, SIGKILL);
                c->kill_sent = 1;
            }
            if (hang_s > 0 && !c->term_sent && now - c->last_line > hang_s) {
                c->hung = 1;
                cell_terminate(c, ex->base.cfg.grace_s);
            }
        }
        if (c->stage == CELL_REAPING) cell_reap(c, now);
    }
}

/* Report and free the GONE cells. They are unlinked first: on_exit may start new cells. Returns
 * how many were reported. */
static int poll_report_gone(local_executor *ex)
{
    local_cell *done = NULL, **pp = &ex->cells;
    while (*pp) {
        local_cell *c = *pp;
        if (c->stage == CELL_GONE) {
            *pp = c->next;
            c->next = done;
            done = c;
        } else {
            pp = &c->next;
        }
    }
    int n_done = 0;
    while (done) {
        local_cell *c = done;
        done = c->next;
        cell_report(ex, c);
        cell_free(c);
        n_done++;
    }
    return n_done;
}

/* ------------------------------------------------------------------ ops */

static int local_start(executor *base, const executor_request *req, char *err, size_t errlen)
{
    local_executor *ex = (local_executor *)base;
    const char *bin = req && req->bin ? req->bin : base->cfg.bin;
    cell_fds f = {{-1, -1}, {-1, -1}, {-1, -1}};
    char *over[MAX_OVERRIDES];
    int n_over = 0, rc = -1;
    char **envp = NULL;
    local_cell *c = NULL;
    if (start_check(ex, req, bin, err, errlen) != 0) goto cleanup;
    c = cell_new(ex, req);
    if (!c) {
        errbuf_set(err, errlen, "executor: out of memory");
        goto cleanup;
    }
    if (fds_open(&f, err, errlen) != 0) goto cleanup;
    envp = cell_env(&base->cfg, req, over, &n_over, err, errlen);
    if (!envp || cell_spawn(ex, c, bin, envp, &f, err, errlen) != 0) goto cleanup;
    cell_attach(c, &f);
    cell_feed_stdin(c);
    c->next = ex->cells;
    ex->cells = c;
    c = NULL;
    rc = 0;
cleanup:
    fds_close(&f);
    for (int i = 0; i < n_over; i++) free(over[i]);
    free(envp);
    cell_free(c);
    return rc;
}

static int local_poll(executor *base, int timeout_ms)
{
    local_executor *ex = (local_executor *)base;
    size_t np;
    if (poll_set_build(ex, &np) < 0) {
        errno = ENOMEM;
        return -1;
    }
    int tmo = poll_timeout(ex, timeout_ms, executor_clock());
    if (poll(ex->pfd, np, tmo) < 0 && errno != EINTR) return -1;
    poll_serve_io(ex);
    poll_advance(ex, executor_clock());
    return poll_report_gone(ex);
}

static int local_cancel(executor *base, int64_t cell_id)
{
    local_executor *ex = (local_executor *)base;
    local_cell *c = cell_find(ex, cell_id);
    if (!c) return -1;
    c->cancel = CANCEL_USER;
    cell_terminate(c, base->cfg.grace_s);
    return 0;
}

static int local_kill_all(executor *base, double grace_s)
{
    local_executor *ex = (local_executor *)base;
    if (grace_s < 0) grace_s = base->cfg.grace_s;
    for (local_cell *c = ex->cells; c; c = c->next) {
        if (c->cancel == CANCEL_NONE) c->cancel = CANCEL_SHUTDOWN;
        cell_terminate(c, grace_s);
    }
    double until = executor_clock() + grace_s + 10.0;
    while (ex->cells && executor_clock() < until)
        if (local_poll(base, 100) < 0 && errno != EINTR) break;
    return ex->cells ? -1 : 0;
}

static void cell_info_fill(const local_cell *c, executor_cell_info *o)
{
    memset(o, 0, sizeof *o);
    o->cell_id = c->id;
    o->pid = c->pid;
    o->started = c->started;
    o->last_line = c->last_line;
    o->n_lines = c->n_lines;
    o->overall = c->overall;
    snprintf(o->phase, sizeof o->phase, "%s", c->phase);
    o->terminating = c->term_sent;
}

static int local_info(executor *base, int64_t cell_id, executor_cell_info *out)
{
    local_cell *c = cell_find((local_executor *)base, cell_id);
    if (!c) return -1;
    if (out) cell_info_fill(c, out);
    return 0;
}

static int local_list(executor *base, executor_cell_info *out, int max)
{
    int n = 0;
    for (local_cell *c = ((local_executor *)base)->cells; c; c = c->next, n++)
        if (out && n < max) cell_info_fill(c, &out[n]);
    return n;
}

static void local_wake(executor *base)
{
    local_executor *ex = (local_executor *)base;
    ssize_t r = write(ex->wake_w, "w", 1); /* EAGAIN: a wake-up is pending already */
    (void)r;
}

static void local_free(executor *base)
{
    local_executor *ex = (local_executor *)base;
    while (ex->cells) {
        local_cell *c = ex->cells;
        ex->cells = c->next;
        if (c->stage == CELL_RUNNING) {
            proc_kill(c->pid, SIGKILL); /* leader unreaped: the pgid is still ours */
            c->stage = CELL_REAPING;
            c->reap_until = executor_clock() + REAP_CAP_S;
        }
        /* reap the leader and the leftovers as they die (a member forked just before the
         * SIGKILL becomes our child only when its parent is gone) */
        while (c->stage == CELL_REAPING) {
            cell_reap(c, executor_clock());
            if (c->stage == CELL_REAPING) nanosleep(&(struct timespec){0, 2000000}, NULL);
        }
        cell_free(c);
    }
    fd_close(&ex->wake_r);
    fd_close(&ex->wake_w);
    free(ex->pfd);
    free((char *)base->cfg.bin);
    free((char *)base->cfg.coretype);
    free(ex);
}

static const struct executor_ops local_ops = {
    .name = "local",
    .start = local_start,
    .poll = local_poll,
    .cancel = local_cancel,
    .kill_all = local_kill_all,
    .info = local_info,
    .list = local_list,
    .wake = local_wake,
    .free = local_free,
};

executor *executor_local_init(const executor_config *cfg, const executor_callbacks *cb, char *err, size_t errlen)
{
    struct sigaction sa;
    if (sigaction(SIGCHLD, NULL, &sa) == 0 && (sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT))) {
        errbuf_set(err, errlen, "executor: SIGCHLD is ignored, exit statuses of cells would be lost");
        return NULL;
    }
    local_executor *ex = calloc(1, sizeof *ex);
    if (!ex) {
        errbuf_set(err, errlen, "executor: out of memory");
        return NULL;
    }
    ex->wake_r = ex->wake_w = -1;
    ex->base.ops = &local_ops;
    if (cfg)
        ex->base.cfg = *cfg;
    else
        executor_config_default(&ex->base.cfg);
    executor_config *c = &ex->base.cfg;
    if (c->grace_s < 0) c->grace_s = 0;
    if (c->max_line == 0) c->max_line = (size_t)1 << 20;
    if (c->stderr_tail == 0) c->stderr_tail = 8192;
    if (cb) ex->base.cb = *cb;
    c->bin = dup_or_null(cfg ? cfg->bin : NULL);
    c->coretype = dup_or_null(cfg ? cfg->coretype : NULL);
    int p[2];
    if ((cfg && cfg->bin && !c->bin) || (cfg && cfg->coretype && !c->coretype) ||
        pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
        errbuf_set(err, errlen, "executor: cannot initialise: %s", strerror(errno));
        local_free(&ex->base);
        return NULL;
    }
    ex->wake_r = p[0];
    ex->wake_w = p[1];
    if (c->subreaper) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    return &ex->base;
}
