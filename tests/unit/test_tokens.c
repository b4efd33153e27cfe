/* test_tokens.c — token datasets for causal LMs: nanoGPT uint16 arrays, llm.c headers
 * (uint16 and uint32), uint32 with meta.json, raw text split 90/10, the synthetic-lm Markov
 * chain (determinism and learnability), evaluation and random windows, the name-level check,
 * and every refusal with its message. Files are written into a fresh mkdtemp directory. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "tokens.h"

/* ------------------------------------------------------------------ helpers */

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/pl_test_tokens_XXXXXX";
    char *d = mkdtemp(tmpl);
    ck_assert_ptr_nonnull(d);
    return strdup(d);
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_bytes(const char *dir, const char *file, const void *buf, size_t len)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    if (len) ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_text(const char *dir, const char *file, const char *s) { write_bytes(dir, file, s, strlen(s)); }

/* n ids of width w (2 or 4), little-endian, optionally after an llm.c header (magic, version,
 * count as given). Returns a malloc'd buffer and its length. */
static uint8_t *make_bin(const uint32_t *ids, size_t n, int w, int header, uint32_t magic, uint32_t version,
                         uint32_t count, size_t *len)
{
    size_t h = header ? 1024 : 0;
    *len = h + n * (size_t)w;
    uint8_t *b = calloc(1, *len ? *len : 1);
    if (header) {
        uint32_t hv[3] = {magic, version, count};
        for (int k = 0; k < 3; k++)
            for (int j = 0; j < 4; j++) b[4 * k + j] = (uint8_t)(hv[k] >> (8 * j));
    }
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < w; j++) b[h + i * (size_t)w + j] = (uint8_t)(ids[i] >> (8 * j));
    return b;
}

static void write_ids(const char *dir, const char *file, const uint32_t *ids, size_t n, int w, int header,
                      uint32_t magic, uint32_t version)
{
    size_t len;
    uint8_t *b = make_bin(ids, n, w, header, magic, version, (uint32_t)n, &len);
    write_bytes(dir, file, b, len);
    free(b);
}

/* ids[i] = (i * mul + add) % mod */
static uint32_t *seq_ids(size_t n, uint32_t mul, uint32_t add, uint32_t mod)
{
    uint32_t *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (uint32_t)(((uint64_t)i * mul + add) % mod);
    return v;
}

static char *tokname(const char *dir)
{
    static char buf[1100];
    snprintf(buf, sizeof buf, "tokens:%s", dir);
    return buf;
}

/* Open and expect a refusal whose message contains every non-NULL substring. */
static void expect_refusal(const char *name, int seq_len, const char *sub1, const char *sub2)
{
    tokens_set ts;
    char err[PL_ERRLEN] = "";
    int rc = tokens_open(&ts, name, seq_len, err, sizeof err);
    if (getenv("PL_TEST_VERBOSE")) printf("refused: %s\n", err);
    ck_assert_msg(rc == -1, "expected refusal for %s", name);
    ck_assert_msg(sub1 == NULL || strstr(err, sub1), "error '%s' lacks '%s'", err, sub1);
    ck_assert_msg(sub2 == NULL || strstr(err, sub2), "error '%s' lacks '%s'", err, sub2);
    ck_assert_ptr_null(ts.map[0]);
    ck_assert_ptr_null(ts.map[1]);
    ck_assert_ptr_null(ts.owned);
    ck_assert_int_eq(ts.vocab, 0);
}

static void open_ok(tokens_set *ts, const char *name, int seq_len)
{
    char err[PL_ERRLEN] = "";
    ck_assert_msg(tokens_open(ts, name, seq_len, err, sizeof err) == 0, "%s: %s", name, err);
}

static void check_ids(const tokens_split *s, const uint32_t *want, size_t n)
{
    ck_assert_uint_eq(s->n, n);
    for (size_t i = 0; i < n; i++) ck_assert_msg(tokens_id(s, i) == want[i], "id %zu: %u != %u", i, tokens_id(s, i), want[i]);
}

/* Current resident set of this process in KiB (VmRSS), or -1. */
static long rss_now_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* ------------------------------------------------------------------ formats */

START_TEST(test_nanogpt_uint16)
{
    char *d = make_tmpdir();
    uint32_t *tr = seq_ids(1000, 7, 3, 1000), *va = seq_ids(300, 11, 5, 1234);
    va[7] = 1233;
    write_ids(d, "train.bin", tr, 1000, 2, 0, 0, 0);
    write_ids(d, "val.bin", va, 300, 2, 0, 0, 0);
    tokens_set ts;
    open_ok(&ts, tokname(d), 0);
    ck_assert_int_eq(ts.kind, TOKENS_KIND_DIR);
    ck_assert_int_eq(ts.train.width, 2);
    ck_assert_uint_eq(ts.train.offset, 0);
    check_ids(&ts.train, tr, 1000);
    check_ids(&ts.val, va, 300);
    /* no meta.json: V = max id + 1 over both splits (val reaches 1233) */
    ck_assert_int_eq(ts.vocab, 1234);
    ck_assert(ts.bytes_per_token == 0);
    ck_assert(tokens_bits_per_byte(&ts, 2.0) < 0);
    ck_assert_ptr_eq(tokens_get_split(&ts, "train"), &ts.train);
    ck_assert_ptr_eq(tokens_get_split(&ts, "val"), &ts.val);
    ck_assert_ptr_eq(tokens_get_split(&ts, "test"), &ts.val);
    ck_assert_ptr_null(tokens_get_split(&ts, "dev"));
    tokens_free(&ts);
    ck_assert_ptr_null(ts.map[0]);
    tokens_free(&ts); /* zeroed: no-op */
    tokens_free(NULL);
    free(tr), free(va);
    rm_rf(d);
    free(d);
}
END_TEST

