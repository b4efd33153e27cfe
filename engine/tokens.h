/* tokens.h — token datasets for causal language models: memory-mapped token files, raw text
 * as bytes, a generated Markov chain for tests, and the [B, T] windows the LM consumes.
 *
 * Names (one tokens_set holds both splits, "train" and "val"):
 *   tokens:DIR   DIR/train.bin and DIR/val.bin, plus an optional DIR/meta.json. Each .bin is
 *                either
 *                  - nanoGPT's layout: a bare array of little-endian token ids, uint16 unless
 *                    meta.json says otherwise, or
 *                  - llm.c's layout: a header of 256 little-endian int32 (1024 bytes), then the
 *                    ids. header[0] = magic, header[1] = version, header[2] = token count;
 *                    magic 20240520 with version 1 = uint16 ids (GPT-2), magic 20240801 with
 *                    version 7 = uint32 ids (Llama 3). The count must match the file size.
 *                A file whose first int32 is one of the two magics is read as llm.c's layout
 *                (no GPT-2 file can start that way: 20240520 = ids 54472, 308 as uint16).
 *   text:FILE    the bytes of FILE as tokens, V = 256; train = bytes [0, S), val = bytes
 *                [S, size) with S = floor(size * 9 / 10).
 *   synthetic-lm[:n=N,vocab=V,seed=S]  generated (below). Defaults n=65536, vocab=64, seed=1;
 *                ranges n 1..50000000, vocab 2..65535, seed any uint64.
 * A relative DIR or FILE that does not exist as given is looked up under $PRUNELAB_DATASETS.
 *
 * meta.json (optional, a JSON object; keys not listed here are ignored):
 *   "vocab_size"       integer 1..2147483647: the vocabulary V; every id must be < V.
 *   "dtype"            "uint16" or "uint32": id width of bare files. Default "uint16", or
 *                      "uint32" when vocab_size > 65536. An llm.c header that disagrees is
 *                      an error.
 *   "bytes_per_token"  number > 0: mean bytes of text per token (of the val split), for
 *                      bits per byte = loss / ln 2 / bytes_per_token. Absent: unknown (0).
 *   "format"           "auto" (default), "nanogpt" (bare arrays; a magic is then just ids) or
 *                      "llmc" (a header is required; a wrong magic is an error).
 * Vocabulary: vocab_size when meta.json gives it, else max id + 1 over train.bin and val.bin
 * together (so both splits agree), which may be smaller than the tokenizer's real vocabulary.
 *
 * synthetic-lm, exactly: a first-order Markov chain over V symbols with 4 successors per
 * state. Chain: rng = pl_rng_seed(seed); for s = 0..V-1, for j = 0..3: succ[s][j] =
 * pl_rng_below(rng, V) (duplicates allowed). Streams: train has n ids from
 * pl_rng_seed(seed + 1 * TOKENS_SYNTH_STREAM), val has max(n / 4, 1) ids from
 * pl_rng_seed(seed + 2 * TOKENS_SYNTH_STREAM) (uint64 wrap-around). In each stream
 * x[0] = pl_rng_below(r, V); then u = pl_rng_below(r, 8) picks x[t+1] = succ[x[t]][j] with
 * j = 0 for u < 4, 1 for u < 6, 2 for u = 6, 3 for u = 7 (probabilities 1/2, 1/4, 1/8, 1/8).
 * The conditional entropy is at most 1.75 bits = 1.213 nats per token (vs log V = 4.16 nats
 * at V = 64), so a small model's loss drops well below log V once it learns the bigrams.
 * bytes_per_token is 0 (unknown) for synthetic-lm, 1 for text.
 *
 * Windows of T tokens (T = seq_len; the LM predicts ids 1..T-1 from 0..T-2):
 *   evaluation: window i = ids[i*T .. i*T+T-1], in order, no overlap; count = n / T (the tail
 *     of n % T ids is dropped); max_tokens > 0 caps it to the first ceil(max_tokens / T).
 *   training: each window starts at floor(u * (n - T + 1) / 2^64) with u = pl_rng_next(rng),
 *     one draw per window in batch order, so start is uniform in [0, n - T].
 * Files are mmap'd read-only and never copied; ids are read through tokens_id(). Opening
 * reads every id once to check it against V, releasing the pages it has read as it goes, so
 * a large file does not stay resident after tokens_open (windows fault their pages back).
 * Errors (return -1, err names the file and what is wrong): missing directory or file (with a
 * hint), empty file, a byte count that is not a multiple of the id width, llm.c header with a
 * wrong magic or version or a count that disagrees with the size, malformed meta.json or an
 * unknown dtype, a split shorter than one window of seq_len, an id >= V (with its offset). */
