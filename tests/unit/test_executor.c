/* test_executor.c — the executor registry (server/executor.c: lookup by name, unknown names
 * refused, the local executor made and run through it) and the local executor
 * (server/executor_local.c) against the real engine and against fake cells.
 *
 * The real engine is PRUNELAB_BIN (set by make check), else ./prunelab; a tiny model on the
 * synthetic dataset is created once with `prunelab init`. When neither is there the real-engine
 * cases are skipped with a message (but a PRUNELAB_BIN that is set and not executable fails).
 * Fake cells are /bin/sh scripts written to a temp directory and passed as the binary: they print
 * chosen lines, sleep, ignore SIGTERM, fork children, print garbage, exit non-zero, or report
 * their environment and fds. What is asserted: callbacks and outcomes (status, code,
 * retriability, signal, exit status, stderr tail), that no process of a cell's group outlives its
 * outcome, that only fds 0/1/2 reach the child, and that the environment overrides arrive.
 * Deadlines are generous upper bounds that keep a broken executor from hanging the suite. */
#define _GNU_SOURCE
#include <check.h>
#include <sys/resource.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "executor.h"

#define MAX_CELLS 16
#define MAX_PROGRESS 256

typedef struct {
    int n_progress;
    double overall[MAX_PROGRESS];
    char phase[MAX_PROGRESS][32];
    double last_line_at[MAX_PROGRESS]; /* executor_info().last_line seen in on_progress */
    json_t *first_line;                /* first progress line (a copy) */
    json_t *last_progress;             /* last progress line (a copy) */
    int n_result, n_error;
    int progress_after_terminal;
    char err_code[64], err_msg[256];
    int exited;
    executor_status status;
    int retriable, exit_code, term_signal, n_lines;
    char code[64], message[1024], signal_name[32];
    char *stderr_tail;
    json_t *metrics;
    pid_t pid;
    double started;
} cell_rec;

typedef struct {
    executor *ex;
    cell_rec cell[MAX_CELLS];
    int n_exits;
} rec;

static char g_tmp[256];          /* temp dir for scripts and models */
static char g_engine[1024];      /* real engine binary, "" when unavailable */
static char g_model[512];        /* tiny model made by the engine */
static int g_engine_required;    /* PRUNELAB_BIN was set */

static cell_rec *rec_cell(void *user, int64_t id)
{
    ck_assert_msg(id >= 0 && id < MAX_CELLS, "cell id %lld out of range", (long long)id);
    return &((rec *)user)->cell[id];
}

static void cb_progress(void *user, int64_t id, const char *phase, double fraction, double overall,
                        const json_t *line)
{
    cell_rec *c = rec_cell(user, id);
    if (c->n_result || c->n_error) c->progress_after_terminal++;
    if (c->n_progress < MAX_PROGRESS) {
        c->overall[c->n_progress] = overall;
        snprintf(c->phase[c->n_progress], 32, "%s", phase ? phase : "");
        executor_cell_info inf;
        ck_assert_int_eq(executor_info(((rec *)user)->ex, id, &inf), 0);
        c->last_line_at[c->n_progress] = inf.last_line;
    }
    if (!c->first_line) c->first_line = json_deep_copy(line);
    json_decref(c->last_progress);
    c->last_progress = json_deep_copy(line);
    c->n_progress++;
    (void)fraction;
}

static void cb_result(void *user, int64_t id, const json_t *metrics)
{
    cell_rec *c = rec_cell(user, id);
    ck_assert(json_is_object(metrics));
    c->n_result++;
}

static void cb_error(void *user, int64_t id, const char *code, const char *message)
{
    cell_rec *c = rec_cell(user, id);
    c->n_error++;
    snprintf(c->err_code, sizeof c->err_code, "%s", code);
    snprintf(c->err_msg, sizeof c->err_msg, "%s", message);
}

static void cb_exit(void *user, const executor_outcome *o)
{
    rec *r = user;
    cell_rec *c = rec_cell(user, o->cell_id);
    ck_assert_msg(!c->exited, "on_exit twice for cell %lld", (long long)o->cell_id);
    ck_assert(o->code && o->message && o->stderr_tail);
    c->exited = 1;
    c->status = o->status;
    c->retriable = o->retriable;
    c->exit_code = o->exit_code;
    c->term_signal = o->term_signal;
    c->n_lines = o->n_lines;
    c->pid = o->pid;
    c->started = o->started;
    snprintf(c->code, sizeof c->code, "%s", o->code);
    snprintf(c->message, sizeof c->message, "%s", o->message);
    snprintf(c->signal_name, sizeof c->signal_name, "%s", o->signal_name ? o->signal_name : "");
    c->stderr_tail = strdup(o->stderr_tail);
    c->metrics = o->metrics ? json_deep_copy(o->metrics) : NULL;
    /* the cell is no longer known once its outcome is reported */
    r->n_exits++;
}

static executor *ex_new(rec *r, const char *bin, double grace_s, double hang_s)
{
    memset(r, 0, sizeof *r);
    executor_config cfg;
    executor_config_default(&cfg);
    cfg.bin = bin;
    cfg.grace_s = grace_s;
    cfg.hang_s = hang_s;
    executor_callbacks cb = {r, cb_progress, cb_result, cb_error, cb_exit};
    char err[EXECUTOR_ERRLEN];
    r->ex = executor_local_init(&cfg, &cb, err, sizeof err);
    ck_assert_msg(r->ex != NULL, "executor_local_init: %s", err);
    return r->ex;
}

static void rec_free(rec *r)
{
    executor_free(r->ex);
    for (int i = 0; i < MAX_CELLS; i++) {
        free(r->cell[i].stderr_tail);
        json_decref(r->cell[i].metrics);
        json_decref(r->cell[i].first_line);
        json_decref(r->cell[i].last_progress);
    }
}

static void start_cell(rec *r, int64_t id, const char *spec, const char *bin)
{
    executor_request req = {.cell_id = id, .spec = spec, .bin = bin};
    char err[EXECUTOR_ERRLEN];
    int rc = executor_start(r->ex, &req, err, sizeof err);
    ck_assert_msg(rc == 0, "executor_start(%lld): %s", (long long)id, err);
}

/* Poll until n outcomes have been reported (fails after timeout_s). */
static void run_until_exits(rec *r, int n, double timeout_s)
{
    double until = executor_clock() + timeout_s;
    while (r->n_exits < n) {
        ck_assert_msg(executor_clock() < until, "only %d of %d cells finished within %g s", r->n_exits, n, timeout_s);
        ck_assert_int_ge(executor_poll(r->ex, 100), 0);
    }
}