START_TEST(test_llmc_headers)
{
    char *d = make_tmpdir();
    /* GPT-2 layout: magic 20240520, version 1, uint16 */
    uint32_t *tr = seq_ids(600, 13, 1, 50257), *va = seq_ids(200, 17, 2, 50257);
    write_ids(d, "train.bin", tr, 600, 2, 1, TOKENS_LLMC_MAGIC_U16, 1);
    write_ids(d, "val.bin", va, 200, 2, 1, TOKENS_LLMC_MAGIC_U16, 1);
    write_text(d, "meta.json", "{\"vocab_size\": 50257, \"tokenizer\": \"gpt2\"}");
    tokens_set ts;
    open_ok(&ts, tokname(d), 128);
    ck_assert_int_eq(ts.train.width, 2);
    ck_assert_uint_eq(ts.train.offset, 1024);
    check_ids(&ts.train, tr, 600);
    check_ids(&ts.val, va, 200);
    ck_assert_int_eq(ts.vocab, 50257);
    tokens_free(&ts);
    free(tr), free(va);

    /* Llama 3 layout: magic 20240801, version 7, uint32 */
    tr = seq_ids(500, 1009, 7, 128256), va = seq_ids(100, 31, 9, 128256);
    write_ids(d, "train.bin", tr, 500, 4, 1, TOKENS_LLMC_MAGIC_U32, 7);
    write_ids(d, "val.bin", va, 100, 4, 1, TOKENS_LLMC_MAGIC_U32, 7);
    write_text(d, "meta.json", "{\"vocab_size\": 128256}");
    open_ok(&ts, tokname(d), 100);
    ck_assert_int_eq(ts.train.width, 4);
    check_ids(&ts.train, tr, 500);
    check_ids(&ts.val, va, 100);
    ck_assert_int_eq(ts.vocab, 128256);
    tokens_free(&ts);

    /* format "nanogpt": a file starting with the magic is just ids */
    uint32_t odd[4] = {TOKENS_LLMC_MAGIC_U16 & 0xffff, TOKENS_LLMC_MAGIC_U16 >> 16, 1, 2};
    write_ids(d, "train.bin", odd, 4, 2, 0, 0, 0);
    write_ids(d, "val.bin", odd, 4, 2, 0, 0, 0);
    write_text(d, "meta.json", "{\"format\": \"nanogpt\"}");
    open_ok(&ts, tokname(d), 4);
    check_ids(&ts.train, odd, 4);
    ck_assert_int_eq(ts.vocab, (int)(TOKENS_LLMC_MAGIC_U16 & 0xffff) + 1);
    tokens_free(&ts);
    free(tr), free(va);
    rm_rf(d);
    free(d);
}
END_TEST

START_TEST(test_uint32_meta)
{
    char *d = make_tmpdir();
    uint32_t *tr = seq_ids(800, 997, 0, 100277), *va = seq_ids(256, 389, 100, 100277);
    tr[5] = 100276; /* the largest id allowed */
    write_ids(d, "train.bin", tr, 800, 4, 0, 0, 0);
    write_ids(d, "val.bin", va, 256, 4, 0, 0, 0);
    write_text(d, "meta.json", "{\"vocab_size\": 100277, \"dtype\": \"uint32\", \"bytes_per_token\": 4.0}");
    tokens_set ts;
    open_ok(&ts, tokname(d), 256);
    ck_assert_int_eq(ts.train.width, 4);
    check_ids(&ts.train, tr, 800);
    check_ids(&ts.val, va, 256);
    ck_assert_int_eq(ts.vocab, 100277);
    ck_assert_double_eq_tol(ts.bytes_per_token, 4.0, 1e-12);
    ck_assert_double_eq_tol(tokens_bits_per_byte(&ts, 4.0 * log(2.0)), 1.0, 1e-12);
    tokens_free(&ts);

    /* vocab_size > 65536 without dtype: uint32 is implied */
    write_text(d, "meta.json", "{\"vocab_size\": 100277}");
    open_ok(&ts, tokname(d), 0);
    ck_assert_int_eq(ts.train.width, 4);
    check_ids(&ts.train, tr, 800);
    tokens_free(&ts);

    /* uint32 without vocab_size: V = max id + 1 */
    write_text(d, "meta.json", "{\"dtype\": \"uint32\"}");
    open_ok(&ts, tokname(d), 0);
    ck_assert_int_eq(ts.vocab, 100277);
    tokens_free(&ts);
    free(tr), free(va);
    rm_rf(d);
    free(d);
}
END_TEST

