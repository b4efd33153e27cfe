/* jobspec.c — a job POST body -> validated, expanded cell specs (see jobspec.h).
 *
 * Design: one pass over the body per type. Unknown keys are refused first (so a typo is never
 * silently ignored), then each field is checked in a fixed order, so the error names the first
 * offending field path. The grid size is computed and capped before any cell is built. Names
 * (components, criteria, ...) come from spec/vocab.h, and every expanded cell is parsed by the
 * engine's own cell parser (spec_cell_parse + spec_cell_check against the model's shape), so a
 * job is refused at submission for anything its cells would be refused for. Cells are built as jansson objects from a shared base (recipe, model, dataset, seed,
 * eval, calibration, finetune) and serialised with sorted keys.
 *
 * Ownership: jobspec_expand fills a jobspec whose strings and cell array it owns; jobspec_free
 * releases them. The body is only read. */
#include "jobspec.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spec.h"
#include "vocab.h"

static const char *const SPLITS[] = {"test", "train", NULL};
#define CRITERIA spec_criterion_names
#define GRANULARITIES spec_granularity_names
#define SCOPES spec_scope_names
#define APPLIES spec_apply_names
#define PRESETS spec_preset_names
#define OPTIMIZERS spec_optimizer_names

int jobspec_info_layers(const char *info_json)
{
    if (!info_json) return 0;
    json_t *root = json_loads(info_json, 0, NULL);
    if (!root) return 0;
    int n = 0;
    json_t *cfg = json_object_get(root, "config");
    json_t *v = cfg ? json_object_get(cfg, "n_layers") : NULL;
    if (!json_is_integer(v)) v = json_object_get(root, "n_layers");
    if (json_is_integer(v)) {
        n = (int)json_integer_value(v);
    } else {
        v = json_object_get(root, "layers");
        if (json_is_integer(v)) n = (int)json_integer_value(v);
        else if (json_is_array(v)) n = (int)json_array_size(v);
    }
    json_decref(root);
    return n > 0 ? n : 0;
}

const char *jobspec_model_name(const json_t *body)
{
    json_t *m = json_object_get(body, "model");
    return json_is_string(m) ? json_string_value(m) : NULL;
}

void jobspec_free(jobspec *js)
{
    if (!js) return;
    free(js->model);
    free(js->out);
    free(js->dataset);
    free(js->spec_json);
    for (size_t i = 0; i < js->n_cells; i++) free(js->cells[i]);
    free(js->cells);
    memset(js, 0, sizeof *js);
}

/* ------------------------------------------------------------------ error helpers */

__attribute__((format(printf, 4, 5))) static int fail(jobspec_error *e, const char *code,
                                                      const char *field, const char *fmt, ...)
{
    snprintf(e->code, sizeof e->code, "%s", code);
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (field && *field) snprintf(e->message, sizeof e->message, "%s: %s", field, msg);
    else snprintf(e->message, sizeof e->message, "%s", msg);
    return -1;
}

static int in_list(const char *s, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0) return 1;
    return 0;
}

static void list_text(const char *const *list, char *buf, size_t len)
{
    buf[0] = 0;
    size_t used = 0;
    for (int i = 0; list[i] && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", list[i]);
}

/* Refuse keys of obj not in allowed (NULL-terminated); prefix is the object's path ("" at the
 * top). Returns 0 or -1 with e. */
static int check_keys(const json_t *obj, const char *const *allowed, const char *prefix, jobspec_error *e)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        if (!in_list(key, allowed)) {
            char field[128];
            snprintf(field, sizeof field, "%s%s%s", prefix, *prefix ? "." : "", key);
            return fail(e, "unknown_field", field, "unknown field");
        }
    }
    return 0;
}

