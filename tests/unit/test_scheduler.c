/* test_scheduler.c — server/scheduler.c against a real store and a fake engine.
 *
 * The fake engine is a shell script written into a temp directory; it records every spec it
 * receives (one line each in specs.log) and behaves by the cell spec's "mode": ok (progress +
 * a result with baseline fields), fail (stderr text, exit 3 without a result), sleep (progress,
 * then sleeps), count (records how many fake cells run at once, then a result), pair (waits,
 * up to 15 s, until two pair cells have started, writes "met" or "alone" to pair.log, then waits
 * until both have met: two that both write "met" ran at the same time), train (writes
 * the "out" file, then a result), big (progress, waits for the file "go", then a result of about
 * 60 KB, too big for a database capped at its current size). Tests wait on store state with a deadline, never on timings. */
#define _GNU_SOURCE /* memmem */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "scheduler.h"
#include "store.h"

static char g_dir[4096];
static char g_sql_dir[4096];
static char g_models[4200];
static char g_engine[4200];
static store *g_st;
static pl_config g_cfg;
static const char *g_owner = "alice"; /* owner of the jobs job_add creates */

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Read the scheduler's counters into st until cond holds, for at most 5 s: they are updated just
 * after the store commit, so a test that saw the store change waits for them before asserting. */
#define STATS_UNTIL(s, st, cond)                                                                   \
    do {                                                                                           \
        for (int i_ = 0; i_ < 200; i_++) {                                                         \
            ck_assert_int_eq(scheduler_stats((s), &(st)), 0);                                      \
            if (cond) break;                                                                       \
            sleep_ms(25);                                                                          \
        }                                                                                          \
    } while (0)

static const char *FAKE_ENGINE =
    "#!/bin/sh\n"
    "D='%s'\n"
    "spec=$(cat)\n"
    "printf '%%s\\n' \"$spec\" >> \"$D/specs.log\"\n"
    "prog='{\"event\":\"progress\",\"phase\":\"load\",\"fraction\":0,\"overall\":0.25}'\n"
    "res='{\"event\":\"result\",\"metrics\":{\"recipe\":\"ablation\",\"accuracy\":0.85,"
    "\"loss\":0.5,\"baseline_accuracy\":0.9,\"baseline_loss\":0.3,\"params\":1234}}'\n"
    "case \"$spec\" in\n"
    "*'\"mode\":\"fail\"'*) echo \"$prog\"; echo 'boom: the fake engine failed' >&2; exit 3;;\n"
    "*'\"mode\":\"sleep\"'*) echo \"$prog\"; exec sleep 60;;\n"
    "*'\"mode\":\"count\"'*)\n"
    "  touch \"$D/run.$$\"; ls \"$D\" | grep -c '^run\\.' >> \"$D/conc.log\"; sleep 0.3;\n"
    "  rm -f \"$D/run.$$\"; echo \"$res\";;\n"
    "*'\"mode\":\"train\"'*)\n"
    "  out=$(printf '%%s' \"$spec\" | sed -n 's/.*\"out\":\"\\([^\"]*\\)\".*/\\1/p')\n"
    "  echo \"$prog\"; printf 'weights' > \"$out\" || exit 1\n"
    "  echo '{\"event\":\"result\",\"metrics\":{\"recipe\":\"train\",\"accuracy\":0.8,\"loss\":0.6,"
    "\"params\":4321}}';;\n"
    "*'\"mode\":\"pair\"'*)\n"
    "  touch \"$D/pair.$$\"; i=0\n"
    "  while [ $(ls \"$D\" | grep -c '^pair\\.') -lt 2 ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done\n"
    "  if [ $i -lt 300 ]; then echo met >> \"$D/pair.log\"; else echo alone >> \"$D/pair.log\"; fi\n"
    "  touch \"$D/met.$$\"; i=0\n"
    "  while [ $(ls \"$D\" | grep -c '^met\\.') -lt 2 ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done\n"
    "  echo \"$res\";;\n"
    "*'\"mode\":\"big\"'*)\n"
    "  echo \"$prog\"; i=0; while [ ! -e \"$D/go\" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n"
    "  big=$(head -c 60000 /dev/zero | tr '\\0' x)\n"
    "  echo \"{\\\"event\\\":\\\"result\\\",\\\"metrics\\\":{\\\"accuracy\\\":0.75,\\\"pad\\\":\\\"$big\\\"}}\";;\n"
    "*) echo \"$prog\"; echo \"$res\";;\n"
    "esac\n";

