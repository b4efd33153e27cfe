/* test_jobspec.c — job body validation and expansion (server/jobspec.c).
 *
 * Checks cell counts and order for each job type, the contents of the produced cell specs
 * (model name kept, dataset defaulted from the model, aliases kept), and that every bad input
 * is refused with the expected code and field path. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cell_memory.h"
#include "jobspec.h"
#include "vocab.h"

/* A component name or alias -> its index in the vocabulary, or -1. */
static int comp_parse(const char *s)
{
    prune_component c;
    return prune_component_parse(s, &c) == 0 ? (int)c : -1;
}

static jobspec_limits LIM = {"fashion-mnist", 4, 10000, NULL};

/* Expand text; returns 0/-1 and fills js / e. */
static int expand(const char *text, jobspec *js, jobspec_error *e)
{
    json_error_t je;
    json_t *body = json_loads(text, 0, &je);
    ck_assert_msg(body != NULL, "test body does not parse: %s", je.text);
    int rc = jobspec_expand(body, &LIM, js, e);
    json_decref(body);
    return rc;
}

/* The body must be refused under lim with code and field (the message starting with the field). */
static void refused_in(const jobspec_limits *lim, const char *text, const char *code, const char *field)
{
    json_t *body = json_loads(text, 0, NULL);
    ck_assert_msg(body != NULL, "test body does not parse: %s", text);
    jobspec js;
    jobspec_error e;
    ck_assert_msg(jobspec_expand(body, lim, &js, &e) == -1, "accepted: %s", text);
    json_decref(body);
    ck_assert_msg(strcmp(e.code, code) == 0 && strcmp(e.field, field) == 0, "%s -> %s %s (%s), want %s %s", text,
                  e.code, e.field, e.message, code, field);
    ck_assert_msg(strncmp(e.message, field, strlen(field)) == 0, "message '%s' does not start with '%s'", e.message,
                  field);
}

/* The body must be refused with code and field. */
static void refused(const char *text, const char *code, const char *field) { refused_in(&LIM, text, code, field); }

/* A refused body: its error code and field. */
typedef struct {
    const char *body, *code, *field;
} refusal;

/* The inspect JSON of a two-layer model (d_model 32, d_state 8) whose layer 1 has an MLP of width
 * mlp1 (64, or 0 for none). */
#define LAYER_INFO(mlp) "{\"d_inner\":64,\"d_state\":8,\"dt_rank\":2,\"d_conv\":4,\"mlp\":" #mlp "}"
#define TWO_LAYER_INFO(mlp1) \
    "{\"config\":{\"d_model\":32,\"n_layers\":2},\"layers\":[" LAYER_INFO(64) "," LAYER_INFO(mlp1) "]}"

/* Every body of t[0..n-1] must be refused with its code and field, against the model info. */
static void refused_all(const refusal *t, size_t n, const char *info)
{
    jobspec_limits lim = {"synthetic", 2, 0, info};
    for (size_t i = 0; i < n; i++) refused_in(&lim, t[i].body, t[i].code, t[i].field);
}

static json_t *cell(const jobspec *js, size_t i)
{
    ck_assert_uint_lt(i, js->n_cells);
    json_t *c = json_loads(js->cells[i], 0, NULL);
    ck_assert_ptr_nonnull(c);
    return c;
}

START_TEST(test_notes_ablation_24_cells)
{
    jobspec js;
    jobspec_error e;
    int rc = expand("{\"type\": \"ablation\", \"model\": \"fm-small\", \"components\": [\"linear_out\", \"mlp\", "
                    "\"linear_gate\", \"linear_in\", \"conv1d\", \"linear_B_C\"], \"rates\": [0.3, 0.5, 0.7, 0.9]}",
                    &js, &e);
    ck_assert_msg(rc == 0, "%s", e.message);
    ck_assert_uint_eq(js.n_cells, 24);
    ck_assert_int_eq(js.type, STORE_JOB_ABLATION);
    ck_assert_str_eq(js.model, "fm-small");
    /* component-major order: cell 5 = mlp at rate 0.5 */
    json_t *c = cell(&js, 5);
    ck_assert_str_eq(json_string_value(json_object_get(c, "recipe")), "ablation");
    ck_assert_str_eq(json_string_value(json_object_get(c, "model")), "fm-small");
    ck_assert_str_eq(json_string_value(json_object_get(c, "dataset")), "fashion-mnist");
    ck_assert_str_eq(json_string_value(json_object_get(c, "component")), "mlp");
    ck_assert_double_eq_tol(json_number_value(json_object_get(c, "rate")), 0.5, 1e-12);
    ck_assert_int_eq(json_integer_value(json_object_get(c, "seed")), 1);
    json_decref(c);
    c = cell(&js, 23);
    ck_assert_str_eq(json_string_value(json_object_get(c, "component")), "linear_B_C");
    ck_assert_double_eq_tol(json_number_value(json_object_get(c, "rate")), 0.9, 1e-12);
    json_decref(c);
    ck_assert_ptr_nonnull(strstr(js.spec_json, "\"type\":\"ablation\""));
    jobspec_free(&js);
}
END_TEST

