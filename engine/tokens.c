/* tokens.c — token datasets for causal LMs (formats, meta.json keys and the synthetic chain
 * are specified in tokens.h).
 *
 * Files are mapped read-only with mmap and closed right away; a tokens_set owns its mappings
 * (train.bin, val.bin, or the one text file) and, for synthetic-lm, one malloc'd buffer of
 * uint16 ids (train then val). Opening validates every id once (one sequential pass per file)
 * so later reads need no checks; after that nothing is copied until a window is asked for.
 * Ids are stored little-endian and read byte by byte (tokens_id), so the host's byte order
 * and the alignment of the payload do not matter.
 * Dimension letters: n ids in a split, V vocabulary, B windows in a batch, T window length. */
#define _GNU_SOURCE
#include "tokens.h"
#include "dataset_name.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SYNTH_SUCC 4


typedef enum { FMT_AUTO, FMT_NANOGPT, FMT_LLMC } file_format;

typedef struct {
    long vocab;            /* 0: not given */
    int width;             /* 0: not given */
    double bytes_per_token;
    file_format format;
} meta_info;

/* ------------------------------------------------------------------ names */

int tokens_is_name(const char *name) { return spec_token_dataset_is_name(name); }

int tokens_name_info(const char *name, int *vocab, char *err, size_t errlen)
{
    return spec_token_dataset_info(name, vocab, err, errlen);
}

/* ------------------------------------------------------------------ files */

static int path_exists(const char *path, int want_dir)
{
    struct stat st;
    return stat(path, &st) == 0 && (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

/* Resolve DIR or FILE: as given, else (relative only) under $PRUNELAB_DATASETS. Returns 0 or
 * -1 (out then holds the path as given, for the message). */
static int resolve_path(char *out, size_t outlen, const char *arg, int want_dir)
{
    snprintf(out, outlen, "%s", arg);
    if (path_exists(arg, want_dir)) return 0;
    const char *env = getenv("PRUNELAB_DATASETS");
    if (arg[0] != '/' && env && *env) {
        char alt[TOKENS_PATH_MAX];
        int r = snprintf(alt, sizeof alt, "%s/%s", env, arg);
        if (r > 0 && (size_t)r < sizeof alt && path_exists(alt, want_dir)) {
            snprintf(out, outlen, "%s", alt);
            return 0;
        }
    }
    return -1;
}

/* Map a whole regular file read-only. Returns 0 with *map, *len, or -1 with err (the empty
 * file is refused here, since it cannot be mapped). */
static int map_file(const char *label, const char *path, void **map, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pl_err(err, errlen, "%s: cannot open %s: %s", label, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pl_err(err, errlen, "%s: %s is not a regular file", label, path);
    }
    if (st.st_size == 0) {
        close(fd);
        return pl_err(err, errlen, "%s: %s is empty (0 bytes)", label, path);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return pl_err(err, errlen, "%s: cannot map %s: %s", label, path, strerror(e));
    *map = m;
    *len = (size_t)st.st_size;
    return 0;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Read DIR/meta.json when present into m (defaults otherwise). Returns 0 or -1 with err. */
static int meta_read(const char *label, const char *dir, meta_info *m, char *err, size_t errlen)
{
    *m = (meta_info){0};
    char path[TOKENS_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    if (!path_exists(path, 0)) return 0;
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return pl_err(err, errlen, "%s: %s is not valid JSON (line %d: %s)", label, path, je.line, je.text);
    int rc = -1;
    if (!json_is_object(root)) {
        pl_err(err, errlen, "%s: %s must hold a JSON object", label, path);
        goto cleanup;
    }
    json_t *v = json_object_get(root, "vocab_size");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT_MAX) {
            pl_err(err, errlen, "%s: %s: \"vocab_size\" must be an integer in [1, %d]", label, path, INT_MAX);
            goto cleanup;
        }
        m->vocab = (long)json_integer_value(v);
    }
    v = json_object_get(root, "dtype");
    if (v) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(s, "uint16") == 0) m->width = 2;
        else if (strcmp(s, "uint32") == 0) m->width = 4;
        else {
            pl_err(err, errlen, "%s: %s: unknown \"dtype\" %s%s%s (known: \"uint16\", \"uint32\")", label, path,
                   json_is_string(v) ? "\"" : "", json_is_string(v) ? s : "(not a string)", json_is_string(v) ? "\"" : "");
            goto cleanup;
        }
    }
    v = json_object_get(root, "bytes_per_token");
    if (v) {
        if (!json_is_number(v) || !(json_number_value(v) > 0) || !isfinite(json_number_value(v))) {
            pl_err(err, errlen, "%s: %s: \"bytes_per_token\" must be a number > 0", label, path);
            goto cleanup;
        }
        m->bytes_per_token = json_number_value(v);
    }
    v = json_object_get(root, "format");
    if (v) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(s, "auto") == 0) m->format = FMT_AUTO;
        else if (strcmp(s, "nanogpt") == 0) m->format = FMT_NANOGPT;
        else if (strcmp(s, "llmc") == 0) m->format = FMT_LLMC;
        else {
            pl_err(err, errlen, "%s: %s: unknown \"format\" (known: \"auto\", \"nanogpt\", \"llmc\")", label, path);
            goto cleanup;
        }
    }
    rc = 0;
