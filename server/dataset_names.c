/* dataset_names.c — dataset names by their shape (see dataset_names.h). No I/O.
 *
 * This mirrors engine/tokens.c (tokens_is_name, synth_lm_parse, tokens_name_info): prefixes
 * tokens: / text: / synthetic-lm, options n (1..50000000), vocab (2..65535) and seed (any uint64),
 * each at most once, k=v separated by commas. Keep the two in step. */
#include "dataset_names.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNTH_LM_MAX_N 50000000ull

static const char *const KIND_NAMES[DATASET_KIND_COUNT] = {"image", "tokens", "text"};

const char *dataset_kind_name(dataset_kind k)
{
    return (unsigned)k < DATASET_KIND_COUNT ? KIND_NAMES[k] : NULL;
}

int dataset_names_is_token(const char *name)
{
    if (!name) return 0;
    return strncmp(name, "tokens:", 7) == 0 || strncmp(name, "text:", 5) == 0 || strcmp(name, "synthetic-lm") == 0 ||
           strncmp(name, "synthetic-lm:", 13) == 0;
}

dataset_kind dataset_names_kind(const char *name)
{
    if (!dataset_names_is_token(name)) return DATASET_KIND_IMAGE;
    return strncmp(name, "text:", 5) == 0 ? DATASET_KIND_TEXT : DATASET_KIND_TOKENS;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* The vocabulary of "synthetic-lm[:k=v,...]" (default 64), or -1 with err naming the option. */
static int synth_lm_vocab(const char *name, char *err, size_t errlen)
{
    unsigned long long vocab = 64;
    const char *p = strchr(name, ':');
    if (!p) return (int)vocab;
    p++;
    unsigned seen = 0;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item)
            return fail(err, errlen, "synthetic-lm: bad option list '%s' (expected k=v,k=v...)", name);
        memcpy(item, p, len);
        item[len] = 0;
        char *eq = strchr(item, '=');
        if (!eq || eq == item || !eq[1]) return fail(err, errlen, "synthetic-lm: option '%s' is not k=v", item);
        *eq = 0;
        const char *key = item, *val = eq + 1;
        static const char *const keys[] = {"n", "vocab", "seed"};
        int k = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(key, keys[i]) == 0) k = i;
        if (k < 0) return fail(err, errlen, "synthetic-lm: unknown option '%s' (known: n, vocab, seed)", key);
        if (seen & (1u << k)) return fail(err, errlen, "synthetic-lm: option '%s' given twice", key);
        seen |= 1u << k;
        if (val[0] < '0' || val[0] > '9')
            return fail(err, errlen, "synthetic-lm: %s='%s' is not a non-negative integer", key, val);
        errno = 0;
        char *rest;
        unsigned long long v = strtoull(val, &rest, 10);
        if (errno || *rest) return fail(err, errlen, "synthetic-lm: %s='%s' is not a non-negative integer", key, val);
        static const unsigned long long lo[] = {1, 2, 0};
        static const unsigned long long hi[] = {SYNTH_LM_MAX_N, 65535, UINT64_MAX};
        if (v < lo[k] || v > hi[k])
            return fail(err, errlen, "synthetic-lm: %s=%llu out of range [%llu, %llu]", key, v, lo[k], hi[k]);
        if (k == 1) vocab = v;
        p += len;
        if (*p == ',') p++;
    }
    return (int)vocab;
}

int dataset_names_token_info(const char *name, int *vocab, char *err, size_t errlen)
{
    if (!dataset_names_is_token(name)) return 0;
    int v = 0;
    if (strncmp(name, "tokens:", 7) == 0) {
        if (!name[7]) return fail(err, errlen, "tokens: no directory given (expected tokens:DIR)");
    } else if (strncmp(name, "text:", 5) == 0) {
        if (!name[5]) return fail(err, errlen, "text: no file given (expected text:FILE)");
        v = 256;
    } else if ((v = synth_lm_vocab(name, err, errlen)) < 0) {
        return -1;
    }
    if (vocab) *vocab = v;
    return 1;
}
