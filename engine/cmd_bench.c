/* cmd_bench.c — `prunelab bench`: training and inference throughput of a preset on synthetic
 * random input, the model FLOPs and the GEMM roofline ratio (DESIGN.md 8, 9).
 *
 * Timing: `--warmup-steps` untimed steps, then the median of `--steps` timed steps. A training
 * step is zero_grads + forward + backward + clip + AdamW; inference is a forward with
 * inference activations. Training FLOPs per sample are taken as 3x the forward FLOPs (the
 * backward of a GEMM costs two GEMMs). Roofline ratio = achieved GFLOP/s / sgemm GFLOP/s
 * measured by blas_sgemm_gflops in the same process with the same kernel and threads.
 *
 * `--against M0` (inference only, no training steps): after the candidate's own timing, pairs
 * of passes, M0 then the candidate on the same input, and the median and quartiles of the
 * per-pair ratio. On a shared machine whose speed drifts over seconds, timing each model in its
 * own process swings the ratio by +-0.1; adjacent passes see the same drift, so the per-pair
 * ratio holds to about +-0.02 (bench/README.md 3). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "blas.h"
#include "cli.h"
#include "data.h"
#include "lm.h"
#include "measure.h"
#include "model.h"
#include "ops.h"
#include "optim.h"
#include "tokens.h"
#include "util.h"

static const char *const presets[] = {"tiny", "small", "base"};

/* One forward of the benchmark input: images x / labels y, or an LM's token windows ids (B, T). */
static void bench_forward(const model *m, model_acts *a, const float *x, const int *y, const int *ids, int B, int T)
{
    if (ids) model_forward_lm(m, a, ids, B, T);
    else model_forward(m, a, x, y, B);
}
static model_acts *bench_acts(const model *m, int B, int T, int training)
{
    return m->cfg.task == MODEL_TASK_LM ? model_acts_new_lm(m, B, T, training, 0) : model_acts_new(m, B, training);
}

