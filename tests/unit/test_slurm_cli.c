/* test_slurm_cli.c — unit tests for server/slurm_cli.c against fake sbatch, squeue, scontrol and
 * scancel scripts in a temp directory (cli.bin_dir): the exact sbatch command line of an array
 * submission, flags the site may not override, squeue batched over many ids, "Invalid job id"
 * read as "not listed", a failing or silent command reported (never a crash, never a guess),
 * scancel of array tasks, and the site's limits. The real commands run against the single-node
 * cluster in tests/integration/test_slurm_cluster.sh. */
#define _GNU_SOURCE
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slurm_cli.h"

static char g_dir[256];

static void write_file(const char *name, const char *text, int exec)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    if (exec) chmod(p, 0755);
}

static char *read_file(const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "r");
    if (!f) return strdup("");
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

/* Every fake appends its arguments (one line per call, space-separated) to NAME.args, then prints
 * NAME.out and exits with the status in NAME.rc (0 when absent), NAME.err to stderr. */
static void make_fakes(void)
{
    strcpy(g_dir, "/tmp/prunelab-test_slurm_cli.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    const char *names[] = {"sbatch", "squeue", "scontrol", "scancel"};
    for (int i = 0; i < 4; i++) {
        char s[1024];
        snprintf(s, sizeof s,
                 "#!/bin/sh\nd=%s; n=%s\necho \"$*\" >> $d/$n.args\n[ -f $d/$n.sleep ] && sleep 5\n"
                 "[ -f $d/$n.out ] && cat $d/$n.out\n[ -f $d/$n.err ] && cat $d/$n.err >&2\n"
                 "[ -f $d/$n.rc ] && exit $(cat $d/$n.rc)\nexit 0\n",
                 g_dir, names[i]);
        write_file(names[i], s, 1);
    }
}

static void clean(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static slurm_cli cli(void)
{
    slurm_cli c = {.bin_dir = g_dir, .timeout_s = 3.0, .slurm_conf = NULL};
    return c;
}

START_TEST(test_submit_argv)
{
    slurm_submit s = {.script = "/shared/run.sh", .n_tasks = 24, .job_name = "pl-7", .cpus_per_task = 2,
                      .mem_mb = 1536, .time_min = 90, .partition = "cpu", .account = "lab", .qos = "",
                      .log_pattern = "/shared/logs/%A_%a.log", .workdir = "/shared", .signal_lead_s = 90,
                      .extra_args = " --constraint=avx512  --nice=10 "};
    const char *argv[64];
    char buf[4096], err[256];
    int n = slurm_submit_argv(&s, argv, 64, buf, sizeof buf, err, sizeof err);
    const char *want[] = {"sbatch", "--parsable", "--array=0-23", "--job-name=pl-7", "--cpus-per-task=2",
                          "--mem=1536M", "--time=90", "--requeue", "--open-mode=append", "--signal=B:USR2@90",
                          "--output=/shared/logs/%A_%a.log", "--error=/shared/logs/%A_%a.log", "--chdir=/shared",
                          "--partition=cpu", "--account=lab", "--constraint=avx512", "--nice=10", "/shared/run.sh"};
    int nw = (int)(sizeof want / sizeof want[0]);
    ck_assert_int_eq(n, nw);
    for (int i = 0; i < nw; i++) ck_assert_str_eq(argv[i], want[i]);
    ck_assert_ptr_null(argv[n]);
    /* the site's flags may not change what the executor relies on */
    const char *own[] = {"--array=0-3", "-o x", "--output=/tmp/x", "--parsable", "-J name", "--wrap=ls"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        s.extra_args = own[i];
        ck_assert_int_eq(slurm_submit_argv(&s, argv, 64, buf, sizeof buf, err, sizeof err), -1);
        ck_assert_ptr_nonnull(strstr(err, "may not set"));
    }
    s.extra_args = "notaflag";
    ck_assert_int_eq(slurm_submit_argv(&s, argv, 64, buf, sizeof buf, err, sizeof err), -1);
    s.extra_args = NULL;
    s.n_tasks = 0;
    ck_assert_int_eq(slurm_submit_argv(&s, argv, 64, buf, sizeof buf, err, sizeof err), -1);
    s.n_tasks = 4;
    s.mem_mb = 0;
    ck_assert_int_eq(slurm_submit_argv(&s, argv, 64, buf, sizeof buf, err, sizeof err), -1);
    s.mem_mb = 10;
    ck_assert_int_eq(slurm_submit_argv(&s, argv, 8, buf, sizeof buf, err, sizeof err), -1); /* argv too small */
    ck_assert_int_eq(slurm_submit_argv(&s, argv, 64, buf, 40, err, sizeof err), -1);        /* buf too small */
}
END_TEST

START_TEST(test_submit_runs_sbatch)
{
    make_fakes();
    slurm_cli c = cli();
    slurm_submit s = {.script = "/shared/run.sh", .n_tasks = 3, .cpus_per_task = 1, .mem_mb = 100, .time_min = 5};
    int64_t id = 0;
    char err[512];
    write_file("sbatch.out", "4711;cluster\n", 0);
    ck_assert_int_eq(slurm_cli_submit(&c, &s, &id, err, sizeof err), 0);
    ck_assert_int_eq(id, 4711);
    char *args = read_file("sbatch.args");
    ck_assert_str_eq(args, "--parsable --array=0-2 --job-name=prunelab --cpus-per-task=1 --mem=100M --time=5 "
                           "--requeue --open-mode=append /shared/run.sh\n");
    free(args);
    /* refused by Slurm: its message reaches the caller */
    write_file("sbatch.out", "", 0);
    write_file("sbatch.err", "sbatch: error: QOSMaxSubmitJobPerUserLimit\n", 0);
    write_file("sbatch.rc", "1\n", 0);
    ck_assert_int_eq(slurm_cli_submit(&c, &s, &id, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "QOSMaxSubmitJobPerUserLimit"));
    /* exit 0 without an id is not a submission */
    write_file("sbatch.rc", "0\n", 0);
    write_file("sbatch.out", "Submitted batch job 12\n", 0);
    ck_assert_int_eq(slurm_cli_submit(&c, &s, &id, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "no job id"));
    clean();
}
END_TEST

static int count_tasks(void *user, const slurm_task *t)
{
    (void)t;
    (*(int *)user)++;
    return 0;
}

START_TEST(test_squeue_batches)
{
    make_fakes();
    slurm_cli c = cli();
    int64_t ids[300];
    for (int i = 0; i < 300; i++) ids[i] = 1000 + i;
    write_file("squeue.out", "1000_0|RUNNING\n1000_[1-2]|PENDING\n", 0);
    int seen = 0;
    char err[512];
    /* two calls (256 + 44 ids), each printing the same 3 tasks */
    ck_assert_int_eq(slurm_cli_squeue(&c, ids, 300, 1000, count_tasks, &seen, err, sizeof err), 6);
    ck_assert_int_eq(seen, 6);
    char *args = read_file("squeue.args");
    char *second = strchr(args, '\n');
    ck_assert_ptr_nonnull(second);
    ck_assert_ptr_nonnull(strstr(args, "--noheader --array --states=all --format=%i|%T --jobs=1000,1001,"));
    ck_assert_ptr_nonnull(strstr(second + 1, "--jobs=1256,"));
    ck_assert_ptr_nonnull(strstr(second + 1, ",1299\n"));
    int calls = 0;
    for (const char *q = args; *q; q++) calls += *q == '\n';
    ck_assert_int_eq(calls, 2);
    free(args);
    /* every id gone: squeue refuses the list, which is an empty answer */
    write_file("squeue.out", "", 0);
    write_file("squeue.err", "slurm_load_jobs error: Invalid job id specified\n", 0);
    write_file("squeue.rc", "1\n", 0);
    seen = 0;
    ck_assert_int_eq(slurm_cli_squeue(&c, ids, 2, 1000, count_tasks, &seen, err, sizeof err), 0);
    /* the controller down: an error, with squeue's words */
    write_file("squeue.err", "slurm_load_jobs error: Unable to contact slurm controller\n", 0);
    ck_assert_int_eq(slurm_cli_squeue(&c, ids, 2, 1000, count_tasks, &seen, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "Unable to contact"));
    /* unreadable output: an error, not a guess */
    write_file("squeue.rc", "0\n", 0);
    write_file("squeue.err", "", 0);
    write_file("squeue.out", "1000_0 RUNNING\n", 0);
    ck_assert_int_eq(slurm_cli_squeue(&c, ids, 2, 1000, count_tasks, &seen, err, sizeof err), -1);
    /* a command that hangs is cut off at the timeout */
    write_file("squeue.sleep", "", 0);
    c.timeout_s = 0.5;
    ck_assert_int_eq(slurm_cli_squeue(&c, ids, 2, 1000, count_tasks, &seen, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "did not answer"));
    clean();
}
END_TEST

START_TEST(test_show_cancel_limits)
{
    make_fakes();
    slurm_cli c = cli();
    char err[512];
    slurm_job_info j;
    write_file("scontrol.out", "JobId=9 ArrayJobId=8 ArrayTaskId=1 JobState=COMPLETED Reason=None ExitCode=0:0\n", 0);
    ck_assert_int_eq(slurm_cli_show_job(&c, 8, 1, &j, err, sizeof err), 0);
    ck_assert_int_eq(j.state, SLURM_COMPLETED);
    ck_assert_int_eq(j.array_job_id, 8);
    char *args = read_file("scontrol.args");
    ck_assert_str_eq(args, "--oneliner show job 8_1\n");
    free(args);
    write_file("scontrol.out", "", 0);
    write_file("scontrol.err", "slurm_load_jobs error: Invalid job id specified\n", 0);
    write_file("scontrol.rc", "1\n", 0);
    ck_assert_int_eq(slurm_cli_show_job(&c, 8, 1, &j, err, sizeof err), 1); /* gone */
    write_file("scontrol.err", "Unable to contact slurm controller\n", 0);
    ck_assert_int_eq(slurm_cli_show_job(&c, 8, 1, &j, err, sizeof err), -1);
    /* limits from show config */
    write_file("scontrol.rc", "0\n", 0);
    write_file("scontrol.err", "", 0);
    write_file("scontrol.out", "MaxArraySize            = 1001\nMaxJobCount             = 10000\n", 0);
    long ma = 0, mj = 0;
    ck_assert_int_eq(slurm_cli_limits(&c, &ma, &mj, err, sizeof err), 0);
    ck_assert_int_eq(ma, 1001);
    ck_assert_int_eq(mj, 10000);
    write_file("scontrol.out", "MaxArraySize            = lots\n", 0);
    ck_assert_int_eq(slurm_cli_limits(&c, &ma, &mj, err, sizeof err), -1);
    write_file("scontrol.out", "SomethingElse = 1\n", 0);
    ma = 77;
    ck_assert_int_eq(slurm_cli_limits(&c, &ma, NULL, err, sizeof err), 0);
    ck_assert_int_eq(ma, 77); /* absent: left as given */
    /* scancel: tasks as JOB_TASK, whole jobs as JOB */
    int64_t ids[] = {5, 6, 7};
    int tasks[] = {1, -1, 0};
    ck_assert_int_eq(slurm_cli_cancel(&c, ids, tasks, 3, err, sizeof err), 0);
    args = read_file("scancel.args");
    ck_assert_str_eq(args, "5_1 6 7_0\n");
    free(args);
    /* many ids: batched, SLURM_CLI_IDS_PER_CALL per call */
    int64_t many[300];
    for (int i = 0; i < 300; i++) many[i] = 2000 + i;
    ck_assert_int_eq(slurm_cli_cancel(&c, many, NULL, 300, err, sizeof err), 0);
    args = read_file("scancel.args");
    const char *l2 = strchr(args, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    ck_assert_int_eq(strncmp(l2, "2000 2001 ", 10), 0);
    ck_assert_ptr_nonnull(strstr(l2, " 2255\n2256 "));
    ck_assert_str_eq(strchr(l3, '\n') + 1, "");
    ck_assert_ptr_nonnull(strstr(l3, " 2299\n"));
    free(args);
    /* SLURM_CONF reaches the command through env(1) */
    write_file("scancel", "#!/bin/sh\necho \"$SLURM_CONF\" > \"$(dirname \"$0\")/conf.seen\"\n", 1);
    c.slurm_conf = "/shared/slurm.conf";
    ck_assert_int_eq(slurm_cli_cancel(&c, ids, NULL, 1, err, sizeof err), 0);
    args = read_file("conf.seen");
    ck_assert_str_eq(args, "/shared/slurm.conf\n");
    free(args);
    clean();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("slurm_cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_submit_argv);
    tcase_add_test(tc, test_submit_runs_sbatch);
    tcase_add_test(tc, test_squeue_batches);
    tcase_add_test(tc, test_show_cancel_limits);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
