/* cell.c — one experiment cell (cell.h, DESIGN.md section 6): strict spec parsing, the progress
 * / result / error events, and the recipes train, ablation, sensitivity, joint, rsst and lite.
 *
 * Flow of every recipe (cell_run_text):
 *   parse the spec -> threads -> load the input model (or create one: train) -> load the
 *   evaluation split (and the train split when the recipe trains, fine-tunes or calibrates)
 *   -> baseline (given, or evaluated here) -> the recipe produces a model
 *   (and, for structured selections applied as masks, a shrunk twin that gives the realised
 *   speed) -> fine-tuning (masks fixed) -> evaluation -> latency (paired with the input model)
 *   -> the output model is written
 *   atomically -> one result event.
 * Events go through one writer guarded by a mutex; a heartbeat thread repeats the last progress
 * line when nothing was written for CELL_HEARTBEAT_S seconds (the work itself may be inside a
 * call without a callback, such as a calibration pass).
 * SIGTERM / SIGINT while a cell runs: the handler removes the output model's temporary file
 * (pl_write_file_atomic names it "<out>.tmp.<pid>") and the output itself when it is already
 * renamed into place but no result was sent, then re-raises with the default action.
 * Ownership: everything a run allocates is freed before cell_run_text returns; the spec owns
 * its strings. Letters as in model.h. */
#include "cell.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blas.h"
#include "data.h"
#include "lite.h"
#include "model.h"
#include "ops.h"
#include "prune.h"
#include "rsst.h"
#include "train.h"
#include "spec_json.h"
#include "util.h"

#define CELL_PROGRESS_MIN_S 1.0 /* progress lines from the work are at most this frequent */
#define CELL_LATENCY_BATCH 64
#define CELL_EVAL_BATCH 256

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

/* A JSON number, or null when x is not finite (jansson refuses NaN / inf). */
static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* ================================================================== spec fields */

static cell_error bad(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static cell_error bad(char *err, size_t errlen, const char *fmt, ...)
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
        return bad(err, errlen, "%s%s: unknown key%s (allowed%s: %s)", where, key, context ? context : "",
                   context ? " there" : "", list);
    }
    return CELL_OK;
}

/* Typed getters: absent keys keep *out (unless required); pre is the field prefix ("" or "eval."). */
static cell_error get_str(json_t *o, const char *pre, const char *key, int required, const char **out, char *err,
                          size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v) return required ? bad(err, errlen, "%s%s: required", pre, key) : CELL_OK;
    if (!json_is_string(v)) return bad(err, errlen, "%s%s: must be a string", pre, key);
    if (json_string_length(v) == 0) return bad(err, errlen, "%s%s: must not be empty", pre, key);
    *out = json_string_value(v);
    return CELL_OK;
}

static cell_error get_int(json_t *o, const char *pre, const char *key, long long lo, long long hi, long long *out,
                          char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v) return CELL_OK;
    if (!json_is_integer(v)) return bad(err, errlen, "%s%s: must be an integer", pre, key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return bad(err, errlen, "%s%s: %lld is outside [%lld, %lld]", pre, key, x, lo, hi);
    *out = x;
    return CELL_OK;
}

/* A number in [lo, hi] (hi_open: [lo, hi); lo_open: (lo, ...]). */
static cell_error get_num(json_t *o, const char *pre, const char *key, double lo, double hi, int lo_open, int hi_open,
                          double *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v) return CELL_OK;
    if (!json_is_number(v)) return bad(err, errlen, "%s%s: must be a number", pre, key);
    double x = json_number_value(v);
    int ok = (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi); /* false for NaN */
    if (!ok)
        return bad(err, errlen, "%s%s: %g is outside %c%g, %g%c", pre, key, x, lo_open ? '(' : '[', lo, hi,
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
    return bad(err, errlen, "%s%s: unknown value \"%s\" (allowed: %s)", pre, key, s, list);
}

static cell_error parse_component(json_t *v, const char *field, prune_component *c, char *err, size_t errlen)
{
    if (!json_is_string(v)) return bad(err, errlen, "%s: must be a component name (string)", field);
    if (prune_component_parse(json_string_value(v), c) == 0) return CELL_OK;
    char list[512] = "";
    for (int k = 0; k < PC_COUNT; k++) {
        char one[64];
        snprintf(one, sizeof one, "%s%s (%s)", k ? ", " : "", prune_component_name(k), prune_component_alias(k));
        strncat(list, one, sizeof list - strlen(list) - 1);
    }
    return bad(err, errlen, "%s: unknown component \"%s\" (known: %s)", field, json_string_value(v), list);
}

static cell_error parse_rate(json_t *v, const char *field, float *rate, char *err, size_t errlen)
{
    if (!v) return bad(err, errlen, "%s: required", field);
    if (!json_is_number(v)) return bad(err, errlen, "%s: must be a number in [0, 1)", field);
    double r = json_number_value(v);
    if (!(r >= 0.0 && r < 1.0)) return bad(err, errlen, "%s: %g is outside [0, 1)", field, r);
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
            return bad(err, errlen, "criterion: unknown criterion %s%s%s (allowed: %s)", json_is_string(cv) ? "\"" : "",
                       json_is_string(cv) ? json_string_value(cv) : "(not a string)", json_is_string(cv) ? "\"" : "",
                       list);
        }
        eo->crit = pc;
    }
    if (eo->gran == PG_STRUCTURED && eo->scope_given && eo->scope == PS_GLOBAL)
        return bad(err, errlen, "scope: \"global\" applies to unstructured pruning only (structured units are ranked "
                                "per layer)");
    if (eo->gran == PG_UNSTRUCTURED && eo->apply_given && eo->apply == PA_SHRINK)
        return bad(err, errlen, "apply: unstructured pruning is always applied as a mask (use \"mask\" or granularity "
                                "\"structured\")");
    if (eo->gran == PG_UNSTRUCTURED) eo->apply = PA_MASK;
    return CELL_OK;
}