START_TEST(test_ablation_seeds_and_options)
{
    jobspec js;
    jobspec_error e;
    int rc = expand("{\"type\":\"ablation\",\"model\":\"m\",\"dataset\":\"synthetic:n=256,classes=4\","
                    "\"components\":[\"out_proj\",\"dt\"],\"rates\":[0,0.5,0.99],\"seeds\":[1,2,3,4],"
                    "\"granularity\":\"structured\",\"criterion\":\"l2\",\"apply\":\"mask\","
                    "\"finetune\":{\"steps\":5,\"lr\":0.001},\"eval\":{\"split\":\"test\",\"max_samples\":64},"
                    "\"priority\":3}",
                    &js, &e);
    ck_assert_msg(rc == 0, "%s", e.message);
    ck_assert_uint_eq(js.n_cells, 2 * 3 * 4);
    ck_assert_int_eq(js.priority, 3);
    json_t *c = cell(&js, 4 + 1); /* out_proj, rate 0.5, seed 2 */
    ck_assert_int_eq(json_integer_value(json_object_get(c, "seed")), 2);
    ck_assert_double_eq_tol(json_number_value(json_object_get(c, "rate")), 0.5, 1e-12);
    ck_assert_str_eq(json_string_value(json_object_get(c, "dataset")), "synthetic:n=256,classes=4");
    ck_assert_str_eq(json_string_value(json_object_get(c, "apply")), "mask");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(c, "finetune"), "steps")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(c, "eval"), "max_samples")), 64);
    json_decref(c);
    jobspec_free(&js);
}
END_TEST

START_TEST(test_aliases_accepted)
{
    const char *names[] = {"linear_out", "mlp", "linear_gate", "linear_in", "conv1d", "linear_B_C",
                           "linear_delta", "A", "D", "layer", "out_proj", "gate", "in_proj", "x_proj_bc",
                           "dt", "A_log"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ck_assert_int_ge(comp_parse(names[i]), 0);
        char body[256];
        snprintf(body, sizeof body, "{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"%s\"],\"rates\":[0.5]}",
                 names[i]);
        jobspec js;
        jobspec_error e;
        ck_assert_msg(expand(body, &js, &e) == 0, "%s: %s", names[i], e.message);
        ck_assert_uint_eq(js.n_cells, 1);
        jobspec_free(&js);
    }
    ck_assert_int_eq(comp_parse("linear_B_C"), comp_parse("x_proj_bc"));
    ck_assert_int_eq(comp_parse("A"), comp_parse("A_log"));
    ck_assert_int_eq(comp_parse("Linear_out"), -1);
    ck_assert_str_eq(prune_component_alias(comp_parse("dt")), "linear_delta");
}
END_TEST

START_TEST(test_sensitivity_and_all_layers)
{
    jobspec js;
    jobspec_error e;
    ck_assert(expand("{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":[0,3],\"components\":[\"mlp\","
                     "\"linear_in\",\"conv1d\"],\"rate\":0.5}",
                     &js, &e) == 0);
    ck_assert_uint_eq(js.n_cells, 6);
    json_t *c = cell(&js, 4); /* layer 3, linear_in */
    ck_assert_int_eq(json_integer_value(json_object_get(c, "layer")), 3);
    ck_assert_str_eq(json_string_value(json_object_get(c, "components")), "linear_in");
    ck_assert_str_eq(json_string_value(json_object_get(c, "recipe")), "sensitivity");
    json_decref(c);
    jobspec_free(&js);
    ck_assert(expand("{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":\"all\",\"components\":[\"mlp\"],"
                     "\"rate\":0.3}",
                     &js, &e) == 0);
    ck_assert_uint_eq(js.n_cells, 4); /* LIM.model_layers */
    c = cell(&js, 3);
    ck_assert_int_eq(json_integer_value(json_object_get(c, "layer")), 3);
    json_decref(c);
    jobspec_free(&js);
    /* unknown layer count: "all" refused */
    jobspec_limits unknown = {"mnist", 0, 0, NULL};
    json_t *b = json_loads("{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":\"all\",\"components\":[\"mlp\"],"
                           "\"rate\":0.3}", 0, NULL);
    ck_assert_int_eq(jobspec_expand(b, &unknown, &js, &e), -1);
    ck_assert_str_eq(e.field, "layers");
    json_decref(b);
    refused("{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":[0,4],\"components\":[\"mlp\"],\"rate\":0.3}",
            "invalid_value", "layers[1]");
    refused("{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":[0],\"components\":[\"mlp\"]}", "missing_field",
            "rate");
}
END_TEST

