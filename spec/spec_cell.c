/* spec_cell.c — the strict parser of cell specs (format in engine/cell.h), without files or the
 * model: every key, type, name and range per recipe. The rsst / lite objects are parsed here,
 * once, into the cell spec (cell-level finetune / calibration / seed filled in where the recipe's
 * object lacks them). spec_cell_check adds what needs the input model's shape. The engine adds
 * the checks of paths and dataset names (engine/cell_spec.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "spec.h"

static char *dup_or_null(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ------------------------------------------------------------------ shared objects */

static int parse_common(json_t *root, cell_spec *s, spec_error *e)
{
    const char *str = NULL;
    long long seed = 1, threads = 0, seq_len = SPEC_SEQ_LEN;
    if (spec_get_int(root, "", "seq_len", 2, 65536, &seq_len, e) != 0) return -1;
    s->seq_len = (int)seq_len;
    if (spec_get_str(root, "", "model", s->recipe != CELL_TRAIN, &str, e) != 0) return -1;
    s->model = dup_or_null(str);
    str = NULL;
    if (spec_get_str(root, "", "dataset", 1, &str, e) != 0) return -1;
    s->dataset = dup_or_null(str);
    str = NULL;
    if (spec_get_str(root, "", "data_dir", 0, &str, e) != 0) return -1;
    s->data_dir = dup_or_null(str);
    str = NULL;
    if (spec_get_str(root, "", "out", 0, &str, e) != 0) return -1;
    s->out = dup_or_null(str);
    if (spec_get_int(root, "", "seed", 0, INT64_MAX, &seed, e) != 0 ||
        spec_get_int(root, "", "threads", 1, 1024, &threads, e) != 0)
        return -1;
    s->seed = (uint64_t)seed;
    s->threads = (int)threads;
    return 0;
}

static int parse_baseline_eval(json_t *root, cell_spec *s, spec_error *e)
{
    json_t *o;
    if (spec_get_obj(root, "", "baseline", &o, e) != 0) return -1;
    if (o) {
        static const char *const k[] = {"accuracy", "loss", NULL};
        if (spec_check_keys(o, "baseline", k, e) != 0) return -1;
        if (!json_object_get(o, "accuracy")) return spec_fail(e, "missing_field", "baseline.accuracy", "required");
        s->baseline_loss = NAN;
        if (spec_get_num(o, "baseline", "accuracy", 0, 0, 1, 0, &s->baseline_accuracy, e) != 0 ||
            spec_get_num(o, "baseline", "loss", 0, 0, 1e30, 0, &s->baseline_loss, e) != 0)
            return -1;
        s->have_baseline = 1;
        s->have_baseline_loss = json_object_get(o, "loss") != NULL;
    }
    if (spec_get_obj(root, "", "eval", &o, e) != 0) return -1;
    if (o) {
        static const char *const k[] = {"split", "max_samples", "max_tokens", NULL};
        static const char *const splits[] = {"test", "train", NULL};
        long long n = 0;
        if (spec_check_keys(o, "eval", k, e) != 0 || spec_get_choice(o, "eval", "split", splits, &s->eval_train_split, e) != 0 ||
            spec_get_int(o, "eval", "max_samples", 1, 100000000, &n, e) != 0 ||
            spec_get_int(o, "eval", "max_tokens", 1, INT64_MAX, &s->eval_max_tokens, e) != 0)
            return -1;
        s->eval_max_samples = (int)n;
    }
    return 0;
}

