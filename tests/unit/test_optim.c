/* test_optim.c — optimizer updates against hand computations, the schedule, clipping,
 * decay selection, masking and convergence on a small quadratic. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "optim.h"
#include "util.h"

/* A fake model with two tensors: "w" (2 values, decayed) and "b" (2 values, not decayed). */
typedef struct {
    model m;
    param_info info[2];
} fake_model;

static void fake_init(fake_model *f)
{
    memset(f, 0, sizeof *f);
    strcpy(f->info[0].name, "w");
    f->info[0].ndim = 2;
    f->info[0].shape[0] = 1;
    f->info[0].shape[1] = 2;
    f->info[0].offset = 0;
    f->info[0].numel = 2;
    f->info[0].layer = -1;
    f->info[0].decay = 1;
    strcpy(f->info[1].name, "b");
    f->info[1].ndim = 1;
    f->info[1].shape[0] = 2;
    f->info[1].offset = 2;
    f->info[1].numel = 2;
    f->info[1].layer = -1;
    f->info[1].decay = 0;
    f->m.info = f->info;
    f->m.n_tensors = 2;
    f->m.n_params = 4;
    f->m.params = xalloc_floats(4);
    f->m.grads = xalloc_floats(4);
}

static void fake_free(fake_model *f)
{
    free(f->m.params);
    free(f->m.grads);
    free(f->m.mask);
}

static optim_config const_lr_config(optim_kind kind, float lr)
{
    optim_config c;
    optim_config_default(&c);
    c.kind = kind;
    c.lr = lr;
    c.min_lr = lr; /* constant schedule */
    c.warmup_steps = 0;
    c.total_steps = 1000;
    return c;
}

START_TEST(test_adamw_two_steps_by_hand)
{
    fake_model f;
    fake_init(&f);
    float p0[4] = {1.0f, -2.0f, 0.5f, 3.0f};
    float g1[4] = {0.5f, -0.1f, 2.0f, -0.3f};
    float g2[4] = {-0.2f, 0.4f, 1.0f, 0.0f};
    memcpy(f.m.params, p0, sizeof p0);
    optim_config c = const_lr_config(OPTIM_ADAMW, 0.1f);
    c.weight_decay = 0.01f;
    c.beta1 = 0.9f;
    c.beta2 = 0.99f;
    c.eps = 1e-8f;
    optim o;
    char err[PL_ERRLEN];
    ck_assert_int_eq(optim_init(&o, &c, 4, err, sizeof err), 0);
    ck_assert_uint_eq(o.state_len, 8);

    /* reference in double, written out from the AdamW paper's algorithm */
    double p[4], m[4] = {0}, v[4] = {0};
    for (int i = 0; i < 4; i++) p[i] = p0[i];
    const float *gs[2] = {g1, g2};
    for (int t = 1; t <= 2; t++) {
        memcpy(f.m.grads, gs[t - 1], sizeof g1);
        float lr = optim_step(&o, &f.m);
        ck_assert_float_eq(lr, 0.1f);
        for (int i = 0; i < 4; i++) {
            double g = gs[t - 1][i];
            double wd = i < 2 ? 0.01 : 0.0;
            p[i] -= 0.1 * wd * p[i];
            m[i] = 0.9 * m[i] + 0.1 * g;
            v[i] = 0.99 * v[i] + 0.01 * g * g;
            double mh = m[i] / (1.0 - pow(0.9, t)), vh = v[i] / (1.0 - pow(0.99, t));
            p[i] -= 0.1 * mh / (sqrt(vh) + 1e-8);
        }
        for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(f.m.params[i], p[i], 1e-6);
        for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(o.state[i], m[i], 1e-7);
        for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(o.state[4 + i], v[i], 1e-7);
    }
    ck_assert_int_eq(o.step, 2);
    /* step 1 is lr * sign(g) for every coordinate, plus the decay on "w": */
    /* p[0] after step 1 = 1 * (1 - 0.001) - 0.1 = 0.899 (checked through the loop above) */
    optim_free(&o);
    fake_free(&f);
}
END_TEST