#ifndef PL_TOKENS_H
#define PL_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define TOKENS_DEFAULT_SEQ_LEN 256
#define TOKENS_PATH_MAX 1024
#define TOKENS_LLMC_MAGIC_U16 20240520 /* llm.c GPT-2 files: version 1, uint16 ids */
#define TOKENS_LLMC_MAGIC_U32 20240801 /* llm.c Llama 3 files: version 7, uint32 ids */
#define TOKENS_LLMC_HEADER_BYTES 1024  /* 256 x int32 */
#define TOKENS_SYNTH_STREAM 0x9E3779B97F4A7C15ull

typedef enum { TOKENS_KIND_DIR, TOKENS_KIND_TEXT, TOKENS_KIND_SYNTHETIC, TOKENS_KIND_COUNT } tokens_kind;

/* One split: n ids of width bytes each (little-endian), starting at p. (Tagged so data.h can
 * hold pointers to it without including this header.) */
typedef struct tokens_split {
    const uint8_t *p;             /* ids (n * width bytes), inside a mapping or tokens_set's buffer */
    size_t n;                     /* token count */
    int width;                    /* bytes per id: 1 (text), 2 or 4 */
    size_t offset;                /* byte offset of p[0] in its file (header or train part) */
    char path[TOKENS_PATH_MAX + 32]; /* file it was read from, or "synthetic-lm" */
} tokens_split;

typedef struct tokens_set {
    char name[TOKENS_PATH_MAX + 16]; /* the name as given */
    tokens_kind kind;
    int vocab;                    /* V: every id is in [0, V) */
    double bytes_per_token;       /* text bytes per token, 0 when unknown */
    tokens_split train, val;
    void *map[2];                 /* private: mappings (train, val; text uses map[0] only) */
    size_t map_len[2];
    uint8_t *owned;               /* private: synthetic-lm ids */
} tokens_set;

/* Open a dataset by name. seq_len > 0 also refuses a split with fewer than seq_len ids (and
 * seq_len < 2, which has no prediction); seq_len = 0 only requires one id per split.
 * Returns 0, or -1 with err (see the list above); on error ts is left zeroed. Release with
 * tokens_free. */
int tokens_open(tokens_set *ts, const char *name, int seq_len, char *err, size_t errlen);
/* Unmap and free; ts is zeroed. NULL and a zeroed ts are no-ops. */
void tokens_free(tokens_set *ts);

/* The split called "train", or "val" (alias "test"); NULL for anything else. */
const tokens_split *tokens_get_split(const tokens_set *ts, const char *split);

/* Id i of a split (i < s->n). */
static inline uint32_t tokens_id(const tokens_split *s, size_t i)
{
    const uint8_t *q = s->p + i * (size_t)s->width;
    if (s->width == 1) return q[0];
    if (s->width == 2) return (uint32_t)q[0] | (uint32_t)q[1] << 8;
    return (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
}

/* Number of evaluation windows of T ids: n / T, capped to ceil(max_tokens / T) when
 * max_tokens > 0. 0 when T < 1. */
size_t tokens_eval_count(const tokens_split *s, int T, size_t max_tokens);

/* Evaluation windows first .. first+B-1 into out (B, T). Rows past n / T are not written;
 * returns the number of rows written. */
int tokens_eval_batch(const tokens_split *s, int T, size_t first, int B, int *out);

/* B random training windows into out (B, T), drawn from rng as described above. Returns 0,
 * or -1 (out and rng untouched) when T < 1 or the split has fewer than T ids (tokens_open
 * with seq_len = T rules that out). */
int tokens_random_batch(const tokens_split *s, int T, int B, pl_rng *rng, int *out);

/* Bits per byte for a mean loss in nats per token, or -1 when bytes_per_token is unknown. */
double tokens_bits_per_byte(const tokens_set *ts, double loss_nats);

/* 1 if name is a token dataset name by its prefix (tokens:, text:, synthetic-lm), else 0. */
int tokens_is_name(const char *name);

/* Check a token dataset name without reading any file. Returns 1 when it is a well-formed
 * token dataset name, with *vocab (may be NULL) = V when the name alone fixes it (text: 256,
 * synthetic-lm: its vocab) or 0 when it depends on the files (tokens:DIR); 0 when it is not
 * a token dataset name (err untouched); -1 when it is one but malformed (empty DIR or FILE,
 * bad synthetic-lm options), with err. */
int tokens_name_info(const char *name, int *vocab, char *err, size_t errlen);

#endif
