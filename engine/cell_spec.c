/* cell_spec.c — the strict parser of a cell spec (cell.h): every key, type, name and range is
 * checked, and each refusal is "bad_spec" with a message that starts with the field. Checks that
 * need the model (layer indices, component presence, rsst / lite targets) live in cell.c.
 * Ownership: a parsed cell_spec owns its strings (cell_spec_free). */
#include "cell.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell_internal.h"
#include "data.h"
#include "lite.h"
#include "model.h"
#include "prune.h"
#include "rsst.h"
#include "spec_json.h"
#include "train.h"
#include "util.h"

static const char *const recipe_names[CELL_RECIPE_COUNT] = {"train", "ablation", "sensitivity", "joint", "rsst", "lite"};
static const char *const error_codes[CELL_ERR_COUNT] = {"ok", "bad_spec", "bad_model", "data", "unavailable", "runtime"};
_Static_assert(sizeof recipe_names / sizeof recipe_names[0] == CELL_RECIPE_COUNT, "recipe name table");
_Static_assert(sizeof error_codes / sizeof error_codes[0] == CELL_ERR_COUNT, "error code table");

static const char *const gran_names[PG_COUNT] = {"unstructured", "structured"};
static const char *const scope_names[PS_COUNT] = {"layer", "global"};
static const char *const apply_names[PA_COUNT] = {"shrink", "mask"};
static const char *const preset_names[] = {"tiny", "small", "base", NULL};

const char *cell_recipe_name(cell_recipe r) { return (unsigned)r < CELL_RECIPE_COUNT ? recipe_names[r] : "?"; }

const char *cell_error_code(cell_error e) { return (unsigned)e < CELL_ERR_COUNT ? error_codes[e] : "runtime"; }

int cell_error_exit(cell_error e)
{
    if (e == CELL_OK) return 0;
    return e == CELL_ERR_BAD_SPEC || e == CELL_ERR_BAD_MODEL ? 2 : 1;
}


/* ================================================================== spec fields */

cell_error cell_bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return CELL_ERR_BAD_SPEC;
}

static void join_names(char *buf, size_t n, const char *const *names, int count, const char *sep)
{
    buf[0] = '\0';
    for (int i = 0; (count < 0 ? names[i] != NULL : i < count); i++) {
        if (i) strncat(buf, sep, n - strlen(buf) - 1);
        strncat(buf, names[i], n - strlen(buf) - 1);
    }
}

/* Refuse keys of o outside `allowed` (NULL-terminated); where = "" for the top level. */
static cell_error check_keys(json_t *o, const char *where, const char *const *allowed, const char *context, char *err,
                             size_t errlen)
{
    const char *key = spec_json_unknown_key(o, allowed, NULL, 0);
    if (key) {
        char list[768];
        join_names(list, sizeof list, allowed, -1, ", ");
        return cell_bad(err, errlen, "%s%s: unknown key%s (allowed%s: %s)", where, key, context ? context : "",
                   context ? " there" : "", list);
    }
    return CELL_OK;
}

/* Typed getters: absent keys keep *out (unless required); pre is the field prefix ("" or "eval."). */
static cell_error get_str(json_t *o, const char *pre, const char *key, int required, const char **out, char *err,
                          size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v) return required ? cell_bad(err, errlen, "%s%s: required", pre, key) : CELL_OK;
    if (!json_is_string(v)) return cell_bad(err, errlen, "%s%s: must be a string", pre, key);
    if (json_string_length(v) == 0) return cell_bad(err, errlen, "%s%s: must not be empty", pre, key);
    *out = json_string_value(v);
    return CELL_OK;
}

static cell_error get_int(json_t *o, const char *pre, const char *key, long long lo, long long hi, long long *out,
                          char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v) return CELL_OK;
    if (!json_is_integer(v)) return cell_bad(err, errlen, "%s%s: must be an integer", pre, key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return cell_bad(err, errlen, "%s%s: %lld is outside [%lld, %lld]", pre, key, x, lo, hi);
    *out = x;
    return CELL_OK;
}

