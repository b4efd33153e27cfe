/* safetensors.c — reader and writer of the safetensors format.
 *
 * Layout: u64 little-endian header length n, n bytes of UTF-8 JSON, then the data buffer.
 * The JSON is an object: tensor name -> {"dtype", "shape", "data_offsets": [begin, end]},
 * plus an optional "__metadata__" object of string -> string. Offsets are relative to the
 * start of the data buffer.
 *
 * Reader: st_parse owns the whole file buffer; tensor data pointers point into it (no copy).
 * It is strict, like the reference implementation: the tensors, sorted by offsets, must tile
 * the data buffer exactly (start at 0, no holes, no overlap, end at the end of the file), and
 * every byte count must equal numel * dtype size. Every refusal names the tensor and the
 * problem. Data is read as little-endian; alignment of tensor data is not guaranteed for
 * files written elsewhere, so st_to_f32 reads through memcpy.
 *
 * Writer: tensors are referenced, not copied, until serialisation. The header is compact JSON
 * (__metadata__ first, then tensors in the order added), padded with spaces to a multiple of
 * 8 so the data buffer starts 8-byte aligned; tensor data is laid out contiguously in the
 * order added. Tensor data is taken as host bytes: hosts are assumed little-endian.
 * Invalid calls to st_writer_add / st_writer_meta (bad dtype or rank, duplicate or reserved
 * name) are remembered and reported by st_writer_serialize / st_writer_save. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* The reference implementation refuses headers above 100 MB. */
#define ST_MAX_HEADER ((uint64_t)100000000)
#define ST_META_KEY "__metadata__"

static const char *const dtype_names[] = {"F32", "F16", "BF16", "F64", "I64",
                                          "I32", "U8",  "I8",   "BOOL"};
static const size_t dtype_sizes[] = {4, 2, 2, 8, 8, 4, 1, 1, 1};
_Static_assert(sizeof dtype_names / sizeof dtype_names[0] == ST_DTYPE_COUNT, "dtype name table");
_Static_assert(sizeof dtype_sizes / sizeof dtype_sizes[0] == ST_DTYPE_COUNT, "dtype size table");

const char *st_dtype_name(st_dtype d)
{
    return (unsigned)d < ST_DTYPE_COUNT ? dtype_names[d] : "?";
}

size_t st_dtype_size(st_dtype d)
{
    return (unsigned)d < ST_DTYPE_COUNT ? dtype_sizes[d] : 0;
}

/* Returns the dtype for a name, or -1. */
static int dtype_from_name(const char *s)
{
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(s, dtype_names[i]) == 0) return i;
    return -1;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* ------------------------------------------------------------------ reader */

void st_free(st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    if (f->mapped) munmap(f->buf, f->len);
    else free(f->buf);
    free(f);
}

void st_release(const st_file *f, const st_tensor *t)
{
    if (!f || !t || !f->mapped || t->nbytes == 0) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)t->data + page - 1) & ~(page - 1);       /* first whole page */
    uintptr_t hi = ((uintptr_t)t->data + t->nbytes) & ~(page - 1);      /* end of the last one */
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* Reads "__metadata__" into f. Returns 0, or -1 with err. */
static int parse_meta(st_file *f, json_t *meta, char *err, size_t errlen)
{
    if (!json_is_object(meta))
        return pl_err(err, errlen, "%s must be an object of strings, got %s", ST_META_KEY,
                      json_kind(meta));
    size_t n = json_object_size(meta);
    f->meta_keys = xcalloc(n ? n : 1, sizeof(char *));
    f->meta_values = xcalloc(n ? n : 1, sizeof(char *));
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return pl_err(err, errlen, "%s value for key '%s' must be a string, got %s",
                          ST_META_KEY, k, json_kind(v));
        f->meta_keys[f->n_meta] = xstrdup(k);
        f->meta_values[f->n_meta] = xstrdup(json_string_value(v));
        f->n_meta++;
    }
    return 0;
}

/* Reads a non-negative JSON integer. Returns 0, or -1 if v is not one. */
static int get_nonneg_int(const json_t *v, int64_t *out)
{
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0) return -1;
    *out = (int64_t)x;
    return 0;
}

/* Fills t (name already set) from its header entry; checks everything that concerns this
 * tensor alone, given a data buffer of data_len bytes. begin/end get the offsets.
 * Returns 0, or -1 with err. */