static void run_until_progress(rec *r, int64_t id, int n, double timeout_s)
{
    double until = executor_clock() + timeout_s;
    while (r->cell[id].n_progress < n) {
        ck_assert_msg(!r->cell[id].exited, "cell %lld exited before %d progress lines: %s; stderr: %s",
                      (long long)id, n, r->cell[id].message, r->cell[id].stderr_tail);
        ck_assert_msg(executor_clock() < until, "cell %lld: no %d progress lines within %g s", (long long)id, n,
                      timeout_s);
        ck_assert_int_ge(executor_poll(r->ex, 100), 0);
    }
}

static int group_gone(pid_t pgid)
{
    return kill(-pgid, 0) < 0 && errno == ESRCH;
}

static int pid_gone(pid_t pid)
{
    return kill(pid, 0) < 0 && errno == ESRCH;
}

/* Write an executable /bin/sh script into the temp dir; returns its path (static buffer per
 * slot). */
static const char *script(const char *name, const char *body)
{
    static char paths[8][512];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, 512, "%s/%s.sh", g_tmp, name);
    FILE *f = fopen(p, "w");
    ck_assert_msg(f != NULL, "cannot write %s", p);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(p, 0755), 0);
    return p;
}

#define PROGRESS(phase) "echo '{\"event\":\"progress\",\"phase\":\"" phase "\",\"fraction\":0,\"overall\":0}'"

/* ------------------------------------------------------------------ real engine */

static int engine_available(void)
{
    if (g_engine[0]) return 1;
    ck_assert_msg(!g_engine_required, "PRUNELAB_BIN is set but the engine or its tiny model is unusable");
    fprintf(stderr, "test_executor: no engine binary (PRUNELAB_BIN unset, ./prunelab missing): skipped\n");
    return 0;
}

START_TEST(test_real_ablation)
{
    if (!engine_available()) return;
    rec r;
    ex_new(&r, g_engine, 5.0, 120.0);
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"recipe\":\"ablation\",\"model\":\"%s\",\"dataset\":\"synthetic\",\"component\":\"mlp\","
             "\"rate\":0.5,\"threads\":1,\"eval\":{\"max_samples\":64}}",
             g_model);
    executor_request req = {.cell_id = 1, .spec = spec, .threads = 1};
    char err[EXECUTOR_ERRLEN];
    ck_assert_msg(executor_start(r.ex, &req, err, sizeof err) == 0, "%s", err);
    run_until_exits(&r, 1, 120);
    cell_rec *c = &r.cell[1];
    ck_assert_msg(c->status == EXECUTOR_DONE, "status %s (%s): %s; stderr: %s", executor_status_name(c->status),
                  c->code, c->message, c->stderr_tail);
    ck_assert_str_eq(c->code, "ok");
    ck_assert_int_eq(c->exit_code, 0);
    ck_assert_int_eq(c->term_signal, 0);
    ck_assert_int_eq(c->n_result, 1);
    ck_assert_int_eq(c->n_error, 0);
    ck_assert_int_eq(c->progress_after_terminal, 0);
    ck_assert_ptr_nonnull(c->metrics);
    ck_assert_str_eq(json_string_value(json_object_get(c->metrics, "recipe")), "ablation");
    ck_assert(json_is_number(json_object_get(c->metrics, "delta_accuracy")));
    /* progress: load first, prune later, overall never decreasing, all lines counted */
    ck_assert_int_ge(c->n_progress, 3);
    ck_assert_str_eq(c->phase[0], "load");
    int saw_prune = 0;
    for (int i = 0; i < c->n_progress && i < MAX_PROGRESS; i++) {
        if (strcmp(c->phase[i], "prune") == 0) saw_prune = 1;
        ck_assert_msg(isfinite(c->overall[i]) && c->overall[i] >= 0 && c->overall[i] <= 1, "overall[%d] = %g", i,
                      c->overall[i]);
        if (i > 0) ck_assert_msg(c->overall[i] >= c->overall[i - 1], "overall went back at line %d", i);
        ck_assert(c->last_line_at[i] >= c->started);
    }
    ck_assert(saw_prune);
    ck_assert_int_eq(c->n_lines, c->n_progress + 1);
    ck_assert(group_gone(c->pid));
    ck_assert_int_eq(executor_running(r.ex), 0);
    rec_free(&r);
}
END_TEST

START_TEST(test_real_bad_spec)
{
    if (!engine_available()) return;
    rec r;
    ex_new(&r, g_engine, 5.0, 120.0);
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"recipe\":\"ablation\",\"model\":\"%s\",\"dataset\":\"synthetic\",\"component\":\"mlp\","
             "\"rate\":1.5}",
             g_model);
    start_cell(&r, 2, spec, NULL);
    run_until_exits(&r, 1, 60);
    cell_rec *c = &r.cell[2];
    ck_assert_msg(c->status == EXECUTOR_FAILED, "status %s: %s", executor_status_name(c->status), c->message);
    ck_assert_str_eq(c->code, "bad_spec");
    ck_assert_int_eq(c->retriable, 0);
    ck_assert_int_eq(c->n_error, 1);
    ck_assert_str_eq(c->err_code, "bad_spec");
    ck_assert_msg(strncmp(c->err_msg, "rate", 4) == 0, "message: %s", c->err_msg);
    ck_assert_str_eq(c->message, c->err_msg);
    ck_assert_int_eq(c->exit_code, 2);
    rec_free(&r);
}
END_TEST

/* ------------------------------------------------------------------ protocol */

START_TEST(test_garbage_line)
{
    rec r;
    ex_new(&r, NULL, 2.0, 0);
    start_cell(&r, 1, "{}", script("garbage", PROGRESS("load") "\necho 'this is not json'\nsleep 30"));
    run_until_exits(&r, 1, 10);
    cell_rec *c = &r.cell[1];
    ck_assert_msg(c->status == EXECUTOR_FAILED, "status %s", executor_status_name(c->status));
    ck_assert_str_eq(c->code, "protocol");
    ck_assert_int_eq(c->retriable, 1);
    ck_assert_msg(strstr(c->message, "line 2") && strstr(c->message, "not JSON"), "message: %s", c->message);
    ck_assert_int_eq(c->n_progress, 1);
    ck_assert_int_eq(c->n_result, 0);
    ck_assert(group_gone(c->pid)); /* the sleep was terminated with it */

    /* a JSON value that is not an event object */
    start_cell(&r, 2, "{}", script("notobj", "echo '[1,2,3]'\nexit 0"));
    start_cell(&r, 3, "{}", script("noevent", "echo '{\"phase\":\"load\"}'\nexit 0"));
    run_until_exits(&r, 3, 10);
    for (int id = 2; id <= 3; id++) {
        ck_assert_int_eq(r.cell[id].status, EXECUTOR_FAILED);
        ck_assert_str_eq(r.cell[id].code, "protocol");
    }
    rec_free(&r);
}
END_TEST

