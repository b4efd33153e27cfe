/* ngram.c — interpolated Witten-Bell byte n-grams (ngram.h).
 *
 * Two hash tables of 64-bit keys: contexts (key -> total count, distinct successors) and pairs
 * (key -> count). A key is 1 << 63 | k << 56 | the k context bytes << 8 | next byte (pairs) or
 * the same without the next byte (contexts, next = 0 and bit 62 set), so 0 marks an empty slot
 * and no two n-grams share a key. Linear probing, doubled at half load. */
#include "ngram.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct {
    uint64_t *keys;
    uint32_t *a, *b; /* pairs: a = count; contexts: a = total, b = distinct */
    size_t cap, used;
} table;

struct ngram {
    int order;
    table pairs, ctxs;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static void table_init(table *t, size_t cap, int two)
{
    t->cap = cap;
    t->used = 0;
    t->keys = xcalloc(cap, sizeof *t->keys);
    t->a = xcalloc(cap, sizeof *t->a);
    t->b = two ? xcalloc(cap, sizeof *t->b) : NULL;
}

static void table_free(table *t)
{
    free(t->keys);
    free(t->a);
    free(t->b);
    memset(t, 0, sizeof *t);
}

/* The slot of key: its own, or the empty one where it would go. */
static size_t slot(const table *t, uint64_t key)
{
    size_t i = (size_t)mix(key) & (t->cap - 1);
    while (t->keys[i] && t->keys[i] != key) i = (i + 1) & (t->cap - 1);
    return i;
}

static void grow(table *t)
{
    table n;
    table_init(&n, t->cap * 2, t->b != NULL);
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->keys[i]) continue;
        size_t j = slot(&n, t->keys[i]);
        n.keys[j] = t->keys[i];
        n.a[j] = t->a[i];
        if (n.b) n.b[j] = t->b[i];
    }
    n.used = t->used;
    table_free(t);
    *t = n;
}

/* The slot of key, inserted (zero counts) when absent; *fresh says whether it was. */
static size_t upsert(table *t, uint64_t key, int *fresh)
{
    if (2 * (t->used + 1) > t->cap) grow(t);
    size_t i = slot(t, key);
    *fresh = !t->keys[i];
    if (*fresh) {
        t->keys[i] = key;
        t->used++;
    }
    return i;
}

/* Key of the k bytes ending just before position `end` of ctx (bytes ctx[end-k .. end-1]). */
static uint64_t ctx_key(const uint8_t *ctx, int end, int k)
{
    uint64_t v = 0;
    for (int j = end - k; j < end; j++) v = v << 8 | ctx[j];
    return 1ull << 63 | 1ull << 62 | (uint64_t)k << 56 | v << 8;
}

static uint64_t pair_key(uint64_t ck, int w) { return (ck & ~(1ull << 62)) | (uint64_t)(w & 0xff); }

ngram *ngram_train(const tokens_split *s, int order, char *err, size_t errlen)
{
    if (order < 1 || order > NGRAM_MAX_ORDER) {
        pl_err(err, errlen, "order %d is outside 1..%d", order, NGRAM_MAX_ORDER);
        return NULL;
    }
    ngram *g = xcalloc(1, sizeof *g);
    g->order = order;
    table_init(&g->pairs, 1 << 16, 0);
    table_init(&g->ctxs, 1 << 14, 1);
    uint8_t hist[NGRAM_MAX_ORDER] = {0};
    for (size_t i = 0; i < s->n; i++) {
        uint32_t w = tokens_id(s, i);
        if (w > 255) {
            pl_err(err, errlen, "%s: id %u at token %zu is not a byte (an n-gram baseline needs V <= 256)", s->path,
                   w, i);
            ngram_free(g);
            return NULL;
        }
        int have = i < (size_t)(order - 1) ? (int)i : order - 1;
        for (int k = 0; k <= have; k++) {
            uint64_t ck = ctx_key(hist, NGRAM_MAX_ORDER, k);
            int fresh_pair, fresh_ctx;
            size_t pi = upsert(&g->pairs, pair_key(ck, (int)w), &fresh_pair);
            g->pairs.a[pi]++;
            size_t ci = upsert(&g->ctxs, ck, &fresh_ctx);
            g->ctxs.a[ci]++;
            if (fresh_pair) g->ctxs.b[ci]++;
        }
        memmove(hist, hist + 1, NGRAM_MAX_ORDER - 1);
        hist[NGRAM_MAX_ORDER - 1] = (uint8_t)w;
    }
    return g;
}

void ngram_free(ngram *g)
{
    if (!g) return;
    table_free(&g->pairs);
    table_free(&g->ctxs);
    free(g);
}

double ngram_prob(const ngram *g, const uint8_t *ctx, int len, int w)
{
    int kmax = len < g->order - 1 ? len : g->order - 1;
    double p = 1.0 / 256.0;
    for (int k = 0; k <= kmax; k++) {
        uint64_t ck = ctx_key(ctx, len, k);
        size_t ci = slot(&g->ctxs, ck);
        if (!g->ctxs.keys[ci]) break; /* a longer context is unseen too */
        size_t pi = slot(&g->pairs, pair_key(ck, w));
        double n_cw = g->pairs.keys[pi] ? g->pairs.a[pi] : 0.0, n_c = g->ctxs.a[ci], u = g->ctxs.b[ci];
        p = (n_cw + u * p) / (n_c + u);
    }
    return p;
}

double ngram_eval_bits(const ngram *g, const tokens_split *s, size_t *n)
{
    uint8_t hist[NGRAM_MAX_ORDER] = {0};
    double bits = 0.0;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t w = tokens_id(s, i);
        int have = i < (size_t)(g->order - 1) ? (int)i : g->order - 1;
        bits -= log2(ngram_prob(g, hist + NGRAM_MAX_ORDER - have, have, (int)(w & 0xff)));
        memmove(hist, hist + 1, NGRAM_MAX_ORDER - 1);
        hist[NGRAM_MAX_ORDER - 1] = (uint8_t)w;
    }
    if (n) *n = s->n;
    return bits;
}

size_t ngram_size(const ngram *g, size_t *contexts)
{
    if (contexts) *contexts = g->ctxs.used;
    return g->pairs.used;
}
