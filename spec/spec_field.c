/* spec_field.c — the strict field readers of spec.h (each refusal names the field path first)
 * and model shapes (spec_shape from inspect JSON, units and presence per component). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "spec.h"

int spec_fail(spec_error *e, const char *code, const char *field, const char *fmt, ...)
{
    if (!e) return -1;
    char text[sizeof e->message - sizeof e->field - 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    e->code = code;
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    if (e->field[0]) snprintf(e->message, sizeof e->message, "%s: %s", e->field, text);
    else snprintf(e->message, sizeof e->message, "%s", text);
    return -1;
}

const char *spec_path(char *buf, size_t n, const char *path, const char *key)
{
    if (path && *path) snprintf(buf, n, "%s.%s", path, key);
    else snprintf(buf, n, "%s", key);
    return buf;
}

static void join(char *buf, size_t n, const char *const *names, const char *sep)
{
    buf[0] = '\0';
    for (int i = 0; names[i]; i++) {
        if (i) strncat(buf, sep, n - strlen(buf) - 1);
        strncat(buf, names[i], n - strlen(buf) - 1);
    }
}

int spec_check_keys(json_t *o, const char *path, const char *const *allowed, spec_error *e)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++) ok = strcmp(key, allowed[i]) == 0;
        if (ok) continue;
        char f[160], list[512];
        join(list, sizeof list, allowed, ", ");
        return spec_fail(e, "unknown_field", spec_path(f, sizeof f, path, key), "unknown key \"%.60s\" (allowed%s%s: %s)",
                         key, path && *path ? " in " : "", path ? path : "", list);
    }
    return 0;
}

int spec_get_obj(json_t *o, const char *path, const char *key, json_t **out, spec_error *e)
{
    char f[160];
    *out = json_object_get(o, key);
    if (*out && !json_is_object(*out))
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, path, key), "must be an object");
    return 0;
}

int spec_get_str(json_t *o, const char *path, const char *key, int required, const char **out, spec_error *e)
{
    char f[160];
    json_t *v = json_object_get(o, key);
    if (!v) return required ? spec_fail(e, "missing_field", spec_path(f, sizeof f, path, key), "required") : 0;
    if (!json_is_string(v)) return spec_fail(e, "invalid_value", spec_path(f, sizeof f, path, key), "must be a string");
    if (json_string_length(v) == 0)
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, path, key), "must not be empty");
    *out = json_string_value(v);
    return 0;
}

int spec_get_int(json_t *o, const char *path, const char *key, long long lo, long long hi, long long *out,
                 spec_error *e)
{
    char f[160];
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_integer(v))
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, path, key), "must be an integer in [%lld, %lld]",
                         lo, hi);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, path, key), "%lld is outside [%lld, %lld]", x, lo,
                         hi);
    *out = x;
    return 0;
}

int spec_get_num(json_t *o, const char *path, const char *key, double lo, int lo_open, double hi, int hi_open,
                 double *out, spec_error *e)
{
    char f[160];
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_number(v)) return spec_fail(e, "invalid_value", spec_path(f, sizeof f, path, key), "must be a number");
    double x = json_number_value(v);
    int ok = (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi); /* false for NaN */
    if (!ok || !isfinite(x))
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, path, key), "%g is outside %c%g, %g%c", x,
                         lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
    *out = x;
    return 0;
}

int spec_get_choice(json_t *o, const char *path, const char *key, const char *const *names, int *out, spec_error *e)
{
    char f[160], list[256];
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    join(list, sizeof list, names, " | ");
    spec_path(f, sizeof f, path, key);
    if (!json_is_string(v)) return spec_fail(e, "invalid_value", f, "must be a string (%s)", list);
    for (int i = 0; names[i]; i++)
        if (strcmp(json_string_value(v), names[i]) == 0) {
            *out = i;
            return 0;
        }
    return spec_fail(e, "invalid_value", f, "unknown value \"%.60s\" (allowed: %s)", json_string_value(v), list);
}

int spec_get_bool(json_t *o, const char *path, const char *key, int *out, spec_error *e)
{
    char f[160];
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_boolean(v))
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, path, key), "must be true or false");
    *out = json_is_true(v);
    return 0;
}

