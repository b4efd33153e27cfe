/* cmd_grad.c — `prunelab grad`: the loss, logits and every parameter gradient of the mean
 * cross-entropy for one batch given as safetensors. This is the interface other frameworks
 * use to check the engine tensor by tensor.
 *
 * Input X: `images` float [B, C, H, W] (already normalised; F32, or F16/BF16/F64 converted),
 * `labels` I64 (or I32) [B]. Output G: `loss` F32 [1], `logits` F32 [B, classes] and
 * `grad.<parameter name>` F32 with the parameter's checkpoint shape, for every parameter.
 * Causal LM: X holds `input_ids` I64 (or I32) [B, T], T >= 2; the loss is the mean next-token
 * cross-entropy over B*(T-1) positions (HF labels=input_ids), `logits` is [B, T, V], and a tied
 * head's gradient is part of grad.backbone.embeddings.weight (there is no lm_head tensor). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

/* Write loss, logits and every grad.<name> of m (grads computed) to out. */
static void write_grads(const cli_spec *s, const model *m, const char *out, float loss, int ndim_logits,
                        const int64_t *lshape, const float *logits)
{
    char err[PL_ERRLEN];
    st_writer *w = st_writer_new();
    int64_t one = 1;
    st_writer_add(w, "loss", ST_F32, 1, &one, &loss);
    st_writer_add(w, "logits", ST_F32, ndim_logits, lshape, logits);
    char **names = xcalloc((size_t)m->n_tensors, sizeof(char *));
    for (int i = 0; i < m->n_tensors; i++) {
        const param_info *p = &m->info[i];
        size_t n = strlen(p->name) + 6;
        names[i] = xmalloc(n);
        snprintf(names[i], n, "grad.%s", p->name);
        st_writer_add(w, names[i], ST_F32, p->ndim, p->shape, m->grads + p->offset);
    }
    st_writer_meta(w, "format", "pt");
    if (st_writer_save(w, out, err, sizeof err) != 0)
        cli_fail(s, "check that the directory exists and is writable", "cannot write %s: %s", out, err);
    st_writer_free(w);
    for (int i = 0; i < m->n_tensors; i++) free(names[i]);
    free(names);
}

static void grad_lm(const cli_spec *s, model *m, const char *batch_path, const char *out)
{
    char err[PL_ERRLEN];
    int V = m->cfg.vocab;
    const char *hint = "the batch must be a safetensors file with input_ids I64 (or I32) [B, T], T >= 2";
    st_file *xf = st_load(batch_path, err, sizeof err);
    if (!xf) cli_fail(s, hint, "%s: %s", batch_path, err);
    const st_tensor *t = st_find(xf, "input_ids");
    if (!t) cli_fail(s, hint, "%s has no tensor 'input_ids'", batch_path);
    if (t->dtype != ST_I64 && t->dtype != ST_I32)
        cli_fail(s, hint, "input_ids must be I64 or I32 (got %s)", st_dtype_name(t->dtype));
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 2 || t->shape[0] * t->shape[1] > (1 << 26))
        cli_fail(s, hint, "input_ids must be [B, T] with B >= 1, T >= 2 (and B*T <= 2^26)");
    int B = (int)t->shape[0], T = (int)t->shape[1];
    int *ids = xmalloc((size_t)B * T * sizeof(int)); // ids (B, T)
    for (int i = 0; i < B * T; i++) {
        int64_t v;
        if (t->dtype == ST_I64) {
            memcpy(&v, (const char *)t->data + 8 * (size_t)i, 8);
        } else {
            int32_t v32;
            memcpy(&v32, (const char *)t->data + 4 * (size_t)i, 4);
            v = v32;
        }
        if (v < 0 || v >= V)
            cli_fail(s, hint, "input_ids[%d][%d] = %lld is outside the vocabulary [0, %d)", i / T, i % T,
                     (long long)v, V);
        ids[i] = (int)v;
    }
    model_alloc_grads(m);
    model_zero_grads(m);
    model_acts *a = model_acts_new_lm(m, B, T, 1, 1);
    float loss = model_forward_lm(m, a, ids, B, T);
    model_backward_lm(m, a, ids, B, T);
    int64_t lshape[3] = {B, T, V};
    write_grads(s, m, out, loss, 3, lshape, model_acts_logits(a));
    fprintf(stderr, "wrote %s: loss %.6f over %d x %d tokens (%d predictions), %d gradient tensors\n", out, loss, B,
            T, B * (T - 1), m->n_tensors);
    model_acts_free(a);
    free(ids);
    st_free(xf);
}