START_TEST(test_joint_train_rsst_lite)
{
    jobspec js;
    jobspec_error e;
    ck_assert(expand("{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"mlp\":0.5,\"linear_out\":0.3},"
                     "{\"conv1d\":0.25}]}",
                     &js, &e) == 0);
    ck_assert_uint_eq(js.n_cells, 2);
    json_t *c = cell(&js, 0);
    ck_assert_double_eq_tol(json_number_value(json_object_get(json_object_get(c, "config"), "linear_out")), 0.3,
                            1e-12);
    json_decref(c);
    jobspec_free(&js);

    ck_assert_msg(expand("{\"type\":\"train\",\"name\":\"tiny-1\",\"dataset\":\"synthetic:n=256,classes=4\","
                         "\"preset\":\"tiny\",\"epochs\":2,\"dims\":{\"layers\":3},\"lr\":0.002}",
                         &js, &e) == 0, "%s", e.message);
    ck_assert_uint_eq(js.n_cells, 1);
    ck_assert_ptr_null(js.model);
    ck_assert_str_eq(js.out, "tiny-1");
    c = cell(&js, 0);
    ck_assert_str_eq(json_string_value(json_object_get(c, "recipe")), "train");
    ck_assert_str_eq(json_string_value(json_object_get(c, "out")), "tiny-1");
    ck_assert_str_eq(json_string_value(json_object_get(c, "preset")), "tiny");
    ck_assert_int_eq(json_integer_value(json_object_get(c, "layers")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(c, "epochs")), 2);
    ck_assert_ptr_null(json_object_get(c, "model"));
    ck_assert_ptr_null(json_object_get(c, "dims"));
    json_decref(c);
    jobspec_free(&js);

    ck_assert(expand("{\"type\":\"rsst\",\"model\":\"m\",\"spec\":{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5}],"
                     "\"rounds\":2}}", &js, &e) == 0);
    ck_assert_uint_eq(js.n_cells, 1);
    c = cell(&js, 0);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(c, "rsst"), "rounds")), 2);
    json_decref(c);
    jobspec_free(&js);
    ck_assert(expand("{\"type\":\"lite\",\"model\":\"m\",\"spec\":{\"target\":{\"d_state\":4}}}", &js, &e) == 0);
    c = cell(&js, 0);
    ck_assert(json_is_object(json_object_get(c, "lite")));
    json_decref(c);
    jobspec_free(&js);
}
END_TEST

/* An rsst / lite job is refused for whatever its cell would be refused for, with the field under
 * "spec" (the same parser as the engine's). */
START_TEST(test_sub_spec_errors_name_the_field)
{
    static const refusal t[] = {
        {"{\"type\":\"rsst\",\"model\":\"m\",\"spec\":{\"rounds\":2}}", "missing_field", "spec.prune"},
        {"{\"type\":\"rsst\",\"model\":\"m\",\"spec\":{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5}],\"round\":2}}",
         "unknown_field", "spec.round"},
        {"{\"type\":\"rsst\",\"model\":\"m\",\"spec\":{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5},"
         "{\"component\":\"gate\",\"rate\":1.5}]}}", "invalid_value", "spec.prune[1].rate"},
        {"{\"type\":\"rsst\",\"model\":\"m\",\"spec\":{\"prune\":[{\"component\":\"linear_q\",\"rate\":0.5}]}}",
         "unknown_component", "spec.prune[0].component"},
        {"{\"type\":\"rsst\",\"model\":\"m\",\"spec\":{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5}],"
         "\"rsst\":{\"power\":-1}}}", "invalid_value", "spec.rsst.power"},
        {"{\"type\":\"rsst\",\"model\":\"m\",\"spec\":{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5,"
         "\"layers\":[7]}]}}", "invalid_value", "spec.prune[0].layers[0]"},
        {"{\"type\":\"lite\",\"model\":\"m\",\"spec\":{}}", "missing_field", "spec.target"},
        {"{\"type\":\"lite\",\"model\":\"m\",\"spec\":{\"target\":{\"width\":2}}}", "unknown_field",
         "spec.target.width"},
        {"{\"type\":\"lite\",\"model\":\"m\",\"spec\":{\"target\":{\"d_state\":64}}}", "invalid_value",
         "spec.target.d_state"},
        {"{\"type\":\"lite\",\"model\":\"m\",\"spec\":{\"target\":{\"n_layers\":2},\"criterion\":\"l1\"}}",
         "invalid_value", "spec.criterion"},
        {"{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\"],\"rates\":[0.5],"
         "\"calibration\":{\"samples\":5000000}}", "invalid_value", "calibration.samples"},
    };
    refused_all(t, sizeof t / sizeof t[0], TWO_LAYER_INFO(64));
}
END_TEST