START_TEST(test_long_line)
{
    rec r;
    memset(&r, 0, sizeof r);
    executor_config cfg;
    executor_config_default(&cfg);
    cfg.max_line = 4096;
    cfg.grace_s = 2.0;
    executor_callbacks cb = {&r, cb_progress, cb_result, cb_error, cb_exit};
    char err[EXECUTOR_ERRLEN];
    r.ex = executor_local_init(&cfg, &cb, err, sizeof err);
    ck_assert_msg(r.ex != NULL, "%s", err);
    /* 1: a long unterminated line (the splitter must not grow without bound);
     * 2: a long complete line; 3: a line of exactly max_line bytes is fine */
    start_cell(&r, 1, "{}", script("long1", "head -c 10000 /dev/zero | tr '\\0' a\nsleep 30"));
    start_cell(&r, 2, "{}", script("long2", "head -c 10000 /dev/zero | tr '\\0' a\necho\nsleep 30"));
    start_cell(&r, 3, "{}",
               script("long3", "printf '{\"event\":\"result\",\"metrics\":{\"s\":\"%s\"}}\\n' "
                               "\"$(head -c 4059 /dev/zero | tr '\\0' b)\""));
    run_until_exits(&r, 3, 10);
    for (int id = 1; id <= 2; id++) {
        cell_rec *c = &r.cell[id];
        ck_assert_int_eq(c->status, EXECUTOR_FAILED);
        ck_assert_str_eq(c->code, "protocol");
        ck_assert_msg(strstr(c->message, "longer than 4096"), "message: %s", c->message);
        ck_assert(group_gone(c->pid));
    }
    ck_assert_msg(r.cell[3].status == EXECUTOR_DONE, "4096-byte line: %s", r.cell[3].message);
    ck_assert_int_eq((int)strlen(json_string_value(json_object_get(r.cell[3].metrics, "s"))), 4059);
    rec_free(&r);
}
END_TEST

START_TEST(test_error_event)
{
    rec r;
    ex_new(&r, NULL, 2.0, 0);
    start_cell(&r, 1, "{}",
               script("err_data", PROGRESS("load") "\necho 'cannot open the data' >&2\n"
                                                   "echo '{\"event\":\"error\",\"code\":\"data\",\"message\":\"data: no such "
                                                   "dataset\"}'\nexit 1"));
    start_cell(&r, 2, "{}",
               script("err_model", "echo '{\"event\":\"error\",\"code\":\"bad_model\",\"message\":\"model: not a "
                                   "checkpoint\"}'\nexit 2"));
    start_cell(&r, 3, "{}", script("err_nocode", "echo '{\"event\":\"error\",\"message\":\"x\"}'\nexit 1"));
    run_until_exits(&r, 3, 10);
    cell_rec *c = &r.cell[1];
    ck_assert_int_eq(c->status, EXECUTOR_FAILED);
    ck_assert_str_eq(c->code, "data");
    ck_assert_int_eq(c->retriable, 1);
    ck_assert_str_eq(c->message, "data: no such dataset");
    ck_assert_int_eq(c->n_error, 1);
    ck_assert_str_eq(c->err_code, "data");
    ck_assert_int_eq(c->exit_code, 1);
    ck_assert_msg(strstr(c->stderr_tail, "cannot open the data"), "stderr: %s", c->stderr_tail);
    c = &r.cell[2];
    ck_assert_int_eq(c->status, EXECUTOR_FAILED);
    ck_assert_str_eq(c->code, "bad_model");
    ck_assert_int_eq(c->retriable, 0);
    ck_assert_int_eq(c->exit_code, 2);
    c = &r.cell[3];
    ck_assert_int_eq(c->status, EXECUTOR_FAILED);
    ck_assert_str_eq(c->code, "protocol");
    ck_assert_int_eq(c->n_error, 0);
    rec_free(&r);
}
END_TEST

START_TEST(test_exit_rules)
{
    rec r;
    ex_new(&r, NULL, 2.0, 0);
    /* 1: exit 0 without a result; 2: result then exit 3; 3: result then exit 0;
     * 4: result without a trailing newline, exit 0; 5: two results; 6: result then killed;
     * 7: invalid UTF-8 on stderr, then exit 4; 8: unknown events and blank lines are ignored */
    start_cell(&r, 1, "{}", script("x1", PROGRESS("load") "\nexit 0"));
    start_cell(&r, 2, "{}", script("x2", "echo '{\"event\":\"result\",\"metrics\":{\"a\":1}}'\nexit 3"));
    start_cell(&r, 3, "{}", script("x3", "echo '{\"event\":\"result\",\"metrics\":{\"a\":3}}'\nexit 0"));
    start_cell(&r, 4, "{}", script("x4", "printf '{\"event\":\"result\",\"metrics\":{\"a\":4}}'"));
    start_cell(&r, 5, "{}",
               script("x5", "echo '{\"event\":\"result\",\"metrics\":{}}'\necho '{\"event\":\"result\",\"metrics\":{}}'"
                            "\nexit 0"));
    start_cell(&r, 6, "{}", script("x6", "echo '{\"event\":\"result\",\"metrics\":{}}'\nkill -SEGV $$"));
    start_cell(&r, 7, "{}", script("x7", "printf 'bad \\377\\376 bytes\\n' >&2\nexit 4"));
    start_cell(&r, 8, "{}",
               script("x8", "echo\necho '{\"event\":\"log\",\"text\":\"hi\"}'\n"
                            "echo '{\"event\":\"result\",\"metrics\":{\"a\":8}}'"));
    run_until_exits(&r, 8, 10);
    ck_assert_int_eq(r.cell[1].status, EXECUTOR_DIED);
    ck_assert_str_eq(r.cell[1].code, "died");
    ck_assert_int_eq(r.cell[1].retriable, 1);
    ck_assert_msg(strstr(r.cell[1].message, "status 0 without a result"), "%s", r.cell[1].message);
    ck_assert_int_eq(r.cell[2].status, EXECUTOR_DIED);
    ck_assert_ptr_nonnull(r.cell[2].metrics);
    ck_assert_int_eq(r.cell[2].n_result, 1);
    ck_assert_msg(strstr(r.cell[2].message, "status 3 after its result"), "%s", r.cell[2].message);
    ck_assert_int_eq(r.cell[3].status, EXECUTOR_DONE);
    ck_assert_int_eq(json_integer_value(json_object_get(r.cell[3].metrics, "a")), 3);
    ck_assert_int_eq(r.cell[4].status, EXECUTOR_DONE);
    ck_assert_int_eq(json_integer_value(json_object_get(r.cell[4].metrics, "a")), 4);
    ck_assert_int_eq(r.cell[5].status, EXECUTOR_FAILED);
    ck_assert_str_eq(r.cell[5].code, "protocol");
    ck_assert_int_eq(r.cell[6].status, EXECUTOR_DIED);
    ck_assert_int_eq(r.cell[6].term_signal, SIGSEGV);
    ck_assert_str_eq(r.cell[6].signal_name, "SIGSEGV");
    ck_assert_int_eq(r.cell[6].exit_code, -1);
    ck_assert_int_eq(r.cell[7].status, EXECUTOR_DIED);
    ck_assert_int_eq(r.cell[7].exit_code, 4);
    json_t *s = json_string(r.cell[7].stderr_tail); /* NULL if not valid UTF-8 */
    ck_assert_ptr_nonnull(s);
    json_decref(s);
    ck_assert_msg(strstr(r.cell[7].stderr_tail, "bad ?? bytes"), "stderr: %s", r.cell[7].stderr_tail);
    ck_assert_int_eq(r.cell[8].status, EXECUTOR_DONE);
    ck_assert_int_eq(r.cell[8].n_lines, 3);
    rec_free(&r);
}
END_TEST