START_TEST(test_decay_only_on_decay_tensors)
{
    fake_model f;
    fake_init(&f);
    for (int i = 0; i < 4; i++) f.m.params[i] = 2.0f;
    /* zero gradient: Adam moments stay 0, only the decoupled decay can move a weight */
    for (int k = 0; k < 2; k++) {
        optim_config c = const_lr_config(k == 0 ? OPTIM_ADAMW : OPTIM_SGD, 0.1f);
        c.weight_decay = 0.5f;
        optim o;
        char err[PL_ERRLEN];
        ck_assert_int_eq(optim_init(&o, &c, 4, err, sizeof err), 0);
        for (int i = 0; i < 4; i++) f.m.params[i] = 2.0f;
        optim_step(&o, &f.m);
        /* AdamW: p (1 - lr wd) = 2 * 0.95; SGD: p - lr * wd * p = the same for one step */
        ck_assert_double_eq_tol(f.m.params[0], 1.9, 1e-6);
        ck_assert_double_eq_tol(f.m.params[1], 1.9, 1e-6);
        ck_assert_float_eq(f.m.params[2], 2.0f);
        ck_assert_float_eq(f.m.params[3], 2.0f);
        optim_free(&o);
    }
    fake_free(&f);
}
END_TEST

START_TEST(test_schedule_values)
{
    optim_config c;
    optim_config_default(&c);
    c.lr = 1e-2f;
    c.min_lr = 1e-4f;
    c.warmup_steps = 10;
    c.total_steps = 110;
    ck_assert_double_eq_tol(optim_lr_at(&c, 0), 1e-3, 1e-9);        /* lr * 1/10 */
    ck_assert_double_eq_tol(optim_lr_at(&c, 4), 5e-3, 1e-9);        /* lr * 5/10 */
    ck_assert_double_eq_tol(optim_lr_at(&c, 9), 1e-2, 1e-9);        /* end of warmup */
    ck_assert_double_eq_tol(optim_lr_at(&c, 10), 1e-2, 1e-9);       /* cosine starts at lr */
    ck_assert_double_eq_tol(optim_lr_at(&c, 60), (1e-2 + 1e-4) / 2, 1e-8); /* half way */
    ck_assert_double_eq_tol(optim_lr_at(&c, 110), 1e-4, 1e-9);      /* floor at the end */
    ck_assert_double_eq_tol(optim_lr_at(&c, 500), 1e-4, 1e-9);      /* and stays there */
    /* monotone decreasing after warmup */
    for (long s = 10; s < 110; s++) ck_assert(optim_lr_at(&c, s + 1) <= optim_lr_at(&c, s));
    /* no warmup: step 0 is the peak */
    c.warmup_steps = 0;
    ck_assert_double_eq_tol(optim_lr_at(&c, 0), 1e-2, 1e-9);
}
END_TEST

START_TEST(test_clip_scales_to_max_norm)
{
    float g[3] = {3.0f, 4.0f, 0.0f};
    double n = optim_clip(g, 3, 1.0f);
    ck_assert_double_eq_tol(n, 5.0, 1e-9);
    ck_assert_double_eq_tol(g[0], 0.6, 1e-6);
    ck_assert_double_eq_tol(g[1], 0.8, 1e-6);
    ck_assert_double_eq_tol(optim_grad_norm(g, 3), 1.0, 1e-6);
    /* below the threshold: unchanged, still returns the norm */
    float h[2] = {0.3f, 0.4f};
    ck_assert_double_eq_tol(optim_clip(h, 2, 1.0f), 0.5, 1e-7);
    ck_assert_float_eq(h[0], 0.3f);
    ck_assert_float_eq(h[1], 0.4f);
    /* disabled */
    float k[2] = {30.0f, 40.0f};
    ck_assert_double_eq_tol(optim_clip(k, 2, 0.0f), 50.0, 1e-6);
    ck_assert_float_eq(k[0], 30.0f);
}
END_TEST

START_TEST(test_sgd_momentum_by_hand)
{
    for (int nesterov = 0; nesterov <= 1; nesterov++) {
        fake_model f;
        fake_init(&f);
        optim_config c = const_lr_config(OPTIM_SGD, 0.1f);
        c.momentum = 0.9f;
        c.nesterov = nesterov;
        c.weight_decay = 0.0f;
        optim o;
        char err[PL_ERRLEN];
        ck_assert_int_eq(optim_init(&o, &c, 4, err, sizeof err), 0);
        ck_assert_uint_eq(o.state_len, 4);
        f.m.params[2] = 1.0f;
        /* constant gradient 1 on params[2]:
         * plain:    buf 1, 1.9, 2.71        -> p 0.9, 0.71, 0.439
         * nesterov: d = 1 + 0.9 buf = 1.9, 2.71, 3.439 -> p 0.81, 0.539, 0.1951 */
        const double plain[3] = {0.9, 0.71, 0.439}, nest[3] = {0.81, 0.539, 0.1951};
        for (int t = 0; t < 3; t++) {
            memset(f.m.grads, 0, 4 * sizeof(float));
            f.m.grads[2] = 1.0f;
            optim_step(&o, &f.m);
            ck_assert_double_eq_tol(f.m.params[2], nesterov ? nest[t] : plain[t], 1e-6);
        }
        ck_assert_float_eq(f.m.params[3], 0.0f);
        optim_free(&o);
        fake_free(&f);
    }
}
END_TEST

