/* test_blas.c — engine/blas.c: the selected OpenBLAS kernel against the naive product, the
 * one-time check, and the re-exec protocol seen from outside.
 *
 * The protocol tests start this very binary again (/proc/self/exe --blas-child) with a
 * controlled environment; the child runs blas_select_or_reexec like any main() and prints
 * what it ended up with, one key=value per line. Nothing here asserts a timing. */
#define _GNU_SOURCE
#include "blas.h"
#include "util.h"

#include <check.h>
#include <cblas.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------------ helpers */

static void fill(float *x, size_t n, pl_rng *r)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(2.0 * pl_rng_uniform(r) - 1.0);
}

/* max |a - b| / (1 + |b|) over n floats */
static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

typedef struct {
    char kernel[64], origin[32], coretype[64], choice[64], marker[64];
    int verify;
    int said_restart; /* stderr announced the Prescott fallback */
    int status;       /* exit status, -1 if abnormal */
} child_report;

static void copy_value(char *dst, size_t n, const char *line, const char *key)
{
    size_t k = strlen(key);
    if (strncmp(line, key, k) || line[k] != '=') return;
    const char *v = line + k + 1;
    size_t i = 0;
    for (; i + 1 < n && v[i] && v[i] != '\n'; i++) dst[i] = v[i];
    dst[i] = 0;
}

/* Run `/proc/self/exe --blas-child [--verify]` (stdout and stderr captured) with the current environment minus every
 * OPENBLAS_CORETYPE / PRUNELAB_BLAS_* variable, plus `extra` ("K=V" strings, NULL-ended). */
static child_report run_child(int verify, const char *const *extra)
{
    child_report rep;
    memset(&rep, 0, sizeof rep);
    rep.verify = 99;

    size_t n_env = 0, n_extra = 0;
    while (environ[n_env]) n_env++;
    while (extra && extra[n_extra]) n_extra++;
    char **env = xcalloc(n_env + n_extra + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "OPENBLAS_CORETYPE=", 18) && strncmp(environ[i], "PRUNELAB_BLAS_", 14))
            env[k++] = environ[i];
    for (size_t i = 0; i < n_extra; i++) env[k++] = (char *)extra[i];
    env[k] = NULL;

    int fd[2];
    ck_assert_int_eq(pipe(fd), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 2); /* stderr too: messages are checked */
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    posix_spawn_file_actions_addclose(&fa, fd[1]);
    char *argv[] = {"test_blas", "--blas-child", verify ? "--verify" : NULL, NULL};
    pid_t pid;
    int src = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    free(env);
    ck_assert_msg(src == 0, "posix_spawn failed: %s", strerror(src));

    FILE *f = fdopen(fd[0], "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        copy_value(rep.kernel, sizeof rep.kernel, line, "kernel");
        copy_value(rep.origin, sizeof rep.origin, line, "origin");
        copy_value(rep.coretype, sizeof rep.coretype, line, "OPENBLAS_CORETYPE");
        copy_value(rep.choice, sizeof rep.choice, line, BLAS_ENV_CHOICE);
        copy_value(rep.marker, sizeof rep.marker, line, BLAS_ENV_MARKER);
        if (!strncmp(line, "verify=", 7)) rep.verify = atoi(line + 7);
        if (strstr(line, "restarting with the generic Prescott")) rep.said_restart = 1;
    }
    fclose(f);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    rep.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return rep;
}

/* What this binary prints when started as a child. */
static int child_main(int argc, char **argv)
{
    int verify = 99;
    if (argc > 2 && !strcmp(argv[2], "--verify")) {
        char err[PL_ERRLEN];
        verify = blas_verify(err, sizeof err);
    }
    const char *ct = getenv("OPENBLAS_CORETYPE"), *ch = getenv(BLAS_ENV_CHOICE),
               *mk = getenv(BLAS_ENV_MARKER);
    printf("kernel=%s\norigin=%s\nOPENBLAS_CORETYPE=%s\n%s=%s\n%s=%s\nverify=%d\n", blas_kernel(),
           blas_origin_name(blas_origin()), ct ? ct : "-", BLAS_ENV_CHOICE, ch ? ch : "-",
           BLAS_ENV_MARKER, mk ? mk : "-", verify);
    return 0;
}

