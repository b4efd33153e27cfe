/* vocab.c — the name tables of vocab.h, each tied to its enum's *_COUNT, and their lookups.
 * Nothing here allocates except spec_vocabulary_json. */
#include "vocab.h"

#include <assert.h>
#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ components */

static const struct {
    const char *name, *alias, *unit, *tensors;
} COMPONENTS[] = {
    [PC_OUT_PROJ] = {"out_proj", "linear_out", "output row", "out_proj.weight"},
    [PC_MLP] = {"mlp", "mlp", "neuron", "fc1.weight, fc2.weight"},
    [PC_GATE] = {"gate", "linear_gate", "d_inner channel", "in_proj.weight rows E..2E-1"},
    [PC_IN_PROJ] = {"in_proj", "linear_in", "d_inner channel", "in_proj.weight rows 0..E-1"},
    [PC_CONV1D] = {"conv1d", "conv1d", "kernel tap", "conv1d.weight"},
    [PC_X_PROJ_BC] = {"x_proj_bc", "linear_B_C", "state", "x_proj.weight rows R..R+2N-1"},
    [PC_DT] = {"dt", "linear_delta", "dt rank", "x_proj.weight rows 0..R-1, dt_proj.weight"},
    [PC_A_LOG] = {"A_log", "A", NULL, "A_log"},
    [PC_D] = {"D", "D", NULL, "D"},
    [PC_LAYER] = {"layer", "layer", "block", "every weight matrix of the block"},
};
static_assert(N_OF(COMPONENTS) == PC_COUNT, "component table");

const char *prune_component_name(prune_component c) { return (unsigned)c < PC_COUNT ? COMPONENTS[c].name : "?"; }
const char *prune_component_alias(prune_component c) { return (unsigned)c < PC_COUNT ? COMPONENTS[c].alias : "?"; }
const char *prune_component_unit(prune_component c) { return (unsigned)c < PC_COUNT ? COMPONENTS[c].unit : NULL; }
const char *prune_component_tensors(prune_component c)
{
    return (unsigned)c < PC_COUNT ? COMPONENTS[c].tensors : "?";
}
int prune_component_not_recommended(prune_component c) { return c == PC_A_LOG || c == PC_D; }

int prune_component_parse(const char *s, prune_component *c)
{
    if (!s) return -1;
    for (int i = 0; i < PC_COUNT; i++)
        if (strcmp(s, COMPONENTS[i].name) == 0 || strcmp(s, COMPONENTS[i].alias) == 0) {
            *c = (prune_component)i;
            return 0;
        }
    return -1;
}

/* ------------------------------------------------------------------ choices */

const char *const spec_criterion_names[PCR_COUNT + 1] = {"magnitude", "l2", "activation", "taylor", "wanda", "random",
                                                          NULL};
const char *const spec_granularity_names[PG_COUNT + 1] = {"unstructured", "structured", NULL};
const char *const spec_scope_names[PS_COUNT + 1] = {"layer", "global", NULL};
const char *const spec_apply_names[PA_COUNT + 1] = {"shrink", "mask", NULL};
const char *const spec_optimizer_names[SPEC_OPT_COUNT + 1] = {"adamw", "sgd", NULL};
const char *const spec_recipe_names[CELL_RECIPE_COUNT + 1] = {"train", "ablation", "sensitivity", "joint", "rsst",
                                                              "lite", NULL};
static_assert(N_OF(spec_criterion_names) == PCR_COUNT + 1, "criterion table");
static_assert(N_OF(spec_recipe_names) == CELL_RECIPE_COUNT + 1, "recipe table");

const char *prune_criterion_name(prune_criterion c) { return (unsigned)c < PCR_COUNT ? spec_criterion_names[c] : "?"; }
int prune_criterion_needs_calib(prune_criterion c) { return c == PCR_ACTIVATION || c == PCR_TAYLOR || c == PCR_WANDA; }

int prune_criterion_parse(const char *s, prune_criterion *c)
{
    if (!s) return -1;
    for (int i = 0; i < PCR_COUNT; i++)
        if (strcmp(s, spec_criterion_names[i]) == 0) {
            *c = (prune_criterion)i;
            return 0;
        }
    return -1;
}

const char *cell_recipe_name(cell_recipe r) { return (unsigned)r < CELL_RECIPE_COUNT ? spec_recipe_names[r] : "?"; }

/* ------------------------------------------------------------------ job types */

const char *const spec_job_shared_keys[] = {"type", "priority", "dataset", "eval", "calibration", "seed", "seq_len",
                                            NULL};

