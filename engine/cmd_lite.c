/* cmd_lite.c — `prunelab lite`: build a lite model (lite.h; the notes' stage 3) from a checkpoint
 * and a lite spec, fine-tune it, write it, and print the lite_run report (one JSON object) on
 * stdout: per-layer dims of source and lite model, params, FLOPs per sample, test accuracy and
 * loss of the source, right after transfer and after fine-tuning, latency (ms per batch, median)
 * and samples/s of both and the speed-up, timed in pairs as a lite cell times them (lite_run ->
 * measure_latency_pair: the same speed-up for the same models).
 * The dataset's train split serves calibration and fine-tuning (loaded only when the spec needs
 * it), its test split evaluation and latency. Progress goes to stderr (--quiet silences it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "blas.h"
#include "cli.h"
#include "data.h"
#include "lite.h"
#include "model.h"
#include "prune.h"
#include "train.h"
#include "tokens.h"
#include "util.h"

typedef struct {
    const char *phase;
    double last_t;
    int last_pct;
} stderr_progress;

static void print_progress(const char *phase, double fraction, void *user)
{
    stderr_progress *s = user;
    int pct = (int)(100.0 * fraction + 0.5);
    double now = pl_now();
    int new_phase = !s->phase || strcmp(s->phase, phase) != 0;
    if (!new_phase && pct != 100 && now - s->last_t < 2.0) return;
    if (!new_phase && pct == s->last_pct) return;
    fprintf(stderr, "lite: %s %d%%\n", phase, pct);
    s->phase = phase;
    s->last_t = now;
    s->last_pct = pct;
}

int cmd_lite(int argc, char **argv)
{
    const char *model_path = NULL, *spec_path = NULL, *out = NULL, *masks_in = NULL;
    const char *dataset_name = NULL, *data_dir = NULL;
    int seq_len = TOKENS_DEFAULT_SEQ_LEN;
    long max_tokens = 0;
    int threads = 0, batch = 256, quiet = 0, reps = 0;
    cli_opt opts[] = {
        {"--model", CLI_STRING, &model_path, "M", "source checkpoint", 0, 0, NULL, 0},
        {"--spec", CLI_STRING, &spec_path, "S.json", "lite spec (JSON, see lite.h)", 0, 0, NULL, 0},
        {"--dataset", CLI_STRING, &dataset_name, "NAME",
         "calibration / fine-tuning (train split), evaluation and latency (test split)", 0, 0, NULL, 0},
        {"--out", CLI_STRING, &out, "M2", "lite checkpoint to write", 0, 0, NULL, 0},
        {"--masks", CLI_STRING, &masks_in, "K.safetensors", "apply this mask file to the source first", 0, 0, NULL, 0},
        {"--data-dir", CLI_STRING, &data_dir, "DIR", "directory holding the dataset files", 0, 0, NULL, 0},
        {"--seq-len", CLI_INT, &seq_len, "T", "LM: tokens per window (default 256)", 2, 65536, NULL, 0},
        {"--max-tokens", CLI_LONG, &max_tokens, "N", "LM: evaluate the first ceil(N / T) windows only", 1, 1e15, NULL,
         0},
        {"--threads", CLI_INT, &threads, "T", "BLAS and kernel threads (default: all cores)", 1, 1024, NULL, 0},
        {"--batch", CLI_INT, &batch, "B", "evaluation batch size (default 256)", 1, 65536, NULL, 0},
        {"--latency-reps", CLI_INT, &reps, "N", "timed pairs of passes (source, lite) of 64 samples (default: as a cell, 5 to 15 in about 3 s)", 1,
         10000, NULL, 0},
        {"--quiet", CLI_FLAG, &quiet, NULL, "no progress lines on stderr", 0, 0, NULL, 0},
    };
    cli_spec s = {
        .cmd = "lite",
        .usage = "prunelab lite --model M --spec S.json --dataset NAME --out M2 [--threads T] [--data-dir DIR]",
        .summary = "Build a lite model (the notes' stage 3) with target dims, keeping the source's most important\n"
                   "channels, states, taps, neurons and blocks, fine-tune it and print a JSON report. Spec:\n"
                   "{\"target\": {\"expand\", \"d_conv\", \"d_state\", \"mlp_ratio\", \"n_layers\"}, \"criterion\",\n"
                   "\"calibration\": {\"samples\"}, \"finetune\": {\"steps\" | \"epochs\", \"lr\", \"batch\"}, \"seed\"}.",
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

    char *text = cli_read_spec(&s, spec_path);
    lite_spec spec;
    if (lite_spec_parse(text, &spec, err, sizeof err) != 0)
        cli_fail(&s, "see 'prunelab lite --help'", "spec %s: %s", spec_path, err);
    free(text);

    model m;
    cli_load_prunable(&s, &m, model_path, dataset_name, masks_in);
    if (lite_target_check(&m, &spec.target, err, sizeof err) != 0)
        cli_fail(&s, "'prunelab inspect --model M' shows the source's dims", "spec %s: %s", spec_path, err);

    int needs_train = spec.finetune_steps > 0 || spec.finetune_epochs > 0 || prune_criterion_needs_calib(spec.criterion);
    dataset train, test;
    if (needs_train) cli_load_data(&s, &train, dataset_name, data_dir, "train", seq_len, 0);
    cli_load_data(&s, &test, dataset_name, data_dir, "test", seq_len, max_tokens);
    cli_check_data(&s, &m, &test);

    lite_run_opts o;
    lite_run_opts_init(&o);
    o.eval_batch = batch;
    o.latency_reps = reps;
    stderr_progress sp = {0};
    if (!quiet) {
        o.progress = print_progress;
        o.progress_user = &sp;
    }
    model lite;
    char *report = NULL;
    if (lite_run(&m, &spec, needs_train ? &train : NULL, &test, &o, &lite, &report, err, sizeof err) != 0)
        cli_fail(&s, NULL, "%s", err);
    if (model_save(&lite, out, err, sizeof err) != 0)
        cli_fail(&s, "check that the directory exists and is writable", "cannot write %s: %s", out, err);
    json_t *rj = json_loads(report, 0, NULL);
    if (rj) { /* where and how it ran */
        json_object_set_new(rj, "model", json_string(model_path));
        json_object_set_new(rj, "out", json_string(out));
        json_object_set_new(rj, "dataset", json_string(test.name));
        json_object_set_new(rj, "blas_kernel", json_string(blas_kernel()));
        json_object_set_new(rj, "threads", json_integer(blas_threads()));
        char *t2 = json_dumps(rj, JSON_COMPACT | JSON_REAL_PRECISION(8));
        printf("%s\n", t2);
        free(t2);
        json_decref(rj);
    } else {
        printf("%s\n", report);
    }
    free(report);
    model_free(&lite);
    model_free(&m);
    if (needs_train) dataset_free(&train);
    dataset_free(&test);
    return 0;
}
