/* test_slurm_parse.c — unit tests for server/slurm_parse.c on output as Slurm 22.05 prints it
 * (modelled on what the single-node cluster of deploy/slurm/cluster.sh printed: `sbatch --parsable`,
 * `squeue --noheader --format=%i|%T`, `scontrol --oneliner show job`, `scontrol show config`)
 * and on damaged versions of it: every malformed input is refused, none is half-read. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "slurm_parse.h"

START_TEST(test_states)
{
    ck_assert_int_eq(slurm_state_of("PENDING"), SLURM_PENDING);
    ck_assert_int_eq(slurm_state_of("REQUEUED"), SLURM_PENDING);
    ck_assert_int_eq(slurm_state_of("RUNNING"), SLURM_RUNNING);
    ck_assert_int_eq(slurm_state_of("COMPLETING"), SLURM_RUNNING);
    ck_assert_int_eq(slurm_state_of("COMPLETED"), SLURM_COMPLETED);
    ck_assert_int_eq(slurm_state_of("NODE_FAIL"), SLURM_FAILED);
    ck_assert_int_eq(slurm_state_of("OUT_OF_MEMORY"), SLURM_FAILED);
    ck_assert_int_eq(slurm_state_of("PREEMPTED"), SLURM_FAILED);
    ck_assert_int_eq(slurm_state_of("CANCELLED by 0"), SLURM_CANCELLED);
    ck_assert_int_eq(slurm_state_of("CANCELLEDX"), SLURM_UNKNOWN);
    ck_assert_int_eq(slurm_state_of("running"), SLURM_UNKNOWN);
    ck_assert_int_eq(slurm_state_of(""), SLURM_UNKNOWN);
    ck_assert_int_eq(slurm_state_of(NULL), SLURM_UNKNOWN);
    ck_assert_str_eq(slurm_state_name(SLURM_FAILED), "failed");
    ck_assert_str_eq(slurm_state_name((slurm_state)99), "unknown");
}
END_TEST

START_TEST(test_sbatch)
{
    int64_t id = 0;
    ck_assert_int_eq(slurm_parse_sbatch("42\n", &id), 0);
    ck_assert_int_eq(id, 42);
    ck_assert_int_eq(slurm_parse_sbatch("  4294967295;lab-cluster\n\n", &id), 0);
    ck_assert_int_eq(id, 4294967295LL);
    const char *bad[] = {"", "\n", "0\n", "4294967296\n", "-3\n", "12 13\n", "12;\n", "12x\n",
                         "sbatch: error: Batch job submission failed\n", "12\nsbatch: warning\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        id = 7;
        ck_assert_msg(slurm_parse_sbatch(bad[i], &id) == -1, "accepted \"%s\"", bad[i]);
        ck_assert_int_eq(id, 7); /* untouched */
    }
}
END_TEST

typedef struct {
    int n;
    int64_t job[64];
    int task[64];
    slurm_state state[64];
    int stop_after; /* 0: never */
} seen;

static int collect(void *user, const slurm_task *t)
{
    seen *s = user;
    if (s->n < 64) s->job[s->n] = t->job_id, s->task[s->n] = t->task, s->state[s->n] = t->state;
    s->n++;
    return s->stop_after && s->n >= s->stop_after ? 9 : 0;
}

START_TEST(test_squeue)
{
    /* squeue of a 4-task array with 2 running and the rest pending, plus a plain job */
    const char *out = "1_[2-3]|PENDING\n1_0|RUNNING\n1_1|RUNNING\n2|RUNNING\n";
    seen s = {0};
    char err[256];
    ck_assert_int_eq(slurm_parse_squeue(out, 100, collect, &s, err, sizeof err), 5);
    ck_assert_int_eq(s.n, 5);
    int want_task[] = {2, 3, 0, 1, -1};
    int64_t want_job[] = {1, 1, 1, 1, 2};
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(s.task[i], want_task[i]);
        ck_assert_int_eq(s.job[i], want_job[i]);
    }
    ck_assert_int_eq(s.state[0], SLURM_PENDING);
    ck_assert_int_eq(s.state[4], SLURM_RUNNING);
    /* lists, steps, a throttle, CRLF, blank lines and spaces */
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(slurm_parse_squeue("\n 77_[0-4:2,9,11-12%3] | PENDING \r\n\n", 100, collect, &s, err, sizeof err),
                     6);
    int want2[] = {0, 2, 4, 9, 11, 12};
    for (int i = 0; i < 6; i++) ck_assert_int_eq(s.task[i], want2[i]);
    /* empty output: nothing listed */
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(slurm_parse_squeue("", 100, collect, &s, err, sizeof err), 0);
    /* fn stops the walk */
    memset(&s, 0, sizeof s);
    s.stop_after = 2;
    ck_assert_int_eq(slurm_parse_squeue("5_[0-9]|PENDING\n6|RUNNING\n", 100, collect, &s, err, sizeof err), 2);
    ck_assert_int_eq(s.n, 2);
    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    ck_assert_int_eq(slurm_parse_squeue("6|RUNNING\n7|RUNNING\n", 100, collect, &s, err, sizeof err), 1);
}
END_TEST