START_TEST(test_bad_inputs_name_the_field)
{
    const char *abl = "{\"type\":\"ablation\",\"model\":\"m\",";
    char b[512];
#define ABL(rest) (snprintf(b, sizeof b, "%s%s", abl, rest), b)
    refused(ABL("\"components\":[\"mlp\"],\"rates\":[0.3,0.5,1.5]}"), "invalid_value", "rates[2]");
    refused(ABL("\"components\":[\"mlp\"],\"rates\":[0.3,1]}"), "invalid_value", "rates[1]");
    refused(ABL("\"components\":[\"mlp\"],\"rates\":[-0.1]}"), "invalid_value", "rates[0]");
    refused(ABL("\"components\":[\"mlp\"],\"rates\":[\"0.5\"]}"), "invalid_value", "rates[0]");
    refused(ABL("\"components\":[\"mlp\",\"linear_x\"],\"rates\":[0.5]}"), "unknown_component", "components[1]");
    refused(ABL("\"components\":[],\"rates\":[0.5]}"), "empty_grid", "components");
    refused(ABL("\"components\":[\"mlp\"],\"rates\":[]}"), "empty_grid", "rates");
    refused(ABL("\"components\":[\"mlp\"]}"), "missing_field", "rates");
    refused(ABL("\"components\":[\"mlp\"],\"rates\":[0.5],\"rate_s\":1}"), "unknown_field", "rate_s");
    refused(ABL("\"components\":[\"mlp\"],\"rates\":[0.5],\"finetune\":{\"stepz\":1}}"), "unknown_field",
            "finetune.stepz");
    refused(ABL("\"components\":[\"mlp\"],\"rates\":[0.5],\"criterion\":\"biggest\"}"), "invalid_value",
            "criterion");
    refused(ABL("\"components\":[\"A\"],\"rates\":[0.5],\"granularity\":\"structured\"}"), "invalid_value",
            "components[0]");
    refused(ABL("\"components\":[\"mlp\"],\"rates\":[0.5],\"seeds\":[1,-2]}"), "invalid_value", "seeds[1]");
    refused(ABL("\"components\":[\"mlp\"],\"rates\":[0.5],\"eval\":{\"split\":\"val\"}}"), "invalid_value",
            "eval.split");
    refused(ABL("\"components\":[\"mlp\"],\"rates\":[0.5],\"priority\":1.5}"), "invalid_value", "priority");
#undef ABL
    refused("{\"type\":\"ablation\",\"model\":\"../etc/passwd\",\"components\":[\"mlp\"],\"rates\":[0.5]}",
            "invalid_value", "model");
    refused("{\"type\":\"ablation\",\"components\":[\"mlp\"],\"rates\":[0.5]}", "missing_field", "model");
    refused("{\"type\":\"prune\",\"model\":\"m\"}", "invalid_value", "type");
    refused("{\"model\":\"m\"}", "missing_field", "type");
    refused("{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"mlp\":0.5},{\"mlp\":2}]}", "invalid_value",
            "configs[1].mlp");
    refused("{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"mlp\":0.5},{}]}", "empty_grid", "configs[1]");
    refused("{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"mlp\":0.5,\"bogus\":0.1}]}", "unknown_component",
            "configs[0].bogus");
    refused("{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"out_proj\":0.5,\"linear_out\":0.1}]}",
            "invalid_value", "configs[0].linear_out");
    refused("{\"type\":\"train\",\"dataset\":\"mnist\"}", "missing_field", "name");
    refused("{\"type\":\"train\",\"name\":\"..\",\"dataset\":\"mnist\"}", "invalid_value", "name");
    refused("{\"type\":\"train\",\"name\":\"x\"}", "missing_field", "dataset");
    refused("{\"type\":\"train\",\"name\":\"x\",\"dataset\":\"../../etc\"}", "invalid_value", "dataset");
    refused("{\"type\":\"train\",\"name\":\"x\",\"dataset\":\"mnist\",\"preset\":\"huge\"}", "invalid_value",
            "preset");
    refused("{\"type\":\"train\",\"name\":\"x\",\"dataset\":\"mnist\",\"dims\":{\"layers\":0}}", "invalid_value",
            "dims.layers");
    refused("{\"type\":\"train\",\"name\":\"x\",\"dataset\":\"mnist\",\"rates\":[0.5]}", "unknown_field", "rates");
    refused("{\"type\":\"rsst\",\"model\":\"m\"}", "missing_field", "spec");
}
END_TEST

/* Every cell field is checked by the cell parser; a refusal names the value by its path in the
 * job body: the grid element that produced the cell, "dims." for a train dim given in dims, and
 * the shared objects (eval, calibration, finetune) as they are. */
