/* test_slurm_batch.c — unit tests for server/slurm_batch.c: the batch directory it writes, and
 * run.sh run as Slurm would run it (SLURM_ARRAY_TASK_ID, SLURM_CPUS_PER_TASK, SLURM_RESTART_COUNT)
 * on a fake engine: the manifest maps tasks to cells, the engine's lines land in the events file
 * after a slurm_start line, the exit file is written last with the status, a task outside the
 * manifest does nothing, USR2 to the script reaches the engine, and a requeued run starts over. */
#define _GNU_SOURCE
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "slurm_batch.h"

static char g_root[256], g_dir[320], g_bin[320];

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return strdup("");
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

static char *cell_file(int64_t id, const char *what)
{
    char p[512];
    ck_assert_int_eq(slurm_batch_path(p, sizeof p, g_dir, id, what), 0);
    return slurp(p);
}

/* The fake engine: `BIN cell` reads the spec; "ok" -> a progress and a result line, exit 0;
 * "fail" -> an error line, exit 2; "sleep" -> a progress line, then becomes `sleep 30`. It
 * reports its thread variables on stderr. */
static void setup(void)
{
    strcpy(g_root, "/tmp/prunelab-test_slurm_batch.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_root));
    snprintf(g_dir, sizeof g_dir, "%s/batch-1", g_root);
    snprintf(g_bin, sizeof g_bin, "%s/fake engine", g_root); /* a space in the path, quoted by run.sh */
    FILE *f = fopen(g_bin, "w");
    ck_assert_ptr_nonnull(f);
    fputs("#!/bin/sh\n[ \"$1\" = cell ] || exit 9\nspec=$(cat)\necho \"threads $OMP_NUM_THREADS $OPENBLAS_NUM_THREADS\" >&2\n"
          "case $spec in\n"
          "*ok*) echo '{\"event\":\"progress\",\"phase\":\"eval\",\"fraction\":0.5}'; "
          "echo '{\"event\":\"result\",\"metrics\":{\"accuracy\":0.9}}'; exit 0 ;;\n"
          "*fail*) echo '{\"event\":\"error\",\"code\":\"bad_spec\",\"message\":\"no\"}'; exit 2 ;;\n"
          "*sleep*) echo '{\"event\":\"progress\",\"phase\":\"sleeping\"}'; exec sleep 30 ;;\n"
          "esac\nexit 7\n",
          f);
    fclose(f);
    chmod(g_bin, 0755);
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    ck_assert_int_eq(system(cmd), 0);
}

/* run.sh for task idx (restart count r), synchronously; returns its exit status. */
static int run_task(const char *idx, const char *restart)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "env SLURM_ARRAY_TASK_ID=%s SLURM_CPUS_PER_TASK=2 SLURM_RESTART_COUNT=%s "
                              "SLURM_ARRAY_JOB_ID=77 '%s/run.sh' 2>/dev/null",
             idx, restart, g_dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const slurm_batch_cell CELLS[] = {{11, "{\"mode\":\"ok\"}"}, {12, "{\"mode\":\"fail\"}"},
                                         {13, "{\"mode\":\"sleep\"}"}};

START_TEST(test_write_and_run)
{
    setup();
    char err[512];
    ck_assert_int_eq(slurm_batch_write(g_dir, g_bin, CELLS, 3, err, sizeof err), 0);
    int64_t ids[8];
    ck_assert_int_eq(slurm_batch_manifest(g_dir, ids, 8, err, sizeof err), 3);
    ck_assert_int_eq(ids[0], 11);
    ck_assert_int_eq(ids[2], 13);
    char *spec = cell_file(12, "spec");
    ck_assert_str_eq(spec, CELLS[1].spec);
    free(spec);
    int st = 0, rs = 0, tk = 0;
    ck_assert_int_eq(slurm_batch_exit(g_dir, 11, &st, &rs, &tk, err, sizeof err), 1); /* not yet */

    ck_assert_int_eq(run_task("0", "0"), 0);
    ck_assert_int_eq(slurm_batch_exit(g_dir, 11, &st, &rs, &tk, err, sizeof err), 0);
    ck_assert_int_eq(st, 0);
    ck_assert_int_eq(rs, 0);
    ck_assert_int_eq(tk, 0);
    char *ev = cell_file(11, "events");
    ck_assert_msg(strncmp(ev, "{\"event\":\"slurm_start\",\"restart\":0,\"task\":0,\"host\":\"", 52) == 0, "%s", ev);
    ck_assert_ptr_nonnull(strstr(ev, "\"job\":\"77_0\"}\n{\"event\":\"progress\""));
    ck_assert_ptr_nonnull(strstr(ev, "{\"event\":\"result\",\"metrics\":{\"accuracy\":0.9}}\n"));
    free(ev);
    char *se = cell_file(11, "stderr");
    ck_assert_str_eq(se, "threads 2 2\n");
    free(se);

    ck_assert_int_eq(run_task("1", "0"), 2);
    ck_assert_int_eq(slurm_batch_exit(g_dir, 12, &st, &rs, &tk, err, sizeof err), 0);
    ck_assert_int_eq(st, 2);
    ck_assert_int_eq(tk, 1);

    /* a task the manifest does not have, or no task at all: nothing runs, nothing is written */
    ck_assert_int_eq(run_task("5", "0"), 3);
    ck_assert_int_eq(run_task("''", "0"), 3);
    ck_assert_int_eq(run_task("1x", "0"), 3);

    /* requeued: the old exit file goes first, a second slurm_start line, restart 1 recorded */
    ck_assert_int_eq(run_task("0", "1"), 0);
    ck_assert_int_eq(slurm_batch_exit(g_dir, 11, &st, &rs, &tk, err, sizeof err), 0);
    ck_assert_int_eq(rs, 1);
    ev = cell_file(11, "events");
    ck_assert_ptr_nonnull(strstr(ev, "{\"event\":\"slurm_start\",\"restart\":1,"));
    free(ev);
    teardown();
}
END_TEST

START_TEST(test_usr2_reaches_the_engine)
{
    setup();
    char err[512];
    ck_assert_int_eq(slurm_batch_write(g_dir, g_bin, CELLS, 3, err, sizeof err), 0);
    char script[512];
    snprintf(script, sizeof script, "%s/run.sh", g_dir);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("SLURM_ARRAY_TASK_ID", "2", 1);
        execl("/bin/sh", "sh", script, (char *)NULL);
        _exit(127);
    }
    int seen = 0;
    for (int i = 0; i < 100 && !seen; i++) {
        char *ev = cell_file(13, "events");
        seen = strstr(ev, "sleeping") != NULL;
        free(ev);
        if (!seen) nanosleep(&(struct timespec){0, 50000000}, NULL);
    }
    ck_assert(seen);
    ck_assert_int_eq(kill(pid, SIGUSR2), 0);
    int st = 0, ws;
    for (int i = 0; i < 100; i++) {
        if (waitpid(pid, &ws, WNOHANG) == pid) break;
        nanosleep(&(struct timespec){0, 50000000}, NULL);
        if (i == 99) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            ck_abort_msg("run.sh did not end after USR2");
        }
    }
    ck_assert(WIFEXITED(ws));
    ck_assert_int_eq(WEXITSTATUS(ws), 128 + SIGUSR2);
    ck_assert_int_eq(slurm_batch_exit(g_dir, 13, &st, NULL, NULL, err, sizeof err), 0);
    ck_assert_int_eq(st, 128 + SIGUSR2);
    teardown();
}
END_TEST

