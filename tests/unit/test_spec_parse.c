/* test_spec_parse.c — spec/: every error path of every spec parser (prune, rsst, lite, cell, and
 * the checks against a model's shape) in one table, each with the field it must name and the
 * error code prunelabd answers with; and parsed specs rendered back to JSON parse to the same
 * struct. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "spec.h"

typedef enum { K_PRUNE, K_RSST, K_LITE, K_CELL } kind;

/* A two-layer shape: d 32, E 64, N 8, R 2, K 4; layer 1 has no MLP. */
static void small_shape(spec_shape *sh)
{
    memset(sh, 0, sizeof *sh);
    sh->d = 32;
    sh->n_layers = 2;
    sh->layers[0] = (spec_layer_dims){64, 8, 2, 4, 64};
    sh->layers[1] = (spec_layer_dims){64, 8, 2, 4, 0};
}

static int parse(kind k, json_t *root, const spec_shape *sh, spec_error *e)
{
    prune_spec p;
    rsst_spec r;
    lite_spec l;
    cell_spec c;
    int rc;
    switch (k) {
    case K_PRUNE: rc = spec_prune_parse(root, "", sh, &p, e); if (rc == 0) prune_spec_free(&p); return rc;
    case K_RSST: rc = spec_rsst_parse(root, "", sh, &r, e); if (rc == 0) rsst_spec_free(&r); return rc;
    case K_LITE:
        rc = spec_lite_parse(root, "", &l, e);
        return rc == 0 ? spec_lite_check(&l.target, "", sh, e) : rc;
    default:
        rc = spec_cell_parse(root, &c, e);
        if (rc == 0) rc = spec_cell_check(&c, sh, e);
        cell_spec_free(&c);
        return rc;
    }
}

#define ABL "\"recipe\":\"ablation\",\"model\":\"m\",\"dataset\":\"synthetic\""
#define P1 "\"prune\":[{\"component\":\"mlp\",\"rate\":0.5}]"

