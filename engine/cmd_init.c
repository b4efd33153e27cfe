/* cmd_init.c — `prunelab init`: a freshly initialised checkpoint from a preset plus optional
 * dimension overrides. Image models: the image shape, class count and normalisation come from
 * the dataset name (no file is read). Causal LMs (--task lm, or an lm-* preset): the vocabulary
 * is --vocab or what the token dataset's name implies (lm.h); the head is tied unless --untied;
 * --out DIR/ writes an HF directory (model.safetensors + config.json). The seed makes the
 * initialisation reproducible. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "data.h"
#include "lm.h"
#include "model.h"
#include "util.h"

/* image presets (spec/vocab.h) then the LM presets (lm.h), in CLI_CHOICE order */
static const char *const presets[] = {"tiny", "small", "base", "lm-tiny", "lm-small", "lm-base"};
#define N_IMAGE_PRESETS 3

int cmd_init(int argc, char **argv)
{
    int preset = -1, task = 0, vocab = 0, untied = 0;
    uint64_t seed = 1;
    int d = 0, layers = 0, d_state = 0, d_conv = 0, patch = 0, dt_rank = 0;
    float expand = 0.0f, mlp_ratio = -1.0f;
    const char *dataset_name = NULL, *out = NULL;
    cli_opt opts[] = {
        {"--task", CLI_CHOICE, &task, NULL, "model task (default image; an lm-* preset implies lm)", 0, 0, "image|lm", 0},
        {"--preset", CLI_CHOICE, &preset, NULL, "model size preset (default small, lm-small for --task lm)", 0, 0,
         "tiny|small|base|lm-tiny|lm-small|lm-base", 0},
        {"--vocab", CLI_INT, &vocab, "V", "LM vocabulary size (default: implied by --dataset)", 2, 1 << 24, NULL, 0},
        {"--untied", CLI_FLAG, &untied, NULL, "LM: a separate lm_head.weight (default tied to the embeddings)", 0, 0,
         NULL, 0},
        {"--seed", CLI_U64, &seed, "S", "initialisation seed (default 1)", 0, 0, NULL, 0},
        {"--d-model", CLI_INT, &d, "D", "override d_model", 1, 65536, NULL, 0},
        {"--layers", CLI_INT, &layers, "N", "override the number of layers", 1, MODEL_MAX_LAYERS, NULL, 0},
        {"--d-state", CLI_INT, &d_state, "N", "override d_state", 1, 1024, NULL, 0},
        {"--expand", CLI_FLOAT, &expand, "X", "override expand (d_inner = X * d_model)", 0.01, 64, NULL, 0},
        {"--d-conv", CLI_INT, &d_conv, "K", "override d_conv", 1, 64, NULL, 0},
        {"--mlp-ratio", CLI_FLOAT, &mlp_ratio, "R", "override the MLP width ratio (0 = no MLP)", 0, 64, NULL, 0},
        {"--patch", CLI_INT, &patch, "P", "override the patch size", 1, 1024, NULL, 0},
        {"--dt-rank", CLI_INT, &dt_rank, "R", "override dt_rank (default ceil(d_model/16))", 1, 65536, NULL, 0},
        {"--dataset", CLI_STRING, &dataset_name, "NAME",
         "dataset the model is for (image shape, classes; an LM's vocabulary)", 0, 0, NULL, 0},
        {"--out", CLI_STRING, &out, "M.safetensors", "checkpoint to write (DIR/ for an HF directory)", 0, 0, NULL, 0},
    };
    cli_spec s = {
        .cmd = "init",
        .usage = "prunelab init [--task image|lm] --preset P [--seed S] [--d-model D --layers N --d-state N "
                 "--expand X --d-conv K --mlp-ratio R --patch P --dt-rank R] [--vocab V --untied] "
                 "--dataset NAME --out M.safetensors",
        .summary = "Create a patch-Mamba classifier or a Mamba causal LM (HF MambaForCausalLM) initialised as\n"
                   "mamba_ssm does (LM embeddings N(0, 0.02)) and save it as safetensors.\n"
                   "Image presets: tiny d32 2 layers N8; small d64 4 layers N16; base d128 8 layers N16\n"
                   "(all expand 2, d_conv 4, MLP ratio 2, patch 4).\n"
                   "LM presets: lm-tiny d32 2 layers N8; lm-small d192 4 layers N16; lm-base d384 8 layers N16\n"
                   "(all expand 2, d_conv 4, no MLP, tied head); V from --vocab or the dataset\n"
                   "(text:FILE 256, synthetic-lm:...,vocab=V, tokens:DIR's meta.json vocab_size).",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
    };
    cli_parse(&s, argc, argv, NULL);
    cli_require(&s, "--out");
    if (preset >= N_IMAGE_PRESETS && cli_given(&s, "--task") && task != 1)
        cli_fail(&s, "use --task lm (or leave --task out) with an lm-* preset", "preset %s is a causal-LM preset",
                 presets[preset]);
    if (preset >= N_IMAGE_PRESETS) task = 1;
    if (preset < 0) preset = task == 1 ? N_IMAGE_PRESETS + 1 : 1;
    if (task == 1 && preset < N_IMAGE_PRESETS)
        cli_fail(&s, "LM presets: lm-tiny, lm-small, lm-base", "preset %s is an image preset", presets[preset]);
    if (task == 0) cli_require(&s, "--dataset");
    if (task == 0 && (cli_given(&s, "--vocab") || untied))
        cli_fail(&s, "add --task lm", "--vocab and --untied are for causal LMs");

    model_hparams hp;
    if ((task == 1 ? lm_preset(presets[preset], &hp) : model_preset(presets[preset], &hp)) != 0)
        cli_fail(&s, NULL, "unknown preset %s", presets[preset]);
    if (d) hp.d = d;
    if (layers) hp.n_layers = layers;
    if (d_state) hp.d_state = d_state;
    if (expand > 0.0f) hp.expand = expand;
    if (d_conv) hp.d_conv = d_conv;
    if (mlp_ratio >= 0.0f) hp.mlp_ratio = mlp_ratio;
    if (patch) hp.patch = patch;
    if (dt_rank) hp.dt_rank = dt_rank;
    char err[PL_ERRLEN];
    model_config cfg;
    model m;
    if (task == 1) {
        if (!vocab && !dataset_name)
            cli_fail(&s, "e.g. --vocab 256 for bytes, or --dataset text:FILE", "an LM needs --vocab V or --dataset");
        if (!vocab && lm_dataset_vocab(dataset_name, &vocab, err, sizeof err) != 0)
            cli_fail(&s, "pass --vocab V", "cannot tell the vocabulary: %s", err);
        if (model_config_lm(&cfg, &hp, vocab, !untied, err, sizeof err) != 0)
            cli_fail(&s, NULL, "%s", err);
        if (dataset_name) snprintf(cfg.dataset, sizeof cfg.dataset, "%s", dataset_name);
        snprintf(cfg.provenance, sizeof cfg.provenance,
                 "{\"created_by\":\"prunelab init\",\"preset\":\"%s\",\"seed\":%llu}", presets[preset],
                 (unsigned long long)seed);
        if (model_create(&m, &cfg, seed, err, sizeof err) != 0) cli_fail(&s, NULL, "cannot create the model: %s", err);
        if (model_save(&m, out, err, sizeof err) != 0)
            cli_fail(&s, "check that the directory exists and is writable", "cannot write %s: %s", out, err);
        fprintf(stderr, "wrote %s: %s preset causal LM, %zu parameters, %d layers, vocab %d, %s head\n", out,
                presets[preset], m.n_params, cfg.n_layers, vocab, untied ? "untied" : "tied");
        model_free(&m);
        return 0;
    }

    int C, H, W, classes;
    const char *dhint = "datasets: fashion-mnist, mnist, cifar10, cifar100, synthetic[:n=..,classes=..,c=..,h=..,w=..]";
    if (dataset_shape(dataset_name, &C, &H, &W, &classes) != 0)
        cli_fail(&s, dhint, "unknown dataset '%s'", dataset_name);
    float mean[3], std[3];
    int ch;
    if (dataset_norm(dataset_name, &ch, mean, std) != 0) cli_fail(&s, dhint, "unknown dataset '%s'", dataset_name);

    if (model_config_from_hparams(&cfg, &hp, C, H, W, classes, err, sizeof err) != 0)
        cli_fail(&s, "pick dimensions that fit the dataset's images (the patch must divide height and width)", "%s",
                 err);
    snprintf(cfg.dataset, sizeof cfg.dataset, "%s", dataset_name);
    for (int c = 0; c < 3; c++) {
        cfg.norm_mean[c] = mean[c];
        cfg.norm_std[c] = std[c];
    }
    snprintf(cfg.provenance, sizeof cfg.provenance,
             "{\"created_by\":\"prunelab init\",\"preset\":\"%s\",\"seed\":%llu}", presets[preset],
             (unsigned long long)seed);

    if (model_create(&m, &cfg, seed, err, sizeof err) != 0) cli_fail(&s, NULL, "cannot create the model: %s", err);
    if (model_save(&m, out, err, sizeof err) != 0)
        cli_fail(&s, "check that the directory exists and is writable", "cannot write %s: %s", out, err);
    fprintf(stderr, "wrote %s: %s preset, %zu parameters, %d layers, %dx%dx%d images, %d classes\n", out,
            presets[preset], m.n_params, cfg.n_layers, C, H, W, classes);
    model_free(&m);
    return 0;
}