int cmd_grad(int argc, char **argv)
{
    const char *model_path = NULL, *batch_path = NULL, *out = NULL, *dataset_name = NULL;
    int threads = 0;
    cli_opt opts[] = {
        {"--model", CLI_STRING, &model_path, "M", "checkpoint", 0, 0, NULL, 0},
        {"--batch", CLI_STRING, &batch_path, "X.safetensors",
         "images F32 [B,C,H,W] and labels I64 [B]; for an LM input_ids I64 [B,T]", 0, 0, NULL, 0},
        {"--out", CLI_STRING, &out, "G.safetensors", "output: loss, logits, grad.<name> for every parameter", 0, 0,
         NULL, 0},
        {"--dataset", CLI_STRING, &dataset_name, "NAME", "dataset hint for checkpoints without prunelab metadata", 0,
         0, NULL, 0},
        {"--threads", CLI_INT, &threads, "T", "BLAS and kernel threads", 1, 1024, NULL, 0},
    };
    cli_spec s = {
        .cmd = "grad",
        .usage = "prunelab grad --model M --batch X.safetensors --out G.safetensors",
        .summary = "Forward and backward of the mean cross-entropy on one batch. X holds `images` F32 [B,C,H,W]\n"
                   "(already normalised) and `labels` I64 [B]; G receives `loss` F32 [1], `logits` F32 [B,classes]\n"
                   "and `grad.<parameter name>` (the parameter's shape) for every parameter.\n"
                   "Causal LM (file or HF directory): X holds `input_ids` I64/I32 [B,T]; loss = mean next-token\n"
                   "cross-entropy over B*(T-1) positions; `logits` F32 [B,T,V].",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
    };
    cli_parse(&s, argc, argv, NULL);
    cli_require(&s, "--model");
    cli_require(&s, "--batch");
    cli_require(&s, "--out");
    cli_set_threads(threads);
    char err[PL_ERRLEN];
    cli_verify_blas(&s);

    model m;
    cli_load_model(&s, &m, model_path, dataset_name);
    const model_config *c = &m.cfg;
    if (c->task == MODEL_TASK_LM) {
        grad_lm(&s, &m, batch_path, out);
        model_free(&m);
        return 0;
    }
    st_file *xf = st_load(batch_path, err, sizeof err);
    if (!xf) cli_fail(&s, "the batch must be a safetensors file with tensors images and labels", "%s: %s", batch_path, err);
    const st_tensor *ti = st_find(xf, "images"), *tl = st_find(xf, "labels");
    const char *shape_hint = "images: F32 [B,C,H,W] matching the model; labels: I64 [B]";
    if (!ti || !tl) cli_fail(&s, shape_hint, "%s has no tensor '%s'", batch_path, !ti ? "images" : "labels");
    if (ti->ndim != 4 || ti->shape[1] != c->C || ti->shape[2] != c->H || ti->shape[3] != c->W || ti->shape[0] < 1)
        cli_fail(&s, shape_hint, "images must be [B,%d,%d,%d] for this model", c->C, c->H, c->W);
    int B = (int)ti->shape[0];
    if (tl->ndim != 1 || tl->shape[0] != B) cli_fail(&s, shape_hint, "labels must be [%d] (one per image)", B);
    if (tl->dtype != ST_I64 && tl->dtype != ST_I32) cli_fail(&s, shape_hint, "labels must be I64 (got %s)", st_dtype_name(tl->dtype));
    float *x = xalloc_floats((size_t)ti->numel); // x (B, C, H, W)
    if (st_to_f32(ti, x, err, sizeof err) != 0) cli_fail(&s, shape_hint, "images: %s", err);
    int *y = xmalloc((size_t)B * sizeof(int)); // y (B)
    for (int i = 0; i < B; i++) {
        int64_t v;
        if (tl->dtype == ST_I64) {
            memcpy(&v, (const char *)tl->data + 8 * (size_t)i, 8);
        } else {
            int32_t v32;
            memcpy(&v32, (const char *)tl->data + 4 * (size_t)i, 4);
            v = v32;
        }
        if (v < 0 || v >= c->classes)
            cli_fail(&s, shape_hint, "label %lld at index %d is outside [0, %d)", (long long)v, i, c->classes);
        y[i] = (int)v;
    }

    model_alloc_grads(&m);
    model_zero_grads(&m);
    model_acts *a = model_acts_new(&m, B, 1);
    float loss = model_forward(&m, a, x, y, B);
    model_backward(&m, a, y, B);

    int64_t lshape[2] = {B, c->classes};
    write_grads(&s, &m, out, loss, 2, lshape, model_acts_logits(a));
    fprintf(stderr, "wrote %s: loss %.6f over %d samples, %d gradient tensors\n", out, loss, B, m.n_tensors);
    model_acts_free(a);
    free(y);
    free(x);
    st_free(xf);
    model_free(&m);
    return 0;
}
