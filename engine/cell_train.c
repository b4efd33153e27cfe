/* cell_train.c — the train recipe of a cell (train_run with per-epoch progress and series), the
 * fine-tuning every other recipe may run after pruning, and the creation of a model from a
 * preset or dims when a train cell has no init checkpoint. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cell_internal.h"
#include "data.h"
#include "model.h"
#include "lm.h"
#include "tokens.h"
#include "train.h"
#include "util.h"

static void on_train_progress(const train_progress *p, void *user)
{
    cell_ctx *c = user;
    json_t *x = json_object();
    json_object_set_new(x, "epoch", json_integer(p->epoch));
    json_object_set_new(x, "epochs", json_integer(p->epochs));
    json_object_set_new(x, "step", json_integer(p->step));
    json_object_set_new(x, "total_steps", json_integer(p->total_steps));
    json_object_set_new(x, "loss", cell_jnum(p->loss));
    json_object_set_new(x, "lr", cell_jnum(p->lr));
    json_object_set_new(x, "samples_per_s", cell_jnum(p->samples_per_s));
    json_object_set_new(x, "eta_s", cell_jnum(p->eta_s));
    if (p->epoch_end) {
        json_object_set_new(x, "train_loss", cell_jnum(p->train_loss));
        json_object_set_new(x, "train_acc", cell_jnum(p->train_acc));
        if (p->test_acc >= 0) {
            json_object_set_new(x, "test_loss", cell_jnum(p->test_loss));
            json_object_set_new(x, "test_acc", cell_jnum(p->test_acc));
        }
        if (c->series) {
            json_t *row = json_pack("{s:i,s:i,s:o,s:o}", "epoch", p->epoch, "step", (int)p->step, "train_loss",
                                    cell_jnum(p->train_loss), "train_acc", cell_jnum(p->train_acc));
            json_object_set_new(row, "test_loss", p->test_acc >= 0 ? cell_jnum(p->test_loss) : json_null());
            json_object_set_new(row, "test_acc", p->test_acc >= 0 ? cell_jnum(p->test_acc) : json_null());
            json_array_append_new(c->series, row);
        }
    }
    cell_progress(c, c->train_phase ? c->train_phase : "train", p->fraction, x, p->epoch_end);
}

int cell_finetune(cell_ctx *c, model *m, const dataset *train, long steps, float lr, int batch, uint64_t seed,
                    json_t **info, char *err, size_t errlen)
{
    train_config tc;
    train_config_finetune(&tc, train, steps, 0, lr, batch, seed);
    int Bb = batch < train->n ? batch : train->n;
    tc.report_every_s = CELL_PROGRESS_MIN_S;
    tc.progress = on_train_progress;
    tc.progress_user = c;
    c->train_phase = "finetune";
    cell_progress(c, "finetune", 0.0, json_pack("{s:i}", "total_steps", (int)steps), 1);
    train_result tr;
    if (train_run(m, train, NULL, &tc, &tr, err, errlen) != 0) return -1;
    *info = json_object();
    json_object_set_new(*info, "steps", json_integer(tr.steps));
    json_object_set_new(*info, "lr", cell_jnum(lr));
    json_object_set_new(*info, "batch", json_integer(Bb));
    json_object_set_new(*info, "train_loss", cell_jnum(tr.train_loss));
    json_object_set_new(*info, "train_acc", cell_jnum(tr.train_acc));
    json_object_set_new(*info, "seconds", cell_jnum(tr.seconds));
    return 0;
}

cell_error cell_run_train(recipe_env *env, recipe_out *ro)
{
    const cell_spec *s = env->s;
    char e2[PL_ERRLEN];
    if (model_copy(&ro->produced, env->input, e2, sizeof e2) != 0) {
        pl_err(env->err, env->errlen, "copying the model: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    ro->have_produced = 1;
    train_config tc;
    train_config_default(&tc);
    tc.epochs = s->epochs;
    tc.batch = s->batch;
    tc.max_steps = s->max_steps;
    tc.warmup_steps = s->warmup;
    tc.opt.kind = s->optimizer_sgd ? OPTIM_SGD : OPTIM_ADAMW;
    tc.opt.lr = s->lr;
    tc.opt.min_lr = s->min_lr;
    tc.opt.weight_decay = s->weight_decay;
    tc.opt.momentum = s->momentum;
    tc.opt.clip = s->clip;
    tc.seed = s->seed;
    tc.augment = s->augment;
    tc.report_every_s = CELL_PROGRESS_MIN_S;
    tc.progress = on_train_progress;
    tc.progress_user = env->c;
    json_t *series = json_array();
    env->c->train_phase = "train";
    env->c->series = series;
    cell_progress(env->c, "train", 0.0, NULL, 1);
    train_result tr;
    int rc = train_run(&ro->produced, env->train, env->eval, &tc, &tr, e2, sizeof e2);
    env->c->series = NULL;
    if (rc != 0) {
        json_decref(series);
        pl_err(env->err, env->errlen, "training: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    json_t *t = json_object();
    json_object_set_new(t, "epochs", json_integer(s->epochs));
    json_object_set_new(t, "epochs_done", json_integer(tr.epochs_done));
    json_object_set_new(t, "steps", json_integer(tr.steps));
    json_object_set_new(t, "batch", json_integer(s->batch));
    json_object_set_new(t, "optimizer", json_string(s->optimizer_sgd ? "sgd" : "adamw"));
    json_object_set_new(t, "lr", cell_jnum(s->lr));
    json_object_set_new(t, "train_loss", cell_jnum(tr.train_loss));
    json_object_set_new(t, "train_acc", cell_jnum(tr.train_acc));
    json_object_set_new(t, "seconds", cell_jnum(tr.seconds));
    json_object_set_new(t, "samples_per_s",
                        cell_jnum(tr.seconds > 0 ? (double)tr.steps * (s->batch < env->train->n ? s->batch : env->train->n) /
                                                  tr.seconds
                                            : NAN));
    if (dataset_is_tokens(env->train)) {
        json_object_set_new(t, "seq_len", json_integer(env->train->T));
        json_object_set_new(t, "tokens_per_s",
                            cell_jnum(tr.seconds > 0 ? (double)tr.steps *
                                                           (s->batch < env->train->n ? s->batch : env->train->n) *
                                                           env->train->T / tr.seconds
                                                     : NAN));
    }
    json_object_set_new(ro->extra, "train", t);
    json_object_set_new(ro->extra, "series", series);
    return CELL_OK;
}

static cell_error create_lm(const cell_spec *s, model *m, char *err, size_t errlen)
{
    char e2[PL_ERRLEN];
    int V = 0;
    if (lm_dataset_vocab(s->dataset, &V, e2, sizeof e2) != 0) return cell_bad(err, errlen, "dataset: %s", e2);
    /* the preset names the LM presets (tiny -> lm-tiny, ...); a dim that differs from the image
     * preset of that name was given in the spec and overrides the LM preset's */
    model_hparams hp, img;
    char name[32];
    snprintf(name, sizeof name, "lm-%s", s->preset);
    if (lm_preset(name, &hp) != 0 || model_preset(s->preset, &img) != 0)
        return cell_bad(err, errlen, "preset: no LM preset %s", name);