cleanup:
    json_decref(root);
    return rc;
}

/* Work out where the ids of one mapped .bin file are and how wide. Returns 0 or -1. */
static int bin_layout(const char *label, const char *path, const uint8_t *p, size_t len, const meta_info *m,
                      tokens_split *s, char *err, size_t errlen)
{
    uint32_t h0 = len >= 4 ? le32(p) : 0;
    int magic = h0 == TOKENS_LLMC_MAGIC_U16 || h0 == TOKENS_LLMC_MAGIC_U32;
    int llmc = m->format == FMT_LLMC || (m->format == FMT_AUTO && magic);
    if (!llmc) {
        int w = m->width ? m->width : (m->vocab > 65536 ? 4 : 2);
        /* a bare file that looks exactly like an llm.c file but for its magic */
        if (m->format == FMT_AUTO && len >= TOKENS_LLMC_HEADER_BYTES) {
            uint32_t ver = le32(p + 4), cnt = le32(p + 8);
            size_t body = len - TOKENS_LLMC_HEADER_BYTES;
            if (cnt > 0 && ((ver == 1 && body == (size_t)cnt * 2) || (ver == 7 && body == (size_t)cnt * 4)))
                return pl_err(err, errlen,
                              "%s: %s looks like an llm.c token file (version %u, %u tokens) but its magic is %u "
                              "(expected %d or %d; set \"format\": \"nanogpt\" in meta.json if it is a bare array)",
                              label, path, ver, cnt, h0, TOKENS_LLMC_MAGIC_U16, TOKENS_LLMC_MAGIC_U32);
        }
        if (len % (size_t)w)
            return pl_err(err, errlen, "%s: %s has %zu bytes, %s for uint%d token ids", label, path, len,
                          w == 2 ? "an odd byte count" : "not a multiple of 4", w * 8);
        s->p = p, s->n = len / (size_t)w, s->width = w, s->offset = 0;
        return 0;
    }
    if (!magic)
        return pl_err(err, errlen, "%s: %s: bad llm.c magic %u (expected %d for uint16 or %d for uint32 ids)", label, path,
                      h0, TOKENS_LLMC_MAGIC_U16, TOKENS_LLMC_MAGIC_U32);
    if (len < TOKENS_LLMC_HEADER_BYTES)
        return pl_err(err, errlen, "%s: %s has %zu bytes, shorter than llm.c's %d-byte header", label, path, len,
                      TOKENS_LLMC_HEADER_BYTES);
    uint32_t ver = le32(p + 4), cnt = le32(p + 8);
    uint32_t want_ver = h0 == TOKENS_LLMC_MAGIC_U16 ? 1 : 7;
    int w = h0 == TOKENS_LLMC_MAGIC_U16 ? 2 : 4;
    if (ver != want_ver)
        return pl_err(err, errlen, "%s: %s: unsupported llm.c version %u for magic %u (expected %u: uint%d ids)", label,
                      path, ver, h0, want_ver, w * 8);
    if (m->width && m->width != w)
        return pl_err(err, errlen, "%s: %s: its llm.c header says uint%d ids but meta.json's \"dtype\" says uint%d", label,
                      path, w * 8, m->width * 8);
    size_t body = len - TOKENS_LLMC_HEADER_BYTES;
    if (cnt == 0 && body == 0) return pl_err(err, errlen, "%s: %s is empty (its llm.c header says 0 tokens)", label, path);
    if ((uint64_t)cnt * (uint64_t)w != body)
        return pl_err(err, errlen,
                      "%s: %s: llm.c header says %u tokens (%llu bytes) but %zu bytes follow the header (truncated or "
                      "corrupt)",
                      label, path, cnt, (unsigned long long)cnt * (unsigned long long)w, body);
    s->p = p + TOKENS_LLMC_HEADER_BYTES, s->n = cnt, s->width = w, s->offset = TOKENS_LLMC_HEADER_BYTES;
    return 0;
}

