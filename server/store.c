/* store.c — all of prunelabd's SQL: schema migrations, users and tokens, models, jobs, cells,
 * the scheduler's claim, leases, recovery and metrics (the contract and the threading model are
 * in store.h).
 *
 * Connections. `w` is the one writer connection; every write function takes wmu, runs
 * BEGIN IMMEDIATE, and ends with COMMIT (rc OK / EXISTS / NOOP) or ROLLBACK (anything else)
 * through wr_begin / wr_end, so a function that fails halfway leaves nothing behind. Read
 * functions borrow a read-only connection from the idle pool (rd_get / rd_put) and run single
 * statements, each of which sees one consistent snapshot under WAL. All connections are opened
 * SQLITE_OPEN_NOMUTEX: our mutex and the pool guarantee one thread per connection at a time.
 *
 * Statements. Every value is bound (stmt_new's format string: t = const char * (NULL binds
 * NULL), i = int64_t, n = int, d = double); the one exception is `PRAGMA user_version = N`,
 * which takes no parameters and gets an integer we computed. Text is bound SQLITE_STATIC: the
 * caller's strings outlive the statement, which never escapes a function.
 *
 * Job roll-up. jobs.n_* (cells per state), jobs.state, finished_ms and error are recomputed by
 * job_rollup from the cells (a covering index scan) inside every transaction that moves a cell,
 * so they cannot drift. A cancelled job stays cancelled until retry_failed requeues some cells.
 *
 * Read cache (store_memo_get). Up to STORE_MEMO_SLOTS blobs keyed by text and tagged with the
 * commit counter read before each was built; mmu guards the slots (held for a lookup and a copy
 * of the blob), mbuild serialises builds so a burst of misses after a commit builds once.
 *
 * Token cache (store_token_lookup). The answers for recently used tokens (found or revoked, never
 * unknown), tagged with PRAGMA data_version of a watcher connection read before the lookup. That
 * number moves with every commit by any other connection, including other processes, so a token
 * revoked by `prunelabd user revoke` while the daemon runs is refused at its next use.
 *
 * Ownership. Structs returned to callers own malloc'd strings (store_*_free). Allocation failure
 * on a request path returns STORE_ERR ("out of memory"); nothing here aborts. */
#define _GNU_SOURCE
#include "store.h"

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sha256.h"
#include "errbuf.h"

#define STORE_BUSY_TIMEOUT_MS 10000
#define STORE_READERS_IDLE_MAX 80
#define STORE_MIGRATIONS_MAX 999
#define STORE_APPLICATION_ID 0x504C4142 /* "PLAB", set by 001_init.sql */
#define STORE_DEFAULT_ATTEMPTS 3
#define STORE_MEMO_SLOTS 32
#define STORE_TOKEN_SLOTS 64

/* One cached token lookup (store_token_lookup): found tokens only, active or revoked. */
typedef struct {
    char hash[SHA256_HEX_LEN]; /* "" = free slot */
    int64_t data_version;      /* dv_get() read before the lookup */
    int revoked;
    int64_t user_id, created_ms;
    int admin;
    char name[72];             /* user names are at most 64 bytes */
    uint64_t used;             /* LRU tick */
} token_slot;

/* One entry of the read cache (store_memo_get). key NULL = free slot. */
typedef struct {
    char *key;
    uint64_t version;  /* commit counter read before the blob was built */
    char *blob;
    size_t len;
    uint64_t used;     /* memo_tick of the last hit, for LRU eviction */
} memo_slot;

struct store {
    char *path;
    int schema_version;
    sqlite3 *w;                    /* the writer, guarded by wmu */
    pthread_mutex_t wmu;
    int w_sync_full;               /* current PRAGMA synchronous of w: 1 FULL, 0 NORMAL */
    pthread_mutex_t rmu;           /* guards idle / n_idle */
    sqlite3 *idle[STORE_READERS_IDLE_MAX];
    int n_idle;
    pthread_mutex_t vmu;           /* guards version */
    pthread_cond_t vcond;
    uint64_t version;
    store_clock_fn clock;          /* NULL = real time; set before threads start */
    void *clock_ctx;
    pthread_mutex_t mmu;           /* guards memo[] and memo_tick (held for a lookup + copy) */
    pthread_mutex_t mbuild;        /* one memo build at a time (see store_memo_get) */
    memo_slot memo[STORE_MEMO_SLOTS];
    uint64_t memo_tick;            /* LRU clock of the memo */
    pthread_mutex_t dvmu;          /* guards dv_db / dv_stmt */
    sqlite3 *dv_db;                /* read-only connection that only reads PRAGMA data_version */
    sqlite3_stmt *dv_stmt;
    pthread_mutex_t tmu;           /* guards toks[] and tok_tick */
    token_slot toks[STORE_TOKEN_SLOTS];
    uint64_t tok_tick;
};

/* ------------------------------------------------------------------ names */

static const char *const RC_NAMES[] = {"error", "ok", "not_found", "exists", "conflict", "invalid", "noop"};
static const char *const JOB_TYPE_NAMES[] = {"train", "ablation", "sensitivity", "joint", "rsst", "lite"};
static const char *const STATE_NAMES[] = {"queued", "running", "done", "failed", "cancelled"};
static_assert(sizeof JOB_TYPE_NAMES / sizeof *JOB_TYPE_NAMES == STORE_JOB_TYPE_COUNT, "job type names");
static_assert(sizeof STATE_NAMES / sizeof *STATE_NAMES == STORE_STATE_COUNT, "state names");

const char *store_rc_name(int rc)
{
    return rc >= -1 && rc <= STORE_NOOP ? RC_NAMES[rc + 1] : "unknown";
}

const char *store_job_type_name(store_job_type t)
{
    return (int)t >= 0 && t < STORE_JOB_TYPE_COUNT ? JOB_TYPE_NAMES[t] : NULL;
}

int store_job_type_parse(const char *s)
{
    for (int i = 0; s && i < STORE_JOB_TYPE_COUNT; i++)
        if (!strcmp(s, JOB_TYPE_NAMES[i])) return i;
    return -1;
}

const char *store_state_name(store_state s)
{
    return (int)s >= 0 && s < STORE_STATE_COUNT ? STATE_NAMES[s] : NULL;
}

int store_state_parse(const char *s)
{
    for (int i = 0; s && i < STORE_STATE_COUNT; i++)
        if (!strcmp(s, STATE_NAMES[i])) return i;
    return -1;
}

int store_name_valid(const char *s)
{
    if (!s) return 0;
    size_t n = strlen(s);
    if (n < 1 || n > 64 || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-') return 0;
    return 1;
}

int store_dataset_name_valid(const char *s)
{
    if (!s) return 0;
    size_t n = strlen(s);
    if (n < 1 || n > 200) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == '/' || c == '\\') return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ small helpers */

static int64_t clock_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t store_now_ms(store *st)
{
    return st->clock ? st->clock(st->clock_ctx) : clock_real_ms();
}

void store_clock_set(store *st, store_clock_fn fn, void *ctx)
{
    st->clock = fn;
    st->clock_ctx = ctx;
}

static char *dup_or_null(const char *s, int *oom)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = 1;
    return d;
}

static char *col_dup(sqlite3_stmt *s, int i, int *oom)
{
    return dup_or_null((const char *)sqlite3_column_text(s, i), oom);
}

static int64_t col_i64(sqlite3_stmt *s, int i) /* NULL reads as 0 */
{
    return sqlite3_column_int64(s, i);
}

/* Prepare sql and bind the arguments described by fmt (see the design comment). Returns the
 * statement (caller finalizes) or NULL with err. */
static sqlite3_stmt *stmt_newv(sqlite3 *db, char *err, size_t errlen, const char *sql, const char *fmt,
                               va_list ap)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        errbuf_set(err, errlen, "sqlite prepare: %s", sqlite3_errmsg(db));
        return NULL;
    }
    for (int i = 0; fmt && fmt[i]; i++) {
        int rc;
        switch (fmt[i]) {
        case 't': {
            const char *v = va_arg(ap, const char *);
            rc = v ? sqlite3_bind_text(s, i + 1, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i + 1);
            break;
        }
        case 'i': rc = sqlite3_bind_int64(s, i + 1, va_arg(ap, int64_t)); break;
        case 'n': rc = sqlite3_bind_int(s, i + 1, va_arg(ap, int)); break;
        case 'd': rc = sqlite3_bind_double(s, i + 1, va_arg(ap, double)); break;
        default: rc = SQLITE_MISUSE;
        }
        if (rc != SQLITE_OK) {
            errbuf_set(err, errlen, "sqlite bind %d: %s", i + 1, sqlite3_errstr(rc));
            sqlite3_finalize(s);
            return NULL;
        }
    }
    return s;
}

static sqlite3_stmt *stmt_new(sqlite3 *db, char *err, size_t errlen, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *s = stmt_newv(db, err, errlen, sql, fmt, ap);
    va_end(ap);
    return s;
}

/* Map a failed sqlite3_step: constraint violations are the caller's bad input. */
static int step_error(sqlite3 *db, int rc, char *err, size_t errlen)
{
    errbuf_set(err, errlen, "%s", sqlite3_errmsg(db));
    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) return STORE_EXISTS;
    if (rc == SQLITE_CONSTRAINT_CHECK || rc == SQLITE_CONSTRAINT_NOTNULL) return STORE_INVALID;
    return STORE_ERR;
}

/* Step s to completion (rows are discarded). STORE_OK or a step_error code. */
static int stmt_run(sqlite3_stmt *s, sqlite3 *db, char *err, size_t errlen)
{
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {}
    return rc == SQLITE_DONE ? STORE_OK : step_error(db, rc, err, errlen);
}

static int exec_sql(sqlite3 *db, char *err, size_t errlen, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *s = stmt_newv(db, err, errlen, sql, fmt, ap);
    va_end(ap);
    if (!s) return STORE_ERR;
    int rc = stmt_run(s, db, err, errlen);
    sqlite3_finalize(s);
    return rc;
}

/* First column of the first row as int64: STORE_OK, STORE_NOTFOUND (no row) or STORE_ERR. */
static int query_i64(sqlite3 *db, int64_t *out, char *err, size_t errlen, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *s = stmt_newv(db, err, errlen, sql, fmt, ap);
    va_end(ap);
    if (!s) return STORE_ERR;
    int rc = sqlite3_step(s);
    int out_rc = STORE_OK;
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(s, 0);
    else if (rc == SQLITE_DONE) out_rc = STORE_NOTFOUND;
    else out_rc = step_error(db, rc, err, errlen);
    sqlite3_finalize(s);
    return out_rc;
}

/* ------------------------------------------------------------------ transactions and readers */

static void version_bump(store *st)
{
    pthread_mutex_lock(&st->vmu);
    st->version++;
    pthread_cond_broadcast(&st->vcond);
    pthread_mutex_unlock(&st->vmu);
}

uint64_t store_version(store *st)
{
    pthread_mutex_lock(&st->vmu);
    uint64_t v = st->version;
    pthread_mutex_unlock(&st->vmu);
    return v;
}

uint64_t store_wait(store *st, uint64_t since, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
    pthread_mutex_lock(&st->vmu);
    while (st->version == since && timeout_ms > 0)
        if (pthread_cond_timedwait(&st->vcond, &st->vmu, &until) == ETIMEDOUT) break;
    uint64_t v = st->version;
    pthread_mutex_unlock(&st->vmu);
    return v;
}

/* ------------------------------------------------------------------ read cache */

/* A copy of the blob under key when it was built at the current counter: 1 with *out / *len,
 * 0 on a miss (or a stale entry), -1 out of memory. */
static int memo_lookup(store *st, const char *key, char **out, size_t *len)
{
    uint64_t v = store_version(st);
    int found = 0;
    pthread_mutex_lock(&st->mmu);
    for (int i = 0; i < STORE_MEMO_SLOTS; i++) {
        memo_slot *m = &st->memo[i];
        if (!m->key || m->version != v || strcmp(m->key, key) != 0) continue;
        m->used = ++st->memo_tick;
        *out = malloc(m->len + 1);
        if (!*out) {
            found = -1;
            break;
        }
        memcpy(*out, m->blob, m->len + 1);
        *len = m->len;
        found = 1;
        break;
    }
    pthread_mutex_unlock(&st->mmu);
    return found;
}

/* Keep a copy of blob under key, tagged with version: replaces the entry of the same key, else
 * a free or stale slot, else the least recently used one. Out of memory just skips caching. */
