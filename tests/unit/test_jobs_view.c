/* test_jobs_view.c — server/jobs_view.c: the JSON and CSV views of jobs, cells and results,
 * checked on their rendered text (fields, null for absent and non-finite values, the results
 * flattening, CSV header, rows and quoting) and on the job list page. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "jobs_view.h"

static char *dump(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    ck_assert_ptr_nonnull(s);
    return s;
}

static store_cell cell_of(int64_t id, int idx, const char *spec, const char *result)
{
    store_cell c;
    memset(&c, 0, sizeof c);
    c.id = id;
    c.idx = idx;
    c.state = result ? STORE_STATE_DONE : STORE_STATE_QUEUED;
    c.spec_json = (char *)spec;
    c.result_json = (char *)result;
    c.progress = result ? 1.0 : NAN;
    return c;
}

START_TEST(test_job_fields)
{
    store_job j;
    memset(&j, 0, sizeof j);
    j.id = 7;
    j.owner = "alice";
    j.type = STORE_JOB_ABLATION;
    j.state = STORE_STATE_RUNNING;
    j.n_cells = 4;
    j.counts[STORE_STATE_DONE] = 1;
    j.counts[STORE_STATE_RUNNING] = 3;
    j.progress = 0.25;
    j.created_ms = 1000;
    j.baseline_json = "{\"accuracy\":0.5}";
    j.spec_json = "not json";
    char *s = dump(jobs_view_job(&j, 1));
    ck_assert_str_eq(s, "{\"baseline\":{\"accuracy\":0.5},\"cells\":4,\"counts\":{\"cancelled\":0,\"done\":1,"
                        "\"failed\":0,\"queued\":0,\"running\":3},\"created_ms\":1000,\"error\":null,"
                        "\"finished_ms\":null,\"id\":7,\"model\":null,\"owner\":\"alice\",\"priority\":0,"
                        "\"progress\":0.25,\"spec\":\"not json\",\"started_ms\":null,\"state\":\"running\","
                        "\"type\":\"ablation\"}");
    free(s);
    j.progress = NAN;
    json_t *o = jobs_view_job(&j, 0);
    ck_assert(json_is_null(json_object_get(o, "progress")));
    ck_assert_ptr_null(json_object_get(o, "spec"));
    json_decref(o);
}
END_TEST

START_TEST(test_cell_fields)
{
    store_cell c = cell_of(3, 1, "{\"component\":\"mlp\"}", NULL);
    c.error_code = "oom";
    c.phase = "finetune";
    char *s = dump(jobs_view_cell(&c));
    ck_assert_str_eq(s, "{\"attempts\":0,\"error\":{\"code\":\"oom\",\"message\":null},\"finished_ms\":null,"
                        "\"id\":3,\"idx\":1,\"max_attempts\":0,\"phase\":\"finetune\",\"progress\":null,"
                        "\"result\":null,\"spec\":{\"component\":\"mlp\"},\"started_ms\":null,"
                        "\"state\":\"queued\",\"stderr_tail\":null}");
    free(s);
    s = dump(jobs_view_cells(9, &c, 1));
    const char *pre = "{\"cells\":[{\"attempts\":0,";
    ck_assert_msg(strncmp(s, pre, strlen(pre)) == 0 && strstr(s, ",\"job\":9}"), "%s", s);
    free(s);
}
END_TEST

START_TEST(test_result_row_flattening)
{
    store_cell c = cell_of(5, 2, "{\"components\":[\"gate\",\"mlp\"],\"config\":{\"mlp\":0.5,\"gate\":0.25},\"rate\":0.5}",
                           "{\"metrics\":{\"accuracy\":0.875,\"sparsity\":{\"overall\":{\"sparsity\":0.4}},"
                           "\"params\":1234,\"loss\":[1,2]}}");
    json_t *row = jobs_view_result_row(&c);
    ck_assert_str_eq(json_string_value(json_object_get(row, "components")), "gate");
    ck_assert_str_eq(json_string_value(json_object_get(row, "config")), "mlp=0.5;gate=0.25");
    ck_assert_double_eq(json_real_value(json_object_get(row, "sparsity")), 0.4);
    ck_assert_double_eq(json_real_value(json_object_get(row, "accuracy")), 0.875);
    ck_assert_int_eq(json_integer_value(json_object_get(row, "params")), 1234);
    ck_assert(json_is_null(json_object_get(row, "loss")));  /* an array is not a metric */
    ck_assert(json_is_null(json_object_get(row, "layer"))); /* absent coordinate */
    ck_assert(json_is_null(json_object_get(row, "error")));
    ck_assert_str_eq(json_string_value(json_object_get(row, "state")), "done");
    json_decref(row);

    store_job j;
    memset(&j, 0, sizeof j);
    j.id = 11;
    j.type = STORE_JOB_JOINT;
    char *s = dump(jobs_view_results(&j, &c, 1));
    ck_assert_msg(strstr(s, "\"baseline\":null") && strstr(s, "\"job\":11") && strstr(s, "\"type\":\"joint\"") &&
                      strstr(s, "\"rows\":[{"), "%s", s);
    free(s);
}
END_TEST