/* OPENBLAS_CORETYPE is only honoured by DYNAMIC_ARCH builds. */
static int dynamic_arch(void) { return strstr(blas_config(), "DYNAMIC_ARCH") != NULL; }

/* ------------------------------------------------------------------ reference and kernel */

START_TEST(test_naive_by_hand)
{
    /* A (2, 3), B (3, 2): A B = [[4, 5], [10, 11]] */
    const float A[] = {1, 2, 3, 4, 5, 6};
    const float B[] = {1, 0, 0, 1, 1, 1};
    const float At[] = {1, 4, 2, 5, 3, 6}; /* A^T (3, 2) */
    const float Bt[] = {1, 0, 1, 0, 1, 1}; /* B^T (2, 3) */
    const float want[] = {4, 5, 10, 11};
    float C[4];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            for (int i = 0; i < 4; i++) C[i] = NAN; /* beta = 0 must ignore old contents */
            blas_sgemm_naive(ta, tb, 2, 2, 3, 1.0f, ta ? At : A, ta ? 2 : 3, tb ? Bt : B,
                             tb ? 3 : 2, 0.0f, C, 2);
            for (int i = 0; i < 4; i++) ck_assert_float_eq_tol(C[i], want[i], 1e-6f);
        }
    /* alpha, beta: C = 2 A B - 1 C with C = 1 */
    for (int i = 0; i < 4; i++) C[i] = 1.0f;
    blas_sgemm_naive(0, 0, 2, 2, 3, 2.0f, A, 3, B, 2, -1.0f, C, 2);
    for (int i = 0; i < 4; i++) ck_assert_float_eq_tol(C[i], 2 * want[i] - 1, 1e-6f);
}
END_TEST

/* {M, N, K}: odd sizes, and the model's GEMMs at M = 3136 rows */
static const int shapes[][3] = {
    {1, 1, 1}, {3, 5, 7}, {17, 31, 9}, {64, 64, 64}, {129, 67, 253},
    {3136, 256, 64}, {3136, 64, 128}, {3136, 128, 64}, {256, 64, 3136},
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

START_TEST(test_sgemm_matches_naive)
{
    const int M = shapes[_i][0], N = shapes[_i][1], K = shapes[_i][2];
    pl_rng rng;
    pl_rng_seed(&rng, 1000 + _i);
    float *A = xalloc_floats((size_t)M * K);  // A (M, K) or (K, M)
    float *B = xalloc_floats((size_t)K * N);  // B (K, N) or (N, K)
    float *C = xalloc_floats((size_t)M * N);  // C (M, N)
    float *R = xalloc_floats((size_t)M * N);  // R (M, N)
    fill(A, (size_t)M * K, &rng);
    fill(B, (size_t)K * N, &rng);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            fill(C, (size_t)M * N, &rng);
            memcpy(R, C, sizeof(float) * M * N);
            float alpha = 0.75f, beta = (ta ^ tb) ? 0.5f : 0.0f;
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                        M, N, K, alpha, A, ta ? M : K, B, tb ? K : N, beta, C, N);
            blas_sgemm_naive(ta, tb, M, N, K, alpha, A, ta ? M : K, B, tb ? K : N, beta, R, N);
            /* entries are sums of K products of magnitude <= 1: error ~ sqrt(K) eps typical,
             * K eps worst; a broken kernel is off by O(1) */
            double tol = 4.0 * K * 1.2e-7;
            double d = max_rel_diff(C, R, (size_t)M * N);
            ck_assert_msg(d <= tol, "kernel %s %c%c M=%d N=%d K=%d: max rel diff %g > %g",
                          blas_kernel(), ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, d, tol);
        }
    free(A);
    free(B);
    free(C);
    free(R);
}
END_TEST

START_TEST(test_kernel_and_config)
{
    const char *k = blas_kernel();
    ck_assert_ptr_nonnull(k);
    ck_assert_int_gt((int)strlen(k), 0);
    ck_assert_str_ne(k, "unknown");
    ck_assert_msg(strstr(blas_config(), "OpenBLAS") != NULL, "config: %s", blas_config());
    ck_assert_str_eq(blas_origin_name(BLAS_ORIGIN_FALLBACK), "fallback");
    ck_assert_str_eq(blas_origin_name(BLAS_ORIGIN_COUNT), "?");
}
END_TEST

