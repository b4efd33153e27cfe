/* cmd_components.c — `prunelab components`: the prunable components of a checkpoint (the notes'
 * table, measured on this model), printed as one JSON object:
 *   total:  per component, summed over layers — tensors, params, share of the model, unit and
 *           unit count, not_recommended, alias, weights pruned by unstructured pruning;
 *   layers: the same per layer, with the exact tensor ranges each component owns.
 * Ownership of parameters follows prune_components.c (the nine components partition a block),
 * so the shares of one layer's components add up to the layer's share. "present" is false for a
 * component the model lacks (mlp in an HF Mamba LM); "other" lists the tensors outside the blocks
 * (patch / position / token embeddings, norm_f, the head, a tied lm_head) with prunable false and
 * the reason. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "prune.h"
#include "util.h"

/* Symbolic tensor list of each component (names under backbone.layers.{i}.). */
static const char *const comp_tensors[PC_COUNT] = {
    "mixer.out_proj.weight",
    "norm2.weight, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias",
    "mixer.in_proj.weight rows E..2E-1",
    "norm.weight, mixer.in_proj.weight rows 0..E-1",
    "mixer.conv1d.weight, mixer.conv1d.bias",
    "mixer.x_proj.weight rows R..R+2N-1 (B then C)",
    "mixer.x_proj.weight rows 0..R-1, mixer.dt_proj.weight, mixer.dt_proj.bias",
    "mixer.A_log",
    "mixer.D",
    "every tensor of the block",
};

/* Parameters one structured unit takes with it, coupled tensors included (0 without units). */
static size_t params_per_unit(const model *m, prune_component c, int li)
{
    const layer_dims *ld = &m->cfg.layers[li];
    size_t d = (size_t)m->cfg.d, E = (size_t)ld->E, N = (size_t)ld->N, R = (size_t)ld->R, K = (size_t)ld->K;
    switch (c) {
    case PC_OUT_PROJ: return E;
    case PC_MLP: return 2 * d + 1;
    case PC_GATE:
    case PC_IN_PROJ: return 2 * d + K + 1 + (R + 2 * N) + R + 1 + N + 1 + d;
    case PC_CONV1D: return E;
    case PC_X_PROJ_BC: return 3 * E;
    case PC_DT: return 2 * E;
    case PC_LAYER: return prune_component_params(m, PC_LAYER, li);
    default: return 0;
    }
}

static json_t *slice_json(const model *m, const prune_slice *s)
{
    const param_info *p = &m->info[s->tensor];
    json_t *o = json_object();
    json_object_set_new(o, "tensor", json_string(p->name));
    json_t *shape = json_array();
    for (int k = 0; k < p->ndim; k++) json_array_append_new(shape, json_integer(p->shape[k]));
    json_object_set_new(o, "shape", shape);
    json_object_set_new(o, "params", json_integer((json_int_t)s->count));
    if (s->count != p->numel) {
        size_t row = p->numel / (size_t)p->shape[0];
        json_t *rows = json_array();
        json_array_append_new(rows, json_integer((json_int_t)(s->start / row)));
        json_array_append_new(rows, json_integer((json_int_t)((s->start + s->count) / row)));
        json_object_set_new(o, "rows", rows); /* [first, end) */
    }
    return o;
}

static json_t *component_json(prune_component c, size_t params, size_t weights, long units, size_t total)
{
    json_t *o = json_object();
    const char *unit = prune_component_unit(c);
    json_object_set_new(o, "component", json_string(prune_component_name(c)));
    json_object_set_new(o, "alias", json_string(prune_component_alias(c)));
    json_object_set_new(o, "params", json_integer((json_int_t)params));
    json_object_set_new(o, "share", json_real(total ? (double)params / (double)total : 0.0));
    json_object_set_new(o, "unstructured_weights", json_integer((json_int_t)weights));
    json_object_set_new(o, "unit", unit ? json_string(unit) : json_null());
    json_object_set_new(o, "units", json_integer(units));
    json_object_set_new(o, "structured", json_boolean(unit != NULL));
    json_object_set_new(o, "not_recommended", json_boolean(prune_component_not_recommended(c)));
    return o;
}

