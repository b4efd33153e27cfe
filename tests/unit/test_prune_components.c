/* test_prune_components.c — the component table of prune.h and the spec parser.
 *
 * Components: names and aliases parse both ways, flags and units, criteria names; each
 * component's slices cover exactly the rows prune.h describes (checked by marking the floats
 * and comparing with ranges computed from the model's named views, not from tensor names); the
 * seven matrix components tile the layer component's slices; ownership partitions every block;
 * unit counts; the model-type check accepts our model and rejects a renamed / reshaped tensor.
 * Specs: defaults, aliases, every refusal names its field.
 * Model: 3 layers with odd, different dims; layer 1 has no MLP. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "prune.h"
#include "util.h"

/* 1x8x12 images, P 4 -> L 6 tokens, d 6, 3 classes. */
static void small_config(model_config *c)
{
    memset(c, 0, sizeof *c);
    c->d = 6, c->n_layers = 3, c->C = 1, c->H = 8, c->W = 12, c->P = 4, c->L = 6, c->classes = 3;
    c->layers[0] = (layer_dims){.E = 7, .N = 3, .R = 2, .K = 3, .M = 5};
    c->layers[1] = (layer_dims){.E = 5, .N = 2, .R = 1, .K = 4, .M = 0};
    c->layers[2] = (layer_dims){.E = 9, .N = 4, .R = 2, .K = 2, .M = 3};
    for (int i = 0; i < 3; i++) c->orig_index[i] = i;
    snprintf(c->dataset, sizeof c->dataset, "synthetic");
    for (int i = 0; i < 3; i++) c->norm_mean[i] = 0.5f, c->norm_std[i] = 0.25f;
}

static void new_model(model *m)
{
    model_config c;
    small_config(&c);
    char err[PL_ERRLEN];
    ck_assert_msg(model_create(m, &c, 11, err, sizeof err) == 0, "%s", err);
}

/* ---------------------------------------------------------------- names */

START_TEST(test_names_and_aliases)
{
    static const struct {
        const char *name, *alias;
        prune_component c;
    } t[] = {
        {"out_proj", "linear_out", PC_OUT_PROJ}, {"mlp", "mlp", PC_MLP},
        {"gate", "linear_gate", PC_GATE},        {"in_proj", "linear_in", PC_IN_PROJ},
        {"conv1d", "conv1d", PC_CONV1D},         {"x_proj_bc", "linear_B_C", PC_X_PROJ_BC},
        {"dt", "linear_delta", PC_DT},           {"A_log", "A", PC_A_LOG},
        {"D", "D", PC_D},                        {"layer", "layer", PC_LAYER},
    };
    ck_assert_int_eq(sizeof t / sizeof t[0], PC_COUNT);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        prune_component c = PC_COUNT;
        ck_assert_int_eq(prune_component_parse(t[i].name, &c), 0);
        ck_assert_int_eq(c, t[i].c);
        c = PC_COUNT;
        ck_assert_int_eq(prune_component_parse(t[i].alias, &c), 0);
        ck_assert_int_eq(c, t[i].c);
        ck_assert_str_eq(prune_component_name(t[i].c), t[i].name);
        ck_assert_str_eq(prune_component_alias(t[i].c), t[i].alias);
        int nr = t[i].c == PC_A_LOG || t[i].c == PC_D;
        ck_assert_int_eq(prune_component_not_recommended(t[i].c), nr);
        ck_assert_int_eq(prune_component_unit(t[i].c) == NULL, nr);
    }
    prune_component c;
    ck_assert_int_eq(prune_component_parse("linear_C", &c), -1);
    ck_assert_int_eq(prune_component_parse("OUT_PROJ", &c), -1);
    ck_assert_int_eq(prune_component_parse("", &c), -1);
    ck_assert_int_eq(prune_component_parse(NULL, &c), -1);
    ck_assert_str_eq(prune_component_unit(PC_MLP), "neuron");
    ck_assert_str_eq(prune_component_unit(PC_CONV1D), "kernel tap");

    const char *crit[] = {"magnitude", "l2", "activation", "taylor", "wanda", "random"};
    for (int i = 0; i < PCR_COUNT; i++) {
        prune_criterion k = PCR_COUNT;
        ck_assert_int_eq(prune_criterion_parse(crit[i], &k), 0);
        ck_assert_int_eq(k, i);
        ck_assert_str_eq(prune_criterion_name(k), crit[i]);
    }
    prune_criterion k;
    ck_assert_int_eq(prune_criterion_parse("l1", &k), -1);
}
END_TEST