#define OVERRIDE(f) if (s->hp.f != img.f) hp.f = s->hp.f
    OVERRIDE(d);
    OVERRIDE(n_layers);
    OVERRIDE(d_state);
    OVERRIDE(d_conv);
    OVERRIDE(dt_rank);
    OVERRIDE(expand);
    OVERRIDE(mlp_ratio);
#undef OVERRIDE
    model_config cfg;
    if (model_config_lm(&cfg, &hp, V, 1, e2, sizeof e2) != 0)
        return cell_bad(err, errlen, "%s: %s", s->have_dims ? "d_model" : "preset", e2);
    snprintf(cfg.dataset, sizeof cfg.dataset, "%s", s->dataset);
    snprintf(cfg.provenance, sizeof cfg.provenance,
             "{\"created_by\":\"prunelab cell\",\"preset\":\"lm-%s\",\"seed\":%llu}", s->preset,
             (unsigned long long)s->seed);
    if (model_create(m, &cfg, s->seed, e2, sizeof e2) != 0) {
        pl_err(err, errlen, "cannot create the model: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    return CELL_OK;
}

/* Create the model of a train cell that has no "model": a causal LM for a token dataset (tied
 * head, the vocabulary the data implies, preset P -> lm-P with the spec's other dims applied
 * where they differ from image preset P), else the image classifier. */
cell_error cell_create_model(const cell_spec *s, model *m, char *err, size_t errlen)
{
    if (tokens_is_name(s->dataset)) return create_lm(s, m, err, errlen);
    int C, H, W, classes, ch;
    float mean[3], std[3];
    if (dataset_shape(s->dataset, &C, &H, &W, &classes) != 0 || dataset_norm(s->dataset, &ch, mean, std) != 0)
        return cell_bad(err, errlen, "dataset: unknown dataset \"%s\"", s->dataset);
    model_config cfg;
    char e2[PL_ERRLEN];
    if (model_config_from_hparams(&cfg, &s->hp, C, H, W, classes, e2, sizeof e2) != 0)
        return cell_bad(err, errlen, "%s: %s", s->have_dims ? "d_model" : "preset", e2);
    snprintf(cfg.dataset, sizeof cfg.dataset, "%s", s->dataset);
    for (int c = 0; c < 3; c++) {
        cfg.norm_mean[c] = mean[c];
        cfg.norm_std[c] = std[c];
    }
    snprintf(cfg.provenance, sizeof cfg.provenance,
             "{\"created_by\":\"prunelab cell\",\"preset\":\"%s\",\"seed\":%llu}", s->preset,
             (unsigned long long)s->seed);
    if (model_create(m, &cfg, s->seed, e2, sizeof e2) != 0) {
        pl_err(err, errlen, "cannot create the model: %s", e2);
        return CELL_ERR_RUNTIME;
    }
    return CELL_OK;
}

/* ================================================================== the run */
