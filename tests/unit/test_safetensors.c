/* test_safetensors.c — unit tests for engine/safetensors.c.
 *
 * Round trip through the writer and reader (several dtypes, 0-d scalars, empty tensors,
 * metadata), a file laid out byte by byte the way PyTorch's safetensors writes it, F16/BF16/F64
 * conversion against known values and an exhaustive naive reference, one test per refusal of
 * the reader, st_load of large files (header checked before anything else is read, the rest
 * mapped, so neither junk nor a valid file costs its size in memory), and a mutation loop over
 * a valid file's header that must never crash. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "safetensors.h"
#include "util.h"

/* ------------------------------------------------------------------ helpers */

/* A file from a header string (unpadded) and data_len bytes of data (0, 1, 2, ...).
 * Returns a malloc'd buffer, length in *len. */
static unsigned char *mk_file(const char *json, size_t data_len, size_t *len)
{
    size_t n = strlen(json);
    *len = 8 + n + data_len;
    unsigned char *b = xmalloc(*len);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    for (size_t i = 0; i < data_len; i++) b[8 + n + i] = (unsigned char)i;
    return b;
}

/* Parses the file and asserts it is refused with an error containing want. */
static void expect_refused_buf(unsigned char *b, size_t len, const char *want)
{
    char err[PL_ERRLEN] = "";
    st_file *f = st_parse(b, len, err, sizeof err);
    if (f) st_free(f);
    ck_assert_msg(f == NULL, "file accepted, expected an error containing \"%s\"", want);
    ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
}

static void expect_refused(const char *json, size_t data_len, const char *want)
{
    size_t len;
    unsigned char *b = mk_file(json, data_len, &len);
    expect_refused_buf(b, len, want);
}

static st_file *expect_ok(const char *json, size_t data_len)
{
    size_t len;
    unsigned char *b = mk_file(json, data_len, &len);
    char err[PL_ERRLEN] = "";
    st_file *f = st_parse(b, len, err, sizeof err);
    ck_assert_msg(f != NULL, "refused: %s", err);
    return f;
}

static uint64_t rd_len(const unsigned char *b)
{
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    return n;
}

/* Checks the invariants every accepted file must satisfy. */
static void check_invariants(const st_file *f)
{
    uint64_t n = rd_len(f->buf);
    const unsigned char *data = f->buf + 8 + n;
    size_t at = 0;
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->tensors[i];
        ck_assert_int_ge(t->ndim, 0);
        ck_assert_int_le(t->ndim, ST_MAX_DIMS);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        ck_assert_int_eq(numel, t->numel);
        ck_assert_uint_eq(t->nbytes, (size_t)numel * st_dtype_size(t->dtype));
        ck_assert_ptr_eq(t->data, data + at);
        at += t->nbytes;
    }
    ck_assert_uint_eq(8 + n + at, f->len);
}

/* ------------------------------------------------------------------ round trip */

static float f32v[6] = {1.5f, -2.25f, 0.0f, 3.0e-5f, -1e30f, 7.0f}; /* (2, 3) */
static uint16_t f16v[4] = {0x3c00, 0xc000, 0x0001, 0x7c00};        /* (4) */
static uint16_t bf16v[4] = {0x3f80, 0xc049, 0x0000, 0x8000};       /* (2, 2) */
static double f64v[3] = {0.1, -1e300, 2.0};                        /* (3) */
static int64_t i64v[1] = {-1234567890123LL};                       /* () */
static int32_t i32v[1] = {0};                                      /* (0, 5): empty */
static uint8_t u8v[5] = {0, 1, 127, 128, 255};                     /* (5): odd size */
static int8_t i8v[6] = {-128, -1, 0, 1, 2, 127};                   /* (2, 1, 3) */
static uint8_t boolv[3] = {1, 0, 1};                               /* (3) */
static float scal[1] = {42.0f};                                    /* () */

typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[3];
    const void *data;
    size_t nbytes;
} case_t;

