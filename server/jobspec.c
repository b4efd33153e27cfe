/* jobspec.c — a job POST body -> validated, expanded cell specs (see jobspec.h).
 *
 * Design: this file knows the job level only; the cell parser of spec/ is the one authority on
 * every cell field. Checked here: unknown top-level keys (and keys inside "dims"), the priority,
 * the model and dataset names, the grid lists' shape (arrays, non-empty; a joint config names at
 * least one component; a sensitivity grid varies one component at a time) and the grid size,
 * capped before any cell is built. Each cell is then built as a jansson object from a shared
 * base (recipe, model, dataset, seed, eval, calibration, finetune, pruning options) and its grid
 * values, parsed by spec_cell_parse, checked by spec_cell_check against the model's shape (or,
 * when only the model's layer count is known, its layer against that count), and serialised
 * once with sorted keys. So a job is refused at submission for anything its cells would be
 * refused for, with the first refused cell's error. A cell carries the origin of each value the
 * job put in it ("rate" came from "rates[2]", "config" from "configs[1]", "rsst" from "spec",
 * "d_state" from "dims.d_state"); the first segment of the failing field is renamed by its
 * origin, so the error names the offending value by its path in the job body.
 *
 * Ownership: jobspec_expand fills a jobspec whose strings and cell array it owns; jobspec_free
 * releases them. The body is only read. */
#include "jobspec.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell_memory.h"
#include "dataset_names.h"
#include "spec.h"
#include "vocab.h"

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

int jobspec_info_task(const char *info_json, jobspec_task *t)
{
    memset(t, 0, sizeof *t);
    json_t *root = info_json ? json_loads(info_json, 0, NULL) : NULL;
    json_t *cfg = json_object_get(root, "config");
    const char *task = json_string_value(json_object_get(cfg, "task"));
    if (task && strcmp(task, "causal_lm") == 0) {
        json_t *v = json_object_get(cfg, "vocab");
        t->is_lm = 1;
        t->vocab = json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) <= INT32_MAX
                       ? (int)json_integer_value(v)
                       : 0;
        t->tied = json_is_true(json_object_get(cfg, "tied"));
    }
    json_decref(root);
    return t->is_lm;
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

/* A spec parser's refusal, reported at the job-level path field with the parser's text. */
static int fail_spec(jobspec_error *e, const spec_error *se, const char *field)
{
    size_t skip = strlen(se->field) + 2;
    const char *text = se->field[0] && strlen(se->message) >= skip ? se->message + skip : se->message;
    return fail(e, se->code ? se->code : "invalid_value", field, "%s", text);
}

static int in_list(const char *s, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0) return 1;
    return 0;
}

/* ------------------------------------------------------------------ job-level fields */

/* Job-level keys of causal LM jobs, on every type, until spec/vocab.c lists them. */
static const char *const JOB_LM_KEYS[] = {"seq_len", NULL};

static int check_top_keys(const json_t *body, const char *const *type_keys, jobspec_error *e)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        int ok = 0;
        ok = in_list(key, spec_job_shared_keys);
        if (!ok) ok = in_list(key, type_keys);
        if (!ok) ok = in_list(key, JOB_LM_KEYS);
        if (!ok) return fail(e, "unknown_field", key, "unknown field");
    }
    return 0;
}

/* One grid value as canonical text (numbers by value, so 0.5 and 5e-1 are one point; a
 * component by its canonical name; objects with sorted keys) and its index in the list. */
typedef struct {
    char *text;
    size_t index;
} grid_value;

static char *grid_value_text(const json_t *v)
{
    prune_component c;
    if (json_is_string(v) && prune_component_parse(json_string_value(v), &c) == 0)
        return strdup(prune_component_name(c)); /* an alias is its component: linear_out = out_proj */
    if (json_is_number(v)) {
        char buf[40];
        snprintf(buf, sizeof buf, "#%.17g", json_number_value(v));
        return strdup(buf);
    }
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
}

static int grid_value_cmp(const void *pa, const void *pb)
{
    const grid_value *a = pa, *b = pb;
    int c = strcmp(a->text, b->text);
    return c ? c : (a->index > b->index) - (a->index < b->index);
}

