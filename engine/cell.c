/* cell.c — one experiment cell (cell.h, DESIGN.md section 6): runs a parsed spec.
 *
 * Flow of every recipe (cell_run_text):
 *   parse the spec (cell_spec.c) -> threads -> load the input model (or create one: train) ->
 *   load the evaluation split (and the train split when the recipe trains, fine-tunes or
 *   calibrates) -> baseline (given, or evaluated here) -> the recipe (cell_<recipe>.c) produces
 *   a model (and, for structured selections applied as masks, a shrunk twin that gives the
 *   realised speed) -> fine-tuning (masks fixed) -> evaluation -> latency (paired with the input
 *   model, measure.c) -> the output model is written atomically -> one result event.
 * Events (cell_events.c) go through one writer; a heartbeat thread repeats the last progress
 * line while the work is silent. SIGTERM / SIGINT / SIGUSR2 while a cell runs removes the output model's
 * temporary file, and the output itself when no result was sent.
 * Ownership: everything a run allocates is freed before cell_run_text returns; the spec owns
 * its strings. Letters as in model.h. */
#include "cell.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cell_internal.h"
#include "data.h"
#include "lite.h"
#include "measure.h"
#include "model.h"
#include "ops.h"
#include "prune.h"
#include "rsst.h"
#include "tokens.h"
#include "train.h"
#include "util.h"

/* measure.h with the cell's progress lines for phase. */
static int eval_model(cell_ctx *c, const model *m, const dataset *ds, const char *phase, double *acc, double *loss,
                      char *err, size_t errlen)
{
    measure_progress p = {cell_measure_progress, c, phase};
    return measure_eval(m, ds, CELL_EVAL_BATCH, &p, acc, loss, err, errlen);
}

/* Checks of spec fields that depend on the input model (bad_spec with the field). */
static cell_error check_against_model(const cell_spec *s, const model *in, char *err, size_t errlen)
{
    spec_shape sh;
    spec_error e;
    model_shape(in, &sh);
    if (spec_cell_check(s, &sh, &e) != 0) return cell_bad(err, errlen, "%s", e.message);
    return CELL_OK;
}

