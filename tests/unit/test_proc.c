/* test_proc.c — server/proc.c, the one process runner: output capture with its cap, exit status
 * and signals, the timeout (the whole group is killed, including a grandchild), spawning with
 * given fds, killing by group and reaping; looking at an exit without reaping, reaping a whole
 * group (orphans included, as a child subreaper) and telling when a group is empty. Children are
 * /bin/sh one-liners; every test reaps what it starts. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap(void)
{
    nanosleep(&(struct timespec){0, 5000000}, NULL);
}

/* proc_exited until it reports an exit (fails after 10 s). */
static void wait_exited(pid_t pid, proc_exit *how)
{
    double until = now_s() + 10;
    int r;
    while ((r = proc_exited(pid, how)) == 0) {
        ck_assert_msg(now_s() < until, "pid %d did not exit within 10 s", (int)pid);
        nap();
    }
    ck_assert_int_eq(r, 1);
}

static pid_t spawn_sh(const char *script, int fd1)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    pid_t pid;
    char err[256];
    ck_assert_msg(proc_spawn(&pid, argv, 0, NULL, -1, fd1, -1, err, sizeof err) == 0, "%s", err);
    return pid;
}

START_TEST(test_exited_does_not_reap)
{
    pid_t pid = spawn_sh("exit 3", -1);
    proc_exit how;
    wait_exited(pid, &how);
    ck_assert_int_eq(how.signaled, 0);
    ck_assert_int_eq(how.code, 3);
    ck_assert_int_eq(how.sig, 0);
    /* still a zombie: asked again it says the same, and it still pins its group */
    memset(&how, 0xff, sizeof how);
    ck_assert_int_eq(proc_exited(pid, &how), 1);
    ck_assert_int_eq(how.code, 3);
    ck_assert_int_eq(kill(pid, 0), 0);
    ck_assert_int_eq(proc_group_gone(pid), 0);
    int leader = 0;
    ck_assert_int_eq(proc_reap_group(pid, &leader), 1);
    ck_assert_int_eq(leader, 1);
    ck_assert_int_eq(proc_group_gone(pid), 1);
    ck_assert_int_eq(proc_exited(pid, &how), -1); /* reaped: no longer our child */
    ck_assert_int_eq(errno, ECHILD);
    ck_assert_int_eq(proc_reap_group(pid, &leader), 0);

    pid = spawn_sh("kill -TERM $$", -1);
    wait_exited(pid, &how);
    ck_assert_int_eq(how.signaled, 1);
    ck_assert_int_eq(how.sig, SIGTERM);
    ck_assert_int_eq(how.code, 0);
    ck_assert_int_eq(how.core_dumped, 0);
    int status = 0;
    ck_assert_int_eq(proc_reap(pid, 0, &status), 1);
    ck_assert_int_eq(status, 128 + SIGTERM);

    pid = spawn_sh("exec sleep 30", -1);
    ck_assert_int_eq(proc_exited(pid, &how), 0); /* running */
    ck_assert_int_eq(proc_kill(pid, SIGKILL), 0);
    wait_exited(pid, &how);
    ck_assert_int_eq(how.sig, SIGKILL);
    ck_assert_int_eq(proc_reap(pid, 0, &status), 1);
}
END_TEST

START_TEST(test_reap_group_takes_orphans)
{
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    /* the leader leaves a sleep behind in its group and exits */
    pid_t pid = spawn_sh("sleep 30 & echo $!; exit 0", fds[1]);
    close(fds[1]);
    char buf[32] = "";
    size_t n = 0;
    while (n < sizeof buf - 1 && !strchr(buf, '\n')) {
        ssize_t r = read(fds[0], buf + n, sizeof buf - 1 - n);
        ck_assert_int_gt(r, 0);
        n += (size_t)r;
    }
    close(fds[0]);
    pid_t orphan = (pid_t)atoi(buf);
    ck_assert_int_gt(orphan, 0);
    proc_exit how;
    wait_exited(pid, &how);
    ck_assert_int_eq(how.code, 0);
    ck_assert_int_eq(getpgid(orphan), pid);
    ck_assert_int_eq(proc_group_gone(pid), 0);
    ck_assert_int_eq(proc_kill(pid, SIGKILL), 0); /* reaches the orphan through the group */
    int leader = 0, reaped = 0;
    double until = now_s() + 10;
    while (!proc_group_gone(pid)) {
        ck_assert_msg(now_s() < until, "group %d not empty within 10 s", (int)pid);
        reaped += proc_reap_group(pid, &leader);
        nap();
    }
    ck_assert_int_eq(reaped, 2); /* the leader and the orphan, both reparented here */
    ck_assert_int_eq(leader, 1);
    ck_assert_int_eq(kill(orphan, 0), -1);
    ck_assert_int_eq(errno, ESRCH);
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0), 0);
}
END_TEST

START_TEST(test_group_calls_refuse_pgid_0_and_1)
{
    /* waitpid(0) or waitpid(-1) would reap this child, which is in another group */
    pid_t pid = spawn_sh("exit 0", -1);
    proc_exit how;
    wait_exited(pid, &how);
    int leader = 0;
    ck_assert_int_eq(proc_reap_group(0, &leader), 0);
    ck_assert_int_eq(proc_reap_group(1, &leader), 0);
    ck_assert_int_eq(leader, 0);
    ck_assert_int_eq(proc_group_gone(0), 0);
    ck_assert_int_eq(proc_group_gone(1), 0);
    ck_assert_int_eq(proc_exited(pid, &how), 1); /* not reaped by the calls above */
    int status = -1;
    ck_assert_int_eq(proc_reap(pid, 0, &status), 1);
    ck_assert_int_eq(status, 0);
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
    tcase_add_test(tc, test_exited_does_not_reap);
    tcase_add_test(tc, test_reap_group_takes_orphans);
    tcase_add_test(tc, test_group_calls_refuse_pgid_0_and_1);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
