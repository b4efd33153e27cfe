/* lm_forward.c — forward tokens/s and peak RSS of a randomly initialised causal LM (the
 * inference path: model_acts_new_lm without training, chunked LM-head cross-entropy).
 * Usage: lm_forward D LAYERS V T B THREADS REPS
 * Prints one JSON line: the median of REPS timed forwards after one warm-up, FLOPs per token
 * (model_flops_per_sample), the process's peak RSS, and the machine's FMA peak measured just
 * before each timed forward at the same thread count (fma_peak.h, 0.4 s): the clock of these
 * shared machines drifts by 15% within minutes, so each forward is set against the peak of its
 * own moment and the median of those fractions is reported (peak_fraction). Built and run by
 * bench/lm_forward.sh. */
#include <stdio.h>
#include <stdlib.h>

#include "blas.h"
#include "model.h"
#include "ops.h"
#include "util.h"

#include "../fma_peak/fma_peak.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: lm_forward D LAYERS V T B THREADS REPS\n");
        return 2;
    }
    int d = atoi(argv[1]), layers = atoi(argv[2]), V = atoi(argv[3]), T = atoi(argv[4]), B = atoi(argv[5]);
    int threads = atoi(argv[6]), reps = atoi(argv[7]);
    if (reps < 1 || reps > 64) reps = 3;
    blas_set_threads(threads);
    ops_set_threads(threads);
    model_hparams hp = {.d = d, .n_layers = layers, .d_state = 16, .d_conv = 4, .expand = 2.0f, .mlp_ratio = 0.0f};
    model_config cfg;
    char err[PL_ERRLEN];
    if (model_config_lm(&cfg, &hp, V, 1, err, sizeof err) != 0) pl_die(NULL, "%s", err);
    model m;
    if (model_create(&m, &cfg, 1, err, sizeof err) != 0) pl_die(NULL, "%s", err);
    int *ids = xmalloc((size_t)B * T * sizeof(int));
    pl_rng r;
    pl_rng_seed(&r, 7);
    for (int i = 0; i < B * T; i++) ids[i] = (int)pl_rng_below(&r, (uint32_t)V);
    model_acts *a = model_acts_new_lm(&m, B, T, 0, 0);
    float loss = model_forward_lm(&m, a, ids, B, T); /* warm-up */
    double *s = xmalloc((size_t)reps * sizeof(double)), *pk = xmalloc((size_t)reps * sizeof(double));
    double *fr = xmalloc((size_t)reps * sizeof(double)), tok = (double)B * T, fpt = model_flops_per_sample(&m.cfg);
    int width = getenv("LM_FORWARD_NO_PEAK") ? 0 : fma_peak_width(); /* unset for A/B runs against older builds */
    for (int k = 0; k < reps; k++) {
        pk[k] = width ? fma_peak_gflops(width, threads, 0.4) : 0.0;
        double t0 = pl_now();
        loss = model_forward_lm(&m, a, ids, B, T);
        s[k] = pl_now() - t0;
        fr[k] = pk[k] > 0 ? fpt * tok / s[k] / 1e9 / pk[k] : 0.0;
    }
    qsort(s, (size_t)reps, sizeof *s, cmp_double);
    qsort(pk, (size_t)reps, sizeof *pk, cmp_double);
    qsort(fr, (size_t)reps, sizeof *fr, cmp_double);
    double med = s[reps / 2];
    printf("{\"d\":%d,\"layers\":%d,\"vocab\":%d,\"T\":%d,\"B\":%d,\"threads\":%d,\"params\":%zu,\"loss\":%.4f,"
           "\"forward_s\":%.4f,\"tokens_per_s\":%.1f,\"gflop_per_token\":%.4f,\"gflops\":%.2f,\"fma_width\":%d,"
           "\"fma_peak_gflops\":%.1f,\"peak_fraction\":%.3f,\"peak_rss_kb\":%ld}\n",
           d, layers, V, T, B, threads, m.n_params, loss, med, tok / med, fpt / 1e9, fpt * tok / med / 1e9, width,
           pk[reps / 2], fr[reps / 2], pl_peak_rss_kb());
    free(s), free(pk), free(fr);
    free(ids);
    model_acts_free(a);
    model_free(&m);
    return 0;
}
