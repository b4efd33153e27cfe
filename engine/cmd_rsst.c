/* cmd_rsst.c — `prunelab rsst`: load a checkpoint, run RSST / IMP rounds as an rsst spec says
 * (rsst.h), write the pruned (possibly shrunk) checkpoint and its mask file, and print one JSON
 * report on stdout: the rsst result (base / final test accuracy, params, flops, the per-round
 * "series") plus the spec, paths, the final dims (model_dims_json), the final sparsity
 * (prune_sparsity_json) and the latency against the input model, timed in pairs under a cell's
 * names (measure_latency_into). rsst_run is the call an rsst cell makes.
 * Training (calibration, regularisation, fine-tuning) uses the dataset's train split, the
 * evaluations its test split. Progress goes to stderr, one line per report, unless --quiet. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "data.h"
#include "model.h"
#include "prune.h"
#include "rsst.h"
#include "train.h"
#include "tokens.h"
#include "util.h"

static void progress_stderr(const rsst_progress *p, void *user)
{
    (void)user;
    if (strcmp(p->phase, "regularise") == 0 && p->phase_fraction > 0.0 && p->phase_fraction < 1.0)
        fprintf(stderr, "round %d/%d  regularise %5.1f%%  loss %.4f  lambda %.3g  penalty %.4g  [%.1f%% of run]\n",
                p->round, p->rounds, 100.0 * p->phase_fraction, p->loss, p->lambda, p->penalty, 100.0 * p->fraction);
    else if (strcmp(p->phase, "finetune") == 0 && p->phase_fraction > 0.0 && p->phase_fraction < 1.0)
        fprintf(stderr, "round %d/%d  finetune %5.1f%%  loss %.4f  [%.1f%% of run]\n", p->round, p->rounds,
                100.0 * p->phase_fraction, p->loss, 100.0 * p->fraction);
    else if (p->phase_fraction == 0.0)
        fprintf(stderr, "round %d/%d  %s ...\n", p->round, p->rounds, p->phase);
    fflush(stderr);
}

int cmd_rsst(int argc, char **argv)
{
    const char *model_path = NULL, *spec_path = NULL, *out = NULL, *masks_out = NULL, *masks_in = NULL;
    const char *dataset_name = NULL, *data_dir = NULL;
    int seq_len = TOKENS_DEFAULT_SEQ_LEN;
    long max_tokens = 0;
    int threads = 0, batch = 256, quiet = 0, no_latency = 0, reps = 0;
    cli_opt opts[] = {
        {"--model", CLI_STRING, &model_path, "M", "checkpoint to prune", 0, 0, NULL, 0},
        {"--spec", CLI_STRING, &spec_path, "S.json", "rsst spec (JSON, see rsst.h)", 0, 0, NULL, 0},
        {"--dataset", CLI_STRING, &dataset_name, "NAME", "training (train split) and evaluation (test split) data",
         0, 0, NULL, 0},
        {"--out", CLI_STRING, &out, "M2", "pruned checkpoint to write", 0, 0, NULL, 0},
        {"--masks-out", CLI_STRING, &masks_out, "K.safetensors", "write the mask (U8, one tensor per masked parameter)",
         0, 0, NULL, 0},
        {"--masks", CLI_STRING, &masks_in, "K.safetensors", "apply this mask file first", 0, 0, NULL, 0},
        {"--data-dir", CLI_STRING, &data_dir, "DIR", "directory holding the dataset files", 0, 0, NULL, 0},
        {"--seq-len", CLI_INT, &seq_len, "T", "LM: tokens per window (default 256)", 2, 65536, NULL, 0},
        {"--max-tokens", CLI_LONG, &max_tokens, "N", "LM: evaluate the first ceil(N / T) windows only", 1, 1e15, NULL,
         0},
        {"--threads", CLI_INT, &threads, "T", "BLAS and kernel threads (default: all cores)", 1, 1024, NULL, 0},
        {"--batch", CLI_INT, &batch, "B", "evaluation batch size (default 256)", 1, 65536, NULL, 0},
        {"--latency-reps", CLI_INT, &reps, "N",
         "timed pairs of passes (input, pruned) of 64 samples (default: as a cell, 5 to 15 in about 3 s)", 1, 10000,
         NULL, 0},
        {"--no-latency", CLI_FLAG, &no_latency, NULL, "do not time the pruned model against the input", 0, 0, NULL, 0},
        {"--quiet", CLI_FLAG, &quiet, NULL, "no progress lines on stderr", 0, 0, NULL, 0},
    };
    cli_spec s = {
        .cmd = "rsst",
        .usage = "prunelab rsst --model M --spec S.json --dataset NAME --out M2 [--masks-out K] [--threads T] "
                 "[--data-dir DIR]",
        .summary = "RSST / iterative pruning: per round, pick what to remove by criterion, train with\n"
                   "lambda(t) * sum w^2 on exactly those weights, remove them, optionally refill / rewind,\n"
                   "fine-tune with the masks fixed. Spec: {\"prune\": [...], \"rsst\": {\"reg_steps\",\n"
                   "\"lambda_max\", \"power\", \"lr\"}, \"rounds\", \"rewind\": \"none\"|\"init\"|{\"step\": k},\n"
                   "\"refill\": {\"fillback_rate\", \"apply\"}, \"finetune\": {\"steps\", \"lr\"},\n"
                   "\"calibration\": {\"samples\"}, \"batch\", \"seed\"}. Prints a JSON report with a per-round series.",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
    };
    cli_parse(&s, argc, argv, NULL);
    cli_require(&s, "--model");
    cli_require(&s, "--spec");
    cli_require(&s, "--dataset");
    cli_require(&s, "--out");
    cli_set_threads(threads);
    char err[PL_ERRLEN];
    cli_verify_blas(&s);

    model m;
    cli_load_prunable(&s, &m, model_path, dataset_name, masks_in);

    char *text = cli_read_spec(&s, spec_path);
    rsst_spec spec;
    if (rsst_spec_parse(text, &m, &spec, err, sizeof err) != 0)
        cli_fail(&s, "see 'prunelab rsst --help' and 'prunelab components --model M' for names", "spec %s: %s",
                 spec_path, err);
    free(text);

    dataset train, test;
    cli_load_data(&s, &train, dataset_name, data_dir, "train", seq_len, 0);
    cli_load_data(&s, &test, dataset_name, data_dir, "test", seq_len, max_tokens);
    cli_check_data(&s, &m, &test);
    if (train_check_compat(&m, &test, err, sizeof err) != 0) cli_fail(&s, NULL, "%s", err);

    model input; /* the baseline of the timing */
    if (!no_latency && model_copy(&input, &m, err, sizeof err) != 0) cli_fail(&s, NULL, "copying the model: %s", err);
    rsst_options ro = {.progress = quiet ? NULL : progress_stderr, .report_every_s = 5.0, .eval_batch = batch};
    rsst_result res;
    if (rsst_run(&m, &spec, &train, &test, &ro, &res, err, sizeof err) != 0) cli_fail(&s, NULL, "rsst: %s", err);

    if (model_save(&m, out, err, sizeof err) != 0)
        cli_fail(&s, "check that the directory exists and is writable", "cannot write %s: %s", out, err);
    if (masks_out && prune_mask_save(&m, masks_out, err, sizeof err) != 0)
        cli_fail(&s, "check that the directory exists and is writable", "cannot write %s: %s", masks_out, err);

    json_t *rep = pl_json_take(rsst_result_json(&res));
    if (!json_is_object(rep)) {
        json_decref(rep);
        rep = json_object();
    }
    json_object_set_new(rep, "model", json_string(model_path));
    json_object_set_new(rep, "out", json_string(out));
    json_object_set_new(rep, "spec", json_string(spec_path));
    json_object_set_new(rep, "dataset", json_string(train.name));
    if (masks_out) json_object_set_new(rep, "masks_out", json_string(masks_out));
    json_object_set_new(rep, "rounds", json_integer(spec.rounds));
    json_object_set_new(rep, "layers_after", model_dims_json(&m));
    json_object_set_new(rep, "sparsity", pl_json_take(prune_sparsity_json(&m)));
    if (!no_latency) {
        cli_latency_into(&s, rep, &input, &m, &test, reps);
        model_free(&input);
    }
    char *o = json_dumps(rep, JSON_COMPACT | JSON_REAL_PRECISION(10));
    printf("%s\n", o);
    free(o);
    json_decref(rep);
    rsst_result_free(&res);
    rsst_spec_free(&spec);
    dataset_free(&train);
    dataset_free(&test);
    model_free(&m);
    return 0;
}
