/* data.c — image classification datasets, loaded whole into memory and normalised.
 *
 * Formats:
 *   IDX (MNIST, Fashion-MNIST): big-endian header, magic 0x00000803 (images: n, rows, cols)
 *     and 0x00000801 (labels: n), then uint8 payload. Read through zlib's gzopen/gzread,
 *     which accept gzip and raw files alike; "<base>.gz" is preferred over "<base>".
 *   CIFAR-10 binary: records of 1 label byte + 3072 pixel bytes (R plane, G plane, B plane,
 *     each 32x32 row-major). CIFAR-100 binary: coarse byte, fine byte, 3072 pixel bytes; we
 *     use the fine label (100 classes). Files sit in the directory or in the archive's own
 *     subfolder (cifar-10-batches-bin, cifar-100-binary).
 *   Synthetic: generated from pl_rng with integer arithmetic only, so every machine produces
 *     the same bytes; pixels are made as uint8 and normalised like a real dataset.
 * Normalisation: x = (p / 255 - mean[c]) / std[c], through a per-channel 256-entry table.
 * Ownership: dataset_load fills a caller-owned struct whose x and y it allocates; the caller
 * releases them with dataset_free. On error the struct is left zeroed (nothing to free).
 * Dimension letters: n samples, B batch, C channels, H, W image height and width. */
#include "data.h"
#include "dataset_name.h"
#include "tokens.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define CIFAR_PIXELS 3072                   /* 3 * 32 * 32 */
#define MAX_FILE_BYTES ((size_t)1 << 31)    /* refuse to slurp anything larger */
#define MAX_ELEMS ((size_t)1 << 30)         /* cap on n * C * H * W floats */

typedef enum { DS_MNIST, DS_FASHION, DS_CIFAR10, DS_CIFAR100, DS_SYNTHETIC, DS_KIND_COUNT } ds_kind;

typedef struct {
    const char *name;     /* canonical */
    const char *alias;    /* also accepted, or NULL */
    int c, h, w, classes;
    float mean[3], std[3];
    const char *debian_dir; /* Debian install location, or NULL */
    const char *hint;
} ds_info;

static const ds_info DS_TABLE[] = {
    [DS_MNIST] = {"mnist", NULL, 1, 28, 28, 10, {0.1307f}, {0.3081f}, "/usr/share/datasets/mnist",
                  "put train/t10k-{images-idx3,labels-idx1}-ubyte[.gz] in --data-dir or $PRUNELAB_DATASETS/mnist"},
    [DS_FASHION] = {"fashion-mnist", "fashion_mnist", 1, 28, 28, 10, {0.2860f}, {0.3530f},
                    "/usr/share/datasets/fashion-mnist",
                    "apt-get install dataset-fashion-mnist, or pass --data-dir / set $PRUNELAB_DATASETS"},
    [DS_CIFAR10] = {"cifar10", "cifar-10", 3, 32, 32, 10, {0.4914f, 0.4822f, 0.4465f},
                    {0.2470f, 0.2435f, 0.2616f}, NULL,
                    "unpack the CIFAR-10 binary version (cifar-10-batches-bin) into --data-dir or $PRUNELAB_DATASETS/cifar10"},
    [DS_CIFAR100] = {"cifar100", "cifar-100", 3, 32, 32, 100, {0.5071f, 0.4865f, 0.4409f},
                     {0.2673f, 0.2564f, 0.2762f}, NULL,
                     "unpack the CIFAR-100 binary version (cifar-100-binary) into --data-dir or $PRUNELAB_DATASETS/cifar100"},
    [DS_SYNTHETIC] = {"synthetic", NULL, 1, 16, 16, 4, {0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}, NULL, NULL},
};
_Static_assert(sizeof DS_TABLE / sizeof DS_TABLE[0] == DS_KIND_COUNT, "DS_TABLE out of sync with ds_kind");

typedef struct {
    long n, classes, c, h, w;
    uint64_t seed;
} synth_opts;

/* ------------------------------------------------------------------ names and options */

