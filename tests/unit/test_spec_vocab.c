/* test_spec_vocab.c — spec/vocab.c: every name parses back to its value, aliases and names
 * never collide, and the vocabulary document (GET /api/v1/vocabulary) says what the tables say. */
#include <check.h>
#include <string.h>

#include "vocab.h"

START_TEST(test_components_round_trip)
{
    for (int c = 0; c < PC_COUNT; c++) {
        prune_component got = PC_COUNT;
        ck_assert_int_eq(prune_component_parse(prune_component_name(c), &got), 0);
        ck_assert_int_eq(got, c);
        got = PC_COUNT;
        ck_assert_int_eq(prune_component_parse(prune_component_alias(c), &got), 0);
        ck_assert_int_eq(got, c);
        /* a name or alias of one component is never a name or alias of another */
        for (int d = 0; d < PC_COUNT; d++) {
            if (d == c) continue;
            ck_assert_str_ne(prune_component_name(c), prune_component_name(d));
            ck_assert_str_ne(prune_component_alias(c), prune_component_name(d));
            ck_assert_str_ne(prune_component_alias(c), prune_component_alias(d));
        }
    }
    prune_component got;
    ck_assert_int_eq(prune_component_parse("Linear_out", &got), -1);
    ck_assert_int_eq(prune_component_parse("", &got), -1);
    ck_assert_int_eq(prune_component_parse(NULL, &got), -1);
    ck_assert_str_eq(prune_component_alias(PC_GATE), "linear_gate");
    ck_assert_str_eq(prune_component_alias(PC_X_PROJ_BC), "linear_B_C");
    ck_assert_ptr_null(prune_component_unit(PC_A_LOG));
    ck_assert_ptr_null(prune_component_unit(PC_D));
    ck_assert(prune_component_not_recommended(PC_A_LOG) && prune_component_not_recommended(PC_D));
    ck_assert(!prune_component_not_recommended(PC_MLP));
    ck_assert_str_eq(prune_component_name((prune_component)PC_COUNT), "?");
}
END_TEST

START_TEST(test_choices_and_presets)
{
    for (int c = 0; c < PCR_COUNT; c++) {
        prune_criterion got;
        ck_assert_int_eq(prune_criterion_parse(spec_criterion_names[c], &got), 0);
        ck_assert_int_eq(got, c);
    }
    ck_assert_ptr_null(spec_criterion_names[PCR_COUNT]);
    ck_assert_ptr_null(spec_granularity_names[PG_COUNT]);
    ck_assert_ptr_null(spec_recipe_names[CELL_RECIPE_COUNT]);
    ck_assert(prune_criterion_needs_calib(PCR_WANDA) && !prune_criterion_needs_calib(PCR_L2));
    model_hparams hp;
    ck_assert_int_eq(model_preset("small", &hp), 0);
    ck_assert_int_eq(hp.d, 64);
    ck_assert_int_eq(hp.n_layers, 4);
    ck_assert_int_eq(hp.d_state, 16);
    ck_assert_int_eq(model_preset("huge", &hp), -1);
    ck_assert_int_eq(hp.d, 0);
    for (int t = 0; t < CELL_RECIPE_COUNT; t++) ck_assert_ptr_nonnull(spec_job_keys(t));
    ck_assert_ptr_null(spec_job_keys((cell_recipe)CELL_RECIPE_COUNT));
}
END_TEST

START_TEST(test_vocabulary_document)
{
    json_t *v = spec_vocabulary_json();
    ck_assert_ptr_nonnull(v);
    json_t *comps = json_object_get(v, "components");
    ck_assert_int_eq((int)json_array_size(comps), PC_COUNT);
    for (int c = 0; c < PC_COUNT; c++) {
        json_t *o = json_array_get(comps, (size_t)c);
        ck_assert_str_eq(json_string_value(json_object_get(o, "name")), prune_component_name(c));
        ck_assert_str_eq(json_string_value(json_object_get(o, "alias")), prune_component_alias(c));
        ck_assert(json_string_length(json_object_get(o, "tensors")) > 0);
        int structured = prune_component_unit(c) != NULL;
        ck_assert_int_eq(json_is_true(json_object_get(o, "structured")), structured);
        ck_assert_int_eq(json_is_string(json_object_get(o, "structured_unit")), structured);
        ck_assert_int_eq(json_is_true(json_object_get(o, "recommended")), !prune_component_not_recommended(c));
    }
    ck_assert_int_eq((int)json_array_size(json_object_get(v, "criteria")), PCR_COUNT);
    ck_assert_int_eq((int)json_array_size(json_object_get(v, "granularities")), PG_COUNT);
    json_t *jobs = json_object_get(v, "job_types");
    ck_assert_int_eq((int)json_array_size(jobs), CELL_RECIPE_COUNT);
    json_t *abl = json_array_get(jobs, CELL_ABLATION);
    ck_assert_str_eq(json_string_value(json_object_get(abl, "name")), "ablation");
    int has_rates = 0;
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(abl, "keys"), i, k) has_rates |= strcmp(json_string_value(k), "rates") == 0;
    ck_assert(has_rates);
    json_decref(v);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("spec_vocab");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_components_round_trip);
    tcase_add_test(tc, test_choices_and_presets);
    tcase_add_test(tc, test_vocabulary_document);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