/* A number in [lo, hi] (hi_open: [lo, hi); lo_open: (lo, ...]). */
static cell_error get_num(json_t *o, const char *pre, const char *key, double lo, double hi, int lo_open, int hi_open,
                          double *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v) return CELL_OK;
    if (!json_is_number(v)) return cell_bad(err, errlen, "%s%s: must be a number", pre, key);
    double x = json_number_value(v);
    int ok = (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi); /* false for NaN */
    if (!ok)
        return cell_bad(err, errlen, "%s%s: %g is outside %c%g, %g%c", pre, key, x, lo_open ? '(' : '[', lo, hi,
                   hi_open ? ')' : ']');
    *out = x;
    return CELL_OK;
}

static cell_error get_choice(json_t *o, const char *pre, const char *key, const char *const *names, int n, int *out,
                             char *err, size_t errlen)
{
    const char *s = NULL;
    cell_error e = get_str(o, pre, key, 0, &s, err, errlen);
    if (e != CELL_OK || !s) return e;
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return CELL_OK;
        }
    char list[256];
    join_names(list, sizeof list, names, n, " | ");
    return cell_bad(err, errlen, "%s%s: unknown value \"%s\" (allowed: %s)", pre, key, s, list);
}

static cell_error parse_component(json_t *v, const char *field, prune_component *c, char *err, size_t errlen)
{
    if (!json_is_string(v)) return cell_bad(err, errlen, "%s: must be a component name (string)", field);
    if (prune_component_parse(json_string_value(v), c) == 0) return CELL_OK;
    char list[512] = "";
    for (int k = 0; k < PC_COUNT; k++) {
        char one[64];
        snprintf(one, sizeof one, "%s%s (%s)", k ? ", " : "", prune_component_name(k), prune_component_alias(k));
        strncat(list, one, sizeof list - strlen(list) - 1);
    }
    return cell_bad(err, errlen, "%s: unknown component \"%s\" (known: %s)", field, json_string_value(v), list);
}

static cell_error parse_rate(json_t *v, const char *field, float *rate, char *err, size_t errlen)
{
    if (!v) return cell_bad(err, errlen, "%s: required", field);
    if (!json_is_number(v)) return cell_bad(err, errlen, "%s: must be a number in [0, 1)", field);
    double r = json_number_value(v);
    if (!(r >= 0.0 && r < 1.0)) return cell_bad(err, errlen, "%s: %g is outside [0, 1)", field, r);
    *rate = (float)r;
    if (*rate >= 1.0f) *rate = nextafterf(1.0f, 0.0f);
    return CELL_OK;
}

/* The shared pruning options of ablation / sensitivity / joint, applied to every entry. */
typedef struct {
    prune_granularity gran;
    prune_criterion crit;
    prune_scope scope;
    prune_apply apply;
    int scope_given, apply_given;
} entry_opts;