static int parse_entry(st_tensor *t, const json_t *e, size_t data_len, uint64_t *begin,
                       uint64_t *end, char *err, size_t errlen)
{
    const char *nm = t->name;
    if (!json_is_object(e))
        return pl_err(err, errlen, "tensor '%s': entry must be an object, got %s", nm,
                      json_kind(e));

    json_t *jd = json_object_get(e, "dtype");
    json_t *js = json_object_get(e, "shape");
    json_t *jo = json_object_get(e, "data_offsets");
    if (!jd) return pl_err(err, errlen, "tensor '%s': missing \"dtype\"", nm);
    if (!js) return pl_err(err, errlen, "tensor '%s': missing \"shape\"", nm);
    if (!jo) return pl_err(err, errlen, "tensor '%s': missing \"data_offsets\"", nm);

    if (!json_is_string(jd))
        return pl_err(err, errlen, "tensor '%s': dtype must be a string, got %s", nm,
                      json_kind(jd));
    int d = dtype_from_name(json_string_value(jd));
    if (d < 0)
        return pl_err(err, errlen,
                      "tensor '%s': unknown dtype \"%s\" (supported: F32 F16 BF16 F64 I64 I32 "
                      "U8 I8 BOOL)",
                      nm, json_string_value(jd));
    t->dtype = (st_dtype)d;

    if (!json_is_array(js))
        return pl_err(err, errlen, "tensor '%s': shape must be an array, got %s", nm,
                      json_kind(js));
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS)
        return pl_err(err, errlen, "tensor '%s': shape has %zu dims, at most %d supported", nm,
                      nd, ST_MAX_DIMS);
    t->ndim = (int)nd;
    int64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *dv = json_array_get(js, i);
        int64_t dim;
        if (!json_is_integer(dv))
            return pl_err(err, errlen, "tensor '%s': shape[%zu] must be an integer, got %s", nm,
                          i, json_kind(dv));
        if (get_nonneg_int(dv, &dim) != 0)
            return pl_err(err, errlen, "tensor '%s': shape[%zu] is negative (%lld)", nm, i,
                          (long long)json_integer_value(dv));
        t->shape[i] = dim;
        if (__builtin_mul_overflow(numel, dim, &numel))
            return pl_err(err, errlen, "tensor '%s': shape element count overflows", nm);
    }
    t->numel = numel;
    uint64_t nbytes;
    if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)dtype_sizes[d], &nbytes) ||
        nbytes > SIZE_MAX)
        return pl_err(err, errlen, "tensor '%s': shape element count overflows (in bytes)", nm);
    t->nbytes = (size_t)nbytes;

    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return pl_err(err, errlen, "tensor '%s': data_offsets must be [begin, end]", nm);
    int64_t b, en;
    if (get_nonneg_int(json_array_get(jo, 0), &b) != 0 ||
        get_nonneg_int(json_array_get(jo, 1), &en) != 0)
        return pl_err(err, errlen,
                      "tensor '%s': data_offsets must be two non-negative integers", nm);
    if (b > en)
        return pl_err(err, errlen, "tensor '%s': data_offsets [%lld, %lld] has begin > end", nm,
                      (long long)b, (long long)en);
    if ((uint64_t)en > data_len)
        return pl_err(err, errlen,
                      "tensor '%s': data_offsets [%lld, %lld] run past the end of the data "
                      "buffer (%zu bytes)",
                      nm, (long long)b, (long long)en, data_len);
    if ((uint64_t)(en - b) != nbytes)
        return pl_err(err, errlen,
                      "tensor '%s': data_offsets [%lld, %lld] hold %lld bytes but %s shape "
                      "needs %llu",
                      nm, (long long)b, (long long)en, (long long)(en - b), dtype_names[d],
                      (unsigned long long)nbytes);
    *begin = (uint64_t)b;
    *end = (uint64_t)en;
    return 0;
}

typedef struct {
    uint64_t begin, end;
    int idx; /* position in header order, for a stable sort */
} span;