/* Append one entry for component c at rate to s (field names it in messages). */
static cell_error add_entry(cell_spec *s, prune_component c, float rate, const entry_opts *eo, const char *field,
                            char *err, size_t errlen)
{
    if (eo->gran == PG_STRUCTURED && !prune_component_unit(c))
        return bad(err, errlen, "%s: component %s has no structured unit (granularity structured); prune it "
                                "unstructured", field, prune_component_name(c));
    for (int i = 0; i < s->n_entries; i++)
        if (s->entries[i].component == c)
            return bad(err, errlen, "%s: component %s is already given by %s", field, prune_component_name(c),
                       s->entry_field[i]);
    if (s->n_entries >= PC_COUNT) return bad(err, errlen, "%s: too many components", field);
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
        if (!v) return bad(err, errlen, "component: required");
        if ((e = parse_component(v, "component", &c, err, errlen)) != CELL_OK) return e;
        if ((e = parse_rate(json_object_get(root, "rate"), "rate", &rate, err, errlen)) != CELL_OK) return e;
        return add_entry(s, c, rate, &eo, "component", err, errlen);
    }
    if (s->recipe == CELL_SENSITIVITY) {
        json_t *lv = json_object_get(root, "layer");
        if (!lv) return bad(err, errlen, "layer: required");
        long long layer = 0;
        if ((e = get_int(root, "", "layer", 0, MODEL_MAX_LAYERS - 1, &layer, err, errlen)) != CELL_OK) return e;
        s->layer = (int)layer;
        if (eo.scope_given && eo.scope == PS_GLOBAL)
            return bad(err, errlen, "scope: a sensitivity cell prunes one layer (scope \"global\" does not apply)");
        float rate = 0.0f;
        if ((e = parse_rate(json_object_get(root, "rate"), "rate", &rate, err, errlen)) != CELL_OK) return e;
        json_t *cv = json_object_get(root, "components");
        if (!cv) return bad(err, errlen, "components: required (a component name or an array of names)");
        if (json_is_string(cv)) {
            prune_component c;
            if ((e = parse_component(cv, "components", &c, err, errlen)) != CELL_OK) return e;
            return add_entry(s, c, rate, &eo, "components", err, errlen);
        }
        if (!json_is_array(cv) || json_array_size(cv) == 0)
            return bad(err, errlen, "components: must be a component name or a non-empty array of names");
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
    if (!cfg) return bad(err, errlen, "config: required ({component: rate, ...})");
    if (!json_is_object(cfg) || json_object_size(cfg) == 0)
        return bad(err, errlen, "config: must be a non-empty object {component: rate, ...}");
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
                return bad(err, errlen, "%s: model dims apply only when the cell creates its model (without \"model\")",
                           dims[i]);
    }
    int preset = 1;
    if ((e = get_choice(root, "", "preset", preset_names, 3, &preset, err, errlen)) != CELL_OK) return e;
    snprintf(s->preset, sizeof s->preset, "%s", preset_names[preset]);
    if (model_preset(preset_names[preset], &s->hp) != 0) return bad(err, errlen, "preset: unknown preset");
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
    if (s->min_lr > s->lr) return bad(err, errlen, "min_lr: %g is above lr %g", s->min_lr, s->lr);
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
        if (!json_is_boolean(av)) return bad(err, errlen, "augment: must be true or false");
        s->augment = json_is_true(av);
    }
    if (!s->out) return bad(err, errlen, "out: required for recipe train (the trained model)");
    return CELL_OK;
}

/* rsst / lite: copy the recipe's object, filling finetune / calibration / seed from the cell. */
static cell_error parse_sub_spec(json_t *root, const char *key, cell_spec *s, char *err, size_t errlen)
{
    json_t *o = json_object_get(root, key);
    if (!o) return bad(err, errlen, "%s: required (the %s spec object, see %s.h)", key, key, key);
    if (!json_is_object(o)) return bad(err, errlen, "%s: must be an object (see %s.h)", key, key);
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
        if (lite_spec_parse(s->sub_spec, &ls, e2, sizeof e2) != 0) return bad(err, errlen, "lite.%s", e2);
    } else {
        rsst_spec rs;
        int rc = rsst_spec_parse(s->sub_spec, NULL, &rs, e2, sizeof e2);
        if (rc == 0) rsst_spec_free(&rs);
        if (rc != 0) return bad(err, errlen, "rsst.%s", e2);
    }
    return CELL_OK;
}

static cell_error check_file(const char *field, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) return bad(err, errlen, "%s: cannot use %s: %s", field, path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return bad(err, errlen, "%s: %s is not a regular file", field, path);
    return CELL_OK;
}

