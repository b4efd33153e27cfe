/* spec_rsst.c — the strict parser of RSST specs (format in engine/rsst.h): the pruning part is
 * parsed by spec_prune_parse_fields from the same object, then the regularisation, rounds,
 * rewind and refill fields. Refill needs unstructured entries of components with a unit, and its
 * apply mode must agree with the structured entries (they end in one selection). */
#include <string.h>

#include "spec.h"

static int parse_reg(json_t *root, const char *path, rsst_spec *s, spec_error *e)
{
    json_t *r;
    if (spec_get_obj(root, path, "rsst", &r, e) != 0) return -1;
    if (!r) return 0;
    char f[160];
    spec_path(f, sizeof f, path, "rsst");
    static const char *const keys[] = {"reg_steps", "lambda_max", "power", "lr", NULL};
    long long t = s->reg_steps;
    double lmax = s->lambda_max, p = s->power, lr = s->reg_lr;
    if (spec_check_keys(r, f, keys, e) != 0 || spec_get_int(r, f, "reg_steps", 0, 100000000, &t, e) != 0 ||
        spec_get_num(r, f, "lambda_max", 0.0, 0, 1e6, 0, &lmax, e) != 0 ||
        spec_get_num(r, f, "power", 0.0, 0, 100.0, 0, &p, e) != 0 ||
        spec_get_num(r, f, "lr", 0.0, 1, 100.0, 0, &lr, e) != 0)
        return -1;
    s->reg_steps = (int)t;
    s->lambda_max = (float)lmax;
    s->power = (float)p;
    s->reg_lr = (float)lr;
    return 0;
}

static int parse_rewind(json_t *root, const char *path, rsst_spec *s, spec_error *e)
{
    char f[160];
    spec_path(f, sizeof f, path, "rewind");
    json_t *rw = json_object_get(root, "rewind");
    if (!rw || json_is_null(rw)) return 0;
    if (json_is_string(rw)) {
        const char *v = json_string_value(rw);
        if (strcmp(v, "none") == 0) s->rewind = RSST_REWIND_NONE;
        else if (strcmp(v, "init") == 0) s->rewind = RSST_REWIND_INIT;
        else return spec_fail(e, "invalid_value", f, "unknown value \"%.40s\" (allowed: \"none\", \"init\", {\"step\": k})", v);
        return 0;
    }
    if (!json_is_object(rw)) return spec_fail(e, "invalid_value", f, "must be \"none\", \"init\" or {\"step\": k}");
    static const char *const keys[] = {"step", NULL};
    if (spec_check_keys(rw, f, keys, e) != 0) return -1;
    char fs[176];
    spec_path(fs, sizeof fs, f, "step");
    if (!json_object_get(rw, "step")) return spec_fail(e, "missing_field", fs, "required in the object form");
    long long k = 0, lim = (long long)s->reg_steps + s->prune.finetune_steps;
    if (spec_get_int(rw, f, "step", 0, lim, &k, e) != 0)
        return spec_fail(e, "invalid_value", fs, "must be an integer in [0, %lld] (round 1 has rsst.reg_steps + "
                         "finetune.steps = %lld steps)", lim, lim);
    s->rewind = RSST_REWIND_STEP;
    s->rewind_step = (long)k;
    return 0;
}

static int parse_refill(json_t *root, const char *path, rsst_spec *s, spec_error *e)
{
    char f[160], fa[176];
    spec_path(f, sizeof f, path, "refill");
    spec_path(fa, sizeof fa, f, "apply");
    json_t *rf = json_object_get(root, "refill");
    if (!rf || json_is_null(rf)) return 0;
    if (!json_is_object(rf)) return spec_fail(e, "invalid_value", f, "must be an object {\"fillback_rate\", \"apply\"} or null");
    static const char *const keys[] = {"fillback_rate", "apply", NULL};
    double fb = 0.0;
    int ap = PA_SHRINK;
    if (spec_check_keys(rf, f, keys, e) != 0 || spec_get_num(rf, f, "fillback_rate", 0.0, 0, 1.0, 0, &fb, e) != 0 ||
        spec_get_choice(rf, f, "apply", spec_apply_names, &ap, e) != 0)
        return -1;
    s->refill = 1;
    s->fillback_rate = (float)fb;
    s->refill_apply = (prune_apply)ap;
    int n_unstructured = 0;
    for (int i = 0; i < s->prune.n; i++) {
        const prune_entry *pe = &s->prune.entries[i];
        if (pe->granularity != PG_UNSTRUCTURED) continue;
        n_unstructured++;
        if (!prune_component_unit(pe->component) || pe->component == PC_LAYER)
            return spec_fail(e, "invalid_value", f, "prune[%d].component %s has no unit to refill into (refill needs "
                             "out_proj, mlp, gate, in_proj, conv1d, x_proj_bc or dt)", i,
                             prune_component_name(pe->component));
    }
    if (n_unstructured == 0) return spec_fail(e, "invalid_value", f, "the spec has no unstructured entry to refill");
    for (int i = 0; i < s->prune.n; i++) {
        const prune_entry *pe = &s->prune.entries[i];
        if (pe->granularity == PG_STRUCTURED && pe->apply != s->refill_apply)
            return spec_fail(e, "invalid_value", fa, "\"%s\" differs from prune[%d].apply (\"%s\"); the refilled units "
                             "join the structured selection, applied one way", spec_apply_names[s->refill_apply], i,
                             spec_apply_names[pe->apply]);
    }
    return 0;
}

int spec_rsst_parse(json_t *root, const char *path, const spec_shape *sh, rsst_spec *s, spec_error *e)
{
    memset(s, 0, sizeof *s);
    s->reg_steps = 100;
    s->lambda_max = 1.0f;
    s->power = 1.0f;
    s->reg_lr = 1e-3f;
    s->rounds = 1;
    s->rewind = RSST_REWIND_NONE;
    s->refill_apply = PA_SHRINK;
    s->batch = SPEC_FINETUNE_BATCH;
    if (!json_is_object(root))
        return spec_fail(e, "invalid_value", path && *path ? path : "spec",
                         "must be a JSON object with a \"prune\" array");
    static const char *const keys[] = {"prune", "rsst", "rounds", "rewind", "refill", "finetune", "calibration",
                                       "batch", "seed", NULL};
    if (spec_check_keys(root, path, keys, e) != 0) return -1;
    if (spec_prune_parse_fields(root, path, sh, &s->prune, e) != 0) return -1;
    long long rounds = s->rounds, batch = s->batch;
    int rc = parse_reg(root, path, s, e);
    if (rc == 0) rc = spec_get_int(root, path, "rounds", 1, 1000, &rounds, e);
    if (rc == 0) rc = spec_get_int(root, path, "batch", 1, 65536, &batch, e);
    s->rounds = (int)rounds;
    s->batch = (int)batch;
    if (rc == 0) rc = parse_rewind(root, path, s, e);
    if (rc == 0) rc = parse_refill(root, path, s, e);
    if (rc != 0) prune_spec_free(&s->prune);
    return rc;
}

void rsst_spec_free(rsst_spec *s)
{
    if (!s) return;
    prune_spec_free(&s->prune);
}