START_TEST(test_mask_keeps_zeros)
{
    fake_model f;
    fake_init(&f);
    model_alloc_mask(&f.m);
    ck_assert_ptr_nonnull(f.m.mask);
    f.m.mask[1] = 0.0f;
    for (int i = 0; i < 4; i++) f.m.params[i] = 1.0f;
    model_apply_mask(&f.m);
    ck_assert_float_eq(f.m.params[1], 0.0f);
    optim_config c = const_lr_config(OPTIM_ADAMW, 0.1f);
    optim o;
    char err[PL_ERRLEN];
    ck_assert_int_eq(optim_init(&o, &c, 4, err, sizeof err), 0);
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < 4; i++) f.m.grads[i] = -1.0f;
        optim_step(&o, &f.m);
    }
    ck_assert_float_eq(f.m.params[1], 0.0f);
    ck_assert(f.m.params[0] > 1.2f);
    optim_free(&o);
    fake_free(&f);
}
END_TEST

/* f(p) = 0.5 sum_i a_i (p_i - c_i)^2 over the 4 parameters; both optimizers reach c. */
START_TEST(test_quadratic_converges)
{
    const float a[4] = {1.0f, 10.0f, 0.3f, 3.0f}, target[4] = {1.5f, -0.5f, 2.0f, 0.25f};
    for (int k = 0; k < OPTIM_KIND_COUNT; k++) {
        fake_model f;
        fake_init(&f);
        optim_config c;
        optim_config_default(&c);
        c.kind = (optim_kind)k;
        c.lr = k == OPTIM_ADAMW ? 0.05f : 0.05f;
        c.min_lr = 1e-4f;
        c.warmup_steps = 20;
        c.total_steps = 600;
        c.weight_decay = 0.0f;
        c.momentum = 0.9f;
        optim o;
        char err[PL_ERRLEN];
        ck_assert_int_eq(optim_init(&o, &c, 4, err, sizeof err), 0);
        for (long s = 0; s < c.total_steps; s++) {
            for (int i = 0; i < 4; i++) f.m.grads[i] = a[i] * (f.m.params[i] - target[i]);
            optim_clip(f.m.grads, 4, 5.0f);
            optim_step(&o, &f.m);
        }
        for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(f.m.params[i], target[i], 1e-2);
        optim_free(&o);
        fake_free(&f);
    }
}
END_TEST

START_TEST(test_bad_config_refused)
{
    optim_config c;
    optim_config_default(&c);
    optim o;
    char err[PL_ERRLEN] = "";
    c.lr = 0.0f;
    ck_assert_int_eq(optim_init(&o, &c, 4, err, sizeof err), -1);
    ck_assert(strstr(err, "learning rate") != NULL);
    optim_config_default(&c);
    c.beta2 = 1.0f;
    ck_assert_int_eq(optim_init(&o, &c, 4, err, sizeof err), -1);
    optim_config_default(&c);
    c.min_lr = 1.0f;
    ck_assert_int_eq(optim_init(&o, &c, 4, err, sizeof err), -1);
    optim_kind k;
    ck_assert_int_eq(optim_kind_parse("sgd", &k), 0);
    ck_assert_int_eq(k, OPTIM_SGD);
    ck_assert_int_eq(optim_kind_parse("adam", &k), -1);
    ck_assert_str_eq(optim_kind_name(OPTIM_ADAMW), "adamw");
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_adamw_two_steps_by_hand);
    tcase_add_test(tc, test_decay_only_on_decay_tensors);
    tcase_add_test(tc, test_schedule_values);
    tcase_add_test(tc, test_clip_scales_to_max_norm);
    tcase_add_test(tc, test_sgd_momentum_by_hand);
    tcase_add_test(tc, test_mask_keeps_zeros);
    tcase_add_test(tc, test_quadratic_converges);
    tcase_add_test(tc, test_bad_config_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(optim_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
