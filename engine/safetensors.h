/* safetensors.h — reader and writer of the safetensors format.
 *
 * File: 8-byte little-endian header length n, then n bytes of JSON (an object: tensor name ->
 * {"dtype", "shape", "data_offsets": [begin, end]}, plus optional "__metadata__": {str: str}),
 * padded with spaces to a multiple of 8, then the data buffer. Offsets are relative to the
 * buffer start. The reader refuses anything inconsistent (see st_parse). */
#ifndef PL_SAFETENSORS_H
#define PL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    ST_F32,
    ST_F16,
    ST_BF16,
    ST_F64,
    ST_I64,
    ST_I32,
    ST_U8,
    ST_I8,
    ST_BOOL,
    ST_DTYPE_COUNT
} st_dtype;

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    size_t nbytes;
    const void *data; /* points into the file buffer owned by st_file; little-endian raw bytes */
} st_tensor;

typedef struct {
    int n;
    st_tensor *tensors;   /* in file order of data offsets */
    int n_meta;
    char **meta_keys;     /* __metadata__ keys and string values, owned */
    char **meta_values;
    unsigned char *buf;   /* whole file, owned: malloc'd (st_parse) or mapped read-only (st_load) */
    size_t len;
    int mapped;           /* buf is an mmap of the file (st_free unmaps it) */
} st_file;

const char *st_dtype_name(st_dtype d);      /* "F32", ... */
size_t st_dtype_size(st_dtype d);

/* Load and validate a file: its header length is checked against the file size before anything
 * else is read, then the file is mapped (read-only; tensors' data point into the mapping).
 * Returns NULL and fills err on any problem: file shorter than 8
 * bytes, header length past the end of the file, non-UTF8/invalid JSON, JSON that is not an
 * object, entries that are not objects, unknown dtypes, bad shapes, duplicate keys, offsets that
 * overlap, leave holes, or run past the buffer, byte counts that do not match the shape.
 * The caller frees with st_free. */
st_file *st_load(const char *path, char *err, size_t errlen);
/* Same, over a buffer the function takes ownership of (freed on error too). */
st_file *st_parse(unsigned char *buf, size_t len, char *err, size_t errlen);
void st_free(st_file *f);
/* The caller is done with t's bytes (copied out): when the file is mapped, the whole pages of
 * t's range are given back (madvise DONTNEED; they would be read from the file again if
 * touched), so loading a checkpoint tensor by tensor holds about one copy of it in memory, not
 * the mapping and the copy. t->data stays valid. No-op for a malloc'd buffer. */
void st_release(const st_file *f, const st_tensor *t);

const st_tensor *st_find(const st_file *f, const char *name);
const char *st_meta(const st_file *f, const char *key); /* NULL if absent */

/* Convert a floating tensor (F32, F16, BF16, F64) to F32 into out (numel floats).
 * Returns 0, or -1 with err for a non-float dtype. */
int st_to_f32(const st_tensor *t, float *out, char *err, size_t errlen);

/* Writer: tensors are referenced (not copied) and must stay alive until st_writer_save.
 * Tensors are written in the order added; metadata keys in the order added. */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
void st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                   const void *data);
void st_writer_meta(st_writer *w, const char *key, const char *value);
/* Writes atomically (temp file, fsync, rename). Returns 0 or -1 with err. */
int st_writer_save(st_writer *w, const char *path, char *err, size_t errlen);
/* Serialise to a malloc'd buffer (for tests); returns NULL with err on failure. */
unsigned char *st_writer_serialize(st_writer *w, size_t *len, char *err, size_t errlen);
void st_writer_free(st_writer *w);

#endif
