/* data.h — image classification datasets, normalised in memory.
 *
 * Names: "fashion-mnist", "mnist" (IDX, .gz or raw), "cifar10", "cifar100" (binary version),
 * and "synthetic" (deterministic, generated, for tests). Synthetic takes options after a colon:
 * "synthetic:n=2048,classes=4,c=1,h=16,w=16,seed=1" (all optional; the test split has n/4
 * samples and a different seed stream).
 * Directory: the dir argument, else $PRUNELAB_DATASETS/<name>, else the Debian location
 * (/usr/share/datasets/fashion-mnist, /usr/share/datasets/mnist), else ./var/datasets/<name>.
 * Normalisation (DESIGN.md 4): pixels / 255, then (x - mean[c]) / std[c]. */
#ifndef PL_DATA_H
#define PL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct {
    char name[64];       /* canonical name, e.g. "fashion-mnist", "synthetic:..." as given */
    char split[8];       /* "train" or "test" */
    int n, c, h, w;      /* sample count and image shape */
    int classes;
    float mean[3], std[3];
    int augment;         /* 1 for cifar train: random crop (pad 4) + horizontal flip */
    float *x;            /* (n, c, h, w), normalised */
    uint8_t *y;          /* (n) labels in [0, classes) */
} dataset;

/* Returns 0, or -1 with err naming what is wrong (missing file + hint, bad magic, dims,
 * counts, truncated data, label out of range). split: "train" or "test". dir may be NULL. */
int dataset_load(dataset *ds, const char *name, const char *dir, const char *split, char *err, size_t errlen);
void dataset_free(dataset *ds);

/* Fill a batch: xout (B, c, h, w), yout (B) from sample indices idx (B).
 * If augment and ds->augment, applies random crop + flip drawn from rng. */
void dataset_batch(const dataset *ds, const int *idx, int B, float *xout, int *yout, pl_rng *rng, int augment);

/* Normalisation constants for a dataset name (0 with mean/std set, -1 if unknown). */
int dataset_norm(const char *name, int *channels, float mean[3], float std[3]);

#endif
