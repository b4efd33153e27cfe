/* spec_prune.c — the strict parser of pruning specs (spec.h):
 *
 *   {"prune": [{"component": "out_proj" | alias, "granularity": "unstructured" | "structured",
 *               "rate": 0.7, "criterion": "magnitude", "scope": "layer" | "global",
 *               "layers": [0, 2], "apply": "shrink" | "mask"}, ...],
 *    "finetune": {"steps": 500, "lr": 1e-3}, "calibration": {"samples": 512}, "seed": 1}
 *
 * Defaults: granularity unstructured, criterion magnitude, scope layer, apply shrink, every
 * layer; no fine-tuning (lr 1e-3 when steps are given without it), 512 calibration samples,
 * seed 1. Only "prune" and each entry's "component" and "rate" are required.
 * Refusals (each names the field, e.g. "prune[1].rate: ..."): unknown keys at any level, values
 * of the wrong type, unknown names, rates outside [0, 1) or not numbers, structured granularity
 * for a component without units (A_log, D), scope global on a structured entry, apply shrink on
 * an unstructured entry (unstructured pruning is always a mask), structured entries that
 * disagree on apply (they form one selection), empty or repeated layer lists, layers out of
 * range or lacking the component (against a shape), and two entries pruning the same component
 * at the same granularity in the same layer. */
#include <stdlib.h>
#include <string.h>

#include "spec.h"

