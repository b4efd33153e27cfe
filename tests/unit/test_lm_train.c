/* test_lm_train.c — training, evaluation and calibration of a causal LM on token windows
 * (data.h dataset_load_tokens, task.h, train.c, measure.c, prune_calib.c): lm-tiny on
 * synthetic-lm learns (loss below log V after a short run), evaluation numbers agree with a
 * naive recount from full logits (loss, next-token accuracy), the LM head's top-1 counter
 * against a plain arg-max, task / vocabulary refusals, calibration on windows. */
#define _GNU_SOURCE
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "lm.h"
#include "measure.h"
#include "model.h"
#include "ops.h"
#include "prune.h"
#include "task.h"
#include "tokens.h"
#include "train.h"

#define SYN "synthetic-lm:n=12000,vocab=32,seed=3"

static void make_lm(model *m, int V)
{
    model_hparams hp;
    ck_assert_int_eq(lm_preset("lm-tiny", &hp), 0);
    model_config cfg;
    char err[256];
    ck_assert_int_eq(model_config_lm(&cfg, &hp, V, 1, err, sizeof err), 0);
    ck_assert_int_eq(model_create(m, &cfg, 7, err, sizeof err), 0);
}

START_TEST(test_windows_dataset)
{
    dataset ds;
    char err[256];
    ck_assert_int_eq(dataset_load_tokens(&ds, SYN, "test", 32, 0, err, sizeof err), 0);
    ck_assert(dataset_is_tokens(&ds));
    ck_assert_int_eq(ds.T, 32);
    ck_assert_int_eq(ds.vocab, 32);
    ck_assert_int_eq(ds.n, 3000 / 32);
    int idx[2] = {0, 5}, ids[64];
    dataset_windows(&ds, idx, 2, ids);
    for (int t = 0; t < 32; t++) {
        ck_assert_int_eq(ids[t], (int)tokens_id(ds.tsplit, (size_t)t));
        ck_assert_int_eq(ids[32 + t], (int)tokens_id(ds.tsplit, (size_t)5 * 32 + t));
    }
    dataset_free(&ds);
    ck_assert_int_eq(dataset_load_tokens(&ds, SYN, "test", 32, 100, err, sizeof err), 0);
    ck_assert_int_eq(ds.n, 4); /* ceil(100 / 32) */
    dataset_free(&ds);
    /* dataset_load routes token names (default seq_len 256) */
    ck_assert_int_eq(dataset_load(&ds, SYN, NULL, "train", err, sizeof err), 0);
    ck_assert_int_eq(ds.T, 256);
    ck_assert_int_eq(ds.n, 12000 / 256);
    dataset_free(&ds);
    ck_assert_int_ne(dataset_load_tokens(&ds, SYN, "test", 4000, 0, err, sizeof err), 0);
    ck_assert_int_ne(dataset_load_tokens(&ds, SYN, "test", 1, 0, err, sizeof err), 0);
    ck_assert_ptr_nonnull(strstr(err, "seq_len"));
}
END_TEST