/* Every value of the grid list a (named key) distinct, or duplicate_value naming the first
 * repeat ("rates[2]: the same as rates[0]"): two equal grid points would run the same cell
 * twice. Sorted, so a long list costs n log n. */
static int check_distinct(const json_t *a, const char *key, jobspec_error *e)
{
    size_t n = json_array_size(a), dup = (size_t)-1, first = 0;
    grid_value *v = calloc(n, sizeof *v);
    int oom = !v;
    for (size_t i = 0; !oom && i < n; i++) {
        v[i].index = i;
        oom = !(v[i].text = grid_value_text(json_array_get(a, i)));
    }
    if (!oom) {
        qsort(v, n, sizeof *v, grid_value_cmp);
        for (size_t i = 1; i < n; i++)
            if (strcmp(v[i].text, v[i - 1].text) == 0 && v[i].index < dup) {
                size_t j = i - 1; /* the first of the run of equal values holds the lowest index */
                while (j > 0 && strcmp(v[j - 1].text, v[i].text) == 0) j--;
                dup = v[i].index;
                first = v[j].index;
            }
    }
    for (size_t i = 0; v && i < n; i++) free(v[i].text);
    free(v);
    if (oom) return fail(e, "internal", NULL, "out of memory");
    if (dup == (size_t)-1) return 0;
    char field[48];
    snprintf(field, sizeof field, "%s[%zu]", key, dup);
    return fail(e, "duplicate_value", field, "the same as %s[%zu]; each grid point must be distinct (remove the repeat)",
                key, first);
}

/* A non-empty array named key (required) of distinct values. Returns its size or -1. */
static long get_array(const json_t *body, const char *key, jobspec_error *e)
{
    json_t *a = json_object_get(body, key);
    if (!a) return fail(e, "missing_field", key, "required");
    if (!json_is_array(a)) return fail(e, "invalid_value", key, "must be an array");
    if (json_array_size(a) == 0) return fail(e, "empty_grid", key, "must not be empty");
    if (check_distinct(a, key, e)) return -1;
    return (long)json_array_size(a);
}

/* The cell parser takes any non-empty dataset string and the engine resolves names (data.h);
 * the daemon refuses what could reach a path (store_dataset_name_valid). */
static int check_dataset_name(const json_t *v, jobspec_error *e)
{
    if (!json_is_string(v)) return fail(e, "invalid_value", "dataset", "must be a string");
    const char *s = json_string_value(v);
    if (!store_dataset_name_valid(s))
        return fail(e, "invalid_value", "dataset",
                    "'%.60s' is not a dataset name (1 to 200 printable characters, no slashes)", s);
    return 0;
}

/* "model" (a model name) and "dataset" (given, or the model's) into js. */
static int read_model_dataset(const json_t *body, const jobspec_limits *lim, jobspec *js, jobspec_error *e)
{
    json_t *m = json_object_get(body, "model"), *ds = json_object_get(body, "dataset");
    if (m && (!json_is_string(m) || !store_name_valid(json_string_value(m))))
        return fail(e, "invalid_value", "model", "must be a model name ([A-Za-z0-9._-]{1,64}, not . or ..)");
    if (!m && js->type != STORE_JOB_TRAIN) return fail(e, "missing_field", "model", "required");
    if (m && !(js->model = strdup(json_string_value(m)))) return fail(e, "internal", NULL, "out of memory");
    if (ds && check_dataset_name(ds, e)) return -1;
    const char *name = ds ? json_string_value(ds) : js->model ? lim->model_dataset : NULL;
    if (!name)
        return fail(e, "missing_field", "dataset", js->model ? "required (the model has no dataset recorded)" : "required");
    if (!ds && !store_dataset_name_valid(name))
        return fail(e, "invalid_value", "dataset", "the model's recorded dataset is not a dataset name; give \"dataset\"");
    if (!(js->dataset = strdup(name))) return fail(e, "internal", NULL, "out of memory");
    return 0;
}

/* The job's dataset against its model's task: a causal LM takes a token dataset (tokens:DIR,
 * text:FILE, synthetic-lm[:...]) whose vocabulary, when the name fixes it, fits the model's; an
 * image classifier takes an image dataset. A job without a model (train from scratch) is an LM job
 * when its dataset is a token dataset. *is_lm receives the job's task. */