/* ---------------------------------------------------------------- slices */

/* Mark (+1) every float of the slices in mark (n_params). Returns the float count. */
static size_t mark_slices(const model *m, const prune_slice *s, int n, int *mark)
{
    size_t total = 0;
    for (int k = 0; k < n; k++) {
        ck_assert_int_ge(s[k].tensor, 0);
        ck_assert_int_lt(s[k].tensor, m->n_tensors);
        ck_assert_uint_le(s[k].start + s[k].count, m->info[s[k].tensor].numel);
        for (size_t i = 0; i < s[k].count; i++) mark[m->info[s[k].tensor].offset + s[k].start + i]++;
        total += s[k].count;
    }
    return total;
}

/* Expected ranges from the views: [p, p + n) of the params block. */
typedef struct {
    const float *p;
    size_t n;
} range;

static int expected(const model *m, prune_component c, int li, range *r)
{
    const layer_params *w = &m->w.layers[li];
    const layer_dims *ld = &m->cfg.layers[li];
    size_t d = (size_t)m->cfg.d, E = (size_t)ld->E, N = (size_t)ld->N, R = (size_t)ld->R, K = (size_t)ld->K,
           M = (size_t)ld->M;
    int n = 0;
    switch (c) {
    case PC_OUT_PROJ: r[n++] = (range){w->out_proj_w, d * E}; break;
    case PC_MLP:
        if (M) r[n++] = (range){w->fc1_w, M * d}, r[n++] = (range){w->fc2_w, d * M};
        break;
    case PC_GATE: r[n++] = (range){w->in_proj_w + E * d, E * d}; break;
    case PC_IN_PROJ: r[n++] = (range){w->in_proj_w, E * d}; break;
    case PC_CONV1D: r[n++] = (range){w->conv_w, E * K}; break;
    case PC_X_PROJ_BC: r[n++] = (range){w->x_proj_w + R * E, 2 * N * E}; break;
    case PC_DT: r[n++] = (range){w->x_proj_w, R * E}, r[n++] = (range){w->dt_proj_w, E * R}; break;
    case PC_A_LOG: r[n++] = (range){w->A_log, E * N}; break;
    case PC_D: r[n++] = (range){w->D, E}; break;
    case PC_LAYER:
        r[n++] = (range){w->in_proj_w, 2 * E * d};
        r[n++] = (range){w->conv_w, E * K};
        r[n++] = (range){w->x_proj_w, (R + 2 * N) * E};
        r[n++] = (range){w->dt_proj_w, E * R};
        r[n++] = (range){w->out_proj_w, d * E};
        if (M) r[n++] = (range){w->fc1_w, M * d}, r[n++] = (range){w->fc2_w, d * M};
        break;
    default: break;
    }
    return n;
}

