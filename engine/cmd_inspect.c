/* cmd_inspect.c — `prunelab inspect M`: validate a checkpoint (the loader's structural checks
 * plus finite values) and print its config, per-layer dims and parameter counts as JSON.
 * prunelabd runs it on every uploaded model, so a bad file must give a non-zero exit and a
 * message that names the problem. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "model.h"
#include "util.h"

int cmd_inspect(int argc, char **argv)
{
    const char *dataset_name = NULL;
    int tensors = 0;
    cli_opt opts[] = {
        {"--dataset", CLI_STRING, &dataset_name, "NAME",
         "dataset hint for checkpoints without prunelab metadata (image shape)", 0, 0, NULL, 0},
        {"--tensors", CLI_FLAG, &tensors, NULL, "also list every tensor with its shape", 0, 0, NULL, 0},
    };
    cli_spec s = {
        .cmd = "inspect",
        .usage = "prunelab inspect M [--dataset NAME] [--tensors]",
        .summary = "Validate a checkpoint and print its config (task; an LM's vocab, tied head and\n"
                   "layer_norm_epsilon), per-layer dims and parameter counts as JSON.\n"
                   "Exits non-zero with a message naming the problem when the file is not a valid model.",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
        .min_pos = 1,
        .max_pos = 1,
        .pos_name = "M (the checkpoint to inspect: a safetensors file or an HF directory)",
    };
    const char *pos[1] = {NULL};
    cli_parse(&s, argc, argv, pos);
    const char *path = pos[0];

    model m;
    char err[PL_ERRLEN];
    if (model_load(&m, path, dataset_name, err, sizeof err) != 0)
        pl_die("the file must be a safetensors checkpoint with the tensor names of DESIGN.md section 3",
               "inspect: not a valid model: %s", err); /* err starts with the path */
    for (int i = 0; i < m.n_tensors; i++) {
        const param_info *p = &m.info[i];
        for (size_t j = 0; j < p->numel; j++) {
            float v = m.params[p->offset + j];
            if (!isfinite(v))
                pl_die("the checkpoint holds NaN or Inf values (a diverged run?)",
                       "inspect: %s is not a valid model: tensor %s has a non-finite value at index %zu", path,
                       p->name, j);
        }
    }
    size_t nonzero = model_count_nonzero(&m);
    char *desc = model_describe_json(&m);
    json_error_t je;
    json_t *o = json_loads(desc, 0, &je);
    free(desc);
    if (!o) pl_die(NULL, "inspect: internal error describing %s: %s", path, je.text);
    json_object_set_new(o, "file", json_string(path));
    json_object_set_new(o, "valid", json_true());
    json_object_set_new(o, "nonzero_params", json_integer((json_int_t)nonzero));
    json_object_set_new(o, "tensor_count", json_integer(m.n_tensors));
    if (tensors) {
        json_t *arr = json_array();
        for (int i = 0; i < m.n_tensors; i++) {
            const param_info *p = &m.info[i];
            json_t *shape = json_array();
            for (int k = 0; k < p->ndim; k++) json_array_append_new(shape, json_integer(p->shape[k]));
            json_array_append_new(arr, json_pack("{s:s,s:o,s:I,s:b}", "name", p->name, "shape", shape, "numel",
                                                 (json_int_t)p->numel, "decay", p->decay));
        }
        json_object_set_new(o, "tensors", arr);
    }
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    printf("%s\n", text);
    free(text);
    json_decref(o);
    model_free(&m);
    return 0;
}