/* Optional integer in [lo, hi]: 0 (absent: *present 0) or -1. */
static int get_int(const json_t *obj, const char *key, const char *field, long long lo, long long hi,
                   long long *out, int *present, jobspec_error *e)
{
    json_t *v = json_object_get(obj, key);
    if (present) *present = v != NULL;
    if (!v) return 0;
    if (!json_is_integer(v)) return fail(e, "invalid_value", field, "must be an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return fail(e, "invalid_value", field, "%lld is outside [%lld, %lld]", x, lo, hi);
    *out = x;
    return 0;
}

/* Optional finite number with lo <= x (lo_open: lo < x) and x <= hi. */
static int get_num(const json_t *obj, const char *key, const char *field, double lo, int lo_open,
                   double hi, int *present, jobspec_error *e)
{
    json_t *v = json_object_get(obj, key);
    if (present) *present = v != NULL;
    if (!v) return 0;
    if (!json_is_number(v)) return fail(e, "invalid_value", field, "must be a number");
    double x = json_number_value(v);
    if (!isfinite(x) || (lo_open ? x <= lo : x < lo) || x > hi)
        return fail(e, "invalid_value", field, "%g is outside %c%g, %g]", x, lo_open ? '(' : '[', lo, hi);
    return 0;
}

/* Optional string from list. */
static int get_choice(const json_t *obj, const char *key, const char *const *list, jobspec_error *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    char known[160];
    list_text(list, known, sizeof known);
    if (!json_is_string(v)) return fail(e, "invalid_value", key, "must be a string (one of %s)", known);
    if (!in_list(json_string_value(v), list))
        return fail(e, "invalid_value", key, "'%.60s' is not one of %s", json_string_value(v), known);
    return 0;
}

/* A rate: a number in [0, 1). */
static int check_rate(const json_t *v, const char *field, jobspec_error *e)
{
    if (!json_is_number(v)) return fail(e, "invalid_value", field, "must be a number in [0, 1)");
    double r = json_number_value(v);
    if (!isfinite(r) || r < 0 || r >= 1) return fail(e, "invalid_value", field, "%g is outside [0, 1)", r);
    return 0;
}

/* A component name; structured (granularity structured) refuses components without units.
 * Returns the component or -1. */
static int check_component(const json_t *v, const char *field, int structured, jobspec_error *e)
{
    spec_error se;
    prune_component c;
    if (spec_parse_component((json_t *)v, field, &c, &se) != 0)
        return fail(e, se.code, field, "%s", se.message + strlen(field) + 2);
    if (structured && !prune_component_unit(c))
        return fail(e, "invalid_value", field, "%s has no structured unit (use unstructured)", prune_component_name(c));
    return (int)c;
}

/* A non-empty array named key (required). Returns its size or -1. */
static long get_array(const json_t *body, const char *key, jobspec_error *e)
{
    json_t *a = json_object_get(body, key);
    if (!a) return fail(e, "missing_field", key, "required");
    if (!json_is_array(a)) return fail(e, "invalid_value", key, "must be an array");
    if (json_array_size(a) == 0) return fail(e, "empty_grid", key, "must not be empty");
    return (long)json_array_size(a);
}


/* ------------------------------------------------------------------ common objects */

static int check_eval(const json_t *body, jobspec_error *e)
{
    json_t *v = json_object_get(body, "eval");
    if (!v) return 0;
    if (!json_is_object(v)) return fail(e, "invalid_value", "eval", "must be an object");
    static const char *const keys[] = {"split", "max_samples", NULL};
    if (check_keys(v, keys, "eval", e)) return -1;
    json_t *s = json_object_get(v, "split");
    if (s && (!json_is_string(s) || !in_list(json_string_value(s), SPLITS)))
        return fail(e, "invalid_value", "eval.split", "must be \"test\" or \"train\"");
    long long x;
    return get_int(v, "max_samples", "eval.max_samples", 1, 100000000, &x, NULL, e);
}

static int check_calibration(const json_t *body, jobspec_error *e)
{
    json_t *v = json_object_get(body, "calibration");
    if (!v) return 0;
    if (!json_is_object(v)) return fail(e, "invalid_value", "calibration", "must be an object");
    static const char *const keys[] = {"samples", NULL};
    if (check_keys(v, keys, "calibration", e)) return -1;
    long long x;
    return get_int(v, "samples", "calibration.samples", 1, 10000000, &x, NULL, e);
}

static int check_finetune(const json_t *body, jobspec_error *e)
{
    json_t *v = json_object_get(body, "finetune");
    if (!v) return 0;
    if (!json_is_object(v)) return fail(e, "invalid_value", "finetune", "must be an object");
    static const char *const keys[] = {"steps", "lr", "batch", NULL};
    if (check_keys(v, keys, "finetune", e)) return -1;
    long long x;
    if (get_int(v, "steps", "finetune.steps", 0, 100000000, &x, NULL, e)) return -1;
    if (get_num(v, "lr", "finetune.lr", 0, 1, 100, NULL, e)) return -1;
    return get_int(v, "batch", "finetune.batch", 1, 65536, &x, NULL, e);
}

static int check_dataset_name(const char *s, const char *field, jobspec_error *e)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200) return fail(e, "invalid_value", field, "must be 1 to 200 characters");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == '/' || c == '\\')
            return fail(e, "invalid_value", field, "'%.60s' is not a dataset name", s);
    }
    return 0;
}