START_TEST(test_slices_cover_described_rows)
{
    model m;
    new_model(&m);
    int *mark = xcalloc(m.n_params, sizeof *mark), *want = xcalloc(m.n_params, sizeof *want);
    for (int li = 0; li < m.cfg.n_layers; li++)
        for (int c = 0; c < PC_COUNT; c++) {
            memset(mark, 0, m.n_params * sizeof *mark);
            memset(want, 0, m.n_params * sizeof *want);
            prune_slice s[PRUNE_MAX_SLICES];
            int ns = prune_component_slices(&m, (prune_component)c, li, s);
            mark_slices(&m, s, ns, mark);
            range r[8];
            int nr = expected(&m, (prune_component)c, li, r);
            for (int k = 0; k < nr; k++)
                for (size_t i = 0; i < r[k].n; i++) want[(size_t)(r[k].p - m.params) + i]++;
            for (size_t i = 0; i < m.n_params; i++)
                ck_assert_msg(mark[i] == want[i], "component %s layer %d: float %zu marked %d, expected %d",
                              prune_component_name(c), li, i, mark[i], want[i]);
        }
    /* the seven matrix components tile the layer component's slices exactly once */
    for (int li = 0; li < m.cfg.n_layers; li++) {
        memset(mark, 0, m.n_params * sizeof *mark);
        memset(want, 0, m.n_params * sizeof *want);
        prune_slice s[PRUNE_MAX_SLICES];
        for (int c = PC_OUT_PROJ; c <= PC_DT; c++) mark_slices(&m, s, prune_component_slices(&m, c, li, s), mark);
        mark_slices(&m, s, prune_component_slices(&m, PC_LAYER, li, s), want);
        for (size_t i = 0; i < m.n_params; i++) ck_assert_int_eq(mark[i], want[i]);
    }
    /* layer 1 has no MLP; out of range layers have nothing */
    prune_slice s[PRUNE_MAX_SLICES];
    ck_assert_int_eq(prune_component_slices(&m, PC_MLP, 1, s), 0);
    ck_assert_int_eq(prune_component_slices(&m, PC_OUT_PROJ, 3, s), 0);
    ck_assert_int_eq(prune_component_slices(&m, PC_OUT_PROJ, -1, s), 0);
    free(mark);
    free(want);
    model_free(&m);
}
END_TEST

START_TEST(test_owned_partition_blocks)
{
    model m;
    new_model(&m);
    int *mark = xcalloc(m.n_params, sizeof *mark);
    for (int li = 0; li < m.cfg.n_layers; li++) {
        memset(mark, 0, m.n_params * sizeof *mark);
        size_t sum = 0;
        for (int c = 0; c < PC_LAYER; c++) {
            prune_slice s[PRUNE_MAX_SLICES];
            int n = prune_component_owned(&m, c, li, s);
            size_t got = mark_slices(&m, s, n, mark);
            ck_assert_uint_eq(got, prune_component_params(&m, c, li));
            sum += got;
        }
        size_t layer_total = 0;
        for (int t = 0; t < m.n_tensors; t++)
            if (m.info[t].layer == li) {
                layer_total += m.info[t].numel;
                for (size_t i = 0; i < m.info[t].numel; i++)
                    ck_assert_msg(mark[m.info[t].offset + i] == 1, "%s[%zu] owned %d times", m.info[t].name, i,
                                  mark[m.info[t].offset + i]);
            }
        ck_assert_uint_eq(sum, layer_total);
        ck_assert_uint_eq(prune_component_params(&m, PC_LAYER, li), layer_total);
    }
    /* the documented owners of a few vectors */
    const layer_dims *ld = &m.cfg.layers[0];
    size_t d = (size_t)m.cfg.d, E = (size_t)ld->E, M = (size_t)ld->M;
    ck_assert_uint_eq(prune_component_params(&m, PC_MLP, 0), d + M * d + M + d * M + d);
    ck_assert_uint_eq(prune_component_params(&m, PC_IN_PROJ, 0), d + E * d);
    ck_assert_uint_eq(prune_component_params(&m, PC_CONV1D, 0), E * (size_t)ld->K + E);
    ck_assert_uint_eq(prune_component_params(&m, PC_DT, 0), (size_t)ld->R * E * 2 + E);
    ck_assert_uint_eq(prune_component_params(&m, PC_MLP, 1), 0);
    free(mark);
    model_free(&m);
}
END_TEST

