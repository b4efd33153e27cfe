/* cmd_ngram.c — `prunelab ngram --dataset text:FILE --order 7`: the interpolated Witten-Bell
 * n-gram baseline of ngram.h, trained on the train split and scored on the val split, as one
 * JSON object (bits per token, and per byte when the dataset knows its bytes per token). What
 * a byte-level LM's validation bits per byte are compared against. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "ngram.h"
#include "tokens.h"
#include "util.h"

int cmd_ngram(int argc, char **argv)
{
    const char *name = NULL;
    int order = 7;
    cli_opt opts[] = {
        {"--dataset", CLI_STRING, &name, "NAME", "token dataset with V <= 256 (text:FILE, tokens:DIR, synthetic-lm)", 0,
         0, NULL, 0},
        {"--order", CLI_INT, &order, "N", "n-gram order: contexts of N-1 bytes (default 7)", 1, NGRAM_MAX_ORDER, NULL,
         0},
    };
    cli_spec s = {
        .cmd = "ngram",
        .usage = "prunelab ngram --dataset NAME [--order N]",
        .summary = "Train an interpolated Witten-Bell n-gram model on the dataset's train split and print the\n"
                   "val split's bits per token (and per byte) as JSON: the baseline for byte-level LMs.",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
    };
    cli_parse(&s, argc, argv, NULL);
    cli_require(&s, "--dataset");
    tokens_set ts;
    char err[PL_ERRLEN];
    if (tokens_open(&ts, name, 0, err, sizeof err) != 0)
        cli_fail(&s, "give a token dataset: text:FILE, tokens:DIR or synthetic-lm", "%s", err);
    if (ts.vocab > 256) {
        tokens_free(&ts);
        cli_fail(&s, "the n-gram baseline is for byte-level data (text:FILE)", "%s has V = %d > 256", name,
                 ts.vocab);
    }
    double t0 = pl_now();
    ngram *g = ngram_train(&ts.train, order, err, sizeof err);
    if (!g) {
        tokens_free(&ts);
        cli_fail(&s, NULL, "%s", err);
    }
    double t1 = pl_now();
    size_t n = 0, contexts = 0, pairs = ngram_size(g, &contexts);
    double bits = ngram_eval_bits(g, &ts.val, &n);
    double t2 = pl_now(), bpt = n ? bits / (double)n : 0.0;
    json_t *o = json_pack("{s:s, s:i, s:i, s:I, s:I, s:f, s:I, s:I, s:f, s:f}", "dataset", name, "order", order,
                          "vocab", ts.vocab, "train_tokens", (json_int_t)ts.train.n, "val_tokens", (json_int_t)n,
                          "bits_per_token", bpt, "contexts", (json_int_t)contexts, "ngrams", (json_int_t)pairs,
                          "train_s", t1 - t0, "eval_s", t2 - t1);
    if (ts.bytes_per_token > 0) json_object_set_new(o, "bits_per_byte", json_real(bpt / ts.bytes_per_token));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    printf("%s\n", text);
    free(text);
    json_decref(o);
    ngram_free(g);
    tokens_free(&ts);
    return 0;
}