/* ------------------------------------------------------------------ expansion */

static const char *const DIM_KEYS[] = {"d_model", "layers", "d_state", "expand", "d_conv", "mlp_ratio",
                                       "patch", "dt_rank", NULL};

static int check_top_keys(const json_t *body, const char *const *type_keys, jobspec_error *e)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        int ok = 0;
        ok = in_list(key, spec_job_shared_keys);
        if (!ok) ok = in_list(key, type_keys);
        if (!ok) return fail(e, "unknown_field", key, "unknown field");
    }
    return 0;
}

/* Copy body[key] into cell when present. */
static void copy_field(json_t *cell, const json_t *body, const char *key)
{
    json_t *v = json_object_get(body, key);
    if (v) json_object_set_new(cell, key, json_deep_copy(v));
}

/* The members every cell of the job shares. */
static json_t *cell_base(const char *recipe, const jobspec *js, const json_t *body, long long seed)
{
    json_t *c = json_object();
    json_object_set_new(c, "recipe", json_string(recipe));
    if (js->model) json_object_set_new(c, "model", json_string(js->model));
    json_object_set_new(c, "dataset", json_string(js->dataset));
    json_object_set_new(c, "seed", json_integer(seed));
    copy_field(c, body, "eval");
    copy_field(c, body, "calibration");
    copy_field(c, body, "finetune");
    return c;
}

static void copy_choices(json_t *cell, const json_t *body, int with_scope)
{
    copy_field(cell, body, "granularity");
    copy_field(cell, body, "criterion");
    if (with_scope) copy_field(cell, body, "scope");
    copy_field(cell, body, "apply");
}