/* ------------------------------------------------------------------ crashes, cancel, shutdown */

START_TEST(test_crash_kill9)
{
    rec r;
    ex_new(&r, NULL, 2.0, 0);
    /* 20 KB of stderr noise, a marker, then a child and a report of its pid */
    start_cell(&r, 1, "{}",
               script("crash", PROGRESS("load") "\n"
                                                "i=0; while [ $i -lt 300 ]; do echo \"noise line $i "
                                                "..................................................\" >&2; i=$((i+1)); done\n"
                                                "echo LAST-STDERR-LINE >&2\n"
                                                "sleep 30 & echo \"{\\\"event\\\":\\\"progress\\\",\\\"phase\\\":\\\"train\\\","
                                                "\\\"fraction\\\":0.5,\\\"overall\\\":0.5,\\\"child\\\":$!}\"\n"
                                                "wait"));
    run_until_progress(&r, 1, 2, 10);
    executor_cell_info inf;
    ck_assert_int_eq(executor_info(r.ex, 1, &inf), 0);
    pid_t child = (pid_t)json_integer_value(json_object_get(r.cell[1].last_progress, "child"));
    ck_assert_int_gt(child, 0);
    ck_assert_int_eq(inf.n_lines, 2);
    ck_assert_str_eq(inf.phase, "train");
    ck_assert_int_eq(kill(inf.pid, SIGKILL), 0);
    run_until_exits(&r, 1, 10);
    cell_rec *c = &r.cell[1];
    ck_assert_int_eq(c->status, EXECUTOR_DIED);
    ck_assert_str_eq(c->code, "died");
    ck_assert_int_eq(c->retriable, 1);
    ck_assert_int_eq(c->term_signal, SIGKILL);
    ck_assert_str_eq(c->signal_name, "SIGKILL");
    ck_assert_msg(strstr(c->message, "SIGKILL"), "message: %s", c->message);
    size_t n = strlen(c->stderr_tail);
    ck_assert_msg(n > 4000 && n <= 8192, "stderr tail of %zu bytes", n);
    ck_assert_msg(strstr(c->stderr_tail, "LAST-STDERR-LINE\n"), "tail end: %s", c->stderr_tail + n - 100);
    ck_assert(strstr(c->stderr_tail, "noise line 0 ") == NULL);
    ck_assert_msg(strncmp(c->stderr_tail, "noise line ", 11) == 0, "tail starts mid-line: %.40s", c->stderr_tail);
    /* the orphaned sleep did not survive the cell, and it was reaped */
    ck_assert(pid_gone(child));
    ck_assert(group_gone(c->pid));
    rec_free(&r);
}
END_TEST

START_TEST(test_cancel_ignores_term)
{
    rec r;
    const double grace = 1.0;
    ex_new(&r, NULL, grace, 0);
    /* the cell notes the SIGTERM on stderr and goes on: only the SIGKILL that follows ends it */
    start_cell(&r, 1, "{}", script("stubborn", "trap 'echo TERM-SEEN >&2' TERM\n" PROGRESS("finetune")
                                               "\nwhile :; do sleep 30 & wait $!; done"));
    run_until_progress(&r, 1, 1, 10);
    executor_cell_info inf;
    ck_assert_int_eq(executor_info(r.ex, 1, &inf), 0);
    pid_t pgid = inf.pid;
    double t0 = executor_clock();
    ck_assert_int_eq(executor_cancel(r.ex, 1), 0);
    ck_assert_int_eq(executor_cancel(r.ex, 1), 0); /* harmless twice */
    ck_assert_int_eq(executor_info(r.ex, 1, &inf), 0);
    ck_assert_int_eq(inf.terminating, 1);
    /* a deadline that only keeps a broken executor from hanging the suite */
    while (!r.cell[1].exited && executor_clock() - t0 < 30.0) ck_assert_int_ge(executor_poll(r.ex, 50), 0);
    ck_assert_msg(r.cell[1].exited, "not reported within 30 s");
    ck_assert_msg(group_gone(pgid), "a process of the group is left");
    cell_rec *c = &r.cell[1];
    ck_assert_int_eq(c->status, EXECUTOR_CANCELLED);
    ck_assert_str_eq(c->code, "cancelled");
    ck_assert_int_eq(c->retriable, 0);
    /* the order: SIGTERM reached the cell first (its trap ran), then SIGKILL ended it */
    ck_assert_ptr_nonnull(c->stderr_tail);
    ck_assert_msg(strstr(c->stderr_tail, "TERM-SEEN"), "no SIGTERM before the kill: %s", c->stderr_tail);
    ck_assert_str_eq(c->signal_name, "SIGKILL");
    ck_assert_int_eq(executor_cancel(r.ex, 1), -1);
    rec_free(&r);
}
END_TEST

