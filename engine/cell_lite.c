/* cell_lite.c — the lite recipe of a cell (stage 3): lite_build from the input model with score
 * / build progress; the lite spec's fine-tuning is handed back to the common tail. */
#include <jansson.h>
#include <string.h>

#include "cell_internal.h"
#include "lite.h"
#include "model.h"
#include "util.h"

static void on_lite_progress(const char *phase, double fraction, void *user)
{
    cell_progress(user, phase, fraction, NULL, fraction <= 0.0 || fraction >= 1.0);
}

cell_error cell_run_lite(recipe_env *env, recipe_out *ro, long *ft_steps, float *ft_lr, int *ft_batch)
{
    const cell_spec *s = env->s;
    char e2[PL_ERRLEN];
    const lite_spec ls = s->lite;
    if (lite_build(env->input, &ls, env->train, &ro->produced, on_lite_progress, env->c, e2, sizeof e2) != 0) {
        ro->have_produced = 1;
        pl_err(env->err, env->errlen, "building the lite model: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    ro->have_produced = 1;
    json_object_set_new(ro->extra, "lite_spec", spec_lite_json(&ls));
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