START_TEST(test_verify_passes_and_caches)
{
    char err[PL_ERRLEN] = "";
    int rc = blas_verify(err, sizeof err);
    ck_assert_msg(rc == 0, "blas_verify: %s", err);
    ck_assert_int_eq(blas_verify(err, sizeof err), 0);
}
END_TEST

START_TEST(test_candidates)
{
    const char *c[8];
    int n = blas_candidates(c, 8);
    ck_assert_int_ge(n, 0);
    for (int i = 0; i < n; i++) {
        ck_assert_ptr_nonnull(c[i]);
        ck_assert_str_ne(c[i], "Prescott");
        for (int j = 0; j < i; j++) ck_assert_str_ne(c[i], c[j]);
    }
    const char *one[1] = {NULL};
    ck_assert_int_eq(blas_candidates(one, 1), n > 0 ? 1 : 0);
    if (n > 0) ck_assert_str_eq(one[0], c[0]);
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        ck_assert(!strcmp(c[0], "SkylakeX") || !strcmp(c[0], "Cooperlake"));
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        ck_assert(!strcmp(c[0], "Haswell") || !strcmp(c[0], "Zen"));
#endif
}
END_TEST

START_TEST(test_gflops_probe)
{
    blas_set_threads(1);
    int before = blas_threads();
    double g = blas_sgemm_gflops(2);
    ck_assert_msg(isfinite(g) && g > 0.0, "gflops %g", g);
    ck_assert_int_eq(blas_threads(), before); /* thread count restored */
}
END_TEST

/* ------------------------------------------------------------------ re-exec protocol */

START_TEST(test_child_user_coretype_respected)
{
    if (!dynamic_arch()) return;
    const char *extra[] = {"OPENBLAS_CORETYPE=Prescott", NULL};
    child_report r = run_child(0, extra);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.kernel, "Prescott");
    ck_assert_str_eq(r.origin, "user");
    ck_assert_str_eq(r.marker, "-");
}
END_TEST

START_TEST(test_child_auto_matches_detection)
{
    if (!dynamic_arch()) return;
    const char *c[8];
    int n = blas_candidates(c, 8);
    child_report r = run_child(0, NULL);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_gt((int)strlen(r.kernel), 0);
    ck_assert_str_eq(r.marker, "-"); /* the loop guard never leaks to grandchildren */
    if (strcmp(r.coretype, "-") != 0) /* it re-executed: the env names what really runs */
        ck_assert_msg(!strcasecmp(r.coretype, r.kernel), "env %s, kernel %s", r.coretype, r.kernel);
    if (n == 0) {
        ck_assert_str_eq(r.origin, "library");
        return;
    }
    /* Does this OpenBLAS know the preferred name? Ask a child that is told to use it. */
    char kv[96];
    snprintf(kv, sizeof kv, "OPENBLAS_CORETYPE=%s", c[0]);
    const char *extra[] = {kv, NULL};
    child_report told = run_child(0, extra);
    ck_assert_int_eq(told.status, 0);
    /* What the library loads by itself when not steered: if that is already one of the
     * candidates it is kept without a re-exec (e.g. SkylakeX on a Cooperlake-class CPU, same
     * sgemm kernel); only otherwise does the preferred name win. */
    const char *off[] = {BLAS_ENV_CHOICE "=off", NULL};
    child_report lib = run_child(0, off);
    ck_assert_int_eq(lib.status, 0);
    int lib_is_candidate = 0;
    for (int i = 0; i < n; i++) lib_is_candidate |= !strcasecmp(lib.kernel, c[i]);
    if (lib_is_candidate) {
        ck_assert_str_eq(r.kernel, lib.kernel);
        ck_assert_str_eq(r.origin, "auto");
    } else if (!strcasecmp(told.kernel, c[0])) {
        ck_assert_str_eq(r.kernel, c[0]);
        ck_assert_str_eq(r.origin, "auto");
    } else {
        int found = 0;
        for (int i = 0; i < n; i++) found |= !strcasecmp(r.kernel, c[i]);
        ck_assert_msg(found || !strcmp(r.origin, "library"), "kernel %s origin %s", r.kernel, r.origin);
    }
    /* and the parent's choice, handed to a child through the env, is kept as is */
    snprintf(kv, sizeof kv, "OPENBLAS_CORETYPE=%s", r.kernel);
    child_report again = run_child(0, extra);
    ck_assert_int_eq(again.status, 0);
    ck_assert_str_eq(again.kernel, r.kernel);
    ck_assert_str_eq(again.origin, "user");
}
END_TEST