/* Parse "synthetic[:k=v,...]". Returns 0 or -1 with err naming the bad option. */
static int synth_parse(const char *name, synth_opts *o, char *err, size_t errlen)
{
    static const spec_int_option defs[] = {{"n", 1, 1000000}, {"classes", 2, 64}, {"c", 1, 3},
                                           {"h", 4, 256},     {"w", 4, 256},      {"seed", 0, UINT64_MAX}};
    unsigned long long v[] = {2048, 4, 1, 16, 16, 1};
    if (spec_int_options(name, "synthetic", defs, 6, v, err, errlen) != 0) return -1;
    *o = (synth_opts){.n = (long)v[0], .classes = (long)v[1], .c = (long)v[2], .h = (long)v[3], .w = (long)v[4],
                      .seed = v[5]};
    if (o->n < o->classes)
        return pl_err(err, errlen, "synthetic: n=%ld is smaller than classes=%ld", o->n, o->classes);
    if ((size_t)o->n * (size_t)(o->c * o->h * o->w) > MAX_ELEMS)
        return pl_err(err, errlen, "synthetic: n*c*h*w = %ld*%ld*%ld*%ld is too large", o->n, o->c, o->h, o->w);
    return 0;
}

/* Kind of a dataset name, or -1 with err. */
static int ds_kind_of(const char *name, char *err, size_t errlen)
{
    if (!name || !*name) return pl_err(err, errlen, "no dataset name given");
    if (strcmp(name, "synthetic") == 0 || strncmp(name, "synthetic:", 10) == 0) return DS_SYNTHETIC;
    for (int k = 0; k < DS_SYNTHETIC; k++) {
        if (strcmp(name, DS_TABLE[k].name) == 0) return k;
        if (DS_TABLE[k].alias && strcmp(name, DS_TABLE[k].alias) == 0) return k;
    }
    if (tokens_is_name(name))
        return pl_err(err, errlen,
                      "'%s' is a token dataset for causal language models, not an image dataset (known: fashion-mnist, "
                      "mnist, cifar10, cifar100, synthetic[:...])",
                      name);
    return pl_err(err, errlen,
                  "unknown dataset '%s' (known: fashion-mnist, mnist, cifar10, cifar100, synthetic[:n=,classes=,c=,h=,w=,seed=])",
                  name);
}

int dataset_norm(const char *name, int *channels, float mean[3], float std[3])
{
    int c, h, w, classes;
    if (dataset_shape(name, &c, &h, &w, &classes) != 0) return -1;
    int k = ds_kind_of(name, NULL, 0);
    if (channels) *channels = c;
    for (int i = 0; i < 3; i++) {
        /* unused channels repeat channel 0 so callers may read all three */
        int j = i < c ? i : 0;
        if (mean) mean[i] = DS_TABLE[k].mean[j];
        if (std) std[i] = DS_TABLE[k].std[j];
    }
    return 0;
}

int dataset_shape(const char *name, int *c, int *h, int *w, int *classes)
{
    int k = ds_kind_of(name, NULL, 0);
    if (k < 0) return -1;
    int cc = DS_TABLE[k].c, hh = DS_TABLE[k].h, ww = DS_TABLE[k].w, kk = DS_TABLE[k].classes;
    if (k == DS_SYNTHETIC) {
        synth_opts o;
        if (synth_parse(name, &o, NULL, 0) != 0) return -1;
        cc = (int)o.c, hh = (int)o.h, ww = (int)o.w, kk = (int)o.classes;
    }
    if (c) *c = cc;
    if (h) *h = hh;
    if (w) *w = ww;
    if (classes) *classes = kk;
    return 0;
}

/* ------------------------------------------------------------------ file helpers */

/* snprintf into a path buffer; returns 0, or -1 if the result did not fit (out then holds
 * a truncated path that names no file we would want). */
