/* prune_spec.c — strict parser of pruning specs (prune.h, issue 3):
 *
 *   {"prune": [{"component": "out_proj" | alias, "granularity": "unstructured" | "structured",
 *               "rate": 0.7, "criterion": "magnitude", "scope": "layer" | "global",
 *               "layers": [0, 2], "apply": "shrink" | "mask"}, ...],
 *    "finetune": {"steps": 500, "lr": 1e-3}, "calibration": {"samples": 512}, "seed": 1}
 *
 * Defaults: granularity unstructured, criterion magnitude, scope layer, apply shrink, every
 * layer; no fine-tuning (lr 1e-3 when steps are given without it), 512 calibration samples,
 * seed 1. Only "prune" and each entry's "component" and "rate" are required.
 * Refusals (each message starts with the field, e.g. "prune[1].rate: ..."): invalid JSON or
 * duplicate keys, unknown keys at any level, values of the wrong type, unknown names, rates
 * outside [0, 1) (NaN cannot be written in JSON; 1e999 overflows and is refused by the JSON
 * reader, a string "nan" is not a number), structured granularity for a component without
 * units (A_log, D), scope global on a structured entry, apply shrink on an unstructured entry
 * (unstructured pruning is always a mask), structured entries that disagree on apply (they form
 * one selection), empty or repeated layer lists, layers out of range or lacking the component
 * (when a model is given), and two entries pruning the same component at the same granularity
 * in the same layer.
 * The spec owns its entries array (prune_spec_free). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune.h"
#include "spec_json.h"
#include "util.h"

static const char *const gran_names[PG_COUNT] = {"unstructured", "structured"};
static const char *const scope_names[PS_COUNT] = {"layer", "global"};
static const char *const apply_names[PA_COUNT] = {"shrink", "mask"};

/* Refuse any key of obj not in the NULL-terminated list. */
static int check_keys(json_t *obj, const char *const *allowed, const char *where, char *err, size_t errlen)
{
    char list[256];
    const char *key = spec_json_unknown_key(obj, allowed, list, sizeof list);
    if (key) return pl_err(err, errlen, "%s%sunknown key \"%s\" (allowed: %s)", where, *where ? ": " : "", key, list);
    return 0;
}

/* A string field that must be one of names[0..n-1]; absent keeps *out. */
static int parse_choice(json_t *obj, const char *key, const char *const *names, int n, int *out, const char *where,
                        char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    char list[128] = "";
    for (int i = 0; i < n; i++) {
        strncat(list, i ? " | " : "", sizeof list - strlen(list) - 1);
        strncat(list, names[i], sizeof list - strlen(list) - 1);
    }
    if (!json_is_string(v)) return pl_err(err, errlen, "%s.%s: must be a string (%s)", where, key, list);
    for (int i = 0; i < n; i++)
        if (strcmp(json_string_value(v), names[i]) == 0) {
            *out = i;
            return 0;
        }
    return pl_err(err, errlen, "%s.%s: unknown value \"%s\" (allowed: %s)", where, key, json_string_value(v), list);
}

