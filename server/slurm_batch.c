/* slurm_batch.c — writing and reading a Slurm batch directory (slurm_batch.h).
 *
 * Design: every file the daemon writes goes to NAME.tmp, is fsynced, renamed, and the directory
 * fsynced at the end, so a node that sees a name sees all of it. run.sh is POSIX sh with the
 * batch directory and the engine path embedded single-quoted (paths with a newline or a quote
 * that cannot be embedded are refused rather than escaped into something surprising). */
#define _GNU_SOURCE
#include "slurm_batch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "errbuf.h"

#define BATCH_PATH_MAX 4096

int slurm_batch_path(char *buf, size_t len, const char *dir, int64_t cell_id, const char *what)
{
    int n = snprintf(buf, len, "%s/%" PRId64 ".%s", dir, cell_id, what);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Write text to path through path.tmp + fsync + rename, with mode. */
static int write_atomic(const char *path, const char *text, size_t n, mode_t mode, char *err, size_t errlen)
{
    char tmp[BATCH_PATH_MAX + 8];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return errbuf_set(err, errlen, "path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return errbuf_set(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return errbuf_set(err, errlen, "cannot write %s: %s", tmp, strerror(e));
        }
        off += (size_t)w;
    }
    if (fchmod(fd, mode) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return errbuf_set(err, errlen, "cannot sync %s: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return errbuf_set(err, errlen, "cannot rename %s: %s", tmp, strerror(e));
    }
    return 0;
}

/* A path safe to embed single-quoted in sh: absolute, no quote, no newline, no control byte. */
static int embeddable(const char *p)
{
    if (!p || p[0] != '/' || strlen(p) >= BATCH_PATH_MAX - 64) return 0;
    for (const unsigned char *s = (const unsigned char *)p; *s; s++)
        if (*s == '\'' || *s < 0x20 || *s == 0x7f) return 0;
    return 1;
}

/* The batch script. %1$s = batch directory, %2$s = engine. */
static const char RUN_SH[] =
    "#!/bin/sh\n"
    "# run.sh - one task of a prunelab cell array, written by prunelabd (server/slurm_batch.c).\n"
    "# Finds this task's cell in the manifest, runs the engine on its spec with its output appended\n"
    "# to the cell's events file, forwards USR2 and TERM to the engine, and writes the exit file\n"
    "# last (write, sync, rename).\n"
    "set -u\n"
    "D='%1$s'\n"
    "BIN='%2$s'\n"
    "idx=${SLURM_ARRAY_TASK_ID:-}\n"
    "case $idx in ''|*[!0-9]*) echo \"run.sh: not an array task (SLURM_ARRAY_TASK_ID='$idx')\" >&2; exit 3 ;; esac\n"
    "cell=$(awk -v i=\"$idx\" '$1 == i { print $2; exit }' \"$D/manifest\")\n"
    "case $cell in ''|*[!0-9]*) echo \"run.sh: task $idx is not in $D/manifest\" >&2; exit 3 ;; esac\n"
    "restart=${SLURM_RESTART_COUNT:-0}\n"
    "case $restart in ''|*[!0-9]*) restart=0 ;; esac\n"
    "threads=${SLURM_CPUS_PER_TASK:-1}\n"
    "case $threads in ''|*[!0-9]*) threads=1 ;; esac\n"
    "export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads\n"
    "rm -f \"$D/$cell.exit\"\n"
    "printf '{\"event\":\"slurm_start\",\"restart\":%%d,\"task\":%%d,\"host\":\"%%s\",\"job\":\"%%s\"}\\n' \\\n"
    "    \"$restart\" \"$idx\" \"$(hostname | tr -cd 'A-Za-z0-9._-')\" \"${SLURM_ARRAY_JOB_ID:-}_$idx\" "
    ">> \"$D/$cell.events\"\n"
    "# the traps come first: a signal before the engine starts is passed on once it has\n"
    "child=\n"
    "pending=\n"
    "trap 'pending=USR2; [ -n \"$child\" ] && kill -USR2 $child 2>/dev/null' USR2\n"
    "trap 'pending=TERM; [ -n \"$child\" ] && kill -TERM $child 2>/dev/null' TERM\n"
    "\"$BIN\" cell < \"$D/$cell.spec\" >> \"$D/$cell.events\" 2>> \"$D/$cell.stderr\" &\n"
    "child=$!\n"
    "[ -n \"$pending\" ] && kill -$pending $child 2>/dev/null\n"
    "status=0\n"
    "while :; do\n"
    "    wait $child\n"
    "    status=$?\n"
    "    kill -0 $child 2>/dev/null || break\n"
    "done\n"
    "sync \"$D/$cell.events\" 2>/dev/null\n"
    "printf '{\"status\":%%d,\"restart\":%%d,\"task\":%%d}\\n' \"$status\" \"$restart\" \"$idx\" > \"$D/$cell.exit.tmp\"\n"
    "sync \"$D/$cell.exit.tmp\" 2>/dev/null\n"
    "mv -f \"$D/$cell.exit.tmp\" \"$D/$cell.exit\"\n"
    "exit $status\n";

static void remove_dir(const char *dir, const slurm_batch_cell *cells, int n)
{
    char p[BATCH_PATH_MAX + 64];
    for (int i = 0; i < n; i++)
        if (slurm_batch_path(p, sizeof p, dir, cells[i].cell_id, "spec") == 0) unlink(p);
    const char *names[] = {"manifest", "run.sh", "manifest.tmp", "run.sh.tmp"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

int slurm_batch_write(const char *dir, const char *bin, const slurm_batch_cell *cells, int n, char *err,
                      size_t errlen)
{
    if (!embeddable(dir)) return errbuf_set(err, errlen, "batch directory must be an absolute path without quotes");
    if (!embeddable(bin)) return errbuf_set(err, errlen, "engine path must be an absolute path without quotes");
    if (n < 1 || !cells) return errbuf_set(err, errlen, "no cells");
    for (int i = 0; i < n; i++) {
        if (cells[i].cell_id <= 0 || !cells[i].spec) return errbuf_set(err, errlen, "bad cell %d", i);
        for (int j = 0; j < i; j++)
            if (cells[j].cell_id == cells[i].cell_id)
                return errbuf_set(err, errlen, "cell %" PRId64 " twice in one batch", cells[i].cell_id);
    }
    if (mkdir(dir, 0750) != 0) return errbuf_set(err, errlen, "cannot create %s: %s", dir, strerror(errno));
    char p[BATCH_PATH_MAX + 64];
    size_t cap = (size_t)n * 32 + 1, used = 0;
    char *man = malloc(cap);
    if (!man) {
        remove_dir(dir, cells, 0);
        return errbuf_set(err, errlen, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        if (slurm_batch_path(p, sizeof p, dir, cells[i].cell_id, "spec") != 0 ||
            write_atomic(p, cells[i].spec, strlen(cells[i].spec), 0640, err, errlen) != 0)
            goto fail;
        used += (size_t)snprintf(man + used, cap - used, "%d %" PRId64 "\n", i, cells[i].cell_id);
    }
    char *script = NULL;
    if (asprintf(&script, RUN_SH, dir, bin) < 0) {
        errbuf_set(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(p, sizeof p, "%s/run.sh", dir);
    int rc = write_atomic(p, script, strlen(script), 0750, err, errlen);
    free(script);
    if (rc != 0) goto fail;
    snprintf(p, sizeof p, "%s/manifest", dir); /* last: a manifest means a complete directory */
    if (write_atomic(p, man, used, 0640, err, errlen) != 0) goto fail;
    free(man);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
fail:
    free(man);
    remove_dir(dir, cells, n);
    return -1;
}

int slurm_batch_manifest(const char *dir, int64_t *ids, int max, char *err, size_t errlen)
{
    char p[BATCH_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/manifest", dir);
    FILE *f = fopen(p, "re");
    if (!f) return errbuf_set(err, errlen, "no manifest in %s: %s", dir, strerror(errno));
    char line[128];
    int n = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        char *e;
        long idx = strtol(line, &e, 10);
        if (e == line || *e != ' ' || idx != n) {
            rc = errbuf_set(err, errlen, "%s: line %d is not \"%d CELL\"", p, n + 1, n);
            break;
        }
        char *s = e + 1;
        long long id = strtoll(s, &e, 10);
        if (e == s || *e != '\n' || id <= 0) {
            rc = errbuf_set(err, errlen, "%s: bad cell id on line %d", p, n + 1);
            break;
        }
        if (n < max && ids) ids[n] = (int64_t)id;
        n++;
    }
    fclose(f);
    return rc < 0 ? -1 : n;
}

int slurm_batch_exit(const char *dir, int64_t cell_id, int *status, int *restart, int *task, char *err,
                     size_t errlen)
{
    char p[BATCH_PATH_MAX + 64];
    if (slurm_batch_path(p, sizeof p, dir, cell_id, "exit") != 0) return errbuf_set(err, errlen, "path too long");
    if (access(p, F_OK) != 0) return errno == ENOENT ? 1 : errbuf_set(err, errlen, "%s: %s", p, strerror(errno));
    json_error_t je;
    json_t *j = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
    json_t *s = json_object_get(j, "status"), *r = json_object_get(j, "restart"), *t = json_object_get(j, "task");
    int ok = json_is_integer(s) && json_is_integer(r) && json_is_integer(t) && json_integer_value(s) >= 0 &&
             json_integer_value(s) <= 255;
    if (ok) {
        if (status) *status = (int)json_integer_value(s);
        if (restart) *restart = (int)json_integer_value(r);
        if (task) *task = (int)json_integer_value(t);
    }
    json_decref(j);
    return ok ? 0 : errbuf_set(err, errlen, "%s is not an exit record", p);
}