START_TEST(test_datasets_env_dir)
{
    char *d = make_tmpdir();
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/tiny", d);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    uint32_t *ids = seq_ids(64, 1, 0, 50);
    write_ids(sub, "train.bin", ids, 64, 2, 0, 0, 0);
    write_ids(sub, "val.bin", ids, 64, 2, 0, 0, 0);
    write_text(d, "corpus.txt", "hello, world");
    setenv("PRUNELAB_DATASETS", d, 1);
    tokens_set ts;
    open_ok(&ts, "tokens:tiny", 16);
    ck_assert_str_eq(ts.train.path, strcat(strcpy(sub, d), "/tiny/train.bin"));
    check_ids(&ts.train, ids, 64);
    tokens_free(&ts);
    open_ok(&ts, "text:corpus.txt", 0);
    ck_assert_uint_eq(ts.train.n + ts.val.n, 12);
    tokens_free(&ts);
    unsetenv("PRUNELAB_DATASETS");
    expect_refusal("tokens:tiny", 0, "tokens:tiny: directory tiny does not exist", "$PRUNELAB_DATASETS");
    free(ids);
    rm_rf(d);
    free(d);
}
END_TEST

START_TEST(test_text_split)
{
    char *d = make_tmpdir();
    size_t len = 1005;
    uint8_t *b = malloc(len);
    for (size_t i = 0; i < len; i++) b[i] = (uint8_t)((i * 37 + 11) & 255);
    write_bytes(d, "corpus.txt", b, len);
    char name[1100];
    snprintf(name, sizeof name, "text:%s/corpus.txt", d);
    tokens_set ts;
    open_ok(&ts, name, 100);
    ck_assert_int_eq(ts.kind, TOKENS_KIND_TEXT);
    ck_assert_int_eq(ts.vocab, 256);
    ck_assert_int_eq(ts.train.width, 1);
    /* S = floor(1005 * 9 / 10) = 904: train [0, 904), val [904, 1005) */
    ck_assert_uint_eq(ts.train.n, 904);
    ck_assert_uint_eq(ts.val.n, 101);
    ck_assert_uint_eq(ts.val.offset, 904);
    for (size_t i = 0; i < 904; i++) ck_assert_uint_eq(tokens_id(&ts.train, i), b[i]);
    for (size_t i = 0; i < 101; i++) ck_assert_uint_eq(tokens_id(&ts.val, i), b[904 + i]);
    ck_assert_double_eq(ts.bytes_per_token, 1.0);
    ck_assert_double_eq_tol(tokens_bits_per_byte(&ts, log(2.0) * 2.5), 2.5, 1e-12);
    int row[100];
    ck_assert_int_eq(tokens_eval_batch(&ts.val, 100, 0, 1, row), 1);
    for (int t = 0; t < 100; t++) ck_assert_int_eq(row[t], b[904 + t]);
    tokens_free(&ts);

    /* exactly 1000 bytes: 900 / 100 */
    write_bytes(d, "corpus.txt", b, 1000);
    open_ok(&ts, name, 0);
    ck_assert_uint_eq(ts.train.n, 900);
    ck_assert_uint_eq(ts.val.n, 100);
    tokens_free(&ts);
    free(b);
    rm_rf(d);
    free(d);
}
END_TEST

/* A large file is validated without staying resident, and an id out of range in its last
 * chunk is still found. */
START_TEST(test_large_file_not_resident)
{
    char *d = make_tmpdir();
    const size_t n = (size_t)48 << 20; /* 48M uint16 ids = 96 MiB */
    char p[1024];
    snprintf(p, sizeof p, "%s/train.bin", d);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    enum { CH = 1 << 19 };
    static uint8_t buf[2 * CH];
    for (size_t i0 = 0; i0 < n; i0 += CH) {
        for (size_t i = 0; i < CH; i++) {
            uint32_t v = (uint32_t)((i0 + i) * 2654435761u) % 50000;
            buf[2 * i] = (uint8_t)v, buf[2 * i + 1] = (uint8_t)(v >> 8);
        }
        ck_assert_uint_eq(fwrite(buf, 1, sizeof buf, f), sizeof buf);
    }
    ck_assert_int_eq(fclose(f), 0);
    uint32_t *va = seq_ids(1000, 1, 0, 100);
    write_ids(d, "val.bin", va, 1000, 2, 0, 0, 0);
    long before = rss_now_kb();
    tokens_set ts;
    open_ok(&ts, tokname(d), 256);
    long after = rss_now_kb();
    printf("large file: %zu ids, VmRSS %ld -> %ld KiB after tokens_open\n", ts.train.n, before, after);
    ck_assert_uint_eq(ts.train.n, n);
    ck_assert_int_le(ts.vocab, 50000);
    ck_assert_int_gt(ts.vocab, 49990);
    if (before > 0) ck_assert_int_lt(after - before, 32 * 1024); /* the file is 96 MiB */
    /* windows read it back */
    int row[256];
    ck_assert_int_eq(tokens_eval_batch(&ts.train, 256, n / 256 - 1, 1, row), 1);
    ck_assert_int_eq(row[255], (int)((uint32_t)((n - 1) * 2654435761u) % 50000));
    tokens_free(&ts);
    /* the last id out of range */
    f = fopen(p, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, (long)(2 * (n - 1)), SEEK_SET), 0);
    ck_assert_uint_eq(fwrite("\xff\xff", 1, 2, f), 2);
    ck_assert_int_eq(fclose(f), 0);
    write_text(d, "meta.json", "{\"vocab_size\": 50000}");
    char msg[64];
    snprintf(msg, sizeof msg, "token %zu (byte offset %zu) is 65535", n - 1, 2 * (n - 1));
    expect_refusal(tokname(d), 0, p, msg);
    free(va);
    rm_rf(d);
    free(d);
}
END_TEST

