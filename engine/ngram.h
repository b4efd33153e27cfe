/* ngram.h — an interpolated Witten-Bell n-gram model over byte tokens (V <= 256): the classical
 * baseline a byte-level language model has to beat (bits per byte on the same split).
 *
 * Model, exactly: for a context c of k bytes (k = 0 .. order-1) let n(c, w) be the count of w
 * after c in the training split, n(c) = sum_w n(c, w) and u(c) the number of distinct w with
 * n(c, w) > 0. Then
 *     P_-1(w) = 1 / 256
 *     P_k(w | c) = (n(c, w) + u(c) P_{k-1}(w | c')) / (n(c) + u(c))   when n(c) > 0
 *                = P_{k-1}(w | c')                                     when n(c) = 0
 * with c' = c without its oldest byte. The probability of a byte is P_{order-1} with the
 * longest context available (at the start of a split, shorter ones). Every P_k sums to 1 over
 * the 256 bytes, so bits are honest. Counts live in open-addressing hash tables keyed by the
 * context bytes packed into 64 bits (order <= 7: 6 context bytes + the next byte + the
 * context length), so there are no collisions. */
#ifndef PL_NGRAM_H
#define PL_NGRAM_H

#include <stddef.h>

#include "tokens.h"

#define NGRAM_MAX_ORDER 7

typedef struct ngram ngram;

/* Count every k-gram (k = 1 .. order) of split s. Returns NULL with err for order outside
 * 1..NGRAM_MAX_ORDER or ids >= 256. */
ngram *ngram_train(const tokens_split *s, int order, char *err, size_t errlen);
void ngram_free(ngram *g);

/* P(w | the k = min(len, order-1) bytes ctx[len-k .. len-1]). */
double ngram_prob(const ngram *g, const uint8_t *ctx, int len, int w);

/* Total bits of split s under g (each byte predicted from the bytes before it in s, up to
 * order-1 of them); *n receives the number of predictions (s->n). */
double ngram_eval_bits(const ngram *g, const tokens_split *s, size_t *n);

/* Distinct contexts and (context, byte) pairs stored, for reports. */
size_t ngram_size(const ngram *g, size_t *contexts);

#endif
