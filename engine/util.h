/* util.h — checked allocation, fatal errors with a hint, error buffers, clocks, RSS.
 *
 * Library code reports errors through a caller-owned buffer (char err[PL_ERRLEN]) and an
 * int rc (0 ok, -1 error). Only CLI code calls pl_die(). */
#ifndef PL_UTIL_H
#define PL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define PL_ERRLEN 512

void *pl_malloc_at(size_t n, const char *file, int line);
void *pl_calloc_at(size_t n, size_t size, const char *file, int line);
void *pl_realloc_at(void *p, size_t n, const char *file, int line);
char *pl_strdup_at(const char *s, const char *file, int line);
#define xmalloc(n) pl_malloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, s) pl_calloc_at((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) pl_realloc_at((p), (n), __FILE__, __LINE__)
#define xstrdup(s) pl_strdup_at((s), __FILE__, __LINE__)

/* 64-byte aligned, zeroed allocation for tensor blocks; free with free(). */
float *pl_alloc_floats_at(size_t n, const char *file, int line);
#define xalloc_floats(n) pl_alloc_floats_at((n), __FILE__, __LINE__)

/* The JSON value of a malloc'd JSON text, which is freed; JSON null when text is NULL or not JSON
 * (the engine's reports are built as text and merged into JSON reports with this). */
struct json_t;
struct json_t *pl_json_take(char *text);

/* Print "prunelab: <msg>" and, if hint is non-NULL, "hint: <hint>" to stderr; exit(1). */
__attribute__((noreturn, format(printf, 2, 3))) void pl_die(const char *hint, const char *fmt, ...);

/* Format into err (may be NULL); always returns -1 so callers can `return pl_err(...)`. */
__attribute__((format(printf, 3, 4))) int pl_err(char *err, size_t errlen, const char *fmt, ...);

double pl_now(void);           /* monotonic seconds */
long pl_peak_rss_kb(void);     /* peak resident set size of this process, KiB */

/* splitmix64 / xoshiro-style deterministic RNG: same seed -> same stream everywhere. */
typedef struct { uint64_t s[4]; } pl_rng;
void pl_rng_seed(pl_rng *r, uint64_t seed);
uint64_t pl_rng_next(pl_rng *r);
double pl_rng_uniform(pl_rng *r);          /* [0, 1) */
float pl_rng_normal(pl_rng *r);            /* N(0, 1), Box-Muller */
uint32_t pl_rng_below(pl_rng *r, uint32_t n); /* uniform in [0, n) */
void pl_rng_shuffle(pl_rng *r, int *a, int n);

/* Read a whole file; returns malloc'd buffer (NUL-terminated beyond len) or NULL with err. */
unsigned char *pl_read_file(const char *path, size_t *len, char *err, size_t errlen);
/* Write atomically: path.tmp.<pid>, fsync, rename. Returns 0 or -1 with err. */
int pl_write_file_atomic(const char *path, const void *buf, size_t len, char *err, size_t errlen);

#endif