START_TEST(test_results_csv)
{
    store_cell c[2] = {cell_of(5, 0, "{\"component\":\"a,\\\"b\\\"\",\"rate\":0.5,\"seed\":3}",
                                 "{\"accuracy\":0.123456789012,\"wall_s\":2}"),
                       cell_of(6, 1, "{\"component\":\"mlp\",\"rate\":0.7}", NULL)};
    c[1].error_code = "engine_crash";
    size_t len = 0;
    char *csv = jobs_view_results_csv(c, 2, &len);
    ck_assert_ptr_nonnull(csv);
    ck_assert_uint_eq(len, strlen(csv));
    const char *header = "idx,cell_id,state,component,components,layer,rate,seed,config,accuracy,loss,"
                         "baseline_accuracy,delta_accuracy,delta_loss,sparsity,params,params_nonzero,"
                         "params_baseline,flops_per_sample,baseline_flops_per_sample,latency_ms_per_batch,"
                         "samples_per_s,speedup,wall_s,task,metric,perplexity,baseline_perplexity,"
                         "delta_perplexity,bits_per_token,bits_per_byte,tokens_per_s,error\n";
    ck_assert_msg(strncmp(csv, header, strlen(header)) == 0, "header: %s", csv);
    /* an image row: its columns as before, then the 8 task / LM columns (empty here), then error */
    const char *row1 = "0,5,done,\"a,\"\"b\"\"\",,,0.5,3,,0.123456789,,,,,,,,,,,,,,2,,,,,,,,,\n";
    const char *row2 = "1,6,queued,mlp,,,0.7,,,,,,,,,,,,,,,,,,,,,,,,,,engine_crash\n";
    char want[1024];
    snprintf(want, sizeof want, "%s%s%s", header, row1, row2);
    ck_assert_str_eq(csv, want);
    free(csv);

    csv = jobs_view_results_csv(NULL, 0, &len);
    ck_assert_str_eq(csv, header);
    free(csv);
}
END_TEST

/* A causal LM cell's result as the engine reports it (the LM contract), built by hand. */
static const char LM_RESULT[] =
    "{\"event\":\"result\",\"metrics\":{\"task\":\"causal_lm\",\"metric\":\"perplexity\",\"loss\":2.5,"
    "\"perplexity\":12.182493960703473,\"baseline_perplexity\":9.5,\"baseline_loss\":2.2512917986064953,"
    "\"delta_perplexity\":2.682493960703473,\"delta_loss\":0.2487082013935047,\"bits_per_token\":3.606737602222409,"
    "\"bits_per_byte\":3.606737602222409,\"accuracy\":0.31,\"baseline_accuracy\":0.35,\"delta_accuracy\":-0.04,"
    "\"tokens_per_s\":51234.5,\"eval\":{\"split\":\"val\",\"n\":16,\"tokens\":4080,\"seq_len\":256},"
    "\"params\":18912,\"sparsity\":0.25,\"samples_per_s\":200.1,\"wall_s\":1.5}}";
static const char IMAGE_RESULT[] =
    "{\"metrics\":{\"task\":\"image_classifier\",\"metric\":\"accuracy\",\"accuracy\":0.875,\"wall_s\":1}}";

