/* lm.c — causal-LM presets and the vocabulary implied by a dataset name (contract: lm.h).
 * The token datasets themselves belong to data.c / tokens.c; this reads only what init needs
 * to size the embedding (a name's vocab= key, a tokens directory's meta.json). */
#include "lm.h"
#include "tokens.h"

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
    int v = 0;
    int k = tokens_name_info(name, &v, err, errlen);
    if (k < 0) return -1;
    if (k == 0) return pl_err(err, errlen, "%s is not a token dataset (tokens:DIR, text:FILE, synthetic-lm:...)", name);
    if (v == 0) { /* tokens:DIR: the files say (meta.json's vocab_size, else max id + 1) */
        tokens_set ts;
        if (tokens_open(&ts, name, 0, err, errlen) != 0) return -1;
        v = ts.vocab;
        tokens_free(&ts);
    }
    if (v < 2) return pl_err(err, errlen, "%s has vocabulary %d (an LM needs at least 2)", name, v);
    *V = v;
    return 0;
}
