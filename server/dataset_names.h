/* dataset_names.h — what a dataset name says without reading a file: image or token data, and
 * the vocabulary when the name alone fixes it.
 *
 * Token dataset names (engine/tokens.h): tokens:DIR, text:FILE, synthetic-lm[:n=N,vocab=V,seed=S].
 * Every other name is an image dataset (fashion-mnist, mnist, cifar10, cifar100, synthetic[:...]).
 * The token names go through spec/dataset_name.h, the parser the engine's tokens_name_info uses,
 * so a job is refused at submission for exactly the names its cells would be refused for. */
#ifndef PL_SERVER_DATASET_NAMES_H
#define PL_SERVER_DATASET_NAMES_H

#include <stddef.h>

typedef enum {
    DATASET_KIND_IMAGE,
    DATASET_KIND_TOKENS, /* tokens:DIR and synthetic-lm */
    DATASET_KIND_TEXT,   /* text:FILE */
    DATASET_KIND_COUNT
} dataset_kind;

/* "image", "tokens", "text"; NULL when out of range. */
const char *dataset_kind_name(dataset_kind k);

/* The kind of a dataset name by its prefix (NULL: image). */
dataset_kind dataset_names_kind(const char *name);

/* 1 when name is a token dataset name by its prefix (tokens:, text:, synthetic-lm), else 0. */
int dataset_names_is_token(const char *name);

/* Check a token dataset name without files (spec_token_dataset_info). Returns 1 when it is a
 * well-formed token dataset name, with *vocab (may be NULL) = V when the name fixes it (text: 256,
 * synthetic-lm: its vocab, default 64) or 0 when the files decide (tokens:DIR); 0 when it is not a
 * token dataset name (err untouched); -1 when it is one but malformed, with err. */
int dataset_names_token_info(const char *name, int *vocab, char *err, size_t errlen);

#endif