START_TEST(test_lm_results)
{
    store_cell c[3] = {cell_of(8, 0, "{\"component\":\"in_proj\",\"rate\":0.5,\"seq_len\":256}", NULL),
                       cell_of(9, 1, "{\"component\":\"in_proj\",\"rate\":0.7,\"seq_len\":256}", LM_RESULT),
                       cell_of(10, 2, "{\"component\":\"mlp\",\"rate\":0.5}", IMAGE_RESULT)};
    json_t *row = jobs_view_result_row(&c[1]);
    ck_assert_str_eq(json_string_value(json_object_get(row, "task")), "causal_lm");
    ck_assert_str_eq(json_string_value(json_object_get(row, "metric")), "perplexity");
    ck_assert_double_eq_tol(json_real_value(json_object_get(row, "perplexity")), 12.182493960703473, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_object_get(row, "baseline_perplexity")), 9.5, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_object_get(row, "delta_perplexity")), 2.682493960703473, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_object_get(row, "bits_per_token")), 3.606737602222409, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_object_get(row, "bits_per_byte")), 3.606737602222409, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_object_get(row, "tokens_per_s")), 51234.5, 1e-9);
    ck_assert_double_eq_tol(json_real_value(json_object_get(row, "accuracy")), 0.31, 1e-12);
    json_decref(row);
    row = jobs_view_result_row(&c[2]);
    ck_assert_str_eq(json_string_value(json_object_get(row, "task")), "image_classifier");
    ck_assert(json_is_null(json_object_get(row, "perplexity")));
    json_decref(row);
    /* the headline metric follows the cells' "metric": the first that names one */
    char m[64];
    ck_assert_str_eq(jobs_view_headline_metric(c, 3, m, sizeof m), "perplexity");
    ck_assert_str_eq(jobs_view_headline_metric(c + 2, 1, m, sizeof m), "accuracy");
    ck_assert_str_eq(jobs_view_headline_metric(c, 1, m, sizeof m), "accuracy"); /* nothing finished */
    store_job j;
    memset(&j, 0, sizeof j);
    j.id = 4;
    j.type = STORE_JOB_ABLATION;
    char *s = dump(jobs_view_results(&j, c, 2));
    ck_assert_msg(strstr(s, "\"metric\":\"perplexity\""), "%s", s);
    free(s);
    size_t len = 0;
    char *text = jobs_view_results_page_text(&j, c, 2, "", &len);
    ck_assert_msg(strstr(text, "{\"job\":4,\"type\":\"ablation\",\"metric\":\"perplexity\",") == text, "%s", text);
    free(text);
    char *csv = jobs_view_results_csv(c + 1, 1, &len);
    const char *want_row = "1,9,done,in_proj,,,0.7,,,0.31,2.5,0.35,-0.04,0.2487082014,0.25,18912,,,,,,200.1,,1.5,"
                           "causal_lm,perplexity,12.18249396,9.5,2.682493961,3.606737602,3.606737602,51234.5,\n";
    const char *nl = strchr(csv, '\n');
    ck_assert_ptr_nonnull(nl);
    ck_assert_str_eq(nl + 1, want_row);
    free(csv);
}
END_TEST

START_TEST(test_page)
{
    store_job j[2];
    memset(j, 0, sizeof j);
    j[0].id = 2;
    j[0].owner = "bob \"b\"\n";
    j[0].type = STORE_JOB_TRAIN;
    j[0].progress = 1.0;
    j[0].spec_json = "{\"hidden\":1}";
    j[1].id = 1;
    j[1].owner = "alice";
    j[1].type = STORE_JOB_LITE;
    j[1].progress = INFINITY;
    char *out = NULL;
    size_t len = 0;
    ck_assert_int_eq(jobs_view_page(j, 2, "o2", &out, &len), 0);
    ck_assert_uint_eq(len, strlen(out));
    const char *pre = "{\"jobs\":[{\"id\":2,\"owner\":\"bob \\\"b\\\"\\n\",\"type\":\"train\",";
    ck_assert_msg(strncmp(out, pre, strlen(pre)) == 0, "%s", out);
    ck_assert_msg(strstr(out, "\"progress\":1.0,") && strstr(out, "\"progress\":null,"), "%s", out);
    ck_assert_ptr_null(strstr(out, "hidden"));
    ck_assert_msg(len > 24 && strcmp(out + len - 24, "\"next_page_token\":\"o2\"}\n") == 0, "%s", out);
    free(out);
    ck_assert_int_eq(jobs_view_page(j, 0, "", &out, &len), 0);
    ck_assert_str_eq(out, "{\"jobs\":[],\"next_page_token\":null}\n");
    free(out);
}
END_TEST