START_TEST(test_cancel_children)
{
    rec r;
    const double grace = 1.0;
    ex_new(&r, NULL, grace, 0);
    /* c1 ignores SIGTERM, c2 does not; the shell itself dies of SIGTERM */
    start_cell(&r, 1, "{}",
               script("parent", "(trap '' TERM; exec sleep 30) & c1=$!\nsleep 30 & c2=$!\n"
                                "echo \"{\\\"event\\\":\\\"progress\\\",\\\"phase\\\":\\\"x\\\",\\\"c1\\\":$c1,\\\"c2\\\":$c2}\"\n"
                                "wait"));
    run_until_progress(&r, 1, 1, 10);
    pid_t c1 = (pid_t)json_integer_value(json_object_get(r.cell[1].first_line, "c1"));
    pid_t c2 = (pid_t)json_integer_value(json_object_get(r.cell[1].first_line, "c2"));
    ck_assert(c1 > 0 && c2 > 0);
    ck_assert(!pid_gone(c1) && !pid_gone(c2));
    executor_cell_info inf;
    ck_assert_int_eq(executor_info(r.ex, 1, &inf), 0);
    ck_assert_int_eq(getpgid(c1), inf.pid);
    double t0 = executor_clock();
    ck_assert_int_eq(executor_cancel(r.ex, 1), 0);
    while (!r.cell[1].exited && executor_clock() - t0 < 30.0) ck_assert_int_ge(executor_poll(r.ex, 50), 0);
    ck_assert_msg(r.cell[1].exited, "not reported within 30 s");
    /* the order: the shell died of the SIGTERM; the child that ignores it was killed with the
     * group before the outcome was reported */
    ck_assert_int_eq(r.cell[1].status, EXECUTOR_CANCELLED);
    ck_assert_str_eq(r.cell[1].signal_name, "SIGTERM");
    ck_assert_msg(pid_gone(c1), "the child that ignores SIGTERM survived");
    ck_assert(pid_gone(c2));
    ck_assert(group_gone(inf.pid));
    rec_free(&r);
}
END_TEST

START_TEST(test_hang)
{
    rec r;
    ex_new(&r, NULL, 1.0, 0.5);
    start_cell(&r, 1, "{}", script("hang", PROGRESS("calibrate") "\nsleep 30"));
    run_until_exits(&r, 1, 10);
    ck_assert_int_eq(r.cell[1].status, EXECUTOR_DIED);
    ck_assert_str_eq(r.cell[1].code, "hung");
    ck_assert_int_eq(r.cell[1].retriable, 1);
    ck_assert_msg(strstr(r.cell[1].message, "no output for 0.5 s"), "%s", r.cell[1].message);
    ck_assert(group_gone(r.cell[1].pid));
    rec_free(&r);
}
END_TEST

START_TEST(test_kill_all)
{
    rec r;
    ex_new(&r, NULL, 5.0, 0);
    start_cell(&r, 1, "{}", script("ka1", PROGRESS("a") "\nsleep 30"));
    start_cell(&r, 2, "{}", script("ka2", "trap '' TERM\n" PROGRESS("a") "\nsleep 30"));
    start_cell(&r, 3, "{}", script("ka3", "sleep 30 & sleep 30 & " PROGRESS("a") "\nwait"));
    for (int id = 1; id <= 3; id++) run_until_progress(&r, id, 1, 10);
    executor_cell_info inf[8];
    ck_assert_int_eq(executor_list(r.ex, inf, 8), 3);
    ck_assert_int_eq(executor_kill_all(r.ex, 0.5), 0); /* grace overrides the configured 5 s */
    ck_assert_int_eq(r.n_exits, 3);
    ck_assert_int_eq(executor_running(r.ex), 0);
    for (int id = 1; id <= 3; id++) {
        ck_assert_int_eq(r.cell[id].status, EXECUTOR_CANCELLED);
        ck_assert_str_eq(r.cell[id].code, "shutdown");
        ck_assert_int_eq(r.cell[id].retriable, 1);
    }
    for (int k = 0; k < 3; k++) ck_assert(group_gone(inf[k].pid));
    rec_free(&r);
}
END_TEST

/* ------------------------------------------------------------------ many cells, stdin, heartbeat */

START_TEST(test_many_cells)
{
    rec r;
    ex_new(&r, NULL, 2.0, 0);
    const char *bin = script("echo_spec", "spec=$(cat)\n" PROGRESS("train") "\nsleep 0.3\n"
                                          "printf '{\"event\":\"result\",\"metrics\":%s}\\n' \"$spec\"");
    /* cell 8 gets a 300 KB spec: more than a socket buffer, so it is fed from the poll loop */
    size_t big = 300000;
    char *pad = malloc(big + 1);
    memset(pad, 'p', big);
    pad[big] = '\0';
    char *spec = malloc(big + 64);
    for (int id = 1; id <= 8; id++) {
        snprintf(spec, big + 64, "{\"n\":%d,\"pad\":\"%s\"}", id, id == 8 ? pad : "x");
        start_cell(&r, id, spec, bin);
    }
    ck_assert_int_eq(executor_running(r.ex), 8);
    executor_cell_info inf[8];
    ck_assert_int_eq(executor_list(r.ex, inf, 8), 8);
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < i; k++) ck_assert_int_ne(inf[i].pid, inf[k].pid);
    run_until_exits(&r, 8, 30);
    for (int id = 1; id <= 8; id++) {
        cell_rec *c = &r.cell[id];
        ck_assert_msg(c->status == EXECUTOR_DONE, "cell %d: %s; stderr %s", id, c->message, c->stderr_tail);
        ck_assert_int_eq(json_integer_value(json_object_get(c->metrics, "n")), id);
        ck_assert_int_eq(c->n_progress, 1);
    }
    ck_assert_int_eq((int)strlen(json_string_value(json_object_get(r.cell[8].metrics, "pad"))), (int)big);
    ck_assert_int_eq(executor_running(r.ex), 0);
    free(pad);
    free(spec);
    rec_free(&r);
}
END_TEST

START_TEST(test_heartbeat)
{
    rec r;
    ex_new(&r, NULL, 2.0, 0);
    start_cell(&r, 1, "{}",
               script("beat", PROGRESS("a") "\nsleep 0.3\n" PROGRESS("b") "\n"
                                            "echo '{\"event\":\"result\",\"metrics\":{}}'"));
    run_until_exits(&r, 1, 10);
    cell_rec *c = &r.cell[1];
    ck_assert_int_eq(c->status, EXECUTOR_DONE);
    ck_assert_int_eq(c->n_progress, 2);
    ck_assert_str_eq(c->phase[0], "a");
    ck_assert_str_eq(c->phase[1], "b");
    ck_assert(c->last_line_at[0] >= c->started);
    ck_assert_msg(c->last_line_at[1] > c->last_line_at[0], "last_line did not advance");
    ck_assert(isfinite(c->overall[0]));
    rec_free(&r);
}
END_TEST

/* ------------------------------------------------------------------ fds and environment */

