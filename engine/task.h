/* task.h — one batch type for both tasks: image samples (x, y) for the classifier, token windows
 * (ids) for the causal LM, and the forward / backward that fits the model. Training, evaluation,
 * calibration and latency fill and run batches through these, so each of them works on an
 * image dataset and on a token dataset (data.h dataset_load_tokens) alike; the image path is
 * the same dataset_batch + model_forward calls as before.
 *
 * A "sample" is an image, or a window of T tokens (T - 1 next-token predictions). Letters as in
 * model.h; B batch rows. */
#ifndef PL_TASK_H
#define PL_TASK_H

#include "data.h"
#include "model.h"
#include "util.h"

typedef struct {
    int B;      /* capacity in samples */
    int T;      /* LM window length; 0 for images */
    float *x;   /* image (B, C, H, W), NULL for an LM */
    int *y;     /* image labels (B), NULL for an LM */
    int *ids;   /* LM (B, T), NULL for images */
} task_batch;

/* Buffers for up to B samples of ds. Free with task_batch_free (NULL-safe, zeroes b). */
void task_batch_init(task_batch *b, const dataset *ds, int B);
void task_batch_free(task_batch *b);
/* Samples idx[0..n) of ds into b (images: dataset_batch with rng / augment; windows: window idx[i]). */
void task_batch_fill(task_batch *b, const dataset *ds, const int *idx, int n, pl_rng *rng, int augment);
/* n random training windows of a token dataset (tokens_random_batch; the draws of tokens.h). */
void task_batch_random(task_batch *b, const dataset *ds, int n, pl_rng *rng);
/* Activations for up to B samples of ds on m (model_acts_new / model_acts_new_lm). */
model_acts *task_acts_new(const model *m, const dataset *ds, int B, int training);
/* Forward of n samples: the mean loss over the batch's predictions (images: n, windows:
 * n * (T - 1)); *correct (may be NULL) += top-1 correct predictions. */
float task_forward(const model *m, model_acts *a, const task_batch *b, int n, long *correct);
/* Forward without a loss where the task allows it (latency: images skip the loss). */
void task_forward_infer(const model *m, model_acts *a, const task_batch *b, int n);
/* Backward of the last task_forward (same b, n); accumulates into m->grads. */
void task_backward(model *m, model_acts *a, const task_batch *b, int n);
/* Predictions per sample of ds: 1 for images, T - 1 for windows. */
static inline long task_preds_per_sample(const dataset *ds) { return ds->tokens ? ds->T - 1 : 1; }

#endif
