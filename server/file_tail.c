/* file_tail.c — following a growing file line by line (file_tail.h).
 *
 * Design: each look opens the file, checks its identity and size against what was seen, reads
 * from the saved offset in 64 KiB chunks into the partial-line buffer, hands over complete lines
 * and closes it again (a file on NFS is re-validated at open, and no descriptor is held per cell
 * between looks). The buffer never holds more than max_line + one chunk. */
#define _GNU_SOURCE
#include "file_tail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAIL_CHUNK 65536

int file_tail_init(file_tail *t, const char *path, size_t max_line)
{
    memset(t, 0, sizeof *t);
    t->path = strdup(path ? path : "");
    t->max_line = max_line ? max_line : ((size_t)1 << 20);
    return t->path ? 0 : -1;
}

void file_tail_free(file_tail *t)
{
    if (!t) return;
    free(t->path);
    free(t->buf);
    memset(t, 0, sizeof *t);
}

static void restart(file_tail *t)
{
    t->offset = 0;
    t->skipping = 0;
}

long file_tail_read(file_tail *t, size_t max_read,
                    int (*fn)(void *user, file_tail_kind kind, const char *line, size_t n), void *user)
{
    if (!max_read) max_read = (size_t)4 << 20;
    int fd = open(t->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    long lines = 0;
    int stop = 0;
    if ((t->have_id && (st.st_dev != t->dev || st.st_ino != t->ino)) || st.st_size < t->offset) {
        restart(t);
        stop = fn(user, FILE_TAIL_RESTARTED, NULL, 0) != 0;
    }
    t->dev = st.st_dev, t->ino = st.st_ino, t->have_id = 1;
    size_t budget = max_read, len = 0; /* buf[0, len) = file[offset, offset + len) */
    while (!stop && budget > 0) {
        size_t want = budget < TAIL_CHUNK ? budget : TAIL_CHUNK;
        if (t->cap - len < want) {
            size_t cap = len + want;
            char *nb = realloc(t->buf, cap);
            if (!nb) {
                close(fd);
                return -1;
            }
            t->buf = nb, t->cap = cap;
        }
        ssize_t n = pread(fd, t->buf + len, want, t->offset + (off_t)len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0) break;
        budget -= (size_t)n;
        size_t start = 0, scan = len;
        len += (size_t)n;
        for (;;) {
            char *nl = memchr(t->buf + scan, '\n', len - scan);
            if (!nl) break;
            size_t end = (size_t)(nl - t->buf), ln = end - start;
            if (t->skipping) {
                t->skipping = 0;
            } else if (ln > t->max_line) {
                stop = fn(user, FILE_TAIL_TOO_LONG, NULL, ln) != 0;
            } else {
                size_t m = ln;
                if (m && t->buf[start + m - 1] == '\r') m--;
                lines++;
                stop = fn(user, FILE_TAIL_LINE, t->buf + start, m) != 0;
            }
            start = end + 1;
            scan = start;
            if (stop) break;
        }
        t->offset += (off_t)start;
        memmove(t->buf, t->buf + start, len - start);
        len -= start;
        if (stop) break; /* what is left (lines not handed over included) is read again next time */
        if (!t->skipping && len > t->max_line) { /* an over-long line still without its newline */
            stop = fn(user, FILE_TAIL_TOO_LONG, NULL, len) != 0;
            t->offset += (off_t)len;
            len = 0;
            t->skipping = 1;
        } else if (t->skipping) {
            t->offset += (off_t)len;
            len = 0;
        }
    }
    close(fd); /* an unfinished line is read again from offset next time */
    return lines;
}
