/* train.h — the training loop, training checkpoints and the evaluation helper.
 *
 * train_run: shuffled mini-batches (pl_rng seeded with cfg.seed; the permutation is rebuilt
 * from the identity every epoch, so a run is a pure function of the seed), forward / backward
 * / optional penalty hook / clip / optimizer step, progress through a callback, a checkpoint
 * after every epoch.
 *
 * On a token dataset (an LM): each step draws Bb random windows of T = seq_len tokens
 * (tokens.h, from the same pl_rng), no shuffle; an "epoch" is n / Bb steps with n = the train
 * split's tokens / T windows, i.e. about n_train_tokens / (B * T) steps. Accuracies are
 * next-token top-1 over the B * (T - 1) predictions of each window batch.
 *
 * A training checkpoint is two files:
 *   CKPT              the model, an ordinary checkpoint (model_save): every tool can read it;
 *   CKPT.optim        safetensors: "optim.state" F32 [state_len] (the optimizer moments) and
 *                     __metadata__ {"prunelab_train": JSON {optimizer, step, epoch, batch,
 *                     epochs, total_steps, n_params, seed, rng: [4 hex u64]}}.
 * Resuming restores weights, moments, step, epoch and the RNG state, so a resumed run ends
 * bit-identical to an uninterrupted one (same threads, same kernel). */
#ifndef PL_TRAIN_H
#define PL_TRAIN_H

#include <stdint.h>

#include "data.h"
#include "model.h"
#include "optim.h"

/* One progress report. Fields marked (epoch end) are valid only when epoch_end = 1. */
typedef struct {
    int epoch;              /* 1-based epoch in progress */
    int epochs;
    long step;              /* optimizer steps done (global) */
    long total_steps;
    double fraction;        /* step / total_steps */
    double elapsed_s;       /* wall time of this run (excludes time before a resume) */
    double eta_s;           /* estimated remaining seconds */
    float loss;             /* mean training loss since the previous report */
    float lr;               /* learning rate of the last step */
    double grad_norm;       /* global gradient norm of the last step (before clipping) */
    double samples_per_s;   /* since the previous report (an LM: windows/s) */
    double tokens_per_s;    /* an LM: samples_per_s * T; 0 for images */
    int epoch_end;          /* 1 on the final report of an epoch */
    float train_loss;       /* (epoch end) mean training loss over the epoch */
    float train_acc;        /* (epoch end) training accuracy over the epoch (on the fly) */
    float test_loss;        /* (epoch end) test loss, or -1 without a test set */
    float test_acc;         /* (epoch end) test accuracy, or -1 without a test set */
    double penalty;         /* value of the penalty hook at the last step (0 without one) */
} train_progress;

typedef void (*train_progress_fn)(const train_progress *p, void *user);

/* Optional extra loss term (e.g. RSST's lambda(t) * sum w^2 over chosen weights). Called once per
 * optimizer step, after model_backward and before the mask is applied to the gradients and
 * before clipping, with the 0-based global step being taken and the run's total steps. It adds
 * the term's gradient into m->grads (masked weights lose it with the mask) and returns the
 * term's value, reported as train_progress.penalty; the reported loss stays the task loss.
 * It may read m->params (the weights after `step` steps) but must not change them. */
typedef double (*train_penalty_fn)(model *m, long step, long total_steps, void *user);

/* Prints one human line per report to stderr (the default reporter). */
void train_progress_stderr(const train_progress *p, void *user);

typedef struct {
    int epochs;             /* schedule length in epochs (>= 1) */
    int batch;              /* B */
    long max_steps;         /* > 0: cap the run (and the schedule) at this many steps */
    int stop_after_epoch;   /* > 0: stop after this epoch (checkpoint written), schedule unchanged */
    long warmup_steps;      /* < 0: automatic = min(steps per epoch, total / 10), at least 1 */
    optim_config opt;       /* warmup_steps / total_steps are filled by train_run */
    uint64_t seed;
    int augment;            /* use the dataset's augmentation (cifar) when 1 */
    const char *checkpoint; /* path written after every epoch, NULL = none */
    const char *resume;     /* checkpoint to resume from, NULL = fresh start */
    double report_every_s;  /* seconds between progress reports (<= 0: 5 s) */
    train_progress_fn progress; /* NULL = silent */
    void *progress_user;
    train_penalty_fn penalty;   /* NULL = task loss only */
    void *penalty_user;
} train_config;

void train_config_default(train_config *c); /* epochs 10, batch 64, AdamW defaults, auto warmup */
/* The fine-tuning schedule of every pruning recipe (cells, prunelab prune, lite): the defaults
 * (AdamW), cosine from lr to lr/100, `steps` optimizer steps, or `epochs` whole epochs when
 * steps <= 0 and epochs > 0; batch capped at the set size. Progress fields are left to the caller. */
void train_config_finetune(train_config *c, const dataset *train, long steps, int epochs, float lr, int batch,
                           uint64_t seed);

typedef struct {
    int epochs_done;
    long steps;             /* global optimizer steps at the end */
    float train_loss, train_acc; /* of the last epoch */
    float test_loss, test_acc;   /* of the last epoch, -1 without a test set */
    double seconds;         /* wall time of this run */
    int stopped_early;      /* 1 when max_steps / stop_after_epoch ended the run */
} train_result;

/* Train m in place on `train`, evaluating on `test` (may be NULL) at each epoch end.
 * With cfg->resume, m must already hold the checkpoint's weights (model_load of the path);
 * the optimizer state comes from cfg->resume + ".optim".
 * Returns 0, or -1 with err (bad config, shape mismatch between model and data, checkpoint
 * I/O, non-finite loss). res may be NULL. */
int train_run(model *m, const dataset *train, const dataset *test, const train_config *cfg, train_result *res,
              char *err, size_t errlen);

/* Training checkpoint I/O (format above). state holds step/epoch/rng. */
typedef struct {
    long step;
    int epoch;              /* epochs completed */
    int batch, epochs;
    long total_steps;
    uint64_t seed;
    pl_rng rng;
} train_state;

int train_checkpoint_save(const char *path, const model *m, const optim *o, const train_state *st, char *err,
                          size_t errlen);
/* Reads path + ".optim" into o (already initialised with the same kind and n) and st. */
int train_checkpoint_load_state(const char *path, optim *o, train_state *st, char *err, size_t errlen);

/* Evaluation over a whole split with batches of `batch` (inference activations). On a token
 * dataset: the in-order windows, accuracy = next-token top-1, loss in nats per prediction. */
typedef struct {
    int n;
    double accuracy;
    double loss;            /* mean cross-entropy */
    double seconds;         /* forward time only (batch filling excluded) */
    int batches;
    double latency_ms_per_batch;
    double samples_per_s;   /* an LM: windows/s */
    int batch;              /* samples per batch used (an LM's is capped, measure.h) */
    long predictions;       /* n, or an LM's n * (T - 1) */
    double tokens_per_s;    /* an LM: n * T / seconds (inference); 0 for images */
} eval_result;

/* Returns 0, or -1 with err (shape mismatch between model and dataset). */
int train_evaluate(const model *m, const dataset *ds, int batch, eval_result *r, char *err, size_t errlen);

/* 0 when the model's image shape and classes match the dataset, else -1 with err + hint text. */
int train_check_compat(const model *m, const dataset *ds, char *err, size_t errlen);

#endif