/* One pass over a split read from a mapping (base, len): *max_out = the largest id, and the
 * first index whose id is >= V is returned (n when there is none; V = 0 checks nothing). The
 * pass stops at the first such id. Every SCAN_CHUNK ids the pages already read are dropped
 * from this process (MADV_DONTNEED: the kernel keeps them in its page cache and faults them
 * back when a window needs them), so validating a GB file does not leave it resident. */
#define SCAN_CHUNK ((size_t)1 << 22)
static size_t split_scan(const tokens_split *s, uint8_t *base, size_t len, uint32_t V, uint32_t *max_out)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t pg = page > 0 ? (size_t)page : 4096;
    uint8_t *released = base;
    uint32_t mx = 0;
    size_t bad = s->n;
    for (size_t i0 = 0; i0 < s->n && bad == s->n; i0 += SCAN_CHUNK) {
        size_t i1 = s->n - i0 < SCAN_CHUNK ? s->n : i0 + SCAN_CHUNK;
        if (s->width == 2) {
            for (size_t i = i0; i < i1; i++) {
                uint32_t v = (uint32_t)s->p[2 * i] | (uint32_t)s->p[2 * i + 1] << 8;
                if (v > mx) mx = v;
            }
        } else {
            for (size_t i = i0; i < i1; i++) {
                uint32_t v = tokens_id(s, i);
                if (v > mx) mx = v;
            }
        }
        if (V && mx >= V)
            for (size_t i = i0; i < i1; i++)
                if (tokens_id(s, i) >= V) {
                    bad = i;
                    break;
                }
        uint8_t *end = base + ((size_t)(s->p + i1 * (size_t)s->width - base) / pg) * pg;
        if (end > released) {
            madvise(released, (size_t)(end - released), MADV_DONTNEED);
            released = end;
        }
    }
    if (base + len > released) madvise(released, (size_t)(base + len - released), MADV_DONTNEED);
    *max_out = mx;
    return bad;
}

static int dir_open(tokens_set *ts, const char *arg, char *err, size_t errlen)
{
    const char *label = ts->name;
    char dir[TOKENS_PATH_MAX];
    if (strlen(arg) >= sizeof dir - 16) return pl_err(err, errlen, "%s: directory path too long", label);
    if (resolve_path(dir, sizeof dir, arg, 1) != 0 && path_exists(arg, 0))
        return pl_err(err, errlen, "%s: %s is a file, not a directory (hint: tokens:DIR names a directory holding "
                      "train.bin and val.bin; use text:FILE for a plain text file)", label, arg);
    if (resolve_path(dir, sizeof dir, arg, 1) != 0)
        return pl_err(err, errlen,
                      "%s: directory %s does not exist (hint: tokens:DIR names a directory holding train.bin and val.bin; "
                      "a relative DIR is also looked up under $PRUNELAB_DATASETS)",
                      label, arg);
    meta_info m;
    if (meta_read(label, dir, &m, err, errlen) != 0) return -1;
    tokens_split *sp[2] = {&ts->train, &ts->val};
    static const char *const files[2] = {"train.bin", "val.bin"};
    for (int k = 0; k < 2; k++) {
        snprintf(sp[k]->path, sizeof sp[k]->path, "%s/%s", dir, files[k]);
        if (!path_exists(sp[k]->path, 0))
            return pl_err(err, errlen,
                          "%s: missing file %s (hint: write the token ids as little-endian uint16, nanoGPT-style, or "
                          "with llm.c's 1024-byte header; see engine/tokens.h)",
                          label, sp[k]->path);
        if (map_file(label, sp[k]->path, &ts->map[k], &ts->map_len[k], err, errlen) != 0) return -1;
        if (bin_layout(label, sp[k]->path, ts->map[k], ts->map_len[k], &m, sp[k], err, errlen) != 0) return -1;
    }
    ts->bytes_per_token = m.bytes_per_token;
    /* without vocab_size, V = max id + 1 must still fit an int */
    uint32_t limit = m.vocab ? (uint32_t)m.vocab : (uint32_t)INT_MAX, mx = 0;
    for (int k = 0; k < 2; k++) {
        uint32_t v = 0;
        size_t i = sp[k]->n;
        if (!(m.vocab && sp[k]->width == 2 && limit >= 65536)) /* else no id can be out of range */
            i = split_scan(sp[k], ts->map[k], ts->map_len[k], limit, &v);
        if (i < sp[k]->n) {
            if (m.vocab)
                return pl_err(err, errlen,
                              "%s: %s: token %zu (byte offset %zu) is %u, not below vocab_size %ld from meta.json",
                              label, sp[k]->path, i, sp[k]->offset + i * (size_t)sp[k]->width, tokens_id(sp[k], i),
                              m.vocab);
            return pl_err(err, errlen, "%s: %s: token %zu (byte offset %zu) is %u, beyond the largest vocabulary (%d)",
                          label, sp[k]->path, i, sp[k]->offset + i * (size_t)sp[k]->width, tokens_id(sp[k], i), INT_MAX);
        }
        if (v > mx) mx = v;
    }
    if (m.vocab) {
        ts->vocab = (int)m.vocab;
        return 0;
    }
    ts->vocab = (int)mx + 1;
    return 0;
}