static cell_error cell_execute(cell_ctx *c, const cell_spec *s, json_t *metrics, char *err, size_t errlen)
{
    cell_error rc = CELL_OK;
    char e2[PL_ERRLEN];
    model input;
    memset(&input, 0, sizeof input);
    recipe_out ro;
    memset(&ro, 0, sizeof ro);
    ro.extra = json_object();
    dataset ds_eval, ds_train;
    int have_eval = 0, have_train = 0;
    dataset eval_view;

    if (s->threads > 0) blas_set_threads(s->threads);
    int nthreads = blas_threads();
    ops_set_threads(nthreads > 0 ? nthreads : 1);

    /* phase plan (weights are rough shares of the wall time) */
    int ft_planned = (s->finetune_steps > 0 && s->recipe != CELL_RSST) || s->recipe == CELL_LITE;
    cell_plan_add(c, "load", 0.02);
    if (!s->have_baseline) cell_plan_add(c, "baseline", 0.12);
    if (s->recipe == CELL_TRAIN) cell_plan_add(c, "train", 0.7);
    if (s->recipe == CELL_RSST) cell_plan_add(c, "rsst", 0.7);
    if (s->recipe == CELL_ABLATION || s->recipe == CELL_SENSITIVITY || s->recipe == CELL_JOINT)
        cell_plan_add(c, "prune", 0.1);
    if (s->recipe == CELL_LITE) {
        cell_plan_add(c, "score", 0.05);
        cell_plan_add(c, "build", 0.03);
    }
    if (ft_planned) cell_plan_add(c, "eval_pruned", 0.12);
    if (ft_planned) cell_plan_add(c, "finetune", 0.5);
    cell_plan_add(c, "eval", 0.12);
    cell_plan_add(c, "latency", 0.04);
    cell_plan_add(c, "save", 0.01);

    cell_progress(c, "load", 0.0, json_pack("{s:s}", "recipe", cell_recipe_name(s->recipe)), 1);
    if (s->model) {
        if (model_load(&input, s->model, s->dataset, e2, sizeof e2) != 0) {
            model_free(&input);
            memset(&input, 0, sizeof input);
            rc = CELL_ERR_BAD_MODEL;
            pl_err(err, errlen, "model: %s", e2);
            goto out;
        }
        if (!prune_is_mamba_model(&input)) {
            rc = CELL_ERR_BAD_MODEL;
            pl_err(err, errlen,
                   "model: %s is not a Mamba model (patch-Mamba classifier or MambaForCausalLM) with the expected "
                   "tensor names and shapes",
                   s->model);
            goto out;
        }
    } else if ((rc = cell_create_model(s, &input, err, errlen)) != CELL_OK) {
        goto out;
    }
    if ((rc = check_against_model(s, &input, err, errlen)) != CELL_OK) goto out;
    const char *split = s->eval_train_split ? "train" : "test";
    int lm = input.cfg.task == MODEL_TASK_LM;
    if (lm != tokens_is_name(s->dataset)) {
        rc = cell_bad(err, errlen,
                      lm ? "dataset: the model is a causal LM but \"%s\" is an image dataset (give a token dataset: "
                           "tokens:DIR, text:FILE or synthetic-lm[:...])"
                         : "dataset: the model is an image classifier but \"%s\" is a token dataset (give an image "
                           "dataset)",
                      s->dataset);
        goto out;
    }
    if ((lm ? dataset_load_tokens(&ds_eval, s->dataset, split, s->seq_len, (long)s->eval_max_tokens, e2, sizeof e2)
            : dataset_load(&ds_eval, s->dataset, s->data_dir, split, e2, sizeof e2)) != 0) {
        rc = CELL_ERR_DATA;
        pl_err(err, errlen, "dataset: cannot load %s (%s split): %s", s->dataset, split, e2);
        goto out;
    }
    have_eval = 1;
    if (train_check_compat(&input, &ds_eval, e2, sizeof e2) != 0) {
        rc = cell_bad(err, errlen, "dataset: %s", e2);
        goto out;
    }
    eval_view = ds_eval; /* shallow: shares x / y, never freed */
    if (s->eval_max_samples > 0 && s->eval_max_samples < eval_view.n) eval_view.n = s->eval_max_samples;
    if (spec_cell_needs_train_data(s)) {
        if (s->eval_train_split) {
            ds_train = ds_eval;
        } else {
            if ((lm ? dataset_load_tokens(&ds_train, s->dataset, "train", s->seq_len, 0, e2, sizeof e2)
                    : dataset_load(&ds_train, s->dataset, s->data_dir, "train", e2, sizeof e2)) != 0) {
                rc = CELL_ERR_DATA;
                pl_err(err, errlen, "dataset: cannot load %s (train split): %s", s->dataset, e2);
                goto out;
            }
            have_train = 1;
        }
    }
    const dataset *train = spec_cell_needs_train_data(s) ? &ds_train : NULL;
    cell_progress(c, "load", 1.0, NULL, 1);

    /* baseline */
    double base_acc = s->baseline_accuracy, base_loss = s->have_baseline_loss ? s->baseline_loss : NAN;
    if (!s->have_baseline && eval_model(c, &input, &eval_view, "baseline", &base_acc, &base_loss, e2, sizeof e2) != 0) {
        rc = CELL_ERR_RUNTIME;
        pl_err(err, errlen, "evaluating the baseline: %s", e2);
        goto out;
    }

    /* the recipe */
    recipe_env env = {.s = s, .c = c, .input = &input, .eval = &eval_view, .train = train, .err = err,
                      .errlen = errlen};
    long ft_steps = s->finetune_steps;
    float ft_lr = s->finetune_lr;
    int ft_batch = s->finetune_batch;
    switch (s->recipe) {
    case CELL_TRAIN: rc = cell_run_train(&env, &ro); break;
    case CELL_ABLATION:
    case CELL_SENSITIVITY:
    case CELL_JOINT: rc = cell_run_prune(&env, &ro); break;
    case CELL_LITE: rc = cell_run_lite(&env, &ro, &ft_steps, &ft_lr, &ft_batch); break;
    case CELL_RSST: rc = cell_run_rsst(&env, &ro); break;
    default:
        rc = CELL_ERR_UNAVAILABLE;
        pl_err(err, errlen, "recipe not available: %s", cell_recipe_name(s->recipe));
    }
    if (rc != CELL_OK) goto out;
    if (s->recipe == CELL_TRAIN || s->recipe == CELL_RSST) ft_steps = 0; /* fine-tuned inside the recipe */

    model *prod = &ro.produced;
    if (ft_steps > 0) {
        if (!train) {
            rc = CELL_ERR_RUNTIME;
            pl_err(err, errlen, "fine-tuning needs the train split (not loaded)");
            goto out;
        }
        double pa, pl;
        if (eval_model(c, prod, &eval_view, "eval_pruned", &pa, &pl, e2, sizeof e2) != 0) {
            rc = CELL_ERR_RUNTIME;
            pl_err(err, errlen, "evaluating the pruned model: %s", e2);
            goto out;
        }
        json_t *pj = json_pack("{s:o,s:o,s:o,s:o}", "accuracy", cell_jnum(pa), "loss", cell_jnum(pl), "delta_accuracy",
                               cell_jnum(pa - base_acc), "delta_loss", cell_jnum(pl - base_loss));
        if (lm) {
            measure_lm_into(pj, "", &eval_view, pl);
            json_object_set_new(pj, "delta_perplexity", cell_jnum(exp(pl) - exp(base_loss)));
        }
        json_object_set_new(ro.extra, "pruned", pj);
        json_t *fi = NULL;
        if (cell_finetune(c, prod, train, ft_steps, ft_lr, ft_batch, s->seed, &fi, e2, sizeof e2) != 0) {
            rc = CELL_ERR_RUNTIME;
            pl_err(err, errlen, "fine-tuning: %s", e2);
            goto out;
        }
        json_object_set_new(ro.extra, "finetune", fi);
    }

    double acc, loss;
    double t_eval = pl_now();
    if (eval_model(c, prod, &eval_view, "eval", &acc, &loss, e2, sizeof e2) != 0) {
        rc = CELL_ERR_RUNTIME;
        pl_err(err, errlen, "evaluation: %s", e2);
        goto out;
    }
    t_eval = pl_now() - t_eval;
    const model *realised = ro.twin.n_params ? &ro.twin : prod;
    measure_progress lp = {cell_measure_progress, c, "latency"};
    measure_latency_opts lo = MEASURE_LATENCY_DEFAULT;
    lo.batch = lm ? measure_lm_batch(CELL_LATENCY_BATCH, eval_view.T) : CELL_LATENCY_BATCH;
    if (measure_latency_into(metrics, &input, realised, &eval_view, &lo, &lp, e2, sizeof e2) != 0) {
        rc = CELL_ERR_RUNTIME;
        pl_err(err, errlen, "measuring latency: %s", e2);
        goto out;
    }
    if (s->out) {
        cell_progress(c, "save", 0.0, json_pack("{s:s}", "out", s->out), 1);
        if (model_save(prod, s->out, e2, sizeof e2) != 0) {
            rc = CELL_ERR_RUNTIME;
            pl_err(err, errlen, "out: cannot write %s: %s", s->out, e2);
            goto out;
        }
        cell_guard_out_written();
    }

    /* metrics */
    json_object_set_new(metrics, "recipe", json_string(cell_recipe_name(s->recipe)));
    json_object_set_new(metrics, "accuracy", cell_jnum(acc));
    json_object_set_new(metrics, "loss", cell_jnum(loss));
    json_object_set_new(metrics, "baseline_accuracy", cell_jnum(base_acc));
    json_object_set_new(metrics, "baseline_loss", cell_jnum(base_loss));
    json_object_set_new(metrics, "baseline_source", json_string(s->have_baseline ? "given" : "measured"));
    json_object_set_new(metrics, "delta_accuracy", cell_jnum(acc - base_acc));
    json_object_set_new(metrics, "delta_loss", cell_jnum(loss - base_loss));
    json_object_set_new(metrics, "task", json_string(lm ? "causal_lm" : "image_classifier"));
    json_object_set_new(metrics, "metric", json_string(lm ? "perplexity" : "accuracy"));
    if (lm) {
        measure_lm_into(metrics, "", &eval_view, loss);
        measure_lm_into(metrics, "baseline_", &eval_view, base_loss);
        json_object_set_new(metrics, "delta_perplexity", cell_jnum(exp(loss) - exp(base_loss)));
        /* tokens through the model per second of the evaluation phase (batch filling included) */
        json_object_set_new(metrics, "eval_tokens_per_s",
                            cell_jnum(t_eval > 0 ? (double)eval_view.n * eval_view.T / t_eval : NAN));
        json_object_set_new(metrics, "eval",
                            json_pack("{s:s,s:i,s:I,s:i}", "split", split, "n", eval_view.n, "tokens",
                                      (json_int_t)eval_view.n * (eval_view.T - 1), "seq_len", eval_view.T));
    } else {
        json_object_set_new(metrics, "eval", json_pack("{s:s,s:i}", "split", split, "n", eval_view.n));
    }
    json_object_set_new(metrics, "params", json_integer((json_int_t)prod->n_params));
    json_object_set_new(metrics, "params_nonzero", json_integer((json_int_t)model_count_nonzero(prod)));
    json_object_set_new(metrics, "params_realised", json_integer((json_int_t)realised->n_params));
    json_object_set_new(metrics, "params_baseline", json_integer((json_int_t)input.n_params));
    json_object_set_new(metrics, "params_baseline_nonzero", json_integer((json_int_t)model_count_nonzero(&input)));
    json_object_set_new(metrics, "sparsity", pl_json_take(prune_sparsity_json(prod)));
    json_object_set_new(metrics, "flops_per_sample", cell_jnum(model_flops_per_sample(&realised->cfg)));
    json_object_set_new(metrics, "baseline_flops_per_sample", cell_jnum(model_flops_per_sample(&input.cfg)));
    json_object_set_new(metrics, "layers", model_dims_json(realised));
    json_object_update(metrics, ro.extra);
    json_object_set_new(metrics, "out", s->out ? json_string(s->out) : json_null());
    if (s->out) { /* the written model's config, as `prunelab inspect` prints it: a service
                   * registering the file reads its task, vocabulary and head from here */
        json_t *desc = pl_json_take(model_describe_json(prod));
        json_t *cfg = json_object_get(desc, "config");
        if (cfg) json_object_set(metrics, "config", cfg);
        json_decref(desc);
    }
    json_object_set_new(metrics, "seed", json_integer((json_int_t)s->seed));
    json_object_set_new(metrics, "peak_rss_kb", json_integer(pl_peak_rss_kb()));
    json_object_set_new(metrics, "wall_s", cell_jnum(pl_now() - c->t0));
    json_object_set_new(metrics, "blas_kernel", json_string(blas_kernel()));
    json_object_set_new(metrics, "threads", json_integer(blas_threads()));
out:
    if (ro.have_produced) model_free(&ro.produced);
    if (ro.twin.n_params) model_free(&ro.twin);
    json_decref(ro.extra);
    model_free(&input);
    if (have_train) dataset_free(&ds_train);
    if (have_eval) dataset_free(&ds_eval);
    return rc;
}

int cell_run_text(const char *json_text, FILE *out)
{
    char err[PL_ERRLEN] = "";
    cell_spec s;
    cell_error e = cell_spec_parse(json_text, &s, err, sizeof err);
    if (e != CELL_OK) {
        fprintf(stderr, "prunelab cell: %s: %s\n", cell_error_code(e), err);
        return cell_emit_error(out, e, err);
    }
    cell_guard_output(s.out);
    cell_ctx c;
    cell_ctx_init(&c, out);
    json_t *metrics = json_object();
    e = cell_execute(&c, &s, metrics, err, sizeof err);
    json_t *ev;
    if (e == CELL_OK) {
        ev = json_object();
        json_object_set_new(ev, "event", json_string("result"));
        json_object_set_new(ev, "metrics", metrics);
        metrics = NULL;
    } else {
        fprintf(stderr, "prunelab cell: %s: %s\n", cell_error_code(e), err);
        ev = cell_error_event(e, err);
    }
    cell_emit_final(&c, ev);
    json_decref(ev);
    json_decref(metrics);
    cell_ctx_free(&c);
    cell_guard_release();
    cell_spec_free(&s);
    return cell_error_exit(e);
}