__attribute__((format(printf, 3, 4))) static int path_fmt(char *out, size_t outlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(out, outlen, fmt, ap);
    va_end(ap);
    return (r < 0 || (size_t)r >= outlen) ? -1 : 0;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Read a whole file through zlib (gzip or raw). Returns a malloc'd buffer (caller frees)
 * and its length, or NULL with err. */
static uint8_t *read_all_gz(const char *path, size_t *len, char *err, size_t errlen)
{
    gzFile f = gzopen(path, "rb");
    if (!f) {
        pl_err(err, errlen, "cannot open %s: %s", path, errno ? strerror(errno) : "zlib error");
        return NULL;
    }
    gzbuffer(f, 1 << 17);
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_FILE_BYTES) {
                pl_err(err, errlen, "%s: larger than %zu bytes uncompressed", path, MAX_FILE_BYTES);
                goto fail;
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t want = cap - n;
        if (want > (1u << 30)) want = 1u << 30;
        int got = gzread(f, buf + n, (unsigned)want);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            if (zerr == Z_ERRNO) pl_err(err, errlen, "%s: read error (%s)", path, strerror(errno));
            else pl_err(err, errlen, "read error: %s", msg); /* zlib's message names the file */
            goto fail;
        }
        if (got == 0) {
            /* gzread returns 0 at EOF, and also when a gzip stream is cut short */
            int zerr;
            const char *msg = gzerror(f, &zerr);
            if (zerr != Z_OK && zerr != Z_BUF_ERROR) {
                pl_err(err, errlen, "read error: %s", msg);
                goto fail;
            }
            if (zerr == Z_BUF_ERROR) {
                pl_err(err, errlen, "%s: truncated gzip stream", path);
                goto fail;
            }
            break;
        }
        n += (size_t)got;
    }
    int zc = gzclose(f);
    if (zc != Z_OK) {
        free(buf);
        pl_err(err, errlen, "%s: %s", path, zc == Z_BUF_ERROR ? "truncated gzip stream" : "read error at close");
        return NULL;
    }
    *len = n;
    return buf;
fail:
    gzclose(f);
    free(buf);
    return NULL;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* lut (C, 256): normalised value of each byte per channel, computed in double and rounded
 * once, so the table is the same bits under any float code generation. */
static void norm_table(float lut[3][256], int c, const float *mean, const float *std)
{
    for (int ch = 0; ch < c; ch++)
        for (int p = 0; p < 256; p++) lut[ch][p] = (float)(((double)p / 255.0 - mean[ch]) / std[ch]);
}

/* ------------------------------------------------------------------ IDX */

/* Path of "<dir>/<base>.gz" if it exists, else "<dir>/<base>" if it exists; returns 0 or -1. */
static int idx_path(char *out, size_t outlen, const char *dir, const char *base)
{
    if (path_fmt(out, outlen, "%s/%s.gz", dir, base) == 0 && is_file(out)) return 0;
    return (path_fmt(out, outlen, "%s/%s", dir, base) == 0 && is_file(out)) ? 0 : -1;
}

static int idx_load(dataset *ds, ds_kind k, const char *dir, char *err, size_t errlen)
{
    const ds_info *info = &DS_TABLE[k];
    const char *pre = strcmp(ds->split, "train") == 0 ? "train" : "t10k";
    char base_img[64], base_lab[64], pimg[4096], plab[4096];
    snprintf(base_img, sizeof base_img, "%s-images-idx3-ubyte", pre);
    snprintf(base_lab, sizeof base_lab, "%s-labels-idx1-ubyte", pre);
    if (idx_path(pimg, sizeof pimg, dir, base_img) != 0)
        return pl_err(err, errlen, "%s: missing file %s/%s[.gz] (hint: %s)", info->name, dir, base_img, info->hint);
    if (idx_path(plab, sizeof plab, dir, base_lab) != 0)
        return pl_err(err, errlen, "%s: missing file %s/%s[.gz] (hint: %s)", info->name, dir, base_lab, info->hint);

    int rc = -1;
    size_t ni = 0, nl = 0;
    uint8_t *img = NULL, *lab = NULL;
    if (!(img = read_all_gz(pimg, &ni, err, errlen))) goto done;
    if (!(lab = read_all_gz(plab, &nl, err, errlen))) goto done;

    if (ni < 16) {
        pl_err(err, errlen, "%s: truncated header (%zu bytes, need 16)", pimg, ni);
        goto done;
    }
    if (be32(img) != IDX_MAGIC_IMAGES) {
        pl_err(err, errlen, "%s: bad magic 0x%08x (expected 0x%08x, an IDX image file)", pimg, be32(img),
               IDX_MAGIC_IMAGES);
        goto done;
    }
    uint32_t n = be32(img + 4), rows = be32(img + 8), cols = be32(img + 12);
    if (rows != (uint32_t)info->h || cols != (uint32_t)info->w) {
        pl_err(err, errlen, "%s: bad dims %ux%u (expected %dx%d for %s)", pimg, rows, cols, info->h, info->w,
               info->name);
        goto done;
    }
    if (n == 0 || (size_t)n * rows * cols > MAX_ELEMS) {
        pl_err(err, errlen, "%s: bad image count %u", pimg, n);
        goto done;
    }
    size_t need = (size_t)n * rows * cols;
    if (ni - 16 < need) {
        pl_err(err, errlen, "%s: truncated image data (%zu bytes for %u images of %ux%u, need %zu)", pimg, ni - 16,
               n, rows, cols, need);
        goto done;
    }
    if (nl < 8) {
        pl_err(err, errlen, "%s: truncated header (%zu bytes, need 8)", plab, nl);
        goto done;
    }
    if (be32(lab) != IDX_MAGIC_LABELS) {
        pl_err(err, errlen, "%s: bad magic 0x%08x (expected 0x%08x, an IDX label file)", plab, be32(lab),
               IDX_MAGIC_LABELS);
        goto done;
    }
    uint32_t nlab = be32(lab + 4);
    if (nlab != n) {
        pl_err(err, errlen, "count mismatch: %s has %u images but %s has %u labels", pimg, n, plab, nlab);
        goto done;
    }
    if (nl - 8 < n) {
        pl_err(err, errlen, "%s: truncated label data (%zu labels, need %u)", plab, nl - 8, n);
        goto done;
    }
    for (uint32_t i = 0; i < n; i++)
        if (lab[8 + i] >= info->classes) {
            pl_err(err, errlen, "%s: label %u of sample %u out of range [0, %d)", plab, lab[8 + i], i, info->classes);
            goto done;
        }

    ds->n = (int)n;
    ds->x = xalloc_floats(need);    // x (n, 1, H, W)
    ds->y = xmalloc(n);             // y (n)
    float lut[3][256];
    norm_table(lut, 1, ds->mean, ds->std);
    for (size_t i = 0; i < need; i++) ds->x[i] = lut[0][img[16 + i]];
    memcpy(ds->y, lab + 8, n);
    rc = 0;
done:
    free(img);
    free(lab);
    return rc;
}