/* An integer field in [lo, hi]; absent keeps *out. */
static int parse_int(json_t *obj, const char *key, long long lo, long long hi, long long *out, const char *where,
                     char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (!json_is_integer(v)) return pl_err(err, errlen, "%s%s%s: must be an integer", where, *where ? "." : "", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return pl_err(err, errlen, "%s%s%s: %lld is outside [%lld, %lld]", where, *where ? "." : "", key, x, lo, hi);
    *out = x;
    return 0;
}

static int parse_entry(json_t *o, int idx, const model *m, prune_entry *e, char *err, size_t errlen)
{
    char where[32];
    snprintf(where, sizeof where, "prune[%d]", idx);
    if (!json_is_object(o)) return pl_err(err, errlen, "%s: must be an object", where);
    static const char *const keys[] = {"component", "granularity", "rate", "criterion", "scope", "layers", "apply",
                                       NULL};
    if (check_keys(o, keys, where, err, errlen) != 0) return -1;
    memset(e, 0, sizeof *e);
    e->granularity = PG_UNSTRUCTURED;
    e->criterion = PCR_MAGNITUDE;
    e->scope = PS_LAYER;
    e->apply = PA_SHRINK;

    json_t *v = json_object_get(o, "component");
    if (!v) return pl_err(err, errlen, "%s.component: required", where);
    if (!json_is_string(v)) return pl_err(err, errlen, "%s.component: must be a string", where);
    if (prune_component_parse(json_string_value(v), &e->component) != 0) {
        char list[512] = "";
        for (int c = 0; c < PC_COUNT; c++) {
            char one[64];
            snprintf(one, sizeof one, "%s%s (%s)", c ? ", " : "", prune_component_name(c), prune_component_alias(c));
            strncat(list, one, sizeof list - strlen(list) - 1);
        }
        return pl_err(err, errlen, "%s.component: unknown component \"%s\" (known: %s)", where, json_string_value(v),
                      list);
    }

    v = json_object_get(o, "rate");
    if (!v) return pl_err(err, errlen, "%s.rate: required", where);
    if (!json_is_number(v)) return pl_err(err, errlen, "%s.rate: must be a number in [0, 1)", where);
    double rate = json_number_value(v);
    if (!(rate >= 0.0 && rate < 1.0)) /* also catches NaN */
        return pl_err(err, errlen, "%s.rate: %g is outside [0, 1)", where, rate);
    e->rate = (float)rate;
    if (e->rate >= 1.0f) e->rate = nextafterf(1.0f, 0.0f); /* 0.99999999 rounds to 1.0f */

    int g = e->granularity, cr = e->criterion, sc = e->scope, ap = e->apply;
    if (parse_choice(o, "granularity", gran_names, PG_COUNT, &g, where, err, errlen) != 0) return -1;
    json_t *cv = json_object_get(o, "criterion");
    if (cv) {
        prune_criterion pc;
        if (!json_is_string(cv) || prune_criterion_parse(json_string_value(cv), &pc) != 0) {
            char list[128] = "";
            for (int c = 0; c < PCR_COUNT; c++) {
                strncat(list, c ? " | " : "", sizeof list - strlen(list) - 1);
                strncat(list, prune_criterion_name(c), sizeof list - strlen(list) - 1);
            }
            return pl_err(err, errlen, "%s.criterion: unknown criterion %s%s%s (allowed: %s)", where,
                          json_is_string(cv) ? "\"" : "", json_is_string(cv) ? json_string_value(cv) : "(not a string)",
                          json_is_string(cv) ? "\"" : "", list);
        }
        cr = pc;
    }
    if (parse_choice(o, "scope", scope_names, PS_COUNT, &sc, where, err, errlen) != 0) return -1;
    if (parse_choice(o, "apply", apply_names, PA_COUNT, &ap, where, err, errlen) != 0) return -1;
    e->granularity = (prune_granularity)g;
    e->criterion = (prune_criterion)cr;
    e->scope = (prune_scope)sc;
    e->apply = (prune_apply)ap;
    if (e->granularity == PG_STRUCTURED && !prune_component_unit(e->component))
        return pl_err(err, errlen, "%s.granularity: component %s has no structured unit; prune it unstructured", where,
                      prune_component_name(e->component));
    if (e->granularity == PG_STRUCTURED && e->scope == PS_GLOBAL)
        return pl_err(err, errlen, "%s.scope: \"global\" applies to unstructured entries only (structured units are "
                      "ranked per layer)", where);
    if (e->granularity == PG_UNSTRUCTURED && json_object_get(o, "apply") && e->apply == PA_SHRINK)
        return pl_err(err, errlen, "%s.apply: unstructured pruning is always applied as a mask (use \"mask\" or "
                      "granularity \"structured\")", where);
    if (e->granularity == PG_UNSTRUCTURED) e->apply = PA_MASK;

    v = json_object_get(o, "layers");
    if (v) {
        if (!json_is_array(v)) return pl_err(err, errlen, "%s.layers: must be an array of layer indices", where);
        size_t n = json_array_size(v);
        if (n == 0) return pl_err(err, errlen, "%s.layers: empty (omit the key to select every layer)", where);
        if (n > MODEL_MAX_LAYERS)
            return pl_err(err, errlen, "%s.layers: more than %d entries", where, MODEL_MAX_LAYERS);
        for (size_t i = 0; i < n; i++) {
            json_t *x = json_array_get(v, i);
            if (!json_is_integer(x)) return pl_err(err, errlen, "%s.layers[%zu]: must be an integer", where, i);
            long long li = json_integer_value(x);
            if (li < 0 || li >= MODEL_MAX_LAYERS || (m && li >= m->cfg.n_layers))
                return pl_err(err, errlen, "%s.layers[%zu]: layer %lld is out of range (the model has %d layers)",
                              where, i, li, m ? m->cfg.n_layers : MODEL_MAX_LAYERS);
            for (size_t j = 0; j < i; j++)
                if (e->layers[j] == (int)li)
                    return pl_err(err, errlen, "%s.layers[%zu]: layer %lld repeated", where, i, li);
            if (m && prune_component_units(m, e->component, (int)li) == 0 &&
                prune_component_params(m, e->component, (int)li) == 0)
                return pl_err(err, errlen, "%s.layers[%zu]: layer %lld has no %s", where, i, li,
                              prune_component_name(e->component));
            e->layers[i] = (int)li;
        }
        e->n_layers = (int)n;
    }
    return 0;
}

/* 1 when entries a and b select a common layer. */
static int layers_overlap(const prune_entry *a, const prune_entry *b)
{
    if (a->n_layers == 0 || b->n_layers == 0) return 1;
    for (int i = 0; i < a->n_layers; i++)
        for (int j = 0; j < b->n_layers; j++)
            if (a->layers[i] == b->layers[j]) return 1;
    return 0;
}

int prune_spec_parse(const char *json_text, const model *m, prune_spec *spec, char *err, size_t errlen)
{
    memset(spec, 0, sizeof *spec);
    spec->finetune_lr = 1e-3f;
    spec->calib_samples = 512;
    spec->seed = 1;
    if (!json_text) return pl_err(err, errlen, "spec: no text");
    json_error_t je;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je);
    if (!root) return pl_err(err, errlen, "spec: invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    int rc = -1;
    if (!json_is_object(root)) {
        pl_err(err, errlen, "spec: must be a JSON object with a \"prune\" array");
        goto done;
    }
    static const char *const top_keys[] = {"prune", "finetune", "calibration", "seed", NULL};
    if (check_keys(root, top_keys, "spec", err, errlen) != 0) goto done;

    json_t *arr = json_object_get(root, "prune");
    if (!arr) {
        pl_err(err, errlen, "prune: required (an array of entries)");
        goto done;
    }
    if (!json_is_array(arr)) {
        pl_err(err, errlen, "prune: must be an array of entries");
        goto done;
    }
    size_t n = json_array_size(arr);
    if (n > 4096) {
        pl_err(err, errlen, "prune: %zu entries (at most 4096)", n);
        goto done;
    }
    spec->entries = xcalloc(n ? n : 1, sizeof *spec->entries);
    for (size_t i = 0; i < n; i++) {
        if (parse_entry(json_array_get(arr, i), (int)i, m, &spec->entries[i], err, errlen) != 0) goto done;
        spec->n = (int)i + 1;
    }
    int first_structured = -1;
    for (int i = 0; i < spec->n; i++) {
        const prune_entry *e = &spec->entries[i];
        for (int j = 0; j < i; j++) {
            const prune_entry *f = &spec->entries[j];
            if (f->component == e->component && f->granularity == e->granularity && layers_overlap(e, f)) {
                pl_err(err, errlen, "prune[%d]: component %s is already pruned %s in the same layers by prune[%d]",
                       i, prune_component_name(e->component), gran_names[e->granularity], j);
                goto done;
            }
        }
        if (e->granularity != PG_STRUCTURED) continue;
        if (first_structured < 0) {
            first_structured = i;
        } else if (spec->entries[first_structured].apply != e->apply) {
            pl_err(err, errlen, "prune[%d].apply: \"%s\" differs from prune[%d] (\"%s\"); structured entries form one "
                   "selection, applied one way", i, apply_names[e->apply], first_structured,
                   apply_names[spec->entries[first_structured].apply]);
            goto done;
        }
    }

    json_t *ft = json_object_get(root, "finetune");
    if (ft) {
        if (!json_is_object(ft)) {
            pl_err(err, errlen, "finetune: must be an object {\"steps\", \"lr\"}");
            goto done;
        }
        static const char *const ft_keys[] = {"steps", "lr", NULL};
        if (check_keys(ft, ft_keys, "finetune", err, errlen) != 0) goto done;
        long long steps = 0;
        if (parse_int(ft, "steps", 0, 100000000, &steps, "finetune", err, errlen) != 0) goto done;
        spec->finetune_steps = (int)steps;
        json_t *lr = json_object_get(ft, "lr");
        if (lr) {
            if (!json_is_number(lr)) {
                pl_err(err, errlen, "finetune.lr: must be a number");
                goto done;
            }
            double x = json_number_value(lr);
            if (!(x > 0.0 && x <= 100.0)) {
                pl_err(err, errlen, "finetune.lr: %g is outside (0, 100]", x);
                goto done;
            }
            spec->finetune_lr = (float)x;
        }
    }
    json_t *cal = json_object_get(root, "calibration");
    if (cal) {
        if (!json_is_object(cal)) {
            pl_err(err, errlen, "calibration: must be an object {\"samples\"}");
            goto done;
        }
        static const char *const cal_keys[] = {"samples", NULL};
        if (check_keys(cal, cal_keys, "calibration", err, errlen) != 0) goto done;
        long long s = spec->calib_samples;
        if (parse_int(cal, "samples", 1, 1000000, &s, "calibration", err, errlen) != 0) goto done;
        spec->calib_samples = (int)s;
    }
    long long seed = (long long)spec->seed;
    if (parse_int(root, "seed", 0, (long long)INT64_MAX, &seed, "", err, errlen) != 0) goto done;
    spec->seed = (uint64_t)seed;
    rc = 0;
done:
    json_decref(root);
    if (rc != 0) prune_spec_free(spec);
    return rc;
}

void prune_spec_free(prune_spec *spec)
{
    if (!spec) return;
    free(spec->entries);
    spec->entries = NULL;
    spec->n = 0;
}