static int check_task_dataset(const jobspec *js, const jobspec_limits *lim, int *is_lm, jobspec_error *e)
{
    jobspec_task mt;
    int have_model = js->model && lim->model_info;
    jobspec_info_task(have_model ? lim->model_info : NULL, &mt);
    char err[160] = "";
    int data_vocab = 0;
    int tok = dataset_names_token_info(js->dataset, &data_vocab, err, sizeof err);
    if (tok < 0) return fail(e, "invalid_value", "dataset", "%s", err);
    *is_lm = have_model ? mt.is_lm : tok == 1;
    if (have_model && mt.is_lm && tok == 0)
        return fail(e, "invalid_value", "dataset",
                    "'%.60s' is an image dataset, but model %s is a causal LM; give a token dataset (tokens:DIR, "
                    "text:FILE or synthetic-lm[:n=N,vocab=V,seed=S])", js->dataset, js->model);
    if (have_model && !mt.is_lm && tok == 1)
        return fail(e, "invalid_value", "dataset",
                    "'%.60s' is a token dataset, but model %s is an image classifier; give an image dataset",
                    js->dataset, js->model);
    if (have_model && mt.is_lm && mt.vocab > 0 && data_vocab > mt.vocab)
        return fail(e, "invalid_value", "dataset",
                    "'%.60s' has a vocabulary of %d tokens, more than model %s's %d", js->dataset, data_vocab,
                    js->model, mt.vocab);
    return 0;
}

/* "type", the keys of that type, "priority", "model" and "dataset" into js. */
static int read_job(const json_t *body, const jobspec_limits *lim, jobspec *js, jobspec_error *e)
{
    if (!json_is_object(body)) return fail(e, "invalid_value", NULL, "the body must be a JSON object");
    json_t *t = json_object_get(body, "type");
    if (!t) return fail(e, "missing_field", "type", "required (train, ablation, sensitivity, joint, rsst, lite)");
    int type = json_is_string(t) ? store_job_type_parse(json_string_value(t)) : -1;
    if (type < 0)
        return fail(e, "invalid_value", "type", "must be one of train, ablation, sensitivity, joint, rsst, lite");
    js->type = (store_job_type)type;
    _Static_assert((int)STORE_JOB_TYPE_COUNT == (int)CELL_RECIPE_COUNT, "job types are the recipes");
    if (check_top_keys(body, spec_job_keys((cell_recipe)type), e)) return -1;
    spec_error se;
    long long prio = 0;
    if (spec_get_int((json_t *)body, "", "priority", -1000, 1000, &prio, &se)) return fail_spec(e, &se, se.field);
    js->priority = (int)prio;
    return read_model_dataset(body, lim, js, e);
}

/* ------------------------------------------------------------------ cells */

/* The job-level path of a value a cell holds under key ("rate" <- "rates[2]"). */
typedef struct {
    const char *key;
    char path[48];
} cell_origin;

/* One job's expansion: what every cell is built and checked from, and the cells so far. */
typedef struct {
    const json_t *body;
    const jobspec_limits *lim;
    jobspec *js;
    size_t max;       /* the grid cap */
    size_t cap;       /* cells allocated in js->cells */
    spec_shape shape; /* the model's; n_layers 0 when unknown */
    int is_lm;        /* a causal LM job (check_task_dataset) */
    jobspec_task task; /* the model's task, vocabulary and head */
    jobspec_error *e;
} expansion;

/* o names key's value list[i] (or list itself when i < 0). */
static void origin(cell_origin *o, const char *key, const char *list, long i)
{
    o->key = key;
    if (i < 0) snprintf(o->path, sizeof o->path, "%s", list);
    else snprintf(o->path, sizeof o->path, "%s[%ld]", list, i);
}

/* The job-level path of cell field f: its first segment renamed by the origin of that key. */
static void job_path(const char *f, const cell_origin *o, int n, char *out, size_t len)
{
    for (int i = 0; i < n; i++) {
        size_t k = strlen(o[i].key);
        if (strncmp(f, o[i].key, k) == 0 && (f[k] == '\0' || f[k] == '.' || f[k] == '[')) {
            snprintf(out, len, "%s%s", o[i].path, f + k);
            return;
        }
    }
    snprintf(out, len, "%s", f);
}