START_TEST(test_no_fd_leak)
{
    rec r;
    ex_new(&r, NULL, 1.0, 0);
    /* fds the daemon might have leaked (no O_CLOEXEC) */
    int leak1 = open("/dev/null", O_RDONLY);
    int leak2[2];
    ck_assert_int_ge(leak1, 0);
    ck_assert_int_eq(pipe(leak2), 0);

    /* 1: the cell lists its own fds (ls's own directory fd shows up as /proc/.../fd) */
    start_cell(&r, 1, "{}", script("lsfd", "exec ls -l /proc/self/fd >&2"));
    /* 2: the cell becomes `sleep`, whose fds we inspect from here */
    start_cell(&r, 2, "{}", script("sleeper", PROGRESS("a") "\nexec sleep 30"));
    run_until_exits(&r, 1, 10);
    const char *t = r.cell[1].stderr_tail;
    int n_fd = 0;
    for (const char *line = t; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < 511 ? len : 511), line);
        const char *arrow = strstr(buf, " -> ");
        if (arrow) {
            const char *p = arrow;
            while (p > buf && p[-1] != ' ') p--;
            int fd = atoi(p);
            n_fd++;
            if (fd > 2)
                ck_assert_msg(strstr(arrow, "/proc/") && strstr(arrow, "/fd"), "fd %d leaked into the cell: %s", fd,
                              buf);
        }
        line = nl ? nl + 1 : NULL;
    }
    ck_assert_msg(n_fd >= 3 && n_fd <= 4, "ls saw %d fds: %s", n_fd, t);

    run_until_progress(&r, 2, 1, 10);
    executor_cell_info inf;
    ck_assert_int_eq(executor_info(r.ex, 2, &inf), 0);
    char path[128], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)inf.pid);
    double until = executor_clock() + 10;
    while (strcmp(comm, "sleep\n") != 0) { /* wait for the exec */
        ck_assert_msg(executor_clock() < until, "the cell never became sleep");
        FILE *f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        if (!fgets(comm, sizeof comm, f)) comm[0] = '\0';
        fclose(f);
        executor_poll(r.ex, 10);
    }
    snprintf(path, sizeof path, "/proc/%d/fd", (int)inf.pid);
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    int seen[3] = {0, 0, 0}, others = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        int fd = atoi(de->d_name);
        if (fd >= 0 && fd <= 2)
            seen[fd] = 1;
        else
            others++;
    }
    closedir(d);
    ck_assert_msg(others == 0, "%d fds beyond 0/1/2 in the cell", others);
    ck_assert(seen[0] && seen[1] && seen[2]);
    char target[256];
    snprintf(path, sizeof path, "/proc/%d/fd/0", (int)inf.pid);
    ssize_t n = readlink(path, target, sizeof target - 1);
    ck_assert_int_gt(n, 0);
    target[n] = '\0';
    ck_assert_msg(strncmp(target, "socket:", 7) == 0, "stdin is %s", target);
    snprintf(path, sizeof path, "/proc/%d/fd/1", (int)inf.pid);
    n = readlink(path, target, sizeof target - 1);
    ck_assert_int_gt(n, 0);
    target[n] = '\0';
    ck_assert_msg(strncmp(target, "pipe:", 5) == 0, "stdout is %s", target);
    ck_assert_int_eq(getpgid(inf.pid), inf.pid); /* its own process group */
    ck_assert_int_eq(executor_cancel(r.ex, 2), 0);
    run_until_exits(&r, 2, 10);
    ck_assert_int_eq(r.cell[2].status, EXECUTOR_CANCELLED);
    close(leak1);
    close(leak2[0]);
    close(leak2[1]);
    rec_free(&r);
}
END_TEST

START_TEST(test_env_overrides)
{
    setenv("OPENBLAS_NUM_THREADS", "7", 1);
    setenv("OMP_NUM_THREADS", "7", 1);
    setenv("OMP_WAIT_POLICY", "ACTIVE", 1);
    setenv("OPENBLAS_CORETYPE", "Prescott", 1);
    setenv("PRUNELAB_INHERITED", "yes", 1);
    rec r;
    memset(&r, 0, sizeof r);
    executor_config cfg;
    executor_config_default(&cfg);
    cfg.coretype = "Haswell";
    cfg.threads = 2;
    executor_callbacks cb = {&r, cb_progress, cb_result, cb_error, cb_exit};
    char err[EXECUTOR_ERRLEN];
    r.ex = executor_local_init(&cfg, &cb, err, sizeof err);
    ck_assert_msg(r.ex != NULL, "%s", err);
    const char *bin =
        script("env", "printf '{\"event\":\"result\",\"metrics\":{\"core\":\"%s\",\"blas\":\"%s\",\"omp\":\"%s\","
                      "\"wait\":\"%s\",\"extra\":\"%s\",\"inh\":\"%s\",\"n_blas\":%d,\"n_wait\":%d,\"arg\":\"%s\"}}\\n' "
                      "\"$OPENBLAS_CORETYPE\" \"$OPENBLAS_NUM_THREADS\" \"$OMP_NUM_THREADS\" \"$OMP_WAIT_POLICY\" "
                      "\"$PRUNELAB_EXTRA\" \"$PRUNELAB_INHERITED\" "
                      "$(env | grep -c '^OPENBLAS_NUM_THREADS=') $(env | grep -c '^OMP_WAIT_POLICY=') \"$1\"");
    const char *extra[] = {"PRUNELAB_EXTRA=hello", "OMP_WAIT_POLICY=ACTIVE", "OMP_WAIT_POLICY=PASSIVE", NULL};
    executor_request req = {.cell_id = 1, .spec = "{}", .bin = bin, .threads = 3, .env = extra};
    ck_assert_msg(executor_start(r.ex, &req, err, sizeof err) == 0, "%s", err);
    executor_request req2 = {.cell_id = 2, .spec = "{}", .bin = bin};
    ck_assert_msg(executor_start(r.ex, &req2, err, sizeof err) == 0, "%s", err);
    run_until_exits(&r, 2, 10);
    json_t *m = r.cell[1].metrics;
    ck_assert_msg(r.cell[1].status == EXECUTOR_DONE, "%s; %s", r.cell[1].message, r.cell[1].stderr_tail);
    ck_assert_str_eq(json_string_value(json_object_get(m, "core")), "Haswell");
    ck_assert_str_eq(json_string_value(json_object_get(m, "blas")), "3");
    ck_assert_str_eq(json_string_value(json_object_get(m, "omp")), "3");
    ck_assert_str_eq(json_string_value(json_object_get(m, "wait")), "PASSIVE");
    ck_assert_str_eq(json_string_value(json_object_get(m, "extra")), "hello");
    ck_assert_str_eq(json_string_value(json_object_get(m, "inh")), "yes");
    ck_assert_str_eq(json_string_value(json_object_get(m, "arg")), "cell");
    ck_assert_int_eq(json_integer_value(json_object_get(m, "n_blas")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "n_wait")), 1);
    m = r.cell[2].metrics;
    ck_assert_int_eq(r.cell[2].status, EXECUTOR_DONE);
    ck_assert_str_eq(json_string_value(json_object_get(m, "blas")), "2");
    ck_assert_str_eq(json_string_value(json_object_get(m, "wait")), "PASSIVE");
    ck_assert_str_eq(json_string_value(json_object_get(m, "extra")), "");
    rec_free(&r);
}
END_TEST