START_TEST(test_cell_errors_name_the_job_path)
{
    static const refusal t[] = {
        /* ablation: components x rates x seeds */
        {"{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\"],\"rates\":[0.3,0.5,1.5]}", "invalid_value",
         "rates[2]"},
        {"{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\",\"gate\"],\"rates\":[0.5,-1],\"seeds\":[1,2]}",
         "invalid_value", "rates[1]"},
        {"{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\",3],\"rates\":[0.5]}", "invalid_value",
         "components[1]"},
        {"{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\",\"D\"],\"rates\":[0.5],"
         "\"granularity\":\"structured\"}", "invalid_value", "components[1]"},
        {"{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\"],\"rates\":[0.5],\"seeds\":[1,2,\"3\"]}",
         "invalid_value", "seeds[2]"},
        /* sensitivity: layers x components (layer 1 of the model has no MLP) */
        {"{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":[0,2],\"components\":[\"mlp\"],\"rate\":0.5}",
         "invalid_value", "layers[1]"},
        {"{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":[0,-1],\"components\":[\"mlp\"],\"rate\":0.5}",
         "invalid_value", "layers[1]"},
        {"{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":[0,\"1\"],\"components\":[\"mlp\"],\"rate\":0.5}",
         "invalid_value", "layers[1]"},
        {"{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":[1],\"components\":[\"gate\",\"mlp\"],\"rate\":0.5}",
         "invalid_value", "components[1]"},
        {"{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":\"all\",\"components\":[\"mlp\",\"zz\"],\"rate\":0.5}",
         "unknown_component", "components[1]"},
        {"{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":[0],\"components\":[\"mlp\",[\"gate\"]],\"rate\":0.5}",
         "invalid_value", "components[1]"},
        {"{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":[0],\"components\":[\"mlp\"],\"rate\":1.5}",
         "invalid_value", "rate"},
        /* joint: one cell per config */
        {"{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"mlp\":0.5},{\"gate\":0.2,\"mlp\":1.5}]}", "invalid_value",
         "configs[1].mlp"},
        {"{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"mlp\":0.5},7]}", "invalid_value", "configs[1]"},
        {"{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"mlp\":0.5},{\"zz\":0.1}]}", "unknown_component",
         "configs[1].zz"},
        {"{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"mlp\":0.5},{\"D\":0.5}],\"granularity\":\"structured\"}",
         "invalid_value", "configs[1].D"},
        /* train: dims at the top level or in "dims" */
        {"{\"type\":\"train\",\"name\":\"x\",\"dataset\":\"mnist\",\"dims\":{\"d_state\":0}}", "invalid_value",
         "dims.d_state"},
        {"{\"type\":\"train\",\"name\":\"x\",\"dataset\":\"mnist\",\"d_state\":0}", "invalid_value", "d_state"},
        {"{\"type\":\"train\",\"name\":\"x\",\"model\":\"m\",\"dataset\":\"mnist\",\"dims\":{\"layers\":2}}",
         "invalid_value", "dims.layers"},
        {"{\"type\":\"train\",\"name\":\"x\",\"dataset\":\"mnist\",\"dims\":{\"width\":2}}", "unknown_field",
         "dims.width"},
        {"{\"type\":\"train\",\"name\":\"x\",\"dataset\":\"mnist\",\"momentum\":1}", "invalid_value", "momentum"},
        /* the shared objects and fields, in every type */
        {"{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\"],\"rates\":[0.5],\"finetune\":{\"lr\":0}}",
         "invalid_value", "finetune.lr"},
        {"{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\"],\"rates\":[0.5],\"finetune\":5}",
         "invalid_value", "finetune"},
        {"{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":[0],\"components\":[\"mlp\"],\"rate\":0.5,"
         "\"finetune\":{\"steps\":-1}}", "invalid_value", "finetune.steps"},
        {"{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"mlp\":0.5}],\"finetune\":{\"batch\":0}}", "invalid_value",
         "finetune.batch"},
        {"{\"type\":\"rsst\",\"model\":\"m\",\"spec\":{\"prune\":[{\"component\":\"mlp\",\"rate\":0.5}]},"
         "\"finetune\":{\"stepz\":1}}", "unknown_field", "finetune.stepz"},
        {"{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\"],\"rates\":[0.5],\"eval\":{\"max_samples\":0}}",
         "invalid_value", "eval.max_samples"},
        {"{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":[0],\"components\":[\"mlp\"],\"rate\":0.5,"
         "\"eval\":{\"splits\":\"test\"}}", "unknown_field", "eval.splits"},
        {"{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"mlp\":0.5}],\"eval\":{\"split\":\"val\"}}", "invalid_value",
         "eval.split"},
        {"{\"type\":\"lite\",\"model\":\"m\",\"spec\":{\"target\":{\"d_state\":4}},\"eval\":[]}", "invalid_value", "eval"},
        {"{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\"],\"rates\":[0.5],\"calibration\":{\"samples\":0}}",
         "invalid_value", "calibration.samples"},
        {"{\"type\":\"lite\",\"model\":\"m\",\"spec\":{\"target\":{\"d_state\":4}},\"calibration\":{\"sample\":8}}",
         "unknown_field", "calibration.sample"},
        {"{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"mlp\":0.5}],\"seed\":-1}", "invalid_value", "seed"},
        {"{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\"],\"rates\":[0.5],\"scope\":\"global\","
         "\"granularity\":\"structured\"}", "invalid_value", "scope"},
        {"{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\"],\"rates\":[0.5],\"priority\":5000}",
         "invalid_value", "priority"},
    };
    refused_all(t, sizeof t / sizeof t[0], TWO_LAYER_INFO(0)); /* layer 1 without an MLP */
}
END_TEST

START_TEST(test_grid_cap)
{
    /* 10 components x 1000 rates = 10,000 cells: accepted; one more rate: refused. */
    size_t cap = 64 * 1024;
    char *b = malloc(cap);
    size_t n = (size_t)snprintf(b, cap, "{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"out_proj\","
                                         "\"mlp\",\"gate\",\"in_proj\",\"conv1d\",\"x_proj_bc\",\"dt\",\"A\",\"D\","
                                         "\"layer\"],\"rates\":[");
    for (int i = 0; i < 1000; i++) n += (size_t)snprintf(b + n, cap - n, "%s%.6f", i ? "," : "", i / 1001.0);
    size_t mark = n;
    snprintf(b + n, cap - n, "]}");
    jobspec js;
    jobspec_error e;
    ck_assert_msg(expand(b, &js, &e) == 0, "%s", e.message);
    ck_assert_uint_eq(js.n_cells, 10000);
    jobspec_free(&js);
    snprintf(b + mark, cap - mark, ",0.9995]}");
    ck_assert_int_eq(expand(b, &js, &e), -1);
    ck_assert_str_eq(e.code, "grid_too_large");
    ck_assert_str_eq(e.field, "rates");
    free(b);
    /* sensitivity cap via a small limit */
    jobspec_limits small = {"mnist", 8, 5, NULL};
    json_t *body = json_loads("{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":\"all\",\"components\":[\"mlp\"],"
                              "\"rate\":0.3}", 0, NULL);
    ck_assert_int_eq(jobspec_expand(body, &small, &js, &e), -1);
    ck_assert_str_eq(e.code, "grid_too_large");
    json_decref(body);
}
END_TEST

START_TEST(test_info_layers)
{
    ck_assert_int_eq(jobspec_info_layers("{\"config\":{\"n_layers\":6}}"), 6);
    ck_assert_int_eq(jobspec_info_layers("{\"layers\":[{},{},{}]}"), 3);
    ck_assert_int_eq(jobspec_info_layers("{\"n_layers\":2}"), 2);
    ck_assert_int_eq(jobspec_info_layers("not json"), 0);
    ck_assert_int_eq(jobspec_info_layers(NULL), 0);
}
END_TEST

START_TEST(test_memory_cap)
{
    /* a train job whose cell would need tens of GiB is refused, naming the field that drives it */
    const char *huge = "{\"type\":\"train\",\"name\":\"huge\",\"dataset\":\"fashion-mnist\","
                       "\"dims\":{\"d_model\":4096,\"layers\":8}}";
    refused(huge, "too_large", "dims.d_model");
    refused("{\"type\":\"train\",\"name\":\"wide\",\"dataset\":\"fashion-mnist\",\"d_model\":4096}", "too_large",
            "d_model");
    refused("{\"type\":\"train\",\"name\":\"big\",\"dataset\":\"fashion-mnist\",\"preset\":\"base\",\"batch\":65536}",
            "too_large", "batch");
    jobspec js;
    jobspec_error e;
    ck_assert_int_eq(expand(huge, &js, &e), -1);
    ck_assert_msg(strstr(e.message, "above max_cell_memory 4096 MiB"), "%s", e.message);
    /* the presets at their default batch fit the default cap */
    const char *ok = "{\"type\":\"train\",\"name\":\"b\",\"dataset\":\"fashion-mnist\",\"preset\":\"base\"}";
    ck_assert_int_eq(expand(ok, &js, &e), 0);
    jobspec_free(&js);
    /* a configured cap binds */
    jobspec_limits small = LIM;
    small.max_cell_memory = (size_t)64 << 20;
    refused_in(&small, ok, "too_large", "batch"); /* activations of the batch dominate */
    /* a pruning cell is estimated from the model's dims and its fine-tuning batch */
    jobspec_limits lim = {"synthetic", 2, 0,
                          "{\"config\":{\"d_model\":32,\"n_layers\":2},\"layers\":[" LAYER_INFO(64) "," LAYER_INFO(64) "]}",
                          (size_t)64 << 20, 1};
    refused_in(&lim, "{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"mlp\"],\"rates\":[0.5],"
                     "\"finetune\":{\"steps\":1,\"batch\":60000}}",
               "too_large", "finetune.batch");
}
END_TEST

/* A two-layer causal LM (d_model 32, no MLP) of vocabulary 64, tied or not, as prunelab inspect
 * describes it. */
#define LM_INFO(tied) \
    "{\"config\":{\"task\":\"causal_lm\",\"d_model\":32,\"n_layers\":2,\"vocab\":64,\"tied\":" #tied \
    ",\"dataset\":\"\"},\"layers\":[" LAYER_INFO(0) "," LAYER_INFO(0) "]}"

START_TEST(test_lm_task_and_dataset)
{
    jobspec_task t;
    ck_assert_int_eq(jobspec_info_task(LM_INFO(false), &t), 1);
    ck_assert_int_eq(t.vocab, 64);
    ck_assert_int_eq(t.tied, 0);
    ck_assert_int_eq(jobspec_info_task(LM_INFO(true), &t), 1);
    ck_assert_int_eq(t.tied, 1);
    ck_assert_int_eq(jobspec_info_task(TWO_LAYER_INFO(64), &t), 0);
    ck_assert_int_eq(jobspec_info_task(NULL, &t), 0);

    jobspec_limits lm = {"synthetic-lm", 2, 0, LM_INFO(true), 0, 1};
    jobspec_limits img = {"synthetic", 2, 0, TWO_LAYER_INFO(64), 0, 1};
    const char *abl = "{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"in_proj\"],\"rates\":[0.5]";
    char body[512];
    /* an LM with an image dataset, an image model with a token dataset: 400 naming dataset */
    static const char *const bad_for_lm[] = {"fashion-mnist", "synthetic", "synthetic-lm:vocab=65",
                                             "synthetic-lm:vocab=x", "synthetic-lm:bogus=1", "tokens:", "text:"};
    for (size_t i = 0; i < sizeof bad_for_lm / sizeof bad_for_lm[0]; i++) {
        snprintf(body, sizeof body, "%s,\"dataset\":\"%s\"}", abl, bad_for_lm[i]);
        refused_in(&lm, body, "invalid_value", "dataset");
    }
    static const char *const bad_for_image[] = {"synthetic-lm", "tokens:wt2", "text:brown.txt"};
    for (size_t i = 0; i < sizeof bad_for_image / sizeof bad_for_image[0]; i++) {
        snprintf(body, sizeof body, "%s,\"dataset\":\"%s\"}", abl, bad_for_image[i]);
        refused_in(&img, body, "invalid_value", "dataset");
    }
    /* the LM's recorded dataset is its default; an image model's recorded image dataset is not for it */
    jobspec_limits lm_img_default = {"fashion-mnist", 2, 0, LM_INFO(true), 0, 1};
    snprintf(body, sizeof body, "%s}", abl);
    refused_in(&lm_img_default, body, "invalid_value", "dataset");
    jobspec js;
    jobspec_error e;
    json_t *b = json_loads(body, 0, NULL);
    ck_assert_int_eq(jobspec_expand(b, &lm, &js, &e), 0);
    json_decref(b);
    ck_assert_str_eq(js.dataset, "synthetic-lm");
    jobspec_free(&js);
    /* text: has 256 ids, more than the model's 64 */
    snprintf(body, sizeof body, "%s,\"dataset\":\"text:brown.txt\"}", abl);
    refused_in(&lm, body, "invalid_value", "dataset");
}
END_TEST

START_TEST(test_lm_seq_len_and_max_tokens)
{
    jobspec_limits lm = {"synthetic-lm", 2, 0, LM_INFO(true), 0, 1};
    jobspec_limits img = {"synthetic", 2, 0, TWO_LAYER_INFO(64), 0, 1};
    /* every LM job type takes seq_len and eval.max_tokens and passes them to each cell */
    static const char *const ok[] = {
        "{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"in_proj\",\"dt\"],\"rates\":[0.5],"
        "\"dataset\":\"tokens:wt2\",\"seq_len\":128,\"eval\":{\"max_tokens\":4096}}",
        "{\"type\":\"sensitivity\",\"model\":\"m\",\"layers\":\"all\",\"components\":[\"in_proj\"],"
        "\"rate\":0.5,\"seq_len\":128,\"eval\":{\"max_tokens\":4096}}",
        "{\"type\":\"joint\",\"model\":\"m\",\"configs\":[{\"in_proj\":0.5}],\"seq_len\":128,"
        "\"eval\":{\"max_tokens\":4096,\"split\":\"test\"}}",
        "{\"type\":\"rsst\",\"model\":\"m\",\"spec\":{\"prune\":[{\"component\":\"in_proj\",\"rate\":0.5}]},"
        "\"seq_len\":128,\"eval\":{\"max_tokens\":4096}}",
        "{\"type\":\"lite\",\"model\":\"m\",\"spec\":{\"target\":{\"d_state\":4}},\"seq_len\":128,"
        "\"eval\":{\"max_tokens\":4096}}",
        "{\"type\":\"train\",\"name\":\"lm2\",\"model\":\"m\",\"seq_len\":128,\"eval\":{\"max_tokens\":4096}}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        json_t *b = json_loads(ok[i], 0, NULL);
        ck_assert_ptr_nonnull(b);
        jobspec js;
        jobspec_error e;
        ck_assert_msg(jobspec_expand(b, &lm, &js, &e) == 0, "%s: %s", ok[i], e.message);
        json_decref(b);
        ck_assert_uint_ge(js.n_cells, 1);
        for (size_t k = 0; k < js.n_cells; k++) {
            json_t *c = cell(&js, k);
            ck_assert_int_eq(json_integer_value(json_object_get(c, "seq_len")), 128);
            ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(c, "eval"), "max_tokens")), 4096);
            json_decref(c);
        }
        jobspec_free(&js);
    }
    const char *abl = "{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"in_proj\"],\"rates\":[0.5]";
    char body[512];
    static const refusal bad[] = {
        {",\"seq_len\":1}", "invalid_value", "seq_len"},
        {",\"seq_len\":65537}", "invalid_value", "seq_len"},
        {",\"seq_len\":\"long\"}", "invalid_value", "seq_len"},
        {",\"seq_len\":12.5}", "invalid_value", "seq_len"},
        {",\"eval\":{\"max_tokens\":0}}", "invalid_value", "eval.max_tokens"},
        {",\"eval\":{\"max_tokens\":\"all\"}}", "invalid_value", "eval.max_tokens"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, "%s%s", abl, bad[i].body);
        refused_in(&lm, body, bad[i].code, bad[i].field);
    }
    /* an image job refuses both, naming them */
    snprintf(body, sizeof body, "%s,\"seq_len\":128}", abl);
    refused_in(&img, body, "invalid_value", "seq_len");
    snprintf(body, sizeof body, "%s,\"eval\":{\"max_tokens\":10}}", abl);
    refused_in(&img, body, "invalid_value", "eval.max_tokens");
    /* a train job without a model is an LM job when its dataset is a token dataset */
    json_t *b = json_loads("{\"type\":\"train\",\"name\":\"n\",\"dataset\":\"synthetic-lm\",\"seq_len\":64}", 0, NULL);
    jobspec js;
    jobspec_error e;
    ck_assert_msg(jobspec_expand(b, &LIM, &js, &e) == 0, "%s", e.message);
    json_decref(b);
    jobspec_free(&js);
    refused("{\"type\":\"train\",\"name\":\"n\",\"dataset\":\"mnist\",\"seq_len\":64}", "invalid_value", "seq_len");
}
END_TEST