/* ------------------------------------------------------------------ windows */

START_TEST(test_eval_windows)
{
    char *d = make_tmpdir();
    uint32_t *ids = seq_ids(1000, 1, 0, 65536); /* id i = i: a window shows where it starts */
    write_ids(d, "train.bin", ids, 1000, 2, 0, 0, 0);
    write_ids(d, "val.bin", ids, 1000, 2, 0, 0, 0);
    tokens_set ts;
    open_ok(&ts, tokname(d), 64);
    const int T = 64;
    /* 1000 / 64 = 15 windows; the last 40 ids are dropped */
    ck_assert_uint_eq(tokens_eval_count(&ts.val, T, 0), 15);
    ck_assert_uint_eq(tokens_eval_count(&ts.val, T, 64), 1);
    ck_assert_uint_eq(tokens_eval_count(&ts.val, T, 65), 2);   /* ceil(65 / 64) */
    ck_assert_uint_eq(tokens_eval_count(&ts.val, T, 1), 1);
    ck_assert_uint_eq(tokens_eval_count(&ts.val, T, 100000), 15);
    ck_assert_uint_eq(tokens_eval_count(&ts.val, 0, 0), 0);
    int *out = malloc(sizeof(int) * 4 * T);
    for (size_t first = 0; first < 15; first += 4) {
        int rows = tokens_eval_batch(&ts.val, T, first, 4, out);
        ck_assert_int_eq(rows, first + 4 <= 15 ? 4 : (int)(15 - first));
        for (int b = 0; b < rows; b++)
            for (int t = 0; t < T; t++) ck_assert_int_eq(out[b * T + t], (int)((first + b) * T + t));
    }
    ck_assert_int_eq(tokens_eval_batch(&ts.val, T, 15, 4, out), 0);
    free(out);
    tokens_free(&ts);
    free(ids);
    rm_rf(d);
    free(d);
}
END_TEST

START_TEST(test_random_windows)
{
    char *d = make_tmpdir();
    const size_t n = 3000;
    uint32_t *ids = seq_ids(n, 1, 0, 65536);
    write_ids(d, "train.bin", ids, n, 2, 0, 0, 0);
    write_ids(d, "val.bin", ids, 100, 2, 0, 0, 0);
    tokens_set ts;
    open_ok(&ts, tokname(d), 32);
    const int T = 32, B = 64;
    int *a = malloc(sizeof(int) * B * T), *b = malloc(sizeof(int) * B * T), *c = malloc(sizeof(int) * B * T);
    pl_rng r1, r2, r3;
    pl_rng_seed(&r1, 42), pl_rng_seed(&r2, 42), pl_rng_seed(&r3, 43);
    tokens_random_batch(&ts.train, T, B, &r1, a);
    tokens_random_batch(&ts.train, T, B, &r2, b);
    tokens_random_batch(&ts.train, T, B, &r3, c);
    ck_assert_int_eq(memcmp(a, b, sizeof(int) * B * T), 0);
    ck_assert_int_ne(memcmp(a, c, sizeof(int) * B * T), 0);
    int lo = (int)n, hi = -1;
    for (int i = 0; i < B; i++) {
        int s = a[i * T];
        ck_assert_int_ge(s, 0);
        ck_assert_int_le(s, (int)(n - T));
        for (int t = 0; t < T; t++) ck_assert_int_eq(a[i * T + t], s + t); /* contiguous */
        if (s < lo) lo = s;
        if (s > hi) hi = s;
    }
    ck_assert_int_lt(lo, 1000); /* spread over the file */
    ck_assert_int_gt(hi, 2000);
    /* the start follows floor(u * (n - T + 1) / 2^64), one draw per window */
    pl_rng r4;
    pl_rng_seed(&r4, 42);
    for (int i = 0; i < B; i++) {
        uint64_t u = pl_rng_next(&r4);
        ck_assert_int_eq(a[i * T], (int)(((unsigned __int128)u * (n - T + 1)) >> 64));
    }
    /* a split of exactly T ids: every window is the whole split */
    tokens_set small;
    write_ids(d, "train.bin", ids, 32, 2, 0, 0, 0);
    write_ids(d, "val.bin", ids, 32, 2, 0, 0, 0);
    open_ok(&small, tokname(d), 32);
    ck_assert_int_eq(tokens_random_batch(&small.train, T, 3, &r1, c), 0);
    ck_assert_int_eq(tokens_random_batch(&small.train, T + 1, 3, &r1, c), -1); /* longer than the split */
    ck_assert_int_eq(tokens_random_batch(&small.train, 0, 3, &r1, c), -1);
    for (int i = 0; i < 3 * T; i++) ck_assert_int_eq(c[i], i % T);
    tokens_free(&small);
    free(a), free(b), free(c);
    tokens_free(&ts);
    free(ids);
    rm_rf(d);
    free(d);
}
END_TEST