START_TEST(test_every_error_names_its_field)
{
    static const struct {
        kind k;
        const char *json, *field, *code;
    } t[] = {
        {K_PRUNE, "[1]", "spec", "invalid_value"},
        {K_PRUNE, "{}", "prune", "missing_field"},
        {K_PRUNE, "{\"prune\":{}}", "prune", "invalid_value"},
        {K_PRUNE, "{\"prune\":[7]}", "prune[0]", "invalid_value"},
        {K_PRUNE, "{\"prune\":[],\"fine_tune\":{}}", "fine_tune", "unknown_field"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5,\"rat\":1}]}", "prune[0].rat", "unknown_field"},
        {K_PRUNE, "{\"prune\":[{\"rate\":0.5}]}", "prune[0].component", "missing_field"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"linear_C\",\"rate\":0.5}]}", "prune[0].component", "unknown_component"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\"}]}", "prune[0].rate", "missing_field"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":1}]}", "prune[0].rate", "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":-0.1}]}", "prune[0].rate", "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":\"nan\"}]}", "prune[0].rate", "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5,\"granularity\":\"blocky\"}]}", "prune[0].granularity",
         "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"D\",\"rate\":0.5,\"granularity\":\"structured\"}]}",
         "prune[0].granularity", "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5,\"criterion\":\"l1\"}]}", "prune[0].criterion",
         "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5,\"granularity\":\"structured\",\"scope\":\"global\"}]}",
         "prune[0].scope", "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5,\"apply\":\"shrink\"}]}", "prune[0].apply",
         "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5,\"layers\":[]}]}", "prune[0].layers", "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5,\"layers\":[0,0]}]}", "prune[0].layers[1]",
         "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"out_proj\",\"rate\":0.5,\"layers\":[0,2]}]}", "prune[0].layers[1]",
         "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5,\"layers\":[1]}]}", "prune[0].layers[0]",
         "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5},{\"component\":\"mlp\",\"rate\":0.3}]}", "prune[1]",
         "invalid_value"},
        {K_PRUNE, "{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5,\"granularity\":\"structured\"},"
                  "{\"component\":\"dt\",\"rate\":0.5,\"granularity\":\"structured\",\"apply\":\"mask\"}]}",
         "prune[1].apply", "invalid_value"},
        {K_PRUNE, "{\"prune\":[],\"finetune\":{\"steps\":-1}}", "finetune.steps", "invalid_value"},
        {K_PRUNE, "{\"prune\":[],\"finetune\":{\"lr\":0}}", "finetune.lr", "invalid_value"},
        {K_PRUNE, "{\"prune\":[],\"calibration\":{\"samples\":0}}", "calibration.samples", "invalid_value"},
        {K_PRUNE, "{\"prune\":[],\"seed\":1.5}", "seed", "invalid_value"},
        {K_RSST, "{\"rsst\":{}}", "prune", "missing_field"},
        {K_RSST, "{" P1 ",\"bogus\":1}", "bogus", "unknown_field"},
        {K_RSST, "{" P1 ",\"rsst\":{\"steps\":5}}", "rsst.steps", "unknown_field"},
        {K_RSST, "{" P1 ",\"rsst\":{\"power\":-1}}", "rsst.power", "invalid_value"},
        {K_RSST, "{" P1 ",\"rsst\":{\"lr\":0}}", "rsst.lr", "invalid_value"},
        {K_RSST, "{" P1 ",\"rounds\":0}", "rounds", "invalid_value"},
        {K_RSST, "{" P1 ",\"batch\":0}", "batch", "invalid_value"},
        {K_RSST, "{" P1 ",\"rewind\":\"later\"}", "rewind", "invalid_value"},
        {K_RSST, "{" P1 ",\"rewind\":{}}", "rewind.step", "missing_field"},
        {K_RSST, "{" P1 ",\"rewind\":{\"step\":1000},\"rsst\":{\"reg_steps\":10}}", "rewind.step", "invalid_value"},
        {K_RSST, "{" P1 ",\"refill\":{\"fillback_rate\":2}}", "refill.fillback_rate", "invalid_value"},
        {K_RSST, "{\"prune\":[{\"component\":\"A_log\",\"rate\":0.5}],\"refill\":{}}", "refill", "invalid_value"},
        {K_RSST, "{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5},{\"component\":\"in_proj\",\"rate\":0.3,"
                 "\"granularity\":\"structured\"}],\"refill\":{\"apply\":\"mask\"}}", "refill.apply", "invalid_value"},
        {K_RSST, "{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5,\"layers\":[5]}]}", "prune[0].layers[0]",
         "invalid_value"},
        {K_LITE, "{\"criterion\":\"l2\"}", "target", "missing_field"},
        {K_LITE, "{\"target\":{}}", "target", "invalid_value"},
        {K_LITE, "{\"target\":{\"width\":2}}", "target.width", "unknown_field"},
        {K_LITE, "{\"target\":{\"expand\":0}}", "target.expand", "invalid_value"},
        {K_LITE, "{\"target\":{\"d_state\":2.5}}", "target.d_state", "invalid_value"},
        {K_LITE, "{\"target\":{\"d_state\":16}}", "target.d_state", "invalid_value"},
        {K_LITE, "{\"target\":{\"n_layers\":3}}", "target.n_layers", "invalid_value"},
        {K_LITE, "{\"target\":{\"expand\":4}}", "target.expand", "invalid_value"},
        {K_LITE, "{\"target\":{\"d_conv\":5}}", "target.d_conv", "invalid_value"},
        {K_LITE, "{\"target\":{\"mlp_ratio\":4}}", "target.mlp_ratio", "invalid_value"},
        {K_LITE, "{\"target\":{\"expand\":1},\"finetune\":{\"steps\":1,\"epochs\":1}}", "finetune.epochs",
         "invalid_value"},
        {K_LITE, "{\"target\":{\"expand\":1},\"seed\":-1}", "seed", "invalid_value"},
        {K_CELL, "[1]", "spec", "invalid_value"},
        {K_CELL, "{}", "recipe", "missing_field"},
        {K_CELL, "{\"recipe\":\"grid\"}", "recipe", "invalid_value"},
        {K_CELL, "{" ABL ",\"component\":\"mlp\",\"rate\":0.5,\"bogus\":1}", "bogus", "unknown_field"},
        {K_CELL, "{\"recipe\":\"ablation\",\"dataset\":\"synthetic\",\"component\":\"mlp\",\"rate\":0.5}", "model",
         "missing_field"},
        {K_CELL, "{" ABL ",\"rate\":0.5}", "component", "missing_field"},
        {K_CELL, "{" ABL ",\"component\":\"linear_q\",\"rate\":0.5}", "component", "unknown_component"},
        {K_CELL, "{" ABL ",\"component\":\"mlp\",\"rate\":1.0}", "rate", "invalid_value"},
        {K_CELL, "{" ABL ",\"component\":\"mlp\",\"rate\":0.5,\"finetune\":{\"epochs\":2}}", "finetune.epochs",
         "unknown_field"},
        {K_CELL, "{" ABL ",\"component\":\"mlp\",\"rate\":0.5,\"eval\":{\"split\":\"dev\"}}", "eval.split",
         "invalid_value"},
        {K_CELL, "{" ABL ",\"component\":\"mlp\",\"rate\":0.5,\"baseline\":{}}", "baseline.accuracy", "missing_field"},
        {K_CELL, "{" ABL ",\"component\":\"mlp\",\"rate\":0.5,\"seq_len\":1}", "seq_len", "invalid_value"},
        {K_CELL, "{" ABL ",\"component\":\"mlp\",\"rate\":0.5,\"seq_len\":70000}", "seq_len", "invalid_value"},
        {K_CELL, "{" ABL ",\"component\":\"mlp\",\"rate\":0.5,\"seq_len\":\"64\"}", "seq_len", "invalid_value"},
        {K_CELL, "{" ABL ",\"component\":\"mlp\",\"rate\":0.5,\"eval\":{\"max_tokens\":0}}", "eval.max_tokens",
         "invalid_value"},
        {K_CELL, "{\"recipe\":\"joint\",\"model\":\"m\",\"dataset\":\"synthetic\",\"config\":{\"out_proj\":0.2,"
                 "\"linear_out\":0.3}}", "config.linear_out", "invalid_value"},
        {K_CELL, "{\"recipe\":\"sensitivity\",\"model\":\"m\",\"dataset\":\"synthetic\",\"layer\":9,\"components\":\"mlp\","
                 "\"rate\":0.5}", "layer", "invalid_value"},
        {K_CELL, "{\"recipe\":\"sensitivity\",\"model\":\"m\",\"dataset\":\"synthetic\",\"layer\":1,\"components\":[\"mlp\"],"
                 "\"rate\":0.5}", "components[0]", "invalid_value"},
        {K_CELL, "{\"recipe\":\"train\",\"dataset\":\"synthetic\",\"preset\":\"tiny\"}", "out", "missing_field"},
        {K_CELL, "{\"recipe\":\"train\",\"dataset\":\"synthetic\",\"out\":\"x\",\"lr\":0.1,\"min_lr\":0.5}", "min_lr",
         "invalid_value"},
        {K_CELL, "{\"recipe\":\"rsst\",\"model\":\"m\",\"dataset\":\"synthetic\",\"rsst\":{" P1 ",\"round\":2}}",
         "rsst.round", "unknown_field"},
        {K_CELL, "{\"recipe\":\"rsst\",\"model\":\"m\",\"dataset\":\"synthetic\",\"rsst\":{\"prune\":[{\"component\":"
                 "\"mlp\",\"rate\":0.5,\"layers\":[1]}]}}", "rsst.prune[0].layers[0]", "invalid_value"},
        {K_CELL, "{\"recipe\":\"lite\",\"model\":\"m\",\"dataset\":\"synthetic\",\"lite\":{\"target\":{\"d_state\":64}}}",
         "lite.target.d_state", "invalid_value"},
        {K_CELL, "{\"recipe\":\"lite\",\"model\":\"m\",\"dataset\":\"synthetic\"}", "lite", "missing_field"},
    };
    spec_shape sh;
    small_shape(&sh);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        json_t *root = json_loads(t[i].json, JSON_REJECT_DUPLICATES, NULL);
        ck_assert_msg(root != NULL, "case %zu is not JSON: %s", i, t[i].json);
        spec_error e;
        memset(&e, 0, sizeof e);
        ck_assert_msg(parse(t[i].k, root, &sh, &e) == -1, "accepted: %s", t[i].json);
        ck_assert_msg(strcmp(e.field, t[i].field) == 0, "%s: field \"%s\", want \"%s\" (%s)", t[i].json, e.field,
                      t[i].field, e.message);
        ck_assert_msg(e.code && strcmp(e.code, t[i].code) == 0, "%s: code %s, want %s", t[i].json, e.code, t[i].code);
        ck_assert_msg(strncmp(e.message, t[i].field, strlen(t[i].field)) == 0 && e.message[strlen(t[i].field)] == ':',
                      "message \"%s\" does not start with \"%s:\"", e.message, t[i].field);
        json_decref(root);
    }
}
END_TEST