static int span_cmp(const void *pa, const void *pb)
{
    const span *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* The 8-byte header length of a file of len bytes: refused when the file is too short, when the
 * length is over ST_MAX_HEADER or runs past the end. Returns 0 with *n, or -1 with err. */
static int header_len(const unsigned char *first8, size_t len, uint64_t *n, char *err, size_t errlen)
{
    if (len < 8) return pl_err(err, errlen, "file is %zu bytes, shorter than the 8-byte header length", len);
    *n = 0;
    for (int i = 7; i >= 0; i--) *n = (*n << 8) | first8[i];
    if (*n > ST_MAX_HEADER)
        return pl_err(err, errlen, "header length %llu is too large (limit %llu bytes)", (unsigned long long)*n,
                      (unsigned long long)ST_MAX_HEADER);
    if (*n > len - 8)
        return pl_err(err, errlen, "header length %llu runs past the end of the file (%zu bytes)",
                      (unsigned long long)*n, len);
    return 0;
}

static st_file *parse_into(st_file *f, char *err, size_t errlen);

st_file *st_parse(unsigned char *buf, size_t len, char *err, size_t errlen)
{
    st_file *f = xcalloc(1, sizeof *f);
    f->buf = buf;
    f->len = len;
    return parse_into(f, err, errlen);
}

/* Validates f->buf / f->len into f (freed on error). */
static st_file *parse_into(st_file *f, char *err, size_t errlen)
{
    const unsigned char *buf = f->buf;
    size_t len = f->len;
    json_t *root = NULL;
    span *spans = NULL;
    st_tensor *tens = NULL;

    uint64_t n = 0;
    if (header_len(buf, len, &n, err, errlen) != 0) goto fail;

    json_error_t je;
    root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                      &je);
    if (!root) {
        pl_err(err, errlen, "invalid JSON header at line %d, column %d (header byte %d): %s",
               je.line, je.column, je.position, je.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        pl_err(err, errlen, "header is not a JSON object (got %s)", json_kind(root));
        goto fail;
    }

    const unsigned char *data = buf + 8 + n; /* data buffer (data_len bytes) */
    size_t data_len = len - 8 - (size_t)n;
    size_t cap = json_object_size(root);
    tens = xcalloc(cap ? cap : 1, sizeof *tens);
    spans = xcalloc(cap ? cap : 1, sizeof *spans);
    int nt = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, ST_META_KEY) == 0) {
            if (parse_meta(f, val, err, errlen) != 0) goto fail_tens;
            continue;
        }
        st_tensor *t = &tens[nt];
        t->name = xstrdup(key);
        spans[nt].idx = nt;
        nt++;
        if (parse_entry(t, val, data_len, &spans[nt - 1].begin, &spans[nt - 1].end, err,
                        errlen) != 0)
            goto fail_tens;
    }

    /* The tensors, sorted by offsets, must tile [0, data_len) exactly. */
    qsort(spans, (size_t)nt, sizeof *spans, span_cmp);
    uint64_t at = 0;
    for (int i = 0; i < nt; i++) {
        const span *s = &spans[i];
        const char *nm = tens[s->idx].name;
        if (s->begin < at) {
            pl_err(err, errlen,
                   "tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' (which ends at "
                   "%llu)",
                   nm, (unsigned long long)s->begin, (unsigned long long)s->end,
                   tens[spans[i - 1].idx].name, (unsigned long long)at);
            goto fail_tens;
        }
        if (s->begin > at) {
            if (i == 0)
                pl_err(err, errlen,
                       "tensor '%s': data_offsets [%llu, %llu] leave a hole: the first tensor "
                       "must start at 0",
                       nm, (unsigned long long)s->begin, (unsigned long long)s->end);
            else
                pl_err(err, errlen,
                       "tensor '%s': data_offsets [%llu, %llu] leave a hole of %llu bytes "
                       "after tensor '%s'",
                       nm, (unsigned long long)s->begin, (unsigned long long)s->end,
                       (unsigned long long)(s->begin - at), tens[spans[i - 1].idx].name);
            goto fail_tens;
        }
        at = s->end;
    }
    if (at != data_len) {
        if (nt)
            pl_err(err, errlen,
                   "data buffer has %llu trailing bytes not covered by any tensor (last "
                   "tensor '%s' ends at %llu of %zu)",
                   (unsigned long long)(data_len - at), tens[spans[nt - 1].idx].name,
                   (unsigned long long)at, data_len);
        else
            pl_err(err, errlen, "data buffer has %zu bytes but the header lists no tensors",
                   data_len);
        goto fail_tens;
    }

    /* Store the tensors in data-offset order. */
    f->tensors = xcalloc(nt ? (size_t)nt : 1, sizeof *f->tensors);
    for (int i = 0; i < nt; i++) {
        f->tensors[i] = tens[spans[i].idx];
        f->tensors[i].data = data + spans[i].begin;
    }
    f->n = nt;
    free(tens);
    free(spans);
    json_decref(root);
    return f;