START_TEST(test_units)
{
    model m;
    new_model(&m);
    for (int li = 0; li < 3; li++) {
        const layer_dims *ld = &m.cfg.layers[li];
        int want[PC_COUNT] = {m.cfg.d, ld->M, ld->E, ld->E, ld->K, ld->N, ld->R, 0, 0, 1};
        for (int c = 0; c < PC_COUNT; c++) ck_assert_int_eq(prune_component_units(&m, c, li), want[c]);
    }
    ck_assert_int_eq(prune_component_units(&m, PC_MLP, 1), 0);
    ck_assert_int_eq(prune_component_units(&m, PC_LAYER, 7), 0);
    model_free(&m);
}
END_TEST

START_TEST(test_is_mamba_model)
{
    model m;
    new_model(&m);
    ck_assert_int_eq(prune_is_mamba_model(&m), 1);
    int t = (int)(model_find(&m, "backbone.layers.2.mixer.x_proj.weight") - m.info);
    char saved[96];
    memcpy(saved, m.info[t].name, sizeof saved);
    snprintf(m.info[t].name, sizeof m.info[t].name, "backbone.layers.2.mixer.xproj.weight");
    ck_assert_int_eq(prune_is_mamba_model(&m), 0);
    memcpy(m.info[t].name, saved, sizeof saved);
    ck_assert_int_eq(prune_is_mamba_model(&m), 1);
    m.info[t].shape[0] += 1; /* x_proj rows no longer R + 2N */
    ck_assert_int_eq(prune_is_mamba_model(&m), 0);
    m.info[t].shape[0] -= 1;
    m.cfg.layers[0].M = 0; /* config says no MLP but the tensors are there */
    ck_assert_int_eq(prune_is_mamba_model(&m), 0);
    m.cfg.layers[0].M = 5;
    ck_assert_int_eq(prune_is_mamba_model(&m), 1);
    ck_assert_int_eq(prune_is_mamba_model(NULL), 0);
    model_free(&m);
}
END_TEST

/* ---------------------------------------------------------------- specs */