/* ------------------------------------------------------------------ CIFAR */

/* Find <dir>/<file> or <dir>/<sub>/<file>; returns 0 with out set, or -1. */
static int cifar_path(char *out, size_t outlen, const char *dir, const char *sub, const char *file)
{
    if (path_fmt(out, outlen, "%s/%s", dir, file) == 0 && is_file(out)) return 0;
    return (path_fmt(out, outlen, "%s/%s/%s", dir, sub, file) == 0 && is_file(out)) ? 0 : -1;
}

static int cifar_load(dataset *ds, ds_kind k, const char *dir, char *err, size_t errlen)
{
    const ds_info *info = &DS_TABLE[k];
    int is100 = k == DS_CIFAR100, train = strcmp(ds->split, "train") == 0;
    const char *sub = is100 ? "cifar-100-binary" : "cifar-10-batches-bin";
    const char *files10_train[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                                   "data_batch_5.bin"};
    const char *files10_test[] = {"test_batch.bin"};
    const char *files100_train[] = {"train.bin"};
    const char *files100_test[] = {"test.bin"};
    const char **files = is100 ? (train ? files100_train : files100_test) : (train ? files10_train : files10_test);
    int nfiles = (!is100 && train) ? 5 : 1;
    size_t rec = (size_t)(is100 ? 2 : 1) + CIFAR_PIXELS;

    char paths[5][4096];
    size_t total = 0;
    for (int f = 0; f < nfiles; f++) {
        if (cifar_path(paths[f], sizeof paths[f], dir, sub, files[f]) != 0)
            return pl_err(err, errlen, "%s: missing file %s (looked in %s and %s/%s; hint: %s)", info->name, files[f],
                          dir, dir, sub, info->hint);
    }

    uint8_t *bufs[5] = {0};
    size_t lens[5] = {0};
    int rc = -1;
    for (int f = 0; f < nfiles; f++) {
        if (!(bufs[f] = read_all_gz(paths[f], &lens[f], err, errlen))) goto done;
        if (lens[f] == 0 || lens[f] % rec != 0) {
            pl_err(err, errlen, "%s: size %zu is not a positive multiple of the %zu-byte %s record (truncated or wrong file)",
                   paths[f], lens[f], rec, info->name);
            goto done;
        }
        const uint8_t *b = bufs[f];
        for (size_t r = 0; r < lens[f] / rec; r++) {
            const uint8_t *hdr = b + r * rec;
            int label = is100 ? hdr[1] : hdr[0];
            if (is100 && hdr[0] >= 20) {
                pl_err(err, errlen, "%s: coarse label %d of record %zu out of range [0, 20)", paths[f], hdr[0], r);
                goto done;
            }
            if (label >= info->classes) {
                pl_err(err, errlen, "%s: label %d of record %zu out of range [0, %d)", paths[f], label, r,
                       info->classes);
                goto done;
            }
        }
        total += lens[f] / rec;
    }
    if (total * CIFAR_PIXELS > MAX_ELEMS) {
        pl_err(err, errlen, "%s: %zu records is too many", info->name, total);
        goto done;
    }

    ds->n = (int)total;
    ds->x = xalloc_floats(total * CIFAR_PIXELS);  // x (n, 3, 32, 32)
    ds->y = xmalloc(total);                       // y (n)
    float lut[3][256];
    norm_table(lut, 3, ds->mean, ds->std);
    size_t s = 0;
    for (int f = 0; f < nfiles; f++) {
        for (size_t r = 0; r < lens[f] / rec; r++, s++) {
            const uint8_t *hdr = bufs[f] + r * rec, *px = hdr + (rec - CIFAR_PIXELS);
            ds->y[s] = is100 ? hdr[1] : hdr[0];
            float *xs = ds->x + s * CIFAR_PIXELS;
            for (int ch = 0; ch < 3; ch++)
                for (int i = 0; i < 1024; i++) xs[ch * 1024 + i] = lut[ch][px[ch * 1024 + i]];
        }
    }
    rc = 0;
done:
    for (int f = 0; f < nfiles; f++) free(bufs[f]);
    return rc;
}