START_TEST(test_lm_memory)
{
    /* V x d embeddings, a second V x d head when untied, activations of B x seq_len tokens and a
     * (128, V) logits chunk per thread */
    json_t *b = json_loads("{\"recipe\":\"ablation\",\"model\":\"m\",\"dataset\":\"tokens:x\","
                           "\"component\":\"in_proj\",\"rate\":0.5}", 0, NULL);
    cell_spec cs;
    spec_error se;
    ck_assert_int_eq(spec_cell_parse(b, &cs, &se), 0);
    json_decref(b);
    json_t *info = json_loads(LM_INFO(true), 0, NULL);
    spec_shape sh;
    ck_assert_int_eq(spec_shape_from_info(info, &sh), 0);
    json_decref(info);
    cell_memory tied, untied, longer, image, two;
    cell_memory_lm lm = {50280, 1, 256};
    cell_memory_estimate_lm(&cs, &sh, &lm, 1, &tied);
    lm.tied = 0;
    cell_memory_estimate_lm(&cs, &sh, &lm, 1, &untied);
    /* untied: V x d more parameters, 5 floats each (weights, grads, 2 moments, mask) */
    ck_assert_double_eq_tol(untied.state - tied.state, 50280.0 * 32 * 4 * 5, 1);
    lm.seq_len = 512;
    cell_memory_estimate_lm(&cs, &sh, &lm, 1, &longer);
    double chunk = 128.0 * 50280 * 4;
    /* activations scale with seq_len, the logits chunk does not */
    ck_assert_double_eq_tol(longer.activations - chunk, 2 * (untied.activations - chunk), 1);
    cell_memory_estimate_lm(&cs, &sh, &lm, 2, &two);
    ck_assert_double_eq_tol(two.activations - longer.activations, chunk, 1); /* one chunk per thread */
    cell_memory_estimate(&cs, &sh, 1, &image);
    ck_assert_double_lt(image.state, tied.state); /* no 50280 x 32 embeddings */
    cell_spec_free(&cs);
    /* a window too long for the cap is refused naming seq_len */
    jobspec_limits small = {"synthetic-lm", 2, 0, LM_INFO(true), (size_t)256 << 20, 1};
    refused_in(&small, "{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"in_proj\"],\"rates\":[0.5],"
                       "\"seq_len\":65536,\"finetune\":{\"steps\":1}}", "too_large", "seq_len");
    refused_in(&small, "{\"type\":\"ablation\",\"model\":\"m\",\"components\":[\"in_proj\"],\"rates\":[0.5],"
                       "\"seq_len\":256,\"finetune\":{\"steps\":1,\"batch\":65536}}", "too_large", "seq_len");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jobspec");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_notes_ablation_24_cells);
    tcase_add_test(tc, test_ablation_seeds_and_options);
    tcase_add_test(tc, test_aliases_accepted);
    tcase_add_test(tc, test_sensitivity_and_all_layers);
    tcase_add_test(tc, test_joint_train_rsst_lite);
    tcase_add_test(tc, test_bad_inputs_name_the_field);
    tcase_add_test(tc, test_sub_spec_errors_name_the_field);
    tcase_add_test(tc, test_cell_errors_name_the_job_path);
    tcase_add_test(tc, test_grid_cap);
    tcase_add_test(tc, test_info_layers);
    tcase_add_test(tc, test_memory_cap);
    tcase_add_test(tc, test_lm_task_and_dataset);
    tcase_add_test(tc, test_lm_seq_len_and_max_tokens);
    tcase_add_test(tc, test_lm_memory);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
