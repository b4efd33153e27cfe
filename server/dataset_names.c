/* dataset_names.c — dataset names by their shape (see dataset_names.h). No I/O. The token names
 * are spec/dataset_name.c's, the same parser the engine uses. */
#include "dataset_names.h"
#include "dataset_name.h"

#include <stdint.h>
#include <string.h>


static const char *const KIND_NAMES[DATASET_KIND_COUNT] = {"image", "tokens", "text"};

const char *dataset_kind_name(dataset_kind k)
{
    return (unsigned)k < DATASET_KIND_COUNT ? KIND_NAMES[k] : NULL;
}

int dataset_names_is_token(const char *name) { return spec_token_dataset_is_name(name); }

dataset_kind dataset_names_kind(const char *name)
{
    if (!dataset_names_is_token(name)) return DATASET_KIND_IMAGE;
    return strncmp(name, "text:", 5) == 0 ? DATASET_KIND_TEXT : DATASET_KIND_TOKENS;
}

int dataset_names_token_info(const char *name, int *vocab, char *err, size_t errlen)
{
    return spec_token_dataset_info(name, vocab, err, errlen);
}