/* ------------------------------------------------------------------ synthetic-lm */

START_TEST(test_synthetic_determinism)
{
    tokens_set a, b, c;
    open_ok(&a, "synthetic-lm:n=5000,vocab=32,seed=7", 256);
    open_ok(&b, "synthetic-lm:seed=7,vocab=32,n=5000", 256);
    open_ok(&c, "synthetic-lm:n=5000,vocab=32,seed=8", 256);
    ck_assert_int_eq(a.kind, TOKENS_KIND_SYNTHETIC);
    ck_assert_int_eq(a.vocab, 32);
    ck_assert_uint_eq(a.train.n, 5000);
    ck_assert_uint_eq(a.val.n, 1250);
    ck_assert_int_eq(memcmp(a.train.p, b.train.p, 2 * 5000), 0);
    ck_assert_int_eq(memcmp(a.val.p, b.val.p, 2 * 1250), 0);
    ck_assert_int_ne(memcmp(a.train.p, c.train.p, 2 * 5000), 0);
    ck_assert_int_ne(memcmp(a.train.p, a.val.p, 2 * 1250), 0); /* a different stream */
    for (size_t i = 0; i < a.train.n; i++) ck_assert_uint_lt(tokens_id(&a.train, i), 32);
    for (size_t i = 0; i < a.val.n; i++) ck_assert_uint_lt(tokens_id(&a.val, i), 32);
    ck_assert(tokens_bits_per_byte(&a, 1.0) < 0);
    tokens_free(&a), tokens_free(&b), tokens_free(&c);

    /* defaults: n=65536, vocab=64, seed=1 */
    tokens_set dflt, expl;
    open_ok(&dflt, "synthetic-lm", TOKENS_DEFAULT_SEQ_LEN);
    open_ok(&expl, "synthetic-lm:n=65536,vocab=64,seed=1", TOKENS_DEFAULT_SEQ_LEN);
    ck_assert_uint_eq(dflt.train.n, 65536);
    ck_assert_uint_eq(dflt.val.n, 16384);
    ck_assert_int_eq(dflt.vocab, 64);
    ck_assert_int_eq(memcmp(dflt.train.p, expl.train.p, 2 * 65536), 0);
    tokens_free(&dflt), tokens_free(&expl);

    /* tiny n: val has max(n / 4, 1) ids */
    open_ok(&a, "synthetic-lm:n=3,vocab=2", 0);
    ck_assert_uint_eq(a.val.n, 1);
    tokens_free(&a);
}
END_TEST

/* Empirical conditional entropy H(x[t+1] | x[t]) in nats, and whether every bigram of s2
 * occurs in s1. */
static double cond_entropy(const tokens_split *s, int V)
{
    double *cnt = calloc((size_t)V * V, sizeof *cnt), *row = calloc((size_t)V, sizeof *row);
    for (size_t i = 0; i + 1 < s->n; i++) {
        cnt[(size_t)tokens_id(s, i) * V + tokens_id(s, i + 1)] += 1;
        row[tokens_id(s, i)] += 1;
    }
    double h = 0, tot = (double)(s->n - 1);
    for (int a = 0; a < V; a++)
        for (int b = 0; b < V; b++) {
            double c = cnt[(size_t)a * V + b];
            if (c > 0) h -= c / tot * log(c / row[a]);
        }
    free(cnt), free(row);
    return h;
}

START_TEST(test_synthetic_learnable)
{
    tokens_set ts;
    open_ok(&ts, "synthetic-lm", 256);
    const int V = 64;
    double h_train = cond_entropy(&ts.train, V), h_val = cond_entropy(&ts.val, V);
    printf("synthetic-lm: H(next|prev) train %.3f, val %.3f nats; log V = %.3f\n", h_train, h_val, log(V));
    ck_assert_double_lt(h_train, 1.30);     /* the chain's bound is 1.75 bits = 1.213 nats */
    ck_assert_double_lt(h_val, 1.35);
    ck_assert_double_lt(h_train, 0.35 * log(V));
    /* every symbol is used (the chain does not collapse onto a few states) */
    int seen[64] = {0}, nseen = 0;
    for (size_t i = 0; i < ts.train.n; i++) seen[tokens_id(&ts.train, i)] = 1;
    for (int k = 0; k < V; k++) nseen += seen[k];
    ck_assert_int_ge(nseen, V / 2);
    /* the val split follows the same chain: each of its bigrams occurs in train */
    unsigned char *bi = calloc((size_t)V * V, 1);
    for (size_t i = 0; i + 1 < ts.train.n; i++) bi[tokens_id(&ts.train, i) * V + tokens_id(&ts.train, i + 1)] = 1;
    for (size_t i = 0; i + 1 < ts.val.n; i++)
        ck_assert_msg(bi[tokens_id(&ts.val, i) * V + tokens_id(&ts.val, i + 1)], "val bigram %zu not in train", i);
    /* at most 4 successors per state */
    for (int a = 0; a < V; a++) {
        int k = 0;
        for (int b = 0; b < V; b++) k += bi[a * V + b];
        ck_assert_int_le(k, 4);
    }
    free(bi);
    /* held-out proxy for a model: a bigram table counted on the first 8192 train ids (add-0.1
     * smoothing) scores the val split far below the uniform log V */
    double *cnt = calloc((size_t)V * V, sizeof *cnt), *row = calloc((size_t)V, sizeof *row);
    for (size_t i = 0; i + 1 < 8192; i++) {
        cnt[tokens_id(&ts.train, i) * V + tokens_id(&ts.train, i + 1)] += 1;
        row[tokens_id(&ts.train, i)] += 1;
    }
    double ce = 0;
    for (size_t i = 0; i + 1 < ts.val.n; i++) {
        uint32_t a = tokens_id(&ts.val, i), b = tokens_id(&ts.val, i + 1);
        ce -= log((cnt[a * V + b] + 0.1) / (row[a] + 0.1 * V));
    }
    ce /= (double)(ts.val.n - 1);
    printf("synthetic-lm: val cross-entropy of a bigram table from 8192 train ids %.3f nats\n", ce);
    ck_assert_double_lt(ce, 1.5);
    free(cnt), free(row);
    tokens_free(&ts);
}
END_TEST

