/* cmd_eval.c — `prunelab eval`: accuracy, loss and speed of a checkpoint on a dataset split,
 * printed as one JSON object on stdout (other tools parse it). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "blas.h"
#include "cli.h"
#include "data.h"
#include "model.h"
#include "ops.h"
#include "prune.h"
#include "measure.h"
#include "tokens.h"
#include "train.h"
#include "util.h"

static const char *const splits[] = {"test", "train"};

int cmd_eval(int argc, char **argv)
{
    const char *model_path = NULL, *dataset_name = NULL, *data_dir = NULL, *masks = NULL;
    int split = 0, batch = 256, threads = 0, seq_len = TOKENS_DEFAULT_SEQ_LEN;
    long max_tokens = 0;
    cli_opt opts[] = {
        {"--model", CLI_STRING, &model_path, "M", "checkpoint to evaluate", 0, 0, NULL, 0},
        {"--dataset", CLI_STRING, &dataset_name, "NAME", "fashion-mnist, mnist, cifar10, cifar100, synthetic[:...]",
         0, 0, NULL, 0},
        {"--seq-len", CLI_INT, &seq_len, "T", "LM: tokens per evaluation window (default 256)", 2, 65536, NULL, 0},
        {"--max-tokens", CLI_LONG, &max_tokens, "N", "LM: evaluate the first ceil(N / T) windows only", 1, 1e15, NULL,
         0},
        {"--split", CLI_CHOICE, &split, NULL, "split to evaluate (default test)", 0, 0, "test|train", 0},
        {"--batch", CLI_INT, &batch, "B", "evaluation batch size (default 256)", 1, 65536, NULL, 0},
        {"--threads", CLI_INT, &threads, "T", "BLAS and kernel threads (default: all cores)", 1, 1024, NULL, 0},
        {"--data-dir", CLI_STRING, &data_dir, "DIR", "directory holding the dataset files", 0, 0, NULL, 0},
        {"--masks", CLI_STRING, &masks, "K", "apply this mask file (prunelab prune --masks-out) first", 0, 0, NULL, 0},
    };
    cli_spec s = {
        .cmd = "eval",
        .usage = "prunelab eval --model M --dataset NAME [--split test|train] [--batch B --threads T --data-dir DIR "
                 "--masks K]",
        .summary = "Evaluate a checkpoint and print one JSON object: accuracy, loss, params, nonzero_params,\n"
                   "flops_per_sample, latency_ms_per_batch, samples_per_s, peak_rss_kb, blas_kernel, threads, n.\n"
                   "A causal LM on a token dataset (in-order windows of --seq-len tokens): also task, perplexity,\n"
                   "bits_per_token, bits_per_byte (when known), tokens (predictions), seq_len, tokens_per_s;\n"
                   "accuracy is next-token top-1 and a sample is a window.",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
    };
    cli_parse(&s, argc, argv, NULL);
    cli_require(&s, "--model");
    cli_require(&s, "--dataset");
    cli_set_threads(threads);
    char err[PL_ERRLEN];
    cli_verify_blas(&s);

    model m;
    cli_load_model(&s, &m, model_path, dataset_name);
    if (masks && prune_mask_load(&m, masks, err, sizeof err) != 0) cli_fail(&s, NULL, "%s", err);
    dataset ds;
    cli_load_data(&s, &ds, dataset_name, data_dir, splits[split], seq_len, max_tokens);
    cli_check_data(&s, &m, &ds);
    eval_result r;
    if (train_evaluate(&m, &ds, batch, &r, err, sizeof err) != 0) cli_fail(&s, NULL, "%s", err);

    size_t nonzero = model_count_nonzero(&m);
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(model_path));
    json_object_set_new(o, "dataset", json_string(ds.name));
    json_object_set_new(o, "split", json_string(splits[split]));
    json_object_set_new(o, "n", json_integer(r.n));
    json_object_set_new(o, "accuracy", json_real(r.accuracy));
    json_object_set_new(o, "loss", json_real(r.loss));
    json_object_set_new(o, "params", json_integer((json_int_t)m.n_params));
    json_object_set_new(o, "nonzero_params", json_integer((json_int_t)nonzero));
    json_object_set_new(o, "flops_per_sample", json_real(model_flops_per_sample(&m.cfg)));
    json_object_set_new(o, "batch", json_integer(r.batch));
    if (dataset_is_tokens(&ds)) {
        json_object_set_new(o, "task", json_string("causal_lm"));
        measure_lm_into(o, "", &ds, r.loss);
        json_object_set_new(o, "tokens", json_integer(r.predictions));
        json_object_set_new(o, "seq_len", json_integer(ds.T));
        json_object_set_new(o, "tokens_per_s", json_real(r.tokens_per_s));
    }
    json_object_set_new(o, "latency_ms_per_batch", json_real(r.latency_ms_per_batch));
    json_object_set_new(o, "samples_per_s", json_real(r.samples_per_s));
    json_object_set_new(o, "peak_rss_kb", json_integer(pl_peak_rss_kb()));
    json_object_set_new(o, "blas_kernel", json_string(blas_kernel()));
    json_object_set_new(o, "threads", json_integer(blas_threads()));
    json_object_set_new(o, "ops_threads", json_integer(ops_get_threads()));
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
    printf("%s\n", text);
    free(text);
    json_decref(o);
    dataset_free(&ds);
    model_free(&m);
    return 0;
}
