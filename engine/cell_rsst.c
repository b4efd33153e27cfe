/* cell_rsst.c — the rsst recipe of a cell: rsst_run on a copy of the input model, its rounds
 * reported as progress phases (regularise / prune / finetune / eval with round and rounds); on a
 * causal LM the per-round {accuracy, loss} of the report also carry perplexity and bits_per_token. */
#include <jansson.h>
#include <string.h>

#include "cell_internal.h"
#include "measure.h"
#include "model.h"
#include "rsst.h"
#include "util.h"

static void on_rsst_progress(const rsst_progress *p, void *user)
{
    json_t *x = json_object();
    json_object_set_new(x, "round", json_integer(p->round));
    json_object_set_new(x, "rounds", json_integer(p->rounds));
    json_object_set_new(x, "rsst_fraction", cell_jnum(p->fraction));
    if (p->steps > 0) {
        json_object_set_new(x, "step", json_integer(p->step));
        json_object_set_new(x, "steps", json_integer(p->steps));
        json_object_set_new(x, "loss", cell_jnum(p->loss));
    }
    if (strcmp(p->phase, "regularise") == 0) {
        json_object_set_new(x, "lambda", cell_jnum(p->lambda));
        json_object_set_new(x, "penalty", cell_jnum(p->penalty));
    }
    int edge = p->phase_fraction <= 0.0 || p->phase_fraction >= 1.0;
    cell_progress_ex(user, p->phase, p->phase_fraction, "rsst", p->fraction, x, edge);
}

/* perplexity and bits of o's "loss" into o (an LM's rsst report; o may be NULL) */
static void lm_numbers(json_t *o, const dataset *ds)
{
    json_t *loss = json_object_get(o, "loss");
    if (json_is_number(loss)) measure_lm_into(o, "", ds, json_number_value(loss));
}

/* The rsst recipe: rsst_run on a copy of the input (rounds of select / regularise / remove /
 * refill / rewind / fine-tune, evaluated on the evaluation split every round). */
cell_error cell_run_rsst(recipe_env *env, recipe_out *ro)
{
    char e2[PL_ERRLEN];
    const rsst_spec *rs = &env->s->rsst;
    if (model_copy(&ro->produced, env->input, e2, sizeof e2) != 0) {
        pl_err(env->err, env->errlen, "copying the model: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    ro->have_produced = 1;
    rsst_options opt;
    memset(&opt, 0, sizeof opt);
    opt.progress = on_rsst_progress;
    opt.progress_user = env->c;
    opt.report_every_s = CELL_PROGRESS_MIN_S;
    opt.eval_batch = CELL_EVAL_BATCH;
    rsst_result res;
    memset(&res, 0, sizeof res);
    cell_progress_ex(env->c, "rsst", 0.0, "rsst", 0.0, NULL, 1);
    int rc = rsst_run(&ro->produced, rs, env->train, env->eval, &opt, &res, e2, sizeof e2);
    if (rc != 0) {
        rsst_result_free(&res);
        pl_err(env->err, env->errlen, "rsst: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    json_t *r = pl_json_take(rsst_result_json(&res));
    rsst_result_free(&res);
    if (json_is_object(r) && env->input->cfg.task == MODEL_TASK_LM) {
        /* a causal LM: every {accuracy, loss} of the report gets its perplexity and bits */
        json_t *round;
        size_t i;
        json_array_foreach(json_object_get(r, "series"), i, round) {
            lm_numbers(json_object_get(round, "pruned"), env->eval);
            lm_numbers(json_object_get(round, "finetuned"), env->eval);
        }
        lm_numbers(json_object_get(r, "base"), env->eval);
        lm_numbers(json_object_get(r, "final"), env->eval);
    }
    if (json_is_object(r)) {
        json_t *series = json_object_get(r, "series");
        json_object_set(ro->extra, "series", series ? series : json_null());
        json_object_del(r, "series");
    }
    json_object_set_new(ro->extra, "rsst", r);
    json_object_set_new(ro->extra, "rsst_spec", spec_rsst_json(rs));
    return CELL_OK;
}