static const case_t cases[] = {
    {"w.f32", ST_F32, 2, {2, 3}, f32v, sizeof f32v},
    {"w.f16", ST_F16, 1, {4}, f16v, sizeof f16v},
    {"w.bf16", ST_BF16, 2, {2, 2}, bf16v, sizeof bf16v},
    {"w.f64", ST_F64, 1, {3}, f64v, sizeof f64v},
    {"step", ST_I64, 0, {0}, i64v, sizeof i64v},
    {"empty", ST_I32, 2, {0, 5}, i32v, 0},
    {"bytes", ST_U8, 1, {5}, u8v, sizeof u8v},
    {"i8 \"quoted\" \xc3\xa9", ST_I8, 3, {2, 1, 3}, i8v, sizeof i8v},
    {"mask", ST_BOOL, 1, {3}, boolv, sizeof boolv},
    {"empty2", ST_F32, 1, {0}, NULL, 0},
    {"scalar", ST_F32, 0, {0}, scal, sizeof scal},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static const char *meta_json = "{\"patch_size\": 4, \"note\": \"tab\\there \\u00e9\"}";

static st_writer *make_writer(void)
{
    st_writer *w = st_writer_new();
    for (int i = 0; i < N_CASES; i++)
        st_writer_add(w, cases[i].name, cases[i].dtype, cases[i].ndim, cases[i].shape,
                      cases[i].data);
    st_writer_meta(w, "format", "pt");
    st_writer_meta(w, "prunelab", meta_json);
    st_writer_meta(w, "empty", "");
    return w;
}

static void check_round_trip(const st_file *f)
{
    ck_assert_int_eq(f->n, N_CASES);
    for (int i = 0; i < N_CASES; i++) {
        const st_tensor *t = &f->tensors[i]; /* order added == offset order */
        ck_assert_str_eq(t->name, cases[i].name);
        ck_assert_ptr_eq(st_find(f, cases[i].name), t);
        ck_assert_int_eq(t->dtype, cases[i].dtype);
        ck_assert_int_eq(t->ndim, cases[i].ndim);
        for (int d = 0; d < t->ndim; d++) ck_assert_int_eq(t->shape[d], cases[i].shape[d]);
        ck_assert_uint_eq(t->nbytes, cases[i].nbytes);
        if (t->nbytes) ck_assert_int_eq(memcmp(t->data, cases[i].data, t->nbytes), 0);
    }
    ck_assert_int_eq(st_find(f, "scalar")->numel, 1);
    ck_assert_int_eq(st_find(f, "empty")->numel, 0);
    ck_assert_ptr_null(st_find(f, "nope"));
    ck_assert_int_eq(f->n_meta, 3);
    ck_assert_str_eq(f->meta_keys[0], "format");
    ck_assert_str_eq(f->meta_keys[1], "prunelab");
    ck_assert_str_eq(st_meta(f, "format"), "pt");
    ck_assert_str_eq(st_meta(f, "prunelab"), meta_json);
    ck_assert_str_eq(st_meta(f, "empty"), "");
    ck_assert_ptr_null(st_meta(f, "absent"));
    check_invariants(f);
}

START_TEST(test_round_trip_memory)
{
    st_writer *w = make_writer();
    char err[PL_ERRLEN] = "";
    size_t len = 0;
    unsigned char *buf = st_writer_serialize(w, &len, err, sizeof err);
    ck_assert_msg(buf != NULL, "%s", err);
    st_writer_free(w);

    uint64_t n = rd_len(buf);
    ck_assert_uint_eq(n % 8, 0);
    ck_assert_int_eq(buf[8], '{');
    /* padding is spaces after the closing brace */
    size_t last = 8 + n - 1;
    while (buf[last] == ' ') last--;
    ck_assert_int_eq(buf[last], '}');
    ck_assert_uint_lt(8 + n - 1 - last, 8);
    size_t data_bytes = 0;
    for (int i = 0; i < N_CASES; i++) data_bytes += cases[i].nbytes;
    ck_assert_uint_eq(len, 8 + n + data_bytes);
    /* __metadata__ comes first in the header */
    ck_assert_int_eq(memcmp(buf + 8, "{\"__metadata__\":{\"format\":\"pt\"", 30), 0);

    st_file *f = st_parse(buf, len, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    check_round_trip(f);
    /* data buffer is 8-byte aligned relative to the file start */
    ck_assert_uint_eq(((const unsigned char *)f->tensors[0].data - f->buf) % 8, 0);
    st_free(f);
}
END_TEST

START_TEST(test_round_trip_file)
{
    char dir[] = "/tmp/st_test_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    st_writer *w = make_writer();
    char err[PL_ERRLEN] = "";
    ck_assert_msg(st_writer_save(w, path, err, sizeof err) == 0, "%s", err);
    st_writer_free(w);

    st_file *f = st_load(path, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    check_round_trip(f);
    st_free(f);

    /* no temporary file is left beside it */
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    ck_assert_int_ne(access(tmp, F_OK), 0);
    unlink(path);

    ck_assert_ptr_null(st_load(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "ckpt.safetensors"));
    rmdir(dir);
}
END_TEST

START_TEST(test_round_trip_empty)
{
    st_writer *w = st_writer_new();
    char err[PL_ERRLEN] = "";
    size_t len = 0;
    unsigned char *buf = st_writer_serialize(w, &len, err, sizeof err);
    st_writer_free(w);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(len, 16); /* "{}" padded to 8 */
    ck_assert_int_eq(memcmp(buf, "\x08\0\0\0\0\0\0\0{}      ", 16), 0);
    st_file *f = st_parse(buf, len, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_int_eq(f->n, 0);
    ck_assert_int_eq(f->n_meta, 0);
    st_free(f);
}
END_TEST

START_TEST(test_writer_meta_replace)
{
    st_writer *w = st_writer_new();
    st_writer_meta(w, "a", "1");
    st_writer_meta(w, "b", "2");
    st_writer_meta(w, "a", "3");
    char err[PL_ERRLEN] = "";
    size_t len = 0;
    unsigned char *buf = st_writer_serialize(w, &len, err, sizeof err);
    st_writer_free(w);
    st_file *f = st_parse(buf, len, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_int_eq(f->n_meta, 2);
    ck_assert_str_eq(f->meta_keys[0], "a");
    ck_assert_str_eq(st_meta(f, "a"), "3");
    st_free(f);
}
END_TEST

START_TEST(test_writer_refuses)
{
    static const float x[2] = {1, 2};
    const int64_t shape[1] = {2};
    const int64_t neg[1] = {-2};
    struct {
        const char *name;
        st_dtype dtype;
        int ndim;
        const int64_t *shape;
        const char *want;
    } bad[] = {
        {"w", ST_F32, 1, shape, "added twice"},
        {"__metadata__", ST_F32, 1, shape, "reserved"},
        {"v", ST_DTYPE_COUNT, 1, shape, "invalid dtype"},
        {"v", ST_F32, 9, shape, "at most 8"},
        {"v", ST_F32, 1, neg, "negative"},
        {"bad\xff", ST_F32, 1, shape, "UTF-8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st_writer *w = st_writer_new();
        st_writer_add(w, "w", ST_F32, 1, shape, x);
        st_writer_add(w, bad[i].name, bad[i].dtype, bad[i].ndim, bad[i].shape, x);
        char err[PL_ERRLEN] = "";
        size_t len = 0;
        ck_assert_ptr_null(st_writer_serialize(w, &len, err, sizeof err));
        ck_assert_msg(strstr(err, bad[i].want), "case %zu: \"%s\"", i, err);
        ck_assert_int_eq(st_writer_save(w, "/tmp/st_never_written", err, sizeof err), -1);
        ck_assert_int_ne(access("/tmp/st_never_written", F_OK), 0);
        st_writer_free(w);
    }
}
END_TEST

/* ------------------------------------------------------------------ PyTorch layout */

/* What safetensors.torch.save_file({"weight": f32 (2,2), "bias": f32 (2), "step": i64 (),
 * "h": f16 (3)}, metadata={"format": "pt"}) writes: compact JSON with __metadata__ first,
 * tensors sorted by descending dtype alignment then name, header padded with spaces to a
 * multiple of 8, little-endian data back to back. */
static const char torch_header[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
    "\"bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
    "\"weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,32]},"
    "\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[32,38]}}";

static const unsigned char torch_data[38] = {
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* step = 7 */
    0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0xc0, 0xbf, /* bias = 0.5, -1.5 */
    0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x80, 0x3e, /* weight = 2, 0.25, */
    0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0xc0, /*          3, -4 */
    0x00, 0x3c, 0x00, 0xc0, 0x55, 0x35,             /* h = 1, -2, 0.333251953125 */
};

static unsigned char *torch_file(size_t *len)
{
    size_t hl = sizeof torch_header - 1;
    ck_assert_uint_eq(hl, 261);
    size_t padded = 264; /* 261 + 3 spaces */
    *len = 8 + padded + sizeof torch_data;
    unsigned char *b = xmalloc(*len);
    const unsigned char lenbytes[8] = {0x08, 0x01, 0, 0, 0, 0, 0, 0}; /* 264 LE */
    memcpy(b, lenbytes, 8);
    memcpy(b + 8, torch_header, hl);
    memcpy(b + 8 + hl, "   ", 3);
    memcpy(b + 8 + padded, torch_data, sizeof torch_data);
    return b;
}

START_TEST(test_torch_layout)
{
    size_t len;
    unsigned char *b = torch_file(&len);
    char err[PL_ERRLEN] = "";
    st_file *f = st_parse(b, len, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_int_eq(f->n, 4);
    ck_assert_str_eq(f->tensors[0].name, "step");
    ck_assert_str_eq(f->tensors[3].name, "h");
    ck_assert_str_eq(st_meta(f, "format"), "pt");

    const st_tensor *step = st_find(f, "step");
    ck_assert_int_eq(step->dtype, ST_I64);
    ck_assert_int_eq(step->ndim, 0);
    ck_assert_int_eq(step->numel, 1);
    int64_t sv;
    memcpy(&sv, step->data, 8);
    ck_assert_int_eq(sv, 7);

    float out[4];
    const st_tensor *wt = st_find(f, "weight");
    ck_assert_int_eq(wt->ndim, 2);
    ck_assert_int_eq(wt->shape[0], 2);
    ck_assert_int_eq(wt->shape[1], 2);
    ck_assert_int_eq(st_to_f32(wt, out, err, sizeof err), 0);
    ck_assert(out[0] == 2.0f && out[1] == 0.25f && out[2] == 3.0f && out[3] == -4.0f);
    ck_assert_int_eq(st_to_f32(st_find(f, "bias"), out, err, sizeof err), 0);
    ck_assert(out[0] == 0.5f && out[1] == -1.5f);
    ck_assert_int_eq(st_to_f32(st_find(f, "h"), out, err, sizeof err), 0);
    ck_assert(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.333251953125f);
    ck_assert_int_eq(st_to_f32(step, out, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "step"));
    st_free(f);

    /* Our writer, given the tensors in the same order, writes the same bytes. */
    size_t tl;
    unsigned char *ref = torch_file(&tl);
    const unsigned char *d = ref + 8 + 264;
    st_writer *w = st_writer_new();
    st_writer_meta(w, "format", "pt");
    st_writer_add(w, "step", ST_I64, 0, NULL, d);
    st_writer_add(w, "bias", ST_F32, 1, (int64_t[]){2}, d + 8);
    st_writer_add(w, "weight", ST_F32, 2, (int64_t[]){2, 2}, d + 16);
    st_writer_add(w, "h", ST_F16, 1, (int64_t[]){3}, d + 32);
    size_t ml = 0;
    unsigned char *mine = st_writer_serialize(w, &ml, err, sizeof err);
    ck_assert_msg(mine != NULL, "%s", err);
    ck_assert_uint_eq(ml, tl);
    ck_assert_int_eq(memcmp(mine, ref, tl), 0);
    free(mine);
    free(ref);
    st_writer_free(w);
}
END_TEST

/* ------------------------------------------------------------------ conversion */

static st_tensor mk_tensor(st_dtype d, const void *data, int64_t n)
{
    st_tensor t;
    memset(&t, 0, sizeof t);
    t.name = "t";
    t.dtype = d;
    t.ndim = 1;
    t.shape[0] = n;
    t.numel = n;
    t.nbytes = (size_t)n * st_dtype_size(d);
    t.data = data;
    return t;
}

START_TEST(test_f16_known)
{
    static const struct {
        uint16_t h;
        float f;
    } k[] = {
        {0x3c00, 1.0f},
        {0xc000, -2.0f},
        {0x3555, 0.333251953125f},
        {0x7bff, 65504.0f},                /* largest normal */
        {0x0400, 6.103515625e-05f},        /* smallest normal, 2^-14 */
        {0x0001, 5.9604644775390625e-08f}, /* smallest subnormal, 2^-24 */
        {0x03ff, 6.097555160522461e-05f},  /* largest subnormal, 1023 * 2^-24 */
        {0x8001, -5.9604644775390625e-08f},
        {0x0200, 3.0517578125e-05f}, /* 2^-15 */
        {0x0000, 0.0f},
    };
    int n = (int)(sizeof k / sizeof k[0]);
    unsigned char raw[2 * 16];
    for (int i = 0; i < n; i++) {
        raw[2 * i] = (unsigned char)(k[i].h & 0xff);
        raw[2 * i + 1] = (unsigned char)(k[i].h >> 8);
    }
    float out[16];
    st_tensor t = mk_tensor(ST_F16, raw, n);
    char err[PL_ERRLEN];
    ck_assert_int_eq(st_to_f32(&t, out, err, sizeof err), 0);
    for (int i = 0; i < n; i++)
        ck_assert_msg(out[i] == k[i].f, "0x%04x -> %.9g, want %.9g", k[i].h, out[i], k[i].f);

    /* signed zero, infinities, NaN */
    const unsigned char sp[8] = {0x00, 0x80, 0x00, 0x7c, 0x00, 0xfc, 0x00, 0x7e};
    t = mk_tensor(ST_F16, sp, 4);
    ck_assert_int_eq(st_to_f32(&t, out, err, sizeof err), 0);
    ck_assert(out[0] == 0.0f && signbit(out[0]));
    ck_assert(isinf(out[1]) && out[1] > 0);
    ck_assert(isinf(out[2]) && out[2] < 0);
    ck_assert(isnan(out[3]));
}
END_TEST

/* Naive reference: (-1)^s * 2^(e-15) * (1 + m/1024), or 2^-14 * m/1024 for e = 0. */
static double f16_ref(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)m, -24);
    else v = ldexp(1.0 + m / 1024.0, e - 15);
    return s ? -v : v;
}

START_TEST(test_f16_exhaustive)
{
    unsigned char *raw = xmalloc(2 * 65536);
    float *out = xmalloc(sizeof(float) * 65536);
    for (int i = 0; i < 65536; i++) {
        raw[2 * i] = (unsigned char)(i & 0xff);
        raw[2 * i + 1] = (unsigned char)(i >> 8);
    }
    st_tensor t = mk_tensor(ST_F16, raw, 65536);
    char err[PL_ERRLEN];
    ck_assert_int_eq(st_to_f32(&t, out, err, sizeof err), 0);
    int bad = 0;
    for (int i = 0; i < 65536; i++) {
        double r = f16_ref((uint16_t)i);
        if (isnan(r)) bad += !isnan(out[i]);
        else bad += !((double)out[i] == r && !signbit(out[i]) == !signbit(r));
    }
    ck_assert_int_eq(bad, 0);
    free(raw);
    free(out);
}
END_TEST

START_TEST(test_bf16_f64_f32)
{
    const unsigned char bf[12] = {0x80, 0x3f, 0x49, 0xc0, 0x80, 0x7f,
                                  0x01, 0x00, 0xc0, 0x7f, 0x00, 0x80};
    float out[8];
    char err[PL_ERRLEN];
    st_tensor t = mk_tensor(ST_BF16, bf, 6);
    ck_assert_int_eq(st_to_f32(&t, out, err, sizeof err), 0);
    ck_assert(out[0] == 1.0f);
    ck_assert(out[1] == -3.140625f);
    ck_assert(isinf(out[2]) && out[2] > 0);
    ck_assert(out[3] == ldexpf(1.0f, -133)); /* bf16 subnormal */
    ck_assert(isnan(out[4]));
    ck_assert(out[5] == 0.0f && signbit(out[5]));

    const double d[4] = {0.1, -1e300, 1e-50, 3.5};
    t = mk_tensor(ST_F64, d, 4);
    ck_assert_int_eq(st_to_f32(&t, out, err, sizeof err), 0);
    ck_assert(out[0] == (float)0.1);
    ck_assert(isinf(out[1]) && out[1] < 0);
    ck_assert(out[2] == 0.0f);
    ck_assert(out[3] == 3.5f);

    /* F32 from an unaligned address */
    unsigned char un[1 + 8];
    const float fv[2] = {-7.25f, 1e-40f};
    memcpy(un + 1, fv, 8);
    t = mk_tensor(ST_F32, un + 1, 2);
    ck_assert_int_eq(st_to_f32(&t, out, err, sizeof err), 0);
    ck_assert(out[0] == -7.25f && out[1] == 1e-40f);

    static const st_dtype nonfloat[] = {ST_I64, ST_I32, ST_U8, ST_I8, ST_BOOL};
    for (int i = 0; i < 5; i++) {
        t = mk_tensor(nonfloat[i], un, 1);
        err[0] = 0;
        ck_assert_int_eq(st_to_f32(&t, out, err, sizeof err), -1);
        ck_assert_ptr_nonnull(strstr(err, "not a floating"));
    }
    ck_assert_str_eq(st_dtype_name(ST_BF16), "BF16");
    ck_assert_uint_eq(st_dtype_size(ST_F64), 8);
    ck_assert_uint_eq(st_dtype_size(ST_BOOL), 1);
}
END_TEST

/* ------------------------------------------------------------------ refusals */

#define T_F32_2 "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":"

START_TEST(test_refuse_short_file)
{
    unsigned char *b = xmalloc(5);
    memcpy(b, "\x02\0\0\0\0", 5);
    expect_refused_buf(b, 5, "shorter than the 8-byte");
    expect_refused_buf(xmalloc(1), 0, "file is 0 bytes");
}
END_TEST

START_TEST(test_refuse_header_past_end)
{
    size_t len;
    unsigned char *b = mk_file("{}", 0, &len);
    b[0] = 11; /* claims 11 bytes, file has 2 */
    expect_refused_buf(b, len, "runs past the end of the file");
    b = mk_file("{}", 0, &len);
    memset(b, 0xff, 8); /* 2^64 - 1 */
    expect_refused_buf(b, len, "too large");
    b = mk_file("{}", 0, &len);
    memcpy(b, "\x01\xe1\xf5\x05\0\0\0\0", 8); /* 100000001 */
    expect_refused_buf(b, len, "too large");
}
END_TEST

START_TEST(test_refuse_invalid_json)
{
    /* error position: line 2, column of the '}' */
    expect_refused("{\"a\":\n }", 0, "invalid JSON header at line 2, column 2");
    expect_refused("{\"a\": [}", 0, "invalid JSON");
    expect_refused("", 0, "invalid JSON");
    expect_refused("{} x", 0, "invalid JSON");
    /* invalid UTF-8 inside a key */
    expect_refused("{\"\xff\":{}}", 0, "invalid JSON header at line 1");
    /* a raw NUL byte in the header */
    size_t len;
    unsigned char *b = mk_file("{\"a\":1}", 0, &len);
    b[8 + 2] = 0;
    expect_refused_buf(b, len, "invalid JSON");
}
END_TEST

START_TEST(test_refuse_not_object)
{
    expect_refused("[1, 2]", 0, "header is not a JSON object (got an array)");
    expect_refused("\"x\"", 0, "not a JSON object (got a string)");
    expect_refused("42  ", 0, "not a JSON object");
}
END_TEST

START_TEST(test_refuse_entry_not_object)
{
    expect_refused("{\"w\": 3}", 0, "tensor 'w': entry must be an object, got an integer");
    expect_refused("{\"w\": [\"F32\", [2], [0, 8]]}", 8, "tensor 'w': entry must be an object");
}
END_TEST

START_TEST(test_refuse_missing_fields)
{
    expect_refused("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                   "tensor 'w': missing \"dtype\"");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8,
                   "tensor 'w': missing \"shape\"");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
                   "tensor 'w': missing \"data_offsets\"");
}
END_TEST

START_TEST(test_refuse_unknown_dtype)
{
    expect_refused("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
                   "tensor 'w': unknown dtype \"F8_E4M3\"");
    expect_refused("{\"w\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                   "unknown dtype \"f32\"");
    expect_refused("{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                   "tensor 'w': dtype must be a string");
}
END_TEST

START_TEST(test_refuse_bad_dims)
{
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,0]}}", 0,
                   "tensor 'w': shape[1] is negative (-1)");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
                   "tensor 'w': shape[0] must be an integer, got a real number");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
                   "shape[0] must be an integer, got a string");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                   "\"data_offsets\":[0,4]}}",
                   4, "tensor 'w': shape has 9 dims, at most 8");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
                   "tensor 'w': shape must be an array");
    /* exactly 8 dims is fine */
    st_file *f = expect_ok("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,2],"
                           "\"data_offsets\":[0,8]}}",
                           8);
    ck_assert_int_eq(f->tensors[0].ndim, 8);
    st_free(f);
}
END_TEST