static int text_open(tokens_set *ts, const char *arg, char *err, size_t errlen)
{
    const char *label = ts->name;
    char path[TOKENS_PATH_MAX];
    if (strlen(arg) >= sizeof path) return pl_err(err, errlen, "%s: file path too long", label);
    if (resolve_path(path, sizeof path, arg, 0) != 0 && path_exists(arg, 1))
        return pl_err(err, errlen, "%s: %s is a directory, not a file (hint: use tokens:DIR for a directory of "
                      "train.bin and val.bin)", label, arg);
    if (resolve_path(path, sizeof path, arg, 0) != 0)
        return pl_err(err, errlen,
                      "%s: file %s does not exist (hint: text:FILE names a plain text file read as bytes; a relative "
                      "FILE is also looked up under $PRUNELAB_DATASETS)",
                      label, arg);
    if (map_file(label, path, &ts->map[0], &ts->map_len[0], err, errlen) != 0) return -1;
    size_t len = ts->map_len[0], cut = (size_t)((unsigned __int128)len * 9 / 10);
    const uint8_t *p = ts->map[0];
    ts->train = (tokens_split){.p = p, .n = cut, .width = 1, .offset = 0};
    ts->val = (tokens_split){.p = p + cut, .n = len - cut, .width = 1, .offset = cut};
    snprintf(ts->train.path, sizeof ts->train.path, "%s", path);
    snprintf(ts->val.path, sizeof ts->val.path, "%s", path);
    ts->vocab = 256;
    ts->bytes_per_token = 1.0;
    return 0;
}

/* One synthetic-lm stream of n ids into out (uint16 little-endian). */
static void synth_stream(uint8_t *out, long n, long V, const uint16_t *succ, uint64_t seed)
{
    pl_rng r;
    pl_rng_seed(&r, seed);
    uint32_t x = pl_rng_below(&r, (uint32_t)V);
    for (long t = 0; t < n; t++) {
        out[2 * t] = (uint8_t)x, out[2 * t + 1] = (uint8_t)(x >> 8);
        uint32_t u = pl_rng_below(&r, 8);
        int j = u < 4 ? 0 : u < 6 ? 1 : u == 6 ? 2 : 3;
        x = succ[(size_t)x * SYNTH_SUCC + j];
    }
}

static int synth_open(tokens_set *ts, const char *name, char *err, size_t errlen)
{
    spec_synth_lm o;
    if (spec_synth_lm_parse(name, &o, err, errlen) != 0) return -1;
    long nv = o.n / 4 > 0 ? o.n / 4 : 1;
    uint16_t *succ = xmalloc((size_t)o.vocab * SYNTH_SUCC * sizeof *succ);
    pl_rng r;
    pl_rng_seed(&r, o.seed);
    for (long s = 0; s < o.vocab * SYNTH_SUCC; s++) succ[s] = (uint16_t)pl_rng_below(&r, (uint32_t)o.vocab);
    ts->owned = xmalloc((size_t)(o.n + nv) * 2);
    synth_stream(ts->owned, o.n, o.vocab, succ, o.seed + 1 * TOKENS_SYNTH_STREAM);
    synth_stream(ts->owned + 2 * o.n, nv, o.vocab, succ, o.seed + 2 * TOKENS_SYNTH_STREAM);
    free(succ);
    ts->train = (tokens_split){.p = ts->owned, .n = (size_t)o.n, .width = 2, .offset = 0};
    ts->val = (tokens_split){.p = ts->owned + 2 * o.n, .n = (size_t)nv, .width = 2, .offset = 2 * (size_t)o.n};
    snprintf(ts->train.path, sizeof ts->train.path, "synthetic-lm");
    snprintf(ts->val.path, sizeof ts->val.path, "synthetic-lm");
    ts->vocab = (int)o.vocab;
    ts->bytes_per_token = 0;
    return 0;
}

/* ------------------------------------------------------------------ public */

