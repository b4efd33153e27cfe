/* cmd_train.c — `prunelab train`: load a checkpoint and a dataset, run train_run with a
 * checkpoint after every epoch, write the trained model.
 *
 * The epoch checkpoint goes to --checkpoint (default: OUT with ".safetensors" replaced by
 * ".ckpt.safetensors") plus its optimizer state beside it (".optim"); `--resume CKPT` takes
 * the weights, moments, step and RNG from there and finishes the same schedule. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "data.h"
#include "model.h"
#include "optim.h"
#include "prune.h"
#include "tokens.h"
#include "train.h"
#include "util.h"

static char *default_checkpoint(const char *out)
{
    size_t n = strlen(out);
    const char *ext = ".safetensors";
    size_t el = strlen(ext);
    char *p = xmalloc(n + 32);
    if (n > el && strcmp(out + n - el, ext) == 0)
        snprintf(p, n + 32, "%.*s.ckpt.safetensors", (int)(n - el), out);
    else
        snprintf(p, n + 32, "%s.ckpt", out);
    return p;
}

int cmd_train(int argc, char **argv)
{
    train_config tc;
    train_config_default(&tc);
    const char *model_path = NULL, *dataset_name = NULL, *out = NULL, *resume = NULL, *data_dir = NULL;
    const char *checkpoint = NULL, *masks = NULL;
    int seq_len = TOKENS_DEFAULT_SEQ_LEN;
    int optimizer = 0, threads = 0, nesterov = 0, no_augment = 0, quiet = 0, no_checkpoint = 0;
    float report_every = 5.0f;
    cli_opt opts[] = {
        {"--model", CLI_STRING, &model_path, "M", "checkpoint to start from", 0, 0, NULL, 0},
        {"--dataset", CLI_STRING, &dataset_name, "NAME",
         "fashion-mnist, mnist, cifar10, cifar100, synthetic[:...]; for an LM tokens:DIR, text:FILE, synthetic-lm[:...]",
         0, 0, NULL, 0},
        {"--out", CLI_STRING, &out, "M2", "trained checkpoint to write", 0, 0, NULL, 0},
        {"--seq-len", CLI_INT, &seq_len, "T", "LM: tokens per training window (default 256)", 2, 65536, NULL, 0},
        {"--epochs", CLI_INT, &tc.epochs, "E", "epochs (default 10)", 1, 100000, NULL, 0},
        {"--batch", CLI_INT, &tc.batch, "B", "batch size (default 64)", 1, 65536, NULL, 0},
        {"--lr", CLI_FLOAT, &tc.opt.lr, "LR", "peak learning rate (default 2e-3)", 1e-9, 100, NULL, 0},
        {"--min-lr", CLI_FLOAT, &tc.opt.min_lr, "LR", "cosine floor (default lr/100)", 0, 100, NULL, 0},
        {"--warmup", CLI_LONG, &tc.warmup_steps, "STEPS",
         "linear warmup steps (default min(1 epoch, 10% of the run))", 0, 1e12, NULL, 0},
        {"--weight-decay", CLI_FLOAT, &tc.opt.weight_decay, "W", "decoupled weight decay on 2-D weights (default 0.05)",
         0, 10, NULL, 0},
        {"--optimizer", CLI_CHOICE, &optimizer, NULL, "optimizer (default adamw)", 0, 0, "adamw|sgd", 0},
        {"--momentum", CLI_FLOAT, &tc.opt.momentum, "MU", "SGD momentum (default 0.9)", 0, 0.999999, NULL, 0},
        {"--nesterov", CLI_FLAG, &nesterov, NULL, "SGD with Nesterov momentum", 0, 0, NULL, 0},
        {"--beta1", CLI_FLOAT, &tc.opt.beta1, "B1", "AdamW beta1 (default 0.9)", 0, 0.999999, NULL, 0},
        {"--beta2", CLI_FLOAT, &tc.opt.beta2, "B2", "AdamW beta2 (default 0.999)", 0, 0.999999, NULL, 0},
        {"--clip", CLI_FLOAT, &tc.opt.clip, "C", "max global gradient norm, 0 = off (default 1.0)", 0, 1e6, NULL, 0},
        {"--threads", CLI_INT, &threads, "T", "BLAS and kernel threads (default: all cores)", 1, 1024, NULL, 0},
        {"--seed", CLI_U64, &tc.seed, "S", "shuffle / augmentation seed (default 1)", 0, 0, NULL, 0},
        {"--max-steps", CLI_LONG, &tc.max_steps, "N", "cap the run (and its schedule) at N steps", 1, 1e12, NULL, 0},
        {"--stop-after-epoch", CLI_INT, &tc.stop_after_epoch, "E",
         "stop after epoch E (checkpoint written; the schedule still spans --epochs)", 1, 100000, NULL, 0},
        {"--resume", CLI_STRING, &resume, "CKPT", "continue from an epoch checkpoint (same flags as the first run)",
         0, 0, NULL, 0},
        {"--checkpoint", CLI_STRING, &checkpoint, "PATH", "epoch checkpoint path (default OUT.ckpt.safetensors)", 0,
         0, NULL, 0},
        {"--no-checkpoint", CLI_FLAG, &no_checkpoint, NULL, "do not write epoch checkpoints", 0, 0, NULL, 0},
        {"--no-augment", CLI_FLAG, &no_augment, NULL, "disable the dataset's augmentation (cifar crop + flip)", 0, 0,
         NULL, 0},
        {"--data-dir", CLI_STRING, &data_dir, "DIR", "directory holding the dataset files", 0, 0, NULL, 0},
        {"--masks", CLI_STRING, &masks, "K", "keep the weights this mask file prunes at zero while training", 0, 0,
         NULL, 0},
        {"--report-every", CLI_FLOAT, &report_every, "SEC", "seconds between progress lines (default 5)", 0.01, 1e6,
         NULL, 0},
        {"--quiet", CLI_FLAG, &quiet, NULL, "no progress lines", 0, 0, NULL, 0},
    };
    cli_spec s = {
        .cmd = "train",
        .usage = "prunelab train --model M --dataset NAME [--epochs E --batch B --lr LR --min-lr LR --warmup STEPS "
                 "--weight-decay W --optimizer adamw|sgd --momentum MU --clip C --threads T --seed S --max-steps N "
                 "--resume CKPT --data-dir DIR --masks K] --out M2",
        .summary = "Train a model (AdamW or SGD, linear warmup then cosine to --min-lr, global-norm clipping).\n"
                   "Progress goes to stderr; a checkpoint with the optimizer state is written after every\n"
                   "epoch, and --resume CKPT continues bit-identically (same flags, same --threads).",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
    };
    cli_parse(&s, argc, argv, NULL);
    if (!resume) cli_require(&s, "--model");
    cli_require(&s, "--dataset");
    cli_require(&s, "--out");
    tc.opt.kind = optimizer == 0 ? OPTIM_ADAMW : OPTIM_SGD;
    tc.opt.nesterov = nesterov;
    if (!cli_given(&s, "--min-lr")) tc.opt.min_lr = tc.opt.lr * 0.01f;
    if (tc.opt.min_lr > tc.opt.lr) cli_fail(&s, NULL, "--min-lr %g is above --lr %g", tc.opt.min_lr, tc.opt.lr);
    if (tc.stop_after_epoch > tc.epochs)
        cli_fail(&s, NULL, "--stop-after-epoch %d is past --epochs %d", tc.stop_after_epoch, tc.epochs);
    if (nesterov && tc.opt.kind != OPTIM_SGD) cli_fail(&s, NULL, "--nesterov needs --optimizer sgd");
    tc.augment = !no_augment;
    tc.report_every_s = report_every;
    tc.progress = quiet ? NULL : train_progress_stderr;
    tc.resume = resume;
    char *ckpt = NULL;
    if (!no_checkpoint) {
        ckpt = checkpoint ? xstrdup(checkpoint) : default_checkpoint(out);
        tc.checkpoint = ckpt;
    }
    cli_set_threads(threads);
    char err[PL_ERRLEN];
    cli_verify_blas(&s);

    model m;
    cli_load_model(&s, &m, resume ? resume : model_path, dataset_name);
    if (masks && prune_mask_load(&m, masks, err, sizeof err) != 0) cli_fail(&s, NULL, "%s", err);
    dataset train, test;
    cli_load_data(&s, &train, dataset_name, data_dir, "train", seq_len, 0);
    cli_check_data(&s, &m, &train);
    int have_test = (dataset_is_tokens(&train)
                         ? dataset_load_tokens(&test, dataset_name, "test", seq_len, 0, err, sizeof err)
                         : dataset_load(&test, dataset_name, data_dir, "test", err, sizeof err)) == 0;
    if (!have_test) fprintf(stderr, "prunelab train: no test split (%s); training without test accuracy\n", err);

    if (!quiet && dataset_is_tokens(&train))
        fprintf(stderr,
                "training %zu parameters on %s (%d windows of %d tokens: an epoch is %d steps) for %d epochs, "
                "batch %d, %s lr %g -> %g, wd %g, clip %g, %d threads, BLAS %s%s%s\n",
                m.n_params, train.name, train.n, train.T, train.n / (tc.batch < train.n ? tc.batch : train.n),
                tc.epochs, tc.batch, optim_kind_name(tc.opt.kind), tc.opt.lr, tc.opt.min_lr, tc.opt.weight_decay,
                tc.opt.clip, blas_threads(), blas_kernel(), resume ? ", resuming from " : "", resume ? resume : "");
    else if (!quiet)
        fprintf(stderr,
                "training %zu parameters on %s (%d samples) for %d epochs, batch %d, %s lr %g -> %g, wd %g, "
                "clip %g, %d threads, BLAS %s%s%s\n",
                m.n_params, train.name, train.n, tc.epochs, tc.batch, optim_kind_name(tc.opt.kind), tc.opt.lr,
                tc.opt.min_lr, tc.opt.weight_decay, tc.opt.clip, blas_threads(), blas_kernel(),
                resume ? ", resuming from " : "", resume ? resume : "");
    train_result r;
    if (train_run(&m, &train, have_test ? &test : NULL, &tc, &r, err, sizeof err) != 0)
        cli_fail(&s, NULL, "%s", err);
    if (model_save(&m, out, err, sizeof err) != 0)
        cli_fail(&s, "check that the directory exists and is writable", "cannot write %s: %s", out, err);
    if (!quiet && dataset_is_tokens(&train)) {
        fprintf(stderr, "wrote %s after %d epochs (%ld steps, %.1f s): train loss %.4f", out, r.epochs_done, r.steps,
                r.seconds, r.train_loss);
        if (r.test_acc >= 0.0f)
            fprintf(stderr, ", val loss %.4f (perplexity %.3f, next-token acc %.2f%%)", r.test_loss,
                    exp(r.test_loss), 100.0 * r.test_acc);
        fprintf(stderr, "\n");
    } else if (!quiet) {
        if (r.test_acc >= 0.0f)
            fprintf(stderr, "wrote %s after %d epochs (%ld steps, %.1f s): train acc %.2f%%, test acc %.2f%%\n", out,
                    r.epochs_done, r.steps, r.seconds, 100.0 * r.train_acc, 100.0 * r.test_acc);
        else
            fprintf(stderr, "wrote %s after %d epochs (%ld steps, %.1f s): train acc %.2f%%\n", out, r.epochs_done,
                    r.steps, r.seconds, 100.0 * r.train_acc);
    }
    if (have_test) dataset_free(&test);
    dataset_free(&train);
    model_free(&m);
    free(ckpt);
    return 0;
}