static cell_error parse_entry_opts(json_t *root, entry_opts *eo, char *err, size_t errlen)
{
    int g = PG_UNSTRUCTURED, sc = PS_LAYER, ap = PA_SHRINK;
    cell_error e;
    if ((e = get_choice(root, "", "granularity", gran_names, PG_COUNT, &g, err, errlen)) != CELL_OK) return e;
    if ((e = get_choice(root, "", "scope", scope_names, PS_COUNT, &sc, err, errlen)) != CELL_OK) return e;
    if ((e = get_choice(root, "", "apply", apply_names, PA_COUNT, &ap, err, errlen)) != CELL_OK) return e;
    eo->gran = (prune_granularity)g;
    eo->scope = (prune_scope)sc;
    eo->apply = (prune_apply)ap;
    eo->scope_given = json_object_get(root, "scope") != NULL;
    eo->apply_given = json_object_get(root, "apply") != NULL;
    eo->crit = PCR_MAGNITUDE;
    json_t *cv = json_object_get(root, "criterion");
    if (cv) {
        prune_criterion pc;
        if (!json_is_string(cv) || prune_criterion_parse(json_string_value(cv), &pc) != 0) {
            char list[160] = "";
            for (int k = 0; k < PCR_COUNT; k++) {
                if (k) strncat(list, " | ", sizeof list - strlen(list) - 1);
                strncat(list, prune_criterion_name(k), sizeof list - strlen(list) - 1);
            }
            return cell_bad(err, errlen, "criterion: unknown criterion %s%s%s (allowed: %s)", json_is_string(cv) ? "\"" : "",
                       json_is_string(cv) ? json_string_value(cv) : "(not a string)", json_is_string(cv) ? "\"" : "",
                       list);
        }
        eo->crit = pc;
    }
    if (eo->gran == PG_STRUCTURED && eo->scope_given && eo->scope == PS_GLOBAL)
        return cell_bad(err, errlen, "scope: \"global\" applies to unstructured pruning only (structured units are ranked "
                                "per layer)");
    if (eo->gran == PG_UNSTRUCTURED && eo->apply_given && eo->apply == PA_SHRINK)
        return cell_bad(err, errlen, "apply: unstructured pruning is always applied as a mask (use \"mask\" or granularity "
                                "\"structured\")");
    if (eo->gran == PG_UNSTRUCTURED) eo->apply = PA_MASK;
    return CELL_OK;
}

/* Append one entry for component c at rate to s (field names it in messages). */
static cell_error add_entry(cell_spec *s, prune_component c, float rate, const entry_opts *eo, const char *field,
                            char *err, size_t errlen)
{
    if (eo->gran == PG_STRUCTURED && !prune_component_unit(c))
        return cell_bad(err, errlen, "%s: component %s has no structured unit (granularity structured); prune it "
                                "unstructured", field, prune_component_name(c));
    for (int i = 0; i < s->n_entries; i++)
        if (s->entries[i].component == c)
            return cell_bad(err, errlen, "%s: component %s is already given by %s", field, prune_component_name(c),
                       s->entry_field[i]);
    if (s->n_entries >= PC_COUNT) return cell_bad(err, errlen, "%s: too many components", field);
    prune_entry *e = &s->entries[s->n_entries];
    memset(e, 0, sizeof *e);
    e->component = c;
    e->granularity = eo->gran;
    e->rate = rate;
    e->criterion = eo->crit;
    e->scope = eo->gran == PG_UNSTRUCTURED ? eo->scope : PS_LAYER;
    e->apply = eo->apply;
    if (s->layer >= 0) {
        e->n_layers = 1;
        e->layers[0] = s->layer;
    }
    snprintf(s->entry_field[s->n_entries], sizeof s->entry_field[0], "%s", field);
    s->n_entries++;
    return CELL_OK;
}