static void setup(void) {
    const char *src = getenv("PRUNELAB_SRCDIR");
    snprintf(g_sql_dir, sizeof g_sql_dir, "%s/sql", src && *src ? src : ".");
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/prunelab-test_scheduler.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_models, sizeof g_models, "%s/models", g_dir);
    ck_assert_int_eq(mkdir(g_models, 0755), 0);
    snprintf(g_engine, sizeof g_engine, "%s/fake-engine.sh", g_dir);
    FILE *f = fopen(g_engine, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, FAKE_ENGINE, g_dir);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(g_engine, 0755), 0);
    char db[4300], err[512];
    snprintf(db, sizeof db, "%s/prunelab.db", g_dir);
    int rc = store_open(db, g_sql_dir, &g_st, err, sizeof err);
    ck_assert_msg(rc == STORE_OK, "store_open: %s", err);
    config_init(&g_cfg);
    g_cfg.workers = 1;
    g_cfg.threads_per_cell = 1;
    g_cfg.lease_s = 30;
    g_cfg.owner_running_cap = 0;
    g_owner = "alice";
    free(g_cfg.data_dir);
    g_cfg.data_dir = strdup(g_dir); /* the spool lives in data_dir/spool */
}

static void teardown(void) {
    store_close(g_st);
    g_st = NULL;
    config_free(&g_cfg);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
}

static scheduler *sched_start(void) {
    char err[512];
    scheduler *s = scheduler_start(g_st, &g_cfg, g_engine, g_models, err, sizeof err);
    ck_assert_msg(s != NULL, "scheduler_start: %s", err);
    return s;
}

/* A job of n cells, each spec cell_spec; returns its id. */
static int64_t job_add(store_job_type type, const char *job_spec, const char *model,
                       const char *cell_spec, size_t n, int max_attempts) {
    const char *specs[16];
    ck_assert_uint_le(n, 16);
    for (size_t i = 0; i < n; i++) specs[i] = cell_spec;
    if (model) { /* the model a job names must exist when it is stored */
        char merr[512];
        store_model m = {.name = (char *)model, .path = "/m/x.safetensors", .params = 1, .accuracy = 0.5,
                         .owner = "alice"};
        int mrc = store_model_insert(g_st, &m, NULL, merr, sizeof merr);
        ck_assert_msg(mrc == STORE_OK || mrc == STORE_EXISTS, "model insert: %s", merr);
    }
    store_job_new nj = {.owner = g_owner, .type = type, .spec_json = job_spec, .model = model,
                        .max_attempts = max_attempts, .cell_specs = specs, .n_cells = n};
    int64_t id = 0;
    char err[512];
    int rc = store_job_create(g_st, &nj, &id, err, sizeof err);
    ck_assert_msg(rc == STORE_OK, "store_job_create: %s", err);
    return id;
}

static int job_state(int64_t id) {
    store_job j;
    char err[512];
    ck_assert_int_eq(store_job_get(g_st, id, &j, err, sizeof err), STORE_OK);
    int s = j.state;
    store_job_free(&j);
    return s;
}

/* Wait (up to 20 s) for the job to reach state want. */
static void job_wait(int64_t id, int want) {
    for (int i = 0; i < 2000; i++) {
        if (job_state(id) == want) return;
        sleep_ms(10);
    }
    ck_abort_msg("job %lld: state %s, want %s", (long long)id, store_state_name(job_state(id)),
                 store_state_name(want));
}