static int parse_finetune_calib(json_t *root, cell_spec *s, spec_error *e)
{
    json_t *o;
    if (spec_get_obj(root, "", "finetune", &o, e) != 0) return -1;
    if (o) {
        static const char *const k[] = {"steps", "lr", "batch", NULL};
        long long steps = 0, batch = s->finetune_batch;
        double lr = s->finetune_lr;
        if (spec_check_keys(o, "finetune", k, e) != 0 || spec_get_int(o, "finetune", "steps", 0, 100000000, &steps, e) != 0 ||
            spec_get_num(o, "finetune", "lr", 0, 1, 100, 0, &lr, e) != 0 ||
            spec_get_int(o, "finetune", "batch", 1, 65536, &batch, e) != 0)
            return -1;
        s->finetune_steps = (int)steps;
        s->finetune_lr = (float)lr;
        s->finetune_batch = (int)batch;
        s->have_finetune = 1;
    }
    if (spec_get_obj(root, "", "calibration", &o, e) != 0) return -1;
    if (o) {
        static const char *const k[] = {"samples", NULL};
        long long n = s->calib_samples;
        if (spec_check_keys(o, "calibration", k, e) != 0 ||
            spec_get_int(o, "calibration", "samples", 1, 1000000, &n, e) != 0)
            return -1;
        s->calib_samples = (int)n;
        s->have_calibration = 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ ablation / sensitivity / joint */

/* The shared pruning options, applied to every entry. */
typedef struct {
    int gran, scope, apply;
    prune_criterion crit;
} entry_opts;

static int parse_entry_opts(json_t *root, entry_opts *eo, spec_error *e)
{
    eo->gran = PG_UNSTRUCTURED, eo->scope = PS_LAYER, eo->apply = PA_SHRINK, eo->crit = PCR_MAGNITUDE;
    if (spec_get_choice(root, "", "granularity", spec_granularity_names, &eo->gran, e) != 0 ||
        spec_get_choice(root, "", "scope", spec_scope_names, &eo->scope, e) != 0 ||
        spec_get_choice(root, "", "apply", spec_apply_names, &eo->apply, e) != 0 ||
        spec_get_criterion(root, "", "criterion", &eo->crit, e) != 0)
        return -1;
    if (eo->gran == PG_STRUCTURED && eo->scope == PS_GLOBAL)
        return spec_fail(e, "invalid_value", "scope",
                         "\"global\" applies to unstructured pruning only (structured units are ranked per layer)");
    if (eo->gran == PG_UNSTRUCTURED && json_object_get(root, "apply") && eo->apply == PA_SHRINK)
        return spec_fail(e, "invalid_value", "apply",
                         "unstructured pruning is always applied as a mask (use \"mask\" or granularity \"structured\")");
    if (eo->gran == PG_UNSTRUCTURED) eo->apply = PA_MASK;
    return 0;
}

/* Append one entry for component c at rate (field names it in messages). */
static int add_entry(cell_spec *s, prune_component c, float rate, const entry_opts *eo, const char *field,
                     spec_error *e)
{
    if (eo->gran == PG_STRUCTURED && !prune_component_unit(c))
        return spec_fail(e, "invalid_value", field, "component %s has no structured unit (granularity structured); "
                         "prune it unstructured", prune_component_name(c));
    for (int i = 0; i < s->n_entries; i++)
        if (s->entries[i].component == c)
            return spec_fail(e, "invalid_value", field, "component %s is already given by %s", prune_component_name(c),
                             s->entry_field[i]);
    if (s->n_entries >= CELL_MAX_ENTRIES) return spec_fail(e, "invalid_value", field, "too many components");
    prune_entry *pe = &s->entries[s->n_entries];
    memset(pe, 0, sizeof *pe);
    pe->component = c;
    pe->granularity = (prune_granularity)eo->gran;
    pe->rate = rate;
    pe->criterion = eo->crit;
    pe->scope = eo->gran == PG_UNSTRUCTURED ? (prune_scope)eo->scope : PS_LAYER;
    pe->apply = (prune_apply)eo->apply;
    if (s->layer >= 0) {
        pe->n_layers = 1;
        pe->layers[0] = s->layer;
    }
    snprintf(s->entry_field[s->n_entries], sizeof s->entry_field[0], "%s", field);
    s->n_entries++;
    return 0;
}

static int parse_sensitivity(json_t *root, cell_spec *s, const entry_opts *eo, spec_error *e)
{
    if (!json_object_get(root, "layer")) return spec_fail(e, "missing_field", "layer", "required");
    long long layer = 0;
    float rate = 0.0f;
    if (spec_get_int(root, "", "layer", 0, SPEC_MAX_LAYERS - 1, &layer, e) != 0) return -1;
    s->layer = (int)layer;
    if (json_object_get(root, "scope") && eo->scope == PS_GLOBAL)
        return spec_fail(e, "invalid_value", "scope", "a sensitivity cell prunes one layer (scope \"global\" does not apply)");
    if (spec_parse_rate(json_object_get(root, "rate"), "rate", &rate, e) != 0) return -1;
    json_t *cv = json_object_get(root, "components");
    if (!cv) return spec_fail(e, "missing_field", "components", "required (a component name or an array of names)");
    prune_component c;
    if (json_is_string(cv))
        return spec_parse_component(cv, "components", &c, e) != 0 ? -1 : add_entry(s, c, rate, eo, "components", e);
    if (!json_is_array(cv) || json_array_size(cv) == 0)
        return spec_fail(e, "invalid_value", "components", "must be a component name or a non-empty array of names");
    size_t i;
    json_t *x;
    json_array_foreach(cv, i, x) {
        char field[48];
        snprintf(field, sizeof field, "components[%zu]", i);
        if (spec_parse_component(x, field, &c, e) != 0 || add_entry(s, c, rate, eo, field, e) != 0) return -1;
    }
    return 0;
}

static int parse_joint(json_t *root, cell_spec *s, const entry_opts *eo, spec_error *e)
{
    json_t *cfg = json_object_get(root, "config");
    if (!cfg) return spec_fail(e, "missing_field", "config", "required ({component: rate, ...})");
    if (!json_is_object(cfg) || json_object_size(cfg) == 0)
        return spec_fail(e, "invalid_value", "config", "must be a non-empty object {component: rate, ...}");
    const char *key;
    json_t *v;
    json_object_foreach(cfg, key, v) {
        char field[48];
        snprintf(field, sizeof field, "config.%.38s", key);
        float rate = 0.0f;
        prune_component c;
        json_t *name = json_string(key);
        int rc = spec_parse_component(name, field, &c, e);
        json_decref(name);
        if (rc != 0 || spec_parse_rate(v, field, &rate, e) != 0 || add_entry(s, c, rate, eo, field, e) != 0) return -1;
    }
    return 0;
}

static int parse_prune_recipe(json_t *root, cell_spec *s, spec_error *e)
{
    entry_opts eo;
    if (parse_entry_opts(root, &eo, e) != 0) return -1;
    if (s->recipe == CELL_SENSITIVITY) return parse_sensitivity(root, s, &eo, e);
    if (s->recipe == CELL_JOINT) return parse_joint(root, s, &eo, e);
    float rate = 0.0f;
    json_t *c = json_object_get(root, "component");
    if (!c) return spec_fail(e, "missing_field", "component", "required");
    prune_component pc;
    if (spec_parse_component(c, "component", &pc, e) != 0 ||
        spec_parse_rate(json_object_get(root, "rate"), "rate", &rate, e) != 0)
        return -1;
    return add_entry(s, pc, rate, &eo, "component", e);
}

/* ------------------------------------------------------------------ train */

static const char *const DIMS[] = {"preset", "d_model", "layers", "d_state", "expand", "d_conv", "mlp_ratio",
                                   "patch", "dt_rank", NULL};

static int parse_dims(json_t *root, cell_spec *s, spec_error *e)
{
    for (int i = 0; DIMS[i]; i++)
        if (json_object_get(root, DIMS[i])) {
            if (s->model)
                return spec_fail(e, "invalid_value", DIMS[i],
                                 "model dims apply only when the cell creates its model (without \"model\")");
            s->have_dims = 1;
        }
    int preset = 1;
    if (spec_get_choice(root, "", "preset", spec_preset_names, &preset, e) != 0) return -1;
    snprintf(s->preset, sizeof s->preset, "%s", spec_preset_names[preset]);
    model_preset(spec_preset_names[preset], &s->hp);
    long long d = s->hp.d, L = s->hp.n_layers, N = s->hp.d_state, K = s->hp.d_conv, P = s->hp.patch,
              R = s->hp.dt_rank;
    double x = s->hp.expand, m = s->hp.mlp_ratio;
    if (spec_get_int(root, "", "d_model", 1, 65536, &d, e) != 0 ||
        spec_get_int(root, "", "layers", 1, SPEC_MAX_LAYERS, &L, e) != 0 ||
        spec_get_int(root, "", "d_state", 1, 1024, &N, e) != 0 || spec_get_int(root, "", "d_conv", 1, 64, &K, e) != 0 ||
        spec_get_int(root, "", "patch", 1, 1024, &P, e) != 0 || spec_get_int(root, "", "dt_rank", 1, 65536, &R, e) != 0 ||
        spec_get_num(root, "", "expand", 0.01, 0, 64, 0, &x, e) != 0 ||
        spec_get_num(root, "", "mlp_ratio", 0, 0, 64, 0, &m, e) != 0)
        return -1;
    s->hp = (model_hparams){.d = (int)d, .n_layers = (int)L, .d_state = (int)N, .d_conv = (int)K, .patch = (int)P,
                            .dt_rank = (int)R, .expand = (float)x, .mlp_ratio = (float)m};
    return 0;
}

static int parse_train_recipe(json_t *root, cell_spec *s, spec_error *e)
{
    if (parse_dims(root, s, e) != 0) return -1;
    long long epochs = SPEC_TRAIN_EPOCHS, batch = SPEC_TRAIN_BATCH, warmup = -1, max_steps = 0;
    double lr = SPEC_TRAIN_LR, wd = SPEC_TRAIN_WEIGHT_DECAY, mom = SPEC_TRAIN_MOMENTUM, clip = SPEC_TRAIN_CLIP;
    if (spec_get_int(root, "", "epochs", 1, 100000, &epochs, e) != 0 ||
        spec_get_int(root, "", "batch", 1, 65536, &batch, e) != 0 ||
        spec_get_int(root, "", "warmup", 0, 1000000000000LL, &warmup, e) != 0 ||
        spec_get_int(root, "", "max_steps", 1, 1000000000000LL, &max_steps, e) != 0 ||
        spec_get_num(root, "", "lr", 0, 1, 100, 0, &lr, e) != 0)
        return -1;
    double min_lr = (float)lr * 0.01;
    if (spec_get_num(root, "", "min_lr", 0, 0, 100, 0, &min_lr, e) != 0 ||
        spec_get_num(root, "", "weight_decay", 0, 0, 10, 0, &wd, e) != 0 ||
        spec_get_num(root, "", "momentum", 0, 0, 1, 1, &mom, e) != 0 ||
        spec_get_num(root, "", "clip", 0, 0, 1e6, 0, &clip, e) != 0)
        return -1;
    s->epochs = (int)epochs, s->batch = (int)batch, s->warmup = (long)warmup, s->max_steps = (long)max_steps;
    s->lr = (float)lr, s->min_lr = (float)min_lr, s->weight_decay = (float)wd, s->momentum = (float)mom;
    s->clip = (float)clip;
    if (s->min_lr > s->lr) return spec_fail(e, "invalid_value", "min_lr", "%g is above lr %g", s->min_lr, s->lr);
    int opt = SPEC_OPT_ADAMW;
    s->augment = 1;
    if (spec_get_choice(root, "", "optimizer", spec_optimizer_names, &opt, e) != 0 ||
        spec_get_bool(root, "", "augment", &s->augment, e) != 0)
        return -1;
    s->optimizer_sgd = opt == SPEC_OPT_SGD;
    if (!s->out) return spec_fail(e, "missing_field", "out", "required for recipe train (the trained model)");
    return 0;
}

/* ------------------------------------------------------------------ rsst / lite */

/* A copy of root[key] with the cell's finetune / calibration / seed filled in where it lacks
 * them (rsst's finetune is {steps, lr}; its batch is the object's top-level "batch"). */
static json_t *merged_sub_spec(json_t *root, const char *key, int is_rsst)
{
    json_t *c = json_deep_copy(json_object_get(root, key));
    static const char *const fill[] = {"finetune", "calibration", "seed"};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(root, fill[i]);
        if (!v || json_object_get(c, fill[i])) continue;
        if (is_rsst && i == 0) {
            json_t *ft = json_object();
            if (json_object_get(v, "steps")) json_object_set(ft, "steps", json_object_get(v, "steps"));
            if (json_object_get(v, "lr")) json_object_set(ft, "lr", json_object_get(v, "lr"));
            json_object_set_new(c, "finetune", ft);
            if (json_object_get(v, "batch") && !json_object_get(c, "batch"))
                json_object_set(c, "batch", json_object_get(v, "batch"));
        } else {
            json_object_set(c, fill[i], v);
        }
    }
    return c;
}

static int parse_sub_spec(json_t *root, const char *key, cell_spec *s, spec_error *e)
{
    json_t *o = json_object_get(root, key);
    if (!o) return spec_fail(e, "missing_field", key, "required (the %s spec object, see %s.h)", key, key);
    if (!json_is_object(o)) return spec_fail(e, "invalid_value", key, "must be an object (see %s.h)", key);
    json_t *c = merged_sub_spec(root, key, s->recipe == CELL_RSST);
    int rc = s->recipe == CELL_RSST ? spec_rsst_parse(c, key, NULL, &s->rsst, e) : spec_lite_parse(c, key, &s->lite, e);
    json_decref(c);
    return rc;
}

/* ------------------------------------------------------------------ the cell */

static const char *const K_COMMON[] = {"recipe", "model", "dataset", "data_dir", "seed", "threads", "out",
                                       "baseline", "eval", "seq_len", NULL};
static const char *const K_TRAIN[] = {"preset", "d_model", "layers", "d_state", "expand", "d_conv", "mlp_ratio",
                                      "patch", "dt_rank", "epochs", "batch", "lr", "min_lr", "warmup",
                                      "weight_decay", "optimizer", "momentum", "clip", "max_steps", "augment", NULL};
static const char *const K_ABLATION[] = {"finetune", "calibration", "component", "rate", "granularity", "criterion",
                                         "scope", "apply", NULL};
static const char *const K_SENSITIVITY[] = {"finetune", "calibration", "layer", "components", "rate", "granularity",
                                            "criterion", "apply", NULL};
static const char *const K_JOINT[] = {"finetune", "calibration", "config", "granularity", "criterion", "scope",
                                      "apply", NULL};
static const char *const K_RSST[] = {"finetune", "calibration", "rsst", NULL};
static const char *const K_LITE[] = {"finetune", "calibration", "lite", NULL};
static const char *const *const RECIPE_KEYS[CELL_RECIPE_COUNT] = {K_TRAIN, K_ABLATION, K_SENSITIVITY,
                                                                  K_JOINT, K_RSST,     K_LITE};

/* Refuse keys outside the common list and the recipe's own. */
static int check_recipe_keys(json_t *root, cell_recipe r, spec_error *e)
{
    const char *all[64];
    int n = 0;
    for (int i = 0; K_COMMON[i]; i++) all[n++] = K_COMMON[i];
    for (int i = 0; RECIPE_KEYS[r][i] && n < 63; i++) all[n++] = RECIPE_KEYS[r][i];
    all[n] = NULL;
    if (spec_check_keys(root, "", all, e) == 0) return 0;
    char extra[64];
    snprintf(extra, sizeof extra, " (recipe %s)", cell_recipe_name(r));
    strncat(e->message, extra, sizeof e->message - strlen(e->message) - 1);
    return -1;
}

int spec_cell_parse(json_t *root, cell_spec *s, spec_error *e)
{
    memset(s, 0, sizeof *s);
    s->seed = 1;
    s->finetune_lr = SPEC_FINETUNE_LR;
    s->finetune_batch = SPEC_FINETUNE_BATCH;
    s->calib_samples = SPEC_CALIB_SAMPLES;
    s->layer = -1;
    s->warmup = -1;
    lite_spec_init(&s->lite);
    if (!json_is_object(root)) return spec_fail(e, "invalid_value", "spec", "must be a JSON object with a \"recipe\"");
    int recipe = 0, rc;
    if (!json_object_get(root, "recipe"))
        return spec_fail(e, "missing_field", "recipe", "required (train | ablation | sensitivity | joint | rsst | lite)");
    if (spec_get_choice(root, "", "recipe", spec_recipe_names, &recipe, e) != 0) return -1;
    s->recipe = (cell_recipe)recipe;
    rc = check_recipe_keys(root, s->recipe, e);
    if (rc == 0) rc = parse_common(root, s, e);
    if (rc == 0) rc = parse_baseline_eval(root, s, e);
    if (rc == 0) rc = parse_finetune_calib(root, s, e);
    if (rc == 0) {
        switch (s->recipe) {
        case CELL_TRAIN: rc = parse_train_recipe(root, s, e); break;
        case CELL_RSST: rc = parse_sub_spec(root, "rsst", s, e); break;
        case CELL_LITE: rc = parse_sub_spec(root, "lite", s, e); break;
        default: rc = parse_prune_recipe(root, s, e); break;
        }
    }
    if (rc != 0) cell_spec_free(s);
    return rc;
}

int spec_cell_check(const cell_spec *s, const spec_shape *sh, spec_error *e)
{
    if (!sh || sh->n_layers <= 0) return 0;
    if (s->recipe == CELL_SENSITIVITY && s->layer >= sh->n_layers)
        return spec_fail(e, "invalid_value", "layer", "%d is out of range (the model has %d layers)", s->layer,
                         sh->n_layers);
    for (int i = 0; i < s->n_entries; i++) {
        int any = 0;
        for (int l = 0; l < sh->n_layers; l++)
            if (s->layer < 0 || l == s->layer) any |= spec_shape_has(sh, s->entries[i].component, l);
        if (!any)
            return spec_fail(e, "invalid_value", s->entry_field[i], "%s has no %s",
                             s->layer >= 0 ? "the layer" : "the model", prune_component_name(s->entries[i].component));
    }
    if (s->recipe == CELL_LITE) return spec_lite_check(&s->lite.target, "lite", sh, e);
    if (s->recipe == CELL_RSST) return spec_prune_check(&s->rsst.prune, "rsst", sh, e);
    return 0;
}

int spec_cell_needs_train_data(const cell_spec *s)
{
    if (s->recipe == CELL_TRAIN || s->recipe == CELL_RSST) return 1;
    if (s->finetune_steps > 0) return 1;
    for (int i = 0; i < s->n_entries; i++)
        if (prune_criterion_needs_calib(s->entries[i].criterion) &&
            !(s->entries[i].granularity == PG_STRUCTURED && s->entries[i].component == PC_CONV1D))
            return 1;
    if (s->recipe == CELL_LITE)
        return prune_criterion_needs_calib(s->lite.criterion) || s->lite.finetune_steps > 0 ||
               s->lite.finetune_epochs > 0;
    return 0;
}

void cell_spec_free(cell_spec *s)
{
    if (!s) return;
    free(s->model);
    free(s->dataset);
    free(s->data_dir);
    free(s->out);
    rsst_spec_free(&s->rsst);
    s->model = s->dataset = s->data_dir = s->out = NULL;
}