START_TEST(test_refusals)
{
    setup();
    char err[512], p[512];
    ck_assert_int_eq(slurm_batch_write("relative/dir", g_bin, CELLS, 1, err, sizeof err), -1);
    snprintf(p, sizeof p, "%s/it's", g_root);
    ck_assert_int_eq(slurm_batch_write(p, g_bin, CELLS, 1, err, sizeof err), -1);
    ck_assert_int_eq(slurm_batch_write(g_dir, "prunelab", CELLS, 1, err, sizeof err), -1);
    slurm_batch_cell dup[] = {{5, "{}"}, {5, "{}"}};
    ck_assert_int_eq(slurm_batch_write(g_dir, g_bin, dup, 2, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "twice"));
    ck_assert_int_eq(slurm_batch_write(g_dir, g_bin, CELLS, 0, err, sizeof err), -1);
    ck_assert_int_eq(access(g_dir, F_OK), -1); /* nothing was created by the refusals */
    ck_assert_int_eq(slurm_batch_write(g_dir, g_bin, CELLS, 1, err, sizeof err), 0);
    ck_assert_int_eq(slurm_batch_write(g_dir, g_bin, CELLS, 1, err, sizeof err), -1); /* exists */
    /* a damaged exit record or manifest is an error, not a status */
    ck_assert_int_eq(slurm_batch_path(p, sizeof p, g_dir, 11, "exit"), 0);
    FILE *f = fopen(p, "w");
    fputs("{\"status\":\"x\"}", f);
    fclose(f);
    ck_assert_int_eq(slurm_batch_exit(g_dir, 11, NULL, NULL, NULL, err, sizeof err), -1);
    snprintf(p, sizeof p, "%s/manifest", g_dir);
    f = fopen(p, "w");
    fputs("0 11\n2 12\n", f);
    fclose(f);
    ck_assert_int_eq(slurm_batch_manifest(g_dir, NULL, 0, err, sizeof err), -1);
    teardown();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("slurm_batch");
    TCase *tc = tcase_create("batch");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_write_and_run);
    tcase_add_test(tc, test_usr2_reaches_the_engine);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