/* The chunked head's top-1 counter and the evaluation against full logits. */
START_TEST(test_eval_matches_naive)
{
    ops_set_threads(2);
    model m;
    make_lm(&m, 32);
    dataset ds;
    char err[256];
    ck_assert_int_eq(dataset_load_tokens(&ds, SYN, "test", 16, 0, err, sizeof err), 0);
    measure_eval_out r;
    ck_assert_int_eq(measure_eval_full(&m, &ds, 7, NULL, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.n, ds.n);
    ck_assert_int_eq(r.predictions, (long)ds.n * 15);
    /* naive: full logits, one window at a time */
    int T = 16, V = 32;
    model_acts *a = model_acts_new_lm(&m, 1, T, 0, 1);
    double loss = 0.0;
    long hit = 0;
    int ids[16];
    for (int i = 0; i < ds.n; i++) {
        dataset_windows(&ds, &i, 1, ids);
        model_forward_lm(&m, a, ids, 1, T);
        const float *lg = model_acts_logits(a);
        for (int t = 0; t + 1 < T; t++) {
            const float *row = lg + (size_t)t * V;
            double mx = row[0];
            int best = 0;
            for (int v = 1; v < V; v++)
                if (row[v] > row[best]) best = v;
            mx = row[best];
            double se = 0.0;
            for (int v = 0; v < V; v++) se += exp((double)row[v] - mx);
            loss += mx + log(se) - row[ids[t + 1]];
            hit += best == ids[t + 1];
        }
    }
    model_acts_free(a);
    loss /= (double)ds.n * (T - 1);
    ck_assert_double_eq_tol(r.loss, loss, 1e-4);
    ck_assert_int_eq((long)llround(r.accuracy * r.predictions), hit);
    /* train_evaluate carries the LM numbers */
    eval_result er;
    ck_assert_int_eq(train_evaluate(&m, &ds, 256, &er, err, sizeof err), 0);
    ck_assert_double_eq_tol(er.loss, r.loss, 1e-6);
    ck_assert_int_eq(er.predictions, r.predictions);
    ck_assert(er.tokens_per_s > 0.0);
    /* perplexity = exp(loss), bits = loss / ln 2 */
    json_t *o = json_object();
    measure_lm_into(o, "", &ds, r.loss);
    ck_assert_double_eq_tol(json_real_value(json_object_get(o, "perplexity")), exp(r.loss), 1e-9);
    ck_assert_double_eq_tol(json_real_value(json_object_get(o, "bits_per_token")), r.loss / log(2.0), 1e-9);
    ck_assert_ptr_null(json_object_get(o, "bits_per_byte")); /* synthetic-lm: unknown */
    json_decref(o);
    dataset_free(&ds);
    model_free(&m);
}
END_TEST

START_TEST(test_train_learns)
{
    ops_set_threads(2);
    model m;
    make_lm(&m, 32);
    dataset tr, te;
    char err[256];
    ck_assert_int_eq(dataset_load_tokens(&tr, SYN, "train", 32, 0, err, sizeof err), 0);
    ck_assert_int_eq(dataset_load_tokens(&te, SYN, "test", 32, 0, err, sizeof err), 0);
    double acc0, loss0;
    ck_assert_int_eq(measure_eval(&m, &te, 64, NULL, &acc0, &loss0, err, sizeof err), 0);
    ck_assert(fabs(loss0 - log(32.0)) < 0.3);
    train_config tc;
    train_config_default(&tc);
    tc.epochs = 4;
    tc.batch = 16;
    tc.opt.lr = 5e-3f;
    tc.opt.min_lr = 5e-5f;
    train_result res;
    ck_assert_int_eq(train_run(&m, &tr, &te, &tc, &res, err, sizeof err), 0);
    ck_assert_int_eq(res.steps, 4 * (12000 / 32 / 16)); /* an epoch = n_tokens / (B * T) steps */
    ck_assert(res.test_loss < log(32.0) - 1.0);
    ck_assert(res.test_acc > 0.3f);
    double acc1, loss1;
    ck_assert_int_eq(measure_eval(&m, &te, 64, NULL, &acc1, &loss1, err, sizeof err), 0);
    ck_assert_double_eq_tol(loss1, res.test_loss, 1e-4);
    /* a resumed-free rerun with the same seed is identical */
    model m2;
    make_lm(&m2, 32);
    train_result res2;
    ck_assert_int_eq(train_run(&m2, &tr, &te, &tc, &res2, err, sizeof err), 0);
    ck_assert_int_eq(memcmp(m.params, m2.params, m.n_params * sizeof(float)), 0);
    model_free(&m2);
    dataset_free(&tr);
    dataset_free(&te);
    model_free(&m);
}
END_TEST

START_TEST(test_refusals)
{
    model lm, img;
    make_lm(&lm, 16);
    model_hparams hp;
    model_preset("tiny", &hp);
    model_config cfg;
    char err[256];
    ck_assert_int_eq(model_config_from_hparams(&cfg, &hp, 1, 16, 16, 4, err, sizeof err), 0);
    ck_assert_int_eq(model_create(&img, &cfg, 1, err, sizeof err), 0);
    dataset tok, ims;
    ck_assert_int_eq(dataset_load_tokens(&tok, SYN, "test", 16, 0, err, sizeof err), 0);
    ck_assert_int_eq(dataset_load(&ims, "synthetic:n=64", NULL, "test", err, sizeof err), 0);
    ck_assert_int_ne(train_check_compat(&lm, &tok, err, sizeof err), 0); /* V 32 > 16 */
    ck_assert_ptr_nonnull(strstr(err, "vocabulary 32"));
    ck_assert_int_ne(train_check_compat(&lm, &ims, err, sizeof err), 0);
    ck_assert_ptr_nonnull(strstr(err, "causal LM"));
    ck_assert_int_ne(train_check_compat(&img, &tok, err, sizeof err), 0);
    ck_assert_ptr_nonnull(strstr(err, "token dataset"));
    ck_assert_int_eq(train_check_compat(&img, &ims, err, sizeof err), 0);
    double a, l;
    ck_assert_int_ne(measure_eval(&img, &tok, 8, NULL, &a, &l, err, sizeof err), 0);
    dataset_free(&tok);
    dataset_free(&ims);
    model_free(&lm);
    model_free(&img);
}
END_TEST

START_TEST(test_calibration_windows)
{
    model m;
    make_lm(&m, 32);
    dataset tr;
    char err[256];
    ck_assert_int_eq(dataset_load_tokens(&tr, SYN, "train", 16, 0, err, sizeof err), 0);
    prune_calib *c = prune_calib_collect(&m, &tr, 40, 1, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_double_eq_tol(prune_calib_tokens(c), 40.0 * 16, 1e-9);
    prune_calib_free(c);
    dataset_free(&tr);
    model_free(&m);
}
END_TEST

/* Pruned and shrunk LMs (rows, channels, states, a whole layer; tied and untied heads) saved as
 * HF directories reload with identical logits. */
static void check_shrunk_reload(int tied, const char *spec_text, int want_layers)
{
    ops_set_threads(1);
    model_hparams hp;
    ck_assert_int_eq(lm_preset("lm-tiny", &hp), 0);
    model_config cfg;
    char err[512];
    ck_assert_int_eq(model_config_lm(&cfg, &hp, 32, tied, err, sizeof err), 0);
    model m;
    ck_assert_int_eq(model_create(&m, &cfg, 11, err, sizeof err), 0);
    ck_assert(prune_is_mamba_model(&m));
    dataset tr;
    ck_assert_int_eq(dataset_load_tokens(&tr, SYN, "train", 16, 0, err, sizeof err), 0);
    prune_spec spec;
    ck_assert_msg(prune_spec_parse(spec_text, &m, &spec, err, sizeof err) == 0, "%s", err);
    model pm, twin;
    char *rep = NULL;
    ck_assert_msg(prune_run(&m, &spec, &tr, &pm, &twin, &rep, err, sizeof err) == 0, "%s", err);
    free(rep);
    ck_assert(twin.n_params == 0);
    ck_assert_int_eq(pm.cfg.n_layers, want_layers);
    ck_assert(pm.n_params < m.n_params);
    ck_assert(prune_is_mamba_model(&pm));
    char dir[] = "/tmp/pl_test_lm_shrink_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[600];
    snprintf(path, sizeof path, "%s/", dir);
    ck_assert_msg(model_save(&pm, path, err, sizeof err) == 0, "%s", err);
    model back;
    ck_assert_msg(model_load(&back, dir, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(back.cfg.task, MODEL_TASK_LM);
    ck_assert_int_eq(back.cfg.tied, tied);
    ck_assert_int_eq(back.n_params, pm.n_params);
    int T = 16, V = 32, ids[2 * 16];
    int idx[2] = {0, 3};
    dataset_windows(&tr, idx, 2, ids);
    model_acts *a1 = model_acts_new_lm(&pm, 2, T, 0, 1), *a2 = model_acts_new_lm(&back, 2, T, 0, 1);
    model_forward_lm(&pm, a1, ids, 2, T);
    model_forward_lm(&back, a2, ids, 2, T);
    ck_assert_int_eq(memcmp(model_acts_logits(a1), model_acts_logits(a2), sizeof(float) * 2 * T * V), 0);
    model_acts_free(a1);
    model_acts_free(a2);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    model_free(&back);
    model_free(&pm);
    prune_spec_free(&spec);
    dataset_free(&tr);
    model_free(&m);
}

START_TEST(test_shrink_reload_identical)
{
    /* channels by wanda on token windows, states by magnitude: HF-uniform, config.json written */
    check_shrunk_reload(1,
                        "{\"prune\":[{\"component\":\"in_proj\",\"granularity\":\"structured\",\"rate\":0.5,"
                        "\"criterion\":\"wanda\"},{\"component\":\"x_proj_bc\",\"granularity\":\"structured\","
                        "\"rate\":0.25}]}",
                        2);
    /* a whole layer, untied head */
    check_shrunk_reload(0,
                        "{\"prune\":[{\"component\":\"layer\",\"granularity\":\"structured\",\"rate\":0.5,"
                        "\"criterion\":\"taylor\"}]}",
                        1);
    /* the same spec through activation statistics */
    check_shrunk_reload(1,
                        "{\"prune\":[{\"component\":\"dt\",\"granularity\":\"structured\",\"rate\":0.5,"
                        "\"criterion\":\"activation\"}]}",
                        2);
}
END_TEST

static Suite *lm_train_suite(void)
{
    Suite *s = suite_create("lm_train");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_windows_dataset);
    tcase_add_test(tc, test_eval_matches_naive);
    tcase_add_test(tc, test_train_learns);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_calibration_windows);
    tcase_add_test(tc, test_shrink_reload_identical);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(lm_train_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
