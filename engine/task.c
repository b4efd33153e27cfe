/* task.c — task_batch and the forward / backward dispatch of task.h. The image branch is the
 * classifier's dataset_batch + model_forward / model_backward; the LM branch fills (B, T) token
 * windows and calls model_forward_lm / model_backward_lm (inference activations keep no full
 * logits: the LM head runs in chunks). Buffers are owned by the task_batch. */
#include "task.h"

#include <stdlib.h>
#include <string.h>

#include "tokens.h"

void task_batch_init(task_batch *b, const dataset *ds, int B)
{
    memset(b, 0, sizeof *b);
    b->B = B;
    if (ds->tokens) {
        b->T = ds->T;
        b->ids = xmalloc((size_t)B * ds->T * sizeof(int));
    } else {
        b->x = xalloc_floats((size_t)B * ds->c * ds->h * ds->w);
        b->y = xmalloc((size_t)B * sizeof(int));
    }
}

void task_batch_free(task_batch *b)
{
    if (!b) return;
    free(b->x);
    free(b->y);
    free(b->ids);
    memset(b, 0, sizeof *b);
}

void task_batch_fill(task_batch *b, const dataset *ds, const int *idx, int n, pl_rng *rng, int augment)
{
    if (ds->tokens) dataset_windows(ds, idx, n, b->ids);
    else dataset_batch(ds, idx, n, b->x, b->y, rng, augment);
}

void task_batch_random(task_batch *b, const dataset *ds, int n, pl_rng *rng)
{
    if (tokens_random_batch(ds->tsplit, ds->T, n, rng, b->ids) != 0)
        pl_die(NULL, "internal: %s (%s) has fewer than %d tokens", ds->name, ds->split, ds->T);
}

model_acts *task_acts_new(const model *m, const dataset *ds, int B, int training)
{
    if (ds->tokens) return model_acts_new_lm(m, B, ds->T, training, 0);
    return model_acts_new(m, B, training);
}

static int argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

float task_forward(const model *m, model_acts *a, const task_batch *b, int n, long *correct)
{
    if (b->ids) {
        float loss = model_forward_lm(m, a, b->ids, n, b->T);
        if (correct) *correct += model_acts_lm_correct(a, n);
        return loss;
    }
    float loss = model_forward(m, a, b->x, b->y, n);
    if (correct) {
        int V = m->cfg.classes;
        const float *logits = model_acts_logits(a); // logits (n, V)
        for (int i = 0; i < n; i++) *correct += argmax(logits + (size_t)i * V, V) == b->y[i];
    }
    return loss;
}

void task_forward_infer(const model *m, model_acts *a, const task_batch *b, int n)
{
    if (b->ids) model_forward_lm(m, a, b->ids, n, b->T);
    else model_forward(m, a, b->x, NULL, n);
}

void task_backward(model *m, model_acts *a, const task_batch *b, int n)
{
    if (b->ids) model_backward_lm(m, a, b->ids, n, b->T);
    else model_backward(m, a, b->y, n);
}