static void memo_store(store *st, const char *key, uint64_t version, const char *blob, size_t len)
{
    char *k = strdup(key), *b = malloc(len + 1);
    if (!k || !b) {
        free(k);
        free(b);
        return;
    }
    memcpy(b, blob, len);
    b[len] = '\0';
    uint64_t now_v = store_version(st);
    pthread_mutex_lock(&st->mmu);
    memo_slot *slot = NULL;
    for (int i = 0; i < STORE_MEMO_SLOTS && !slot; i++)
        if (st->memo[i].key && strcmp(st->memo[i].key, key) == 0) slot = &st->memo[i];
    for (int i = 0; i < STORE_MEMO_SLOTS && !slot; i++)
        if (!st->memo[i].key || st->memo[i].version != now_v) slot = &st->memo[i];
    if (!slot) {
        slot = &st->memo[0];
        for (int i = 1; i < STORE_MEMO_SLOTS; i++)
            if (st->memo[i].used < slot->used) slot = &st->memo[i];
    }
    free(slot->key);
    free(slot->blob);
    slot->key = k;
    slot->blob = b;
    slot->len = len;
    slot->version = version;
    slot->used = ++st->memo_tick;
    pthread_mutex_unlock(&st->mmu);
}

int store_memo_get(store *st, const char *key, store_memo_build_fn build, void *ctx, char **out, size_t *len,
                   int *hit, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    if (hit) *hit = 0;
    int rc = STORE_OK, building = 0, cacheable = strlen(key) <= STORE_MEMO_KEY_MAX;
    int found = cacheable ? memo_lookup(st, key, out, len) : 0;
    if (found == 0) {
        /* Miss: one builder at a time; whoever waited here finds what the first one built. */
        pthread_mutex_lock(&st->mbuild);
        building = 1;
        found = cacheable ? memo_lookup(st, key, out, len) : 0;
    }
    if (found < 0) {
        rc = errbuf_set(err, errlen, "out of memory");
        goto cleanup;
    }
    if (found > 0) {
        if (hit) *hit = 1;
        goto cleanup;
    }
    /* Read the counter BEFORE reading the data: what the build sees is at least that recent,
     * and any commit after this point moves the counter on, which makes the entry stale. */
    uint64_t v = store_version(st);
    rc = build(ctx, out, len, err, errlen);
    if (rc == STORE_OK && !*out) rc = errbuf_set(err, errlen, "memo build returned no data");
    if (rc == STORE_OK && cacheable) memo_store(st, key, v, *out, *len);
cleanup:
    if (building) pthread_mutex_unlock(&st->mbuild);
    if (rc != STORE_OK) {
        free(*out);
        *out = NULL;
        *len = 0;
    }
    return rc;
}

/* Lock the writer and BEGIN IMMEDIATE; durable selects synchronous=FULL for this commit.
 * On failure the lock is released and STORE_ERR returned. */
