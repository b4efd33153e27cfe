/* spec_render.c — parsed specs back to JSON, with every default made explicit: what a cell
 * reports as the spec it ran ("rsst_spec", "lite_spec"). The output parses back to the same
 * struct (tests/unit/test_spec_render.c). Floats are printed rounded to 1e-6 so that 0.3f reads
 * as 0.3. */
#include <math.h>

#include "spec.h"

static json_t *real6(double x) { return json_real(round(x * 1e6) / 1e6); }

static json_t *entry_json(const prune_entry *e)
{
    json_t *o = json_pack("{s:s,s:s,s:o,s:s,s:s,s:s}", "component", prune_component_name(e->component), "granularity",
                          spec_granularity_names[e->granularity], "rate", real6(e->rate), "criterion",
                          prune_criterion_name(e->criterion), "scope", spec_scope_names[e->scope], "apply",
                          spec_apply_names[e->apply]);
    if (e->granularity == PG_STRUCTURED) json_object_del(o, "scope");
    if (e->n_layers > 0) {
        json_t *l = json_array();
        for (int i = 0; i < e->n_layers; i++) json_array_append_new(l, json_integer(e->layers[i]));
        json_object_set_new(o, "layers", l);
    }
    return o;
}

json_t *spec_prune_json(const prune_spec *s)
{
    json_t *entries = json_array();
    for (int i = 0; i < s->n; i++) json_array_append_new(entries, entry_json(&s->entries[i]));
    return json_pack("{s:o,s:{s:i,s:o},s:{s:i},s:I}", "prune", entries, "finetune", "steps", s->finetune_steps, "lr",
                     real6(s->finetune_lr), "calibration", "samples", s->calib_samples, "seed", (json_int_t)s->seed);
}

json_t *spec_rsst_json(const rsst_spec *s)
{
    json_t *o = spec_prune_json(&s->prune);
    json_object_set_new(o, "rsst", json_pack("{s:i,s:o,s:o,s:o}", "reg_steps", s->reg_steps, "lambda_max",
                                             real6(s->lambda_max), "power", real6(s->power), "lr", real6(s->reg_lr)));
    json_object_set_new(o, "rounds", json_integer(s->rounds));
    json_object_set_new(o, "batch", json_integer(s->batch));
    json_object_set_new(o, "rewind", s->rewind == RSST_REWIND_STEP ? json_pack("{s:I}", "step", (json_int_t)s->rewind_step)
                                     : json_string(s->rewind == RSST_REWIND_INIT ? "init" : "none"));
    json_object_set_new(o, "refill", s->refill ? json_pack("{s:o,s:s}", "fillback_rate", real6(s->fillback_rate),
                                                           "apply", spec_apply_names[s->refill_apply])
                                               : json_null());
    return o;
}

json_t *spec_lite_target_json(const lite_target *t)
{
    json_t *o = json_object();
    if (t->expand != LITE_UNSET) json_object_set_new(o, "expand", real6(t->expand));
    if (t->d_conv != LITE_UNSET) json_object_set_new(o, "d_conv", json_integer(t->d_conv));
    if (t->d_state != LITE_UNSET) json_object_set_new(o, "d_state", json_integer(t->d_state));
    if (t->mlp_ratio != LITE_UNSET) json_object_set_new(o, "mlp_ratio", real6(t->mlp_ratio));
    if (t->n_layers != LITE_UNSET) json_object_set_new(o, "n_layers", json_integer(t->n_layers));
    return o;
}

json_t *spec_lite_json(const lite_spec *s)
{
    json_t *ft = json_pack("{s:o,s:i}", "lr", real6(s->finetune_lr), "batch", s->finetune_batch);
    if (s->finetune_epochs > 0) json_object_set_new(ft, "epochs", json_integer(s->finetune_epochs));
    else json_object_set_new(ft, "steps", json_integer((json_int_t)s->finetune_steps));
    return json_pack("{s:o,s:s,s:{s:i},s:o,s:I}", "target", spec_lite_target_json(&s->target), "criterion",
                     prune_criterion_name(s->criterion), "calibration", "samples", s->calib_samples, "finetune", ft,
                     "seed", (json_int_t)s->seed);
}
