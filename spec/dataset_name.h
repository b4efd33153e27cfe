/* dataset_name.h — what a token dataset name says without reading a file, shared by the engine
 * (engine/tokens.c opens the data) and the daemon (checks a job's dataset at submission), so
 * both refuse the same names with the same messages.
 *
 * Names: tokens:DIR, text:FILE, synthetic-lm[:n=N,vocab=V,seed=S] (engine/tokens.h describes
 * the data). synthetic-lm options: k=v separated by commas, each at most once; n 1..50000000
 * (default 65536), vocab 2..65535 (default 64), seed any uint64 (default 1). */
#ifndef PL_SPEC_DATASET_NAME_H
#define PL_SPEC_DATASET_NAME_H

#include <stddef.h>
#include <stdint.h>

#define SPEC_SYNTH_LM_MAX_N 50000000L

typedef struct {
    long n, vocab;
    uint64_t seed;
} spec_synth_lm;

/* 1 if name is a token dataset name by its prefix (tokens:, text:, synthetic-lm), else 0. */
int spec_token_dataset_is_name(const char *name);

/* One integer option of a dataset name: its key and its range. */
typedef struct {
    const char *key;
    unsigned long long lo, hi;
} spec_int_option;

/* The "k=v,k=v" options after the first ':' of name (none without one): each a key of defs[0..n)
 * (n <= 32) at most once, its value a decimal integer in [lo, hi], stored in vals[i]; absent
 * keys keep what vals held. label names the dataset kind in messages ("synthetic-lm: option
 * 'x' given twice"). Returns 0, or -1 with err naming the bad option. Shared by every dataset
 * name with options (synthetic, synthetic-lm). */
int spec_int_options(const char *name, const char *label, const spec_int_option *defs, int n,
                     unsigned long long *vals, char *err, size_t errlen);

/* The options of "synthetic-lm[:k=v,...]" into o (defaults first). Returns 0, or -1 with err
 * naming the bad option. */
int spec_synth_lm_parse(const char *name, spec_synth_lm *o, char *err, size_t errlen);

/* 1 when name is a well-formed token dataset name, with *vocab (may be NULL) = V when the name
 * fixes it (text: 256, synthetic-lm: its vocab) or 0 when the files decide (tokens:DIR); 0 when it
 * is not a token dataset name (err untouched); -1 when it is one but malformed, with err. */
int spec_token_dataset_info(const char *name, int *vocab, char *err, size_t errlen);

#endif