START_TEST(test_refuse_shape_overflow)
{
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                   "\"data_offsets\":[0,8]}}",
                   8, "tensor 'w': shape element count overflows");
    /* numel fits in int64 but numel * 8 does not */
    expect_refused("{\"w\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952,2],"
                   "\"data_offsets\":[0,8]}}",
                   8, "tensor 'w': shape element count overflows");
    /* a zero dimension after a huge one: zero elements, no overflow */
    st_file *f = expect_ok("{\"w\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,0],"
                           "\"data_offsets\":[0,0]}}",
                           0);
    ck_assert_int_eq(f->tensors[0].numel, 0);
    st_free(f);
}
END_TEST

START_TEST(test_refuse_duplicate_keys)
{
    expect_refused("{\"w\":" T_F32_2 "[0,8]},\"w\":" T_F32_2 "[8,16]}}", 16,
                   "duplicate object key");
    expect_refused("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate");
    expect_refused("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, "duplicate");
}
END_TEST

START_TEST(test_refuse_bad_offsets)
{
    expect_refused("{\"w\":" T_F32_2 "[0]}}", 8, "tensor 'w': data_offsets must be [begin, end]");
    expect_refused("{\"w\":" T_F32_2 "[0,8,8]}}", 8, "data_offsets must be [begin, end]");
    expect_refused("{\"w\":" T_F32_2 "\"0-8\"}}", 8, "data_offsets must be [begin, end]");
    expect_refused("{\"w\":" T_F32_2 "[-8,0]}}", 8, "two non-negative integers");
    expect_refused("{\"w\":" T_F32_2 "[0,8.0]}}", 8, "two non-negative integers");
    expect_refused("{\"w\":" T_F32_2 "[8,0]}}", 8,
                   "tensor 'w': data_offsets [8, 0] has begin > end");
}
END_TEST

START_TEST(test_refuse_byte_count)
{
    expect_refused("{\"w\":" T_F32_2 "[0,4]}}", 4, "tensor 'w': data_offsets [0, 4] hold 4 bytes "
                                                   "but F32 shape needs 8");
    expect_refused("{\"w\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                   "needs 2");
}
END_TEST

START_TEST(test_refuse_overlap)
{
    expect_refused("{\"a\":" T_F32_2 "[0,8]},\"b\":" T_F32_2 "[4,12]}}", 12,
                   "tensor 'b': data_offsets [4, 12] overlap tensor 'a'");
    /* two tensors on the same bytes */
    expect_refused("{\"a\":" T_F32_2 "[0,8]},\"b\":" T_F32_2 "[0,8]}}", 8, "overlap tensor");
}
END_TEST

START_TEST(test_refuse_hole)
{
    expect_refused("{\"a\":" T_F32_2 "[0,8]},\"b\":" T_F32_2 "[12,20]}}", 20,
                   "tensor 'b': data_offsets [12, 20] leave a hole of 4 bytes after tensor 'a'");
}
END_TEST

START_TEST(test_refuse_not_from_zero)
{
    expect_refused("{\"a\":" T_F32_2 "[4,12]}}", 12,
                   "tensor 'a': data_offsets [4, 12] leave a hole: "
                   "the first tensor must start at 0");
}
END_TEST

START_TEST(test_refuse_not_to_end)
{
    expect_refused("{\"a\":" T_F32_2 "[0,8]}}", 12,
                   "data buffer has 4 trailing bytes not covered by any tensor (last tensor 'a'");
    expect_refused("{}", 3, "data buffer has 3 bytes but the header lists no tensors");
    expect_refused("{\"a\":" T_F32_2 "[0,8]}}", 4,
                   "tensor 'a': data_offsets [0, 8] run past the end of the data buffer (4 bytes)");
}
END_TEST

START_TEST(test_refuse_bad_metadata)
{
    expect_refused("{\"__metadata__\":{\"format\":\"pt\",\"epoch\":3}}", 0,
                   "__metadata__ value for key 'epoch' must be a string, got an integer");
    expect_refused("{\"__metadata__\":{\"x\":null}}", 0, "got null");
    expect_refused("{\"__metadata__\":[\"pt\"]}", 0, "__metadata__ must be an object of strings");
}
END_TEST

START_TEST(test_zero_element_tensors)
{
    /* empty tensors anywhere, including at the same offset as each other and at the end */
    st_file *f = expect_ok("{\"e0\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[0,0]},"
                           "\"a\":" T_F32_2 "[0,8]},"
                           "\"e1\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[8,8]},"
                           "\"e2\":{\"dtype\":\"U8\",\"shape\":[0,2,2],\"data_offsets\":[8,8]},"
                           "\"b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[8,9]},"
                           "\"e3\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[9,9]}}",
                           9);
    ck_assert_int_eq(f->n, 6);
    ck_assert_str_eq(f->tensors[0].name, "e0");
    ck_assert_str_eq(f->tensors[1].name, "a");
    ck_assert_str_eq(f->tensors[4].name, "b");
    ck_assert_str_eq(f->tensors[5].name, "e3");
    ck_assert_int_eq(st_find(f, "e1")->numel, 0);
    ck_assert_uint_eq(st_find(f, "e2")->nbytes, 0);
    ck_assert_int_eq(*(const unsigned char *)st_find(f, "b")->data, 8);
    check_invariants(f);
    st_free(f);

    /* header order differs from offset order: tensors come back in offset order */
    f = expect_ok("{\"b\":" T_F32_2 "[8,16]},\"a\":" T_F32_2 "[0,8]}}", 16);
    ck_assert_str_eq(f->tensors[0].name, "a");
    ck_assert_str_eq(f->tensors[1].name, "b");
    check_invariants(f);
    st_free(f);

    /* an empty header with no data, and unknown extra fields, are fine */
    f = expect_ok("{}", 0);
    ck_assert_int_eq(f->n, 0);
    st_free(f);
    f = expect_ok("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 1);
    ck_assert_int_eq(f->n, 1);
    st_free(f);
}
END_TEST

/* ------------------------------------------------------------------ mutation */

START_TEST(test_mutation_loop)
{
    st_writer *w = make_writer();
    char err[PL_ERRLEN];
    size_t len = 0;
    unsigned char *orig = st_writer_serialize(w, &len, err, sizeof err);
    st_writer_free(w);
    ck_assert_ptr_nonnull(orig);
    size_t hdr_end = 8 + rd_len(orig);

    pl_rng rng;
    pl_rng_seed(&rng, 20240601);
    int accepted = 0, refused = 0;
    const char interesting[] = "{}[]\",:0123456789-.e \\u\xff";
    for (int it = 0; it < 4000; it++) {
        unsigned char *b = xmalloc(len);
        memcpy(b, orig, len);
        size_t blen = len;
        int kind = (int)pl_rng_below(&rng, 4);
        if (kind == 3) {
            blen = pl_rng_below(&rng, (uint32_t)hdr_end + 1); /* truncate */
        } else {
            int flips = 1 + (int)pl_rng_below(&rng, 4);
            for (int k = 0; k < flips; k++) {
                size_t pos = pl_rng_below(&rng, (uint32_t)hdr_end);
                if (kind == 0)
                    b[pos] ^= (unsigned char)(1u << pl_rng_below(&rng, 8));
                else if (kind == 1)
                    b[pos] = interesting[pl_rng_below(&rng, sizeof interesting - 1)];
                else
                    b[pos] = (unsigned char)pl_rng_below(&rng, 256);
            }
        }
        err[0] = 0;
        st_file *f = st_parse(b, blen, err, sizeof err);
        if (f) {
            check_invariants(f);
            accepted++;
            st_free(f);
        } else {
            ck_assert_msg(err[0] != 0, "refused without a message");
            refused++;
        }
    }
    free(orig);
    ck_assert_int_gt(refused, 1000);
    ck_assert_int_gt(accepted, 0); /* e.g. flips inside string values */
}
END_TEST


/* ------------------------------------------------------------------ large files through st_load */

#define BIG_BYTES ((size_t)256 << 20)

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* A sparse file of `size` bytes starting with the 8-byte length n and then header (may be NULL). */
static void big_file(const char *path, size_t size, uint64_t n, const char *header)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    unsigned char l[8];
    for (int i = 0; i < 8; i++) l[i] = (unsigned char)(n >> (8 * i));
    ck_assert_uint_eq(fwrite(l, 1, 8, f), 8);
    if (header) ck_assert_uint_eq(fwrite(header, 1, strlen(header), f), strlen(header));
    ck_assert_int_eq(fflush(f), 0);
    ck_assert_int_eq(ftruncate(fileno(f), (off_t)size), 0);
    fclose(f);
}

/* Resident pages of this process, KiB (statm's second field). */
static long rss_now_kb(void)
{
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
    if (f) fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* st_release gives a mapped tensor's pages back (RSS drops by about its size) and its bytes
 * still read the same afterwards. */
START_TEST(test_release_mapped_tensor)
{
    enum { N = 8 << 20 };
    unsigned char *buf = malloc(N);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < N; i++) buf[i] = (unsigned char)(i * 7 + 3);
    st_writer *w = st_writer_new();
    int64_t shape[1] = {N};
    st_writer_add(w, "w", ST_U8, 1, shape, buf);
    char path[] = "/tmp/plst_relXXXXXX", err[PL_ERRLEN];
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_msg(st_writer_save(w, path, err, sizeof err) == 0, "%s", err);
    st_writer_free(w);
    st_file *f = st_load(path, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    const st_tensor *t = st_find(f, "w");
    ck_assert_ptr_nonnull(t);
    volatile unsigned sum = 0;
    for (size_t i = 0; i < N; i += 512) sum += ((const volatile unsigned char *)t->data)[i]; /* every page */
    long touched = rss_now_kb();
    st_release(f, t);
    long released = rss_now_kb();
    ck_assert_msg(released < touched - 6 * 1024, "RSS %ld KiB after touching, %ld KiB after st_release", touched,
                  released);
    ck_assert_int_eq(memcmp(t->data, buf, N), 0); /* read back from the file */
    (void)sum;
    st_free(f);
    unlink(path);
    free(buf);
}
END_TEST

START_TEST(test_load_big_files_cheaply)
{
    char path[] = "/tmp/plst_bigXXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    char err[PL_ERRLEN];
    long before = maxrss_kb();

    big_file(path, 5, 0, NULL); /* shorter than the header length itself, and empty */
    ck_assert_ptr_null(st_load(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "file is 5 bytes, shorter than the 8-byte"));
    big_file(path, 0, 0, NULL);
    ck_assert_ptr_null(st_load(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "file is 0 bytes"));
    big_file(path, BIG_BYTES, UINT64_MAX, NULL); /* junk: an absurd header length */
    ck_assert_ptr_null(st_load(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "too large"));
    big_file(path, (size_t)64 << 20, 99000000, NULL); /* a header that runs past the end */
    ck_assert_ptr_null(st_load(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "runs past the end"));
    big_file(path, BIG_BYTES, 8, "not json"); /* a header that lies: not JSON */
    ck_assert_ptr_null(st_load(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "invalid JSON header"));

    /* a valid file: one U8 tensor filling the rest */
    char hdr[160];
    size_t data = 0;
    for (int pass = 0; pass < 3; pass++) { /* the header's own length changes the data length */
        snprintf(hdr, sizeof hdr, "{\"w\":{\"dtype\":\"U8\",\"shape\":[%zu],\"data_offsets\":[0,%zu]}}", data,
                 data);
        if (pass < 2) data = BIG_BYTES - 8 - strlen(hdr);
    }
    big_file(path, BIG_BYTES, strlen(hdr), hdr);
    st_file *f = st_load(path, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    const st_tensor *t = st_find(f, "w");
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(t->nbytes, data);
    ck_assert_uint_eq(((const unsigned char *)t->data)[data - 1], 0); /* the mapping reaches the end */
    st_free(f);
    unlink(path);
    /* reading any of these files whole would raise the peak by 64 to 256 MiB */
    long grew = maxrss_kb() - before;
    ck_assert_msg(grew < 32 * 1024, "peak RSS grew by %ld KiB", grew);
}
END_TEST

static Suite *st_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("roundtrip");
    tcase_add_test(tc, test_round_trip_memory);
    tcase_add_test(tc, test_round_trip_file);
    tcase_add_test(tc, test_round_trip_empty);
    tcase_add_test(tc, test_writer_meta_replace);
    tcase_add_test(tc, test_writer_refuses);
    tcase_add_test(tc, test_torch_layout);
    suite_add_tcase(s, tc);

    tc = tcase_create("convert");
    tcase_add_test(tc, test_f16_known);
    tcase_add_test(tc, test_f16_exhaustive);
    tcase_add_test(tc, test_bf16_f64_f32);
    suite_add_tcase(s, tc);

    tc = tcase_create("refuse");
    tcase_add_test(tc, test_refuse_short_file);
    tcase_add_test(tc, test_refuse_header_past_end);
    tcase_add_test(tc, test_load_big_files_cheaply);
    tcase_add_test(tc, test_release_mapped_tensor);
    tcase_add_test(tc, test_refuse_invalid_json);
    tcase_add_test(tc, test_refuse_not_object);
    tcase_add_test(tc, test_refuse_entry_not_object);
    tcase_add_test(tc, test_refuse_missing_fields);
    tcase_add_test(tc, test_refuse_unknown_dtype);
    tcase_add_test(tc, test_refuse_bad_dims);
    tcase_add_test(tc, test_refuse_shape_overflow);
    tcase_add_test(tc, test_refuse_duplicate_keys);
    tcase_add_test(tc, test_refuse_bad_offsets);
    tcase_add_test(tc, test_refuse_byte_count);
    tcase_add_test(tc, test_refuse_overlap);
    tcase_add_test(tc, test_refuse_hole);
    tcase_add_test(tc, test_refuse_not_from_zero);
    tcase_add_test(tc, test_refuse_not_to_end);
    tcase_add_test(tc, test_refuse_bad_metadata);
    tcase_add_test(tc, test_zero_element_tensors);
    suite_add_tcase(s, tc);

    tc = tcase_create("mutation");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_mutation_loop);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(st_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