static int wr_begin(store *st, int durable, char *err, size_t errlen)
{
    pthread_mutex_lock(&st->wmu);
    if (durable != st->w_sync_full) {
        const char *sql = durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
        if (sqlite3_exec(st->w, sql, NULL, NULL, NULL) != SQLITE_OK) {
            errbuf_set(err, errlen, "%s: %s", sql, sqlite3_errmsg(st->w));
            pthread_mutex_unlock(&st->wmu);
            return STORE_ERR;
        }
        st->w_sync_full = durable;
    }
    if (sqlite3_exec(st->w, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        errbuf_set(err, errlen, "begin: %s", sqlite3_errmsg(st->w));
        pthread_mutex_unlock(&st->wmu);
        return STORE_ERR;
    }
    return STORE_OK;
}

/* Commit when rc is OK / EXISTS / NOOP, else roll back; unlock. Returns rc, or STORE_ERR when
 * the commit failed (then rolled back). */
static int wr_end(store *st, int rc, char *err, size_t errlen)
{
    int committed = 0;
    if (rc == STORE_OK || rc == STORE_EXISTS || rc == STORE_NOOP) {
        if (sqlite3_exec(st->w, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) {
            committed = 1;
        } else {
            errbuf_set(err, errlen, "commit: %s", sqlite3_errmsg(st->w));
            rc = STORE_ERR;
        }
    }
    if (!committed && sqlite3_get_autocommit(st->w) == 0)
        sqlite3_exec(st->w, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&st->wmu);
    if (committed) version_bump(st);
    return rc;
}

static int conn_setup(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    if (sqlite3_exec(db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL) != SQLITE_OK)
        return errbuf_set(err, errlen, "foreign_keys: %s", sqlite3_errmsg(db));
    return STORE_OK;
}

/* Borrow a read-only connection; NULL with err on failure. Give it back with rd_put. */
static sqlite3 *rd_get(store *st, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    pthread_mutex_lock(&st->rmu);
    if (st->n_idle > 0) db = st->idle[--st->n_idle];
    pthread_mutex_unlock(&st->rmu);
    if (db) return db;
    if (sqlite3_open_v2(st->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        errbuf_set(err, errlen, "open reader %s: %s", st->path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    if (conn_setup(db, err, errlen) != STORE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static void rd_put(store *st, sqlite3 *db)
{
    if (!db) return;
    pthread_mutex_lock(&st->rmu);
    if (st->n_idle < STORE_READERS_IDLE_MAX) {
        st->idle[st->n_idle++] = db;
        db = NULL;
    }
    pthread_mutex_unlock(&st->rmu);
    sqlite3_close(db); /* NULL is a no-op */
}

/* ------------------------------------------------------------------ open, migrations */

static char *file_read_text(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        errbuf_set(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        errbuf_set(err, errlen, "%s: read failed", path);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* Find sql_dir/NNN_*.sql. paths[k] (k = 1..*n_max) receives the file of migration k (caller
 * frees each and the array). Refuses duplicates and gaps. */
static int migrations_scan(const char *dir, char ***paths_out, int *n_max, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) return errbuf_set(err, errlen, "migrations directory %s: %s", dir, strerror(errno));
    char **paths = calloc(STORE_MIGRATIONS_MAX + 1, sizeof *paths);
    int max = 0, rc = STORE_OK;
    struct dirent *e;
    while (paths && (e = readdir(d))) {
        const char *nm = e->d_name;
        size_t len = strlen(nm);
        if (len < 9 || !isdigit((unsigned char)nm[0]) || !isdigit((unsigned char)nm[1]) ||
            !isdigit((unsigned char)nm[2]) || nm[3] != '_' || strcmp(nm + len - 4, ".sql"))
            continue;
        int k = (nm[0] - '0') * 100 + (nm[1] - '0') * 10 + (nm[2] - '0');
        if (k == 0) { rc = errbuf_set(err, errlen, "migration %s/%s: numbering starts at 001", dir, nm); break; }
        if (paths[k]) { rc = errbuf_set(err, errlen, "migrations %s and %s share number %03d", paths[k], nm, k); break; }
        if (asprintf(&paths[k], "%s/%s", dir, nm) < 0) { paths[k] = NULL; rc = errbuf_set(err, errlen, "out of memory"); break; }
        if (k > max) max = k;
    }
    closedir(d);
    if (!paths) return errbuf_set(err, errlen, "out of memory");
    if (rc == STORE_OK && max == 0) rc = errbuf_set(err, errlen, "no migrations (NNN_name.sql) in %s", dir);
    for (int k = 1; rc == STORE_OK && k <= max; k++)
        if (!paths[k]) rc = errbuf_set(err, errlen, "migration %03d is missing from %s", k, dir);
    if (rc != STORE_OK) {
        for (int k = 0; k <= STORE_MIGRATIONS_MAX; k++) free(paths[k]);
        free(paths);
        return rc;
    }
    *paths_out = paths;
    *n_max = max;
    return STORE_OK;
}

static int migrations_apply(store *st, const char *sql_dir, char *err, size_t errlen)
{
    char **paths = NULL;
    int max = 0, rc;
    int64_t version = 0, app_id = 0, n_objects = 0;
    if ((rc = migrations_scan(sql_dir, &paths, &max, err, errlen)) != STORE_OK) return rc;
    if ((rc = query_i64(st->w, &version, err, errlen, "PRAGMA user_version", NULL)) != STORE_OK ||
        (rc = query_i64(st->w, &app_id, err, errlen, "PRAGMA application_id", NULL)) != STORE_OK ||
        (rc = query_i64(st->w, &n_objects, err, errlen, "SELECT COUNT(*) FROM sqlite_schema", NULL)) != STORE_OK) {
        rc = STORE_ERR;
        goto cleanup;
    }
    if ((version > 0 || n_objects > 0) && app_id != STORE_APPLICATION_ID) {
        rc = errbuf_set(err, errlen, "%s is not a prunelabd database (application_id %lld, %lld schema objects)",
                    st->path, (long long)app_id, (long long)n_objects);
        goto cleanup;
    }
    if (version > max) {
        rc = errbuf_set(err, errlen,
                    "%s has schema version %lld, newer than this prunelabd knows (%d, from %s); "
                    "run a newer prunelabd or use another data directory",
                    st->path, (long long)version, max, sql_dir);
        goto cleanup;
    }
    for (int k = (int)version + 1; k <= max; k++) {
        char *text = file_read_text(paths[k], err, errlen);
        if (!text) { rc = STORE_ERR; goto cleanup; }
        if ((rc = wr_begin(st, 1, err, errlen)) != STORE_OK) { free(text); goto cleanup; }
        int64_t now_version = 0;
        rc = query_i64(st->w, &now_version, err, errlen, "PRAGMA user_version", NULL);
        if (rc == STORE_OK && now_version < k) { /* another process may have migrated meanwhile */
            char *msg = NULL;
            if (sqlite3_exec(st->w, text, NULL, NULL, &msg) != SQLITE_OK) {
                rc = errbuf_set(err, errlen, "migration %s: %s", paths[k], msg ? msg : sqlite3_errmsg(st->w));
            } else {
                char pragma[64]; /* integer we computed: PRAGMA takes no bound parameters */
                snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", k);
                if (sqlite3_exec(st->w, pragma, NULL, NULL, NULL) != SQLITE_OK)
                    rc = errbuf_set(err, errlen, "set user_version: %s", sqlite3_errmsg(st->w));
            }
            sqlite3_free(msg);
        }
        free(text);
        if ((rc = wr_end(st, rc, err, errlen)) != STORE_OK) goto cleanup;
    }
    rc = query_i64(st->w, &version, err, errlen, "PRAGMA user_version", NULL);
    st->schema_version = (int)version;
cleanup:
    for (int k = 0; k <= STORE_MIGRATIONS_MAX; k++) free(paths[k]);
    free(paths);
    return rc;
}

int store_open(const char *path, const char *sql_dir, store **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!path || !sql_dir) return errbuf_set(err, errlen, "store_open: path and sql_dir are required");
    if (!sqlite3_threadsafe()) return errbuf_set(err, errlen, "SQLite was built without thread support");
    store *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return errbuf_set(err, errlen, "out of memory");
    }
    pthread_mutex_init(&st->wmu, NULL);
    pthread_mutex_init(&st->rmu, NULL);
    pthread_mutex_init(&st->vmu, NULL);
    pthread_mutex_init(&st->mmu, NULL);
    pthread_mutex_init(&st->mbuild, NULL);
    pthread_mutex_init(&st->dvmu, NULL);
    pthread_mutex_init(&st->tmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->vcond, &ca);
    pthread_condattr_destroy(&ca);

    int rc = STORE_OK;
    char *mode = NULL;
    if (strcmp(path, ":memory:") != 0 && strncmp(path, "file:", 5) != 0) {
        /* a new database is created 0600 (SQLite would use 0644; its -wal / -shm files copy the
         * database's mode): tokens' hashes and everyone's results are in it */
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) close(fd);
    }
    if (sqlite3_open_v2(path, &st->w, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rc = errbuf_set(err, errlen, "open %s: %s", path, st->w ? sqlite3_errmsg(st->w) : "out of memory");
        goto cleanup;
    }
    if ((rc = conn_setup(st->w, err, errlen)) != STORE_OK) goto cleanup;
    sqlite3_stmt *s = stmt_new(st->w, err, errlen, "PRAGMA journal_mode=WAL", NULL);
    if (!s) { rc = STORE_ERR; goto cleanup; }
    if (sqlite3_step(s) == SQLITE_ROW) mode = dup_or_null((const char *)sqlite3_column_text(s, 0), &(int){0});
    sqlite3_finalize(s);
    if (!mode || strcmp(mode, "wal")) {
        rc = errbuf_set(err, errlen, "open %s: cannot switch to WAL (journal_mode %s): %s", path, mode ? mode : "?",
                    sqlite3_errmsg(st->w));
        goto cleanup;
    }
    /* journal_size_limit: the WAL file is truncated back to 64 MiB after checkpoints. */
    if (sqlite3_exec(st->w, "PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=67108864", NULL, NULL, NULL) !=
        SQLITE_OK) {
        rc = errbuf_set(err, errlen, "synchronous: %s", sqlite3_errmsg(st->w));
        goto cleanup;
    }
    rc = migrations_apply(st, sql_dir, err, errlen);
cleanup:
    free(mode);
    if (rc != STORE_OK) {
        store_close(st);
        return STORE_ERR;
    }
    *out = st;
    return STORE_OK;
}

void store_close(store *st)
{
    if (!st) return;
    for (int i = 0; i < st->n_idle; i++) sqlite3_close(st->idle[i]);
    if (st->w) {
        /* Explicit checkpoint so a clean shutdown leaves a compact database file. */
        sqlite3_wal_checkpoint_v2(st->w, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        sqlite3_close(st->w);
    }
    pthread_mutex_destroy(&st->wmu);
    pthread_mutex_destroy(&st->rmu);
    pthread_mutex_destroy(&st->vmu);
    pthread_cond_destroy(&st->vcond);
    for (int i = 0; i < STORE_MEMO_SLOTS; i++) {
        free(st->memo[i].key);
        free(st->memo[i].blob);
    }
    pthread_mutex_destroy(&st->mmu);
    pthread_mutex_destroy(&st->mbuild);
    sqlite3_finalize(st->dv_stmt);
    sqlite3_close(st->dv_db);
    pthread_mutex_destroy(&st->dvmu);
    pthread_mutex_destroy(&st->tmu);
    free(st->path);
    free(st);
}

int store_schema_version(store *st) { return st->schema_version; }

int store_integrity_check(store *st, char *err, size_t errlen)
{
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc = STORE_OK;
    sqlite3_stmt *s = stmt_new(db, err, errlen, "PRAGMA integrity_check", NULL);
    if (!s) { rc = STORE_ERR; goto cleanup; }
    if (sqlite3_step(s) != SQLITE_ROW) rc = errbuf_set(err, errlen, "integrity_check: %s", sqlite3_errmsg(db));
    else if (strcmp((const char *)sqlite3_column_text(s, 0), "ok"))
        rc = errbuf_set(err, errlen, "integrity_check: %s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    if (rc != STORE_OK) goto cleanup;
    if (!(s = stmt_new(db, err, errlen, "PRAGMA foreign_key_check", NULL))) { rc = STORE_ERR; goto cleanup; }
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW)
        rc = errbuf_set(err, errlen, "foreign_key_check: table %s row %lld", (const char *)sqlite3_column_text(s, 0),
                    (long long)sqlite3_column_int64(s, 1));
    else if (step != SQLITE_DONE)
        rc = errbuf_set(err, errlen, "foreign_key_check: %s", sqlite3_errmsg(db));
    sqlite3_finalize(s);
cleanup:
    rd_put(st, db);
    return rc;
}

/* ------------------------------------------------------------------ users and tokens */

void store_user_free(store_user *u)
{
    if (!u) return;
    free(u->name);
    memset(u, 0, sizeof *u);
}

void store_users_free(store_user *u, size_t n)
{
    for (size_t i = 0; u && i < n; i++) store_user_free(&u[i]);
    free(u);
}

/* token_out = "plt_" + hex of 32 bytes from /dev/urandom; hash_out = its SHA-256 hex. */
static int token_generate(char token_out[STORE_TOKEN_LEN], char hash_out[SHA256_HEX_LEN], char *err, size_t errlen)
{
    uint8_t raw[32];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errbuf_set(err, errlen, "/dev/urandom: %s", strerror(errno));
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t r = read(fd, raw + got, sizeof raw - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            close(fd);
            return errbuf_set(err, errlen, "/dev/urandom: short read");
        }
        got += (size_t)r;
    }
    close(fd);
    memcpy(token_out, "plt_", 4);
    sha256_to_hex(raw, sizeof raw, token_out + 4);
    sha256_hex(token_out, strlen(token_out), hash_out);
    memset(raw, 0, sizeof raw);
    return STORE_OK;
}

static int token_insert(store *st, int64_t user_id, const char *hash, char *err, size_t errlen)
{
    return exec_sql(st->w, err, errlen, "INSERT INTO tokens(hash, user_id, created_ms) VALUES (?1, ?2, ?3)", "tii",
                    hash, user_id, store_now_ms(st));
}

int store_user_add(store *st, const char *name, int admin, char token_out[STORE_TOKEN_LEN], char *err, size_t errlen)
{
    char hash[SHA256_HEX_LEN];
    int64_t uid = 0;
    if (!store_name_valid(name)) {
        errbuf_set(err, errlen, "name: must match [A-Za-z0-9._-]{1,64}");
        return STORE_INVALID;
    }
    int rc = token_generate(token_out, hash, err, errlen);
    if (rc != STORE_OK) return rc;
    if ((rc = wr_begin(st, 1, err, errlen)) != STORE_OK) return rc;
    rc = query_i64(st->w, &uid, err, errlen, "SELECT id FROM users WHERE name = ?1", "t", name);
    if (rc == STORE_OK) { rc = STORE_EXISTS; goto done; }
    if (rc != STORE_NOTFOUND) goto done;
    rc = exec_sql(st->w, err, errlen, "INSERT INTO users(name, admin, created_ms) VALUES (?1, ?2, ?3)", "tni", name,
                  admin ? 1 : 0, store_now_ms(st));
    if (rc != STORE_OK) goto done;
    rc = token_insert(st, sqlite3_last_insert_rowid(st->w), hash, err, errlen);
done:
    rc = wr_end(st, rc, err, errlen);
    if (rc != STORE_OK) token_out[0] = '\0';
    return rc;
}

int store_token_create(store *st, const char *name, char token_out[STORE_TOKEN_LEN], char *err, size_t errlen)
{
    char hash[SHA256_HEX_LEN];
    int64_t uid = 0;
    int rc = token_generate(token_out, hash, err, errlen);
    if (rc != STORE_OK) return rc;
    if ((rc = wr_begin(st, 1, err, errlen)) != STORE_OK) return rc;
    rc = query_i64(st->w, &uid, err, errlen, "SELECT id FROM users WHERE name = ?1", "t", name);
    if (rc == STORE_OK) rc = token_insert(st, uid, hash, err, errlen);
    rc = wr_end(st, rc, err, errlen);
    if (rc != STORE_OK) token_out[0] = '\0';
    return rc;
}

/* PRAGMA data_version of the store's own watcher connection: it changes after every commit by
 * any other connection — this process's writer, or another process such as `prunelabd user
 * revoke`. -1 when it cannot be read (then nothing is cached). */
static int64_t dv_get(store *st)
{
    int64_t v = -1;
    pthread_mutex_lock(&st->dvmu);
    if (!st->dv_db) {
        if (sqlite3_open_v2(st->path, &st->dv_db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
            conn_setup(st->dv_db, NULL, 0) != STORE_OK ||
            sqlite3_prepare_v2(st->dv_db, "PRAGMA data_version", -1, &st->dv_stmt, NULL) != SQLITE_OK) {
            sqlite3_finalize(st->dv_stmt);
            sqlite3_close(st->dv_db);
            st->dv_stmt = NULL;
            st->dv_db = NULL;
        }
    }
    if (st->dv_stmt) {
        if (sqlite3_step(st->dv_stmt) == SQLITE_ROW) v = sqlite3_column_int64(st->dv_stmt, 0);
        sqlite3_reset(st->dv_stmt);
    }
    pthread_mutex_unlock(&st->dvmu);
    return v;
}

/* A lookup of hash cached at data version dv: STORE_OK (u filled), STORE_CONFLICT (revoked),
 * STORE_NOTFOUND for a miss; STORE_ERR out of memory. */
static int token_cache_get(store *st, const char *hash, int64_t dv, store_user *u)
{
    int rc = STORE_NOTFOUND;
    pthread_mutex_lock(&st->tmu);
    for (int i = 0; i < STORE_TOKEN_SLOTS; i++) {
        token_slot *t = &st->toks[i];
        if (t->data_version != dv || strcmp(t->hash, hash) != 0) continue;
        t->used = ++st->tok_tick;
        if (t->revoked) {
            rc = STORE_CONFLICT;
        } else {
            u->id = t->user_id;
            u->admin = t->admin;
            u->created_ms = t->created_ms;
            u->name = strdup(t->name);
            rc = u->name ? STORE_OK : STORE_ERR;
        }
        break;
    }
    pthread_mutex_unlock(&st->tmu);
    return rc;
}

static void token_cache_put(store *st, const char *hash, int64_t dv, const store_user *u, int revoked)
{
    if (!revoked && (!u->name || strlen(u->name) >= sizeof st->toks[0].name)) return;
    pthread_mutex_lock(&st->tmu);
    token_slot *slot = &st->toks[0];
    for (int i = 0; i < STORE_TOKEN_SLOTS; i++) {
        token_slot *t = &st->toks[i];
        if (strcmp(t->hash, hash) == 0 || !t->hash[0]) {
            slot = t;
            break;
        }
        if (t->used < slot->used) slot = t;
    }
    memset(slot, 0, sizeof *slot);
    memcpy(slot->hash, hash, SHA256_HEX_LEN);
    slot->data_version = dv;
    slot->revoked = revoked;
    if (!revoked) {
        slot->user_id = u->id;
        slot->admin = u->admin;
        slot->created_ms = u->created_ms;
        snprintf(slot->name, sizeof slot->name, "%s", u->name);
    }
    slot->used = ++st->tok_tick;
    pthread_mutex_unlock(&st->tmu);
}

int store_token_lookup(store *st, const char *token, store_user *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    if (!token || !*token) return STORE_NOTFOUND;
    char hash[SHA256_HEX_LEN];
    sha256_hex(token, strlen(token), hash);
    /* Read the data version BEFORE the lookup: a commit after it makes the cached answer stale. */
    int64_t dv = dv_get(st);
    int rc = dv >= 0 ? token_cache_get(st, hash, dv, u) : STORE_NOTFOUND;
    if (rc == STORE_CONFLICT) errbuf_set(err, errlen, "the token was revoked");
    if (rc == STORE_ERR) errbuf_set(err, errlen, "out of memory");
    if (rc != STORE_NOTFOUND) return rc;
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int oom = 0;
    rc = STORE_ERR;
    sqlite3_stmt *s = stmt_new(db, err, errlen,
                               "SELECT u.id, u.name, u.admin, u.created_ms, t.revoked_ms IS NOT NULL "
                               "FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?1",
                               "t", hash);
    if (s) {
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW && sqlite3_column_int(s, 4)) {
            errbuf_set(err, errlen, "the token was revoked");
            rc = STORE_CONFLICT;
        } else if (step == SQLITE_ROW) {
            u->id = col_i64(s, 0);
            u->name = col_dup(s, 1, &oom);
            u->admin = (int)col_i64(s, 2);
            u->created_ms = col_i64(s, 3);
            rc = oom ? errbuf_set(err, errlen, "out of memory") : STORE_OK;
        } else {
            rc = step == SQLITE_DONE ? STORE_NOTFOUND : step_error(db, step, err, errlen);
        }
        sqlite3_finalize(s);
    }
    rd_put(st, db);
    if (dv >= 0 && (rc == STORE_OK || rc == STORE_CONFLICT)) token_cache_put(st, hash, dv, u, rc == STORE_CONFLICT);
    if (rc != STORE_OK) store_user_free(u);
    return rc;
}

int store_user_revoke(store *st, const char *name, int *n_revoked, char *err, size_t errlen)
{
    int64_t uid = 0;
    if (n_revoked) *n_revoked = 0;
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    rc = query_i64(st->w, &uid, err, errlen, "SELECT id FROM users WHERE name = ?1", "t", name);
    if (rc != STORE_OK) goto done;
    rc = exec_sql(st->w, err, errlen, "UPDATE tokens SET revoked_ms = ?1 WHERE user_id = ?2 AND revoked_ms IS NULL",
                  "ii", store_now_ms(st), uid);
    if (rc != STORE_OK) goto done;
    int n = sqlite3_changes(st->w);
    if (n_revoked) *n_revoked = n;
    if (n == 0) rc = STORE_NOOP;
done:
    return wr_end(st, rc, err, errlen);
}

int store_token_revoke(store *st, const char *token, char *err, size_t errlen)
{
    char hash[SHA256_HEX_LEN];
    int64_t revoked = 0;
    sha256_hex(token ? token : "", token ? strlen(token) : 0, hash);
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    rc = query_i64(st->w, &revoked, err, errlen, "SELECT revoked_ms IS NOT NULL FROM tokens WHERE hash = ?1", "t", hash);
    if (rc == STORE_OK && revoked) rc = STORE_NOOP;
    else if (rc == STORE_OK)
        rc = exec_sql(st->w, err, errlen, "UPDATE tokens SET revoked_ms = ?1 WHERE hash = ?2", "it", store_now_ms(st),
                      hash);
    return wr_end(st, rc, err, errlen);
}

int store_users_list(store *st, store_user **users, size_t *n, char *err, size_t errlen)
{
    *users = NULL;
    *n = 0;
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc = STORE_OK, oom = 0, step;
    size_t cap = 0;
    sqlite3_stmt *s = stmt_new(db, err, errlen,
                               "SELECT u.id, u.name, u.admin, u.created_ms, "
                               "(SELECT COUNT(*) FROM tokens t WHERE t.user_id = u.id AND t.revoked_ms IS NULL) "
                               "FROM users u ORDER BY u.name",
                               NULL);
    if (!s) { rc = STORE_ERR; goto cleanup; }
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            store_user *nu = realloc(*users, cap * sizeof *nu);
            if (!nu) { oom = 1; break; }
            *users = nu;
        }
        store_user *u = &(*users)[(*n)++];
        u->id = col_i64(s, 0);
        u->name = col_dup(s, 1, &oom);
        u->admin = (int)col_i64(s, 2);
        u->created_ms = col_i64(s, 3);
        u->active_tokens = (int)col_i64(s, 4);
    }
    if (oom) rc = errbuf_set(err, errlen, "out of memory");
    else if (step != SQLITE_DONE) rc = step_error(db, step, err, errlen);
    sqlite3_finalize(s);
cleanup:
    rd_put(st, db);
    if (rc != STORE_OK) {
        store_users_free(*users, *n);
        *users = NULL;
        *n = 0;
    }
    return rc;
}

/* ------------------------------------------------------------------ models */

#define MODEL_COLS "id, name, path, dataset, params, accuracy, info, owner, created_ms"

void store_model_free(store_model *m)
{
    if (!m) return;
    free(m->name);
    free(m->path);
    free(m->dataset);
    free(m->info_json);
    free(m->owner);
    memset(m, 0, sizeof *m);
}

void store_models_free(store_model *m, size_t n)
{
    for (size_t i = 0; m && i < n; i++) store_model_free(&m[i]);
    free(m);
}

static void model_from_row(sqlite3_stmt *s, store_model *m, int *oom)
{
    m->id = col_i64(s, 0);
    m->name = col_dup(s, 1, oom);
    m->path = col_dup(s, 2, oom);
    m->dataset = col_dup(s, 3, oom);
    m->params = sqlite3_column_type(s, 4) == SQLITE_NULL ? -1 : col_i64(s, 4);
    m->accuracy = sqlite3_column_type(s, 5) == SQLITE_NULL ? NAN : sqlite3_column_double(s, 5);
    m->info_json = col_dup(s, 6, oom);
    m->owner = col_dup(s, 7, oom);
    m->created_ms = col_i64(s, 8);
}

static int model_insert_tx(store *st, const store_model *m, int64_t *id_out, char *err, size_t errlen);

int store_model_insert(store *st, const store_model *m, int64_t *id_out, char *err, size_t errlen)
{
    if (!store_name_valid(m->name)) {
        errbuf_set(err, errlen, "name: must match [A-Za-z0-9._-]{1,64}");
        return STORE_INVALID;
    }
    if (!m->path || !m->owner) {
        errbuf_set(err, errlen, "model: path and owner are required");
        return STORE_INVALID;
    }
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    rc = model_insert_tx(st, m, id_out, err, errlen);
    return wr_end(st, rc, err, errlen);
}

/* The insert of store_model_insert, inside the caller's write transaction (m checked). */
static int model_insert_tx(store *st, const store_model *m, int64_t *id_out, char *err, size_t errlen)
{
    int64_t id = 0;
    int rc = query_i64(st->w, &id, err, errlen, "SELECT id FROM models WHERE name = ?1", "t", m->name);
    if (rc == STORE_OK) return STORE_EXISTS;
    if (rc != STORE_NOTFOUND) return rc;
    sqlite3_stmt *s = stmt_new(st->w, err, errlen,
                               "INSERT INTO models(name, path, dataset, params, accuracy, info, owner, created_ms) "
                               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                               "ttt", m->name, m->path, m->dataset);
    if (!s) return STORE_ERR;
    if (m->params >= 0) sqlite3_bind_int64(s, 4, m->params);
    if (isfinite(m->accuracy)) sqlite3_bind_double(s, 5, m->accuracy);
    if (m->info_json) sqlite3_bind_text(s, 6, m->info_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, m->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 8, store_now_ms(st));
    rc = stmt_run(s, st->w, err, errlen);
    sqlite3_finalize(s);
    if (rc == STORE_OK && id_out) *id_out = sqlite3_last_insert_rowid(st->w);
    return rc;
}

int store_model_get(store *st, const char *name, store_model *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc = STORE_ERR, oom = 0;
    sqlite3_stmt *s = stmt_new(db, err, errlen, "SELECT " MODEL_COLS " FROM models WHERE name = ?1", "t", name);
    if (s) {
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            model_from_row(s, m, &oom);
            rc = oom ? errbuf_set(err, errlen, "out of memory") : STORE_OK;
        } else {
            rc = step == SQLITE_DONE ? STORE_NOTFOUND : step_error(db, step, err, errlen);
        }
        sqlite3_finalize(s);
    }
    rd_put(st, db);
    if (rc != STORE_OK) store_model_free(m);
    return rc;
}

int store_models_list(store *st, store_model **models, size_t *n, char *err, size_t errlen)
{
    *models = NULL;
    *n = 0;
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc = STORE_OK, oom = 0, step;
    size_t cap = 0;
    sqlite3_stmt *s = stmt_new(db, err, errlen, "SELECT " MODEL_COLS " FROM models ORDER BY name", NULL);
    if (!s) { rc = STORE_ERR; goto cleanup; }
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            store_model *nm = realloc(*models, cap * sizeof *nm);
            if (!nm) { oom = 1; break; }
            *models = nm;
        }
        model_from_row(s, &(*models)[(*n)++], &oom);
    }
    if (oom) rc = errbuf_set(err, errlen, "out of memory");
    else if (step != SQLITE_DONE) rc = step_error(db, step, err, errlen);
    sqlite3_finalize(s);
cleanup:
    rd_put(st, db);
    if (rc != STORE_OK) {
        store_models_free(*models, *n);
        *models = NULL;
        *n = 0;
    }
    return rc;
}

int store_model_delete(store *st, const char *name, char *err, size_t errlen)
{
    int64_t id = 0, busy = 0;
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    rc = query_i64(st->w, &id, err, errlen, "SELECT id FROM models WHERE name = ?1", "t", name);
    if (rc != STORE_OK) goto done;
    rc = query_i64(st->w, &busy, err, errlen,
                   "SELECT COUNT(*) FROM jobs WHERE model = ?1 AND state IN ('queued', 'running')", "t", name);
    if (rc != STORE_OK) goto done;
    if (busy) {
        errbuf_set(err, errlen, "model %s is used by %lld queued or running job(s)", name, (long long)busy);
        rc = STORE_CONFLICT;
        goto done;
    }
    rc = exec_sql(st->w, err, errlen, "DELETE FROM models WHERE id = ?1", "i", id);
done:
    return wr_end(st, rc, err, errlen);
}

/* ------------------------------------------------------------------ jobs */

#define JOB_COLS                                                                                         \
    "j.id, j.owner, j.type, j.spec, j.model, j.priority, j.state, j.idem_key, j.n_cells, j.n_queued, "   \
    "j.n_running, j.n_done, j.n_failed, j.n_cancelled, j.baseline, j.created_ms, j.started_ms, "         \
    "j.finished_ms, j.error, "                                                                           \
    "(SELECT COALESCE(SUM(c.progress), 0) FROM cells c WHERE c.job_id = j.id AND c.state = 'running')"
/* The same columns with NULL for the spec (listings that do not show it skip reading the blob). */
#define JOB_COLS_NO_SPEC                                                                                 \
    "j.id, j.owner, j.type, NULL, j.model, j.priority, j.state, j.idem_key, j.n_cells, j.n_queued, "     \
    "j.n_running, j.n_done, j.n_failed, j.n_cancelled, j.baseline, j.created_ms, j.started_ms, "         \
    "j.finished_ms, j.error, "                                                                           \
    "(SELECT COALESCE(SUM(c.progress), 0) FROM cells c WHERE c.job_id = j.id AND c.state = 'running')"

void store_job_free(store_job *j)
{
    if (!j) return;
    free(j->owner);
    free(j->spec_json);
    free(j->model);
    free(j->idem_key);
    free(j->baseline_json);
    free(j->error);
    memset(j, 0, sizeof *j);
}

void store_jobs_free(store_job *j, size_t n)
{
    for (size_t i = 0; j && i < n; i++) store_job_free(&j[i]);
    free(j);
}

static void job_from_row(sqlite3_stmt *s, store_job *j, int *oom)
{
    j->id = col_i64(s, 0);
    j->owner = col_dup(s, 1, oom);
    j->type = (store_job_type)store_job_type_parse((const char *)sqlite3_column_text(s, 2));
    j->spec_json = col_dup(s, 3, oom);
    j->model = col_dup(s, 4, oom);
    j->priority = (int)col_i64(s, 5);
    j->state = (store_state)store_state_parse((const char *)sqlite3_column_text(s, 6));
    j->idem_key = col_dup(s, 7, oom);
    j->n_cells = (int)col_i64(s, 8);
    for (int k = 0; k < STORE_STATE_COUNT; k++) j->counts[k] = (int)col_i64(s, 9 + k);
    j->baseline_json = col_dup(s, 14, oom);
    j->created_ms = col_i64(s, 15);
    j->started_ms = col_i64(s, 16);
    j->finished_ms = col_i64(s, 17);
    j->error = col_dup(s, 18, oom);
    double finished = j->counts[STORE_STATE_DONE] + j->counts[STORE_STATE_FAILED] + j->counts[STORE_STATE_CANCELLED];
    j->progress = j->n_cells > 0 ? (finished + sqlite3_column_double(s, 19)) / j->n_cells : 0.0;
}

/* Recompute a job's counts, state, finished_ms and error from its cells (writer, inside a
 * transaction). keep_cancelled: a cancelled job stays cancelled. */
static int job_rollup(store *st, int64_t job_id, int keep_cancelled, char *err, size_t errlen)
{
    int64_t cnt[STORE_STATE_COUNT] = {0};
    sqlite3_stmt *s = stmt_new(st->w, err, errlen, "SELECT state, COUNT(*) FROM cells WHERE job_id = ?1 GROUP BY state",
                               "i", job_id);
    if (!s) return STORE_ERR;
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        int k = store_state_parse((const char *)sqlite3_column_text(s, 0));
        if (k >= 0) cnt[k] = sqlite3_column_int64(s, 1);
    }
    sqlite3_finalize(s);
    if (step != SQLITE_DONE) return step_error(st->w, step, err, errlen);

    s = stmt_new(st->w, err, errlen, "SELECT state, started_ms, finished_ms FROM jobs WHERE id = ?1", "i", job_id);
    if (!s) return STORE_ERR;
    if ((step = sqlite3_step(s)) != SQLITE_ROW) {
        sqlite3_finalize(s);
        return step == SQLITE_DONE ? STORE_NOTFOUND : step_error(st->w, step, err, errlen);
    }
    int cur = store_state_parse((const char *)sqlite3_column_text(s, 0));
    int started = sqlite3_column_type(s, 1) != SQLITE_NULL;
    int64_t finished_ms = col_i64(s, 2);
    sqlite3_finalize(s);

    store_state next;
    if (cur == STORE_STATE_CANCELLED && keep_cancelled) next = STORE_STATE_CANCELLED;
    else if (cnt[STORE_STATE_QUEUED] + cnt[STORE_STATE_RUNNING] > 0)
        next = started || cnt[STORE_STATE_RUNNING] > 0 ? STORE_STATE_RUNNING : STORE_STATE_QUEUED;
    else if (cnt[STORE_STATE_FAILED] > 0) next = STORE_STATE_FAILED;
    else if (cnt[STORE_STATE_CANCELLED] > 0) next = STORE_STATE_CANCELLED;
    else next = STORE_STATE_DONE;
    int terminal = next == STORE_STATE_DONE || next == STORE_STATE_FAILED || next == STORE_STATE_CANCELLED;
    int64_t total = 0;
    for (int k = 0; k < STORE_STATE_COUNT; k++) total += cnt[k];
    char msg[96] = "";
    if (next == STORE_STATE_FAILED)
        snprintf(msg, sizeof msg, "%lld of %lld cells failed", (long long)cnt[STORE_STATE_FAILED], (long long)total);
    if (!terminal) finished_ms = 0;
    else if (!finished_ms) finished_ms = store_now_ms(st);
    s = stmt_new(st->w, err, errlen,
                 "UPDATE jobs SET n_queued = ?1, n_running = ?2, n_done = ?3, n_failed = ?4, n_cancelled = ?5, "
                 "state = ?6, finished_ms = NULLIF(?7, 0), error = ?8 WHERE id = ?9",
                 "iiiiititi", cnt[0], cnt[1], cnt[2], cnt[3], cnt[4], STATE_NAMES[next], finished_ms,
                 msg[0] ? msg : NULL, job_id);
    if (!s) return STORE_ERR;
    int rc = stmt_run(s, st->w, err, errlen);
    sqlite3_finalize(s);
    return rc;
}