/* cfg.nice lowers the priority of every cell (and what it execs); 0 leaves the daemon's. */
START_TEST(test_cell_mem_limit)
{
    /* cfg.mem_limit becomes the cell's RLIMIT_AS (read after the spec arrives, which the executor
     * writes after setting it); a cell that runs out of memory under it fails for good, naming
     * the limit */
    rec r;
    memset(&r, 0, sizeof r);
    executor_config cfg;
    executor_config_default(&cfg);
    cfg.mem_limit = 512ULL << 20;
    executor_callbacks cb = {&r, cb_progress, cb_result, cb_error, cb_exit};
    char err[EXECUTOR_ERRLEN];
    r.ex = executor_local_init(&cfg, &cb, err, sizeof err);
    ck_assert_msg(r.ex != NULL, "%s", err);
    const char *bin = script("aslimit", "cat > /dev/null; printf '{\"event\":\"result\",\"metrics\":{\"kib\":%s}}\\n' "
                                        "\"$(ulimit -v)\"");
    executor_request req = {.cell_id = 1, .spec = "{}", .bin = bin};
    ck_assert_msg(executor_start(r.ex, &req, err, sizeof err) == 0, "%s", err);
    const char *oom = script("oom", "cat > /dev/null; echo 'prunelab: out of memory allocating 99 bytes at x.c:1' >&2; "
                                    "exit 1");
    executor_request req2 = {.cell_id = 2, .spec = "{}", .bin = oom};
    ck_assert_msg(executor_start(r.ex, &req2, err, sizeof err) == 0, "%s", err);
    run_until_exits(&r, 2, 30);
    ck_assert_msg(r.cell[1].status == EXECUTOR_DONE, "%s; %s", r.cell[1].message, r.cell[1].stderr_tail);
    ck_assert_int_eq(json_integer_value(json_object_get(r.cell[1].metrics, "kib")), 512 * 1024);
    ck_assert_int_eq(r.cell[2].status, EXECUTOR_FAILED);
    ck_assert_str_eq(r.cell[2].code, "memory_limit");
    ck_assert_int_eq(r.cell[2].retriable, 0);
    ck_assert_msg(strstr(r.cell[2].message, "RLIMIT_AS 512 MiB"), "%s", r.cell[2].message);
    rec_free(&r);
}
END_TEST

START_TEST(test_cell_nice)
{
    int base = getpriority(PRIO_PROCESS, 0);
    for (int want = 0; want <= 1; want++) {
        rec r;
        memset(&r, 0, sizeof r);
        executor_config cfg;
        executor_config_default(&cfg);
        cfg.nice = want ? 7 : 0;
        executor_callbacks cb = {&r, cb_progress, cb_result, cb_error, cb_exit};
        char err[EXECUTOR_ERRLEN];
        r.ex = executor_local_init(&cfg, &cb, err, sizeof err);
        ck_assert_msg(r.ex != NULL, "%s", err);
        /* field 19 of /proc/PID/stat is the nice value; the sleep orders the read after the
         * daemon's setpriority, which follows posix_spawn at once */
        const char *bin = script("nice", "sleep 0.3; printf '{\"event\":\"result\",\"metrics\":{\"nice\":%s}}\\n' "
                                         "\"$(cut -d' ' -f19 /proc/$$/stat)\"");
        executor_request req = {.cell_id = 1, .spec = "{}", .bin = bin};
        ck_assert_msg(executor_start(r.ex, &req, err, sizeof err) == 0, "%s", err);
        run_until_exits(&r, 1, 10);
        ck_assert_msg(r.cell[1].status == EXECUTOR_DONE, "%s; %s", r.cell[1].message, r.cell[1].stderr_tail);
        int got = (int)json_integer_value(json_object_get(r.cell[1].metrics, "nice"));
        ck_assert_int_eq(got, want ? (base + 7 > 19 ? 19 : base + 7) : base);
        rec_free(&r);
    }
}
END_TEST

/* ------------------------------------------------------------------ API errors */

START_TEST(test_start_errors)
{
    rec r;
    ex_new(&r, NULL, 1.0, 0);
    char err[EXECUTOR_ERRLEN], missing[600];
    snprintf(missing, sizeof missing, "%s/no-such-engine", g_tmp);
    executor_request req = {.cell_id = 1, .spec = "{}", .bin = missing};
    ck_assert_int_eq(executor_start(r.ex, &req, err, sizeof err), -1);
    ck_assert_msg(strstr(err, missing) && strstr(err, "No such file"), "err: %s", err);
    req.bin = NULL; /* no default binary configured */
    ck_assert_int_eq(executor_start(r.ex, &req, err, sizeof err), -1);
    req.bin = script("dup", "sleep 30");
    req.spec = NULL;
    ck_assert_int_eq(executor_start(r.ex, &req, err, sizeof err), -1);
    req.spec = "{}";
    const char *bad_env[] = {"NOEQUALS", NULL};
    req.env = bad_env;
    ck_assert_int_eq(executor_start(r.ex, &req, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "NOEQUALS"), "err: %s", err);
    req.env = NULL;
    ck_assert_int_eq(executor_start(r.ex, &req, err, sizeof err), 0);
    ck_assert_int_eq(executor_start(r.ex, &req, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "already running"), "err: %s", err);
    ck_assert_int_eq(executor_running(r.ex), 1);
    ck_assert_int_eq(executor_cancel(r.ex, 99), -1);
    executor_cell_info inf;
    ck_assert_int_eq(executor_info(r.ex, 99, &inf), -1);
    ck_assert_int_eq(executor_poll(r.ex, 0), 0);
    ck_assert_int_eq(r.n_exits, 0); /* the failed starts report nothing */
    /* a wake-up makes an unbounded poll return */
    executor_wake(r.ex);
    ck_assert_int_eq(executor_poll(r.ex, -1), 0);
    ck_assert_str_eq(r.ex->ops->name, "local");
    ck_assert_str_eq(executor_status_name(EXECUTOR_DIED), "died");
    ck_assert_str_eq(executor_status_name(EXECUTOR_STATUS_COUNT), "?");
    rec_free(&r); /* frees a running cell: killed and reaped */
    executor_free(NULL);
}
END_TEST

