/* cell_prune.c — the ablation, sensitivity and joint recipes of a cell: prune_run (prune.h) on
 * the input model with the spec's entries, the same call `prunelab prune` makes; when a
 * structured selection is applied as masks, its shrunk twin is what the common tail times. */
#include <jansson.h>
#include <string.h>

#include "cell_internal.h"
#include "model.h"
#include "prune.h"
#include "util.h"

cell_error cell_run_prune(recipe_env *env, recipe_out *ro)
{
    const cell_spec *s = env->s;
    prune_spec ps = {.n = s->n_entries, .entries = (prune_entry *)s->entries, .finetune_lr = s->finetune_lr,
                     .calib_samples = s->calib_samples, .seed = s->seed}; /* borrowed, read only */
    cell_progress(env->c, "prune", 0.0, NULL, 1);
    char *report = NULL;
    if (prune_run(env->input, &ps, env->train, &ro->produced, &ro->twin, &report, env->err, env->errlen) != 0)
        return CELL_ERR_RUNTIME;
    ro->have_produced = 1;
    json_object_set_new(ro->extra, "entries", pl_json_take(report));
    cell_progress(env->c, "prune", 1.0, NULL, 1);
    return CELL_OK;
}