/* The parts of consecutive pages (the header with the first) concatenate to the whole CSV. */
START_TEST(test_results_csv_parts)
{
    store_cell c[3] = {cell_of(5, 0, "{\"component\":\"a\\nb\",\"rate\":0.5}", "{\"accuracy\":0.25}"),
                       cell_of(6, 1, "{\"component\":\"mlp\",\"rate\":0.7}", NULL),
                       cell_of(7, 2, "{\"config\":{\"mlp\":0.3,\"dt\":0.5}}",
                               "{\"sparsity\":{\"overall\":{\"sparsity\":0.125}}}")};
    size_t len = 0, l1 = 0, l2 = 0, l3 = 0;
    char *whole = jobs_view_results_csv(c, 3, &len);
    char *p1 = jobs_view_results_csv_part(c, 1, 1, &l1);
    char *p2 = jobs_view_results_csv_part(c + 1, 2, 0, &l2);
    char *p3 = jobs_view_results_csv_part(NULL, 0, 0, &l3);
    ck_assert_ptr_nonnull(whole);
    ck_assert_ptr_nonnull(p1);
    ck_assert_ptr_nonnull(p2);
    ck_assert_ptr_nonnull(p3);
    ck_assert_uint_eq(l3, 0);
    ck_assert_uint_eq(l1 + l2, len);
    ck_assert(memcmp(whole, p1, l1) == 0 && memcmp(whole + l1, p2, l2) == 0);
    ck_assert_msg(strstr(whole, ",0.125,") != NULL, "%s", whole);
    ck_assert_ptr_null(strstr(p2, "idx,cell_id"));
    free(whole);
    free(p1);
    free(p2);
    free(p3);
}
END_TEST

START_TEST(test_cells_and_results_pages)
{
    store_cell c = cell_of(5, 0, "{\"rate\":0.5}", "{\"accuracy\":0.25}");
    char *s = dump(jobs_view_cells_page(9, &c, 1, "c0"));
    ck_assert_msg(strstr(s, "\"job\":9") && strstr(s, "\"next_page_token\":\"c0\"") && strstr(s, "\"idx\":0"),
                  "%s", s);
    free(s);
    s = dump(jobs_view_cells_page(9, NULL, 0, ""));
    ck_assert_str_eq(s, "{\"cells\":[],\"job\":9,\"next_page_token\":null}");
    free(s);
    store_job j;
    memset(&j, 0, sizeof j);
    j.id = 9;
    j.type = STORE_JOB_RSST;
    j.baseline_json = "{\"accuracy\":0.5}";
    /* the page texts are the bytes http_reply_json writes for the page objects */
    store_cell two[2] = {c, cell_of(6, 1, "{\"config\":{\"a\":0.5}}", "{\"sparsity\":{\"overall\":{\"sparsity\":0.5}}}")};
    two[1].error_code = "runtime";
    two[1].error_message = "it \"broke\"\n";
    for (size_t k = 0; k <= 2; k++) {
        const char *nexts[] = {"", "c1"};
        for (size_t t = 0; t < 2; t++) {
            size_t la = 0, lb = 0;
            char *a = http_json_text(jobs_view_cells_page(9, two, k, nexts[t]), &la);
            char *b = jobs_view_cells_page_text(9, two, k, nexts[t], &lb);
            ck_assert_ptr_nonnull(a);
            ck_assert_ptr_nonnull(b);
            ck_assert_str_eq(a, b);
            ck_assert_uint_eq(la, lb);
            free(a);
            free(b);
            a = http_json_text(jobs_view_results_page(&j, two, k, nexts[t]), &la);
            b = jobs_view_results_page_text(&j, two, k, nexts[t], &lb);
            ck_assert_ptr_nonnull(b);
            ck_assert_str_eq(a, b);
            ck_assert_uint_eq(la, lb);
            free(a);
            free(b);
        }
    }
    s = dump(jobs_view_results_page(&j, &c, 1, ""));
    ck_assert_msg(strstr(s, "\"baseline\":{\"accuracy\":0.5}") && strstr(s, "\"type\":\"rsst\"") &&
                      strstr(s, "\"next_page_token\":null") && strstr(s, "\"rows\":[{"),
                  "%s", s);
    free(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jobs_view");
    TCase *tc = tcase_create("views");
    tcase_add_test(tc, test_job_fields);
    tcase_add_test(tc, test_cell_fields);
    tcase_add_test(tc, test_result_row_flattening);
    tcase_add_test(tc, test_results_csv);
    tcase_add_test(tc, test_lm_results);
    tcase_add_test(tc, test_page);
    tcase_add_test(tc, test_results_csv_parts);
    tcase_add_test(tc, test_cells_and_results_pages);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
