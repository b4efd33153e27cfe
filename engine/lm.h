/* lm.h — causal-LM helpers around the model core: size presets and the vocabulary a dataset
 * name implies. The model itself (layout, forward/backward, I/O) is model.h. */
#ifndef PL_LM_H
#define PL_LM_H

#include <stddef.h>

#include "model.h"

/* LM presets (no MLP, expand 2, d_conv 4, dt_rank ceil(d/16), tied head; HF-shaped):
 *   lm-tiny   d 32, 2 layers, N 8    (tests)
 *   lm-small  d 192, 4 layers, N 16  (a byte-level LM trainable on a laptop CPU)
 *   lm-base   d 384, 8 layers, N 16
 * The vocabulary is not part of a preset. */
#define LM_PRESET_COUNT 3
extern const char *const lm_preset_names[LM_PRESET_COUNT + 1];
/* Fill hp for preset name. Returns 0, or -1 for an unknown name (hp zeroed). */
int lm_preset(const char *name, model_hparams *hp);

/* The vocabulary size of a token dataset: tokens_name_info when the name fixes it (text:FILE
 * 256, synthetic-lm its vocab, default 64), else tokens_open's (tokens:DIR: meta.json's
 * vocab_size or max id + 1). Returns 0 with *V, or -1 with err (not a token name, malformed,
 * unreadable files). */
int lm_dataset_vocab(const char *name, int *V, char *err, size_t errlen);

#endif