/* STORE_OK when nj can be written: an owner, a known type, a spec and 1..1e8 cells, each with a
 * spec. Else STORE_INVALID with err. */
static int job_new_check(const store_job_new *nj, char *err, size_t errlen)
{
    if (!nj->owner || !*nj->owner || !nj->spec_json || !nj->cell_specs || nj->n_cells < 1 ||
        nj->n_cells > 100000000 || !store_job_type_name(nj->type)) {
        errbuf_set(err, errlen, "job: owner, a known type, spec and at least one cell are required");
        return STORE_INVALID;
    }
    for (size_t i = 0; i < nj->n_cells; i++)
        if (!nj->cell_specs[i]) {
            errbuf_set(err, errlen, "cell %zu: spec missing", i);
            return STORE_INVALID;
        }
    return STORE_OK;
}

/* The job that (owner, idem_key) already names (writer, inside the transaction): STORE_OK when
 * none, STORE_EXISTS (same spec) or STORE_CONFLICT (another spec) with *job_id, else an error. */
static int job_idem_find(store *st, const store_job_new *nj, int64_t *job_id, char *err, size_t errlen)
{
    sqlite3_stmt *s = stmt_new(st->w, err, errlen, "SELECT id, spec FROM jobs WHERE owner = ?1 AND idem_key = ?2",
                               "tt", nj->owner, nj->idem_key);
    if (!s) return STORE_ERR;
    int rc = STORE_OK, step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        *job_id = col_i64(s, 0);
        const char *old = (const char *)sqlite3_column_text(s, 1);
        rc = old && !strcmp(old, nj->spec_json) ? STORE_EXISTS : STORE_CONFLICT;
        if (rc == STORE_CONFLICT) errbuf_set(err, errlen, "idempotency key already used for a different job");
    } else if (step != SQLITE_DONE) {
        rc = step_error(st->w, step, err, errlen);
    }
    sqlite3_finalize(s);
    return rc;
}