/* ------------------------------------------------------------------ registry */

START_TEST(test_registry_lookup)
{
    ck_assert_int_eq(executor_known("local"), 1);
    ck_assert_int_eq(executor_known("slurm"), 0); /* not registered (yet) */
    ck_assert_int_eq(executor_known("Local"), 0);
    ck_assert_int_eq(executor_known("local "), 0);
    ck_assert_int_eq(executor_known(""), 0);
    ck_assert_int_eq(executor_known(NULL), 0);
    char names[64];
    executor_names(names, sizeof names);
    ck_assert_str_eq(names, "local");
    executor_names(names, 3); /* truncated, still terminated */
    ck_assert_str_eq(names, "lo");
    executor_names(names, 1);
    ck_assert_str_eq(names, "");

    rec r;
    memset(&r, 0, sizeof r);
    executor_config cfg;
    executor_config_default(&cfg);
    executor_callbacks cb = {&r, cb_progress, cb_result, cb_error, cb_exit};
    char err[EXECUTOR_ERRLEN] = "";
    ck_assert_ptr_null(executor_new("slurm", &cfg, &cb, err, sizeof err));
    ck_assert_str_eq(err, "unknown executor 'slurm' (available: local)");
    err[0] = '\0';
    ck_assert_ptr_null(executor_new(NULL, &cfg, &cb, err, sizeof err));
    ck_assert_msg(strstr(err, "unknown executor ''"), "err: %s", err);
    ck_assert_ptr_null(executor_new("LOCAL", &cfg, &cb, NULL, 0)); /* no error buffer: still refused */
}
END_TEST

START_TEST(test_registry_makes_local)
{
    rec r;
    memset(&r, 0, sizeof r);
    executor_config cfg;
    executor_config_default(&cfg);
    char bin[512];
    snprintf(bin, sizeof bin, "%s",
             script("registry", PROGRESS("load") "\necho '{\"event\":\"result\",\"metrics\":{\"via\":\"registry\"}}'"));
    cfg.bin = bin;
    cfg.grace_s = 1.5;
    executor_callbacks cb = {&r, cb_progress, cb_result, cb_error, cb_exit};
    char err[EXECUTOR_ERRLEN];
    r.ex = executor_new("local", &cfg, &cb, err, sizeof err);
    ck_assert_msg(r.ex != NULL, "executor_new(local): %s", err);
    ck_assert_str_eq(r.ex->ops->name, "local");
    ck_assert(r.ex->cfg.bin != bin); /* the configuration is copied */
    ck_assert_str_eq(r.ex->cfg.bin, bin);
    ck_assert(r.ex->cfg.grace_s == 1.5);
    ck_assert_ptr_eq(r.ex->cb.user, &r);
    bin[0] = '\0'; /* the executor must not depend on the caller's string */
    start_cell(&r, 4, "{}", NULL); /* the configured binary */
    run_until_exits(&r, 1, 10);
    cell_rec *c = &r.cell[4];
    ck_assert_msg(c->status == EXECUTOR_DONE, "status %s: %s; stderr %s", executor_status_name(c->status), c->message,
                  c->stderr_tail);
    ck_assert_int_eq(c->n_progress, 1);
    ck_assert_int_eq(c->n_result, 1);
    ck_assert_str_eq(json_string_value(json_object_get(c->metrics, "via")), "registry");
    ck_assert(group_gone(c->pid));
    ck_assert_int_eq(executor_running(r.ex), 0);
    rec_free(&r);

    /* an init failure comes back through the registry with its reason */
    struct sigaction ign, old;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    ck_assert_int_eq(sigaction(SIGCHLD, &ign, &old), 0);
    err[0] = '\0';
    executor *ex = executor_new("local", &cfg, &cb, err, sizeof err);
    ck_assert_int_eq(sigaction(SIGCHLD, &old, NULL), 0);
    ck_assert_ptr_null(ex);
    ck_assert_msg(strstr(err, "SIGCHLD is ignored"), "err: %s", err);
}
END_TEST

/* ------------------------------------------------------------------ setup */

static void setup_engine(void)
{
    const char *bin = getenv("PRUNELAB_BIN");
    g_engine_required = bin && *bin;
    if (!g_engine_required) bin = "./prunelab";
    char abs[1024];
    if (access(bin, X_OK) != 0 || !realpath(bin, abs)) return;
    snprintf(g_model, sizeof g_model, "%s/tiny.safetensors", g_tmp);
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "'%s' init --preset tiny --dataset synthetic --out '%s' >'%s/init.log' 2>&1", abs,
             g_model, g_tmp);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_executor: `%s` failed\n", cmd);
        return;
    }
    snprintf(g_engine, sizeof g_engine, "%s", abs);
}

int main(void)
{
    snprintf(g_tmp, sizeof g_tmp, "%s/test_executor.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    setup_engine();

    Suite *s = suite_create("executor");
    TCase *tc = tcase_create("registry");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_registry_lookup);
    tcase_add_test(tc, test_registry_makes_local);
    suite_add_tcase(s, tc);
    tc = tcase_create("real_engine");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_real_ablation);
    tcase_add_test(tc, test_real_bad_spec);
    suite_add_tcase(s, tc);
    tc = tcase_create("protocol");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_garbage_line);
    tcase_add_test(tc, test_long_line);
    tcase_add_test(tc, test_error_event);
    tcase_add_test(tc, test_exit_rules);
    suite_add_tcase(s, tc);
    tc = tcase_create("termination");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_crash_kill9);
    tcase_add_test(tc, test_cancel_ignores_term);
    tcase_add_test(tc, test_cancel_children);
    tcase_add_test(tc, test_hang);
    tcase_add_test(tc, test_kill_all);
    suite_add_tcase(s, tc);
    tc = tcase_create("process");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_many_cells);
    tcase_add_test(tc, test_heartbeat);
    tcase_add_test(tc, test_no_fd_leak);
    tcase_add_test(tc, test_env_overrides);
    tcase_add_test(tc, test_cell_nice);
    tcase_add_test(tc, test_cell_mem_limit);
    tcase_add_test(tc, test_start_errors);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "test_executor: could not remove %s\n", g_tmp);
    return failed ? 1 : 0;
}