/* ------------------------------------------------------------------ synthetic */

/* Class k's pattern (all integer arithmetic, identical everywhere):
 *   background 90 plus oriented stripes: orientation k % 4 (horizontal, vertical, diagonal,
 *     anti-diagonal), period 4 + 2 * ((k / 4) % 2), random phase, amplitude +64;
 *   a disc of radius r = max(1, min(H, W) / 8) and brightness +96 centred at the centre of
 *     grid cell k of a g x g grid (g = ceil(sqrt(classes))), jittered by up to +-r per axis;
 *   uniform noise in [-48, 48] per pixel and channel; clamped to [0, 255].
 * Pixel mean is then about 0.5 and std about 0.19, near the fixed 0.5 / 0.25 normalisation.
 * The stripes' phase and the disc's jitter make any single pixel a weak cue; the disc's
 * position makes the class mean informative. */
static void synth_sample(uint8_t *px, int k, const synth_opts *o, pl_rng *r)
{
    int H = (int)o->h, W = (int)o->w, C = (int)o->c, K = (int)o->classes;
    int g = 1;
    while (g * g < K) g++;
    int rad = (H < W ? H : W) / 8;
    if (rad < 1) rad = 1;
    int cy = (2 * (k / g) + 1) * H / (2 * g), cx = (2 * (k % g) + 1) * W / (2 * g);
    cy += (int)pl_rng_below(r, (uint32_t)(2 * rad + 1)) - rad;
    cx += (int)pl_rng_below(r, (uint32_t)(2 * rad + 1)) - rad;
    int period = 4 + 2 * ((k / 4) % 2);
    int phase = (int)pl_rng_below(r, (uint32_t)period);
    int orient = k % 4;
    for (int ch = 0; ch < C; ch++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                int t = orient == 0 ? i : orient == 1 ? j : orient == 2 ? i + j : i - j + 2 * W;
                int v = 90;
                if ((t + phase) % period < period / 2) v += 64;
                int dy = i - cy, dx = j - cx;
                if (dy * dy + dx * dx <= rad * rad + rad) v += 96;
                v += (int)pl_rng_below(r, 97) - 48;
                px[(ch * H + i) * W + j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

static int synth_load(dataset *ds, const char *name, char *err, size_t errlen)
{
    synth_opts o;
    if (synth_parse(name, &o, err, errlen) != 0) return -1;
    int train = strcmp(ds->split, "train") == 0;
    long n = train ? o.n : (o.n / 4 > 0 ? o.n / 4 : 1);
    pl_rng r;
    /* the test split draws from a different stream than train */
    pl_rng_seed(&r, train ? o.seed : o.seed ^ 0xD1B54A32D192ED03ULL);
    ds->n = (int)n;
    ds->y = xmalloc((size_t)n);  // y (n)
    int *lab = xmalloc((size_t)n * sizeof *lab);
    for (long i = 0; i < n; i++) lab[i] = (int)(i % o.classes);
    pl_rng_shuffle(&r, lab, (int)n);
    size_t S = (size_t)(o.c * o.h * o.w);
    ds->x = xalloc_floats((size_t)n * S);  // x (n, C, H, W)
    uint8_t *px = xmalloc(S);
    float lut[3][256];
    norm_table(lut, (int)o.c, ds->mean, ds->std);
    for (long i = 0; i < n; i++) {
        ds->y[i] = (uint8_t)lab[i];
        synth_sample(px, lab[i], &o, &r);
        float *xs = ds->x + (size_t)i * S;
        for (size_t q = 0; q < S; q++) xs[q] = lut[q / (size_t)(o.h * o.w)][px[q]];
    }
    free(px);
    free(lab);
    return 0;
}

/* ------------------------------------------------------------------ load / free / batch */

/* Pick the directory: dir, else $PRUNELAB_DATASETS/<name>, else the Debian location, else
 * ./var/datasets/<name>. Without an explicit dir, the first candidate that exists is used;
 * if none exists the error lists them all. Returns 0 or -1 with err. */
static int resolve_dir(char *out, size_t outlen, const ds_info *info, const char *dir, char *err, size_t errlen)
{
    if (dir && *dir) {
        if (path_fmt(out, outlen, "%s", dir) != 0) return pl_err(err, errlen, "%s: data directory path too long", info->name);
        if (!is_dir(dir))
            return pl_err(err, errlen, "%s: data directory %s does not exist (hint: %s)", info->name, dir, info->hint);
        return 0;
    }
    const char *cand[3];
    char envdir[4096], localdir[256];
    int nc = 0;
    const char *env = getenv("PRUNELAB_DATASETS");
    if (env && *env && path_fmt(envdir, sizeof envdir, "%s/%s", env, info->name) == 0) cand[nc++] = envdir;
    if (info->debian_dir) cand[nc++] = info->debian_dir;
    path_fmt(localdir, sizeof localdir, "var/datasets/%s", info->name);
    cand[nc++] = localdir;
    for (int i = 0; i < nc; i++)
        if (is_dir(cand[i]) && path_fmt(out, outlen, "%s", cand[i]) == 0) return 0;
    char list[3 * 4096 + 16] = "";
    for (int i = 0; i < nc; i++) {
        strcat(list, i ? ", " : "");
        strcat(list, cand[i]);
    }
    return pl_err(err, errlen, "%s: no data directory found (looked in %s; hint: %s)", info->name, list, info->hint);
}

int dataset_load(dataset *ds, const char *name, const char *dir, const char *split, char *err, size_t errlen)
{
    memset(ds, 0, sizeof *ds);
    if (name && tokens_is_name(name)) return dataset_load_tokens(ds, name, split, TOKENS_DEFAULT_SEQ_LEN, 0, err, errlen);
    int k = ds_kind_of(name, err, errlen);
    if (k < 0) return -1;
    if (!split || (strcmp(split, "train") != 0 && strcmp(split, "test") != 0))
        return pl_err(err, errlen, "%s: split must be \"train\" or \"test\", not \"%s\"", name, split ? split : "(null)");
    if (strlen(name) >= sizeof ds->name)
        return pl_err(err, errlen, "dataset name too long (max %zu characters): %s", sizeof ds->name - 1, name);
    synth_opts o;
    if (k == DS_SYNTHETIC && synth_parse(name, &o, err, errlen) != 0) return -1;
    /* the name is valid now, so shape and constants are known */
    const ds_info *info = &DS_TABLE[k];
    snprintf(ds->name, sizeof ds->name, "%s", k == DS_SYNTHETIC ? name : info->name);
    snprintf(ds->split, sizeof ds->split, "%s", split);
    dataset_shape(name, &ds->c, &ds->h, &ds->w, &ds->classes);
    dataset_norm(name, NULL, ds->mean, ds->std);
    ds->augment = (k == DS_CIFAR10 || k == DS_CIFAR100) && strcmp(split, "train") == 0;

    int rc;
    if (k == DS_SYNTHETIC) {
        rc = synth_load(ds, name, err, errlen);
    } else {
        char d[4096];
        rc = resolve_dir(d, sizeof d, info, dir, err, errlen);
        if (rc == 0) rc = (k == DS_MNIST || k == DS_FASHION) ? idx_load(ds, k, d, err, errlen)
                                                             : cifar_load(ds, k, d, err, errlen);
    }
    if (rc != 0) {
        dataset_free(ds);
        return -1;
    }
    return 0;
}

int dataset_load_tokens(dataset *ds, const char *name, const char *split, int seq_len, long max_tokens, char *err,
                        size_t errlen)
{
    memset(ds, 0, sizeof *ds);
    if (!name || !tokens_is_name(name))
        return pl_err(err, errlen, "%s is not a token dataset (tokens:DIR, text:FILE, synthetic-lm[:...])",
                      name ? name : "(null)");
    if (seq_len < 2 || seq_len > 65536) return pl_err(err, errlen, "seq_len must be in [2, 65536] (got %d)", seq_len);
    const char *sp = split && strcmp(split, "val") == 0 ? "test" : split;
    if (!sp || (strcmp(sp, "train") != 0 && strcmp(sp, "test") != 0))
        return pl_err(err, errlen, "%s: split must be \"train\" or \"test\", not \"%s\"", name, split ? split : "(null)");
    if (strlen(name) >= sizeof ds->name)
        return pl_err(err, errlen, "dataset name too long (max %zu characters): %s", sizeof ds->name - 1, name);
    tokens_set *ts = xcalloc(1, sizeof *ts);
    if (tokens_open(ts, name, seq_len, err, errlen) != 0) {
        free(ts);
        return -1;
    }
    snprintf(ds->name, sizeof ds->name, "%s", name);
    snprintf(ds->split, sizeof ds->split, "%s", sp);
    ds->tokens = ts;
    ds->tsplit = tokens_get_split(ts, sp);
    ds->T = seq_len;
    ds->vocab = ts->vocab;
    ds->bytes_per_token = ts->bytes_per_token;
    size_t n = tokens_eval_count(ds->tsplit, seq_len, max_tokens > 0 ? (size_t)max_tokens : 0);
    ds->n = n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
    if (ds->n < 1) {
        dataset_free(ds);
        return pl_err(err, errlen, "%s: the %s split has fewer than %d tokens (one window of seq_len)", name, sp,
                      seq_len);
    }
    return 0;
}

void dataset_windows(const dataset *ds, const int *idx, int B, int *ids)
{
    const tokens_split *s = ds->tsplit;
    size_t T = (size_t)ds->T;
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)idx[b] * T;
        for (size_t t = 0; t < T; t++) ids[(size_t)b * T + t] = (int)tokens_id(s, o + t);
    }
}

void dataset_free(dataset *ds)
{
    if (!ds) return;
    if (ds->tokens) {
        tokens_free(ds->tokens);
        free(ds->tokens);
    }
    free(ds->x);
    free(ds->y);
    memset(ds, 0, sizeof *ds);
}

void dataset_crop_flip(float *out, const float *in, int c, int h, int w, int dy, int dx, int flip)
{
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < h; i++) {
            int si = i + dy;
            float *o = out + ((size_t)ch * h + i) * w;
            if (si < 0 || si >= h) {
                memset(o, 0, (size_t)w * sizeof *o);
                continue;
            }
            const float *row = in + ((size_t)ch * h + si) * w;
            for (int j = 0; j < w; j++) {
                int sj = (flip ? w - 1 - j : j) + dx;
                o[j] = (sj < 0 || sj >= w) ? 0.0f : row[sj];
            }
        }
}

void dataset_batch(const dataset *ds, const int *idx, int B, float *xout, int *yout, pl_rng *rng, int augment)
{
    size_t S = (size_t)ds->c * ds->h * ds->w;
    int aug = augment && ds->augment && rng;
    for (int b = 0; b < B; b++) {
        const float *src = ds->x + (size_t)idx[b] * S;   // src (C, H, W)
        float *dst = xout + (size_t)b * S;               // dst (C, H, W)
        if (aug) {
            int dy = (int)pl_rng_below(rng, 2 * DATASET_PAD + 1) - DATASET_PAD;
            int dx = (int)pl_rng_below(rng, 2 * DATASET_PAD + 1) - DATASET_PAD;
            int flip = (int)pl_rng_below(rng, 2);
            dataset_crop_flip(dst, src, ds->c, ds->h, ds->w, dy, dx, flip);
        } else {
            memcpy(dst, src, S * sizeof *dst);
        }
        if (yout) yout[b] = ds->y[idx[b]];
    }
}