static cell_error parse_prune_recipe(json_t *root, cell_spec *s, char *err, size_t errlen)
{
    entry_opts eo;
    cell_error e = parse_entry_opts(root, &eo, err, errlen);
    if (e != CELL_OK) return e;
    if (s->recipe == CELL_ABLATION) {
        prune_component c;
        float rate = 0.0f;
        json_t *v = json_object_get(root, "component");
        if (!v) return cell_bad(err, errlen, "component: required");
        if ((e = parse_component(v, "component", &c, err, errlen)) != CELL_OK) return e;
        if ((e = parse_rate(json_object_get(root, "rate"), "rate", &rate, err, errlen)) != CELL_OK) return e;
        return add_entry(s, c, rate, &eo, "component", err, errlen);
    }
    if (s->recipe == CELL_SENSITIVITY) {
        json_t *lv = json_object_get(root, "layer");
        if (!lv) return cell_bad(err, errlen, "layer: required");
        long long layer = 0;
        if ((e = get_int(root, "", "layer", 0, MODEL_MAX_LAYERS - 1, &layer, err, errlen)) != CELL_OK) return e;
        s->layer = (int)layer;
        if (eo.scope_given && eo.scope == PS_GLOBAL)
            return cell_bad(err, errlen, "scope: a sensitivity cell prunes one layer (scope \"global\" does not apply)");
        float rate = 0.0f;
        if ((e = parse_rate(json_object_get(root, "rate"), "rate", &rate, err, errlen)) != CELL_OK) return e;
        json_t *cv = json_object_get(root, "components");
        if (!cv) return cell_bad(err, errlen, "components: required (a component name or an array of names)");
        if (json_is_string(cv)) {
            prune_component c;
            if ((e = parse_component(cv, "components", &c, err, errlen)) != CELL_OK) return e;
            return add_entry(s, c, rate, &eo, "components", err, errlen);
        }
        if (!json_is_array(cv) || json_array_size(cv) == 0)
            return cell_bad(err, errlen, "components: must be a component name or a non-empty array of names");
        size_t i;
        json_t *x;
        json_array_foreach(cv, i, x) {
            char field[48];
            snprintf(field, sizeof field, "components[%zu]", i);
            prune_component c;
            if ((e = parse_component(x, field, &c, err, errlen)) != CELL_OK) return e;
            if ((e = add_entry(s, c, rate, &eo, field, err, errlen)) != CELL_OK) return e;
        }
        return CELL_OK;
    }
    /* joint */
    json_t *cfg = json_object_get(root, "config");
    if (!cfg) return cell_bad(err, errlen, "config: required ({component: rate, ...})");
    if (!json_is_object(cfg) || json_object_size(cfg) == 0)
        return cell_bad(err, errlen, "config: must be a non-empty object {component: rate, ...}");
    const char *key;
    json_t *v;
    json_object_foreach(cfg, key, v) {
        char field[48];
        snprintf(field, sizeof field, "config.%.38s", key);
        prune_component c;
        json_t *name = json_string(key);
        e = parse_component(name, field, &c, err, errlen);
        json_decref(name);
        if (e != CELL_OK) return e;
        float rate = 0.0f;
        if ((e = parse_rate(v, field, &rate, err, errlen)) != CELL_OK) return e;
        if ((e = add_entry(s, c, rate, &eo, field, err, errlen)) != CELL_OK) return e;
    }
    return CELL_OK;
}

