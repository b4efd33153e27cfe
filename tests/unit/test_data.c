/* test_data.c — dataset loading (IDX gz/raw, CIFAR-10/100 binary, synthetic), refusals,
 * augmentation and the synthetic set's determinism and separability.
 * Files are written into a fresh mkdtemp directory per test; the real Fashion-MNIST test
 * split is checked only when /usr/share/datasets/fashion-mnist is installed. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"

#define FM_MEAN 0.2860f
#define FM_STD 0.3530f

/* ------------------------------------------------------------------ helpers */

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/pl_test_data_XXXXXX";
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

static void write_file(const char *path, const void *buf, size_t len, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, buf, (unsigned)len), (int)len);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
        ck_assert_int_eq(fclose(f), 0);
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Pixel value of image i at (r, c) in our hand-made IDX files. */
static uint8_t idx_pixel(int i, int r, int c) { return (uint8_t)((i * 37 + r * 5 + c * 3) & 255); }

/* Write an IDX image file of n images (rows x cols) and a label file of nl labels (label i =
 * (i * 3 + 1) % 10, except bad_label >= 0 replaces label 0), with magic values and a data
 * byte count that can be tampered with. name is "train" or "t10k". */
typedef struct {
    uint32_t img_magic, lab_magic;
    int n, nl, rows, cols;
    long img_cut;    /* bytes removed from the end of the image file */
    int bad_label;
    int gz;
} idx_spec;

static idx_spec idx_default(int n, int gz)
{
    return (idx_spec){0x803, 0x801, n, n, 28, 28, 0, -1, gz};
}

static void write_idx(const char *dir, const char *pre, idx_spec s)
{
    size_t ni = 16 + (size_t)s.n * s.rows * s.cols, nl = 8 + (size_t)s.nl;
    uint8_t *img = malloc(ni), *lab = malloc(nl);
    put_be32(img, s.img_magic);
    put_be32(img + 4, (uint32_t)s.n);
    put_be32(img + 8, (uint32_t)s.rows);
    put_be32(img + 12, (uint32_t)s.cols);
    for (int i = 0; i < s.n; i++)
        for (int r = 0; r < s.rows; r++)
            for (int c = 0; c < s.cols; c++) img[16 + ((size_t)i * s.rows + r) * s.cols + c] = idx_pixel(i, r, c);
    put_be32(lab, s.lab_magic);
    put_be32(lab + 4, (uint32_t)s.nl);
    for (int i = 0; i < s.nl; i++) lab[8 + i] = (uint8_t)((i * 3 + 1) % 10);
    if (s.bad_label >= 0) lab[8] = (uint8_t)s.bad_label;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte%s", dir, pre, s.gz ? ".gz" : "");
    write_file(p, img, ni - (size_t)s.img_cut, s.gz);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte%s", dir, pre, s.gz ? ".gz" : "");
    write_file(p, lab, nl, s.gz);
    free(img);
    free(lab);
}

/* Load and expect a refusal whose message contains every non-NULL substring. */
static void expect_refusal(const char *name, const char *dir, const char *split, const char *sub1, const char *sub2)
{
    dataset ds;
    char err[PL_ERRLEN] = "";
    int rc = dataset_load(&ds, name, dir, split, err, sizeof err);
    if (getenv("PL_TEST_VERBOSE")) printf("refused: %s\n", err);
    ck_assert_msg(rc == -1, "expected refusal for %s in %s (%s)", name, dir ? dir : "-", split);
    ck_assert_msg(sub1 == NULL || strstr(err, sub1), "error '%s' lacks '%s'", err, sub1);
    ck_assert_msg(sub2 == NULL || strstr(err, sub2), "error '%s' lacks '%s'", err, sub2);
    ck_assert_ptr_null(ds.x);
    ck_assert_ptr_null(ds.y);
    ck_assert_int_eq(ds.n, 0);
}

/* ------------------------------------------------------------------ IDX */

static void check_idx_values(const dataset *ds, int n, float mean, float std)
{
    ck_assert_int_eq(ds->n, n);
    ck_assert_int_eq(ds->c, 1);
    ck_assert_int_eq(ds->h, 28);
    ck_assert_int_eq(ds->w, 28);
    ck_assert_int_eq(ds->classes, 10);
    ck_assert_int_eq(ds->augment, 0);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(ds->y[i], (i * 3 + 1) % 10);
        for (int r = 0; r < 28; r++)
            for (int c = 0; c < 28; c++) {
                float want = ((float)idx_pixel(i, r, c) / 255.0f - mean) / std;
                float got = ds->x[((size_t)i * 28 + r) * 28 + c];
                ck_assert_msg(fabsf(got - want) < 1e-6f, "pixel %d,%d,%d: %g vs %g", i, r, c, got, want);
            }
    }
}