/* The model's layer count can be known without its shape (an inspect JSON without per-layer
 * dims); a sensitivity layer is then checked against the count alone. */
static int check_layer_count(const expansion *x, const cell_spec *cs, spec_error *se)
{
    int n = x->lim->model_layers;
    if (x->shape.n_layers > 0 || n <= 0 || cs->layer < n) return 0;
    return spec_fail(se, "invalid_value", "layer", "%d is out of range (the model has %d layers)", cs->layer, n);
}

/* The cell's memory estimate against the cap (cell_memory.h); a refusal names the field that
 * drives the estimate and gives the estimate and the cap. */
static int check_memory(const expansion *x, const cell_spec *cs, const cell_memory_lm *lm, spec_error *se)
{
    size_t cap = x->lim->max_cell_memory ? x->lim->max_cell_memory : CELL_MEMORY_DEFAULT_MAX;
    cell_memory cm;
    cell_memory_estimate_lm(cs, &x->shape, lm, x->lim->threads, &cm);
    if (cm.total <= (double)cap) return 0;
    const double mib = 1024.0 * 1024.0;
    return spec_fail(se, "too_large", cm.field,
                     "the cell would need about %.0f MiB (estimate: %.0f MiB parameters and optimizer state, "
                     "%.0f MiB activations, %.0f MiB data), above max_cell_memory %.0f MiB",
                     cm.total / mib, cm.state / mib, cm.activations / mib, cm.data / mib, (double)cap / mib);
}

/* "seq_len" and "eval.max_tokens" (spec_cell_parse checks their values) belong to causal LM
 * jobs only: on an image job they are refused, naming the key. */
static int check_lm_keys(const json_t *cell, int is_lm, spec_error *se)
{
    json_t *eval = json_object_get(cell, "eval");
    int sl = json_object_get(cell, "seq_len") != NULL;
    int mt = json_is_object(eval) && json_object_get(eval, "max_tokens") != NULL;
    if ((sl || mt) && !is_lm)
        return spec_fail(se, "invalid_value", sl ? "seq_len" : "eval.max_tokens",
                         "only causal LM jobs take it (the model is an image classifier)");
    return 0;
}

/* Parse cell as the engine will and check it against the model; a refusal names the value by
 * its job-level path (origins o[0..n-1]). */
static int check_cell(const expansion *x, json_t *cell, const cell_origin *o, int n)
{
    cell_spec cs;
    spec_error se;
    memset(&cs, 0, sizeof cs);
    int rc = check_lm_keys(cell, x->is_lm, &se);
    if (rc == 0) rc = spec_cell_parse(cell, &cs, &se);
    if (rc == 0 && x->shape.n_layers > 0) rc = spec_cell_check(&cs, &x->shape, &se);
    if (rc == 0) rc = check_layer_count(x, &cs, &se);
    cell_memory_lm lm = {x->task.vocab, x->task.tied, cs.seq_len};
    if (rc == 0 && x->is_lm && !lm.vocab) dataset_names_token_info(x->js->dataset, &lm.vocab, NULL, 0);
    if (rc == 0) rc = check_memory(x, &cs, x->is_lm ? &lm : NULL, &se);
    cell_spec_free(&cs);
    if (rc == 0) return 0;
    char field[sizeof se.field];
    job_path(se.field, o, n, field, sizeof field);
    return fail_spec(x->e, &se, field);
}

