/* dataset_name.c — token dataset names by their shape (dataset_name.h). No I/O. */
#include "dataset_name.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int spec_token_dataset_is_name(const char *name)
{
    if (!name) return 0;
    return strncmp(name, "tokens:", 7) == 0 || strncmp(name, "text:", 5) == 0 || strcmp(name, "synthetic-lm") == 0 ||
           strncmp(name, "synthetic-lm:", 13) == 0;
}

int spec_int_options(const char *name, const char *label, const spec_int_option *defs, int n,
                     unsigned long long *vals, char *err, size_t errlen)
{
    const char *p = strchr(name, ':');
    if (!p) return 0;
    p++;
    unsigned seen = 0;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item)
            return fail(err, errlen, "%s: bad option list '%s' (expected k=v,k=v...)", label, name);
        memcpy(item, p, len);
        item[len] = 0;
        char *eq = strchr(item, '=');
        if (!eq || eq == item || !eq[1]) return fail(err, errlen, "%s: option '%s' is not k=v", label, item);
        *eq = 0;
        const char *key = item, *val = eq + 1;
        int k = -1;
        for (int i = 0; i < n && i < 32; i++)
            if (strcmp(key, defs[i].key) == 0) k = i;
        if (k < 0) {
            char known[256] = "";
            for (int i = 0; i < n; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", defs[i].key);
            return fail(err, errlen, "%s: unknown option '%s' (known: %s)", label, key, known);
        }
        if (seen & (1u << k)) return fail(err, errlen, "%s: option '%s' given twice", label, key);
        seen |= 1u << k;
        if (val[0] < '0' || val[0] > '9')
            return fail(err, errlen, "%s: %s='%s' is not a non-negative integer", label, key, val);
        errno = 0;
        char *rest;
        unsigned long long v = strtoull(val, &rest, 10);
        if (errno || *rest) return fail(err, errlen, "%s: %s='%s' is not a non-negative integer", label, key, val);
        if (v < defs[k].lo || v > defs[k].hi)
            return fail(err, errlen, "%s: %s=%llu out of range [%llu, %llu]", label, key, v, defs[k].lo, defs[k].hi);
        vals[k] = v;
        p += len;
        if (*p == ',') p++;
    }
    return 0;
}

int spec_synth_lm_parse(const char *name, spec_synth_lm *o, char *err, size_t errlen)
{
    static const spec_int_option defs[] = {{"n", 1, SPEC_SYNTH_LM_MAX_N}, {"vocab", 2, 65535}, {"seed", 0, UINT64_MAX}};
    unsigned long long v[] = {65536, 64, 1};
    if (spec_int_options(name, "synthetic-lm", defs, 3, v, err, errlen) != 0) return -1;
    *o = (spec_synth_lm){.n = (long)v[0], .vocab = (long)v[1], .seed = v[2]};
    return 0;
}

int spec_token_dataset_info(const char *name, int *vocab, char *err, size_t errlen)
{
    if (!spec_token_dataset_is_name(name)) return 0;
    int v = 0;
    if (strncmp(name, "tokens:", 7) == 0) {
        if (!name[7]) return fail(err, errlen, "tokens: no directory given (expected tokens:DIR)");
    } else if (strncmp(name, "text:", 5) == 0) {
        if (!name[5]) return fail(err, errlen, "text: no file given (expected text:FILE)");
        v = 256;
    } else {
        spec_synth_lm o;
        if (spec_synth_lm_parse(name, &o, err, errlen) != 0) return -1;
        v = (int)o.vocab;
    }
    if (vocab) *vocab = v;
    return 1;
}