/* The first cell of a job. */
static void first_cell(int64_t job_id, store_cell *c) {
    store_cell *cells;
    size_t n;
    char err[512];
    ck_assert_int_eq(store_cells_list(g_st, job_id, -1, &cells, &n, err, sizeof err), STORE_OK);
    ck_assert_uint_ge(n, 1);
    ck_assert_int_eq(store_cell_get(g_st, cells[0].id, c, err, sizeof err), STORE_OK);
    store_cells_free(cells, n);
}

/* Wait until the job's first cell runs with a pid and has reported progress. */
static void cell_wait_running(int64_t job_id, store_cell *c) {
    for (int i = 0; i < 2000; i++) {
        first_cell(job_id, c);
        if (c->state == STORE_STATE_RUNNING && c->pid > 0 && c->progress > 0.2) return;
        store_cell_free(c);
        sleep_ms(10);
    }
    ck_abort_msg("job %lld: cell never ran", (long long)job_id);
}

static char *file_read(const char *name) {
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count_substr(const char *s, const char *sub) {
    int n = 0;
    for (const char *p = strstr(s, sub); p; p = strstr(p + 1, sub)) n++;
    return n;
}

START_TEST(test_runs_to_done_with_baseline) {
    int64_t id = job_add(STORE_JOB_ABLATION, "{\"type\":\"ablation\",\"model\":\"m1\"}", "m1",
                         "{\"recipe\":\"ablation\",\"mode\":\"ok\",\"rate\":0.5}", 3, 2);
    scheduler *s = sched_start();
    scheduler_wake(s);
    job_wait(id, STORE_STATE_DONE);
    scheduler_stats_t st; /* counted just after the store has the last result: wait for the count */
    STATS_UNTIL(s, st, st.done == 3 && st.running == 0);
    ck_assert_int_eq(st.done, 3);
    ck_assert_int_eq(st.started, 3);
    ck_assert_int_eq(st.failed, 0);
    ck_assert_int_eq(st.running, 0);
    scheduler_stop(s, 1.0);

    store_job j;
    char err[512];
    ck_assert_int_eq(store_job_get(g_st, id, &j, err, sizeof err), STORE_OK);
    ck_assert_int_eq(j.counts[STORE_STATE_DONE], 3);
    ck_assert_ptr_nonnull(j.baseline_json);
    json_t *b = json_loads(j.baseline_json, 0, NULL);
    ck_assert_ptr_nonnull(b);
    ck_assert(fabs(json_number_value(json_object_get(b, "accuracy")) - 0.9) < 1e-12);
    ck_assert(fabs(json_number_value(json_object_get(b, "loss")) - 0.3) < 1e-12);
    json_decref(b);
    store_job_free(&j);

    store_cell c;
    first_cell(id, &c);
    ck_assert_int_eq(c.state, STORE_STATE_DONE);
    ck_assert_ptr_nonnull(c.result_json);
    json_t *r = json_loads(c.result_json, 0, NULL);
    ck_assert(fabs(json_number_value(json_object_get(r, "accuracy")) - 0.85) < 1e-12);
    ck_assert_int_eq(json_integer_value(json_object_get(r, "params")), 1234);
    json_decref(r);
    store_cell_free(&c);

    /* every spec names the resolved model path and the thread count; with one worker the
     * first cell measured the baseline and the two later ones were given it */
    char *log = file_read("specs.log");
    ck_assert_ptr_nonnull(log);
    char want[4400];
    snprintf(want, sizeof want, "\"model\":\"%s/m1.safetensors\"", g_models);
    ck_assert_int_eq(count_substr(log, want), 3);
    ck_assert_int_eq(count_substr(log, "\"threads\":1"), 3);
    ck_assert_int_eq(count_substr(log, "\"baseline\":{\"accuracy\":0.9"), 2);
    ck_assert_int_eq(count_substr(log, "\"baseline\":"), 2);
    const char *first_line_end = strchr(log, '\n');
    ck_assert_ptr_nonnull(first_line_end);
    ck_assert_ptr_null(memmem(log, (size_t)(first_line_end - log), "baseline", 8));
    free(log);
}
END_TEST

START_TEST(test_failure_retried_then_failed) {
    int64_t id = job_add(STORE_JOB_ABLATION, "{\"type\":\"ablation\"}", "m1",
                         "{\"recipe\":\"ablation\",\"mode\":\"fail\"}", 1, 2);
    scheduler *s = sched_start();
    job_wait(id, STORE_STATE_FAILED);
    /* the scheduler counts a failure just after the store has it: wait for the count (generous
     * deadline; what is asserted is the count, not how soon) */
    scheduler_stats_t st;
    STATS_UNTIL(s, st, st.failed >= 2);
    ck_assert_int_eq(st.failed, 2);
    ck_assert_int_eq(st.started, 2);
    scheduler_stop(s, 1.0);
    store_cell c;
    first_cell(id, &c);
    ck_assert_int_eq(c.state, STORE_STATE_FAILED);
    ck_assert_int_eq(c.attempts, 2);
    ck_assert_str_eq(c.error_code, "died");
    ck_assert_ptr_nonnull(c.stderr_tail);
    ck_assert_ptr_nonnull(strstr(c.stderr_tail, "boom: the fake engine failed"));
    store_cell_free(&c);
    char *log = file_read("specs.log");
    ck_assert_int_eq(count_substr(log, "\"mode\":\"fail\""), 2); /* ran twice */
    free(log);
}
END_TEST

START_TEST(test_worker_cap) {
    /* two workers: the two pair cells run at the same time (each sees the other start), and
     * the six count cells never more than two at once */
    g_cfg.workers = 2;
    int64_t pair = job_add(STORE_JOB_ABLATION, "{\"type\":\"ablation\"}", "m1",
                           "{\"recipe\":\"ablation\",\"mode\":\"pair\"}", 2, 1);
    int64_t id = job_add(STORE_JOB_ABLATION, "{\"type\":\"ablation\"}", "m1",
                         "{\"recipe\":\"ablation\",\"mode\":\"count\"}", 6, 2);
    scheduler *s = sched_start();
    int max_running = 0;
    for (int i = 0; i < 2000 && job_state(id) != STORE_STATE_DONE; i++) {
        store_metrics m;
        char err[512];
        ck_assert_int_eq(store_metrics_get(g_st, &m, err, sizeof err), STORE_OK);
        if (m.cells[STORE_STATE_RUNNING] > max_running) max_running = (int)m.cells[STORE_STATE_RUNNING];
        sleep_ms(10);
    }
    job_wait(id, STORE_STATE_DONE);
    job_wait(pair, STORE_STATE_DONE);
    scheduler_stop(s, 1.0);
    ck_assert_int_le(max_running, 2);
    ck_assert_int_ge(max_running, 1);
    char *met = file_read("pair.log");
    ck_assert_ptr_nonnull(met);
    ck_assert_str_eq(met, "met\nmet\n");
    free(met);
    char *conc = file_read("conc.log");
    ck_assert_ptr_nonnull(conc);
    int lines = 0;
    for (char *p = conc; *p; p++) {
        if (*p == '\n') continue;
        int v = atoi(p);
        ck_assert_int_ge(v, 1);
        ck_assert_int_le(v, 2);
        lines++;
        p = strchr(p, '\n');
        if (!p) break;
    }
    ck_assert_int_eq(lines, 6);
    free(conc);
}
END_TEST

START_TEST(test_owner_cap) {
    /* two workers, but one owner may run only one cell at a time */
    g_cfg.workers = 2;
    g_cfg.owner_running_cap = 1;
    int64_t id = job_add(STORE_JOB_ABLATION, "{\"type\":\"ablation\"}", "m1",
                         "{\"recipe\":\"ablation\",\"mode\":\"count\"}", 3, 2);
    scheduler *s = sched_start();
    job_wait(id, STORE_STATE_DONE);
    scheduler_stop(s, 1.0);
    char *conc = file_read("conc.log");
    ck_assert_ptr_nonnull(conc);
    ck_assert_str_eq(conc, "1\n1\n1\n");
    free(conc);
}
END_TEST

/* Running cells of a job, and (with pids) how many have a process. */
static int job_running(int64_t job_id) {
    store_cell *cells;
    size_t n;
    char err[512];
    ck_assert_int_eq(store_cells_list(g_st, job_id, STORE_STATE_RUNNING, &cells, &n, err, sizeof err), STORE_OK);
    int k = 0;
    for (size_t i = 0; i < n; i++) k += cells[i].pid > 0;
    store_cells_free(cells, n);
    return k;
}

/* Wait (up to 20 s) until the jobs run want_a and want_b cells with a process. */
static void running_wait(int64_t a, int want_a, int64_t b, int want_b) {
    for (int i = 0; i < 2000; i++) {
        if (job_running(a) == want_a && (b == 0 || job_running(b) == want_b)) return;
        sleep_ms(10);
    }
    ck_abort_msg("running: %d and %d, want %d and %d", job_running(a), b ? job_running(b) : 0, want_a, want_b);
}

/* Kill one running cell of job_id (the executor then reports it dead). */
static void kill_one(int64_t job_id) {
    store_cell *cells;
    size_t n;
    char err[512];
    ck_assert_int_eq(store_cells_list(g_st, job_id, STORE_STATE_RUNNING, &cells, &n, err, sizeof err), STORE_OK);
    ck_assert_uint_ge(n, 1);
    ck_assert_int_gt(cells[0].pid, 0);
    ck_assert_int_eq(kill(cells[0].pid, SIGKILL), 0);
    store_cells_free(cells, n);
}

START_TEST(test_owner_fair_share) {
    /* owner_running_cap 0: alice alone takes all four workers; once bob queues too, each owner
     * may run ceil(4 / 2) = 2, so both slots that alice's dying cells free go to bob (plain round
     * robin would give the second back to alice) */
    g_cfg.workers = 4;
    int64_t a = job_add(STORE_JOB_ABLATION, "{\"type\":\"ablation\"}", "m1",
                        "{\"recipe\":\"ablation\",\"mode\":\"sleep\"}", 8, 1);
    scheduler *s = sched_start();
    running_wait(a, 4, 0, 0);
    g_owner = "bob";
    int64_t b = job_add(STORE_JOB_ABLATION, "{\"type\":\"ablation\"}", "m1",
                        "{\"recipe\":\"ablation\",\"mode\":\"sleep\"}", 4, 1);
    scheduler_wake(s);
    kill_one(a);
    running_wait(a, 3, b, 1);
    kill_one(a);
    running_wait(a, 2, b, 2);
    char err[512];
    store_running *r = NULL;
    size_t n = 0;
    ck_assert_int_eq(store_job_cancel(g_st, a, &r, &n, err, sizeof err), STORE_OK);
    store_running_free(r, n);
    ck_assert_int_eq(store_job_cancel(g_st, b, &r, &n, err, sizeof err), STORE_OK);
    store_running_free(r, n);
    scheduler_cancel_job(s, a);
    scheduler_cancel_job(s, b);
    job_wait(a, STORE_STATE_CANCELLED);
    scheduler_stop(s, 1.0);
}
END_TEST

START_TEST(test_cancel_kills_cell) {
    int64_t id = job_add(STORE_JOB_ABLATION, "{\"type\":\"ablation\"}", "m1",
                         "{\"recipe\":\"ablation\",\"mode\":\"sleep\"}", 2, 2);
    scheduler *s = sched_start();
    store_cell c;
    cell_wait_running(id, &c);
    pid_t pid = c.pid;
    store_cell_free(&c);
    ck_assert_int_eq(kill(pid, 0), 0);
    store_running *run;
    size_t n_run;
    char err[512];
    ck_assert_int_eq(store_job_cancel(g_st, id, &run, &n_run, err, sizeof err), STORE_OK);
    ck_assert_uint_eq(n_run, 1);
    store_running_free(run, n_run);
    scheduler_cancel_job(s, id);
    int gone = 0;
    for (int i = 0; i < 1000 && !gone; i++) {
        first_cell(id, &c);
        gone = c.state == STORE_STATE_CANCELLED;
        store_cell_free(&c);
        if (!gone) sleep_ms(10);
    }
    ck_assert_msg(gone, "cancelled cell still running");
    ck_assert_int_eq(kill(pid, 0), -1);
    ck_assert_int_eq(errno, ESRCH);
    ck_assert_int_eq(job_state(id), STORE_STATE_CANCELLED);
    scheduler_stop(s, 1.0);
}
END_TEST

START_TEST(test_stop_releases_running) {
    int64_t id = job_add(STORE_JOB_ABLATION, "{\"type\":\"ablation\"}", "m1",
                         "{\"recipe\":\"ablation\",\"mode\":\"sleep\"}", 1, 2);
    scheduler *s = sched_start();
    store_cell c;
    cell_wait_running(id, &c);
    pid_t pid = c.pid;
    ck_assert_int_eq(c.attempts, 1);
    store_cell_free(&c);
    scheduler_stop(s, 0.3);
    first_cell(id, &c);
    ck_assert_int_eq(c.state, STORE_STATE_QUEUED);
    ck_assert_int_eq(c.attempts, 0); /* the released attempt does not count */
    store_cell_free(&c);
    ck_assert_int_eq(kill(pid, 0), -1);
    store_job j;
    char err[512];
    ck_assert_int_eq(store_job_get(g_st, id, &j, err, sizeof err), STORE_OK);
    ck_assert_int_eq(j.counts[STORE_STATE_QUEUED], 1);
    ck_assert_int_eq(j.counts[STORE_STATE_RUNNING], 0);
    store_job_free(&j);
}
END_TEST

START_TEST(test_recovery_requeues) {
    int64_t id = job_add(STORE_JOB_ABLATION, "{\"type\":\"ablation\"}", "m1",
                         "{\"recipe\":\"ablation\",\"mode\":\"ok\"}", 1, 3);
    /* a previous daemon claimed the cell and died */
    store_cell c;
    char err[512];
    ck_assert_int_eq(store_cell_claim(g_st, "dead:1", 0, 600000, &c, err, sizeof err), STORE_OK);
    store_cell_free(&c);
    first_cell(id, &c);
    ck_assert_int_eq(c.state, STORE_STATE_RUNNING);
    store_cell_free(&c);
    scheduler *s = sched_start();
    job_wait(id, STORE_STATE_DONE);
    scheduler_stop(s, 1.0);
    first_cell(id, &c);
    ck_assert_int_eq(c.state, STORE_STATE_DONE);
    ck_assert_int_eq(c.attempts, 2);
    store_cell_free(&c);
}
END_TEST

START_TEST(test_train_registers_model) {
    /* as jobspec.c writes it: the cell's "out" names the model to register */
    int64_t id = job_add(STORE_JOB_TRAIN,
                         "{\"type\":\"train\",\"name\":\"tiny1\",\"dataset\":\"synthetic\"}", NULL,
                         "{\"recipe\":\"train\",\"mode\":\"train\",\"dataset\":\"synthetic\","
                         "\"out\":\"tiny1\"}", 1, 2);
    scheduler *s = sched_start();
    job_wait(id, STORE_STATE_DONE);
    scheduler_stats_t st; /* counted just after the store has the result: wait for the count */
    STATS_UNTIL(s, st, st.models >= 1);
    ck_assert_int_eq(st.models, 1);
    scheduler_stop(s, 1.0);
    store_model m;
    char err[512];
    ck_assert_int_eq(store_model_get(g_st, "tiny1", &m, err, sizeof err), STORE_OK);
    char want[4400];
    snprintf(want, sizeof want, "%s/tiny1.safetensors", g_models);
    ck_assert_str_eq(m.path, want);
    ck_assert_str_eq(m.owner, "alice");
    ck_assert_str_eq(m.dataset, "synthetic");
    ck_assert_int_eq(m.params, 4321);
    ck_assert(fabs(m.accuracy - 0.8) < 1e-9);
    ck_assert_ptr_nonnull(m.info_json);
    ck_assert_ptr_nonnull(strstr(m.info_json, "\"recipe\":\"train\""));
    store_model_free(&m);
    struct stat sb;
    ck_assert_int_eq(stat(want, &sb), 0);
    ck_assert_int_eq((int)sb.st_size, 7);
    /* the part file is gone and no "name" key reached the engine */
    DIR *d = opendir(g_models);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        ck_assert_ptr_null(strstr(e->d_name, ".part-"));
        n++;
    }
    closedir(d);
    ck_assert_int_eq(n, 1);
    char *log = file_read("specs.log");
    ck_assert_ptr_null(strstr(log, "\"name\""));
    snprintf(want, sizeof want, "\"out\":\"%s/tiny1.safetensors.part-", g_models);
    ck_assert_ptr_nonnull(strstr(log, want));
    free(log);
}
END_TEST

