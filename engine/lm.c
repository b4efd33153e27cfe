/* lm.c — causal-LM presets and the vocabulary implied by a dataset name (contract: lm.h).
 * The token datasets themselves belong to data.c / tokens.c; this reads only what init needs
 * to size the embedding (a name's vocab= key, a tokens directory's meta.json). */
#include "lm.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *const lm_preset_names[LM_PRESET_COUNT + 1] = {"lm-tiny", "lm-small", "lm-base", NULL};
static const model_hparams LM_PRESETS[LM_PRESET_COUNT] = {
    {.d = 32, .n_layers = 2, .d_state = 8, .d_conv = 4, .expand = 2.0f, .mlp_ratio = 0.0f},
    {.d = 192, .n_layers = 4, .d_state = 16, .d_conv = 4, .expand = 2.0f, .mlp_ratio = 0.0f},
    {.d = 384, .n_layers = 8, .d_state = 16, .d_conv = 4, .expand = 2.0f, .mlp_ratio = 0.0f},
};

int lm_preset(const char *name, model_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    for (int i = 0; name && i < LM_PRESET_COUNT; i++)
        if (strcmp(name, lm_preset_names[i]) == 0) {
            *hp = LM_PRESETS[i];
            hp->patch = 1;
            return 0;
        }
    return -1;
}

int lm_dataset_vocab(const char *name, int *V, char *err, size_t errlen)
{
    if (!name) return pl_err(err, errlen, "no dataset given");
    if (strncmp(name, "text:", 5) == 0) {
        *V = 256;
        return 0;
    }
    if (strncmp(name, "synthetic-lm", 12) == 0 && (name[12] == ':' || name[12] == 0)) {
        const char *p = strstr(name, "vocab=");
        if (!p || (p != name + 13 && p[-1] != ',')) return pl_err(err, errlen, "%s does not say vocab=V", name);
        char *end;
        long v = strtol(p + 6, &end, 10);
        if (end == p + 6 || (*end && *end != ',') || v < 2 || v > (1 << 24))
            return pl_err(err, errlen, "%s: vocab must be an integer in [2, %d]", name, 1 << 24);
        *V = (int)v;
        return 0;
    }
    if (strncmp(name, "tokens:", 7) == 0) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/meta.json", name + 7) >= sizeof path)
            return pl_err(err, errlen, "dataset path too long");
        json_error_t je;
        json_t *o = json_load_file(path, 0, &je);
        json_t *v = json_object_get(o, "vocab_size");
        int ok = json_is_integer(v) && json_integer_value(v) >= 2 && json_integer_value(v) <= (1 << 24);
        if (ok) *V = (int)json_integer_value(v);
        json_decref(o);
        if (!ok) return pl_err(err, errlen, "%s has no integer vocab_size", path);
        return 0;
    }
    return pl_err(err, errlen, "%s is not a token dataset (tokens:DIR, text:FILE, synthetic-lm:...)", name);
}