static cell_error check_out(const cell_spec *s, char *err, size_t errlen)
{
    struct stat st;
    if (stat(s->out, &st) == 0 && S_ISDIR(st.st_mode))
        return bad(err, errlen, "out: %s is a directory (give a file path)", s->out);
    if (s->model) {
        struct stat sm;
        if (stat(s->model, &sm) == 0 && stat(s->out, &st) == 0 && sm.st_dev == st.st_dev && sm.st_ino == st.st_ino)
            return bad(err, errlen, "out: %s is the input model (write the result elsewhere)", s->out);
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
        e = bad(err, errlen, "out: directory %s does not exist", d);
    else if (access(d, W_OK) != 0)
        e = bad(err, errlen, "out: directory %s is not writable", d);
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
    if (!json_text) return bad(err, errlen, "spec: no input");
    json_error_t je;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je);
    if (!root) return bad(err, errlen, "spec: invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    cell_error e = CELL_OK;
    const char *str = NULL;
    if (!json_is_object(root)) {
        e = bad(err, errlen, "spec: must be a JSON object with a \"recipe\"");
        goto done;
    }
    int recipe = 0;
    if (!json_object_get(root, "recipe")) {
        char list[128];
        join_names(list, sizeof list, recipe_names, CELL_RECIPE_COUNT, " | ");
        e = bad(err, errlen, "recipe: required (%s)", list);
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
        e = bad(err, errlen,
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
            e = bad(err, errlen, "baseline: must be an object {\"accuracy\", \"loss\"}");
            goto done;
        }
        if ((e = check_keys(o, "baseline.", k, NULL, err, errlen)) != CELL_OK) goto done;
        if (!json_object_get(o, "accuracy")) {
            e = bad(err, errlen, "baseline.accuracy: required");
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
            e = bad(err, errlen, "eval: must be an object {\"split\", \"max_samples\"}");
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
            e = bad(err, errlen, "finetune: must be an object {\"steps\", \"lr\", \"batch\"}");
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
            e = bad(err, errlen, "calibration: must be an object {\"samples\"}");
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
    default: e = bad(err, errlen, "recipe: unknown");
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

/* ================================================================== events */

#define CELL_MAX_PHASES 16

typedef struct {
    FILE *out;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t ticker;
    int ticker_on, stop, final_sent;
    double t0, last_emit;
    json_t *last;                  /* last progress event (for the heartbeat), owned */
    char phase[32];
    double overall;
    int n_plan;
    struct {
        const char *name;
        double weight;
    } plan[CELL_MAX_PHASES];
    /* training progress */
    const char *train_phase;
    json_t *series;                /* per-epoch series of the train recipe (borrowed) */
} cell_ctx;

static void write_line(cell_ctx *c, json_t *ev)
{
    char *text = json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (text) {
        fputs(text, c->out);
        fputc('\n', c->out);
        fflush(c->out);
        free(text);
    }
    c->last_emit = pl_now();
}

static void *ticker_main(void *arg)
{
    cell_ctx *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        double now = pl_now();
        if (c->last && now - c->last_emit >= CELL_HEARTBEAT_S) {
            json_object_set_new(c->last, "elapsed_s", json_real(round((now - c->t0) * 1000.0) / 1000.0));
            json_object_set_new(c->last, "heartbeat", json_true());
            write_line(c, c->last);
            json_object_del(c->last, "heartbeat");
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void ctx_init(cell_ctx *c, FILE *out)
{
    memset(c, 0, sizeof *c);
    c->out = out;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->t0 = c->last_emit = pl_now();
    c->ticker_on = pthread_create(&c->ticker, NULL, ticker_main, c) == 0;
}

static void ctx_stop(cell_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->ticker_on) pthread_join(c->ticker, NULL);
    c->ticker_on = 0;
}

static void ctx_free(cell_ctx *c)
{
    ctx_stop(c);
    json_decref(c->last);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

static void plan_add(cell_ctx *c, const char *name, double weight)
{
    if (c->n_plan < CELL_MAX_PHASES) {
        c->plan[c->n_plan].name = name;
        c->plan[c->n_plan].weight = weight;
        c->n_plan++;
    }
}

/* Estimated progress of the whole cell at fraction f of phase `phase` (monotone). */
static double plan_overall(cell_ctx *c, const char *phase, double f)
{
    double total = 0.0, before = 0.0, w = 0.0;
    int found = 0;
    for (int i = 0; i < c->n_plan; i++) {
        total += c->plan[i].weight;
        if (!found && strcmp(c->plan[i].name, phase) == 0) {
            found = 1;
            w = c->plan[i].weight;
        } else if (!found) {
            before += c->plan[i].weight;
        }
    }
    double o = found && total > 0 ? (before + w * f) / total : c->overall;
    if (o < c->overall) o = c->overall;
    if (o > 1.0) o = 1.0;
    c->overall = o;
    return o;
}

/* A progress event for phase at fraction f; extra (stolen, may be NULL) adds fields. Written at
 * a phase change, when force is set, or when the last line is CELL_PROGRESS_MIN_S old;
 * otherwise kept as the heartbeat's next line. */
static void progress_ex(cell_ctx *c, const char *phase, double f, const char *plan_phase, double plan_f,
                        json_t *extra, int force)
{
    if (!(f >= 0.0)) f = 0.0;
    if (f > 1.0) f = 1.0;
    pthread_mutex_lock(&c->mu);
    if (c->final_sent) {
        pthread_mutex_unlock(&c->mu);
        json_decref(extra);
        return;
    }
    double now = pl_now();
    json_t *ev = json_object();
    json_object_set_new(ev, "event", json_string("progress"));
    json_object_set_new(ev, "phase", json_string(phase));
    json_object_set_new(ev, "fraction", json_real(round(f * 1e4) / 1e4));
    if (!(plan_f >= 0.0)) plan_f = 0.0;
    if (plan_f > 1.0) plan_f = 1.0;
    json_object_set_new(ev, "overall", json_real(round(plan_overall(c, plan_phase, plan_f) * 1e4) / 1e4));
    json_object_set_new(ev, "elapsed_s", json_real(round((now - c->t0) * 1000.0) / 1000.0));
    if (extra) {
        json_object_update(ev, extra);
        json_decref(extra);
    }
    int changed = strcmp(c->phase, phase) != 0;
    if (force || changed || now - c->last_emit >= CELL_PROGRESS_MIN_S) write_line(c, ev);
    snprintf(c->phase, sizeof c->phase, "%s", phase);
    json_decref(c->last);
    c->last = ev;
    pthread_mutex_unlock(&c->mu);
}

static void progress(cell_ctx *c, const char *phase, double f, json_t *extra, int force)
{
    progress_ex(c, phase, f, phase, f, extra, force);
}

/* The one final event (result or error); stops the heartbeat first. */
static void emit_final(cell_ctx *c, json_t *ev)
{
    ctx_stop(c);
    pthread_mutex_lock(&c->mu);
    if (!c->final_sent) write_line(c, ev);
    c->final_sent = 1;
    pthread_mutex_unlock(&c->mu);
}

static json_t *error_event(cell_error code, const char *message)
{
    json_t *ev = json_object();
    json_object_set_new(ev, "event", json_string("error"));
    json_object_set_new(ev, "code", json_string(cell_error_code(code)));
    json_object_set_new(ev, "message", json_string(message ? message : ""));
    return ev;
}

int cell_emit_error(FILE *out, cell_error code, const char *message)
{
    if (code == CELL_OK) code = CELL_ERR_RUNTIME;
    json_t *ev = error_event(code, message);
    char *text = json_dumps(ev, JSON_COMPACT);
    if (text) fprintf(out, "%s\n", text);
    fflush(out);
    free(text);
    json_decref(ev);
    return cell_error_exit(code);
}

/* ================================================================== SIGTERM guard */

static char g_tmp_path[4200];
static char g_out_path[4096];
static volatile sig_atomic_t g_guard_on, g_out_written;

static void on_term(int sig)
{
    if (g_guard_on) {
        unlink(g_tmp_path);
        if (g_out_written) unlink(g_out_path);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void guard_output(const char *out)
{
    g_guard_on = 0;
    g_out_written = 0;
    if (out && strlen(out) < sizeof g_out_path) {
        snprintf(g_out_path, sizeof g_out_path, "%s", out);
        snprintf(g_tmp_path, sizeof g_tmp_path, "%s.tmp.%ld", out, (long)getpid());
        g_guard_on = 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

static void guard_release(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    g_guard_on = 0;
    g_out_written = 0;
}

/* ================================================================== measurements */

static size_t count_nonzero(const model *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_params; i++) n += m->params[i] != 0.0f;
    return n;
}

/* dst = a copy of src (params and mask). dst is overwritten; free with model_free. */
static int model_copy(model *dst, const model *src, char *err, size_t errlen)
{
    if (model_alloc(dst, &src->cfg, err, errlen) != 0) return -1;
    memcpy(dst->params, src->params, src->n_params * sizeof(float));
    if (src->mask) {
        model_alloc_mask(dst);
        memcpy(dst->mask, src->mask, src->n_params * sizeof(float));
    }
    return 0;
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* Accuracy and mean loss of m on the first ds->n samples, with progress lines for phase.
 * Returns 0 or -1 with err (shape mismatch, non-finite loss is reported as null later). */
static int eval_model(cell_ctx *c, const model *m, const dataset *ds, const char *phase, double *acc, double *loss,
                      char *err, size_t errlen)
{
    if (train_check_compat(m, ds, err, errlen) != 0) return -1;
    if (ds->n < 1) return pl_err(err, errlen, "dataset %s (%s) is empty", ds->name, ds->split);
    int Bb = CELL_EVAL_BATCH < ds->n ? CELL_EVAL_BATCH : ds->n;
    int V = m->cfg.classes;
    size_t img = (size_t)ds->c * ds->h * ds->w;
    model_acts *a = model_acts_new(m, Bb, 0);
    float *x = xalloc_floats((size_t)Bb * img); // x (Bb, C, H, W)
    int *y = xmalloc((size_t)Bb * sizeof(int)); // y (Bb)
    int *idx = xmalloc((size_t)Bb * sizeof(int));
    double loss_sum = 0.0;
    long correct = 0;
    progress(c, phase, 0.0, json_pack("{s:i}", "samples", ds->n), 1);
    for (int start = 0; start < ds->n; start += Bb) {
        int b = ds->n - start < Bb ? ds->n - start : Bb;
        for (int i = 0; i < b; i++) idx[i] = start + i;
        dataset_batch(ds, idx, b, x, y, NULL, 0);
        float l = model_forward(m, a, x, y, b);
        loss_sum += (double)l * b;
        const float *logits = model_acts_logits(a); // logits (b, V)
        for (int i = 0; i < b; i++) correct += argmax(logits + (size_t)i * V, V) == y[i];
        progress(c, phase, (double)(start + b) / ds->n, json_pack("{s:i,s:i}", "samples", ds->n, "done", start + b),
                 0);
    }
    *acc = (double)correct / ds->n;
    *loss = loss_sum / ds->n;
    free(idx);
    free(y);
    free(x);
    model_acts_free(a);
    return 0;
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v); n >= 1. */
static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], dbl_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Inference latency of m and of the baseline m0 on a batch of CELL_LATENCY_BATCH samples of ds
 * (repeated when ds is smaller), timed in pairs: a pass of m0, then a pass of m, so both see the
 * same machine (cells share cores with other cells; a shared machine's speed drifts over
 * seconds, and adjacent passes drift together). 2 untimed pairs, then 5 to 15 timed pairs (stops
 * adding pairs after about 3 s). *ms / *ms0 are the medians of each model's passes, *speedup the
 * median of the per-pair ratios t0 / t. Returns 0 or -1 with err. */
static int measure_latency(cell_ctx *c, const model *m0, const model *m, const dataset *ds, const char *phase,
                           double *ms0, double *ms, double *speedup, char *err, size_t errlen)
{
    if (train_check_compat(m, ds, err, errlen) != 0 || train_check_compat(m0, ds, err, errlen) != 0) return -1;
    if (ds->n < 1) return pl_err(err, errlen, "dataset %s (%s) is empty", ds->name, ds->split);
    const int B = CELL_LATENCY_BATCH, warm = 2, min_reps = 5, max_reps = 15;
    size_t img = (size_t)ds->c * ds->h * ds->w;
    float *x = xalloc_floats((size_t)B * img); // x (B, C, H, W)
    int *idx = xmalloc((size_t)B * sizeof(int));
    for (int i = 0; i < B; i++) idx[i] = i % ds->n;
    dataset_batch(ds, idx, B, x, NULL, NULL, 0);
    model_acts *a = model_acts_new(m, B, 0), *a0 = model_acts_new(m0, B, 0);
    double t[15], t0[15], r[15];
    int n = 0;
    double t_begin = pl_now();
    progress(c, phase, 0.0, NULL, 1);
    for (int i = 0; i < warm; i++) {
        model_forward(m0, a0, x, NULL, B);
        model_forward(m, a, x, NULL, B);
    }
    while (n < max_reps) {
        double s0 = pl_now();
        model_forward(m0, a0, x, NULL, B);
        double s1 = pl_now();
        model_forward(m, a, x, NULL, B);
        double s2 = pl_now();
        t0[n] = s1 - s0;
        t[n] = s2 - s1;
        r[n] = t[n] > 0 ? t0[n] / t[n] : NAN;
        n++;
        progress(c, phase, (double)n / max_reps, NULL, 0);
        if (n >= min_reps && pl_now() - t_begin > 3.0) break;
    }
    *ms = 1000.0 * median_of(t, n);
    *ms0 = 1000.0 * median_of(t0, n);
    *speedup = median_of(r, n);
    model_acts_free(a);
    model_acts_free(a0);
    free(idx);
    free(x);
    return 0;
}

static json_t *layers_json(const model *m)
{
    json_t *dims = json_array();
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const layer_dims *ld = &m->cfg.layers[i];
        json_array_append_new(dims, json_pack("{s:i,s:i,s:i,s:i,s:i,s:i}", "index", m->cfg.orig_index[i], "E", ld->E,
                                              "N", ld->N, "R", ld->R, "K", ld->K, "M", ld->M));
    }
    return dims;
}

static json_t *parse_or_null(char *text) /* frees text */
{
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    return j ? j : json_null();
}

/* ================================================================== training */

static void on_train_progress(const train_progress *p, void *user)
{
    cell_ctx *c = user;
    json_t *x = json_object();
    json_object_set_new(x, "epoch", json_integer(p->epoch));
    json_object_set_new(x, "epochs", json_integer(p->epochs));
    json_object_set_new(x, "step", json_integer(p->step));
    json_object_set_new(x, "total_steps", json_integer(p->total_steps));
    json_object_set_new(x, "loss", jnum(p->loss));
    json_object_set_new(x, "lr", jnum(p->lr));
    json_object_set_new(x, "samples_per_s", jnum(p->samples_per_s));
    json_object_set_new(x, "eta_s", jnum(p->eta_s));
    if (p->epoch_end) {
        json_object_set_new(x, "train_loss", jnum(p->train_loss));
        json_object_set_new(x, "train_acc", jnum(p->train_acc));
        if (p->test_acc >= 0) {
            json_object_set_new(x, "test_loss", jnum(p->test_loss));
            json_object_set_new(x, "test_acc", jnum(p->test_acc));
        }
        if (c->series) {
            json_t *row = json_pack("{s:i,s:i,s:o,s:o}", "epoch", p->epoch, "step", (int)p->step, "train_loss",
                                    jnum(p->train_loss), "train_acc", jnum(p->train_acc));
            json_object_set_new(row, "test_loss", p->test_acc >= 0 ? jnum(p->test_loss) : json_null());
            json_object_set_new(row, "test_acc", p->test_acc >= 0 ? jnum(p->test_acc) : json_null());
            json_array_append_new(c->series, row);
        }
    }
    progress(c, c->train_phase ? c->train_phase : "train", p->fraction, x, p->epoch_end);
}

/* Fine-tune m on train for `steps` optimizer steps (AdamW, cosine lr -> lr/100, masks fixed).
 * *info receives a JSON summary (owned by the caller). Returns 0 or -1 with err. */
static int finetune(cell_ctx *c, model *m, const dataset *train, long steps, float lr, int batch, uint64_t seed,
                    json_t **info, char *err, size_t errlen)
{
    train_config tc;
    train_config_default(&tc);
    tc.batch = batch;
    int Bb = batch < train->n ? batch : train->n;
    long spe = train->n / Bb;
    if (spe < 1) spe = 1;
    tc.epochs = (int)((steps + spe - 1) / spe);
    if (tc.epochs < 1) tc.epochs = 1;
    tc.max_steps = steps;
    tc.opt.lr = lr;
    tc.opt.min_lr = lr * 0.01f;
    tc.seed = seed;
    tc.report_every_s = CELL_PROGRESS_MIN_S;
    tc.progress = on_train_progress;
    tc.progress_user = c;
    c->train_phase = "finetune";
    progress(c, "finetune", 0.0, json_pack("{s:i}", "total_steps", (int)steps), 1);
    train_result tr;
    if (train_run(m, train, NULL, &tc, &tr, err, errlen) != 0) return -1;
    *info = json_object();
    json_object_set_new(*info, "steps", json_integer(tr.steps));
    json_object_set_new(*info, "lr", jnum(lr));
    json_object_set_new(*info, "batch", json_integer(Bb));
    json_object_set_new(*info, "train_loss", jnum(tr.train_loss));
    json_object_set_new(*info, "train_acc", jnum(tr.train_acc));
    json_object_set_new(*info, "seconds", jnum(tr.seconds));
    return 0;
}

/* ================================================================== recipes */

/* What a recipe hands back to the common tail. */
typedef struct {
    model produced;   /* the model written to out and evaluated */
    model twin;       /* realised (shrunk) twin when produced is masked structurally; n_params 0 if none */
    int have_produced;
    json_t *extra;    /* recipe fields merged into the metrics (owned) */
} recipe_out;

typedef struct {
    const cell_spec *s;
    cell_ctx *c;
    model *input;             /* the loaded / created input model */
    const dataset *eval;      /* evaluation view (max_samples applied) */
    const dataset *train;     /* NULL unless loaded */
    char *err;
    size_t errlen;
} recipe_env;

static int needs_calib(prune_criterion c) { return c == PCR_ACTIVATION || c == PCR_TAYLOR || c == PCR_WANDA; }

static void build_prune_spec(const cell_spec *s, prune_spec *ps, prune_apply structured_apply)
{
    memset(ps, 0, sizeof *ps);
    ps->n = s->n_entries;
    ps->entries = xcalloc((size_t)(s->n_entries ? s->n_entries : 1), sizeof *ps->entries);
    for (int i = 0; i < s->n_entries; i++) {
        ps->entries[i] = s->entries[i];
        if (ps->entries[i].granularity == PG_STRUCTURED) ps->entries[i].apply = structured_apply;
    }
    ps->finetune_steps = 0;
    ps->finetune_lr = s->finetune_lr;
    ps->calib_samples = s->calib_samples;
    ps->seed = s->seed;
}

/* Checks of spec fields that depend on the input model (bad_spec with the field). */
static cell_error check_against_model(const cell_spec *s, const model *in, char *err, size_t errlen)
{
    if (s->recipe == CELL_SENSITIVITY && s->layer >= in->cfg.n_layers)
        return bad(err, errlen, "layer: %d is out of range (the model has %d layers)", s->layer, in->cfg.n_layers);
    for (int i = 0; i < s->n_entries; i++) {
        const prune_entry *e = &s->entries[i];
        int any = 0;
        for (int l = 0; l < in->cfg.n_layers; l++) {
            if (s->layer >= 0 && l != s->layer) continue;
            any |= prune_component_units(in, e->component, l) > 0 || prune_component_params(in, e->component, l) > 0;
        }
        if (!any)
            return bad(err, errlen, "%s: %s has no %s", s->entry_field[i], s->layer >= 0 ? "the layer" : "the model",
                       prune_component_name(e->component));
    }
    if (s->recipe == CELL_LITE) {
        lite_spec ls;
        char e2[PL_ERRLEN];
        if (lite_spec_parse(s->sub_spec, &ls, e2, sizeof e2) != 0) return bad(err, errlen, "lite.%s", e2);
        if (lite_target_check(in, &ls.target, e2, sizeof e2) != 0) return bad(err, errlen, "lite.%s", e2);
    }
    if (s->recipe == CELL_RSST) {
        rsst_spec rs;
        char e2[PL_ERRLEN];
        int rc = rsst_spec_parse(s->sub_spec, in, &rs, e2, sizeof e2);
        if (rc == 0) rsst_spec_free(&rs);
        if (rc != 0) return bad(err, errlen, "rsst.%s", e2);
    }
    return CELL_OK;
}

static cell_error run_prune(recipe_env *env, recipe_out *ro)
{
    const cell_spec *s = env->s;
    char *err = env->err;
    size_t errlen = env->errlen;
    const model *in = env->input;
    int structured_mask = 0;
    for (int i = 0; i < s->n_entries; i++)
        structured_mask |= s->entries[i].granularity == PG_STRUCTURED && s->entries[i].apply == PA_MASK;

    prune_spec ps;
    build_prune_spec(s, &ps, structured_mask ? PA_MASK : PA_SHRINK);
    char e2[PL_ERRLEN];
    if (model_copy(&ro->produced, in, e2, sizeof e2) != 0) {
        prune_spec_free(&ps);
        pl_err(err, errlen, "copying the model: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    ro->have_produced = 1;
    progress(env->c, "prune", 0.0, NULL, 1);
    char *report = NULL;
    if (prune_apply_spec_report(&ro->produced, &ps, env->train, &report, e2, sizeof e2) != 0) {
        prune_spec_free(&ps);
        pl_err(err, errlen, "pruning: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    json_object_set_new(ro->extra, "entries", parse_or_null(report));
    if (structured_mask) {
        /* the realised model: the same selection, shrunk (same calibration seed -> same units) */
        prune_spec tw;
        build_prune_spec(s, &tw, PA_SHRINK);
        if (model_copy(&ro->twin, in, e2, sizeof e2) != 0 ||
            prune_apply_spec(&ro->twin, &tw, env->train, e2, sizeof e2) != 0) {
            prune_spec_free(&tw);
            prune_spec_free(&ps);
            pl_err(err, errlen, "shrinking the realised model: %s", e2);
            return CELL_ERR_RUNTIME;
        }
        prune_spec_free(&tw);
    }
    progress(env->c, "prune", 1.0, NULL, 1);
    prune_spec_free(&ps);
    return CELL_OK;
}

static void on_lite_progress(const char *phase, double fraction, void *user)
{
    progress(user, phase, fraction, NULL, fraction <= 0.0 || fraction >= 1.0);
}

static cell_error run_lite(recipe_env *env, recipe_out *ro, long *ft_steps, float *ft_lr, int *ft_batch)
{
    const cell_spec *s = env->s;
    char e2[PL_ERRLEN];
    lite_spec ls;
    if (lite_spec_parse(s->sub_spec, &ls, e2, sizeof e2) != 0) return bad(env->err, env->errlen, "lite.%s", e2);
    if (lite_build(env->input, &ls, env->train, &ro->produced, on_lite_progress, env->c, e2, sizeof e2) != 0) {
        ro->have_produced = 1;
        pl_err(env->err, env->errlen, "building the lite model: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    ro->have_produced = 1;
    json_object_set_new(ro->extra, "lite_spec", parse_or_null(xstrdup(s->sub_spec)));
    /* fine-tuning runs in the common tail */
    if (ls.finetune_epochs > 0 && env->train) {
        int Bb = ls.finetune_batch < env->train->n ? ls.finetune_batch : env->train->n;
        *ft_steps = (long)ls.finetune_epochs * (env->train->n / (Bb > 0 ? Bb : 1));
    } else {
        *ft_steps = ls.finetune_steps;
    }
    *ft_lr = ls.finetune_lr;
    *ft_batch = ls.finetune_batch;
    return CELL_OK;
}

static cell_error run_train(recipe_env *env, recipe_out *ro)
{
    const cell_spec *s = env->s;
    char e2[PL_ERRLEN];
    if (model_copy(&ro->produced, env->input, e2, sizeof e2) != 0) {
        pl_err(env->err, env->errlen, "copying the model: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    ro->have_produced = 1;
    train_config tc;
    train_config_default(&tc);
    tc.epochs = s->epochs;
    tc.batch = s->batch;
    tc.max_steps = s->max_steps;
    tc.warmup_steps = s->warmup;
    tc.opt.kind = s->optimizer_sgd ? OPTIM_SGD : OPTIM_ADAMW;
    tc.opt.lr = s->lr;
    tc.opt.min_lr = s->min_lr;
    tc.opt.weight_decay = s->weight_decay;
    tc.opt.momentum = s->momentum;
    tc.opt.clip = s->clip;
    tc.seed = s->seed;
    tc.augment = s->augment;
    tc.report_every_s = CELL_PROGRESS_MIN_S;
    tc.progress = on_train_progress;
    tc.progress_user = env->c;
    json_t *series = json_array();
    env->c->train_phase = "train";
    env->c->series = series;
    progress(env->c, "train", 0.0, NULL, 1);
    train_result tr;
    int rc = train_run(&ro->produced, env->train, env->eval, &tc, &tr, e2, sizeof e2);
    env->c->series = NULL;
    if (rc != 0) {
        json_decref(series);
        pl_err(env->err, env->errlen, "training: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    json_t *t = json_object();
    json_object_set_new(t, "epochs", json_integer(s->epochs));
    json_object_set_new(t, "epochs_done", json_integer(tr.epochs_done));
    json_object_set_new(t, "steps", json_integer(tr.steps));
    json_object_set_new(t, "batch", json_integer(s->batch));
    json_object_set_new(t, "optimizer", json_string(s->optimizer_sgd ? "sgd" : "adamw"));
    json_object_set_new(t, "lr", jnum(s->lr));
    json_object_set_new(t, "train_loss", jnum(tr.train_loss));
    json_object_set_new(t, "train_acc", jnum(tr.train_acc));
    json_object_set_new(t, "seconds", jnum(tr.seconds));
    json_object_set_new(t, "samples_per_s",
                        jnum(tr.seconds > 0 ? (double)tr.steps * (s->batch < env->train->n ? s->batch : env->train->n) /
                                                  tr.seconds
                                            : NAN));
    json_object_set_new(ro->extra, "train", t);
    json_object_set_new(ro->extra, "series", series);
    return CELL_OK;
}

static void on_rsst_progress(const rsst_progress *p, void *user)
{
    json_t *x = json_object();
    json_object_set_new(x, "round", json_integer(p->round));
    json_object_set_new(x, "rounds", json_integer(p->rounds));
    json_object_set_new(x, "rsst_fraction", jnum(p->fraction));
    if (p->steps > 0) {
        json_object_set_new(x, "step", json_integer(p->step));
        json_object_set_new(x, "steps", json_integer(p->steps));
        json_object_set_new(x, "loss", jnum(p->loss));
    }
    if (strcmp(p->phase, "regularise") == 0) {
        json_object_set_new(x, "lambda", jnum(p->lambda));
        json_object_set_new(x, "penalty", jnum(p->penalty));
    }
    int edge = p->phase_fraction <= 0.0 || p->phase_fraction >= 1.0;
    progress_ex(user, p->phase, p->phase_fraction, "rsst", p->fraction, x, edge);
}

/* The rsst recipe: rsst_run on a copy of the input (rounds of select / regularise / remove /
 * refill / rewind / fine-tune, evaluated on the evaluation split every round). */
static cell_error run_rsst(recipe_env *env, recipe_out *ro)
{
    char e2[PL_ERRLEN];
    rsst_spec rs;
    if (rsst_spec_parse(env->s->sub_spec, env->input, &rs, e2, sizeof e2) != 0)
        return bad(env->err, env->errlen, "rsst.%s", e2);
    if (model_copy(&ro->produced, env->input, e2, sizeof e2) != 0) {
        rsst_spec_free(&rs);
        pl_err(env->err, env->errlen, "copying the model: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    ro->have_produced = 1;
    rsst_options opt;
    memset(&opt, 0, sizeof opt);
    opt.progress = on_rsst_progress;
    opt.progress_user = env->c;
    opt.report_every_s = CELL_PROGRESS_MIN_S;
    opt.eval_batch = CELL_EVAL_BATCH;
    rsst_result res;
    memset(&res, 0, sizeof res);
    progress_ex(env->c, "rsst", 0.0, "rsst", 0.0, NULL, 1);
    int rc = rsst_run(&ro->produced, &rs, env->train, env->eval, &opt, &res, e2, sizeof e2);
    rsst_spec_free(&rs);
    if (rc != 0) {
        rsst_result_free(&res);
        pl_err(env->err, env->errlen, "rsst: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    json_t *r = parse_or_null(rsst_result_json(&res));
    rsst_result_free(&res);
    if (json_is_object(r)) {
        json_t *series = json_object_get(r, "series");
        json_object_set(ro->extra, "series", series ? series : json_null());
        json_object_del(r, "series");
    }
    json_object_set_new(ro->extra, "rsst", r);
    json_object_set_new(ro->extra, "rsst_spec", parse_or_null(xstrdup(env->s->sub_spec)));
    return CELL_OK;
}

/* Create the model of a train cell that has no "model". */
static cell_error create_model(const cell_spec *s, model *m, char *err, size_t errlen)
{
    int C, H, W, classes, ch;
    float mean[3], std[3];
    if (dataset_shape(s->dataset, &C, &H, &W, &classes) != 0 || dataset_norm(s->dataset, &ch, mean, std) != 0)
        return bad(err, errlen, "dataset: unknown dataset \"%s\"", s->dataset);
    model_config cfg;
    char e2[PL_ERRLEN];
    if (model_config_from_hparams(&cfg, &s->hp, C, H, W, classes, e2, sizeof e2) != 0)
        return bad(err, errlen, "%s: %s", s->have_dims ? "d_model" : "preset", e2);
    snprintf(cfg.dataset, sizeof cfg.dataset, "%s", s->dataset);
    for (int c = 0; c < 3; c++) {
        cfg.norm_mean[c] = mean[c];
        cfg.norm_std[c] = std[c];
    }
    snprintf(cfg.provenance, sizeof cfg.provenance,
             "{\"created_by\":\"prunelab cell\",\"preset\":\"%s\",\"seed\":%llu}", s->preset,
             (unsigned long long)s->seed);
    if (model_create(m, &cfg, s->seed, e2, sizeof e2) != 0) {
        pl_err(err, errlen, "cannot create the model: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    return CELL_OK;
}

/* ================================================================== the run */

static int recipe_trains(const cell_spec *s)
{
    if (s->recipe == CELL_TRAIN || s->recipe == CELL_RSST) return 1;
    if (s->finetune_steps > 0) return 1;
    for (int i = 0; i < s->n_entries; i++)
        if (needs_calib(s->entries[i].criterion) &&
            !(s->entries[i].granularity == PG_STRUCTURED && s->entries[i].component == PC_CONV1D))
            return 1;
    if (s->recipe == CELL_LITE) {
        lite_spec ls;
        char e2[PL_ERRLEN];
        if (lite_spec_parse(s->sub_spec, &ls, e2, sizeof e2) == 0)
            return needs_calib(ls.criterion) || ls.finetune_steps > 0 || ls.finetune_epochs > 0;
    }
    return 0;
}

static cell_error cell_execute(cell_ctx *c, const cell_spec *s, json_t *metrics, char *err, size_t errlen)
{
    cell_error rc = CELL_OK;
    char e2[PL_ERRLEN];
    model input;
    memset(&input, 0, sizeof input);
    recipe_out ro;
    memset(&ro, 0, sizeof ro);
    ro.extra = json_object();
    dataset ds_eval, ds_train;
    int have_eval = 0, have_train = 0;
    dataset eval_view;

    if (s->threads > 0) blas_set_threads(s->threads);
    int nthreads = blas_threads();
    ops_set_threads(nthreads > 0 ? nthreads : 1);

    /* phase plan (weights are rough shares of the wall time) */
    int ft_planned = (s->finetune_steps > 0 && s->recipe != CELL_RSST) || s->recipe == CELL_LITE;
    plan_add(c, "load", 0.02);
    if (!s->have_baseline) plan_add(c, "baseline", 0.12);
    if (s->recipe == CELL_TRAIN) plan_add(c, "train", 0.7);
    if (s->recipe == CELL_RSST) plan_add(c, "rsst", 0.7);
    if (s->recipe == CELL_ABLATION || s->recipe == CELL_SENSITIVITY || s->recipe == CELL_JOINT)
        plan_add(c, "prune", 0.1);
    if (s->recipe == CELL_LITE) {
        plan_add(c, "score", 0.05);
        plan_add(c, "build", 0.03);
    }
    if (ft_planned) plan_add(c, "eval_pruned", 0.12);
    if (ft_planned) plan_add(c, "finetune", 0.5);
    plan_add(c, "eval", 0.12);
    plan_add(c, "latency", 0.04);
    plan_add(c, "save", 0.01);

    progress(c, "load", 0.0, json_pack("{s:s}", "recipe", cell_recipe_name(s->recipe)), 1);
    if (s->model) {
        if (model_load(&input, s->model, s->dataset, e2, sizeof e2) != 0) {
            model_free(&input);
            memset(&input, 0, sizeof input);
            rc = CELL_ERR_BAD_MODEL;
            pl_err(err, errlen, "model: %s", e2);
            goto out;
        }
        if (!prune_is_mamba_model(&input)) {
            rc = CELL_ERR_BAD_MODEL;
            pl_err(err, errlen, "model: %s is not a patch-Mamba model with the expected tensor names and shapes",
                   s->model);
            goto out;
        }
    } else if ((rc = create_model(s, &input, err, errlen)) != CELL_OK) {
        goto out;
    }
    if ((rc = check_against_model(s, &input, err, errlen)) != CELL_OK) goto out;
    const char *split = s->eval_train_split ? "train" : "test";
    if (dataset_load(&ds_eval, s->dataset, s->data_dir, split, e2, sizeof e2) != 0) {
        rc = CELL_ERR_DATA;
        pl_err(err, errlen, "dataset: cannot load %s (%s split): %s", s->dataset, split, e2);
        goto out;
    }
    have_eval = 1;
    if (train_check_compat(&input, &ds_eval, e2, sizeof e2) != 0) {
        rc = bad(err, errlen, "dataset: %s", e2);
        goto out;
    }
    eval_view = ds_eval; /* shallow: shares x / y, never freed */
    if (s->eval_max_samples > 0 && s->eval_max_samples < eval_view.n) eval_view.n = s->eval_max_samples;
    if (recipe_trains(s)) {
        if (s->eval_train_split) {
            ds_train = ds_eval;
        } else {
            if (dataset_load(&ds_train, s->dataset, s->data_dir, "train", e2, sizeof e2) != 0) {
                rc = CELL_ERR_DATA;
                pl_err(err, errlen, "dataset: cannot load %s (train split): %s", s->dataset, e2);
                goto out;
            }
            have_train = 1;
        }
    }
    const dataset *train = recipe_trains(s) ? &ds_train : NULL;
    progress(c, "load", 1.0, NULL, 1);

    /* baseline */
    double base_acc = s->baseline_accuracy, base_loss = s->have_baseline_loss ? s->baseline_loss : NAN;
    if (!s->have_baseline && eval_model(c, &input, &eval_view, "baseline", &base_acc, &base_loss, e2, sizeof e2) != 0) {
        rc = CELL_ERR_RUNTIME;
        pl_err(err, errlen, "evaluating the baseline: %s", e2);
        goto out;
    }

    /* the recipe */
    recipe_env env = {.s = s, .c = c, .input = &input, .eval = &eval_view, .train = train, .err = err,
                      .errlen = errlen};
    long ft_steps = s->finetune_steps;
    float ft_lr = s->finetune_lr;
    int ft_batch = s->finetune_batch;
    switch (s->recipe) {
    case CELL_TRAIN: rc = run_train(&env, &ro); break;
    case CELL_ABLATION:
    case CELL_SENSITIVITY:
    case CELL_JOINT: rc = run_prune(&env, &ro); break;
    case CELL_LITE: rc = run_lite(&env, &ro, &ft_steps, &ft_lr, &ft_batch); break;
    case CELL_RSST: rc = run_rsst(&env, &ro); break;
    default:
        rc = CELL_ERR_UNAVAILABLE;
        pl_err(err, errlen, "recipe not available: %s", cell_recipe_name(s->recipe));
    }
    if (rc != CELL_OK) goto out;
    if (s->recipe == CELL_TRAIN || s->recipe == CELL_RSST) ft_steps = 0; /* fine-tuned inside the recipe */

    model *prod = &ro.produced;
    if (ft_steps > 0) {
        if (!train) {
            rc = CELL_ERR_RUNTIME;
            pl_err(err, errlen, "fine-tuning needs the train split (not loaded)");
            goto out;
        }
        double pa, pl;
        if (eval_model(c, prod, &eval_view, "eval_pruned", &pa, &pl, e2, sizeof e2) != 0) {
            rc = CELL_ERR_RUNTIME;
            pl_err(err, errlen, "evaluating the pruned model: %s", e2);
            goto out;
        }
        json_object_set_new(ro.extra, "pruned",
                            json_pack("{s:o,s:o,s:o,s:o}", "accuracy", jnum(pa), "loss", jnum(pl), "delta_accuracy",
                                      jnum(pa - base_acc), "delta_loss", jnum(pl - base_loss)));
        json_t *fi = NULL;
        if (finetune(c, prod, train, ft_steps, ft_lr, ft_batch, s->seed, &fi, e2, sizeof e2) != 0) {
            rc = CELL_ERR_RUNTIME;
            pl_err(err, errlen, "fine-tuning: %s", e2);
            goto out;
        }
        json_object_set_new(ro.extra, "finetune", fi);
    }

    double acc, loss;
    if (eval_model(c, prod, &eval_view, "eval", &acc, &loss, e2, sizeof e2) != 0) {
        rc = CELL_ERR_RUNTIME;
        pl_err(err, errlen, "evaluation: %s", e2);
        goto out;
    }
    const model *realised = ro.twin.n_params ? &ro.twin : prod;
    double ms = NAN, base_ms = NAN, speedup = NAN;
    if (measure_latency(c, &input, realised, &eval_view, "latency", &base_ms, &ms, &speedup, e2, sizeof e2) != 0) {
        rc = CELL_ERR_RUNTIME;
        pl_err(err, errlen, "measuring latency: %s", e2);
        goto out;
    }
    if (s->out) {
        progress(c, "save", 0.0, json_pack("{s:s}", "out", s->out), 1);
        if (model_save(prod, s->out, e2, sizeof e2) != 0) {
            rc = CELL_ERR_RUNTIME;
            pl_err(err, errlen, "out: cannot write %s: %s", s->out, e2);
            goto out;
        }
        g_out_written = 1;
    }

    /* metrics */
    json_object_set_new(metrics, "recipe", json_string(cell_recipe_name(s->recipe)));
    json_object_set_new(metrics, "accuracy", jnum(acc));
    json_object_set_new(metrics, "loss", jnum(loss));
    json_object_set_new(metrics, "baseline_accuracy", jnum(base_acc));
    json_object_set_new(metrics, "baseline_loss", jnum(base_loss));
    json_object_set_new(metrics, "baseline_source", json_string(s->have_baseline ? "given" : "measured"));
    json_object_set_new(metrics, "delta_accuracy", jnum(acc - base_acc));
    json_object_set_new(metrics, "delta_loss", jnum(loss - base_loss));
    json_object_set_new(metrics, "eval", json_pack("{s:s,s:i}", "split", split, "n", eval_view.n));
    json_object_set_new(metrics, "params", json_integer((json_int_t)prod->n_params));
    json_object_set_new(metrics, "params_nonzero", json_integer((json_int_t)count_nonzero(prod)));
    json_object_set_new(metrics, "params_realised", json_integer((json_int_t)realised->n_params));
    json_object_set_new(metrics, "params_baseline", json_integer((json_int_t)input.n_params));
    json_object_set_new(metrics, "params_baseline_nonzero", json_integer((json_int_t)count_nonzero(&input)));
    json_object_set_new(metrics, "sparsity", parse_or_null(prune_sparsity_json(prod)));
    json_object_set_new(metrics, "flops_per_sample", jnum(model_flops_per_sample(&realised->cfg)));
    json_object_set_new(metrics, "baseline_flops_per_sample", jnum(model_flops_per_sample(&input.cfg)));
    json_object_set_new(metrics, "latency_batch", json_integer(CELL_LATENCY_BATCH));
    json_object_set_new(metrics, "latency_ms_per_batch", jnum(ms));
    json_object_set_new(metrics, "samples_per_s", jnum(ms > 0 ? 1000.0 * CELL_LATENCY_BATCH / ms : NAN));
    json_object_set_new(metrics, "baseline_latency_ms_per_batch", jnum(base_ms));
    json_object_set_new(metrics, "baseline_samples_per_s", jnum(base_ms > 0 ? 1000.0 * CELL_LATENCY_BATCH / base_ms : NAN));
    json_object_set_new(metrics, "speedup", jnum(speedup));
    json_object_set_new(metrics, "layers", layers_json(realised));
    json_object_update(metrics, ro.extra);
    json_object_set_new(metrics, "out", s->out ? json_string(s->out) : json_null());
    json_object_set_new(metrics, "seed", json_integer((json_int_t)s->seed));
    json_object_set_new(metrics, "peak_rss_kb", json_integer(pl_peak_rss_kb()));
    json_object_set_new(metrics, "wall_s", jnum(pl_now() - c->t0));
    json_object_set_new(metrics, "blas_kernel", json_string(blas_kernel()));
    json_object_set_new(metrics, "threads", json_integer(blas_threads()));
out:
    if (ro.have_produced) model_free(&ro.produced);
    if (ro.twin.n_params) model_free(&ro.twin);
    json_decref(ro.extra);
    model_free(&input);
    if (have_train) dataset_free(&ds_train);
    if (have_eval) dataset_free(&ds_eval);
    return rc;
}

int cell_run_text(const char *json_text, FILE *out)
{
    char err[PL_ERRLEN] = "";
    cell_spec s;
    cell_error e = cell_spec_parse(json_text, &s, err, sizeof err);
    if (e != CELL_OK) {
        fprintf(stderr, "prunelab cell: %s: %s\n", cell_error_code(e), err);
        return cell_emit_error(out, e, err);
    }
    guard_output(s.out);
    cell_ctx c;
    ctx_init(&c, out);
    json_t *metrics = json_object();
    e = cell_execute(&c, &s, metrics, err, sizeof err);
    json_t *ev;
    if (e == CELL_OK) {
        ev = json_object();
        json_object_set_new(ev, "event", json_string("result"));
        json_object_set_new(ev, "metrics", metrics);
        metrics = NULL;
    } else {
        fprintf(stderr, "prunelab cell: %s: %s\n", cell_error_code(e), err);
        ev = error_event(e, err);
    }
    emit_final(&c, ev);
    json_decref(ev);
    json_decref(metrics);
    ctx_free(&c);
    guard_release();
    cell_spec_free(&s);
    return cell_error_exit(e);
}