START_TEST(test_child_forced_overrides_user)
{
    if (!dynamic_arch()) return;
    const char *extra[] = {"OPENBLAS_CORETYPE=Haswell", BLAS_ENV_CHOICE "=Prescott", NULL};
    child_report r = run_child(0, extra);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.kernel, "Prescott");
    ck_assert_str_eq(r.origin, "forced");
    ck_assert_str_eq(r.coretype, "Prescott");
}
END_TEST

START_TEST(test_child_unknown_name_terminates)
{
    if (!dynamic_arch()) return;
    const char *extra[] = {BLAS_ENV_CHOICE "=NoSuchCore", NULL};
    child_report r = run_child(0, extra);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_gt((int)strlen(r.kernel), 0);
    ck_assert_str_eq(r.marker, "-");
    /* OpenBLAS ran something else; the env now says what, so children start directly */
    ck_assert_msg(!strcasecmp(r.coretype, r.kernel), "env %s, kernel %s", r.coretype, r.kernel);
}
END_TEST

START_TEST(test_child_off_leaves_library_alone)
{
    const char *extra[] = {BLAS_ENV_CHOICE "=off", NULL};
    child_report r = run_child(0, extra);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.origin, "library");
    ck_assert_str_eq(r.coretype, "-");
}
END_TEST

START_TEST(test_child_verify_falls_back_to_prescott)
{
    if (!dynamic_arch()) return;
    /* Declare the kernel an unconfigured child would run broken: verify must notice, restart
     * on Prescott, and pass there. */
    child_report plain = run_child(0, NULL);
    ck_assert_int_eq(plain.status, 0);
    if (!strcasecmp(plain.kernel, "Prescott")) return; /* nothing to fall back from */
    char kv[96];
    snprintf(kv, sizeof kv, BLAS_ENV_FAULT "=%s", plain.kernel);
    const char *extra[] = {kv, NULL};
    child_report r = run_child(1, extra);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.kernel, "Prescott");
    ck_assert_str_eq(r.origin, "fallback");
    ck_assert_int_eq(r.verify, 0);
    ck_assert_int_eq(r.said_restart, 1);
    ck_assert_str_eq(r.choice, "Prescott"); /* inherited by the child's own children */

    /* a broken Prescott cannot fall back further: verify reports the error */
    const char *extra2[] = {"OPENBLAS_CORETYPE=Prescott", BLAS_ENV_FAULT "=Prescott", NULL};
    child_report r2 = run_child(1, extra2);
    ck_assert_int_eq(r2.status, 0);
    ck_assert_str_eq(r2.kernel, "Prescott");
    ck_assert_int_eq(r2.verify, -1);
    ck_assert_int_eq(r2.said_restart, 0);
}
END_TEST

static Suite *blas_suite(void)
{
    Suite *s = suite_create("blas");
    TCase *tc = tcase_create("kernel");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_naive_by_hand);
    tcase_add_loop_test(tc, test_sgemm_matches_naive, 0, N_SHAPES);
    tcase_add_test(tc, test_kernel_and_config);
    tcase_add_test(tc, test_verify_passes_and_caches);
    tcase_add_test(tc, test_candidates);
    tcase_add_test(tc, test_gflops_probe);
    suite_add_tcase(s, tc);

    TCase *tp = tcase_create("reexec");
    tcase_set_timeout(tp, 120);
    tcase_add_test(tp, test_child_user_coretype_respected);
    tcase_add_test(tp, test_child_auto_matches_detection);
    tcase_add_test(tp, test_child_forced_overrides_user);
    tcase_add_test(tp, test_child_unknown_name_terminates);
    tcase_add_test(tp, test_child_off_leaves_library_alone);
    tcase_add_test(tp, test_child_verify_falls_back_to_prescott);
    suite_add_tcase(s, tp);
    return s;
}

int main(int argc, char **argv)
{
    blas_select_or_reexec(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "--blas-child")) return child_main(argc, argv);

    /* no BLAS call here: the test cases run in forked children, and OpenBLAS is never used
     * across fork() */
    fprintf(stderr, "test_blas: OpenBLAS kernel %s (%s), %d thread(s)\n", blas_kernel(),
            blas_origin_name(blas_origin()), blas_threads());

    SRunner *sr = srunner_create(blas_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