/* Cells are appended as JSON text; takes cell. */
static int push_cell(jobspec *js, size_t cap, json_t *cell)
{
    char *text = json_dumps(cell, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(cell);
    if (!text || js->n_cells >= cap) {
        free(text);
        return -1;
    }
    js->cells[js->n_cells++] = text;
    return 0;
}

static int choices_ok(const json_t *body, int *structured, jobspec_error *e)
{
    if (get_choice(body, "granularity", GRANULARITIES, e)) return -1;
    if (get_choice(body, "criterion", CRITERIA, e)) return -1;
    if (get_choice(body, "scope", SCOPES, e)) return -1;
    if (get_choice(body, "apply", APPLIES, e)) return -1;
    json_t *g = json_object_get(body, "granularity");
    *structured = g && strcmp(json_string_value(g), "structured") == 0;
    if (json_object_get(body, "scope") && *structured)
        return fail(e, "invalid_value", "scope", "applies to unstructured granularity only");
    if (json_object_get(body, "apply") && !*structured)
        return fail(e, "invalid_value", "apply", "applies to structured granularity only");
    return 0;
}

static int expand_train(const json_t *body, jobspec *js, long long seed, jobspec_error *e)
{
    json_t *name = json_object_get(body, "name");
    if (!name) return fail(e, "missing_field", "name", "required (the name of the model to produce)");
    if (!json_is_string(name) || !store_name_valid(json_string_value(name)))
        return fail(e, "invalid_value", "name", "must match [A-Za-z0-9._-]{1,64} and not be . or ..");
    if (js->model && strcmp(js->model, json_string_value(name)) == 0)
        return fail(e, "invalid_value", "name", "must differ from model");
    if (get_choice(body, "preset", PRESETS, e) || get_choice(body, "optimizer", OPTIMIZERS, e)) return -1;
    json_t *dims = json_object_get(body, "dims");
    if (dims) {
        if (!json_is_object(dims)) return fail(e, "invalid_value", "dims", "must be an object");
        if (check_keys(dims, DIM_KEYS, "dims", e)) return -1;
    }
    long long x;
    char field[64];
    for (int i = 0; DIM_KEYS[i]; i++) {
        const char *k = DIM_KEYS[i];
        int top = json_object_get(body, k) != NULL;
        if (top && dims && json_object_get(dims, k))
            return fail(e, "invalid_value", k, "given both at the top level and in dims");
        const json_t *src = top ? body : dims;
        if (!src) continue;
        snprintf(field, sizeof field, "%s%s", top ? "" : "dims.", k);
        int rc;
        if (strcmp(k, "expand") == 0) rc = get_num(src, k, field, 0, 1, 64, NULL, e);
        else if (strcmp(k, "mlp_ratio") == 0) rc = get_num(src, k, field, 0, 0, 64, NULL, e);
        else rc = get_int(src, k, field, 1, 65536, &x, NULL, e);
        if (rc) return -1;
    }
    if (js->model && (dims || json_object_get(body, "preset")))
        return fail(e, "invalid_value", "model", "an init model excludes preset and dims");
    if (get_int(body, "epochs", "epochs", 1, 100000, &x, NULL, e) ||
        get_int(body, "batch", "batch", 1, 65536, &x, NULL, e) ||
        get_int(body, "warmup", "warmup", 0, 1000000000, &x, NULL, e) ||
        get_int(body, "max_steps", "max_steps", 0, 1000000000, &x, NULL, e) ||
        get_num(body, "lr", "lr", 0, 1, 100, NULL, e) || get_num(body, "min_lr", "min_lr", 0, 0, 100, NULL, e) ||
        get_num(body, "weight_decay", "weight_decay", 0, 0, 100, NULL, e) ||
        get_num(body, "momentum", "momentum", 0, 0, 0.999999, NULL, e) ||
        get_num(body, "clip", "clip", 0, 0, 1e6, NULL, e))
        return -1;
    json_t *aug = json_object_get(body, "augment");
    if (aug && !json_is_boolean(aug)) return fail(e, "invalid_value", "augment", "must be true or false");

    js->out = strdup(json_string_value(name));
    if (!js->out) return fail(e, "internal", NULL, "out of memory");
    json_t *c = cell_base("train", js, body, seed);
    json_object_set_new(c, "out", json_string(js->out));
    static const char *const pass[] = {"preset", "epochs", "batch", "lr", "min_lr", "warmup",
                                       "weight_decay", "optimizer", "momentum", "clip", "max_steps",
                                       "augment", NULL};
    for (int i = 0; pass[i]; i++) copy_field(c, body, pass[i]);
    for (int i = 0; DIM_KEYS[i]; i++) {
        copy_field(c, body, DIM_KEYS[i]);
        if (dims) copy_field(c, dims, DIM_KEYS[i]);
    }
    js->cells = calloc(1, sizeof *js->cells);
    return push_cell(js, 1, c) ? fail(e, "internal", NULL, "out of memory") : 0;
}

static int expand_ablation(const json_t *body, jobspec *js, long long seed, int have_seed, size_t max,
                           jobspec_error *e)
{
    int structured;
    if (choices_ok(body, &structured, e)) return -1;
    long nc = get_array(body, "components", e);
    if (nc < 0) return -1;
    long nr = get_array(body, "rates", e);
    if (nr < 0) return -1;
    json_t *comps = json_object_get(body, "components"), *rates = json_object_get(body, "rates");
    json_t *seeds = json_object_get(body, "seeds");
    long ns = 1;
    if (seeds) {
        if (have_seed) return fail(e, "invalid_value", "seeds", "give seed or seeds, not both");
        if ((ns = get_array(body, "seeds", e)) < 0) return -1;
    }
    char field[64];
    for (long i = 0; i < nc; i++) {
        snprintf(field, sizeof field, "components[%ld]", i);
        if (check_component(json_array_get(comps, (size_t)i), field, structured, e) < 0) return -1;
    }
    for (long i = 0; i < nr; i++) {
        snprintf(field, sizeof field, "rates[%ld]", i);
        if (check_rate(json_array_get(rates, (size_t)i), field, e)) return -1;
    }
    for (long i = 0; seeds && i < ns; i++) {
        snprintf(field, sizeof field, "seeds[%ld]", i);
        json_t *v = json_array_get(seeds, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return fail(e, "invalid_value", field, "must be an integer >= 0");
    }
    if (check_finetune(body, e)) return -1;
    if ((size_t)nc > max || (size_t)nr > max || (size_t)ns > max ||
        (size_t)nc * (size_t)nr > max || (size_t)nc * (size_t)nr * (size_t)ns > max)
        return fail(e, "grid_too_large", seeds ? "seeds" : "rates",
                    "%ld components x %ld rates x %ld seeds is more than %zu cells (the cap per job)", nc, nr,
                    ns, max);
    size_t n = (size_t)nc * (size_t)nr * (size_t)ns;
    js->cells = calloc(n, sizeof *js->cells);
    if (!js->cells) return fail(e, "internal", NULL, "out of memory");
    for (long i = 0; i < nc; i++)
        for (long j = 0; j < nr; j++)
            for (long k = 0; k < ns; k++) {
                long long s = seeds ? json_integer_value(json_array_get(seeds, (size_t)k)) : seed;
                json_t *c = cell_base("ablation", js, body, s);
                copy_choices(c, body, 1);
                json_object_set_new(c, "component", json_deep_copy(json_array_get(comps, (size_t)i)));
                json_object_set_new(c, "rate", json_deep_copy(json_array_get(rates, (size_t)j)));
                if (push_cell(js, n, c)) return fail(e, "internal", NULL, "out of memory");
            }
    return 0;
}

static int expand_sensitivity(const json_t *body, jobspec *js, long long seed, const jobspec_limits *lim,
                              size_t max, jobspec_error *e)
{
    int structured;
    if (choices_ok(body, &structured, e)) return -1;
    json_t *layers = json_object_get(body, "layers");
    long nl;
    int all = 0;
    if (json_is_string(layers)) {
        if (strcmp(json_string_value(layers), "all") != 0)
            return fail(e, "invalid_value", "layers", "must be an array of layer indices or \"all\"");
        if (lim->model_layers <= 0)
            return fail(e, "invalid_value", "layers", "the model's layer count is unknown; list the layers");
        all = 1;
        nl = lim->model_layers;
    } else if ((nl = get_array(body, "layers", e)) < 0) {
        return -1;
    }
    char field[64];
    for (long i = 0; !all && i < nl; i++) {
        snprintf(field, sizeof field, "layers[%ld]", i);
        json_t *v = json_array_get(layers, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return fail(e, "invalid_value", field, "must be an integer >= 0");
        if (lim->model_layers > 0 && json_integer_value(v) >= lim->model_layers)
            return fail(e, "invalid_value", field, "layer %lld is out of range (the model has %d layers)",
                        (long long)json_integer_value(v), lim->model_layers);
    }
    long nc = get_array(body, "components", e);
    if (nc < 0) return -1;
    json_t *comps = json_object_get(body, "components");
    for (long i = 0; i < nc; i++) {
        snprintf(field, sizeof field, "components[%ld]", i);
        if (check_component(json_array_get(comps, (size_t)i), field, structured, e) < 0) return -1;
    }
    json_t *rate = json_object_get(body, "rate");
    if (!rate) return fail(e, "missing_field", "rate", "required");
    if (check_rate(rate, "rate", e) || check_finetune(body, e)) return -1;
    if ((size_t)nl > max || (size_t)nc > max || (size_t)nl * (size_t)nc > max)
        return fail(e, "grid_too_large", "layers", "%ld layers x %ld components is more than %zu cells (the cap per job)",
                    nl, nc, max);
    size_t n = (size_t)nl * (size_t)nc;
    js->cells = calloc(n, sizeof *js->cells);
    if (!js->cells) return fail(e, "internal", NULL, "out of memory");
    for (long i = 0; i < nl; i++)
        for (long j = 0; j < nc; j++) {
            json_t *c = cell_base("sensitivity", js, body, seed);
            copy_choices(c, body, 0);
            json_object_set_new(c, "layer",
                                all ? json_integer(i) : json_deep_copy(json_array_get(layers, (size_t)i)));
            json_object_set_new(c, "components", json_deep_copy(json_array_get(comps, (size_t)j)));
            json_object_set_new(c, "rate", json_deep_copy(rate));
            if (push_cell(js, n, c)) return fail(e, "internal", NULL, "out of memory");
        }
    return 0;
}

static int expand_joint(const json_t *body, jobspec *js, long long seed, size_t max, jobspec_error *e)
{
    int structured;
    if (choices_ok(body, &structured, e)) return -1;
    long n = get_array(body, "configs", e);
    if (n < 0) return -1;
    if ((size_t)n > max)
        return fail(e, "grid_too_large", "configs", "%ld configs is more than %zu cells (the cap per job)", n, max);
    json_t *configs = json_object_get(body, "configs");
    char field[192];
    for (long i = 0; i < n; i++) {
        json_t *cfg = json_array_get(configs, (size_t)i);
        snprintf(field, sizeof field, "configs[%ld]", i);
        if (!json_is_object(cfg)) return fail(e, "invalid_value", field, "must be an object {component: rate}");
        if (json_object_size(cfg) == 0) return fail(e, "empty_grid", field, "must name at least one component");
        int seen[PC_COUNT] = {0};
        const char *key;
        json_t *v;
        json_object_foreach(cfg, key, v) {
            snprintf(field, sizeof field, "configs[%ld].%.60s", i, key);
            json_t *name = json_string(key);
            int c = check_component(name, field, structured, e);
            json_decref(name);
            if (c < 0) return -1;
            if (seen[c]++) return fail(e, "invalid_value", field, "names %s a second time", prune_component_name(c));
            if (check_rate(v, field, e)) return -1;
        }
    }
    if (check_finetune(body, e)) return -1;
    js->cells = calloc((size_t)n, sizeof *js->cells);
    if (!js->cells) return fail(e, "internal", NULL, "out of memory");
    for (long i = 0; i < n; i++) {
        json_t *c = cell_base("joint", js, body, seed);
        copy_choices(c, body, 1);
        json_object_set_new(c, "config", json_deep_copy(json_array_get(configs, (size_t)i)));
        if (push_cell(js, (size_t)n, c)) return fail(e, "internal", NULL, "out of memory");
    }
    return 0;
}

static int expand_sub(const json_t *body, jobspec *js, long long seed, const char *recipe, jobspec_error *e)
{
    json_t *spec = json_object_get(body, "spec");
    if (!spec) return fail(e, "missing_field", "spec", "required (the %s spec object)", recipe);
    if (!json_is_object(spec)) return fail(e, "invalid_value", "spec", "must be an object");
    if (check_finetune(body, e)) return -1;
    json_t *c = cell_base(recipe, js, body, seed);
    json_object_set_new(c, recipe, json_deep_copy(spec));
    js->cells = calloc(1, sizeof *js->cells);
    if (!js->cells || push_cell(js, 1, c)) return fail(e, "internal", NULL, "out of memory");
    return 0;
}

/* Parse every expanded cell as the engine will (spec/spec_cell.c) and check it against the
 * model's shape: a cell's "rsst" / "lite" object is the job's "spec", so its field paths are
 * reported under "spec". */
static int check_cells(const jobspec *js, const jobspec_limits *lim, jobspec_error *e)
{
    spec_shape sh;
    int have_shape = 0;
    if (lim->model_info) {
        json_t *info = json_loads(lim->model_info, 0, NULL);
        have_shape = info && spec_shape_from_info(info, &sh) == 0;
        json_decref(info);
    }
    for (size_t i = 0; i < js->n_cells; i++) {
        json_t *cell = json_loads(js->cells[i], 0, NULL);
        if (!cell) return fail(e, "internal", NULL, "a cell spec could not be read back");
        cell_spec cs;
        spec_error se;
        int rc = spec_cell_parse(cell, &cs, &se);
        if (rc == 0 && have_shape) rc = spec_cell_check(&cs, &sh, &se);
        cell_spec_free(&cs);
        json_decref(cell);
        if (rc == 0) continue;
        const char *f = se.field, *rest = "";
        if ((strncmp(f, "rsst", 4) == 0 || strncmp(f, "lite", 4) == 0) && (f[4] == '.' || f[4] == '\0')) {
            rest = f + 4;
            f = "spec";
        }
        char field[sizeof se.field + 8];
        snprintf(field, sizeof field, "%.8s%.150s", f == se.field ? "" : f, f == se.field ? se.field : rest);
        size_t skip = strlen(se.field) + 2;
        return fail(e, se.code ? se.code : "invalid_value", field, "%s",
                    strlen(se.message) >= skip ? se.message + skip : se.message);
    }
    return 0;
}

int jobspec_expand(const json_t *body, const jobspec_limits *lim, jobspec *out, jobspec_error *e)
{
    jobspec_limits dflt = {NULL, 0, 0, NULL};
    if (!lim) lim = &dflt;
    size_t max = lim->max_cells > 0 ? (size_t)lim->max_cells : JOBSPEC_MAX_CELLS_DEFAULT;
    memset(out, 0, sizeof *out);
    memset(e, 0, sizeof *e);
    jobspec js = {0};
    int rc = -1;

    if (!json_is_object(body)) return fail(e, "invalid_value", NULL, "the body must be a JSON object");
    json_t *t = json_object_get(body, "type");
    if (!t) return fail(e, "missing_field", "type", "required (train, ablation, sensitivity, joint, rsst, lite)");
    int type = json_is_string(t) ? store_job_type_parse(json_string_value(t)) : -1;
    if (type < 0)
        return fail(e, "invalid_value", "type", "must be one of train, ablation, sensitivity, joint, rsst, lite");
    js.type = (store_job_type)type;
    _Static_assert((int)STORE_JOB_TYPE_COUNT == (int)CELL_RECIPE_COUNT, "job types are the recipes");
    const char *const *keys = spec_job_keys((cell_recipe)type);
    if (check_top_keys(body, keys, e)) goto cleanup;

    long long prio = 0, seed = 1;
    int have_seed = 0;
    if (get_int(body, "priority", "priority", -1000, 1000, &prio, NULL, e)) goto cleanup;
    js.priority = (int)prio;
    if (get_int(body, "seed", "seed", 0, (1LL << 53), &seed, &have_seed, e)) goto cleanup;

    json_t *m = json_object_get(body, "model");
    if (m) {
        if (!json_is_string(m) || !store_name_valid(json_string_value(m))) {
            fail(e, "invalid_value", "model", "must be a model name ([A-Za-z0-9._-]{1,64}, not . or ..)");
            goto cleanup;
        }
        js.model = strdup(json_string_value(m));
    } else if (type != STORE_JOB_TRAIN) {
        fail(e, "missing_field", "model", "required");
        goto cleanup;
    }
    json_t *ds = json_object_get(body, "dataset");
    if (ds) {
        if (!json_is_string(ds)) {
            fail(e, "invalid_value", "dataset", "must be a string");
            goto cleanup;
        }
        if (check_dataset_name(json_string_value(ds), "dataset", e)) goto cleanup;
        js.dataset = strdup(json_string_value(ds));
    } else if (lim->model_dataset && js.model) {
        js.dataset = strdup(lim->model_dataset);
    } else {
        fail(e, "missing_field", "dataset", js.model ? "required (the model has no dataset recorded)" : "required");
        goto cleanup;
    }
    if ((m && !js.model) || !js.dataset) {
        fail(e, "internal", NULL, "out of memory");
        goto cleanup;
    }
    if (check_eval(body, e) || check_calibration(body, e)) goto cleanup;

    switch (js.type) {
    case STORE_JOB_TRAIN: rc = expand_train(body, &js, seed, e); break;
    case STORE_JOB_ABLATION: rc = expand_ablation(body, &js, seed, have_seed, max, e); break;
    case STORE_JOB_SENSITIVITY: rc = expand_sensitivity(body, &js, seed, lim, max, e); break;
    case STORE_JOB_JOINT: rc = expand_joint(body, &js, seed, max, e); break;
    case STORE_JOB_RSST: rc = expand_sub(body, &js, seed, "rsst", e); break;
    case STORE_JOB_LITE: rc = expand_sub(body, &js, seed, "lite", e); break;
    default: rc = fail(e, "invalid_value", "type", "unsupported"); break;
    }
    if (rc == 0) rc = check_cells(&js, lim, e);
    if (rc == 0) {
        js.spec_json = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
        if (!js.spec_json) rc = fail(e, "internal", NULL, "out of memory");
    }
cleanup:
    if (rc == 0) *out = js;
    else jobspec_free(&js);
    return rc;
}
