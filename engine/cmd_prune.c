/* cmd_prune.c — `prunelab prune`: load a checkpoint (and optionally a mask file), apply a pruning
 * spec with prune_run (prune.h: the call an ablation / sensitivity / joint cell makes), optionally
 * fine-tune with the masks fixed (train_config_finetune, as cells), write the pruned checkpoint
 * (and its mask file), and print one JSON report on stdout:
 *   params_before / params_after / params_realised, nonzero_before / nonzero_after,
 *   flops_per_sample before / after (of the realised model), entries (what each spec entry
 *   removed, per layer), layers_after (model_dims_json), sparsity (prune_sparsity_json),
 *   finetune (steps, lr, final training loss, seconds), test accuracy and loss before pruning,
 *   after pruning and after fine-tuning, and the latency against the input model, timed in pairs
 *   under a cell's names (measure_latency_into) (the last three when --dataset is given).
 * A structured selection applied as masks is timed through its shrunk twin, as in a cell, so the
 * CLI and a cell report the same speed-up for the same spec.
 * Calibration (activation / taylor / wanda) and fine-tuning use the dataset's train split (loaded
 * only when the spec needs it); evaluation and latency its test split. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "data.h"
#include "measure.h"
#include "model.h"
#include "prune.h"
#include "tokens.h"
#include "train.h"
#include "util.h"

static json_t *eval_json(const cli_spec *s, const model *m, const dataset *test, int batch)
{
    char err[PL_ERRLEN];
    double acc, loss;
    if (measure_eval(m, test, batch, NULL, &acc, &loss, err, sizeof err) != 0) cli_fail(s, NULL, "evaluation: %s", err);
    json_t *o = json_pack("{s:f,s:f,s:i}", "accuracy", acc, "loss", loss, "n", test->n);
    if (dataset_is_tokens(test)) measure_lm_into(o, "", test, loss);
    return o;
}

int cmd_prune(int argc, char **argv)
{
    const char *model_path = NULL, *spec_path = NULL, *out = NULL, *masks_out = NULL, *masks_in = NULL;
    const char *dataset_name = NULL, *data_dir = NULL;
    int threads = 0, batch = 256, ft_batch = 64, quiet = 0, skip_before = 0, no_latency = 0, reps = 0;
    int seq_len = TOKENS_DEFAULT_SEQ_LEN;
    long max_tokens = 0;
    cli_opt opts[] = {
        {"--model", CLI_STRING, &model_path, "M", "checkpoint to prune", 0, 0, NULL, 0},
        {"--spec", CLI_STRING, &spec_path, "S.json", "pruning spec (JSON, see prune.h)", 0, 0, NULL, 0},
        {"--out", CLI_STRING, &out, "M2", "pruned checkpoint to write", 0, 0, NULL, 0},
        {"--masks-out", CLI_STRING, &masks_out, "K.safetensors", "write the mask (U8, one tensor per masked parameter)",
         0, 0, NULL, 0},
        {"--masks", CLI_STRING, &masks_in, "K.safetensors", "apply this mask file before pruning", 0, 0, NULL, 0},
        {"--dataset", CLI_STRING, &dataset_name, "NAME",
         "calibration / fine-tuning (train split) and evaluation (test split) data", 0, 0, NULL, 0},
        {"--data-dir", CLI_STRING, &data_dir, "DIR", "directory holding the dataset files", 0, 0, NULL, 0},
        {"--seq-len", CLI_INT, &seq_len, "T", "LM: tokens per window (default 256)", 2, 65536, NULL, 0},
        {"--max-tokens", CLI_LONG, &max_tokens, "N", "LM: evaluate the first ceil(N / T) windows only", 1, 1e15, NULL,
         0},
        {"--threads", CLI_INT, &threads, "T", "BLAS and kernel threads (default: all cores)", 1, 1024, NULL, 0},
        {"--batch", CLI_INT, &batch, "B", "evaluation batch size (default 256)", 1, 65536, NULL, 0},
        {"--finetune-batch", CLI_INT, &ft_batch, "B", "fine-tuning batch size (default 64)", 1, 65536, NULL, 0},
        {"--quiet", CLI_FLAG, &quiet, NULL, "no fine-tuning progress lines", 0, 0, NULL, 0},
        {"--no-eval-before", CLI_FLAG, &skip_before, NULL, "do not evaluate the model before pruning (grids)", 0, 0,
         NULL, 0},
        {"--latency-reps", CLI_INT, &reps, "N",
         "timed pairs of passes (input, pruned) of 64 samples (default: as a cell, 5 to 15 in about 3 s)", 1, 10000,
         NULL, 0},
        {"--no-latency", CLI_FLAG, &no_latency, NULL, "do not time the pruned model against the input", 0, 0, NULL, 0},
    };
    cli_spec s = {
        .cmd = "prune",
        .usage = "prunelab prune --model M --spec S.json --out M2 [--masks-out K.safetensors] [--masks K.safetensors] "
                 "[--dataset NAME] [--threads T]",
        .summary = "Prune a checkpoint as a spec says ({\"prune\": [{\"component\", \"granularity\", \"rate\",\n"
                   "\"criterion\", \"scope\", \"layers\", \"apply\"}, ...], \"finetune\": {\"steps\", \"lr\"},\n"
                   "\"calibration\": {\"samples\"}, \"seed\"}), optionally fine-tune with the masks fixed, write\n"
                   "the result and print a JSON report (params, sparsity, what each entry removed, accuracy,\n"
                   "speed-up against the input, timed in pairs as a cell times it).",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
    };
    cli_parse(&s, argc, argv, NULL);
    cli_require(&s, "--model");
    cli_require(&s, "--spec");
    cli_require(&s, "--out");
    cli_set_threads(threads);
    char err[PL_ERRLEN];
    cli_verify_blas(&s);
    double t0 = pl_now();

    model m;
    cli_load_prunable(&s, &m, model_path, dataset_name, masks_in);

    char *text = cli_read_spec(&s, spec_path);
    prune_spec spec;
    if (prune_spec_parse(text, &m, &spec, err, sizeof err) != 0)
        cli_fail(&s, "see 'prunelab prune --help' and 'prunelab components --model M' for names", "spec %s: %s",
                 spec_path, err);
    free(text);

    int needs_data = spec.finetune_steps > 0;
    for (int i = 0; i < spec.n; i++) needs_data |= prune_criterion_needs_calib(spec.entries[i].criterion);
    if (needs_data && !dataset_name)
        cli_fail(&s, NULL, "the spec needs data (%s): give --dataset NAME",
                 spec.finetune_steps > 0 ? "fine-tuning" : "calibration criterion");
    dataset train, test;
    int have_data = dataset_name != NULL, have_train = have_data && needs_data;
    if (have_train) cli_load_data(&s, &train, dataset_name, data_dir, "train", seq_len, 0);
    if (have_train) cli_check_data(&s, &m, &train);
    if (have_data) {
        cli_load_data(&s, &test, dataset_name, data_dir, "test", seq_len, max_tokens);
        if (train_check_compat(&m, &test, err, sizeof err) != 0) cli_fail(&s, NULL, "%s", err);
    }

    json_t *rep = json_object();
    json_object_set_new(rep, "model", json_string(model_path));
    json_object_set_new(rep, "out", json_string(out));
    json_object_set_new(rep, "spec", json_string(spec_path));
    json_object_set_new(rep, "params_before", json_integer((json_int_t)m.n_params));
    json_object_set_new(rep, "nonzero_before", json_integer((json_int_t)model_count_nonzero(&m)));
    json_object_set_new(rep, "flops_per_sample_before", json_real(model_flops_per_sample(&m.cfg)));
    json_t *acc = json_object();
    if (have_data && !skip_before) json_object_set_new(acc, "before", eval_json(&s, &m, &test, batch));

    model pm, twin;
    char *entries = NULL;
    if (prune_run(&m, &spec, have_train ? &train : NULL, &pm, &twin, &entries, err, sizeof err) != 0)
        cli_fail(&s, NULL, "%s", err);
    json_object_set_new(rep, "entries", pl_json_take(entries));
    if (have_data) json_object_set_new(acc, "pruned", eval_json(&s, &pm, &test, batch));

    json_t *ft = json_object();
    json_object_set_new(ft, "steps", json_integer(spec.finetune_steps));
    if (spec.finetune_steps > 0) {
        train_config tc;
        train_config_finetune(&tc, &train, spec.finetune_steps, 0, spec.finetune_lr, ft_batch, spec.seed);
        tc.report_every_s = 5.0;
        tc.progress = quiet ? NULL : train_progress_stderr;
        train_result tr;
        if (train_run(&pm, &train, NULL, &tc, &tr, err, sizeof err) != 0) cli_fail(&s, NULL, "fine-tuning: %s", err);
        json_object_set_new(ft, "lr", json_real(spec.finetune_lr));
        json_object_set_new(ft, "steps_done", json_integer(tr.steps));
        json_object_set_new(ft, "train_loss", json_real(tr.train_loss));
        json_object_set_new(ft, "seconds", json_real(tr.seconds));
        json_object_set_new(acc, "finetuned", eval_json(&s, &pm, &test, batch));
    }
    json_object_set_new(rep, "finetune", ft);

    if (model_save(&pm, out, err, sizeof err) != 0)
        cli_fail(&s, "check that the directory exists and is writable", "cannot write %s: %s", out, err);
    if (masks_out && prune_mask_save(&pm, masks_out, err, sizeof err) != 0)
        cli_fail(&s, "check that the directory exists and is writable", "cannot write %s: %s", masks_out, err);
    if (masks_out) json_object_set_new(rep, "masks_out", json_string(masks_out));

    const model *realised = twin.n_params ? &twin : &pm;
    json_object_set_new(rep, "params_after", json_integer((json_int_t)pm.n_params));
    json_object_set_new(rep, "params_realised", json_integer((json_int_t)realised->n_params));
    json_object_set_new(rep, "nonzero_after", json_integer((json_int_t)model_count_nonzero(&pm)));
    json_object_set_new(rep, "flops_per_sample_after", json_real(model_flops_per_sample(&realised->cfg)));
    json_object_set_new(rep, "layers_after", model_dims_json(realised));
    json_object_set_new(rep, "sparsity", pl_json_take(prune_sparsity_json(&pm)));
    if (have_data && !no_latency) cli_latency_into(&s, rep, &m, realised, &test, reps);
    if (have_data) json_object_set_new(rep, "test", acc);
    else json_decref(acc);
    json_object_set_new(rep, "seconds", json_real(pl_now() - t0));
    char *o = json_dumps(rep, JSON_COMPACT | JSON_REAL_PRECISION(10));
    printf("%s\n", o);
    free(o);
    json_decref(rep);
    prune_spec_free(&spec);
    if (have_train) dataset_free(&train);
    if (have_data) dataset_free(&test);
    model_free(&twin);
    model_free(&pm);
    model_free(&m);
    return 0;
}
