/* cmd_grad.c — `prunelab grad`: the loss, logits and every parameter gradient of the mean
 * cross-entropy for one batch given as safetensors. This is the interface other frameworks
 * use to check the engine tensor by tensor.
 *
 * Input X: `images` float [B, C, H, W] (already normalised; F32, or F16/BF16/F64 converted),
 * `labels` I64 (or I32) [B]. Output G: `loss` F32 [1], `logits` F32 [B, classes] and
 * `grad.<parameter name>` F32 with the parameter's checkpoint shape, for every parameter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

int cmd_grad(int argc, char **argv)
{
    const char *model_path = NULL, *batch_path = NULL, *out = NULL, *dataset_name = NULL;
    int threads = 0;
    cli_opt opts[] = {
        {"--model", CLI_STRING, &model_path, "M", "checkpoint", 0, 0, NULL, 0},
        {"--batch", CLI_STRING, &batch_path, "X.safetensors", "images F32 [B,C,H,W] and labels I64 [B]", 0, 0, NULL,
         0},
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
                   "and `grad.<parameter name>` (the parameter's shape) for every parameter.",
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

    st_writer *w = st_writer_new();
    int64_t one = 1, lshape[2] = {B, c->classes};
    st_writer_add(w, "loss", ST_F32, 1, &one, &loss);
    st_writer_add(w, "logits", ST_F32, 2, lshape, model_acts_logits(a));
    char **names = xcalloc((size_t)m.n_tensors, sizeof(char *));
    for (int i = 0; i < m.n_tensors; i++) {
        const param_info *p = &m.info[i];
        size_t n = strlen(p->name) + 6;
        names[i] = xmalloc(n);
        snprintf(names[i], n, "grad.%s", p->name);
        st_writer_add(w, names[i], ST_F32, p->ndim, p->shape, m.grads + p->offset);
    }
    st_writer_meta(w, "format", "pt");
    if (st_writer_save(w, out, err, sizeof err) != 0)
        cli_fail(&s, "check that the directory exists and is writable", "cannot write %s: %s", out, err);
    fprintf(stderr, "wrote %s: loss %.6f over %d samples, %d gradient tensors\n", out, loss, B, m.n_tensors);
    st_writer_free(w);
    for (int i = 0; i < m.n_tensors; i++) free(names[i]);
    free(names);
    model_acts_free(a);
    free(y);
    free(x);
    st_free(xf);
    model_free(&m);
    return 0;
}