/* Insert the cells of job id, all queued (writer, inside the transaction). STORE_OK, or the
 * first failure with err naming the cell. */
static int job_cells_insert(store *st, int64_t id, const store_job_new *nj, int64_t now, char *err, size_t errlen)
{
    int rc = STORE_OK;
    int max_attempts = nj->max_attempts > 0 ? nj->max_attempts : STORE_DEFAULT_ATTEMPTS;
    sqlite3_stmt *ins = stmt_new(st->w, err, errlen,
                                 "INSERT INTO cells(job_id, idx, spec, max_attempts, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                                 "i", id);
    if (!ins) return STORE_ERR;
    sqlite3_bind_int(ins, 4, max_attempts);
    sqlite3_bind_int64(ins, 5, now);
    for (size_t i = 0; i < nj->n_cells && rc == STORE_OK; i++) {
        sqlite3_bind_int64(ins, 2, (int64_t)i);
        sqlite3_bind_text(ins, 3, nj->cell_specs[i], -1, SQLITE_STATIC);
        rc = stmt_run(ins, st->w, err, errlen);
        if (rc != STORE_OK && err) {
            char tmp[256];
            snprintf(tmp, sizeof tmp, "%s", err);
            errbuf_set(err, errlen, "cell %zu: %s", i, tmp);
        }
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    return rc;
}

/* The models a new job names (writer, inside the transaction): its input exists, its output
 * name is neither a model nor a live job's output. */
static int job_names_check(store *st, const store_job_new *nj, char *err, size_t errlen)
{
    int64_t n = 0;
    int rc;
    if (nj->model) {
        rc = query_i64(st->w, &n, err, errlen, "SELECT COUNT(*) FROM models WHERE name = ?1", "t", nj->model);
        if (rc != STORE_OK) return rc;
        if (!n) return errbuf_set(err, errlen, "model: no model named '%s'", nj->model), STORE_NOTFOUND;
    }
    if (!nj->out_model) return STORE_OK;
    rc = query_i64(st->w, &n, err, errlen,
                   "SELECT (SELECT COUNT(*) FROM models WHERE name = ?1) + (SELECT COUNT(*) FROM jobs "
                   "WHERE out_model = ?1 AND state IN ('queued', 'running'))",
                   "t", nj->out_model);
    if (rc != STORE_OK) return rc;
    if (n) return errbuf_set(err, errlen, "name: '%s' is a model's name or a queued or running job's output",
                             nj->out_model), STORE_TAKEN;
    return STORE_OK;
}

int store_job_create(store *st, const store_job_new *nj, int64_t *job_id, char *err, size_t errlen)
{
    *job_id = 0;
    int rc = job_new_check(nj, err, errlen);
    if (rc != STORE_OK) return rc;
    int64_t now = store_now_ms(st), id = 0;
    rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    if (nj->idem_key) {
        rc = job_idem_find(st, nj, job_id, err, errlen);
        if (rc != STORE_OK) goto done;
    }
    if ((rc = job_names_check(st, nj, err, errlen)) != STORE_OK) goto done;
    rc = exec_sql(st->w, err, errlen,
                  "INSERT INTO jobs(owner, type, spec, model, out_model, priority, idem_key, n_cells, n_queued, baseline, "
                  "created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10)",
                  "tttttntiti", nj->owner, JOB_TYPE_NAMES[nj->type], nj->spec_json, nj->model, nj->out_model,
                  nj->priority, nj->idem_key, (int64_t)nj->n_cells, nj->baseline_json, now);
    if (rc != STORE_OK) goto done;
    id = sqlite3_last_insert_rowid(st->w);
    rc = job_cells_insert(st, id, nj, now, err, errlen);
    if (rc == STORE_OK) *job_id = id;
done:
    rc = wr_end(st, rc, err, errlen);
    if (rc != STORE_OK && rc != STORE_EXISTS && rc != STORE_CONFLICT) *job_id = 0;
    return rc;
}

int store_job_get(store *st, int64_t id, store_job *j, char *err, size_t errlen)
{
    memset(j, 0, sizeof *j);
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc = STORE_ERR, oom = 0;
    sqlite3_stmt *s = stmt_new(db, err, errlen, "SELECT " JOB_COLS " FROM jobs j WHERE j.id = ?1", "i", id);
    if (s) {
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            job_from_row(s, j, &oom);
            rc = oom ? errbuf_set(err, errlen, "out of memory") : STORE_OK;
        } else {
            rc = step == SQLITE_DONE ? STORE_NOTFOUND : step_error(db, step, err, errlen);
        }
        sqlite3_finalize(s);
    }
    rd_put(st, db);
    if (rc != STORE_OK) store_job_free(j);
    return rc;
}

/* Page tokens: the order's letter and the last id of the page in hex ("n1f", "o2a"). Opaque to
 * clients; validated here. Returns the id, 0 for the first page, -1 when malformed. */
static int64_t page_token_parse(const char *tok, store_order order)
{
    if (!tok || !*tok) return 0;
    if (tok[0] != (order == STORE_ORDER_NEWEST ? 'n' : 'o')) return -1;
    size_t len = strlen(tok + 1);
    if (len < 1 || len > 15) return -1;
    int64_t v = 0;
    for (const char *p = tok + 1; *p; p++) {
        int d = isdigit((unsigned char)*p) ? *p - '0' : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v > 0 ? v : -1;
}

int store_jobs_list(store *st, const store_job_filter *f, store_job **jobs, size_t *n,
                    char next_token[STORE_PAGE_TOKEN_LEN], char *err, size_t errlen)
{
    *jobs = NULL;
    *n = 0;
    next_token[0] = '\0';
    int limit = f->limit <= 0 ? 50 : f->limit;
    if (limit > STORE_PAGE_MAX) limit = STORE_PAGE_MAX;
    int64_t after = page_token_parse(f->page_token, f->order);
    if (after < 0) {
        errbuf_set(err, errlen, "page_token: not a token of this listing");
        return STORE_INVALID;
    }
    if ((f->type != -1 && !store_job_type_name((store_job_type)f->type)) ||
        (f->state != -1 && !store_state_name((store_state)f->state))) {
        errbuf_set(err, errlen, "filter: unknown type or state");
        return STORE_INVALID;
    }
#define JOBS_WHERE "FROM jobs j WHERE (?1 IS NULL OR j.owner = ?1) AND (?2 IS NULL OR j.type = ?2) " \
                   "AND (?3 IS NULL OR j.state = ?3) "
    static const char *const sqls[2][2] = {
        {"SELECT " JOB_COLS " " JOBS_WHERE "AND (?4 = 0 OR j.id < ?4) ORDER BY j.id DESC LIMIT ?5",
         "SELECT " JOB_COLS " " JOBS_WHERE "AND j.id > ?4 ORDER BY j.id ASC LIMIT ?5"},
        {"SELECT " JOB_COLS_NO_SPEC " " JOBS_WHERE "AND (?4 = 0 OR j.id < ?4) ORDER BY j.id DESC LIMIT ?5",
         "SELECT " JOB_COLS_NO_SPEC " " JOBS_WHERE "AND j.id > ?4 ORDER BY j.id ASC LIMIT ?5"},
    };
#undef JOBS_WHERE
    const char *sql = sqls[f->without_spec ? 1 : 0][f->order == STORE_ORDER_NEWEST ? 0 : 1];
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc = STORE_OK, oom = 0, step;
    sqlite3_stmt *s = stmt_new(db, err, errlen, sql, "tttin", f->owner,
                               f->type == -1 ? NULL : JOB_TYPE_NAMES[f->type],
                               f->state == -1 ? NULL : STATE_NAMES[f->state], after, limit + 1);
    if (!s) { rc = STORE_ERR; goto cleanup; }
    *jobs = calloc((size_t)limit + 1, sizeof **jobs);
    if (!*jobs) { rc = errbuf_set(err, errlen, "out of memory"); sqlite3_finalize(s); goto cleanup; }
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == (size_t)limit) { /* one more row exists: there is a next page */
            snprintf(next_token, STORE_PAGE_TOKEN_LEN, "%c%llx", f->order == STORE_ORDER_NEWEST ? 'n' : 'o',
                     (unsigned long long)(*jobs)[*n - 1].id);
            step = SQLITE_DONE;
            break;
        }
        job_from_row(s, &(*jobs)[(*n)++], &oom);
    }
    if (oom) rc = errbuf_set(err, errlen, "out of memory");
    else if (step != SQLITE_DONE) rc = step_error(db, step, err, errlen);
    sqlite3_finalize(s);
cleanup:
    rd_put(st, db);
    if (rc != STORE_OK) {
        store_jobs_free(*jobs, *n);
        *jobs = NULL;
        *n = 0;
        next_token[0] = '\0';
    }
    return rc;
}

int store_job_baseline_set(store *st, int64_t id, const char *baseline_json, char *err, size_t errlen)
{
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    rc = exec_sql(st->w, err, errlen, "UPDATE jobs SET baseline = ?1 WHERE id = ?2", "ti", baseline_json, id);
    if (rc == STORE_OK && sqlite3_changes(st->w) == 0) rc = STORE_NOTFOUND;
    return wr_end(st, rc, err, errlen);
}

void store_running_free(store_running *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++) free(r[i].lease_owner);
    free(r);
}

