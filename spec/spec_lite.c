/* spec_lite.c — the strict parser of lite specs (format in engine/lite.h) and the check of a
 * lite target against the source's shape: a lite model only shrinks, and never to nothing. */
#include <math.h>
#include <string.h>

#include "spec.h"

static int round_int(double x) { return (int)floor(x + 0.5); }

void lite_spec_init(lite_spec *s)
{
    memset(s, 0, sizeof *s);
    s->target = (lite_target){.expand = LITE_UNSET, .d_conv = LITE_UNSET, .d_state = LITE_UNSET,
                              .mlp_ratio = LITE_UNSET, .n_layers = LITE_UNSET};
    s->criterion = PCR_MAGNITUDE;
    s->calib_samples = SPEC_CALIB_SAMPLES;
    s->finetune_lr = SPEC_FINETUNE_LR;
    s->finetune_batch = SPEC_FINETUNE_BATCH;
    s->seed = 1;
}

static int parse_target(json_t *root, const char *path, lite_target *t, spec_error *e)
{
    char f[160];
    spec_path(f, sizeof f, path, "target");
    json_t *o;
    if (spec_get_obj(root, path, "target", &o, e) != 0) return -1;
    if (!o)
        return spec_fail(e, "missing_field", f, "required (an object with expand, d_conv, d_state, mlp_ratio, n_layers)");
    static const char *const keys[] = {"expand", "d_conv", "d_state", "mlp_ratio", "n_layers", NULL};
    if (spec_check_keys(o, f, keys, e) != 0) return -1;
    if (json_object_size(o) == 0)
        return spec_fail(e, "invalid_value", f, "empty (give at least one of expand, d_conv, d_state, mlp_ratio, n_layers)");
    double expand = t->expand, mlp = t->mlp_ratio;
    long long K = t->d_conv, N = t->d_state, L = t->n_layers;
    if (spec_get_num(o, f, "expand", 0.0, 1, 64.0, 0, &expand, e) != 0 ||
        spec_get_num(o, f, "mlp_ratio", 0.0, 0, 64.0, 0, &mlp, e) != 0 ||
        spec_get_int(o, f, "d_conv", 1, 64, &K, e) != 0 || spec_get_int(o, f, "d_state", 1, 4096, &N, e) != 0 ||
        spec_get_int(o, f, "n_layers", 1, SPEC_MAX_LAYERS, &L, e) != 0)
        return -1;
    t->expand = (float)expand;
    t->mlp_ratio = (float)mlp;
    t->d_conv = (int)K;
    t->d_state = (int)N;
    t->n_layers = (int)L;
    return 0;
}

static int parse_finetune(json_t *root, const char *path, lite_spec *s, spec_error *e)
{
    json_t *o;
    if (spec_get_obj(root, path, "finetune", &o, e) != 0) return -1;
    if (!o) return 0;
    char f[160], fe[176];
    spec_path(f, sizeof f, path, "finetune");
    static const char *const keys[] = {"steps", "epochs", "lr", "batch", NULL};
    if (spec_check_keys(o, f, keys, e) != 0) return -1;
    if (json_object_get(o, "steps") && json_object_get(o, "epochs"))
        return spec_fail(e, "invalid_value", spec_path(fe, sizeof fe, f, "epochs"),
                         "give finetune.steps or finetune.epochs, not both");
    long long steps = 0, epochs = 0, batch = s->finetune_batch;
    double lr = s->finetune_lr;
    if (spec_get_int(o, f, "steps", 0, 1000000000LL, &steps, e) != 0 ||
        spec_get_int(o, f, "epochs", 0, 100000, &epochs, e) != 0 ||
        spec_get_num(o, f, "lr", 0.0, 1, 10.0, 0, &lr, e) != 0 || spec_get_int(o, f, "batch", 1, 65536, &batch, e) != 0)
        return -1;
    s->finetune_steps = (long)steps;
    s->finetune_epochs = (int)epochs;
    s->finetune_lr = (float)lr;
    s->finetune_batch = (int)batch;
    return 0;
}

int spec_lite_parse(json_t *root, const char *path, lite_spec *s, spec_error *e)
{
    lite_spec_init(s);
    if (!json_is_object(root)) return spec_fail(e, "invalid_value", path && *path ? path : "spec", "must be a JSON object");
    static const char *const keys[] = {"target", "criterion", "calibration", "finetune", "seed", NULL};
    if (spec_check_keys(root, path, keys, e) != 0 || parse_target(root, path, &s->target, e) != 0 ||
        spec_get_criterion(root, path, "criterion", &s->criterion, e) != 0)
        goto fail;
    json_t *c;
    if (spec_get_obj(root, path, "calibration", &c, e) != 0) goto fail;
    if (c) {
        char f[160];
        spec_path(f, sizeof f, path, "calibration");
        static const char *const ckeys[] = {"samples", NULL};
        long long n = s->calib_samples;
        if (spec_check_keys(c, f, ckeys, e) != 0 || spec_get_int(c, f, "samples", 1, 1000000, &n, e) != 0) goto fail;
        s->calib_samples = (int)n;
    }
    if (parse_finetune(root, path, s, e) != 0) goto fail;
    json_t *sv = json_object_get(root, "seed");
    if (sv) {
        char f[160];
        if (!json_is_integer(sv) || json_integer_value(sv) < 0) {
            spec_fail(e, "invalid_value", spec_path(f, sizeof f, path, "seed"), "must be a non-negative integer");
            goto fail;
        }
        s->seed = (uint64_t)json_integer_value(sv);
    }
    return 0;
fail:
    lite_spec_init(s);
    return -1;
}

