/* data.h — image classification datasets, normalised in memory.
 *
 * Names: "fashion-mnist", "mnist" (IDX, .gz or raw), "cifar10", "cifar100" (binary version),
 * and "synthetic" (deterministic, generated, for tests). Synthetic takes options after a colon:
 * "synthetic:n=2048,classes=4,c=1,h=16,w=16,seed=1" (all optional; the test split has n/4
 * samples, at least 1, and a different seed stream). Ranges: n 1..1e6 and >= classes,
 * classes 2..64, c 1..3, h and w 4..256. "cifar-10", "cifar-100" and "fashion_mnist" are
 * accepted as aliases; ds->name then holds the canonical name.
 * Directory: the dir argument, else $PRUNELAB_DATASETS/<name>, else the Debian location
 * (/usr/share/datasets/fashion-mnist, /usr/share/datasets/mnist), else ./var/datasets/<name>;
 * without a dir argument the first of these that exists is used. CIFAR files may sit in
 * that directory or in its cifar-10-batches-bin / cifar-100-binary subfolder.
 * Normalisation (DESIGN.md 4): pixels / 255, then (x - mean[c]) / std[c]; synthetic uses
 * mean 0.5, std 0.25 on every channel. Shape and class count follow from the name:
 * (fashion-)mnist 1x28x28 / 10, cifar10 3x32x32 / 10, cifar100 3x32x32 / 100 (fine labels).
 * Errors: missing files name the file and a hint (apt-get install dataset-fashion-mnist,
 * --data-dir, $PRUNELAB_DATASETS). */
#ifndef PL_DATA_H
#define PL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct tokens_set;
struct tokens_split;

typedef struct {
    char name[1040];     /* canonical name, e.g. "fashion-mnist", "synthetic:..." or a token name as given */
    char split[8];       /* "train" or "test" */
    int n, c, h, w;      /* sample count and image shape */
    int classes;
    float mean[3], std[3];
    int augment;         /* 1 for cifar train: random crop (pad 4) + horizontal flip */
    float *x;            /* (n, c, h, w), normalised */
    uint8_t *y;          /* (n) labels in [0, classes) */
    /* A token dataset (dataset_load_tokens; c = h = w = classes = 0, x = y = NULL): one split of a
     * tokens_set cut into windows of T ids. n is the number of windows: the split's tokens / T
     * (the in-order evaluation windows, tokens.h), capped to ceil(max_tokens / T) when max_tokens
     * > 0. Sample i is window i; training draws random windows instead (train.h). */
    struct tokens_set *tokens;          /* owned (NULL for an image dataset) */
    const struct tokens_split *tsplit;  /* this split inside tokens */
    int T;                              /* seq_len: ids per window */
    int vocab;                          /* V of the token set */
    double bytes_per_token;             /* 0 when unknown */
} dataset;

/* Returns 0, or -1 with err naming what is wrong (missing file + hint, bad magic, dims,
 * counts, truncated data, label out of range). split: "train" or "test". dir may be NULL. */
int dataset_load(dataset *ds, const char *name, const char *dir, const char *split, char *err, size_t errlen);
void dataset_free(dataset *ds);

/* A token dataset (tokens.h names: tokens:DIR, text:FILE, synthetic-lm[:...]) as windows of
 * seq_len ids (2..65536) of split "train" or "test" (the token set's val split; "val" is
 * accepted too). max_tokens > 0 caps n to its first ceil(max_tokens / seq_len) windows.
 * dataset_load on a token name is this call with TOKENS_DEFAULT_SEQ_LEN and no cap.
 * Returns 0 or -1 with err (tokens_open's errors, a split shorter than one window). */
int dataset_load_tokens(dataset *ds, const char *name, const char *split, int seq_len, long max_tokens, char *err,
                        size_t errlen);
/* 1 for a token dataset (dataset_load_tokens), else 0. */
static inline int dataset_is_tokens(const dataset *ds) { return ds->tokens != NULL; }
/* Token windows idx[0..B) of a token dataset into ids (B, T). */
void dataset_windows(const dataset *ds, const int *idx, int B, int *ids);

/* Fill a batch: xout (B, c, h, w), yout (B) from sample indices idx (B); yout may be NULL.
 * If augment and ds->augment and rng is non-NULL, each sample gets a random crop with
 * DATASET_PAD-pixel zero padding (zero of the normalised image, i.e. the mean) and a random
 * horizontal flip, drawn from rng in the order dy, dx, flip (pl_rng_below(2*PAD+1) - PAD,
 * pl_rng_below(2*PAD+1) - PAD, pl_rng_below(2)). */
void dataset_batch(const dataset *ds, const int *idx, int B, float *xout, int *yout, pl_rng *rng, int augment);

#define DATASET_PAD 4

/* One crop + flip: out[ch][i][j] = in[ch][i + dy][(flip ? w-1-j : j) + dx], 0 outside the
 * image. out (c, h, w) and in (c, h, w) must not overlap. dy = dx = 0, flip = 0 copies. */
void dataset_crop_flip(float *out, const float *in, int c, int h, int w, int dy, int dx, int flip);

/* Normalisation constants for a dataset name (0 with mean/std set, -1 if unknown or bad
 * synthetic options). Channels beyond *channels repeat channel 0. Any pointer may be NULL. */
int dataset_norm(const char *name, int *channels, float mean[3], float std[3]);

/* Image shape and class count for a dataset name, without reading any file (0, or -1 if
 * unknown or bad synthetic options). Any pointer may be NULL. */
int dataset_shape(const char *name, int *c, int *h, int *w, int *classes);

#endif