/* Check cell (taken) and append its text. */
static int push_cell(expansion *x, json_t *cell, const cell_origin *o, int n)
{
    int rc = check_cell(x, cell, o, n);
    char *text = rc == 0 ? json_dumps(cell, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(cell);
    if (rc) return -1;
    if (!text || x->js->n_cells >= x->cap) {
        free(text);
        return fail(x->e, "internal", NULL, "out of memory");
    }
    x->js->cells[x->js->n_cells++] = text;
    return 0;
}

static int alloc_cells(expansion *x, size_t n)
{
    x->js->cells = calloc(n, sizeof *x->js->cells);
    x->cap = x->js->cells ? n : 0;
    return x->js->cells ? 0 : fail(x->e, "internal", NULL, "out of memory");
}

/* A grid axis: its name in messages and its length. */
typedef struct {
    const char *name;
    long n;
} grid_axis;

/* The cell count of the grid a[0] x ... x a[n-1], or grid_too_large at field above the cap. */
static int grid_cells(expansion *x, const grid_axis *a, int n, const char *field, size_t *cells)
{
    char text[160] = "";
    size_t total = 1, used = 0;
    int over = 0;
    for (int i = 0; i < n; i++) {
        if (used < sizeof text)
            used += (size_t)snprintf(text + used, sizeof text - used, "%s%ld %s", i ? " x " : "", a[i].n, a[i].name);
        /* total <= max and n <= max, so the product fits */
        if ((size_t)a[i].n > x->max || total * (size_t)a[i].n > x->max) over = 1;
        else total *= (size_t)a[i].n;
    }
    if (over) return fail(x->e, "grid_too_large", field, "%s is more than %zu cells (the cap per job)", text, x->max);
    *cells = total;
    return 0;
}

/* Copy body[key] into cell when present. */
static void copy_field(json_t *cell, const json_t *body, const char *key)
{
    json_t *v = json_object_get(body, key);
    if (v) json_object_set_new(cell, key, json_deep_copy(v));
}

/* The members every cell of the job shares; seed is the cell's (NULL: 1). */
static json_t *cell_base(const expansion *x, const char *recipe, const json_t *seed)
{
    json_t *c = json_object();
    json_object_set_new(c, "recipe", json_string(recipe));
    if (x->js->model) json_object_set_new(c, "model", json_string(x->js->model));
    json_object_set_new(c, "dataset", json_string(x->js->dataset));
    json_object_set_new(c, "seed", seed ? json_deep_copy(seed) : json_integer(1));
    static const char *const shared[] = {"eval", "calibration", "finetune", "granularity", "criterion", "scope",
                                         "apply", "seq_len", NULL};
    for (int i = 0; shared[i]; i++) copy_field(c, x->body, shared[i]);
    return c;
}

/* ------------------------------------------------------------------ expansion per type */

static const char *const DIM_KEYS[] = {"d_model", "layers", "d_state", "expand", "d_conv", "mlp_ratio",
                                       "patch", "dt_rank", NULL};

/* "dims" (an object of DIM_KEYS, none also at the top level): the origins of its members. */
static int train_dims(expansion *x, const json_t *dims, cell_origin *o, int *n)
{
    *n = 0;
    if (!dims) return 0;
    if (!json_is_object(dims)) return fail(x->e, "invalid_value", "dims", "must be an object");
    spec_error se;
    if (spec_check_keys((json_t *)dims, "dims", DIM_KEYS, &se)) return fail_spec(x->e, &se, se.field);
    char path[48];
    for (int i = 0; DIM_KEYS[i]; i++) {
        if (!json_object_get(dims, DIM_KEYS[i])) continue;
        if (json_object_get(x->body, DIM_KEYS[i]))
            return fail(x->e, "invalid_value", DIM_KEYS[i], "given both at the top level and in dims");
        snprintf(path, sizeof path, "dims.%s", DIM_KEYS[i]);
        origin(&o[(*n)++], DIM_KEYS[i], path, -1);
    }
    return 0;
}

static int expand_train(expansion *x)
{
    const json_t *body = x->body;
    json_t *name = json_object_get(body, "name"), *dims = json_object_get(body, "dims");
    if (!name) return fail(x->e, "missing_field", "name", "required (the name of the model to produce)");
    if (!json_is_string(name) || !store_name_valid(json_string_value(name)))
        return fail(x->e, "invalid_value", "name", "must match [A-Za-z0-9._-]{1,64} and not be . or ..");
    if (x->js->model && strcmp(x->js->model, json_string_value(name)) == 0)
        return fail(x->e, "invalid_value", "name", "must differ from model");
    cell_origin o[sizeof DIM_KEYS / sizeof DIM_KEYS[0]];
    int n;
    if (train_dims(x, dims, o, &n)) return -1;
    if (!(x->js->out = strdup(json_string_value(name)))) return fail(x->e, "internal", NULL, "out of memory");
    json_t *c = cell_base(x, "train", json_object_get(body, "seed"));
    json_object_set_new(c, "out", json_string(x->js->out));
    static const char *const pass[] = {"preset", "epochs", "batch", "lr", "min_lr", "warmup",
                                       "weight_decay", "optimizer", "momentum", "clip", "max_steps",
                                       "augment", NULL};
    for (int i = 0; pass[i]; i++) copy_field(c, body, pass[i]);
    for (int i = 0; DIM_KEYS[i]; i++) {
        copy_field(c, body, DIM_KEYS[i]);
        if (dims) copy_field(c, dims, DIM_KEYS[i]);
    }
    if (alloc_cells(x, 1)) {
        json_decref(c);
        return -1;
    }
    return push_cell(x, c, o, n);
}

/* The ablation cell of components[i] x rates[j] x seeds[k] (k < 0: the job's seed). */
static int push_ablation(expansion *x, long i, long j, long k)
{
    const json_t *body = x->body;
    cell_origin o[3];
    origin(&o[0], "component", "components", i);
    origin(&o[1], "rate", "rates", j);
    origin(&o[2], "seed", "seeds", k);
    json_t *seed = k >= 0 ? json_array_get(json_object_get(body, "seeds"), (size_t)k) : json_object_get(body, "seed");
    json_t *c = cell_base(x, "ablation", seed);
    json_object_set_new(c, "component", json_deep_copy(json_array_get(json_object_get(body, "components"), (size_t)i)));
    json_object_set_new(c, "rate", json_deep_copy(json_array_get(json_object_get(body, "rates"), (size_t)j)));
    return push_cell(x, c, o, k >= 0 ? 3 : 2);
}

static int expand_ablation(expansion *x)
{
    const json_t *body = x->body;
    int seeds = json_object_get(body, "seeds") != NULL;
    long nc, nr, ns = 1;
    if ((nc = get_array(body, "components", x->e)) < 0 || (nr = get_array(body, "rates", x->e)) < 0) return -1;
    if (seeds && json_object_get(body, "seed"))
        return fail(x->e, "invalid_value", "seeds", "give seed or seeds, not both");
    if (seeds && (ns = get_array(body, "seeds", x->e)) < 0) return -1;
    grid_axis a[] = {{"components", nc}, {"rates", nr}, {"seeds", ns}};
    size_t n;
    if (grid_cells(x, a, 3, seeds ? "seeds" : "rates", &n) || alloc_cells(x, n)) return -1;
    for (long i = 0; i < nc; i++)
        for (long j = 0; j < nr; j++)
            for (long k = 0; k < ns; k++)
                if (push_ablation(x, i, j, seeds ? k : -1)) return -1;
    return 0;
}

/* The sensitivity cell of layers[i] (all: layer i) x components[j]. */
static int push_sensitivity(expansion *x, long i, long j, int all)
{
    const json_t *body = x->body;
    json_t *comp = json_array_get(json_object_get(body, "components"), (size_t)j);
    cell_origin o[2];
    origin(&o[0], "layer", "layers", all ? -1 : i);
    origin(&o[1], "components", "components", j);
    /* a cell's "components" may list several; a sensitivity grid varies one at a time */
    if (json_is_array(comp)) return fail(x->e, "invalid_value", o[1].path, "must be one component name, not a list");
    json_t *c = cell_base(x, "sensitivity", json_object_get(body, "seed"));
    json_object_set_new(c, "layer", all ? json_integer(i)
                                        : json_deep_copy(json_array_get(json_object_get(body, "layers"), (size_t)i)));
    json_object_set_new(c, "components", json_deep_copy(comp));
    copy_field(c, body, "rate");
    return push_cell(x, c, o, 2);
}

static int expand_sensitivity(expansion *x)
{
    const json_t *body = x->body;
    json_t *layers = json_object_get(body, "layers");
    int all = json_is_string(layers);
    long nl = x->lim->model_layers, nc;
    if (all && strcmp(json_string_value(layers), "all") != 0)
        return fail(x->e, "invalid_value", "layers", "must be an array of layer indices or \"all\"");
    if (all && nl <= 0)
        return fail(x->e, "invalid_value", "layers", "the model's layer count is unknown; list the layers");
    if (!all && (nl = get_array(body, "layers", x->e)) < 0) return -1;
    if ((nc = get_array(body, "components", x->e)) < 0) return -1;
    grid_axis a[] = {{"layers", nl}, {"components", nc}};
    size_t n;
    if (grid_cells(x, a, 2, "layers", &n) || alloc_cells(x, n)) return -1;
    for (long i = 0; i < nl; i++)
        for (long j = 0; j < nc; j++)
            if (push_sensitivity(x, i, j, all)) return -1;
    return 0;
}

static int expand_joint(expansion *x)
{
    json_t *configs = json_object_get(x->body, "configs");
    long nc = get_array(x->body, "configs", x->e);
    grid_axis a[] = {{"configs", nc}};
    size_t n;
    if (nc < 0 || grid_cells(x, a, 1, "configs", &n) || alloc_cells(x, n)) return -1;
    for (long i = 0; i < nc; i++) {
        json_t *cfg = json_array_get(configs, (size_t)i);
        cell_origin o;
        origin(&o, "config", "configs", i);
        if (json_is_object(cfg) && json_object_size(cfg) == 0)
            return fail(x->e, "empty_grid", o.path, "must name at least one component");
        json_t *c = cell_base(x, "joint", json_object_get(x->body, "seed"));
        json_object_set_new(c, "config", json_deep_copy(cfg));
        if (push_cell(x, c, &o, 1)) return -1;
    }
    return 0;
}

/* An rsst / lite job: one cell whose recipe object is the job's "spec". */
static int expand_sub(expansion *x, const char *recipe)
{
    cell_origin o;
    origin(&o, recipe, "spec", -1);
    json_t *c = cell_base(x, recipe, json_object_get(x->body, "seed"));
    json_t *spec = json_object_get(x->body, "spec");
    if (spec) json_object_set_new(c, recipe, json_deep_copy(spec));
    if (alloc_cells(x, 1)) {
        json_decref(c);
        return -1;
    }
    return push_cell(x, c, &o, 1);
}

/* ------------------------------------------------------------------ the job */

static int expand_type(expansion *x)
{
    switch (x->js->type) {
    case STORE_JOB_TRAIN: return expand_train(x);
    case STORE_JOB_ABLATION: return expand_ablation(x);
    case STORE_JOB_SENSITIVITY: return expand_sensitivity(x);
    case STORE_JOB_JOINT: return expand_joint(x);
    case STORE_JOB_RSST: return expand_sub(x, "rsst");
    case STORE_JOB_LITE: return expand_sub(x, "lite");
    default: return fail(x->e, "invalid_value", "type", "unsupported");
    }
}

/* The model's shape from its inspect JSON (n_layers 0 when absent or incomplete). */
static void model_shape(const char *info_json, spec_shape *sh)
{
    memset(sh, 0, sizeof *sh);
    json_t *info = info_json ? json_loads(info_json, 0, NULL) : NULL;
    if (info) spec_shape_from_info(info, sh);
    json_decref(info);
}

int jobspec_expand(const json_t *body, const jobspec_limits *lim, jobspec *out, jobspec_error *e)
{
    jobspec_limits dflt = {NULL, 0, 0, NULL, 0, 1};
    if (!lim) lim = &dflt;
    memset(out, 0, sizeof *out);
    memset(e, 0, sizeof *e);
    jobspec js = {0};
    expansion x = {body, lim, &js, lim->max_cells > 0 ? (size_t)lim->max_cells : JOBSPEC_MAX_CELLS_DEFAULT, 0,
                   {0}, 0, {0, 0, 0}, e};
    int rc = read_job(body, lim, &js, e);
    if (rc == 0) rc = check_task_dataset(&js, lim, &x.is_lm, e);
    if (rc == 0) {
        jobspec_info_task(js.model ? lim->model_info : NULL, &x.task);
        model_shape(lim->model_info, &x.shape);
        rc = expand_type(&x);
    }
    if (rc == 0 && !(js.spec_json = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS)))
        rc = fail(e, "internal", NULL, "out of memory");
    if (rc == 0) *out = js;
    else jobspec_free(&js);
    return rc;
}