/* The first layer where `want` exceeds what the source has (have_of), or -1. */
typedef int (*dim_of)(const spec_layer_dims *l);
static int dim_N(const spec_layer_dims *l) { return l->N; }
static int dim_K(const spec_layer_dims *l) { return l->K; }
static int dim_E(const spec_layer_dims *l) { return l->E; }

static int larger_layer(const spec_shape *sh, int want, dim_of have_of)
{
    for (int i = 0; i < sh->n_layers; i++)
        if (want > have_of(&sh->layers[i])) return i;
    return -1;
}

int spec_lite_check(const lite_target *t, const char *path, const spec_shape *sh, spec_error *e)
{
    if (!sh || sh->n_layers <= 0) return 0;
    char f[160], p[160];
    spec_path(p, sizeof p, path, "target");
    int d = sh->d, li;
    /* targets built in code (not parsed) meet the same lower bounds */
    if (t->n_layers != LITE_UNSET && t->n_layers < 1)
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, p, "n_layers"), "%d leaves no block (at least 1)",
                         t->n_layers);
    if (t->expand != LITE_UNSET && !(t->expand > 0.0f))
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, p, "expand"), "%g must be > 0", (double)t->expand);
    if (t->d_state != LITE_UNSET && t->d_state < 1)
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, p, "d_state"), "%d leaves no state (at least 1)",
                         t->d_state);
    if (t->d_conv != LITE_UNSET && t->d_conv < 1)
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, p, "d_conv"), "%d leaves no conv tap (at least 1)",
                         t->d_conv);
    if (t->mlp_ratio != LITE_UNSET && !(t->mlp_ratio >= 0.0f))
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, p, "mlp_ratio"), "%g must be >= 0",
                         (double)t->mlp_ratio);
    if (t->n_layers != LITE_UNSET && t->n_layers > sh->n_layers)
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, p, "n_layers"),
                         "%d is larger than the source's %d (a lite model only shrinks)", t->n_layers, sh->n_layers);
    if (t->expand != LITE_UNSET) {
        int E2 = round_int((double)t->expand * d);
        spec_path(f, sizeof f, p, "expand");
        if (E2 < 1) return spec_fail(e, "invalid_value", f, "%g gives 0 d_inner channels (d_model %d)", (double)t->expand, d);
        if ((li = larger_layer(sh, E2, dim_E)) >= 0)
            return spec_fail(e, "invalid_value", f, "%g gives %d d_inner channels, more than the source's %d in layer %d "
                             "(a lite model only shrinks)", (double)t->expand, E2, sh->layers[li].E, li);
    }
    if (t->d_state != LITE_UNSET && (li = larger_layer(sh, t->d_state, dim_N)) >= 0)
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, p, "d_state"),
                         "%d is larger than the source's %d in layer %d (a lite model only shrinks)", t->d_state,
                         sh->layers[li].N, li);
    if (t->d_conv != LITE_UNSET && (li = larger_layer(sh, t->d_conv, dim_K)) >= 0)
        return spec_fail(e, "invalid_value", spec_path(f, sizeof f, p, "d_conv"),
                         "%d is larger than the source's %d in layer %d (a lite model only shrinks)", t->d_conv,
                         sh->layers[li].K, li);
    if (t->mlp_ratio != LITE_UNSET) {
        int M2 = round_int((double)t->mlp_ratio * d), any = 0;
        spec_path(f, sizeof f, p, "mlp_ratio");
        for (int i = 0; i < sh->n_layers; i++) {
            if (sh->layers[i].M == 0) continue; /* no MLP to shrink; a lite model never adds one */
            any = 1;
            if (M2 > sh->layers[i].M)
                return spec_fail(e, "invalid_value", f, "%g gives %d MLP neurons, more than the source's %d in layer %d "
                                 "(a lite model only shrinks)", (double)t->mlp_ratio, M2, sh->layers[i].M, i);
        }
        if (!any && M2 > 0)
            return spec_fail(e, "invalid_value", f, "%g asks for an MLP, but the source has none (use 0 or omit it)",
                             (double)t->mlp_ratio);
    }
    return 0;
}