static int parse_entry(json_t *o, const char *path, prune_entry *e, spec_error *err)
{
    if (!json_is_object(o)) return spec_fail(err, "invalid_value", path, "must be an object");
    static const char *const keys[] = {"component", "granularity", "rate", "criterion", "scope", "layers", "apply",
                                       NULL};
    if (spec_check_keys(o, path, keys, err) != 0) return -1;
    memset(e, 0, sizeof *e);
    e->granularity = PG_UNSTRUCTURED;
    e->criterion = PCR_MAGNITUDE;
    e->scope = PS_LAYER;
    e->apply = PA_SHRINK;
    char f[160];
    if (spec_parse_component(json_object_get(o, "component"), spec_path(f, sizeof f, path, "component"),
                             &e->component, err) != 0 ||
        spec_parse_rate(json_object_get(o, "rate"), spec_path(f, sizeof f, path, "rate"), &e->rate, err) != 0)
        return -1;
    int g = e->granularity, sc = e->scope, ap = e->apply;
    if (spec_get_choice(o, path, "granularity", spec_granularity_names, &g, err) != 0 ||
        spec_get_criterion(o, path, "criterion", &e->criterion, err) != 0 ||
        spec_get_choice(o, path, "scope", spec_scope_names, &sc, err) != 0 ||
        spec_get_choice(o, path, "apply", spec_apply_names, &ap, err) != 0)
        return -1;
    e->granularity = (prune_granularity)g;
    e->scope = (prune_scope)sc;
    e->apply = (prune_apply)ap;
    if (e->granularity == PG_STRUCTURED && !prune_component_unit(e->component))
        return spec_fail(err, "invalid_value", spec_path(f, sizeof f, path, "granularity"),
                         "component %s has no structured unit; prune it unstructured",
                         prune_component_name(e->component));
    if (e->granularity == PG_STRUCTURED && e->scope == PS_GLOBAL)
        return spec_fail(err, "invalid_value", spec_path(f, sizeof f, path, "scope"),
                         "\"global\" applies to unstructured entries only (structured units are ranked per layer)");
    if (e->granularity == PG_UNSTRUCTURED && json_object_get(o, "apply") && e->apply == PA_SHRINK)
        return spec_fail(err, "invalid_value", spec_path(f, sizeof f, path, "apply"),
                         "unstructured pruning is always applied as a mask (use \"mask\" or granularity "
                         "\"structured\")");
    if (e->granularity == PG_UNSTRUCTURED) e->apply = PA_MASK;

    json_t *v = json_object_get(o, "layers");
    if (!v) return 0;
    spec_path(f, sizeof f, path, "layers");
    if (!json_is_array(v)) return spec_fail(err, "invalid_value", f, "must be an array of layer indices");
    size_t n = json_array_size(v);
    if (n == 0) return spec_fail(err, "invalid_value", f, "empty (omit the key to select every layer)");
    if (n > SPEC_MAX_LAYERS) return spec_fail(err, "invalid_value", f, "more than %d entries", SPEC_MAX_LAYERS);
    for (size_t i = 0; i < n; i++) {
        char fi[176];
        snprintf(fi, sizeof fi, "%s[%zu]", f, i);
        json_t *x = json_array_get(v, i);
        if (!json_is_integer(x)) return spec_fail(err, "invalid_value", fi, "must be an integer");
        long long li = json_integer_value(x);
        if (li < 0 || li >= SPEC_MAX_LAYERS)
            return spec_fail(err, "invalid_value", fi, "layer %lld is out of range (at most %d layers)", li,
                             SPEC_MAX_LAYERS);
        for (size_t j = 0; j < i; j++)
            if (e->layers[j] == (int)li) return spec_fail(err, "invalid_value", fi, "layer %lld repeated", li);
        e->layers[i] = (int)li;
    }
    e->n_layers = (int)n;
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

/* Rules between entries: no component twice in a layer at one granularity; one apply mode. */
static int check_entries(const prune_spec *s, const char *path, spec_error *err)
{
    int first_structured = -1;
    char f[160], g[32];
    for (int i = 0; i < s->n; i++) {
        const prune_entry *e = &s->entries[i];
        snprintf(g, sizeof g, "prune[%d]", i);
        for (int j = 0; j < i; j++) {
            const prune_entry *o = &s->entries[j];
            if (o->component == e->component && o->granularity == e->granularity && layers_overlap(e, o))
                return spec_fail(err, "invalid_value", spec_path(f, sizeof f, path, g),
                                 "component %s is already pruned %s in the same layers by prune[%d]",
                                 prune_component_name(e->component), spec_granularity_names[e->granularity], j);
        }
        if (e->granularity != PG_STRUCTURED) continue;
        if (first_structured < 0) {
            first_structured = i;
        } else if (s->entries[first_structured].apply != e->apply) {
            snprintf(g, sizeof g, "prune[%d].apply", i);
            return spec_fail(err, "invalid_value", spec_path(f, sizeof f, path, g),
                             "\"%s\" differs from prune[%d] (\"%s\"); structured entries form one selection, applied "
                             "one way", spec_apply_names[e->apply], first_structured,
                             spec_apply_names[s->entries[first_structured].apply]);
        }
    }
    return 0;
}

static int parse_finetune_calib(json_t *root, const char *path, prune_spec *s, spec_error *err)
{
    char f[160];
    json_t *ft, *cal;
    if (spec_get_obj(root, path, "finetune", &ft, err) != 0 || spec_get_obj(root, path, "calibration", &cal, err) != 0)
        return -1;
    if (ft) {
        static const char *const keys[] = {"steps", "lr", NULL};
        spec_path(f, sizeof f, path, "finetune");
        long long steps = 0;
        double lr = s->finetune_lr;
        if (spec_check_keys(ft, f, keys, err) != 0 || spec_get_int(ft, f, "steps", 0, 100000000, &steps, err) != 0 ||
            spec_get_num(ft, f, "lr", 0.0, 1, 100.0, 0, &lr, err) != 0)
            return -1;
        s->finetune_steps = (int)steps;
        s->finetune_lr = (float)lr;
    }
    if (cal) {
        static const char *const keys[] = {"samples", NULL};
        spec_path(f, sizeof f, path, "calibration");
        long long n = s->calib_samples;
        if (spec_check_keys(cal, f, keys, err) != 0 || spec_get_int(cal, f, "samples", 1, 1000000, &n, err) != 0)
            return -1;
        s->calib_samples = (int)n;
    }
    long long seed = (long long)s->seed;
    if (spec_get_int(root, path, "seed", 0, INT64_MAX, &seed, err) != 0) return -1;
    s->seed = (uint64_t)seed;
    return 0;
}

int spec_prune_parse_fields(json_t *root, const char *path, const spec_shape *sh, prune_spec *s, spec_error *err)
{
    memset(s, 0, sizeof *s);
    s->finetune_lr = SPEC_FINETUNE_LR;
    s->calib_samples = SPEC_CALIB_SAMPLES;
    s->seed = 1;
    char f[160];
    spec_path(f, sizeof f, path, "prune");
    json_t *arr = json_object_get(root, "prune");
    if (!arr) return spec_fail(err, "missing_field", f, "required (an array of entries)");
    if (!json_is_array(arr)) return spec_fail(err, "invalid_value", f, "must be an array of entries");
    size_t n = json_array_size(arr);
    if (n > 4096) return spec_fail(err, "invalid_value", f, "%zu entries (at most 4096)", n);
    s->entries = calloc(n ? n : 1, sizeof *s->entries);
    if (!s->entries) return spec_fail(err, "invalid_value", f, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char fi[176];
        snprintf(fi, sizeof fi, "%s[%zu]", f, i);
        rc = parse_entry(json_array_get(arr, i), fi, &s->entries[i], err);
        if (rc == 0) s->n = (int)i + 1;
    }
    if (rc == 0) rc = check_entries(s, path, err);
    if (rc == 0) rc = parse_finetune_calib(root, path, s, err);
    if (rc == 0 && sh) rc = spec_prune_check(s, path, sh, err);
    if (rc != 0) prune_spec_free(s);
    return rc;
}

int spec_prune_parse(json_t *root, const char *path, const spec_shape *sh, prune_spec *s, spec_error *err)
{
    memset(s, 0, sizeof *s);
    if (!json_is_object(root))
        return spec_fail(err, "invalid_value", path && *path ? path : "spec",
                         "must be a JSON object with a \"prune\" array");
    static const char *const keys[] = {"prune", "finetune", "calibration", "seed", NULL};
    if (spec_check_keys(root, path, keys, err) != 0) return -1;
    return spec_prune_parse_fields(root, path, sh, s, err);
}

int spec_prune_check(const prune_spec *s, const char *path, const spec_shape *sh, spec_error *err)
{
    if (!sh || sh->n_layers <= 0) return 0;
    for (int i = 0; i < s->n; i++) {
        const prune_entry *e = &s->entries[i];
        for (int k = 0; k < e->n_layers; k++) {
            char g[64], f[160];
            snprintf(g, sizeof g, "prune[%d].layers[%d]", i, k);
            spec_path(f, sizeof f, path, g);
            int li = e->layers[k];
            if (li >= sh->n_layers)
                return spec_fail(err, "invalid_value", f, "layer %d is out of range (the model has %d layers)", li,
                                 sh->n_layers);
            if (!spec_shape_has(sh, e->component, li))
                return spec_fail(err, "invalid_value", f, "layer %d has no %s", li, prune_component_name(e->component));
        }
    }
    return 0;
}

void prune_spec_free(prune_spec *spec)
{
    if (!spec) return;
    free(spec->entries);
    spec->entries = NULL;
    spec->n = 0;
}