/* A parsed spec, rendered, parses to the same struct (defaults made explicit). */
START_TEST(test_cell_lm_keys)
{
    spec_error e;
    cell_spec c;
    json_t *root = json_loads("{" ABL ",\"component\":\"mlp\",\"rate\":0.5}", 0, NULL);
    ck_assert_int_eq(spec_cell_parse(root, &c, &e), 0);
    ck_assert_int_eq(c.seq_len, SPEC_SEQ_LEN);
    ck_assert_int_eq(c.eval_max_tokens, 0);
    cell_spec_free(&c);
    json_decref(root);
    root = json_loads("{" ABL ",\"component\":\"mlp\",\"rate\":0.5,\"seq_len\":64,\"eval\":{\"max_tokens\":5000}}",
                      0, NULL);
    ck_assert_int_eq(spec_cell_parse(root, &c, &e), 0);
    ck_assert_int_eq(c.seq_len, 64);
    ck_assert_int_eq(c.eval_max_tokens, 5000);
    cell_spec_free(&c);
    json_decref(root);
}
END_TEST

START_TEST(test_render_round_trips)
{
    const char *rsst_text = "{\"prune\":[{\"component\":\"linear_gate\",\"rate\":0.3,\"layers\":[1,0]},"
                            "{\"component\":\"mlp\",\"rate\":0.7,\"granularity\":\"structured\",\"apply\":\"mask\","
                            "\"criterion\":\"wanda\"}],\"rounds\":3,\"rewind\":{\"step\":5},\"refill\":{\"fillback_rate\":"
                            "0.25,\"apply\":\"mask\"},\"finetune\":{\"steps\":20},\"seed\":9}";
    json_t *root = json_loads(rsst_text, 0, NULL);
    rsst_spec a, b;
    spec_error e;
    ck_assert_msg(spec_rsst_parse(root, "", NULL, &a, &e) == 0, "%s", e.message);
    json_t *out = spec_rsst_json(&a);
    ck_assert_msg(spec_rsst_parse(out, "", NULL, &b, &e) == 0, "rendered rsst spec refused: %s", e.message);
    ck_assert_int_eq(a.prune.n, b.prune.n);
    ck_assert_mem_eq(a.prune.entries, b.prune.entries, sizeof *a.prune.entries * (size_t)a.prune.n);
    ck_assert(a.rounds == b.rounds && a.rewind == b.rewind && a.rewind_step == b.rewind_step);
    ck_assert(a.refill == b.refill && a.fillback_rate == b.fillback_rate && a.refill_apply == b.refill_apply);
    ck_assert(a.reg_steps == b.reg_steps && a.lambda_max == b.lambda_max && a.prune.seed == b.prune.seed);
    ck_assert_int_eq(b.prune.entries[0].component, PC_GATE); /* the alias came back canonical */
    rsst_spec_free(&a);
    rsst_spec_free(&b);
    json_decref(root);
    json_decref(out);

    root = json_loads("{\"target\":{\"expand\":1.5,\"d_state\":4},\"criterion\":\"taylor\",\"finetune\":{\"epochs\":2}}",
                      0, NULL);
    lite_spec la, lb;
    ck_assert(spec_lite_parse(root, "", &la, &e) == 0);
    out = spec_lite_json(&la);
    ck_assert_msg(spec_lite_parse(out, "", &lb, &e) == 0, "rendered lite spec refused: %s", e.message);
    ck_assert_mem_eq(&la, &lb, sizeof la);
    json_decref(root);
    json_decref(out);
}
END_TEST

