/* util.c — checked allocation, error formatting, clocks, RSS, the deterministic RNG and
 * whole-file I/O. Everything here is process-local and thread-safe except pl_die(). */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t n, const char *file, int line)
{
    fprintf(stderr, "prunelab: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    fprintf(stderr, "hint: use a smaller --batch or model, or free memory on this machine\n");
    exit(1);
}

void *pl_malloc_at(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n, file, line);
    return p;
}

void *pl_calloc_at(size_t n, size_t size, const char *file, int line)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size, file, line);
    return p;
}

void *pl_realloc_at(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n, file, line);
    return q;
}

char *pl_strdup_at(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *p = pl_malloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}

/* Blocks from PL_HUGE_MIN bytes up are aligned to, and padded to, PL_HUGE_PAGE. */
#define PL_HUGE_PAGE ((size_t)2 << 20)
#define PL_HUGE_MIN ((size_t)4 << 20)

float *pl_alloc_floats_at(size_t n, const char *file, int line)
{
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    void *p = NULL;
    size_t used = bytes; /* zeroed: the padding below is never touched */
    if (bytes >= PL_HUGE_MIN) {
        /* big blocks (weights, activations) on 2 MiB pages where the kernel allows: the scan walks
         * (L, E) arrays a channel block at a time, one 4 KiB page per row at E = 1536, which
         * missed the TLB on nearly every access of a 1024-token window */
        bytes = (bytes + PL_HUGE_PAGE - 1) & ~(size_t)(PL_HUGE_PAGE - 1);
        if (posix_memalign(&p, PL_HUGE_PAGE, bytes) != 0) oom(bytes, file, line);
#ifdef MADV_HUGEPAGE
        (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice only: without THP the 4 KiB pages remain */
#endif
    } else if (posix_memalign(&p, 64, bytes) != 0) {
        oom(bytes, file, line);
    }
    memset(p, 0, used);
    return p;
}

void pl_die(const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("prunelab: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (hint) fprintf(stderr, "hint: %s\n", hint);
    exit(1);
}

int pl_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

double pl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

long pl_peak_rss_kb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return ru.ru_maxrss;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void pl_rng_seed(pl_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
uint64_t pl_rng_next(pl_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double pl_rng_uniform(pl_rng *r) { return (double)(pl_rng_next(r) >> 11) * 0x1.0p-53; }

float pl_rng_normal(pl_rng *r)
{
    double u1 = pl_rng_uniform(r), u2 = pl_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint32_t pl_rng_below(pl_rng *r, uint32_t n)
{
    return (uint32_t)(((pl_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

void pl_rng_shuffle(pl_rng *r, int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)pl_rng_below(r, (uint32_t)(i + 1));
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

unsigned char *pl_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        pl_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        pl_err(err, errlen, "%s is not a regular file", path);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        pl_err(err, errlen, "out of memory reading %s (%zu bytes)", path, n);
        return NULL;
    }
    if (n && fread(buf, 1, n, f) != n) {
        fclose(f);
        free(buf);
        pl_err(err, errlen, "short read on %s", path);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

int pl_write_file_atomic(const char *path, const void *buf, size_t len, char *err, size_t errlen)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return pl_err(err, errlen, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return pl_err(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    const unsigned char *p = buf;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return pl_err(err, errlen, "write %s: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return pl_err(err, errlen, "sync %s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return pl_err(err, errlen, "rename %s -> %s: %s", tmp, path, strerror(e));
    }
    return 0;
}

json_t *pl_json_take(char *text)
{
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    return j ? j : json_null();
}