fail_tens:
    for (size_t i = 0; i < cap; i++) free(tens[i].name);
fail:
    free(tens);
    free(spans);
    json_decref(root);
    st_free(f);
    return NULL;
}

/* The file's bytes, mapped read-only (private), once its header length was checked against the
 * file size: a junk or lying file is refused after reading 8 bytes, and a valid one costs only
 * the pages that are read. */
st_file *st_load(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pl_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        pl_err(err, errlen, "%s is not a regular file", path);
        return NULL;
    }
    size_t len = (size_t)sb.st_size;
    unsigned char first8[8] = {0};
    uint64_t n;
    char e[PL_ERRLEN];
    if (len >= 8 && pread(fd, first8, 8, 0) != 8) {
        pl_err(err, errlen, "%s: short read of the header length: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (header_len(first8, len, &n, e, sizeof e) != 0) { /* also refuses files under 8 bytes */
        close(fd);
        pl_err(err, errlen, "%s: %s", path, e);
        return NULL;
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        pl_err(err, errlen, "cannot map %s (%zu bytes): %s", path, len, strerror(errno));
        close(fd);
        return NULL;
    }
    st_file *f = xcalloc(1, sizeof *f);
    f->buf = map;
    f->len = len;
    f->mapped = 1;
    close(fd);
    f = parse_into(f, e, sizeof e);
    if (!f) pl_err(err, errlen, "%s: %s", path, e);
    return f;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

/* ------------------------------------------------------------------ conversion */

/* IEEE half -> single, exact: normals rebias the exponent, subnormals are m * 2^-24,
 * inf/nan keep sign and payload. */
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t ex = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (ex == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise the mantissa */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400u));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (ex == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((ex + 127 - 15) << 23) | (man << 13);
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

int st_to_f32(const st_tensor *t, float *out, char *err, size_t errlen)
{
    const unsigned char *p = t->data; /* raw little-endian bytes (nbytes) */
    int64_t n = t->numel;
    switch (t->dtype) {
    case ST_F32:
        for (int64_t i = 0; i < n; i++) {
            uint32_t b = rd32(p + 4 * i);
            memcpy(&out[i], &b, 4);
        }
        return 0;
    case ST_F16:
        for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(rd16(p + 2 * i));
        return 0;
    case ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint32_t b = (uint32_t)rd16(p + 2 * i) << 16;
            memcpy(&out[i], &b, 4);
        }
        return 0;
    case ST_F64:
        for (int64_t i = 0; i < n; i++) {
            uint64_t b = rd64(p + 8 * i);
            double d;
            memcpy(&d, &b, 8);
            out[i] = (float)d;
        }
        return 0;
    default:
        return pl_err(err, errlen, "tensor '%s': dtype %s is not a floating type", t->name,
                      st_dtype_name(t->dtype));
    }
}

/* ------------------------------------------------------------------ writer */

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data; /* caller's, nbytes */
} wtensor;

struct st_writer {
    int n, cap;
    wtensor *t;
    int n_meta, cap_meta;
    char **keys, **values;
    char error[PL_ERRLEN]; /* first invalid add/meta call, reported at serialisation */
};

st_writer *st_writer_new(void) { return xcalloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->keys[i]);
        free(w->values[i]);
    }
    free(w->keys);
    free(w->values);
    free(w);
}

void st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                   const void *data)
{
    if (w->error[0]) return;
    if ((unsigned)dtype >= ST_DTYPE_COUNT) {
        pl_err(w->error, sizeof w->error, "tensor '%s': invalid dtype %d", name, (int)dtype);
        return;
    }
    if (ndim < 0 || ndim > ST_MAX_DIMS) {
        pl_err(w->error, sizeof w->error, "tensor '%s': %d dims, at most %d supported", name,
               ndim, ST_MAX_DIMS);
        return;
    }
    if (strcmp(name, ST_META_KEY) == 0) {
        pl_err(w->error, sizeof w->error, "tensor name '%s' is reserved", name);
        return;
    }
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) {
            pl_err(w->error, sizeof w->error, "tensor '%s' added twice", name);
            return;
        }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            pl_err(w->error, sizeof w->error, "tensor '%s': negative dimension %lld", name,
                   (long long)shape[i]);
            return;
        }
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->t = xrealloc(w->t, (size_t)w->cap * sizeof *w->t);
    }
    wtensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
}

