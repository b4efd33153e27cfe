/* cell_prune.c — the ablation, sensitivity and joint recipes of a cell: the spec's entries
 * applied to a copy of the input model by prune_apply_spec_report; when a structured selection is
 * applied as masks, the same selection shrunk gives the realised twin that is timed. */
#include <jansson.h>
#include <string.h>

#include "cell_internal.h"
#include "model.h"
#include "prune.h"
#include "util.h"

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

cell_error cell_run_prune(recipe_env *env, recipe_out *ro)
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
    cell_progress(env->c, "prune", 0.0, NULL, 1);
    char *report = NULL;
    if (prune_apply_spec_report(&ro->produced, &ps, env->train, &report, e2, sizeof e2) != 0) {
        prune_spec_free(&ps);
        pl_err(err, errlen, "pruning: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    json_object_set_new(ro->extra, "entries", cell_parse_or_null(report));
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
    cell_progress(env->c, "prune", 1.0, NULL, 1);
    prune_spec_free(&ps);
    return CELL_OK;
}