int spec_parse_component(json_t *v, const char *field, prune_component *c, spec_error *e)
{
    if (!v) return spec_fail(e, "missing_field", field, "required");
    if (!json_is_string(v)) return spec_fail(e, "invalid_value", field, "must be a component name (string)");
    if (prune_component_parse(json_string_value(v), c) == 0) return 0;
    char list[512] = "";
    for (int k = 0; k < PC_COUNT; k++) {
        char one[64];
        snprintf(one, sizeof one, "%s%s (%s)", k ? ", " : "", prune_component_name(k), prune_component_alias(k));
        strncat(list, one, sizeof list - strlen(list) - 1);
    }
    return spec_fail(e, "unknown_component", field, "unknown component \"%.40s\" (known: %s)", json_string_value(v),
                     list);
}

int spec_parse_rate(json_t *v, const char *field, float *rate, spec_error *e)
{
    if (!v) return spec_fail(e, "missing_field", field, "required");
    if (!json_is_number(v)) return spec_fail(e, "invalid_value", field, "must be a number in [0, 1)");
    double r = json_number_value(v);
    if (!(r >= 0.0 && r < 1.0)) return spec_fail(e, "invalid_value", field, "%g is outside [0, 1)", r);
    *rate = (float)r;
    if (*rate >= 1.0f) *rate = nextafterf(1.0f, 0.0f); /* 0.99999999 rounds to 1.0f */
    return 0;
}

int spec_get_criterion(json_t *o, const char *path, const char *key, prune_criterion *out, spec_error *e)
{
    char f[160], list[160];
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (json_is_string(v) && prune_criterion_parse(json_string_value(v), out) == 0) return 0;
    join(list, sizeof list, spec_criterion_names, " | ");
    if (!json_is_string(v))
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, path, key), "unknown criterion (not a string; allowed: %s)",
                         list);
    return spec_fail(e, "invalid_value", spec_path(f, sizeof f, path, key), "unknown criterion \"%.40s\" (allowed: %s)",
                     json_string_value(v), list);
}

/* ------------------------------------------------------------------ shapes */

static int int_of(const json_t *o, const char *key, int *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 24)) return -1;
    *out = (int)json_integer_value(v);
    return 0;
}

int spec_shape_from_info(const json_t *info, spec_shape *sh)
{
    memset(sh, 0, sizeof *sh);
    json_t *cfg = json_object_get(info, "config");
    json_t *layers = json_object_get(info, "layers");
    int d = 0;
    if (!json_is_object(cfg) || int_of(cfg, "d_model", &d) != 0 || !json_is_array(layers)) return -1;
    size_t n = json_array_size(layers);
    if (n == 0 || n > SPEC_MAX_LAYERS) return -1;
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(layers, i);
        spec_layer_dims *ld = &sh->layers[i];
        int bad = json_object_get(l, "d_inner")
                      ? int_of(l, "d_inner", &ld->E) || int_of(l, "d_state", &ld->N) || int_of(l, "dt_rank", &ld->R) ||
                            int_of(l, "d_conv", &ld->K) || int_of(l, "mlp", &ld->M)
                      : int_of(l, "E", &ld->E) || int_of(l, "N", &ld->N) || int_of(l, "R", &ld->R) ||
                            int_of(l, "K", &ld->K) || int_of(l, "M", &ld->M);
        if (bad) {
            memset(sh, 0, sizeof *sh);
            return -1;
        }
    }
    sh->d = d;
    sh->n_layers = (int)n;
    return 0;
}

int spec_shape_units(const spec_shape *sh, prune_component c, int li)
{
    if (!sh || li < 0 || li >= sh->n_layers) return 0;
    const spec_layer_dims *l = &sh->layers[li];
    switch (c) {
    case PC_OUT_PROJ: return sh->d;
    case PC_MLP: return l->M;
    case PC_GATE:
    case PC_IN_PROJ: return l->E;
    case PC_CONV1D: return l->K;
    case PC_X_PROJ_BC: return l->N;
    case PC_DT: return l->R;
    case PC_LAYER: return 1;
    default: return 0;
    }
}

int spec_shape_has(const spec_shape *sh, prune_component c, int li)
{
    if (!sh || li < 0 || li >= sh->n_layers) return 0;
    if (c == PC_A_LOG) return sh->layers[li].E > 0 && sh->layers[li].N > 0;
    if (c == PC_D) return sh->layers[li].E > 0;
    return spec_shape_units(sh, c, li) > 0;
}