static cell_error parse_train_recipe(json_t *root, cell_spec *s, char *err, size_t errlen)
{
    static const char *const dims[] = {"preset", "d_model", "layers", "d_state", "expand", "d_conv", "mlp_ratio",
                                       "patch", "dt_rank", NULL};
    cell_error e;
    for (int i = 0; dims[i]; i++)
        if (json_object_get(root, dims[i])) s->have_dims = 1;
    if (s->have_dims && s->model) {
        for (int i = 0; dims[i]; i++)
            if (json_object_get(root, dims[i]))
                return cell_bad(err, errlen, "%s: model dims apply only when the cell creates its model (without \"model\")",
                           dims[i]);
    }
    int preset = 1;
    if ((e = get_choice(root, "", "preset", preset_names, 3, &preset, err, errlen)) != CELL_OK) return e;
    snprintf(s->preset, sizeof s->preset, "%s", preset_names[preset]);
    if (model_preset(preset_names[preset], &s->hp) != 0) return cell_bad(err, errlen, "preset: unknown preset");
    long long x;
    double f;
    x = s->hp.d;
    if ((e = get_int(root, "", "d_model", 1, 65536, &x, err, errlen)) != CELL_OK) return e;
    s->hp.d = (int)x;
    x = s->hp.n_layers;
    if ((e = get_int(root, "", "layers", 1, MODEL_MAX_LAYERS, &x, err, errlen)) != CELL_OK) return e;
    s->hp.n_layers = (int)x;
    x = s->hp.d_state;
    if ((e = get_int(root, "", "d_state", 1, 1024, &x, err, errlen)) != CELL_OK) return e;
    s->hp.d_state = (int)x;
    x = s->hp.d_conv;
    if ((e = get_int(root, "", "d_conv", 1, 64, &x, err, errlen)) != CELL_OK) return e;
    s->hp.d_conv = (int)x;
    x = s->hp.patch;
    if ((e = get_int(root, "", "patch", 1, 1024, &x, err, errlen)) != CELL_OK) return e;
    s->hp.patch = (int)x;
    x = s->hp.dt_rank;
    if ((e = get_int(root, "", "dt_rank", 1, 65536, &x, err, errlen)) != CELL_OK) return e;
    s->hp.dt_rank = (int)x;
    f = s->hp.expand;
    if ((e = get_num(root, "", "expand", 0.01, 64, 0, 0, &f, err, errlen)) != CELL_OK) return e;
    s->hp.expand = (float)f;
    f = s->hp.mlp_ratio;
    if ((e = get_num(root, "", "mlp_ratio", 0, 64, 0, 0, &f, err, errlen)) != CELL_OK) return e;
    s->hp.mlp_ratio = (float)f;

    train_config tc;
    train_config_default(&tc);
    x = tc.epochs;
    if ((e = get_int(root, "", "epochs", 1, 100000, &x, err, errlen)) != CELL_OK) return e;
    s->epochs = (int)x;
    x = tc.batch;
    if ((e = get_int(root, "", "batch", 1, 65536, &x, err, errlen)) != CELL_OK) return e;
    s->batch = (int)x;
    x = -1;
    if ((e = get_int(root, "", "warmup", 0, 1000000000000LL, &x, err, errlen)) != CELL_OK) return e;
    s->warmup = (long)x;
    x = 0;
    if ((e = get_int(root, "", "max_steps", 1, 1000000000000LL, &x, err, errlen)) != CELL_OK) return e;
    s->max_steps = (long)x;
    f = tc.opt.lr;
    if ((e = get_num(root, "", "lr", 0, 100, 1, 0, &f, err, errlen)) != CELL_OK) return e;
    s->lr = (float)f;
    f = s->lr * 0.01;
    if ((e = get_num(root, "", "min_lr", 0, 100, 0, 0, &f, err, errlen)) != CELL_OK) return e;
    s->min_lr = (float)f;
    if (s->min_lr > s->lr) return cell_bad(err, errlen, "min_lr: %g is above lr %g", s->min_lr, s->lr);
    f = tc.opt.weight_decay;
    if ((e = get_num(root, "", "weight_decay", 0, 10, 0, 0, &f, err, errlen)) != CELL_OK) return e;
    s->weight_decay = (float)f;
    f = tc.opt.momentum;
    if ((e = get_num(root, "", "momentum", 0, 1, 0, 1, &f, err, errlen)) != CELL_OK) return e;
    s->momentum = (float)f;
    f = tc.opt.clip;
    if ((e = get_num(root, "", "clip", 0, 1e6, 0, 0, &f, err, errlen)) != CELL_OK) return e;
    s->clip = (float)f;
    static const char *const opt_names[] = {"adamw", "sgd"};
    int opt = 0;
    if ((e = get_choice(root, "", "optimizer", opt_names, 2, &opt, err, errlen)) != CELL_OK) return e;
    s->optimizer_sgd = opt == 1;
    s->augment = 1;
    json_t *av = json_object_get(root, "augment");
    if (av) {
        if (!json_is_boolean(av)) return cell_bad(err, errlen, "augment: must be true or false");
        s->augment = json_is_true(av);
    }
    if (!s->out) return cell_bad(err, errlen, "out: required for recipe train (the trained model)");
    return CELL_OK;
}