START_TEST(test_idx_gz_and_raw)
{
    char *dir = make_tmpdir();
    write_idx(dir, "train", idx_default(7, 1));   /* gzip */
    write_idx(dir, "t10k", idx_default(5, 0));    /* raw */
    dataset ds;
    char err[PL_ERRLEN];
    ck_assert_msg(dataset_load(&ds, "fashion-mnist", dir, "train", err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(ds.name, "fashion-mnist");
    ck_assert_str_eq(ds.split, "train");
    ck_assert_float_eq(ds.mean[0], FM_MEAN);
    ck_assert_float_eq(ds.std[0], FM_STD);
    check_idx_values(&ds, 7, FM_MEAN, FM_STD);
    dataset_free(&ds);
    ck_assert_ptr_null(ds.x);
    dataset_free(&ds); /* twice is harmless */
    dataset_free(NULL);

    ck_assert_msg(dataset_load(&ds, "fashion-mnist", dir, "test", err, sizeof err) == 0, "%s", err);
    check_idx_values(&ds, 5, FM_MEAN, FM_STD);
    dataset_free(&ds);

    /* the same files under the MNIST name use MNIST's constants */
    ck_assert_msg(dataset_load(&ds, "mnist", dir, "test", err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(ds.name, "mnist");
    check_idx_values(&ds, 5, 0.1307f, 0.3081f);
    dataset_free(&ds);

    /* when both foo.gz and foo exist, the .gz wins: add a raw train set of another size */
    write_idx(dir, "train", idx_default(3, 0));
    ck_assert_msg(dataset_load(&ds, "fashion-mnist", dir, "train", err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.n, 7);
    dataset_free(&ds);
    rm_rf(dir);
    free(dir);
}
END_TEST

START_TEST(test_idx_env_dir)
{
    char *root = make_tmpdir();
    char sub[512];
    snprintf(sub, sizeof sub, "%s/mnist", root);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    write_idx(sub, "t10k", idx_default(4, 1));
    const char *old = getenv("PRUNELAB_DATASETS");
    char *saved = old ? strdup(old) : NULL;
    setenv("PRUNELAB_DATASETS", root, 1);
    dataset ds;
    char err[PL_ERRLEN];
    ck_assert_msg(dataset_load(&ds, "mnist", NULL, "test", err, sizeof err) == 0, "%s", err);
    check_idx_values(&ds, 4, 0.1307f, 0.3081f);
    dataset_free(&ds);
    /* env dir chosen but its train files are missing: the error names the file */
    expect_refusal("mnist", NULL, "train", "missing file", "train-images-idx3-ubyte");
    if (saved) setenv("PRUNELAB_DATASETS", saved, 1);
    else unsetenv("PRUNELAB_DATASETS");
    free(saved);
    rm_rf(root);
    free(root);
}
END_TEST

START_TEST(test_idx_refusals)
{
    char *dir = make_tmpdir();
    idx_spec s;

    s = idx_default(4, 0);
    s.img_magic = 0x804;
    write_idx(dir, "t10k", s);
    expect_refusal("fashion-mnist", dir, "test", "bad magic", "t10k-images-idx3-ubyte");

    s = idx_default(4, 1);
    s.lab_magic = 0x803;
    write_idx(dir, "train", s);
    expect_refusal("fashion-mnist", dir, "train", "bad magic", "train-labels-idx1-ubyte.gz");
    rm_rf(dir);
    free(dir);

    dir = make_tmpdir();
    s = idx_default(4, 0);
    s.nl = 3;
    write_idx(dir, "t10k", s);
    expect_refusal("fashion-mnist", dir, "test", "count mismatch", "4 images");

    s = idx_default(4, 1);
    s.img_cut = 100;
    write_idx(dir, "train", s);
    expect_refusal("fashion-mnist", dir, "train", "truncated image data", "train-images-idx3-ubyte.gz");
    rm_rf(dir);
    free(dir);

    dir = make_tmpdir();
    s = idx_default(4, 0);
    s.img_cut = 1;
    write_idx(dir, "t10k", s);
    expect_refusal("fashion-mnist", dir, "test", "truncated image data", "t10k-images-idx3-ubyte");

    s = idx_default(4, 1);
    s.bad_label = 10;
    write_idx(dir, "train", s);
    expect_refusal("fashion-mnist", dir, "train", "label 10", "out of range");
    rm_rf(dir);
    free(dir);

    dir = make_tmpdir();
    s = idx_default(2, 0);
    s.rows = 27;
    write_idx(dir, "t10k", s);
    expect_refusal("fashion-mnist", dir, "test", "bad dims", "27x28");

    /* a gzip stream cut in the middle */
    write_idx(dir, "train", idx_default(20, 1));
    char p[512];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(truncate(p, st.st_size / 2), 0);
    expect_refusal("fashion-mnist", dir, "train", "truncated", "train-images-idx3-ubyte.gz");
    rm_rf(dir);
    free(dir);

    /* missing files: the file and the hint */
    dir = make_tmpdir();
    expect_refusal("fashion-mnist", dir, "test", "t10k-images-idx3-ubyte", "apt-get install dataset-fashion-mnist");
    s = idx_default(2, 0);
    write_idx(dir, "t10k", s);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", dir);
    ck_assert_int_eq(unlink(p), 0);
    expect_refusal("fashion-mnist", dir, "test", "missing file", "t10k-labels-idx1-ubyte");
    expect_refusal("fashion-mnist", dir, "test", "--data-dir", "PRUNELAB_DATASETS");
    char nodir[600];
    snprintf(nodir, sizeof nodir, "%s/nope", dir);
    expect_refusal("fashion-mnist", nodir, "test", "does not exist", "nope");
    rm_rf(dir);
    free(dir);

    /* names and splits */
    expect_refusal("imagenet", NULL, "train", "unknown dataset", "imagenet");
    expect_refusal("synthetic", NULL, "valid", "split", "valid");
    expect_refusal("synthetic", NULL, NULL, "split", NULL);
}
END_TEST

/* ------------------------------------------------------------------ CIFAR */

/* Record r of file f: label (r + f) % classes; pixel (ch, i) = 10 + 40 * ch + (i + r) % 7. */
static uint8_t cifar_pixel(int r, int ch, int i) { return (uint8_t)(10 + 40 * ch + (i + r) % 7); }

static void write_cifar(const char *path, int records, int is100, int fileno_, int extra_bytes, int bad_fine)
{
    size_t rec = (size_t)(is100 ? 2 : 1) + 3072;
    size_t len = rec * (size_t)records + (size_t)extra_bytes;
    uint8_t *buf = calloc(len, 1);
    for (int r = 0; r < records; r++) {
        uint8_t *p = buf + rec * (size_t)r;
        if (is100) {
            p[0] = (uint8_t)((r * 7 + fileno_) % 20);  /* coarse */
            p[1] = (uint8_t)((r * 13 + 50 + fileno_) % 100); /* fine */
            if (bad_fine && r == 1) p[1] = 100;
        } else {
            p[0] = (uint8_t)((r + fileno_) % 10);
        }
        uint8_t *px = p + rec - 3072;
        for (int ch = 0; ch < 3; ch++)
            for (int i = 0; i < 1024; i++) px[ch * 1024 + i] = cifar_pixel(r, ch, i);
    }
    write_file(path, buf, len, 0);
    free(buf);
}

static const float C10_MEAN[3] = {0.4914f, 0.4822f, 0.4465f}, C10_STD[3] = {0.2470f, 0.2435f, 0.2616f};
static const float C100_MEAN[3] = {0.5071f, 0.4865f, 0.4409f}, C100_STD[3] = {0.2673f, 0.2564f, 0.2762f};

static void check_cifar_pixels(const dataset *ds, int s, int r, const float *mean, const float *std)
{
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < 1024; i += 97) {
            float want = ((float)cifar_pixel(r, ch, i) / 255.0f - mean[ch]) / std[ch];
            float got = ds->x[(size_t)s * 3072 + (size_t)ch * 1024 + i];
            ck_assert_msg(fabsf(got - want) < 1e-6f, "sample %d ch %d px %d: %g vs %g", s, ch, i, got, want);
        }
}

START_TEST(test_cifar10)
{
    char *dir = make_tmpdir();
    char sub[512], p[600];
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    for (int f = 1; f <= 5; f++) {
        snprintf(p, sizeof p, "%s/data_batch_%d.bin", sub, f);
        write_cifar(p, 2, 0, f, 0, 0);
    }
    snprintf(p, sizeof p, "%s/test_batch.bin", sub);
    write_cifar(p, 3, 0, 0, 0, 0);

    dataset ds;
    char err[PL_ERRLEN];
    ck_assert_msg(dataset_load(&ds, "cifar10", dir, "train", err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(ds.name, "cifar10");
    ck_assert_int_eq(ds.n, 10);
    ck_assert_int_eq(ds.c, 3);
    ck_assert_int_eq(ds.h, 32);
    ck_assert_int_eq(ds.w, 32);
    ck_assert_int_eq(ds.classes, 10);
    ck_assert_int_eq(ds.augment, 1);
    for (int f = 1; f <= 5; f++)
        for (int r = 0; r < 2; r++) {
            int s = (f - 1) * 2 + r;
            ck_assert_int_eq(ds.y[s], (r + f) % 10);
            check_cifar_pixels(&ds, s, r, C10_MEAN, C10_STD);
        }
    /* channel-major: R plane first (10 + ...), then G (50 + ...), B (90 + ...) */
    ck_assert_float_eq_tol(ds.x[0], (10.0f / 255.0f - C10_MEAN[0]) / C10_STD[0], 1e-6f);
    ck_assert_float_eq_tol(ds.x[1024], (50.0f / 255.0f - C10_MEAN[1]) / C10_STD[1], 1e-6f);
    ck_assert_float_eq_tol(ds.x[2048], (90.0f / 255.0f - C10_MEAN[2]) / C10_STD[2], 1e-6f);
    dataset_free(&ds);

    ck_assert_msg(dataset_load(&ds, "cifar-10", dir, "test", err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.n, 3);
    ck_assert_int_eq(ds.augment, 0);
    for (int r = 0; r < 3; r++) check_cifar_pixels(&ds, r, r, C10_MEAN, C10_STD);
    dataset_free(&ds);

    /* size not a multiple of the record */
    write_cifar(p, 3, 0, 0, 1, 0);
    expect_refusal("cifar10", dir, "test", "not a positive multiple", "test_batch.bin");
    write_cifar(p, 0, 0, 0, 0, 0);
    expect_refusal("cifar10", dir, "test", "not a positive multiple", "test_batch.bin");
    /* a missing batch is named */
    snprintf(p, sizeof p, "%s/data_batch_3.bin", sub);
    ck_assert_int_eq(unlink(p), 0);
    expect_refusal("cifar10", dir, "train", "missing file data_batch_3.bin", "cifar-10-batches-bin");
    rm_rf(dir);
    free(dir);
}
END_TEST

START_TEST(test_cifar100)
{
    char *dir = make_tmpdir();
    char p[600];
    snprintf(p, sizeof p, "%s/train.bin", dir);   /* directly in the dir this time */
    write_cifar(p, 6, 1, 0, 0, 0);
    snprintf(p, sizeof p, "%s/test.bin", dir);
    write_cifar(p, 4, 1, 1, 0, 0);

    dataset ds;
    char err[PL_ERRLEN];
    ck_assert_msg(dataset_load(&ds, "cifar100", dir, "train", err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.n, 6);
    ck_assert_int_eq(ds.classes, 100);
    ck_assert_int_eq(ds.augment, 1);
    for (int r = 0; r < 6; r++) {
        ck_assert_int_eq(ds.y[r], (r * 13 + 50) % 100); /* the fine label, not the coarse one */
        check_cifar_pixels(&ds, r, r, C100_MEAN, C100_STD);
    }
    dataset_free(&ds);
    ck_assert_msg(dataset_load(&ds, "cifar100", dir, "test", err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.n, 4);
    ck_assert_int_eq(ds.y[0], 51);
    ck_assert_int_eq(ds.augment, 0);
    dataset_free(&ds);

    /* a CIFAR-10-sized record file is not a multiple of 3074 */
    write_cifar(p, 4, 0, 0, 0, 0);
    expect_refusal("cifar100", dir, "test", "3074-byte", "test.bin");
    write_cifar(p, 4, 1, 0, 0, 1);
    expect_refusal("cifar100", dir, "test", "label 100", "out of range");
    ck_assert_int_eq(unlink(p), 0);
    expect_refusal("cifar100", dir, "test", "missing file test.bin", "cifar-100-binary");
    rm_rf(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------------ augmentation */

START_TEST(test_crop_flip)
{
    enum { C = 2, H = 5, W = 6 };
    float in[C * H * W], a[C * H * W], b[C * H * W];
    for (int i = 0; i < C * H * W; i++) in[i] = (float)(i + 1);
    /* identity */
    dataset_crop_flip(a, in, C, H, W, 0, 0, 0);
    ck_assert_int_eq(memcmp(a, in, sizeof in), 0);
    /* flip twice = identity */
    dataset_crop_flip(a, in, C, H, W, 0, 0, 1);
    ck_assert_int_ne(memcmp(a, in, sizeof in), 0);
    ck_assert_float_eq(a[0], in[W - 1]);
    dataset_crop_flip(b, a, C, H, W, 0, 0, 1);
    ck_assert_int_eq(memcmp(b, in, sizeof in), 0);
    /* shift: out[i][j] = in[i+dy][j+dx], zero outside */
    dataset_crop_flip(a, in, C, H, W, 2, -1, 0);
    for (int ch = 0; ch < C; ch++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                int si = i + 2, sj = j - 1;
                float want = (si < H && sj >= 0) ? in[(ch * H + si) * W + sj] : 0.0f;
                ck_assert_float_eq(a[(ch * H + i) * W + j], want);
            }
    /* a shift beyond the image gives all zeros */
    dataset_crop_flip(a, in, C, H, W, 0, W, 0);
    for (int i = 0; i < C * H * W; i++) ck_assert_float_eq(a[i], 0.0f);
}
END_TEST

START_TEST(test_batch_augment)
{
    dataset ds;
    char err[PL_ERRLEN];
    ck_assert_msg(dataset_load(&ds, "synthetic:n=64,classes=4,c=3,h=12,w=10,seed=3", NULL, "train", err,
                               sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.augment, 0);
    ds.augment = 1; /* exercise the cifar path on a small set */
    enum { B = 24 };
    size_t S = (size_t)ds.c * ds.h * ds.w;
    int idx[B], y[B];
    for (int b = 0; b < B; b++) idx[b] = (b * 5 + 3) % ds.n;
    float *xo = malloc(B * S * sizeof(float) + sizeof(float)), *xo2 = malloc(B * S * sizeof(float));
    float *cand = malloc(S * sizeof(float));
    xo[B * S] = 12345.0f; /* guard: nothing written past B samples */

    /* without augmentation: plain copies */
    dataset_batch(&ds, idx, B, xo, y, NULL, 0);
    for (int b = 0; b < B; b++) {
        ck_assert_int_eq(memcmp(xo + b * S, ds.x + (size_t)idx[b] * S, S * sizeof(float)), 0);
        ck_assert_int_eq(y[b], ds.y[idx[b]]);
    }
    /* augment requested but no rng: plain copies too */
    dataset_batch(&ds, idx, B, xo2, NULL, NULL, 1);
    ck_assert_int_eq(memcmp(xo, xo2, B * S * sizeof(float)), 0);

    /* with augmentation: each sample is exactly one crop/flip of its source */
    pl_rng r1, r2;
    pl_rng_seed(&r1, 99);
    pl_rng_seed(&r2, 99);
    dataset_batch(&ds, idx, B, xo, y, &r1, 1);
    dataset_batch(&ds, idx, B, xo2, NULL, &r2, 1);
    ck_assert_int_eq(memcmp(xo, xo2, B * S * sizeof(float)), 0); /* same rng, same batch */
    ck_assert_float_eq(xo[B * S], 12345.0f);
    int flips = 0, shifts = 0;
    pl_rng_seed(&r2, 99);
    for (int b = 0; b < B; b++) {
        ck_assert_int_eq(y[b], ds.y[idx[b]]);
        int dy = (int)pl_rng_below(&r2, 2 * DATASET_PAD + 1) - DATASET_PAD;
        int dx = (int)pl_rng_below(&r2, 2 * DATASET_PAD + 1) - DATASET_PAD;
        int flip = (int)pl_rng_below(&r2, 2);
        dataset_crop_flip(cand, ds.x + (size_t)idx[b] * S, ds.c, ds.h, ds.w, dy, dx, flip);
        ck_assert_int_eq(memcmp(cand, xo + b * S, S * sizeof(float)), 0);
        flips += flip;
        shifts += dy != 0 || dx != 0;
        /* and independently: every output value is a source value or the zero padding */
        const float *src = ds.x + (size_t)idx[b] * S;
        for (int ch = 0; ch < ds.c; ch++)
            for (int i = 0; i < ds.h; i++)
                for (int j = 0; j < ds.w; j++) {
                    int si = i + dy, sj = (flip ? ds.w - 1 - j : j) + dx;
                    float v = xo[b * S + ((size_t)ch * ds.h + i) * ds.w + j];
                    if (si < 0 || si >= ds.h || sj < 0 || sj >= ds.w) ck_assert_float_eq(v, 0.0f);
                    else ck_assert_float_eq(v, src[((size_t)ch * ds.h + si) * ds.w + sj]);
                }
    }
    ck_assert_int_gt(flips, 0);
    ck_assert_int_lt(flips, B);
    ck_assert_int_gt(shifts, B / 2);
    ds.augment = 0;
    /* ds.augment = 0 disables augmentation even when asked */
    dataset_batch(&ds, idx, B, xo2, NULL, &r1, 1);
    for (int b = 0; b < B; b++)
        ck_assert_int_eq(memcmp(xo2 + b * S, ds.x + (size_t)idx[b] * S, S * sizeof(float)), 0);
    free(xo);
    free(xo2);
    free(cand);
    dataset_free(&ds);
}
END_TEST

/* ------------------------------------------------------------------ synthetic */

static uint64_t fnv1a(const void *p, size_t n, uint64_t h)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

START_TEST(test_synthetic_determinism)
{
    dataset a, b, t;
    char err[PL_ERRLEN];
    ck_assert_msg(dataset_load(&a, "synthetic", NULL, "train", err, sizeof err) == 0, "%s", err);
    ck_assert_msg(dataset_load(&b, "synthetic:seed=1,n=2048", NULL, "train", err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(a.name, "synthetic");
    ck_assert_str_eq(b.name, "synthetic:seed=1,n=2048");
    ck_assert_int_eq(a.n, 2048);
    ck_assert_int_eq(a.c, 1);
    ck_assert_int_eq(a.h, 16);
    ck_assert_int_eq(a.w, 16);
    ck_assert_int_eq(a.classes, 4);
    ck_assert_int_eq(a.augment, 0);
    ck_assert_float_eq(a.mean[0], 0.5f);
    ck_assert_float_eq(a.std[0], 0.25f);
    size_t S = 256;
    ck_assert_int_eq(memcmp(a.x, b.x, (size_t)a.n * S * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(a.y, b.y, (size_t)a.n), 0);
    uint64_t h1 = fnv1a(a.x, 16 * S * sizeof(float), fnv1a(a.y, 16, 1469598103934665603ULL));
    dataset_free(&a);
    ck_assert_msg(dataset_load(&a, "synthetic", NULL, "train", err, sizeof err) == 0, "%s", err);
    uint64_t h2 = fnv1a(a.x, 16 * S * sizeof(float), fnv1a(a.y, 16, 1469598103934665603ULL));
    ck_assert_uint_eq(h1, h2);
    /* The generator uses integer arithmetic and pl_rng only, and the normalisation table is
     * computed in double and rounded once to float, so these bytes are the same on every
     * machine and compiler setting. A deliberate change to the generator must update this. */
    ck_assert_msg(h1 == 0x7933517420a9d3d0ULL, "synthetic checksum changed: %016llx", (unsigned long long)h1);

    /* pixels are uint8 levels normalised with 0.5 / 0.25 */
    for (size_t i = 0; i < 16 * S; i++) {
        float p = (a.x[i] * 0.25f + 0.5f) * 255.0f;
        ck_assert_msg(fabsf(p - roundf(p)) < 1e-3f && p > -0.5f && p < 255.5f, "value %g is not a byte level", p);
    }

    /* the test split: n/4, a different stream */
    ck_assert_msg(dataset_load(&t, "synthetic", NULL, "test", err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(t.n, 512);
    ck_assert_int_ne(memcmp(a.x, t.x, 16 * S * sizeof(float)), 0);
    dataset_free(&t);

    /* another seed gives other data */
    ck_assert_msg(dataset_load(&t, "synthetic:seed=2", NULL, "train", err, sizeof err) == 0, "%s", err);
    ck_assert_int_ne(memcmp(a.x, t.x, 16 * S * sizeof(float)), 0);
    dataset_free(&t);
    dataset_free(&a);
    dataset_free(&b);
}
END_TEST

START_TEST(test_synthetic_options)
{
    dataset ds;
    char err[PL_ERRLEN];
    const char *name = "synthetic:n=100,classes=10,c=3,h=8,w=12,seed=7";
    ck_assert_msg(dataset_load(&ds, name, NULL, "test", err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(ds.name, name);
    ck_assert_str_eq(ds.split, "test");
    ck_assert_int_eq(ds.n, 25);
    ck_assert_int_eq(ds.c, 3);
    ck_assert_int_eq(ds.h, 8);
    ck_assert_int_eq(ds.w, 12);
    ck_assert_int_eq(ds.classes, 10);
    for (int ch = 0; ch < 3; ch++) {
        ck_assert_float_eq(ds.mean[ch], 0.5f);
        ck_assert_float_eq(ds.std[ch], 0.25f);
    }
    for (int i = 0; i < ds.n; i++) ck_assert_int_lt(ds.y[i], 10);
    dataset_free(&ds);

    expect_refusal("synthetic:n=abc", NULL, "train", "not a non-negative integer", "abc");
    expect_refusal("synthetic:n=-5", NULL, "train", "not a non-negative integer", NULL);
    expect_refusal("synthetic:foo=1", NULL, "train", "unknown option", "foo");
    expect_refusal("synthetic:c=4", NULL, "train", "out of range", "c=4");
    expect_refusal("synthetic:classes=1", NULL, "train", "out of range", NULL);
    expect_refusal("synthetic:n=3", NULL, "train", "smaller than classes", NULL);
    expect_refusal("synthetic:n=", NULL, "train", "not k=v", NULL);
    expect_refusal("synthetic:n=8,,c=1", NULL, "train", "bad option list", NULL);
    expect_refusal("synthetic:n=8,n=9", NULL, "train", "given twice", NULL);
    expect_refusal("synthetic:h=2", NULL, "train", "out of range", "h=2");
    expect_refusal("synthetic:n=12x", NULL, "train", "not a non-negative integer", NULL);
}
END_TEST

/* Nearest class mean on train, evaluated on test: accuracy. Also the best single-pixel
 * Bayes classifier (16 value bins per pixel, majority class per bin). */
START_TEST(test_synthetic_separability)
{
    dataset tr, te;
    char err[PL_ERRLEN];
    ck_assert_msg(dataset_load(&tr, "synthetic", NULL, "train", err, sizeof err) == 0, "%s", err);
    ck_assert_msg(dataset_load(&te, "synthetic", NULL, "test", err, sizeof err) == 0, "%s", err);
    int K = tr.classes, S = tr.c * tr.h * tr.w;

    /* balance */
    int cnt_tr[4] = {0}, cnt_te[4] = {0};
    for (int i = 0; i < tr.n; i++) cnt_tr[tr.y[i]]++;
    for (int i = 0; i < te.n; i++) cnt_te[te.y[i]]++;
    for (int k = 0; k < K; k++) {
        ck_assert_int_eq(cnt_tr[k], tr.n / K);
        ck_assert_int_eq(cnt_te[k], te.n / K);
    }
    /* labels are shuffled, not in blocks */
    int runs = 0;
    for (int i = 1; i < tr.n; i++) runs += tr.y[i] != tr.y[i - 1];
    ck_assert_int_gt(runs, tr.n / 2);

    /* nearest class mean */
    double *mu = calloc((size_t)K * S, sizeof(double));
    for (int i = 0; i < tr.n; i++)
        for (int q = 0; q < S; q++) mu[(size_t)tr.y[i] * S + q] += tr.x[(size_t)i * S + q];
    for (int k = 0; k < K; k++)
        for (int q = 0; q < S; q++) mu[(size_t)k * S + q] /= cnt_tr[k];
    int correct = 0;
    for (int i = 0; i < te.n; i++) {
        int best = -1;
        double bd = 1e300;
        for (int k = 0; k < K; k++) {
            double d = 0;
            for (int q = 0; q < S; q++) {
                double e = te.x[(size_t)i * S + q] - mu[(size_t)k * S + q];
                d += e * e;
            }
            if (d < bd) bd = d, best = k;
        }
        correct += best == te.y[i];
    }
    double ncm = (double)correct / te.n;

    /* best single pixel */
    enum { BINS = 16 };
    double best_px = 0;
    int best_q = -1;
    for (int q = 0; q < S; q++) {
        int hist[BINS][4] = {{0}};
        for (int i = 0; i < tr.n; i++) {
            int bin = (int)((tr.x[(size_t)i * S + q] * 0.25f + 0.5f) * 255.0f + 0.5f) / (256 / BINS);
            hist[bin][tr.y[i]]++;
        }
        int vote[BINS];
        for (int bin = 0; bin < BINS; bin++) {
            vote[bin] = 0;
            for (int k = 1; k < K; k++)
                if (hist[bin][k] > hist[bin][vote[bin]]) vote[bin] = k;
        }
        int ok = 0;
        for (int i = 0; i < te.n; i++) {
            int bin = (int)((te.x[(size_t)i * S + q] * 0.25f + 0.5f) * 255.0f + 0.5f) / (256 / BINS);
            ok += vote[bin] == te.y[i];
        }
        double acc = (double)ok / te.n;
        if (acc > best_px) best_px = acc, best_q = q;
    }
    printf("synthetic: nearest-class-mean test accuracy %.3f, best single pixel (%d) %.3f, chance %.3f\n", ncm,
           best_q, best_px, 1.0 / K);
    ck_assert_msg(ncm > 0.85, "nearest class mean only %.3f", ncm);
    ck_assert_msg(best_px < 0.95, "a single pixel reaches %.3f", best_px);
    ck_assert_msg(best_px < ncm, "a single pixel (%.3f) beats the class means (%.3f)", best_px, ncm);
    free(mu);
    dataset_free(&tr);
    dataset_free(&te);
}
END_TEST

/* ------------------------------------------------------------------ names, constants */

START_TEST(test_norm_and_shape)
{
    int c, h, w, k;
    float m[3], s[3];
    ck_assert_int_eq(dataset_norm("fashion-mnist", &c, m, s), 0);
    ck_assert_int_eq(c, 1);
    ck_assert_float_eq(m[0], 0.2860f);
    ck_assert_float_eq(s[0], 0.3530f);
    ck_assert_int_eq(dataset_norm("mnist", &c, m, s), 0);
    ck_assert_float_eq(m[0], 0.1307f);
    ck_assert_float_eq(s[0], 0.3081f);
    ck_assert_int_eq(dataset_norm("cifar10", &c, m, s), 0);
    ck_assert_int_eq(c, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_float_eq(m[i], C10_MEAN[i]);
        ck_assert_float_eq(s[i], C10_STD[i]);
    }
    ck_assert_int_eq(dataset_norm("cifar100", &c, m, s), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_float_eq(m[i], C100_MEAN[i]);
        ck_assert_float_eq(s[i], C100_STD[i]);
    }
    ck_assert_int_eq(dataset_norm("synthetic:c=2", &c, m, s), 0);
    ck_assert_int_eq(c, 2);
    ck_assert_float_eq(m[1], 0.5f);
    ck_assert_float_eq(s[1], 0.25f);
    ck_assert_int_eq(dataset_norm("svhn", &c, m, s), -1);
    ck_assert_int_eq(dataset_norm("synthetic:c=9", &c, m, s), -1);
    ck_assert_int_eq(dataset_norm(NULL, &c, m, s), -1);

    ck_assert_int_eq(dataset_shape("fashion-mnist", &c, &h, &w, &k), 0);
    ck_assert(c == 1 && h == 28 && w == 28 && k == 10);
    ck_assert_int_eq(dataset_shape("cifar100", &c, &h, &w, &k), 0);
    ck_assert(c == 3 && h == 32 && w == 32 && k == 100);
    ck_assert_int_eq(dataset_shape("synthetic:h=20,w=8,classes=6", &c, &h, &w, &k), 0);
    ck_assert(c == 1 && h == 20 && w == 8 && k == 6);
    ck_assert_int_eq(dataset_shape("cifar1000", &c, &h, &w, &k), -1);
}
END_TEST

START_TEST(test_real_fashion_mnist)
{
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    if (stat(dir, &st) != 0) {
        printf("skipped: %s not installed (apt-get install dataset-fashion-mnist)\n", dir);
        return;
    }
    dataset ds;
    char err[PL_ERRLEN];
    ck_assert_msg(dataset_load(&ds, "fashion-mnist", dir, "test", err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.n, 10000);
    ck_assert_int_eq(ds.c, 1);
    ck_assert_int_eq(ds.h, 28);
    ck_assert_int_eq(ds.w, 28);
    ck_assert_int_eq(ds.classes, 10);
    int cnt[10] = {0};
    for (int i = 0; i < ds.n; i++) cnt[ds.y[i]]++;
    for (int k = 0; k < 10; k++) ck_assert_int_eq(cnt[k], 1000);
    /* with the dataset's own constants the test split is near zero mean, unit variance */
    double sum = 0, sq = 0;
    size_t N = (size_t)ds.n * 784;
    for (size_t i = 0; i < N; i++) sum += ds.x[i], sq += (double)ds.x[i] * ds.x[i];
    double mean = sum / N, var = sq / N - mean * mean;
    printf("fashion-mnist test: mean %.4f, std %.4f after normalisation\n", mean, sqrt(var));
    ck_assert_double_lt(fabs(mean), 0.02);
    ck_assert_double_lt(fabs(sqrt(var) - 1.0), 0.02);
    dataset_free(&ds);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_idx_gz_and_raw);
    tcase_add_test(tc, test_idx_env_dir);
    tcase_add_test(tc, test_idx_refusals);
    tcase_add_test(tc, test_cifar10);
    tcase_add_test(tc, test_cifar100);
    tcase_add_test(tc, test_crop_flip);
    tcase_add_test(tc, test_batch_augment);
    tcase_add_test(tc, test_synthetic_determinism);
    tcase_add_test(tc, test_synthetic_options);
    tcase_add_test(tc, test_synthetic_separability);
    tcase_add_test(tc, test_norm_and_shape);
    tcase_add_test(tc, test_real_fashion_mnist);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(data_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