int tokens_open(tokens_set *ts, const char *name, int seq_len, char *err, size_t errlen)
{
    memset(ts, 0, sizeof *ts);
    if (!name || !*name) return pl_err(err, errlen, "no dataset name given");
    if (!tokens_is_name(name))
        return pl_err(err, errlen, "unknown token dataset '%s' (known: tokens:DIR, text:FILE, synthetic-lm[:n=,vocab=,seed=])",
                      name);
    if (strlen(name) >= sizeof ts->name) return pl_err(err, errlen, "dataset name too long (%zu bytes)", strlen(name));
    if (seq_len < 0 || seq_len == 1)
        return pl_err(err, errlen, "%s: seq_len %d is too small (a window needs at least 2 tokens)", name, seq_len);
    if (tokens_name_info(name, NULL, err, errlen) != 1) return -1;
    snprintf(ts->name, sizeof ts->name, "%s", name);
    int rc;
    if (strncmp(name, "tokens:", 7) == 0) ts->kind = TOKENS_KIND_DIR, rc = dir_open(ts, name + 7, err, errlen);
    else if (strncmp(name, "text:", 5) == 0) ts->kind = TOKENS_KIND_TEXT, rc = text_open(ts, name + 5, err, errlen);
    else ts->kind = TOKENS_KIND_SYNTHETIC, rc = synth_open(ts, name, err, errlen);
    if (rc == 0) {
        const tokens_split *sp[2] = {&ts->train, &ts->val};
        static const char *const split_names[2] = {"train", "val"};
        size_t need = seq_len > 0 ? (size_t)seq_len : 1;
        for (int k = 0; k < 2 && rc == 0; k++)
            if (sp[k]->n < need) {
                if (seq_len > 0)
                    rc = pl_err(err, errlen,
                                "%s: %s split (%s) has %zu tokens, fewer than one window of seq_len %d (hint: a "
                                "smaller seq_len or more data)",
                                name, split_names[k], sp[k]->path, sp[k]->n, seq_len);
                else
                    rc = pl_err(err, errlen, "%s: %s split (%s) has no tokens", name, split_names[k], sp[k]->path);
            }
    }
    if (rc != 0) tokens_free(ts);
    return rc;
}

void tokens_free(tokens_set *ts)
{
    if (!ts) return;
    for (int k = 0; k < 2; k++)
        if (ts->map[k]) munmap(ts->map[k], ts->map_len[k]);
    free(ts->owned);
    memset(ts, 0, sizeof *ts);
}

const tokens_split *tokens_get_split(const tokens_set *ts, const char *split)
{
    if (!split) return NULL;
    if (strcmp(split, "train") == 0) return &ts->train;
    if (strcmp(split, "val") == 0 || strcmp(split, "test") == 0) return &ts->val;
    return NULL;
}

size_t tokens_eval_count(const tokens_split *s, int T, size_t max_tokens)
{
    if (T < 1) return 0;
    size_t cnt = s->n / (size_t)T;
    if (max_tokens > 0) {
        size_t cap = max_tokens / (size_t)T + (max_tokens % (size_t)T != 0);
        if (cap < cnt) cnt = cap;
    }
    return cnt;
}

/* Copy T ids from position start into out (T). */
static void window_copy(const tokens_split *s, size_t start, int T, int *out)
{
    if (s->width == 2) {
        const uint8_t *q = s->p + 2 * start;
        for (int t = 0; t < T; t++) out[t] = (int)((uint32_t)q[2 * t] | (uint32_t)q[2 * t + 1] << 8);
    } else {
        for (int t = 0; t < T; t++) out[t] = (int)tokens_id(s, start + (size_t)t);
    }
}

int tokens_eval_batch(const tokens_split *s, int T, size_t first, int B, int *out)
{
    size_t cnt = tokens_eval_count(s, T, 0);
    int rows = 0;
    for (int b = 0; b < B && first + (size_t)b < cnt; b++, rows++)
        window_copy(s, (first + (size_t)b) * (size_t)T, T, out + (size_t)b * T);
    return rows;
}

int tokens_random_batch(const tokens_split *s, int T, int B, pl_rng *rng, int *out)
{
    if (T < 1 || s->n < (size_t)T) return -1;
    uint64_t m = (uint64_t)(s->n - (size_t)T) + 1; /* starts 0 .. n - T */
    for (int b = 0; b < B; b++) {
        size_t start = (size_t)(((unsigned __int128)pl_rng_next(rng) * m) >> 64);
        window_copy(s, start, T, out + (size_t)b * T);
    }
    return 0;
}

double tokens_bits_per_byte(const tokens_set *ts, double loss_nats)
{
    if (!(ts->bytes_per_token > 0)) return -1;
    return loss_nats / log(2.0) / ts->bytes_per_token;
}
