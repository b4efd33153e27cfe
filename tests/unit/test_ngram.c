/* test_ngram.c — the Witten-Bell byte n-gram baseline (engine/ngram.c): its probabilities against
 * a naive recount of the formula in ngram.h, every distribution summing to 1 over the 256
 * bytes, bits that fall with the order on a repetitive text, and the refusals (order, ids that
 * are not bytes). Splits are built in memory, no files. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ngram.h"
#include "tokens.h"

static tokens_split split_of(const char *text)
{
    tokens_split s;
    memset(&s, 0, sizeof s);
    s.p = (const uint8_t *)text;
    s.n = strlen(text);
    s.width = 1;
    snprintf(s.path, sizeof s.path, "test");
    return s;
}

/* The formula of ngram.h by brute force over the training text t. */
static double naive_prob(const char *t, int order, const uint8_t *ctx, int len, int w)
{
    size_t n = strlen(t);
    int kmax = len < order - 1 ? len : order - 1;
    double p = 1.0 / 256.0;
    for (int k = 0; k <= kmax; k++) {
        double n_cw = 0, n_c = 0;
        int seen[256] = {0};
        double u = 0;
        for (size_t i = (size_t)k; i < n; i++) {
            if (memcmp(t + i - k, ctx + len - k, (size_t)k) != 0) continue;
            n_c++;
            unsigned char b = (unsigned char)t[i];
            if (b == w) n_cw++;
            if (!seen[b]) seen[b] = 1, u++;
        }
        if (n_c == 0) break;
        p = (n_cw + u * p) / (n_c + u);
    }
    return p;
}

static const char *TEXT = "the cat sat on the mat. the cat ate the rat. a rat sat on a cat; the end.";

START_TEST(test_matches_naive_formula)
{
    tokens_split s = split_of(TEXT);
    char err[256];
    for (int order = 1; order <= NGRAM_MAX_ORDER; order++) {
        ngram *g = ngram_train(&s, order, err, sizeof err);
        ck_assert_msg(g != NULL, "%s", err);
        const char *ctxs[] = {"", "t", "th", " the", "the c", "on the", "zzz", ". the "};
        for (size_t c = 0; c < sizeof ctxs / sizeof ctxs[0]; c++) {
            const uint8_t *ctx = (const uint8_t *)ctxs[c];
            int len = (int)strlen(ctxs[c]);
            double sum = 0;
            for (int w = 0; w < 256; w++) {
                double p = ngram_prob(g, ctx, len, w), q = naive_prob(TEXT, order, ctx, len, w);
                ck_assert_msg(fabs(p - q) <= 1e-12 * (q > 1 ? q : 1), "order %d ctx '%s' w %d: %g vs naive %g",
                              order, ctxs[c], w, p, q);
                sum += p;
            }
            ck_assert_msg(fabs(sum - 1.0) < 1e-9, "order %d ctx '%s': probabilities sum to %.12f", order, ctxs[c],
                          sum);
        }
        ngram_free(g);
    }
}
END_TEST

START_TEST(test_bits_fall_with_order)
{
    static char train[4096], val[512];
    for (size_t i = 0; i + 1 < sizeof train; i++) train[i] = "abcdefgh"[i % 8] ^ (i % 24 < 8 ? 0 : 0x20);
    train[sizeof train - 1] = 0;
    memcpy(val, train + 8, sizeof val - 1);
    val[sizeof val - 1] = 0;
    tokens_split tr = split_of(train), va = split_of(val);
    char err[256];
    double prev = 1e9;
    for (int order = 1; order <= 4; order++) {
        ngram *g = ngram_train(&tr, order, err, sizeof err);
        ck_assert_ptr_nonnull(g);
        size_t n = 0;
        double bpt = ngram_eval_bits(g, &va, &n) / (double)n;
        ck_assert_uint_eq(n, va.n);
        ck_assert_msg(bpt < prev, "order %d: %.4f bits/byte, not below order %d's %.4f", order, bpt, order - 1, prev);
        prev = bpt;
        ngram_free(g);
    }
    ck_assert_msg(prev < 0.1, "a periodic text is nearly free at order 4 (%.4f bits/byte)", prev);
}
END_TEST

START_TEST(test_refusals)
{
    tokens_split s = split_of(TEXT);
    char err[256] = "";
    ck_assert_ptr_null(ngram_train(&s, 0, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "outside 1..7"));
    ck_assert_ptr_null(ngram_train(&s, NGRAM_MAX_ORDER + 1, err, sizeof err));
    uint8_t wide[4] = {1, 0, 0x2c, 0x01}; /* uint16 ids 1 and 300 */
    tokens_split w = s;
    w.p = wide;
    w.n = 2;
    w.width = 2;
    ck_assert_ptr_null(ngram_train(&w, 3, err, sizeof err));
    ck_assert_msg(strstr(err, "id 300 at token 1 is not a byte") != NULL, "%s", err);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("ngram");
    TCase *tc = tcase_create("ngram");
    tcase_add_test(tc, test_matches_naive_formula);
    tcase_add_test(tc, test_bits_fall_with_order);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