START_TEST(test_spec_defaults_and_aliases)
{
    model m;
    new_model(&m);
    char err[PL_ERRLEN];
    prune_spec s;
    const char *txt = "{\"prune\": [{\"component\": \"linear_out\", \"rate\": 0.7},"
                      " {\"component\": \"mlp\", \"granularity\": \"structured\", \"rate\": 0.5, \"criterion\": "
                      "\"taylor\", \"layers\": [2, 0], \"apply\": \"mask\"},"
                      " {\"component\": \"linear_B_C\", \"rate\": 0, \"scope\": \"global\"}],"
                      " \"finetune\": {\"steps\": 20, \"lr\": 0.002}, \"calibration\": {\"samples\": 64}, \"seed\": 9}";
    ck_assert_msg(prune_spec_parse(txt, &m, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(s.n, 3);
    ck_assert_int_eq(s.entries[0].component, PC_OUT_PROJ);
    ck_assert_int_eq(s.entries[0].granularity, PG_UNSTRUCTURED);
    ck_assert_int_eq(s.entries[0].criterion, PCR_MAGNITUDE);
    ck_assert_int_eq(s.entries[0].scope, PS_LAYER);
    ck_assert_int_eq(s.entries[0].n_layers, 0);
    ck_assert_float_eq_tol(s.entries[0].rate, 0.7f, 1e-7f);
    ck_assert_int_eq(s.entries[1].component, PC_MLP);
    ck_assert_int_eq(s.entries[1].granularity, PG_STRUCTURED);
    ck_assert_int_eq(s.entries[1].criterion, PCR_TAYLOR);
    ck_assert_int_eq(s.entries[1].apply, PA_MASK);
    ck_assert_int_eq(s.entries[1].n_layers, 2);
    ck_assert_int_eq(s.entries[1].layers[0], 2);
    ck_assert_int_eq(s.entries[1].layers[1], 0);
    ck_assert_int_eq(s.entries[2].component, PC_X_PROJ_BC);
    ck_assert_int_eq(s.entries[2].scope, PS_GLOBAL);
    ck_assert_int_eq(s.finetune_steps, 20);
    ck_assert_float_eq_tol(s.finetune_lr, 0.002f, 1e-9f);
    ck_assert_int_eq(s.calib_samples, 64);
    ck_assert_uint_eq(s.seed, 9);
    prune_spec_free(&s);
    prune_spec_free(&s); /* idempotent */

    ck_assert_msg(prune_spec_parse("{\"prune\": [{\"component\": \"in_proj\", \"granularity\": \"structured\", "
                                   "\"rate\": 0.25}]}", NULL, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(s.entries[0].apply, PA_SHRINK);
    ck_assert_int_eq(s.finetune_steps, 0);
    ck_assert_int_eq(s.calib_samples, 512);
    prune_spec_free(&s);
    model_free(&m);
}
END_TEST

START_TEST(test_spec_refusals)
{
    model m;
    new_model(&m);
    static const struct {
        const char *json, *msg;
    } t[] = {
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5, \"rat\": 1}]}", "prune[0].rat: unknown key \"rat\""},
        {"{\"prune\": [], \"fine_tune\": {}}", "fine_tune: unknown key \"fine_tune\""},
        {"{\"prune\": [], \"finetune\": {\"steps\": 5, \"epochs\": 1}}", "finetune.epochs: unknown key \"epochs\""},
        {"{\"prune\": [], \"calibration\": {\"n\": 5}}", "calibration.n: unknown key \"n\""},
        {"{\"prune\": [{\"component\": \"linear_C\", \"rate\": 0.5}]}", "prune[0].component: unknown component"},
        {"{\"prune\": [{\"component\": \"mlp\", \"rate\": 0.5}, {\"component\": \"gate\", \"rate\": 1.0}]}",
         "prune[1].rate: 1 is outside [0, 1)"},
        {"{\"prune\": [{\"component\": \"mlp\", \"rate\": 1.5}]}", "prune[0].rate: 1.5 is outside [0, 1)"},
        {"{\"prune\": [{\"component\": \"mlp\", \"rate\": -0.1}]}", "prune[0].rate: -0.1 is outside [0, 1)"},
        {"{\"prune\": [{\"component\": \"mlp\", \"rate\": \"nan\"}]}", "prune[0].rate: must be a number"},
        {"{\"prune\": [{\"component\": \"mlp\", \"rate\": 1e999}]}", "invalid JSON"},
        {"{\"prune\": [{\"component\": \"mlp\"}]}", "prune[0].rate: required"},
        {"{\"prune\": [{\"rate\": 0.5}]}", "prune[0].component: required"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5, \"layers\": [0, 3]}]}",
         "prune[0].layers[1]: layer 3 is out of range"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5, \"layers\": [-1]}]}",
         "prune[0].layers[0]: layer -1 is out of range"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5, \"layers\": [1, 1]}]}",
         "prune[0].layers[1]: layer 1 repeated"},
        {"{\"prune\": [{\"component\": \"out_proj\", \"rate\": 0.5, \"layers\": []}]}", "prune[0].layers: empty"},
        {"{\"prune\": [{\"component\": \"mlp\", \"rate\": 0.5, \"layers\": [1]}]}",
         "prune[0].layers[0]: layer 1 has no mlp"},
        {"{\"prune\": [{\"component\": \"A\", \"granularity\": \"structured\", \"rate\": 0.5}]}",
         "prune[0].granularity: component A_log has no structured unit"},
        {"{\"prune\": [{\"component\": \"mlp\", \"granularity\": \"blocky\", \"rate\": 0.5}]}",
         "prune[0].granularity: unknown value \"blocky\""},
        {"{\"prune\": [{\"component\": \"mlp\", \"criterion\": \"l1\", \"rate\": 0.5}]}",
         "prune[0].criterion: unknown criterion \"l1\""},
        {"{\"prune\": [{\"component\": \"mlp\", \"scope\": \"world\", \"rate\": 0.5}]}", "prune[0].scope: unknown value"},
        {"{\"prune\": [{\"component\": \"mlp\", \"granularity\": \"structured\", \"scope\": \"global\", \"rate\": 0.5}]}",
         "prune[0].scope: \"global\" applies to unstructured entries only"},
        {"{\"prune\": [{\"component\": \"mlp\", \"apply\": \"shrink\", \"rate\": 0.5}]}",
         "prune[0].apply: unstructured pruning is always applied as a mask"},
        {"{\"prune\": [{\"component\": \"mlp\", \"granularity\": \"structured\", \"rate\": 0.5},"
         " {\"component\": \"dt\", \"granularity\": \"structured\", \"apply\": \"mask\", \"rate\": 0.5}]}",
         "prune[1].apply: \"mask\" differs from prune[0]"},
        {"{\"prune\": [{\"component\": \"mlp\", \"rate\": 0.5}, {\"component\": \"mlp\", \"rate\": 0.3, \"layers\": [2]}]}",
         "prune[1]: component mlp is already pruned unstructured in the same layers by prune[0]"},
        {"{\"prune\": [{\"component\": \"mlp\", \"rate\": 0.5, \"layers\": [0]}, {\"component\": \"mlp\", \"rate\": 0.3, "
         "\"layers\": [2]}], \"finetune\": {\"steps\": -1}}", "finetune.steps: -1 is outside"},
        {"{\"prune\": [], \"finetune\": {\"steps\": 5, \"lr\": 0}}", "finetune.lr: 0 is outside"},
        {"{\"prune\": [], \"seed\": 1.5}", "seed: must be an integer"},
        {"{\"prune\": {}}", "prune: must be an array"},
        {"{}", "prune: required"},
        {"[1]", "spec: must be a JSON object"},
        {"{\"prune\": [], \"prune\": []}", "invalid JSON"},
        {"{\"prune\": [7]}", "prune[0]: must be an object"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        prune_spec s;
        char err[PL_ERRLEN] = "";
        ck_assert_msg(prune_spec_parse(t[i].json, &m, &s, err, sizeof err) == -1, "accepted: %s", t[i].json);
        ck_assert_msg(strstr(err, t[i].msg) != NULL, "spec %s: message '%s' lacks '%s'", t[i].json, err, t[i].msg);
        ck_assert_ptr_null(s.entries);
    }
    /* the same component twice in disjoint layers, or at two granularities, is fine */
    prune_spec s;
    char err[PL_ERRLEN];
    ck_assert_msg(prune_spec_parse("{\"prune\": [{\"component\": \"mlp\", \"rate\": 0.5, \"layers\": [0]},"
                                   " {\"component\": \"mlp\", \"rate\": 0.3, \"layers\": [2]},"
                                   " {\"component\": \"mlp\", \"granularity\": \"structured\", \"rate\": 0.3}]}",
                                   &m, &s, err, sizeof err) == 0, "%s", err);
    prune_spec_free(&s);
    /* without a model, layer indices are only bounded by MODEL_MAX_LAYERS */
    ck_assert_int_eq(prune_spec_parse("{\"prune\": [{\"component\": \"mlp\", \"rate\": 0.5, \"layers\": [40]}]}", NULL,
                                      &s, err, sizeof err), 0);
    prune_spec_free(&s);
    model_free(&m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("prune_components");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_names_and_aliases);
    tcase_add_test(tc, test_slices_cover_described_rows);
    tcase_add_test(tc, test_owned_partition_blocks);
    tcase_add_test(tc, test_units);
    tcase_add_test(tc, test_is_mamba_model);
    tcase_add_test(tc, test_spec_defaults_and_aliases);
    tcase_add_test(tc, test_spec_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