void st_writer_meta(st_writer *w, const char *key, const char *value)
{
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->keys[i], key) == 0) { /* same key again: replace the value in place */
            free(w->values[i]);
            w->values[i] = xstrdup(value);
            return;
        }
    if (w->n_meta == w->cap_meta) {
        w->cap_meta = w->cap_meta ? 2 * w->cap_meta : 8;
        w->keys = xrealloc(w->keys, (size_t)w->cap_meta * sizeof(char *));
        w->values = xrealloc(w->values, (size_t)w->cap_meta * sizeof(char *));
    }
    w->keys[w->n_meta] = xstrdup(key);
    w->values[w->n_meta] = xstrdup(value);
    w->n_meta++;
}

/* Byte size of a writer tensor, or -1 on overflow. */
static int wtensor_nbytes(const wtensor *t, uint64_t *out)
{
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        if (__builtin_mul_overflow(n, (uint64_t)t->shape[i], &n)) return -1;
    if (__builtin_mul_overflow(n, (uint64_t)dtype_sizes[t->dtype], &n)) return -1;
    *out = n;
    return 0;
}

/* Adds key -> value to obj; value is consumed. Returns 0, or -1 (invalid UTF-8 key). */
static int obj_add(json_t *obj, const char *key, json_t *value)
{
    if (!value) return -1;
    return json_object_set_new(obj, key, value);
}

unsigned char *st_writer_serialize(st_writer *w, size_t *len, char *err, size_t errlen)
{
    if (w->error[0]) {
        pl_err(err, errlen, "%s", w->error);
        return NULL;
    }
    json_t *root = json_object();
    char *hdr = NULL;
    unsigned char *out = NULL;

    if (w->n_meta) {
        json_t *meta = json_object();
        obj_add(root, ST_META_KEY, meta);
        for (int i = 0; i < w->n_meta; i++)
            if (obj_add(meta, w->keys[i], json_string(w->values[i])) != 0) {
                pl_err(err, errlen, "metadata key '%s': key or value is not valid UTF-8",
                       w->keys[i]);
                goto done;
            }
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[i];
        uint64_t nb;
        if (wtensor_nbytes(t, &nb) != 0 || __builtin_add_overflow(off, nb, &nb)) {
            pl_err(err, errlen, "tensor '%s': size overflows", t->name);
            goto done;
        }
        json_t *e = json_object();
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_object_set_new(e, "dtype", json_string(dtype_names[t->dtype]));
        json_object_set_new(e, "shape", shape);
        json_t *offs = json_array();
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)nb));
        json_object_set_new(e, "data_offsets", offs);
        if (obj_add(root, t->name, e) != 0) {
            pl_err(err, errlen, "tensor name '%s' is not valid UTF-8", t->name);
            goto done;
        }
        off = nb;
    }

    hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!hdr) {
        pl_err(err, errlen, "cannot encode the safetensors header");
        goto done;
    }
    size_t hlen = strlen(hdr);
    size_t padded = (hlen + 7) & ~(size_t)7;
    size_t total = 8 + padded + (size_t)off;
    out = xmalloc(total);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(out + 8, hdr, hlen);
    memset(out + 8 + hlen, ' ', padded - hlen);
    unsigned char *p = out + 8 + padded;
    for (int i = 0; i < w->n; i++) {
        uint64_t nb = 0;
        wtensor_nbytes(&w->t[i], &nb);
        if (nb) memcpy(p, w->t[i].data, (size_t)nb);
        p += nb;
    }
    *len = total;

done:
    free(hdr);
    json_decref(root);
    return out;
}

int st_writer_save(st_writer *w, const char *path, char *err, size_t errlen)
{
    size_t len = 0;
    unsigned char *buf = st_writer_serialize(w, &len, err, errlen);
    if (!buf) return -1;
    int rc = pl_write_file_atomic(path, buf, len, err, errlen);
    free(buf);
    return rc;
}