/* rsst / lite: copy the recipe's object, filling finetune / calibration / seed from the cell. */
static cell_error parse_sub_spec(json_t *root, const char *key, cell_spec *s, char *err, size_t errlen)
{
    json_t *o = json_object_get(root, key);
    if (!o) return cell_bad(err, errlen, "%s: required (the %s spec object, see %s.h)", key, key, key);
    if (!json_is_object(o)) return cell_bad(err, errlen, "%s: must be an object (see %s.h)", key, key);
    json_t *c = json_deep_copy(o);
    static const char *const fill[] = {"finetune", "calibration", "seed"};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(root, fill[i]);
        if (!v || json_object_get(c, fill[i])) continue;
        if (s->recipe == CELL_RSST && strcmp(fill[i], "finetune") == 0) {
            /* rsst's finetune is {steps, lr}; its batch is the top-level "batch" */
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
    s->sub_spec = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    char e2[PL_ERRLEN];
    if (s->recipe == CELL_LITE) {
        lite_spec ls;
        if (lite_spec_parse(s->sub_spec, &ls, e2, sizeof e2) != 0) return cell_bad(err, errlen, "lite.%s", e2);
    } else {
        rsst_spec rs;
        int rc = rsst_spec_parse(s->sub_spec, NULL, &rs, e2, sizeof e2);
        if (rc == 0) rsst_spec_free(&rs);
        if (rc != 0) return cell_bad(err, errlen, "rsst.%s", e2);
    }
    return CELL_OK;
}

static cell_error check_file(const char *field, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) return cell_bad(err, errlen, "%s: cannot use %s: %s", field, path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return cell_bad(err, errlen, "%s: %s is not a regular file", field, path);
    return CELL_OK;
}

static cell_error check_out(const cell_spec *s, char *err, size_t errlen)
{
    struct stat st;
    if (stat(s->out, &st) == 0 && S_ISDIR(st.st_mode))
        return cell_bad(err, errlen, "out: %s is a directory (give a file path)", s->out);
    if (s->model) {
        struct stat sm;
        if (stat(s->model, &sm) == 0 && stat(s->out, &st) == 0 && sm.st_dev == st.st_dev && sm.st_ino == st.st_ino)
            return cell_bad(err, errlen, "out: %s is the input model (write the result elsewhere)", s->out);
    }
    char *dir = xstrdup(s->out);
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash) {
        slash[slash == dir ? 1 : 0] = '\0';
        d = dir;
    }
    cell_error e = CELL_OK;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
        e = cell_bad(err, errlen, "out: directory %s does not exist", d);
    else if (access(d, W_OK) != 0)
        e = cell_bad(err, errlen, "out: directory %s is not writable", d);
    free(dir);
    return e;
}