int store_job_cancel(store *st, int64_t id, store_running **running, size_t *n_running, char *err, size_t errlen)
{
    *running = NULL;
    *n_running = 0;
    int64_t now = store_now_ms(st);
    int rc = wr_begin(st, 1, err, errlen), oom = 0, step;
    if (rc != STORE_OK) return rc;
    sqlite3_stmt *s = NULL;
    size_t cap = 0;
    char *state = NULL;
    s = stmt_new(st->w, err, errlen, "SELECT state FROM jobs WHERE id = ?1", "i", id);
    if (!s) { rc = STORE_ERR; goto done; }
    step = sqlite3_step(s);
    if (step == SQLITE_ROW) state = col_dup(s, 0, &oom);
    else rc = step == SQLITE_DONE ? STORE_NOTFOUND : step_error(st->w, step, err, errlen);
    sqlite3_finalize(s);
    if (rc != STORE_OK) goto done;
    if (!state) { rc = errbuf_set(err, errlen, "out of memory"); goto done; }
    if (!strcmp(state, "done") || !strcmp(state, "failed")) { rc = STORE_NOOP; goto done; }
    rc = exec_sql(st->w, err, errlen,
                  "UPDATE cells SET state = 'cancelled', finished_ms = ?1 WHERE job_id = ?2 AND state = 'queued'", "ii",
                  now, id);
    if (rc == STORE_OK) rc = exec_sql(st->w, err, errlen, "UPDATE jobs SET state = 'cancelled' WHERE id = ?1", "i", id);
    if (rc == STORE_OK) rc = job_rollup(st, id, 1, err, errlen);
    if (rc != STORE_OK) goto done;
    s = stmt_new(st->w, err, errlen, "SELECT id, pid, lease_owner FROM cells WHERE job_id = ?1 AND state = 'running' ORDER BY idx",
                 "i", id);
    if (!s) { rc = STORE_ERR; goto done; }
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n_running == cap) {
            cap = cap ? 2 * cap : 8;
            store_running *nr = realloc(*running, cap * sizeof *nr);
            if (!nr) { oom = 1; break; }
            *running = nr;
        }
        store_running *r = &(*running)[(*n_running)++];
        r->cell_id = col_i64(s, 0);
        r->pid = (pid_t)col_i64(s, 1);
        r->lease_owner = col_dup(s, 2, &oom);
    }
    if (oom) rc = errbuf_set(err, errlen, "out of memory");
    else if (step != SQLITE_DONE) rc = step_error(st->w, step, err, errlen);
    sqlite3_finalize(s);
done:
    free(state);
    rc = wr_end(st, rc, err, errlen);
    if (rc != STORE_OK) {
        store_running_free(*running, *n_running);
        *running = NULL;
        *n_running = 0;
    }
    return rc;
}

int store_job_retry_failed(store *st, int64_t id, int *n_requeued, char *err, size_t errlen)
{
    int64_t exists = 0;
    if (n_requeued) *n_requeued = 0;
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    rc = query_i64(st->w, &exists, err, errlen, "SELECT id FROM jobs WHERE id = ?1", "i", id);
    if (rc != STORE_OK) goto done;
    rc = exec_sql(st->w, err, errlen,
                  "UPDATE cells SET state = 'queued', attempts = 0, error_code = NULL, error_message = NULL, "
                  "stderr_tail = NULL, progress = 0, phase = NULL, started_ms = NULL, finished_ms = NULL "
                  "WHERE job_id = ?1 AND state = 'failed'",
                  "i", id);
    if (rc != STORE_OK) goto done;
    int n = sqlite3_changes(st->w);
    if (n_requeued) *n_requeued = n;
    if (n == 0) { rc = STORE_NOOP; goto done; }
    rc = job_rollup(st, id, 0, err, errlen);
done:
    return wr_end(st, rc, err, errlen);
}

int store_job_delete(store *st, int64_t id, char *err, size_t errlen)
{
    int64_t running = 0;
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    rc = query_i64(st->w, &running, err, errlen, "SELECT n_running FROM jobs WHERE id = ?1", "i", id);
    if (rc != STORE_OK) goto done;
    if (running > 0) {
        errbuf_set(err, errlen, "job %lld has %lld running cell(s); cancel it first", (long long)id, (long long)running);
        rc = STORE_CONFLICT;
        goto done;
    }
    rc = exec_sql(st->w, err, errlen, "DELETE FROM jobs WHERE id = ?1", "i", id);
done:
    return wr_end(st, rc, err, errlen);
}

/* ------------------------------------------------------------------ cells */

#define CELL_COLS_HEAD                                                                                     \
    "c.id, c.job_id, c.idx, j.owner, j.type, c.spec, c.state, c.attempts, c.max_attempts, c.lease_owner, " \
    "c.lease_expires_ms, c.pid, c.progress, c.phase, "
#define CELL_COLS_TAIL                                                                                     \
    ", c.error_code, c.error_message, c.stderr_tail, c.created_ms, c.started_ms, c.finished_ms "          \
    "FROM cells c JOIN jobs j ON j.id = c.job_id"
#define CELL_COLS CELL_COLS_HEAD "c.result" CELL_COLS_TAIL
/* The result with its sparsity report (an object) cut down to the "overall" and "weights"
 * summaries: what a page of cells shows unless asked for the whole report. */
#define CELL_RESULT_BRIEF                                                                          \
    "CASE WHEN json_type(c.result, '$.sparsity') = 'object' THEN json_set(c.result, '$.sparsity', " \
    "(SELECT json_group_object(key, json(value)) FROM json_each(c.result, '$.sparsity') "            \
    "WHERE key IN ('overall', 'weights'))) ELSE c.result END"

void store_cell_free(store_cell *c)
{
    if (!c) return;
    free(c->owner);
    free(c->spec_json);
    free(c->lease_owner);
    free(c->phase);
    free(c->result_json);
    free(c->error_code);
    free(c->error_message);
    free(c->stderr_tail);
    memset(c, 0, sizeof *c);
}

void store_cells_free(store_cell *c, size_t n)
{
    for (size_t i = 0; c && i < n; i++) store_cell_free(&c[i]);
    free(c);
}

static void cell_from_row(sqlite3_stmt *s, store_cell *c, int *oom)
{
    c->id = col_i64(s, 0);
    c->job_id = col_i64(s, 1);
    c->idx = (int)col_i64(s, 2);
    c->owner = col_dup(s, 3, oom);
    c->job_type = (store_job_type)store_job_type_parse((const char *)sqlite3_column_text(s, 4));
    c->spec_json = col_dup(s, 5, oom);
    c->state = (store_state)store_state_parse((const char *)sqlite3_column_text(s, 6));
    c->attempts = (int)col_i64(s, 7);
    c->max_attempts = (int)col_i64(s, 8);
    c->lease_owner = col_dup(s, 9, oom);
    c->lease_expires_ms = col_i64(s, 10);
    c->pid = (pid_t)col_i64(s, 11);
    c->progress = sqlite3_column_double(s, 12);
    c->phase = col_dup(s, 13, oom);
    c->result_json = col_dup(s, 14, oom);
    c->error_code = col_dup(s, 15, oom);
    c->error_message = col_dup(s, 16, oom);
    c->stderr_tail = col_dup(s, 17, oom);
    c->created_ms = col_i64(s, 18);
    c->started_ms = col_i64(s, 19);
    c->finished_ms = col_i64(s, 20);
}

static int cell_read(sqlite3 *db, int64_t cell_id, store_cell *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    int rc, oom = 0;
    sqlite3_stmt *s = stmt_new(db, err, errlen, "SELECT " CELL_COLS " WHERE c.id = ?1", "i", cell_id);
    if (!s) return STORE_ERR;
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        cell_from_row(s, c, &oom);
        rc = oom ? errbuf_set(err, errlen, "out of memory") : STORE_OK;
    } else {
        rc = step == SQLITE_DONE ? STORE_NOTFOUND : step_error(db, step, err, errlen);
    }
    sqlite3_finalize(s);
    if (rc != STORE_OK) store_cell_free(c);
    return rc;
}

int store_cell_get(store *st, int64_t cell_id, store_cell *c, char *err, size_t errlen)
{
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) {
        memset(c, 0, sizeof *c);
        return STORE_ERR;
    }
    int rc = cell_read(db, cell_id, c, err, errlen);
    rd_put(st, db);
    return rc;
}

int store_cells_list(store *st, int64_t job_id, int state, store_cell **cells, size_t *n, char *err, size_t errlen)
{
    *cells = NULL;
    *n = 0;
    if (state != -1 && !store_state_name((store_state)state)) {
        errbuf_set(err, errlen, "state: unknown");
        return STORE_INVALID;
    }
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc = STORE_OK, oom = 0, step;
    size_t cap = 0;
    sqlite3_stmt *s = stmt_new(db, err, errlen,
                               "SELECT " CELL_COLS " WHERE c.job_id = ?1 AND (?2 IS NULL OR c.state = ?2) ORDER BY c.idx",
                               "it", job_id, state == -1 ? NULL : STATE_NAMES[state]);
    if (!s) { rc = STORE_ERR; goto cleanup; }
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 32;
            store_cell *nc = realloc(*cells, cap * sizeof *nc);
            if (!nc) { oom = 1; break; }
            *cells = nc;
        }
        cell_from_row(s, &(*cells)[(*n)++], &oom);
    }
    if (oom) rc = errbuf_set(err, errlen, "out of memory");
    else if (step != SQLITE_DONE) rc = step_error(db, step, err, errlen);
    sqlite3_finalize(s);
cleanup:
    rd_put(st, db);
    if (rc != STORE_OK) {
        store_cells_free(*cells, *n);
        *cells = NULL;
        *n = 0;
    }
    return rc;
}

/* Cell page tokens: 'c' and the last idx of the page in hex ("c31"). Returns the idx after
 * which the page starts, -1 for the first page, -2 when malformed. */
static int64_t cell_token_parse(const char *tok)
{
    if (!tok || !*tok) return -1;
    size_t len = strlen(tok + 1);
    if (tok[0] != 'c' || len < 1 || len > 8) return -2;
    int64_t v = 0;
    for (const char *p = tok + 1; *p; p++) {
        int d = isdigit((unsigned char)*p) ? *p - '0' : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10 : -1;
        if (d < 0) return -2;
        v = v * 16 + d;
    }
    return v <= INT32_MAX ? v : -2;
}

int store_cells_page(store *st, int64_t job_id, const store_cell_filter *f, store_cell **cells, size_t *n,
                     char next_token[STORE_PAGE_TOKEN_LEN], char *err, size_t errlen)
{
    *cells = NULL;
    *n = 0;
    next_token[0] = '\0';
    int limit = f->limit <= 0 ? 50 : f->limit > STORE_PAGE_MAX ? STORE_PAGE_MAX : f->limit;
    int64_t after = cell_token_parse(f->page_token);
    if (after < -1) {
        errbuf_set(err, errlen, "page_token: not a token of this listing");
        return STORE_INVALID;
    }
    if (f->state != -1 && !store_state_name((store_state)f->state)) {
        errbuf_set(err, errlen, "state: unknown");
        return STORE_INVALID;
    }
    /* [with the whole report][filtered by state]: each keyset query walks one index,
     * (job_id, idx) or cells_job_state (job_id, state, idx) */
#define CELLS_PAGE(result, where)                                                               \
    "SELECT " CELL_COLS_HEAD result CELL_COLS_TAIL " WHERE c.job_id = ?1 " where                 \
    "AND c.idx > ?3 ORDER BY c.idx LIMIT ?4"
    static const char *const sqls[2][2] = {
        {CELLS_PAGE(CELL_RESULT_BRIEF, "AND ?2 IS NULL "), CELLS_PAGE(CELL_RESULT_BRIEF, "AND c.state = ?2 ")},
        {CELLS_PAGE("c.result", "AND ?2 IS NULL "), CELLS_PAGE("c.result", "AND c.state = ?2 ")},
    };
#undef CELLS_PAGE
    const char *sql = sqls[f->with_sparsity ? 1 : 0][f->state == -1 ? 0 : 1];
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc = STORE_OK, oom = 0, step;
    sqlite3_stmt *s = stmt_new(db, err, errlen, sql, "itin", job_id, f->state == -1 ? NULL : STATE_NAMES[f->state],
                               after, limit + 1);
    if (!s) { rc = STORE_ERR; goto cleanup; }
    *cells = calloc((size_t)limit + 1, sizeof **cells);
    if (!*cells) { rc = errbuf_set(err, errlen, "out of memory"); sqlite3_finalize(s); goto cleanup; }
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == (size_t)limit) { /* one more row exists: there is a next page */
            snprintf(next_token, STORE_PAGE_TOKEN_LEN, "c%x", (unsigned)(*cells)[*n - 1].idx);
            step = SQLITE_DONE;
            break;
        }
        cell_from_row(s, &(*cells)[(*n)++], &oom);
    }
    if (oom) rc = errbuf_set(err, errlen, "out of memory");
    else if (step != SQLITE_DONE) rc = step_error(db, step, err, errlen);
    sqlite3_finalize(s);
cleanup:
    rd_put(st, db);
    if (rc != STORE_OK) {
        store_cells_free(*cells, *n);
        *cells = NULL;
        *n = 0;
        next_token[0] = '\0';
    }
    return rc;
}