START_TEST(test_train_name_taken_fails) {
    /* a model of that name already exists: the new one must not replace it (the name comes
     * from the cell spec's "name" here, which wins over the job spec's) */
    char path[4400];
    snprintf(path, sizeof path, "%s/tiny1.safetensors", g_models);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("old", f);
    fclose(f);
    int64_t id = job_add(STORE_JOB_TRAIN, "{\"type\":\"train\",\"name\":\"other\"}", NULL,
                         "{\"recipe\":\"train\",\"mode\":\"train\",\"dataset\":\"synthetic\","
                         "\"name\":\"tiny1\"}", 1, 2);
    scheduler *s = sched_start();
    job_wait(id, STORE_STATE_FAILED);
    scheduler_stop(s, 1.0);
    store_cell c;
    first_cell(id, &c);
    ck_assert_str_eq(c.error_code, "model_exists");
    store_cell_free(&c);
    char *log = file_read("specs.log");
    ck_assert_ptr_null(strstr(log, "\"name\""));
    free(log);
    char err[512];
    store_model m;
    ck_assert_int_eq(store_model_get(g_st, "tiny1", &m, err, sizeof err), STORE_NOTFOUND);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq((int)sb.st_size, 3);
}
END_TEST

/* Wait (up to 20 s) until the job's first cell is running in phase "committing": its result
 * could not be committed and is being retried. */