/* ------------------------------------------------------------------ names */

START_TEST(test_name_info)
{
    char err[PL_ERRLEN];
    int v = -5;
    ck_assert_int_eq(tokens_name_info("text:/x/y.txt", &v, err, sizeof err), 1);
    ck_assert_int_eq(v, 256);
    ck_assert_int_eq(tokens_name_info("synthetic-lm", &v, err, sizeof err), 1);
    ck_assert_int_eq(v, 64);
    ck_assert_int_eq(tokens_name_info("synthetic-lm:vocab=300,n=10", &v, err, sizeof err), 1);
    ck_assert_int_eq(v, 300);
    ck_assert_int_eq(tokens_name_info("tokens:/does/not/matter", &v, err, sizeof err), 1);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(tokens_name_info("tokens:/x", NULL, err, sizeof err), 1);
    v = -5;
    ck_assert_int_eq(tokens_name_info("mnist", &v, err, sizeof err), 0);
    ck_assert_int_eq(tokens_name_info("synthetic", &v, err, sizeof err), 0);
    ck_assert_int_eq(tokens_name_info("synthetic:n=10", &v, err, sizeof err), 0);
    ck_assert_int_eq(tokens_name_info(NULL, &v, err, sizeof err), 0);
    ck_assert_int_eq(v, -5);
    ck_assert_int_eq(tokens_is_name("tokens:a"), 1);
    ck_assert_int_eq(tokens_is_name("text:a"), 1);
    ck_assert_int_eq(tokens_is_name("synthetic-lm"), 1);
    ck_assert_int_eq(tokens_is_name("synthetic-lmx"), 0);
    ck_assert_int_eq(tokens_is_name("cifar10"), 0);
    /* dataset_load opens a token dataset name as windows (dataset_load_tokens): a missing file is
     * tokens_open's error */
    dataset ds;
    err[0] = 0;
    ck_assert_int_eq(dataset_load(&ds, "text:/x.txt", NULL, "train", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "file /x.txt does not exist"), "%s", err);
    ck_assert_int_eq(dataset_shape("synthetic-lm:vocab=8", NULL, NULL, NULL, NULL), -1);
    struct {
        const char *name, *msg;
    } bad[] = {
        {"tokens:", "no directory"},
        {"text:", "no file"},
        {"synthetic-lm:vocab=1", "vocab=1 out of range [2, 65535]"},
        {"synthetic-lm:vocab=70000", "out of range"},
        {"synthetic-lm:n=0", "n=0 out of range"},
        {"synthetic-lm:n=50000001", "out of range"},
        {"synthetic-lm:classes=4", "unknown option 'classes'"},
        {"synthetic-lm:n=10,n=20", "given twice"},
        {"synthetic-lm:n=-3", "not a non-negative integer"},
        {"synthetic-lm:n=1x", "not a non-negative integer"},
        {"synthetic-lm:n", "is not k=v"},
        {"synthetic-lm:n=5,,seed=1", "bad option list"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        ck_assert_msg(tokens_name_info(bad[i].name, &v, err, sizeof err) == -1, "%s accepted", bad[i].name);
        ck_assert_msg(strstr(err, bad[i].msg), "%s: '%s' lacks '%s'", bad[i].name, err, bad[i].msg);
        expect_refusal(bad[i].name, 0, bad[i].msg, NULL);
    }
}
END_TEST

/* ------------------------------------------------------------------ refusals */

START_TEST(test_refusals_files)
{
    char *d = make_tmpdir();
    char name[1100], p[1100];
    snprintf(name, sizeof name, "tokens:%s", d);
    uint32_t *ids = seq_ids(300, 3, 1, 500);

    expect_refusal("tokens:/nonexistent/pl_tokens_dir", 0, "directory /nonexistent/pl_tokens_dir does not exist", "hint:");
    expect_refusal("mnist", 0, "unknown token dataset 'mnist'", "tokens:DIR");
    expect_refusal("", 0, "no dataset name", NULL);

    /* missing train.bin, then missing val.bin */
    snprintf(p, sizeof p, "%s/train.bin", d);
    expect_refusal(name, 0, p, "missing file");
    write_ids(d, "train.bin", ids, 300, 2, 0, 0, 0);
    snprintf(p, sizeof p, "%s/val.bin", d);
    expect_refusal(name, 0, p, "missing file");

    /* empty file */
    write_bytes(d, "val.bin", "", 0);
    expect_refusal(name, 0, p, "is empty");

    /* odd byte count for uint16 */
    write_bytes(d, "val.bin", "abc", 3);
    expect_refusal(name, 0, p, "3 bytes, an odd byte count for uint16");
    /* not a multiple of 4 for uint32 */
    write_bytes(d, "val.bin", "abcdef", 6);
    write_text(d, "meta.json", "{\"dtype\": \"uint32\"}");
    snprintf(p, sizeof p, "%s/train.bin", d); /* train.bin: 600 bytes, fine */
    write_bytes(d, "train.bin", "abcdefgh", 8);
    snprintf(p, sizeof p, "%s/val.bin", d);
    expect_refusal(name, 0, p, "not a multiple of 4 for uint32");
    unlink(strcat(strcpy(p, d), "/meta.json"));
    write_ids(d, "train.bin", ids, 300, 2, 0, 0, 0);
    write_ids(d, "val.bin", ids, 300, 2, 0, 0, 0);

    /* shorter than one window */
    snprintf(p, sizeof p, "%s/train.bin", d);
    expect_refusal(name, 301, "train split", "has 300 tokens, fewer than one window of seq_len 301");
    expect_refusal(name, 1, "seq_len 1 is too small", NULL);
    expect_refusal(name, -4, "seq_len -4 is too small", NULL);
    tokens_set ts;
    open_ok(&ts, name, 300); /* exactly one window is enough */
    tokens_free(&ts);

    /* id >= V (meta.json vocab_size), naming the file and the offset */
    write_text(d, "meta.json", "{\"vocab_size\": 400}");
    /* ids[i] = (3i + 1) % 500: first >= 400 at i = 133 (400), byte offset 266 */
    snprintf(p, sizeof p, "%s/train.bin", d);
    expect_refusal(name, 0, p, "token 133 (byte offset 266) is 400, not below vocab_size 400");
    /* the same in an llm.c file: the offset counts the header */
    write_ids(d, "train.bin", ids, 300, 2, 1, TOKENS_LLMC_MAGIC_U16, 1);
    expect_refusal(name, 0, "token 133 (byte offset 1290) is 400", NULL);
    write_text(d, "meta.json", "{\"vocab_size\": 500}");
    open_ok(&ts, name, 0);
    tokens_free(&ts);

    free(ids);
    rm_rf(d);
    free(d);
}
END_TEST

START_TEST(test_refusals_llmc)
{
    char *d = make_tmpdir();
    char name[1100], p[1100];
    snprintf(name, sizeof name, "tokens:%s", d);
    snprintf(p, sizeof p, "%s/train.bin", d);
    uint32_t *ids = seq_ids(300, 3, 1, 500);
    write_ids(d, "val.bin", ids, 300, 2, 0, 0, 0);
    size_t len;
    uint8_t *b;

    /* wrong version */
    write_ids(d, "train.bin", ids, 300, 2, 1, TOKENS_LLMC_MAGIC_U16, 2);
    expect_refusal(name, 0, p, "unsupported llm.c version 2 for magic 20240520 (expected 1: uint16 ids)");
    write_ids(d, "train.bin", ids, 300, 4, 1, TOKENS_LLMC_MAGIC_U32, 1);
    expect_refusal(name, 0, "unsupported llm.c version 1 for magic 20240801 (expected 7: uint32 ids)", NULL);

    /* count disagrees with the size: truncated, and too long */
    b = make_bin(ids, 300, 2, 1, TOKENS_LLMC_MAGIC_U16, 1, 300, &len);
    write_bytes(d, "train.bin", b, len - 10);
    expect_refusal(name, 0, p, "header says 300 tokens (600 bytes) but 590 bytes follow the header");
    write_bytes(d, "train.bin", b, 1000); /* shorter than the header */
    expect_refusal(name, 0, "shorter than llm.c's 1024-byte header", NULL);
    free(b);
    b = make_bin(ids, 300, 2, 1, TOKENS_LLMC_MAGIC_U16, 1, 500, &len);
    write_bytes(d, "train.bin", b, len);
    expect_refusal(name, 0, "header says 500 tokens", NULL);
    free(b);
    /* a header with no tokens */
    b = make_bin(ids, 0, 2, 1, TOKENS_LLMC_MAGIC_U16, 1, 0, &len);
    write_bytes(d, "train.bin", b, len);
    expect_refusal(name, 0, p, "is empty (its llm.c header says 0 tokens)");
    free(b);

    /* wrong magic: an llm.c-shaped file in auto mode, and any file with "format": "llmc" */
    write_ids(d, "train.bin", ids, 300, 2, 1, 20240519, 1);
    expect_refusal(name, 0, "looks like an llm.c token file (version 1, 300 tokens) but its magic is 20240519", p);
    write_text(d, "meta.json", "{\"format\": \"llmc\"}");
    expect_refusal(name, 0, "bad llm.c magic 20240519", p);
    write_ids(d, "train.bin", ids, 300, 2, 0, 0, 0);
    expect_refusal(name, 0, "bad llm.c magic", NULL);

    /* the header's width disagrees with meta.json's dtype */
    write_ids(d, "train.bin", ids, 300, 2, 1, TOKENS_LLMC_MAGIC_U16, 1);
    write_ids(d, "val.bin", ids, 300, 2, 1, TOKENS_LLMC_MAGIC_U16, 1);
    write_text(d, "meta.json", "{\"dtype\": \"uint32\"}");
    expect_refusal(name, 0, "header says uint16 ids but meta.json's \"dtype\" says uint32", NULL);
    write_text(d, "meta.json", "{\"format\": \"llmc\", \"dtype\": \"uint16\"}");
    tokens_set ts;
    open_ok(&ts, name, 0);
    check_ids(&ts.val, ids, 300);
    tokens_free(&ts);

    free(ids);
    rm_rf(d);
    free(d);
}
END_TEST

START_TEST(test_refusals_meta)
{
    char *d = make_tmpdir();
    char name[1100], p[1100];
    snprintf(name, sizeof name, "tokens:%s", d);
    snprintf(p, sizeof p, "%s/meta.json", d);
    uint32_t *ids = seq_ids(300, 3, 1, 500);
    write_ids(d, "train.bin", ids, 300, 2, 0, 0, 0);
    write_ids(d, "val.bin", ids, 300, 2, 0, 0, 0);
    struct {
        const char *json, *msg;
    } bad[] = {
        {"{\"vocab_size\": 500,", "is not valid JSON"},
        {"", "is not valid JSON"},
        {"[500]", "must hold a JSON object"},
        {"{\"vocab_size\": \"500\"}", "\"vocab_size\" must be an integer"},
        {"{\"vocab_size\": 0}", "\"vocab_size\" must be an integer"},
        {"{\"vocab_size\": 5000000000}", "\"vocab_size\" must be an integer"},
        {"{\"dtype\": \"float32\"}", "unknown \"dtype\" \"float32\""},
        {"{\"dtype\": 16}", "unknown \"dtype\" (not a string)"},
        {"{\"bytes_per_token\": 0}", "\"bytes_per_token\" must be a number > 0"},
        {"{\"bytes_per_token\": \"3\"}", "\"bytes_per_token\" must be a number > 0"},
        {"{\"format\": \"npy\"}", "unknown \"format\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(d, "meta.json", bad[i].json);
        expect_refusal(name, 0, p, bad[i].msg);
    }
    write_text(d, "meta.json", "{\"bytes_per_token\": 3, \"vocab_size\": 500, \"note\": [1, 2]}");
    tokens_set ts;
    open_ok(&ts, name, 0);
    ck_assert_double_eq(ts.bytes_per_token, 3.0);
    ck_assert_int_eq(ts.vocab, 500);
    tokens_free(&ts);
    free(ids);
    rm_rf(d);
    free(d);
}
END_TEST

START_TEST(test_refusals_text)
{
    char *d = make_tmpdir();
    char name[1100], p[1024];
    snprintf(p, sizeof p, "%s/a.txt", d);
    snprintf(name, sizeof name, "text:%s", p);
    expect_refusal(name, 0, p, "does not exist (hint:");
    write_bytes(d, "a.txt", "", 0);
    expect_refusal(name, 0, p, "is empty");
    write_text(d, "a.txt", "x");
    expect_refusal(name, 0, "train split", "has no tokens"); /* 1 byte: train 0, val 1 */
    write_text(d, "a.txt", "0123456789abcdefghij");    /* 20 bytes: 18 / 2 */
    expect_refusal(name, 3, "val split", "has 2 tokens, fewer than one window of seq_len 3");
    tokens_set ts;
    open_ok(&ts, name, 2);
    tokens_free(&ts);
    snprintf(name, sizeof name, "text:%s", d); /* a directory is not a file */
    expect_refusal(name, 0, "is a directory, not a file", "tokens:DIR");
    snprintf(name, sizeof name, "tokens:%s", p); /* a file is not a directory */
    expect_refusal(name, 0, "is a file, not a directory", "text:FILE");
    expect_refusal("synthetic-lm:n=100", 26, "val split", "has 25 tokens, fewer than one window of seq_len 26");
    rm_rf(d);
    free(d);
}
END_TEST

static Suite *tokens_suite(void)
{
    Suite *s = suite_create("tokens");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_nanogpt_uint16);
    tcase_add_test(tc, test_llmc_headers);
    tcase_add_test(tc, test_uint32_meta);
    tcase_add_test(tc, test_datasets_env_dir);
    tcase_add_test(tc, test_text_split);
    tcase_add_test(tc, test_large_file_not_resident);
    tcase_add_test(tc, test_eval_windows);
    tcase_add_test(tc, test_random_windows);
    tcase_add_test(tc, test_synthetic_determinism);
    tcase_add_test(tc, test_synthetic_learnable);
    tcase_add_test(tc, test_name_info);
    tcase_add_test(tc, test_refusals_files);
    tcase_add_test(tc, test_refusals_llmc);
    tcase_add_test(tc, test_refusals_meta);
    tcase_add_test(tc, test_refusals_text);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tokens_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