START_TEST(test_shape_from_inspect_json)
{
    json_t *info = json_loads("{\"config\":{\"d_model\":32,\"n_layers\":2},\"layers\":["
                              "{\"d_inner\":64,\"d_state\":8,\"dt_rank\":2,\"d_conv\":4,\"mlp\":64},"
                              "{\"d_inner\":48,\"d_state\":6,\"dt_rank\":2,\"d_conv\":3,\"mlp\":0}]}", 0, NULL);
    spec_shape sh;
    ck_assert_int_eq(spec_shape_from_info(info, &sh), 0);
    ck_assert_int_eq(sh.n_layers, 2);
    ck_assert_int_eq(spec_shape_units(&sh, PC_OUT_PROJ, 1), 32);
    ck_assert_int_eq(spec_shape_units(&sh, PC_GATE, 1), 48);
    ck_assert_int_eq(spec_shape_units(&sh, PC_CONV1D, 1), 3);
    ck_assert(spec_shape_has(&sh, PC_MLP, 0) && !spec_shape_has(&sh, PC_MLP, 1));
    ck_assert(spec_shape_has(&sh, PC_A_LOG, 1) && !spec_shape_has(&sh, PC_GATE, 2));
    json_decref(info);
    info = json_loads("{\"config\":{\"d_model\":32},\"layers\":[{\"d_inner\":64}]}", 0, NULL);
    ck_assert_int_eq(spec_shape_from_info(info, &sh), -1);
    ck_assert_int_eq(sh.n_layers, 0);
    json_decref(info);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("spec_parse");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_every_error_names_its_field);
    tcase_add_test(tc, test_render_round_trips);
    tcase_add_test(tc, test_cell_lm_keys);
    tcase_add_test(tc, test_shape_from_inspect_json);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
