/* test_proc.c — server/proc.c, the one process runner: output capture with its cap, exit status
 * and signals, the timeout (the whole group is killed, including a grandchild), spawning with
 * given fds, killing by group and reaping. Children are /bin/sh one-liners; every test reaps what
 * it starts. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"

START_TEST(test_run_captures_and_reports_status)
{
    char *argv[] = {"/bin/sh", "-c", "printf out; printf err >&2; exit 3", NULL};
    proc_result r;
    char err[256];
    ck_assert_int_eq(proc_run(argv, 10.0, 1024, &r, err, sizeof err), 0);
    ck_assert_str_eq(r.out, "out");
    ck_assert_str_eq(r.err, "err");
    ck_assert_int_eq(r.status, 3);
    proc_result_free(&r);

    /* the cap keeps max_out - 1 bytes and still drains the rest */
    char *big[] = {"/bin/sh", "-c", "i=0; while [ $i -lt 2000 ]; do printf 0123456789; i=$((i+1)); done", NULL};
    ck_assert_int_eq(proc_run(big, 10.0, 101, &r, err, sizeof err), 0);
    ck_assert_uint_eq(strlen(r.out), 100);
    ck_assert_int_eq(r.status, 0);
    proc_result_free(&r);

    char *sig[] = {"/bin/sh", "-c", "kill -9 $$", NULL};
    ck_assert_int_eq(proc_run(sig, 10.0, 64, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.status, 128 + 9);
    proc_result_free(&r);

    char *missing[] = {"/nonexistent/prunelab", NULL};
    err[0] = '\0';
    int rc = proc_run(missing, 5.0, 64, &r, err, sizeof err);
    if (rc == 0) { /* exec failed in the child: a failing status */
        ck_assert_int_ne(r.status, 0);
        proc_result_free(&r);
    } else { /* or refused up front, saying why */
        ck_assert_int_eq(rc, -1);
        ck_assert(strlen(err) > 0);
    }
}
END_TEST

START_TEST(test_run_timeout_kills_the_group)
{
    /* the grandchild holds stdout open: only killing the group ends the run (otherwise it would
     * outlast the test case's timeout) */
    char *argv[] = {"/bin/sh", "-c", "sleep 600 & sleep 600", NULL};
    proc_result r;
    char err[256];
    ck_assert_int_eq(proc_run(argv, 0.5, 64, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.status, -2);
    proc_result_free(&r);
}
END_TEST

START_TEST(test_spawn_kill_reap)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    char *argv[] = {"/bin/sh", "-c", "echo started; exec sleep 30", NULL};
    pid_t pid;
    char err[256];
    ck_assert_int_eq(proc_spawn(&pid, argv, 0, NULL, -1, fds[1], -1, err, sizeof err), 0);
    close(fds[1]);
    char buf[16] = "";
    ck_assert_int_eq(read(fds[0], buf, 8), 8);
    ck_assert(strncmp(buf, "started\n", 8) == 0);
    ck_assert_int_eq(getpgid(pid), pid); /* leads its own group */
    int status = 0;
    ck_assert_int_eq(proc_reap(pid, 1, &status), 0); /* still running */
    ck_assert_int_eq(proc_kill(pid, SIGTERM), 0);
    ck_assert_int_eq(proc_reap(pid, 0, &status), 1);
    ck_assert_int_eq(status, 128 + SIGTERM);
    close(fds[0]);
    ck_assert_int_eq(kill(pid, 0), -1);
    ck_assert_int_eq(errno, ESRCH);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("proc");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_run_captures_and_reports_status);
    tcase_add_test(tc, test_run_timeout_kills_the_group);
    tcase_add_test(tc, test_spawn_kill_reap);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