static void cell_wait_committing(int64_t job_id, store_cell *c) {
    for (int i = 0; i < 2000; i++) {
        first_cell(job_id, c);
        if (c->state == STORE_STATE_RUNNING && c->phase && strcmp(c->phase, "committing") == 0) return;
        store_cell_free(c);
        sleep_ms(10);
    }
    ck_abort_msg("job %lld: the cell never waited for its commit", (long long)job_id);
}

/* A "big" cell runs; the database is capped at its size (SQLITE_FULL for real) before the result
 * arrives, so the result's commit fails. Returns the job id with the cell waiting. */
static int64_t big_cell_blocked(scheduler **out, store_cell *c) {
    g_cfg.lease_s = 5; /* short, so that a cell left without its lease would be re-run */
    int64_t id = job_add(STORE_JOB_ABLATION, "{\"type\":\"ablation\"}", "m1",
                         "{\"recipe\":\"ablation\",\"mode\":\"big\"}", 1, 3);
    *out = sched_start();
    cell_wait_running(id, c);
    store_cell_free(c);
    char err[512], go[4300];
    int64_t pages = 0;
    ck_assert_int_eq(store_page_limit_set(g_st, 1, &pages, err, sizeof err), STORE_OK);
    ck_assert_int_gt(pages, 0);
    snprintf(go, sizeof go, "%s/go", g_dir);
    FILE *f = fopen(go, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    cell_wait_committing(id, c);
    return id;
}

START_TEST(test_commit_retried_when_full) {
    scheduler *s = NULL;
    store_cell c;
    int64_t id = big_cell_blocked(&s, &c);
    ck_assert_int_eq(c.attempts, 1);
    ck_assert_ptr_null(c.result_json);
    char spool[4400];
    snprintf(spool, sizeof spool, "%s/spool/cell-%lld.json", g_dir, (long long)c.id);
    store_cell_free(&c);
    struct stat sb;
    ck_assert_int_eq(stat(spool, &sb), 0); /* the result waits on disk too */
    /* longer than the lease: the cell keeps it while its commit is retried */
    sleep_ms(6000);
    first_cell(id, &c);
    ck_assert_int_eq(c.state, STORE_STATE_RUNNING);
    ck_assert_int_eq(c.attempts, 1);
    store_cell_free(&c);
    char err[512];
    ck_assert_int_eq(store_page_limit_set(g_st, 0, NULL, err, sizeof err), STORE_OK); /* space again */
    job_wait(id, STORE_STATE_DONE);
    /* the scheduler thread drops the pending commit just after the store shows the job done:
     * stats catch up within a tick, so wait for them (bounded) before reading */
    scheduler_stats_t st;
    STATS_UNTIL(s, st, st.committing == 0);
    scheduler_stop(s, 1.0);
    ck_assert_int_eq(st.started, 1);
    ck_assert_int_eq(st.failed, 0);
    ck_assert_int_eq(st.done, 1);
    ck_assert_int_eq(st.committing, 0);
    first_cell(id, &c);
    ck_assert_int_eq(c.state, STORE_STATE_DONE);
    ck_assert_int_eq(c.attempts, 1);
    ck_assert_ptr_nonnull(c.result_json);
    ck_assert_ptr_nonnull(strstr(c.result_json, "\"pad\":\"xxxx"));
    store_cell_free(&c);
    ck_assert_int_eq(stat(spool, &sb), -1);
    char *log = file_read("specs.log");
    ck_assert_int_eq(count_substr(log, "\"mode\":\"big\""), 1); /* ran once */
    free(log);
}
END_TEST

START_TEST(test_spooled_result_replayed_at_start) {
    /* the daemon stops while the result waits for its commit: the next start commits it from
     * the spool instead of running the cell again */
    scheduler *s = NULL;
    store_cell c;
    int64_t id = big_cell_blocked(&s, &c);
    int64_t cell_id = c.id;
    store_cell_free(&c);
    scheduler_stop(s, 1.0); /* its last try fails too: the database is still full */
    char spool[4400];
    snprintf(spool, sizeof spool, "%s/spool/cell-%lld.json", g_dir, (long long)cell_id);
    struct stat sb;
    ck_assert_int_eq(stat(spool, &sb), 0);
    first_cell(id, &c);
    ck_assert_int_eq(c.state, STORE_STATE_RUNNING);
    store_cell_free(&c);
    /* a new daemon: a fresh connection has no cap */
    store_close(g_st);
    char db[4300], err[512];
    snprintf(db, sizeof db, "%s/prunelab.db", g_dir);
    ck_assert_int_eq(store_open(db, g_sql_dir, &g_st, err, sizeof err), STORE_OK);
    s = sched_start();
    first_cell(id, &c); /* committed during scheduler_start, before recovery */
    ck_assert_int_eq(c.state, STORE_STATE_DONE);
    ck_assert_int_eq(c.attempts, 1);
    ck_assert_ptr_nonnull(c.result_json);
    ck_assert_ptr_nonnull(strstr(c.result_json, "\"accuracy\":0.75"));
    store_cell_free(&c);
    ck_assert_int_eq(job_state(id), STORE_STATE_DONE);
    scheduler_stop(s, 1.0);
    ck_assert_int_eq(stat(spool, &sb), -1);
    char *log = file_read("specs.log");
    ck_assert_int_eq(count_substr(log, "\"mode\":\"big\""), 1);
    free(log);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("scheduler");
    TCase *tc = tcase_create("scheduler");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_runs_to_done_with_baseline);
    tcase_add_test(tc, test_failure_retried_then_failed);
    tcase_add_test(tc, test_worker_cap);
    tcase_add_test(tc, test_owner_cap);
    tcase_add_test(tc, test_owner_fair_share);
    tcase_add_test(tc, test_cancel_kills_cell);
    tcase_add_test(tc, test_stop_releases_running);
    tcase_add_test(tc, test_recovery_requeues);
    tcase_add_test(tc, test_train_registers_model);
    tcase_add_test(tc, test_train_name_taken_fails);
    tcase_add_test(tc, test_commit_retried_when_full);
    tcase_add_test(tc, test_spooled_result_replayed_at_start);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