int store_cell_get_idx(store *st, int64_t job_id, int idx, store_cell *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc, oom = 0;
    sqlite3_stmt *s = stmt_new(db, err, errlen, "SELECT " CELL_COLS " WHERE c.job_id = ?1 AND c.idx = ?2", "in",
                               job_id, idx);
    if (!s) {
        rd_put(st, db);
        return STORE_ERR;
    }
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        cell_from_row(s, c, &oom);
        rc = oom ? errbuf_set(err, errlen, "out of memory") : STORE_OK;
    } else {
        rc = step == SQLITE_DONE ? STORE_NOTFOUND : step_error(db, step, err, errlen);
    }
    sqlite3_finalize(s);
    rd_put(st, db);
    if (rc != STORE_OK) store_cell_free(c);
    return rc;
}

/* Text of the first column of the first row, malloc'd: STORE_OK / STORE_NOTFOUND / STORE_ERR. */
static int query_text(sqlite3 *db, char **out, char *err, size_t errlen, const char *sql, const char *fmt, ...)
{
    *out = NULL;
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *s = stmt_newv(db, err, errlen, sql, fmt, ap);
    va_end(ap);
    if (!s) return STORE_ERR;
    int step = sqlite3_step(s), rc = STORE_OK, oom = 0;
    if (step == SQLITE_ROW) {
        *out = col_dup(s, 0, &oom);
        if (oom) rc = errbuf_set(err, errlen, "out of memory");
    } else {
        rc = step == SQLITE_DONE ? STORE_NOTFOUND : step_error(db, step, err, errlen);
    }
    sqlite3_finalize(s);
    return rc;
}

int store_cell_claim(store *st, const char *lease_owner, int per_owner_cap, int64_t lease_ms, store_cell *c,
                     char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    int64_t now = store_now_ms(st), job_id = 0, cell_id = 0, seq = 0;
    char *owner = NULL;
    int rc = wr_begin(st, 0, err, errlen);
    if (rc != STORE_OK) return rc;
    /* 1. the owner: least recently served first, never-served owners by their oldest pending job */
    rc = query_text(st->w, &owner, err, errlen,
                    "SELECT j.owner FROM jobs j LEFT JOIN sched_owners s ON s.owner = j.owner "
                    "WHERE j.n_queued > 0 AND j.state <> 'cancelled' "
                    "AND (?1 <= 0 OR (SELECT COALESCE(SUM(r.n_running), 0) FROM jobs r "
                    "                 WHERE r.owner = j.owner AND r.n_running > 0) < ?1) "
                    "GROUP BY j.owner ORDER BY COALESCE(MAX(s.last_claim), 0), MIN(j.id) LIMIT 1",
                    "n", per_owner_cap);
    if (rc != STORE_OK) goto done;
    if (!owner) { rc = errbuf_set(err, errlen, "claim: job without owner"); goto done; }
    /* 2. the owner's job: highest priority, then oldest */
    rc = query_i64(st->w, &job_id, err, errlen,
                   "SELECT id FROM jobs WHERE owner = ?1 AND n_queued > 0 AND state <> 'cancelled' "
                   "ORDER BY priority DESC, id LIMIT 1",
                   "t", owner);
    if (rc != STORE_OK) goto done;
    /* 3. the job's first queued cell */
    rc = query_i64(st->w, &cell_id, err, errlen,
                   "SELECT id FROM cells WHERE job_id = ?1 AND state = 'queued' ORDER BY idx LIMIT 1", "i", job_id);
    if (rc == STORE_NOTFOUND) rc = errbuf_set(err, errlen, "claim: job %lld counts queued cells it lacks", (long long)job_id);
    if (rc != STORE_OK) goto done;
    rc = query_i64(st->w, &seq, err, errlen, "SELECT COALESCE(MAX(last_claim), 0) + 1 FROM sched_owners", NULL);
    if (rc == STORE_OK)
        rc = exec_sql(st->w, err, errlen,
                      "INSERT INTO sched_owners(owner, last_claim) VALUES (?1, ?2) "
                      "ON CONFLICT(owner) DO UPDATE SET last_claim = excluded.last_claim",
                      "ti", owner, seq);
    if (rc == STORE_OK)
        rc = exec_sql(st->w, err, errlen,
                      "UPDATE cells SET state = 'running', attempts = attempts + 1, lease_owner = ?1, "
                      "lease_expires_ms = ?2, pid = NULL, progress = 0, phase = NULL, started_ms = ?3, "
                      "finished_ms = NULL WHERE id = ?4",
                      "tiii", lease_owner, now + lease_ms, now, cell_id);
    if (rc == STORE_OK)
        rc = exec_sql(st->w, err, errlen, "UPDATE jobs SET started_ms = COALESCE(started_ms, ?1) WHERE id = ?2", "ii",
                      now, job_id);
    if (rc == STORE_OK) rc = job_rollup(st, job_id, 1, err, errlen);
    if (rc == STORE_OK) rc = cell_read(st->w, cell_id, c, err, errlen);
done:
    free(owner);
    rc = wr_end(st, rc, err, errlen);
    if (rc != STORE_OK) store_cell_free(c);
    return rc;
}

int store_cell_set_pid(store *st, int64_t cell_id, int attempt, pid_t pid, char *err, size_t errlen)
{
    int rc = wr_begin(st, 0, err, errlen);
    if (rc != STORE_OK) return rc;
    rc = exec_sql(st->w, err, errlen, "UPDATE cells SET pid = ?1 WHERE id = ?2 AND state = 'running' AND attempts = ?3",
                  "iin", (int64_t)pid, cell_id, attempt);
    if (rc == STORE_OK && sqlite3_changes(st->w) == 0) rc = STORE_NOTFOUND;
    return wr_end(st, rc, err, errlen);
}

int store_cell_progress(store *st, int64_t cell_id, int attempt, double progress, const char *phase,
                        int64_t lease_ms, char *err, size_t errlen)
{
    if (!(progress >= 0)) progress = 0; /* also NaN */
    if (progress > 1) progress = 1;
    int64_t now = store_now_ms(st);
    int rc = wr_begin(st, 0, err, errlen);
    if (rc != STORE_OK) return rc;
    rc = exec_sql(st->w, err, errlen,
                  "UPDATE cells SET progress = ?1, phase = COALESCE(?2, phase), lease_expires_ms = ?3 "
                  "WHERE id = ?4 AND state = 'running' AND attempts = ?5",
                  "dtiin", progress, phase, now + lease_ms, cell_id, attempt);
    if (rc == STORE_OK && sqlite3_changes(st->w) == 0) rc = STORE_NOTFOUND;
    return wr_end(st, rc, err, errlen);
}

/* The state check and update of store_cell_finish, inside the caller's write transaction; when
 * model is not NULL it is inserted first (STORE_EXISTS: its name is taken, nothing written). */
static int cell_finish_tx(store *st, int64_t cell_id, const char *result_json, const store_model *model,
                          char *err, size_t errlen)
{
    char *state = NULL;
    int64_t job_id = 0;
    int rc = query_text(st->w, &state, err, errlen, "SELECT state FROM cells WHERE id = ?1", "i", cell_id);
    if (rc != STORE_OK) goto done;
    if (state && !strcmp(state, "done")) { rc = STORE_NOOP; goto done; }
    if (model) rc = model_insert_tx(st, model, NULL, err, errlen);
    if (rc != STORE_OK) goto done;
    rc = query_i64(st->w, &job_id, err, errlen, "SELECT job_id FROM cells WHERE id = ?1", "i", cell_id);
    if (rc == STORE_OK)
        rc = exec_sql(st->w, err, errlen,
                      "UPDATE cells SET state = 'done', result = ?1, progress = 1, lease_owner = NULL, "
                      "lease_expires_ms = NULL, pid = NULL, error_code = NULL, error_message = NULL, "
                      "stderr_tail = NULL, finished_ms = ?2 WHERE id = ?3",
                      "tii", result_json, store_now_ms(st), cell_id);
    if (rc == STORE_OK) rc = job_rollup(st, job_id, 1, err, errlen);
done:
    free(state);
    return rc;
}

int store_cell_finish(store *st, int64_t cell_id, const char *result_json, char *err, size_t errlen)
{
    return store_cell_commit(st, cell_id, result_json, NULL, err, errlen);
}

int store_cell_commit(store *st, int64_t cell_id, const char *result_json, const store_model *model, char *err,
                      size_t errlen)
{
    if (!result_json) {
        errbuf_set(err, errlen, "result: required");
        return STORE_INVALID;
    }
    if (model && !store_name_valid(model->name)) {
        errbuf_set(err, errlen, "name: must match [A-Za-z0-9._-]{1,64}");
        return STORE_INVALID;
    }
    if (model && (!model->path || !model->owner)) {
        errbuf_set(err, errlen, "model: path and owner are required");
        return STORE_INVALID;
    }
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    rc = cell_finish_tx(st, cell_id, result_json, model, err, errlen);
    if (rc == STORE_EXISTS) { /* nothing was written: end the transaction, report the name */
        wr_end(st, STORE_NOOP, NULL, 0);
        errbuf_set(err, errlen, "model %s: the name is taken", model->name);
        return STORE_EXISTS;
    }
    return wr_end(st, rc, err, errlen);
}

int store_page_limit_set(store *st, int64_t max_pages, int64_t *pages, char *err, size_t errlen)
{
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)(max_pages > 0 ? max_pages : 4294967294LL));
    pthread_mutex_lock(&st->wmu);
    int rc = exec_sql(st->w, err, errlen, sql, NULL);
    int64_t n = 0;
    if (rc == STORE_OK) rc = query_i64(st->w, &n, err, errlen, "PRAGMA page_count", NULL);
    pthread_mutex_unlock(&st->wmu);
    if (rc == STORE_OK && pages) *pages = n;
    return rc;
}

/* Move one running cell off its attempt: cancelled when its job is cancelled, queued when retry
 * is allowed and attempts remain, else failed. Writer, inside a transaction. */
static int cell_settle(store *st, int64_t cell_id, int64_t job_id, int attempts, int max_attempts,
                       const char *job_state, int retry, const char *code, const char *message, const char *tail,
                       store_fail_outcome *outcome, char *err, size_t errlen)
{
    store_fail_outcome o = !strcmp(job_state, "cancelled")          ? STORE_FAIL_CANCELLED
                           : retry && attempts < max_attempts ? STORE_FAIL_REQUEUED
                                                                    : STORE_FAIL_FAILED;
    const char *next = o == STORE_FAIL_CANCELLED ? "cancelled" : o == STORE_FAIL_REQUEUED ? "queued" : "failed";
    int rc = exec_sql(st->w, err, errlen,
                      "UPDATE cells SET state = ?1, error_code = ?2, error_message = ?3, stderr_tail = ?4, "
                      "lease_owner = NULL, lease_expires_ms = NULL, pid = NULL, "
                      "finished_ms = CASE WHEN ?1 = 'queued' THEN NULL ELSE ?5 END WHERE id = ?6",
                      "ttttii", next, code, message, tail, store_now_ms(st), cell_id);
    if (rc == STORE_OK) rc = job_rollup(st, job_id, 1, err, errlen);
    if (rc == STORE_OK && outcome) *outcome = o;
    return rc;
}

int store_cell_fail(store *st, int64_t cell_id, int attempt, const char *code, const char *message,
                    const char *stderr_tail, int retry, store_fail_outcome *outcome, char *err, size_t errlen)
{
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    sqlite3_stmt *s = stmt_new(st->w, err, errlen,
                               "SELECT c.job_id, c.state, c.attempts, c.max_attempts, j.state FROM cells c "
                               "JOIN jobs j ON j.id = c.job_id WHERE c.id = ?1",
                               "i", cell_id);
    if (!s) { rc = STORE_ERR; goto done; }
    int step = sqlite3_step(s);
    if (step != SQLITE_ROW) {
        rc = step == SQLITE_DONE ? STORE_NOTFOUND : step_error(st->w, step, err, errlen);
    } else if (strcmp((const char *)sqlite3_column_text(s, 1), "running") || col_i64(s, 2) != attempt) {
        rc = STORE_NOOP;
    } else {
        rc = cell_settle(st, cell_id, col_i64(s, 0), (int)col_i64(s, 2), (int)col_i64(s, 3),
                         (const char *)sqlite3_column_text(s, 4), retry, code, message, stderr_tail, outcome, err,
                         errlen);
    }
    sqlite3_finalize(s);
done:
    return wr_end(st, rc, err, errlen);
}

