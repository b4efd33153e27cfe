/* test_engine_gate.c — unit tests for server/engine_gate.c: the slot limit holds across keys, a
 * caller that finds no slot is refused after its wait, a second caller of a key being run waits
 * for that run and is told to read its result, and `nice -n` really lowers the child's priority. */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_gate.h"

typedef struct {
    const char *key;
    double wait_s;
    int rc;
} enter_arg;

static void *enter_thread(void *p)
{
    enter_arg *a = p;
    a->rc = engine_gate_enter(a->key, 1, a->wait_s);
    return NULL;
}

START_TEST(test_limit_and_busy)
{
    ck_assert_int_eq(engine_gate_enter("a", 2, 1.0), GATE_RUN);
    ck_assert_int_eq(engine_gate_enter("b", 2, 1.0), GATE_RUN);
    ck_assert_int_eq(engine_gate_running(), 2);
    ck_assert_int_eq(engine_gate_enter("c", 2, 0.2), GATE_BUSY); /* both slots taken */
    ck_assert_int_eq(engine_gate_enter(NULL, 2, 0.2), GATE_BUSY);
    engine_gate_leave("a");
    ck_assert_int_eq(engine_gate_enter(NULL, 2, 0.2), GATE_RUN);
    engine_gate_leave(NULL);
    engine_gate_leave("b");
    ck_assert_int_eq(engine_gate_running(), 0);
}
END_TEST

START_TEST(test_same_key_waits_for_the_run)
{
    ck_assert_int_eq(engine_gate_enter("m", 4, 1.0), GATE_RUN);
    /* a free slot is not enough: the key is being run */
    enter_arg a = {"m", 5.0, 99};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, enter_thread, &a), 0);
    usleep(200000);
    ck_assert_int_eq(a.rc, 99); /* still waiting */
    engine_gate_leave("m");
    pthread_join(t, NULL);
    ck_assert_int_eq(a.rc, GATE_WAITED);
    ck_assert_int_eq(engine_gate_running(), 0);
    /* with nobody running it, the key is entered for a run */
    ck_assert_int_eq(engine_gate_enter("m", 4, 1.0), GATE_RUN);
    engine_gate_leave("m");
}
END_TEST

START_TEST(test_run_niced)
{
    char *argv[] = {"nice", NULL}; /* prints its own niceness */
    proc_result r;
    char err[256];
    ck_assert_int_eq(engine_gate_run(argv, 5, 10.0, 4096, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.status, 0);
    int niced = atoi(r.out);
    proc_result_free(&r);
    ck_assert_int_eq(engine_gate_run(argv, 0, 10.0, 4096, &r, err, sizeof err), 0);
    int plain = atoi(r.out);
    proc_result_free(&r);
    ck_assert_int_eq(niced, plain + 5 > 19 ? 19 : plain + 5);
    ck_assert_int_lt(plain, 19); /* the test itself is not at the floor, or it would prove nothing */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine_gate");
    TCase *tc = tcase_create("gate");
    tcase_add_test(tc, test_limit_and_busy);
    tcase_add_test(tc, test_same_key_waits_for_the_run);
    tcase_add_test(tc, test_run_niced);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