cell_error cell_spec_parse(const char *json_text, cell_spec *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->seed = 1;
    s->finetune_lr = 1e-3f;
    s->finetune_batch = 64;
    s->calib_samples = 512;
    s->layer = -1;
    s->warmup = -1;
    if (!json_text) return cell_bad(err, errlen, "spec: no input");
    json_error_t je;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je);
    if (!root) return cell_bad(err, errlen, "spec: invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    cell_error e = CELL_OK;
    const char *str = NULL;
    if (!json_is_object(root)) {
        e = cell_bad(err, errlen, "spec: must be a JSON object with a \"recipe\"");
        goto done;
    }
    int recipe = 0;
    if (!json_object_get(root, "recipe")) {
        char list[128];
        join_names(list, sizeof list, recipe_names, CELL_RECIPE_COUNT, " | ");
        e = cell_bad(err, errlen, "recipe: required (%s)", list);
        goto done;
    }
    if ((e = get_choice(root, "", "recipe", recipe_names, CELL_RECIPE_COUNT, &recipe, err, errlen)) != CELL_OK)
        goto done;
    s->recipe = (cell_recipe)recipe;

    /* allowed keys per recipe */
    static const char *const k_train[] = {"recipe", "model", "dataset", "data_dir", "seed", "threads", "out",
                                          "baseline", "eval", "preset", "d_model", "layers", "d_state", "expand",
                                          "d_conv", "mlp_ratio", "patch", "dt_rank", "epochs", "batch", "lr",
                                          "min_lr", "warmup", "weight_decay", "optimizer", "momentum", "clip",
                                          "max_steps", "augment", NULL};
    static const char *const k_ablation[] = {"recipe", "model", "dataset", "data_dir", "seed", "threads", "out",
                                             "baseline", "eval", "finetune", "calibration", "component", "rate",
                                             "granularity", "criterion", "scope", "apply", NULL};
    static const char *const k_sensitivity[] = {"recipe", "model", "dataset", "data_dir", "seed", "threads", "out",
                                                "baseline", "eval", "finetune", "calibration", "layer", "components",
                                                "rate", "granularity", "criterion", "apply", NULL};
    static const char *const k_joint[] = {"recipe", "model", "dataset", "data_dir", "seed", "threads", "out",
                                          "baseline", "eval", "finetune", "calibration", "config", "granularity",
                                          "criterion", "scope", "apply", NULL};
    static const char *const k_rsst[] = {"recipe", "model", "dataset", "data_dir", "seed", "threads", "out",
                                         "baseline", "eval", "finetune", "calibration", "rsst", NULL};
    static const char *const k_lite[] = {"recipe", "model", "dataset", "data_dir", "seed", "threads", "out",
                                         "baseline", "eval", "finetune", "calibration", "lite", NULL};
    static const char *const *const keys[CELL_RECIPE_COUNT] = {k_train, k_ablation, k_sensitivity,
                                                               k_joint, k_rsst,     k_lite};
    char ctx[48];
    snprintf(ctx, sizeof ctx, " for recipe %s", recipe_names[recipe]);
    if ((e = check_keys(root, "", keys[recipe], ctx, err, errlen)) != CELL_OK) goto done;

    str = NULL;
    if ((e = get_str(root, "", "model", s->recipe != CELL_TRAIN, &str, err, errlen)) != CELL_OK) goto done;
    if (str) {
        s->model = xstrdup(str);
        if ((e = check_file("model", s->model, err, errlen)) != CELL_OK) goto done;
    }
    str = NULL;
    if ((e = get_str(root, "", "dataset", 1, &str, err, errlen)) != CELL_OK) goto done;
    s->dataset = xstrdup(str);
    if (dataset_shape(s->dataset, NULL, NULL, NULL, NULL) != 0) {
        e = cell_bad(err, errlen,
                "dataset: unknown dataset \"%s\" (fashion-mnist, mnist, cifar10, cifar100, "
                "synthetic[:n=..,classes=..,c=..,h=..,w=..])", s->dataset);
        goto done;
    }
    str = NULL;
    if ((e = get_str(root, "", "data_dir", 0, &str, err, errlen)) != CELL_OK) goto done;
    if (str) s->data_dir = xstrdup(str);
    str = NULL;
    if ((e = get_str(root, "", "out", 0, &str, err, errlen)) != CELL_OK) goto done;
    if (str) {
        s->out = xstrdup(str);
        if ((e = check_out(s, err, errlen)) != CELL_OK) goto done;
    }
    long long x = 1;
    if ((e = get_int(root, "", "seed", 0, INT64_MAX, &x, err, errlen)) != CELL_OK) goto done;
    s->seed = (uint64_t)x;
    x = 0;
    if ((e = get_int(root, "", "threads", 1, 1024, &x, err, errlen)) != CELL_OK) goto done;
    s->threads = (int)x;

    json_t *o = json_object_get(root, "baseline");
    if (o) {
        static const char *const k[] = {"accuracy", "loss", NULL};
        if (!json_is_object(o)) {
            e = cell_bad(err, errlen, "baseline: must be an object {\"accuracy\", \"loss\"}");
            goto done;
        }
        if ((e = check_keys(o, "baseline.", k, NULL, err, errlen)) != CELL_OK) goto done;
        if (!json_object_get(o, "accuracy")) {
            e = cell_bad(err, errlen, "baseline.accuracy: required");
            goto done;
        }
        if ((e = get_num(o, "baseline.", "accuracy", 0, 1, 0, 0, &s->baseline_accuracy, err, errlen)) != CELL_OK)
            goto done;
        s->have_baseline = 1;
        s->baseline_loss = NAN;
        if ((e = get_num(o, "baseline.", "loss", 0, 1e30, 0, 0, &s->baseline_loss, err, errlen)) != CELL_OK)
            goto done;
        s->have_baseline_loss = json_object_get(o, "loss") != NULL;
    }
    o = json_object_get(root, "eval");
    if (o) {
        static const char *const k[] = {"split", "max_samples", NULL};
        static const char *const splits[] = {"test", "train"};
        if (!json_is_object(o)) {
            e = cell_bad(err, errlen, "eval: must be an object {\"split\", \"max_samples\"}");
            goto done;
        }
        if ((e = check_keys(o, "eval.", k, NULL, err, errlen)) != CELL_OK) goto done;
        int sp = 0;
        if ((e = get_choice(o, "eval.", "split", splits, 2, &sp, err, errlen)) != CELL_OK) goto done;
        s->eval_train_split = sp;
        x = 0;
        if ((e = get_int(o, "eval.", "max_samples", 1, 100000000, &x, err, errlen)) != CELL_OK) goto done;
        s->eval_max_samples = (int)x;
    }
    o = json_object_get(root, "finetune");
    if (o) {
        static const char *const k[] = {"steps", "lr", "batch", NULL};
        if (!json_is_object(o)) {
            e = cell_bad(err, errlen, "finetune: must be an object {\"steps\", \"lr\", \"batch\"}");
            goto done;
        }
        if ((e = check_keys(o, "finetune.", k, NULL, err, errlen)) != CELL_OK) goto done;
        x = 0;
        if ((e = get_int(o, "finetune.", "steps", 0, 100000000, &x, err, errlen)) != CELL_OK) goto done;
        s->finetune_steps = (int)x;
        double lr = s->finetune_lr;
        if ((e = get_num(o, "finetune.", "lr", 0, 100, 1, 0, &lr, err, errlen)) != CELL_OK) goto done;
        s->finetune_lr = (float)lr;
        x = s->finetune_batch;
        if ((e = get_int(o, "finetune.", "batch", 1, 65536, &x, err, errlen)) != CELL_OK) goto done;
        s->finetune_batch = (int)x;
        s->have_finetune = 1;
    }
    o = json_object_get(root, "calibration");
    if (o) {
        static const char *const k[] = {"samples", NULL};
        if (!json_is_object(o)) {
            e = cell_bad(err, errlen, "calibration: must be an object {\"samples\"}");
            goto done;
        }
        if ((e = check_keys(o, "calibration.", k, NULL, err, errlen)) != CELL_OK) goto done;
        x = s->calib_samples;
        if ((e = get_int(o, "calibration.", "samples", 1, 1000000, &x, err, errlen)) != CELL_OK) goto done;
        s->calib_samples = (int)x;
        s->have_calibration = 1;
    }

    switch (s->recipe) {
    case CELL_TRAIN: e = parse_train_recipe(root, s, err, errlen); break;
    case CELL_ABLATION:
    case CELL_SENSITIVITY:
    case CELL_JOINT: e = parse_prune_recipe(root, s, err, errlen); break;
    case CELL_RSST: e = parse_sub_spec(root, "rsst", s, err, errlen); break;
    case CELL_LITE: e = parse_sub_spec(root, "lite", s, err, errlen); break;
    default: e = cell_bad(err, errlen, "recipe: unknown");
    }
done:
    json_decref(root);
    if (e != CELL_OK) cell_spec_free(s);
    return e;
}

void cell_spec_free(cell_spec *s)
{
    if (!s) return;
    free(s->model);
    free(s->dataset);
    free(s->data_dir);
    free(s->out);
    free(s->sub_spec);
    s->model = s->dataset = s->data_dir = s->out = s->sub_spec = NULL;
}