int store_cell_release(store *st, int64_t cell_id, int attempt, char *err, size_t errlen)
{
    int64_t job_id = 0;
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    rc = query_i64(st->w, &job_id, err, errlen, "SELECT job_id FROM cells WHERE id = ?1 AND state = 'running' AND attempts = ?2",
                   "in", cell_id, attempt);
    if (rc == STORE_NOTFOUND) { rc = STORE_NOOP; goto done; }
    if (rc != STORE_OK) goto done;
    rc = exec_sql(st->w, err, errlen,
                  "UPDATE cells SET state = CASE WHEN (SELECT state FROM jobs WHERE id = ?1) = 'cancelled' "
                  "THEN 'cancelled' ELSE 'queued' END, attempts = MAX(attempts - 1, 0), lease_owner = NULL, "
                  "lease_expires_ms = NULL, pid = NULL, progress = 0, phase = NULL WHERE id = ?2",
                  "ii", job_id, cell_id);
    if (rc == STORE_OK) rc = job_rollup(st, job_id, 1, err, errlen);
done:
    return wr_end(st, rc, err, errlen);
}

/* Settle running cells: all of them (boot recovery) or those whose lease expired. */
static int cells_settle_running(store *st, int all, const char *code, const char *message, int *n_requeued,
                                int *n_failed, char *err, size_t errlen)
{
    typedef struct { int64_t id, job_id; int attempts, max_attempts; char state[16]; } row;
    row *rows = NULL;
    size_t n = 0, cap = 0;
    int nq = 0, nf = 0, step;
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    sqlite3_stmt *s = stmt_new(st->w, err, errlen,
                               "SELECT c.id, c.job_id, c.attempts, c.max_attempts, j.state FROM cells c "
                               "JOIN jobs j ON j.id = c.job_id "
                               "WHERE c.state = 'running' AND (?1 OR c.lease_expires_ms < ?2) ORDER BY c.id",
                               "ni", all, store_now_ms(st));
    if (!s) { rc = STORE_ERR; goto done; }
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            row *nr = realloc(rows, cap * sizeof *nr);
            if (!nr) { rc = errbuf_set(err, errlen, "out of memory"); break; }
            rows = nr;
        }
        row *r = &rows[n++];
        r->id = col_i64(s, 0);
        r->job_id = col_i64(s, 1);
        r->attempts = (int)col_i64(s, 2);
        r->max_attempts = (int)col_i64(s, 3);
        snprintf(r->state, sizeof r->state, "%s", (const char *)sqlite3_column_text(s, 4));
    }
    if (rc == STORE_OK && step != SQLITE_DONE) rc = step_error(st->w, step, err, errlen);
    sqlite3_finalize(s);
    for (size_t i = 0; i < n && rc == STORE_OK; i++) {
        store_fail_outcome o = STORE_FAIL_FAILED;
        rc = cell_settle(st, rows[i].id, rows[i].job_id, rows[i].attempts, rows[i].max_attempts, rows[i].state, 1,
                         code, message, NULL, &o, err, errlen);
        if (rc == STORE_OK && o == STORE_FAIL_REQUEUED) nq++;
        else if (rc == STORE_OK && o == STORE_FAIL_FAILED) nf++;
    }
done:
    free(rows);
    rc = wr_end(st, rc, err, errlen);
    if (n_requeued) *n_requeued = rc == STORE_OK ? nq : 0;
    if (n_failed) *n_failed = rc == STORE_OK ? nf : 0;
    return rc;
}

int store_cells_requeue_expired(store *st, int *n_requeued, int *n_failed, char *err, size_t errlen)
{
    return cells_settle_running(st, 0, "lease_expired", "the worker stopped reporting before the lease expired",
                                n_requeued, n_failed, err, errlen);
}

/* Cells stored before every cell carried its own "model" (the job's model), "out" (a train
 * job's model name, from the job spec's "name") and "dataset" get them from their job here, once
 * at boot, so that the scheduler reads a cell's own keys only. Rows that have the keys are left
 * as they are; a run over a current database changes nothing. */
static int cells_backfill_keys(store *st, char *err, size_t errlen)
{
    static const char *const FILL[] = {
        "UPDATE cells SET spec = json_set(spec, '$.model', (SELECT COALESCE(j.model, json_extract(j.spec, '$.model')) "
        "FROM jobs j WHERE j.id = cells.job_id)) WHERE json_type(spec, '$.model') IS NULL AND EXISTS (SELECT 1 FROM "
        "jobs j WHERE j.id = cells.job_id AND j.type <> 'train' AND COALESCE(j.model, json_extract(j.spec, "
        "'$.model')) IS NOT NULL)",
        "UPDATE cells SET spec = json_set(spec, '$.out', COALESCE(json_extract(spec, '$.name'), (SELECT "
        "json_extract(j.spec, '$.name') FROM jobs j WHERE j.id = cells.job_id))) WHERE json_type(spec, '$.out') IS "
        "NULL AND COALESCE(json_extract(spec, '$.name'), (SELECT json_extract(j.spec, '$.name') FROM jobs j WHERE "
        "j.id = cells.job_id AND j.type = 'train')) IS NOT NULL",
        "UPDATE cells SET spec = json_set(spec, '$.dataset', (SELECT json_extract(j.spec, '$.dataset') FROM jobs j "
        "WHERE j.id = cells.job_id)) WHERE json_type(spec, '$.dataset') IS NULL AND (SELECT json_extract(j.spec, "
        "'$.dataset') FROM jobs j WHERE j.id = cells.job_id) IS NOT NULL",
    };
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    for (size_t i = 0; rc == STORE_OK && i < sizeof FILL / sizeof FILL[0]; i++)
        rc = exec_sql(st->w, err, errlen, FILL[i], NULL);
    return wr_end(st, rc, err, errlen);
}

int store_recover(store *st, int *n_requeued, int *n_failed, char *err, size_t errlen)
{
    int rc = cells_backfill_keys(st, err, errlen);
    if (rc != STORE_OK) return rc;
    return cells_settle_running(st, 1, "interrupted", "the daemon stopped while the cell was running", n_requeued,
                                n_failed, err, errlen);
}

/* ------------------------------------------------------------------ metrics */

int store_owners_queued(store *st, int *n, char *err, size_t errlen)
{
    *n = 0;
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int64_t v = 0;
    int rc = query_i64(db, &v, err, errlen,
                       "SELECT COUNT(DISTINCT owner) FROM jobs WHERE n_queued > 0 AND state <> 'cancelled'", NULL);
    rd_put(st, db);
    if (rc == STORE_OK) *n = (int)v;
    return rc;
}

int store_metrics_get(store *st, store_metrics *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc = STORE_OK, step;
    sqlite3_stmt *s = stmt_new(db, err, errlen,
                               "SELECT COALESCE(SUM(n_queued), 0), COALESCE(SUM(n_running), 0), COALESCE(SUM(n_done), 0), "
                               "COALESCE(SUM(n_failed), 0), COALESCE(SUM(n_cancelled), 0), "
                               "(SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM models) FROM jobs",
                               NULL);
    if (!s) { rc = STORE_ERR; goto cleanup; }
    if ((step = sqlite3_step(s)) == SQLITE_ROW) {
        for (int k = 0; k < STORE_STATE_COUNT; k++) m->cells[k] = col_i64(s, k);
        m->users = col_i64(s, 5);
        m->models = col_i64(s, 6);
    } else {
        rc = step_error(db, step, err, errlen);
    }
    sqlite3_finalize(s);
    if (rc != STORE_OK) goto cleanup;
    if (!(s = stmt_new(db, err, errlen, "SELECT state, COUNT(*) FROM jobs GROUP BY state", NULL))) {
        rc = STORE_ERR;
        goto cleanup;
    }
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        int k = store_state_parse((const char *)sqlite3_column_text(s, 0));
        if (k >= 0) m->jobs[k] = col_i64(s, 1);
    }
    if (step != SQLITE_DONE) rc = step_error(db, step, err, errlen);
    sqlite3_finalize(s);
cleanup:
    rd_put(st, db);
    return rc;
}

/* ------------------------------------------------------------------ model component tables */

int store_model_components_get(store *st, const char *name, const char *file_key, char **doc, char *err,
                               size_t errlen)
{
    *doc = NULL;
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc = query_text(db, doc, err, errlen,
                        "SELECT c.doc FROM model_components c JOIN models m ON m.id = c.model_id "
                        "WHERE m.name = ?1 AND c.file_key = ?2",
                        "tt", name, file_key);
    rd_put(st, db);
    return rc;
}

int store_model_components_put(store *st, const char *name, const char *file_key, const char *doc, char *err,
                               size_t errlen)
{
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    int64_t id = 0;
    rc = query_i64(st->w, &id, err, errlen, "SELECT id FROM models WHERE name = ?1", "t", name);
    if (rc == STORE_OK)
        rc = exec_sql(st->w, err, errlen,
                      "INSERT INTO model_components (model_id, file_key, doc, created_ms) VALUES (?1, ?2, ?3, ?4) "
                      "ON CONFLICT (model_id) DO UPDATE SET file_key = ?2, doc = ?3, created_ms = ?4",
                      "itti", id, file_key, doc, store_now_ms(st));
    return wr_end(st, rc, err, errlen);
}

/* ------------------------------------------------------------------ registered datasets */

#define DATASET_COLS "id, name, path, kind, owner, created_ms"

void store_dataset_free(store_dataset *d)
{
    if (!d) return;
    free(d->name);
    free(d->path);
    free(d->kind);
    free(d->owner);
    memset(d, 0, sizeof *d);
}

void store_datasets_free(store_dataset *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++) store_dataset_free(&d[i]);
    free(d);
}

static void dataset_from_row(sqlite3_stmt *s, store_dataset *d, int *oom)
{
    d->id = col_i64(s, 0);
    d->name = col_dup(s, 1, oom);
    d->path = col_dup(s, 2, oom);
    d->kind = col_dup(s, 3, oom);
    d->owner = col_dup(s, 4, oom);
    d->created_ms = col_i64(s, 5);
}

int store_dataset_insert(store *st, const store_dataset *d, char *err, size_t errlen)
{
    if (!store_dataset_name_valid(d->name)) {
        errbuf_set(err, errlen, "name: not a dataset name");
        return STORE_INVALID;
    }
    if (!d->path || !d->kind || !d->owner) {
        errbuf_set(err, errlen, "dataset: path, kind and owner are required");
        return STORE_INVALID;
    }
    int rc = wr_begin(st, 1, err, errlen);
    if (rc != STORE_OK) return rc;
    int64_t id = 0;
    rc = query_i64(st->w, &id, err, errlen, "SELECT id FROM datasets WHERE name = ?1", "t", d->name);
    if (rc == STORE_OK) {
        rc = STORE_EXISTS;
    } else if (rc == STORE_NOTFOUND) {
        sqlite3_stmt *s = stmt_new(st->w, err, errlen,
                                   "INSERT INTO datasets(name, path, kind, owner, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                                   "tttt", d->name, d->path, d->kind, d->owner);
        if (!s) {
            rc = STORE_ERR;
        } else {
            sqlite3_bind_int64(s, 5, store_now_ms(st));
            rc = stmt_run(s, st->w, err, errlen);
            sqlite3_finalize(s);
        }
    }
    return wr_end(st, rc, err, errlen);
}

int store_dataset_get(store *st, const char *name, store_dataset *d, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc = STORE_ERR, oom = 0;
    sqlite3_stmt *s = stmt_new(db, err, errlen, "SELECT " DATASET_COLS " FROM datasets WHERE name = ?1", "t", name);
    if (s) {
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            dataset_from_row(s, d, &oom);
            rc = oom ? errbuf_set(err, errlen, "out of memory") : STORE_OK;
        } else {
            rc = step == SQLITE_DONE ? STORE_NOTFOUND : step_error(db, step, err, errlen);
        }
        sqlite3_finalize(s);
    }
    rd_put(st, db);
    if (rc != STORE_OK) store_dataset_free(d);
    return rc;
}

int store_datasets_list(store *st, store_dataset **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    sqlite3 *db = rd_get(st, err, errlen);
    if (!db) return STORE_ERR;
    int rc = STORE_OK, oom = 0, step = SQLITE_DONE;
    size_t cap = 0;
    sqlite3_stmt *s = stmt_new(db, err, errlen, "SELECT " DATASET_COLS " FROM datasets ORDER BY name", NULL);
    if (!s) {
        rc = STORE_ERR;
    } else {
        while ((step = sqlite3_step(s)) == SQLITE_ROW) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 16;
                store_dataset *nd = realloc(*out, cap * sizeof *nd);
                if (!nd) {
                    oom = 1;
                    break;
                }
                *out = nd;
            }
            dataset_from_row(s, &(*out)[(*n)++], &oom);
        }
        if (oom) rc = errbuf_set(err, errlen, "out of memory");
        else if (step != SQLITE_DONE) rc = step_error(db, step, err, errlen);
        sqlite3_finalize(s);
    }
    rd_put(st, db);
    if (rc != STORE_OK) {
        store_datasets_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}