int cmd_components(int argc, char **argv)
{
    const char *model_path = NULL, *dataset_name = NULL;
    cli_opt opts[] = {
        {"--model", CLI_STRING, &model_path, "M", "checkpoint to analyse", 0, 0, NULL, 0},
        {"--dataset", CLI_STRING, &dataset_name, "NAME",
         "dataset the model was trained on (only needed for checkpoints without prunelab metadata)", 0, 0, NULL, 0},
    };
    cli_spec s = {
        .cmd = "components",
        .usage = "prunelab components --model M [--dataset NAME]",
        .summary = "Print, per layer and in total, every prunable component (canonical name and the notes'\n"
                   "alias) with its tensors, parameter count, share of the model's parameters, structured\n"
                   "unit and unit count, and the not_recommended flag, as one JSON object.",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
    };
    cli_parse(&s, argc, argv, NULL);
    cli_require(&s, "--model");
    model m;
    cli_load_model(&s, &m, model_path, dataset_name);
    if (!prune_is_mamba_model(&m))
        cli_fail(&s, NULL, "%s is not a Mamba model (patch-Mamba classifier or MambaForCausalLM) with the expected "
                 "tensor names and shapes", model_path);

    size_t total = m.n_params;
    json_t *root = json_object();
    json_object_set_new(root, "model", json_string(model_path));
    json_object_set_new(root, "is_mamba_model", json_true());
    json_object_set_new(root, "params", json_integer((json_int_t)total));
    json_object_set_new(root, "n_layers", json_integer(m.cfg.n_layers));
    json_t *crit = json_array();
    for (int c = 0; c < PCR_COUNT; c++) json_array_append_new(crit, json_string(prune_criterion_name(c)));
    json_object_set_new(root, "criteria", crit);
    json_t *gran = json_array();
    json_array_append_new(gran, json_string("unstructured"));
    json_array_append_new(gran, json_string("structured"));
    json_object_set_new(root, "granularities", gran);

    size_t block_params = 0;
    json_t *tot = json_array();
    for (int c = 0; c < PC_COUNT; c++) {
        size_t params = 0, weights = 0;
        long units = 0;
        for (int i = 0; i < m.cfg.n_layers; i++) {
            prune_slice sl[PRUNE_MAX_SLICES];
            int ns = prune_component_slices(&m, (prune_component)c, i, sl);
            for (int k = 0; k < ns; k++) weights += sl[k].count;
            params += prune_component_params(&m, (prune_component)c, i);
            units += prune_component_units(&m, (prune_component)c, i);
        }
        if (c == PC_LAYER) block_params = params;
        json_t *o = component_json((prune_component)c, params, weights, units, total);
        json_object_set_new(o, "tensors", json_string(comp_tensors[c]));
        json_object_set_new(o, "present", json_boolean(params > 0)); /* e.g. no mlp in an HF Mamba LM */
        json_array_append_new(tot, o);
    }
    json_object_set_new(root, "total", tot);
    json_object_set_new(root, "layer_params", json_integer((json_int_t)block_params));
    json_object_set_new(root, "other_params", json_integer((json_int_t)(total - block_params)));
    json_object_set_new(root, "task", json_string(model_task_names[m.cfg.task]));
    json_t *other = json_array(); /* tensors outside the blocks: never pruned */
    for (int t = 0; t < m.n_tensors; t++) {
        const param_info *p = &m.info[t];
        if (p->layer >= 0) continue;
        const char *why = strcmp(p->name, "backbone.embeddings.weight") == 0
                              ? (m.cfg.tied ? "the token embedding, also the tied LM head: removing rows removes "
                                              "tokens from the vocabulary"
                                            : "the token embedding: removing rows removes tokens from the vocabulary")
                          : strcmp(p->name, "lm_head.weight") == 0 ? "the LM head: one row per vocabulary token"
                          : strstr(p->name, "norm_f") ? "the final RMSNorm: its width is d_model, which pruning keeps"
                          : "outside the blocks: its shape is fixed by the input or the output";
        json_t *o = json_pack("{s:s,s:I,s:b,s:s}", "tensor", p->name, "params", (json_int_t)p->numel, "prunable", 0,
                              "reason", why);
        json_array_append_new(other, o);
    }
    if (m.cfg.task == MODEL_TASK_LM && m.cfg.tied)
        json_array_append_new(other, json_pack("{s:s,s:I,s:b,s:s}", "tensor", "lm_head.weight", "params", (json_int_t)0,
                                               "prunable", 0, "reason",
                                               "tied to backbone.embeddings.weight (absent from the checkpoint)"));
    json_object_set_new(root, "other", other);

    json_t *layers = json_array();
    for (int i = 0; i < m.cfg.n_layers; i++) {
        const layer_dims *ld = &m.cfg.layers[i];
        json_t *l = json_object();
        json_object_set_new(l, "layer", json_integer(i));
        json_object_set_new(l, "orig_index", json_integer(m.cfg.orig_index[i]));
        json_object_set_new(l, "dims", json_pack("{s:i,s:i,s:i,s:i,s:i}", "E", ld->E, "N", ld->N, "R", ld->R, "K",
                                                 ld->K, "M", ld->M));
        size_t lp = prune_component_params(&m, PC_LAYER, i);
        json_object_set_new(l, "params", json_integer((json_int_t)lp));
        json_object_set_new(l, "share", json_real(total ? (double)lp / (double)total : 0.0));
        json_t *comps = json_array();
        for (int c = 0; c < PC_COUNT; c++) {
            prune_slice sl[PRUNE_MAX_SLICES], own[PRUNE_MAX_SLICES];
            int ns = prune_component_slices(&m, (prune_component)c, i, sl);
            int no = prune_component_owned(&m, (prune_component)c, i, own);
            if (no == 0) continue; /* e.g. mlp in a layer without one */
            size_t weights = 0;
            for (int k = 0; k < ns; k++) weights += sl[k].count;
            json_t *o = component_json((prune_component)c, prune_component_params(&m, (prune_component)c, i), weights,
                                       prune_component_units(&m, (prune_component)c, i), total);
            json_object_set_new(o, "params_per_unit", json_integer((json_int_t)params_per_unit(&m, c, i)));
            json_t *ts = json_array();
            for (int k = 0; k < no; k++) json_array_append_new(ts, slice_json(&m, &own[k]));
            json_object_set_new(o, "tensors", ts);
            json_array_append_new(comps, o);
        }
        json_object_set_new(l, "components", comps);
        json_array_append_new(layers, l);
    }
    json_object_set_new(root, "layers", layers);
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(6));
    printf("%s\n", text);
    free(text);
    json_decref(root);
    model_free(&m);
    return 0;
}