START_TEST(test_squeue_refuses)
{
    const char *bad[] = {"1_[2-3]\n",          "x|RUNNING\n",        "0|RUNNING\n",       "1_|RUNNING\n",
                         "1_[3-2]|PENDING\n",  "1_[2-3|PENDING\n",   "1_[]|PENDING\n",    "1_[1,]|PENDING\n",
                         "1_[0-4:0]|PENDING\n", "1_[1%]|PENDING\n",  "1_2x|RUNNING\n",    "1|\n",
                         "1_[0-4000001]|PENDING\n", "1|AVERYLONGSTATENAMEOFMORETHAN24\n", "99999999999|RUNNING\n"};
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        seen s = {0};
        err[0] = '\0';
        ck_assert_msg(slurm_parse_squeue(bad[i], 1000, collect, &s, err, sizeof err) == -1, "accepted \"%s\"", bad[i]);
        ck_assert_msg(err[0] != '\0', "no message for \"%s\"", bad[i]);
    }
    /* a range beyond the budget is refused before any of it is expanded */
    seen s = {0};
    ck_assert_int_eq(slurm_parse_squeue("1_[0-3999999]|PENDING\n", 1000, collect, &s, err, sizeof err), -1);
    ck_assert_int_eq(s.n, 0);
    ck_assert_ptr_nonnull(strstr(err, "more tasks"));
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(slurm_parse_squeue("1|RUNNING\n2|RUNNING\n3|RUNNING\n", 2, collect, &s, err, sizeof err), -1);
}
END_TEST

START_TEST(test_scontrol_job)
{
    const char *rec = "JobId=5 ArrayJobId=1 ArrayTaskId=3 JobName=wrap UserId=root(0) GroupId=root(0) "
                      "MCS_label=N/A Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState=COMPLETED "
                      "Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0\n";
    slurm_job_info j;
    char err[256];
    ck_assert_int_eq(slurm_parse_scontrol_job(rec, &j, err, sizeof err), 0);
    ck_assert_int_eq(j.job_id, 5);
    ck_assert_int_eq(j.array_job_id, 1);
    ck_assert_int_eq(j.task_lo, 3);
    ck_assert_int_eq(j.task_hi, 3);
    ck_assert_int_eq(j.state, SLURM_COMPLETED);
    ck_assert_str_eq(j.reason, "");
    ck_assert_int_eq(j.exit_code, 0);
    ck_assert_int_eq(j.exit_signal, 0);
    /* a pending array record, a failure with a reason and a signal; JobName=JobState=x is not the state */
    ck_assert_int_eq(slurm_parse_scontrol_job("JobId=9 JobName=JobState=RUNNING ArrayJobId=9 ArrayTaskId=4-7%2 "
                                              "JobState=PENDING Reason=Priority",
                                              &j, err, sizeof err),
                     0);
    ck_assert_int_eq(j.task_lo, 4);
    ck_assert_int_eq(j.task_hi, 7);
    ck_assert_int_eq(j.state, SLURM_PENDING);
    ck_assert_str_eq(j.reason, "Priority");
    ck_assert_int_eq(j.exit_code, -1);
    ck_assert_int_eq(slurm_parse_scontrol_job("JobId=3 JobState=FAILED Reason=NonZeroExitCode ExitCode=1:9", &j, err,
                                              sizeof err),
                     0);
    ck_assert_int_eq(j.state, SLURM_FAILED);
    ck_assert_int_eq(j.array_job_id, 0);
    ck_assert_int_eq(j.task_lo, -1);
    ck_assert_int_eq(j.exit_code, 1);
    ck_assert_int_eq(j.exit_signal, 9);
    const char *bad[] = {"",
                         "JobState=RUNNING",
                         "JobId=abc JobState=RUNNING",
                         "JobId=0 JobState=RUNNING",
                         "JobId=4 ",
                         "JobId=4 JobState=",
                         "JobId=4 ArrayTaskId=7-3 JobState=PENDING",
                         "JobId=4 ArrayTaskId=x JobState=PENDING",
                         "JobId=4 JobState=RUNNING ExitCode=1",
                         "JobId=4 JobState=RUNNING ExitCode=300:0",
                         "JobId=4 JobState=THISSTATENAMEISFARTOOLONGTOBEREAL"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(slurm_parse_scontrol_job(bad[i], &j, err, sizeof err) == -1, "accepted \"%s\"", bad[i]);
    /* only the first line is the record */
    ck_assert_int_eq(slurm_parse_scontrol_job("JobId=8\nJobState=RUNNING\n", &j, err, sizeof err), -1);
}
END_TEST

START_TEST(test_config_value)
{
    const char *out = "Configuration data as of 2026-12-03T18:14:01\n"
                      "AccountingStorageType   = (null)\n"
                      "MaxArraySize            = 1001\n"
                      "MaxArraySizeX           = 5\n"
                      "MaxJobCount             = 10000\n"
                      "SlurmctldHost[0]        = vm\r\n";
    char v[32];
    ck_assert_int_eq(slurm_config_value(out, "MaxArraySize", v, sizeof v), 0);
    ck_assert_str_eq(v, "1001");
    ck_assert_int_eq(slurm_config_value(out, "MaxJobCount", v, sizeof v), 0);
    ck_assert_str_eq(v, "10000");
    ck_assert_int_eq(slurm_config_value(out, "SlurmctldHost[0]", v, sizeof v), 0);
    ck_assert_str_eq(v, "vm");
    ck_assert_int_eq(slurm_config_value(out, "MaxArray", v, sizeof v), 1); /* a prefix is not the key */
    ck_assert_int_eq(slurm_config_value(out, "MaxSubmitJobs", v, sizeof v), 1);
    char small[3];
    ck_assert_int_eq(slurm_config_value(out, "MaxArraySize", small, sizeof small), -1); /* no silent cut */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("slurm_parse");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_states);
    tcase_add_test(tc, test_sbatch);
    tcase_add_test(tc, test_squeue);
    tcase_add_test(tc, test_squeue_refuses);
    tcase_add_test(tc, test_scontrol_job);
    tcase_add_test(tc, test_config_value);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
