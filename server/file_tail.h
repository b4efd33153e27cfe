/* file_tail.h — reading the complete lines a growing file has gained since the last look: how
 * the Slurm executor follows each cell's events file on the shared filesystem (slurm_batch.h),
 * where there is no pipe to poll. A line is handed over only once its newline is there (a
 * writer's half-flushed line waits for the next look); a line longer than max_line is reported
 * once and skipped up to its newline; a file that shrank or was replaced (another inode) is read
 * again from its start, and the caller is told. Bounded: one look reads at most max_read bytes. */
#ifndef PL_FILE_TAIL_H
#define PL_FILE_TAIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    char *path;
    off_t offset;      /* bytes consumed (complete lines and skipped ones) */
    dev_t dev;
    ino_t ino;
    int have_id;       /* dev/ino recorded */
    char *buf;         /* read buffer, kept between looks (a partial last line is read again
                        * from offset at the next look, not kept) */
    size_t cap;
    size_t max_line;
    int skipping;      /* inside an over-long line, until its newline */
} file_tail;

/* kind of a callback: a line (without its newline, a trailing '\r' dropped), or a notice */
typedef enum { FILE_TAIL_LINE, FILE_TAIL_TOO_LONG, FILE_TAIL_RESTARTED } file_tail_kind;

/* 0, or -1 (out of memory). max_line 0 = 1 MiB. Nothing is read yet. */
int file_tail_init(file_tail *t, const char *path, size_t max_line);
void file_tail_free(file_tail *t);

/* Read what was appended (at most max_read bytes, 0 = 4 MiB), calling fn for each complete line
 * and notice; fn returning non-zero stops the look (the rest stays for the next one). Returns the
 * number of lines handed over, 0 when the file does not exist yet, -1 on a read error. */
long file_tail_read(file_tail *t, size_t max_read, int (*fn)(void *user, file_tail_kind kind, const char *line,
                                                              size_t n),
                    void *user);

#endif