static const char *const TRAIN_KEYS[] = {"name", "model", "preset", "dims", "epochs", "batch", "lr", "min_lr",
                                         "warmup", "weight_decay", "optimizer", "momentum", "clip", "max_steps",
                                         "augment", "d_model", "layers", "d_state", "expand", "d_conv",
                                         "mlp_ratio", "patch", "dt_rank", NULL};
static const char *const ABLATION_KEYS[] = {"model", "components", "rates", "seeds", "granularity", "criterion",
                                            "scope", "apply", "finetune", NULL};
static const char *const SENSITIVITY_KEYS[] = {"model", "layers", "components", "rate", "granularity", "criterion",
                                               "apply", "finetune", NULL};
static const char *const JOINT_KEYS[] = {"model", "configs", "granularity", "criterion", "scope", "apply", "finetune",
                                         NULL};
static const char *const SPEC_KEYS[] = {"model", "spec", "finetune", NULL};
static const char *const *const JOB_KEYS[CELL_RECIPE_COUNT] = {
    [CELL_TRAIN] = TRAIN_KEYS, [CELL_ABLATION] = ABLATION_KEYS, [CELL_SENSITIVITY] = SENSITIVITY_KEYS,
    [CELL_JOINT] = JOINT_KEYS, [CELL_RSST] = SPEC_KEYS,         [CELL_LITE] = SPEC_KEYS,
};
static_assert(N_OF(JOB_KEYS) == CELL_RECIPE_COUNT, "job key table");

const char *const *spec_job_keys(cell_recipe t) { return (unsigned)t < CELL_RECIPE_COUNT ? JOB_KEYS[t] : NULL; }

/* ------------------------------------------------------------------ presets */

const char *const spec_preset_names[SPEC_PRESET_COUNT + 1] = {"tiny", "small", "base", NULL};
static const model_hparams PRESETS[SPEC_PRESET_COUNT] = {
    {.d = 32, .n_layers = 2, .d_state = 8, .d_conv = 4, .patch = 4, .expand = 2.0f, .mlp_ratio = 2.0f},
    {.d = 64, .n_layers = 4, .d_state = 16, .d_conv = 4, .patch = 4, .expand = 2.0f, .mlp_ratio = 2.0f},
    {.d = 128, .n_layers = 8, .d_state = 16, .d_conv = 4, .patch = 4, .expand = 2.0f, .mlp_ratio = 2.0f},
};
static_assert(N_OF(PRESETS) == SPEC_PRESET_COUNT, "preset table");

int model_preset(const char *name, model_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    for (int i = 0; name && i < SPEC_PRESET_COUNT; i++)
        if (strcmp(name, spec_preset_names[i]) == 0) {
            *hp = PRESETS[i];
            return 0;
        }
    return -1;
}

/* ------------------------------------------------------------------ as JSON */

static json_t *names_json(const char *const *names)
{
    json_t *a = json_array();
    for (int i = 0; names[i]; i++) json_array_append_new(a, json_string(names[i]));
    return a;
}

json_t *spec_vocabulary_json(void)
{
    json_t *comps = json_array();
    for (int c = 0; c < PC_COUNT; c++) {
        const char *unit = prune_component_unit(c);
        json_array_append_new(comps, json_pack("{s:s,s:s,s:s,s:o,s:b,s:b}", "name", prune_component_name(c), "alias",
                                               prune_component_alias(c), "tensors", prune_component_tensors(c),
                                               "structured_unit", unit ? json_string(unit) : json_null(),
                                               "structured", unit != NULL, "recommended",
                                               !prune_component_not_recommended(c)));
    }
    json_t *crit = json_array();
    for (int c = 0; c < PCR_COUNT; c++)
        json_array_append_new(crit, json_pack("{s:s,s:b}", "name", prune_criterion_name(c), "needs_calibration",
                                              prune_criterion_needs_calib(c)));
    json_t *jobs = json_array();
    for (int t = 0; t < CELL_RECIPE_COUNT; t++)
        json_array_append_new(jobs, json_pack("{s:s,s:o}", "name", cell_recipe_name(t), "keys",
                                              names_json(spec_job_keys(t))));
    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "components", comps, "criteria", crit, "granularities",
                     names_json(spec_granularity_names), "scopes", names_json(spec_scope_names), "apply",
                     names_json(spec_apply_names), "presets", names_json(spec_preset_names), "optimizers",
                     names_json(spec_optimizer_names), "job_types", jobs, "shared_keys",
                     names_json(spec_job_shared_keys));
}