int cmd_bench(int argc, char **argv)
{
    int preset = 1, batch = 64, threads = 0, as_json = 0, steps = 10, warmup = 3;
    int task = 0, seq_len = TOKENS_DEFAULT_SEQ_LEN, vocab = 256;
    uint64_t seed = 1;
    const char *dataset_name = NULL, *model_path = NULL, *against_path = NULL;
    cli_opt opts[] = {
        {"--preset", CLI_CHOICE, &preset, NULL, "model preset (default small)", 0, 0, "tiny|small|base", 0},
        {"--batch", CLI_INT, &batch, "B", "batch size (default 64)", 1, 65536, NULL, 0},
        {"--threads", CLI_INT, &threads, "T", "BLAS and kernel threads (default: all cores)", 1, 1024, NULL, 0},
        {"--model", CLI_STRING, &model_path, "M", "measure this checkpoint instead of a preset (e.g. a pruned model)", 0,
         0, NULL, 0},
        {"--dataset", CLI_STRING, &dataset_name, "NAME", "image shape and classes of this dataset (default 1x28x28, 10)",
         0, 0, NULL, 0},
        {"--task", CLI_CHOICE, &task, NULL, "preset task (default image; lm: the lm-* presets, tokens/s)", 0, 0,
         "image|lm", 0},
        {"--seq-len", CLI_INT, &seq_len, "T", "LM: tokens per window (default 256)", 2, 65536, NULL, 0},
        {"--vocab", CLI_INT, &vocab, "V", "LM preset: vocabulary (default 256)", 2, 1 << 24, NULL, 0},
        {"--steps", CLI_INT, &steps, "N", "timed steps, the median is reported (default 10)", 1, 100000, NULL, 0},
        {"--warmup-steps", CLI_INT, &warmup, "N", "untimed steps first (default 3)", 0, 100000, NULL, 0},
        {"--against", CLI_STRING, &against_path, "M0",
         "inference only: also time M0 (the unpruned baseline), alternating one forward pass of each, and\n"
         "report the median per-pair speed-up (pairs cancel the machine's slow drifts)", 0, 0, NULL, 0},
        {"--seed", CLI_U64, &seed, "S", "model / input seed (default 1)", 0, 0, NULL, 0},
        {"--json", CLI_FLAG, &as_json, NULL, "print one JSON object instead of text", 0, 0, NULL, 0},
    };
    cli_spec s = {
        .cmd = "bench",
        .usage = "prunelab bench (--preset tiny|small|base | --model M [--against M0]) --batch B --threads T [--dataset NAME]\n"
                 "                      [--steps N] [--json]",
        .summary = "Measure training and inference samples/s (median over timed steps after warmup) on random\n"
                   "input, the model's FLOPs per sample, achieved GFLOP/s, sgemm GFLOP/s and the roofline ratio.\n"
                   "A causal LM (--task lm with preset lm-tiny|lm-small|lm-base, or an LM --model): random token\n"
                   "windows of --seq-len, a sample is a window, tokens/s reported too (FLOPs are per token).",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
    };
    cli_parse(&s, argc, argv, NULL);
    cli_set_threads(threads);
    char err[PL_ERRLEN];
    cli_verify_blas(&s);

    int C = 1, H = 28, W = 28, classes = 10;
    if (dataset_name && dataset_shape(dataset_name, &C, &H, &W, &classes) != 0)
        cli_fail(&s, "datasets: fashion-mnist, mnist, cifar10, cifar100, synthetic[:...]", "unknown dataset '%s'",
                 dataset_name);
    if (against_path && !model_path) cli_fail(&s, "give the candidate with --model M", "--against needs --model");
    model m, m0;
    if (against_path) {
        cli_load_model(&s, &m0, against_path, dataset_name);
        if (!dataset_name) {
            C = m0.cfg.C, H = m0.cfg.H, W = m0.cfg.W, classes = m0.cfg.classes;
        }
    }
    if (model_path) {
        cli_load_model(&s, &m, model_path, dataset_name);
        if (against_path && (m0.cfg.C != m.cfg.C || m0.cfg.H != m.cfg.H || m0.cfg.W != m.cfg.W ||
                             m0.cfg.classes != m.cfg.classes))
            cli_fail(&s, "compare a pruned model with the model it came from",
                     "--against %s takes %dx%dx%d images and %d classes, --model %s %dx%dx%d and %d", against_path,
                     m0.cfg.C, m0.cfg.H, m0.cfg.W, m0.cfg.classes, model_path, m.cfg.C, m.cfg.H, m.cfg.W,
                     m.cfg.classes);
        C = m.cfg.C, H = m.cfg.H, W = m.cfg.W, classes = m.cfg.classes;
    } else {
        model_hparams hp;
        model_config cfg;
        if (task == 1) {
            char name[16];
            snprintf(name, sizeof name, "lm-%s", presets[preset]);
            lm_preset(name, &hp);
            if (model_config_lm(&cfg, &hp, vocab, 1, err, sizeof err) != 0) cli_fail(&s, NULL, "%s", err);
        } else {
            model_preset(presets[preset], &hp);
            if (model_config_from_hparams(&cfg, &hp, C, H, W, classes, err, sizeof err) != 0)
                cli_fail(&s, NULL, "%s", err);
        }
        if (model_create(&m, &cfg, seed, err, sizeof err) != 0) cli_fail(&s, NULL, "%s", err);
    }
    if (!against_path) model_alloc_grads(&m); /* --against times inference only */

    int lm = m.cfg.task == MODEL_TASK_LM, T = lm ? seq_len : 0;
    if (against_path && m0.cfg.task != m.cfg.task)
        cli_fail(&s, "compare a pruned model with the model it came from", "--against %s and --model %s differ in task",
                 against_path, model_path);
    if (against_path && lm && m0.cfg.vocab != m.cfg.vocab)
        cli_fail(&s, "compare a pruned model with the model it came from", "--against %s has vocabulary %d, --model %d",
                 against_path, m0.cfg.vocab, m.cfg.vocab);
    size_t img = lm ? 0 : (size_t)C * H * W;
    float *x = lm ? NULL : xalloc_floats((size_t)batch * img); // x (B, C, H, W)
    int *y = lm ? NULL : xmalloc((size_t)batch * sizeof(int)); // y (B)
    int *ids = lm ? xmalloc((size_t)batch * T * sizeof(int)) : NULL; // ids (B, T)
    pl_rng rng;
    pl_rng_seed(&rng, seed ^ 0x5eedULL);
    for (size_t i = 0; i < (size_t)batch * img; i++) x[i] = pl_rng_normal(&rng);
    for (int i = 0; !lm && i < batch; i++) y[i] = (int)pl_rng_below(&rng, (uint32_t)classes);
    for (size_t i = 0; lm && i < (size_t)batch * T; i++) ids[i] = (int)pl_rng_below(&rng, (uint32_t)m.cfg.vocab);

    optim_config oc;
    optim_config_default(&oc);
    oc.total_steps = warmup + steps;
    optim o;
    if (optim_init(&o, &oc, m.n_params, err, sizeof err) != 0) cli_fail(&s, NULL, "%s", err);
    double *t = xmalloc((size_t)steps * sizeof(double));

    double train_s = NAN;
    model_acts *at = against_path ? NULL : bench_acts(&m, batch, T, 1);
    for (int i = 0; at && i < warmup + steps; i++) {
        double t0 = pl_now();
        model_zero_grads(&m);
        bench_forward(&m, at, x, y, ids, batch, T);
        if (lm) model_backward_lm(&m, at, ids, batch, T);
        else model_backward(&m, at, y, batch);
        optim_clip(m.grads, m.n_params, oc.clip);
        optim_step(&o, &m);
        if (i >= warmup) t[i - warmup] = pl_now() - t0;
    }
    if (at) train_s = measure_median(t, steps);
    model_acts_free(at);

    model_acts *ai = bench_acts(&m, batch, T, 0);
    for (int i = 0; i < warmup + steps; i++) {
        double t0 = pl_now();
        bench_forward(&m, ai, x, NULL, ids, batch, T);
        if (i >= warmup) t[i - warmup] = pl_now() - t0;
    }
    double infer_s = measure_median(t, steps);

    /* --against: pairs of passes, baseline then candidate, each pair's ratio; the median ratio and
     * its quartiles. Both models see the same input; only the forward is timed. */
    double pair_q[3] = {NAN, NAN, NAN}, against_s = NAN;
    if (against_path) {
        model_acts *a0 = bench_acts(&m0, batch, T, 0);
        double *t0 = xmalloc((size_t)steps * sizeof(double)), *r = xmalloc((size_t)steps * sizeof(double));
        for (int i = 0; i < warmup; i++) bench_forward(&m0, a0, x, NULL, ids, batch, T);
        for (int i = 0; i < steps; i++) {
            double s0 = pl_now();
            bench_forward(&m0, a0, x, NULL, ids, batch, T);
            double s1 = pl_now();
            bench_forward(&m, ai, x, NULL, ids, batch, T);
            double s2 = pl_now();
            t0[i] = s1 - s0;
            t[i] = s2 - s1;
            r[i] = t0[i] / t[i];
        }
        against_s = measure_median(t0, steps);
        infer_s = measure_median(t, steps); /* the candidate's time from the paired run */
        pair_q[1] = measure_median(r, steps); /* sorts r */
        pair_q[0] = r[(steps - 1) / 4];
        pair_q[2] = r[(3 * (steps - 1)) / 4];
        free(t0);
        free(r);
        model_acts_free(a0);
    }
    model_acts_free(ai);

    double flops = model_flops_per_sample(&m.cfg) * (lm ? T : 1); /* an LM's is per token */
    double train_sps = batch / train_s, infer_sps = batch / infer_s;
    double train_gflops = 3.0 * flops * train_sps * 1e-9, infer_gflops = flops * infer_sps * 1e-9;
    double sgemm = blas_sgemm_gflops(0);
    int nthreads = blas_threads();

    if (as_json) {
        json_t *j = json_object();
        json_object_set_new(j, "preset", model_path ? json_null() : json_string(presets[preset]));
        if (model_path) json_object_set_new(j, "model", json_string(model_path));
        if (lm) {
            json_object_set_new(j, "task", json_string("causal_lm"));
            json_object_set_new(j, "vocab", json_integer(m.cfg.vocab));
            json_object_set_new(j, "seq_len", json_integer(T));
            json_object_set_new(j, "train_tokens_per_s", isnan(train_s) ? json_null() : json_real(train_sps * T));
            json_object_set_new(j, "infer_tokens_per_s", json_real(infer_sps * T));
        } else {
            json_object_set_new(j, "image", json_pack("[iii]", C, H, W));
            json_object_set_new(j, "classes", json_integer(classes));
        }
        json_object_set_new(j, "batch", json_integer(batch));
        json_object_set_new(j, "threads", json_integer(nthreads));
        json_object_set_new(j, "ops_threads", json_integer(ops_get_threads()));
        json_object_set_new(j, "blas_kernel", json_string(blas_kernel()));
        json_object_set_new(j, "params", json_integer((json_int_t)m.n_params));
        json_object_set_new(j, "flops_per_sample", json_real(flops));
        json_object_set_new(j, "steps", json_integer(steps));
        json_object_set_new(j, "train_ms_per_step", isnan(train_s) ? json_null() : json_real(1e3 * train_s));
        json_object_set_new(j, "train_samples_per_s", isnan(train_s) ? json_null() : json_real(train_sps));
        json_object_set_new(j, "train_gflops", isnan(train_s) ? json_null() : json_real(train_gflops));
        json_object_set_new(j, "infer_ms_per_batch", json_real(1e3 * infer_s));
        json_object_set_new(j, "infer_samples_per_s", json_real(infer_sps));
        json_object_set_new(j, "infer_gflops", json_real(infer_gflops));
        json_object_set_new(j, "sgemm_gflops", json_real(sgemm));
        json_object_set_new(j, "train_roofline",
                            isnan(train_s) ? json_null() : json_real(sgemm > 0 ? train_gflops / sgemm : 0.0));
        json_object_set_new(j, "infer_roofline", json_real(sgemm > 0 ? infer_gflops / sgemm : 0.0));
        if (against_path) {
            json_object_set_new(j, "against", json_string(against_path));
            json_object_set_new(j, "against_infer_ms_per_batch", json_real(1e3 * against_s));
            json_object_set_new(j, "against_infer_samples_per_s", json_real(batch / against_s));
            json_object_set_new(j, "speedup", json_real(pair_q[1]));
            json_object_set_new(j, "speedup_p25", json_real(pair_q[0]));
            json_object_set_new(j, "speedup_p75", json_real(pair_q[2]));
        }
        json_object_set_new(j, "peak_rss_kb", json_integer(pl_peak_rss_kb()));
        char *text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
        printf("%s\n", text);
        free(text);
        json_decref(j);
    } else {
        printf("%s %s (%zu params, %.3g MFLOP/sample fwd), batch %d, %d threads, BLAS %s\n",
               model_path ? "model" : "preset", model_path ? model_path : presets[preset], m.n_params, flops * 1e-6, batch, nthreads, blas_kernel());
        if (!isnan(train_s))
            printf("training   %9.1f samples/s  %8.2f ms/step   %6.1f GFLOP/s  %5.1f%% of sgemm\n", train_sps,
                   1e3 * train_s, train_gflops, sgemm > 0 ? 100.0 * train_gflops / sgemm : 0.0);
        printf("inference  %9.1f samples/s  %8.2f ms/batch  %6.1f GFLOP/s  %5.1f%% of sgemm\n", infer_sps,
               1e3 * infer_s, infer_gflops, sgemm > 0 ? 100.0 * infer_gflops / sgemm : 0.0);
        if (against_path)
            printf("baseline   %9.1f samples/s  %8.2f ms/batch  (%s)\nspeed-up   %.3fx  median of %d paired passes "
                   "(quartiles %.3f-%.3f)\n",
                   batch / against_s, 1e3 * against_s, against_path, pair_q[1], steps, pair_q[0], pair_q[2]);
        if (lm)
            printf("tokens/s   training %.0f, inference %.0f (windows of %d tokens)\n", train_sps * T,
                   infer_sps * T, T);
        printf("sgemm      %9.1f GFLOP/s (model GEMM shapes)\n", sgemm);
    }
    free(t);
    free(y);
    free(x);
    free(ids);
    optim_free(&o);
    model_free(&m);
    if (against_path) model_free(&m0);
    return 0;
}
