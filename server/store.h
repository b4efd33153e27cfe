/* store.h — prunelabd's persistence: every SQL statement of the daemon lives in store.c.
 *
 * Threading model. One store per process, shared by all threads.
 *  - Writes go through ONE writer connection guarded by a mutex; each write function is one
 *    BEGIN IMMEDIATE ... COMMIT transaction (a second process, e.g. `prunelabd user add` while
 *    the daemon runs, waits on the busy timeout).
 *  - Reads (the *_get / *_list / lookup / metrics functions) borrow a read-only connection from
 *    a pool for the duration of the call and give it back, so thread-per-connection HTTP handlers
 *    read concurrently with each other and with the writer (WAL): no handler ever holds a
 *    connection across calls, nothing is thread-local, and a connection never moves between
 *    threads while in use. At most STORE_READERS_IDLE_MAX idle readers are kept open.
 *  - store_version / store_wait let long-poll and SSE handlers sleep until the next commit.
 *
 * Durability. WAL with synchronous=NORMAL for high-rate, loss-tolerant commits (claims,
 * progress/heartbeats, pids): after a power loss they may roll back, which the lease and boot
 * recovery already handle. Commits that must never be lost — job creation, results, failures,
 * cancel, retry, delete, users, tokens, models — switch the connection to synchronous=FULL, which
 * fsyncs the WAL at that commit (and with it every earlier commit in the log). An application
 * crash (kill -9) loses no committed transaction at either level.
 *
 * Conventions. Functions return a store_rc; on STORE_ERR (and on STORE_INVALID) err holds a
 * message (err may be NULL). Structs filled by the store own their strings; free them with the
 * matching *_free (NULL-safe, frees the contents and, for arrays, the array). Times are
 * milliseconds since the Unix epoch; 0 in an output field means "not set". Optional text is NULL
 * when unset. Job and cell ids are never reused. */
#ifndef PL_STORE_H
#define PL_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum {
    STORE_ERR = -1,       /* SQLite or I/O error (err says which) */
    STORE_OK = 0,
    STORE_NOTFOUND = 1,   /* no such row, or nothing to claim */
    STORE_EXISTS = 2,     /* unique name taken; for job create: idempotent replay of the same job */
    STORE_CONFLICT = 3,   /* refused by the current state (see each function) */
    STORE_INVALID = 4,    /* bad argument: name, page token, empty grid, ... (err says which) */
    STORE_NOOP = 5,       /* already in the requested state; nothing changed */
    STORE_TAKEN = 6,      /* job create: the output model name is a model's or a live job's */
} store_rc;

const char *store_rc_name(int rc); /* "ok", "not_found", ... */

typedef enum {
    STORE_JOB_TRAIN, STORE_JOB_ABLATION, STORE_JOB_SENSITIVITY, STORE_JOB_JOINT, STORE_JOB_RSST,
    STORE_JOB_LITE, STORE_JOB_TYPE_COUNT
} store_job_type;

typedef enum {
    STORE_STATE_QUEUED, STORE_STATE_RUNNING, STORE_STATE_DONE, STORE_STATE_FAILED,
    STORE_STATE_CANCELLED, STORE_STATE_COUNT
} store_state;

const char *store_job_type_name(store_job_type t); /* "train", ...; NULL when out of range */
int store_job_type_parse(const char *s);           /* the type, or -1 */
const char *store_state_name(store_state s);       /* "queued", ... */
int store_state_parse(const char *s);              /* the state, or -1 */

/* 1 when s matches [A-Za-z0-9._-]{1,64} and is not "." or ".." (user and model names). */
int store_name_valid(const char *s);
/* A dataset name as the engine resolves it (data.h): 1 to 200 printable ASCII characters, no
 * '/' or '\\', so a name can never reach a path. 1 when valid. */
int store_dataset_name_valid(const char *s);

typedef struct store store;

/* ------------------------------------------------------------------ open / close */

/* Open (creating) the database at path and bring its schema up to date with the migrations
 * sql_dir/NNN_name.sql (numbered 001, 002, ... without gaps), each applied in its own
 * transaction and recorded in PRAGMA user_version. Refuses a database whose user_version is
 * newer than the highest migration found, or which another application marked as its own.
 * Returns STORE_OK with *out set (close with store_close), or STORE_ERR with err. */
int store_open(const char *path, const char *sql_dir, store **out, char *err, size_t errlen);
void store_close(store *st); /* NULL-safe; no other thread may be inside the store */

int store_schema_version(store *st);  /* PRAGMA user_version after migrations */

/* Clock used for every timestamp and lease (default: real time). Tests install a fake clock. */
typedef int64_t (*store_clock_fn)(void *ctx);
void store_clock_set(store *st, store_clock_fn fn, void *ctx); /* fn NULL restores real time */
int64_t store_now_ms(store *st);

/* PRAGMA integrity_check and foreign_key_check: STORE_OK when both are clean, else STORE_ERR
 * with the first problem in err. */
int store_integrity_check(store *st, char *err, size_t errlen);

/* Commit counter: bumped after every committed write. store_wait blocks until the counter
 * differs from since or timeout_ms passes; returns the current counter. */
uint64_t store_version(store *st);
uint64_t store_wait(store *st, uint64_t since, int timeout_ms);

/* Read cache for views derived from the database (the rendered job list). An entry is a blob
 * under a text key, tagged with the commit counter read before it was built, and is served only
 * while the counter still has that value: any committed write of this process makes every entry
 * stale, so the next call after a write sees it. (Writes by another process, e.g. `prunelabd
 * user add`, do not move the counter: cache only what the daemon alone writes.)
 * store_memo_get copies the fresh blob under key into *out; on a miss it calls build (one build
 * at a time per store: concurrent misses wait, then copy what the first one built), keeps a copy
 * and returns the built blob. build returns STORE_OK with a malloc'd, NUL-terminated *blob of
 * *len bytes, or a store_rc with err (nothing is cached, the rc is returned). Keys longer than
 * STORE_MEMO_KEY_MAX are built every time. *hit (may be NULL) is 1 when served from the cache.
 * Returns STORE_OK with *out (caller frees) and *len, build's rc, or STORE_ERR (out of memory).
 * At most a few dozen entries are kept (least recently used first out). */
#define STORE_MEMO_KEY_MAX 512
typedef int (*store_memo_build_fn)(void *ctx, char **blob, size_t *len, char *err, size_t errlen);
int store_memo_get(store *st, const char *key, store_memo_build_fn build, void *ctx, char **out, size_t *len,
                   int *hit, char *err, size_t errlen);

/* ------------------------------------------------------------------ users and tokens */

#define STORE_TOKEN_LEN 69 /* "plt_" + 64 hex digits + NUL */

typedef struct {
    int64_t id;
    char *name;
    int admin;
    int64_t created_ms;
    int active_tokens; /* tokens not revoked (list only; 0 from token lookup) */
} store_user;
void store_user_free(store_user *u);           /* frees the contents */
void store_users_free(store_user *u, size_t n); /* frees contents and the array */

/* Create user name with a fresh token (32 bytes of /dev/urandom, hex, "plt_" prefix) written
 * to token_out; only the token's SHA-256 is stored. STORE_EXISTS if the name is taken,
 * STORE_INVALID for a bad name. */
int store_user_add(store *st, const char *name, int admin, char token_out[STORE_TOKEN_LEN],
                   char *err, size_t errlen);
/* An additional token for an existing user (STORE_NOTFOUND if none). */
int store_token_create(store *st, const char *name, char token_out[STORE_TOKEN_LEN],
                       char *err, size_t errlen);
/* The user behind a raw bearer token: STORE_OK with *u filled, STORE_NOTFOUND when the token
 * is unknown, STORE_CONFLICT when it exists but was revoked (err says so; *u stays zeroed).
 * Answers for recently used tokens are cached until the next commit by any connection or
 * process (PRAGMA data_version), so a revocation is seen at the token's next use. */
int store_token_lookup(store *st, const char *token, store_user *u, char *err, size_t errlen);
/* Revoke every active token of user name (STORE_NOTFOUND: no such user; STORE_NOOP: none
 * active); *n_revoked (may be NULL) receives the count. */
int store_user_revoke(store *st, const char *name, int *n_revoked, char *err, size_t errlen);
/* Revoke one token by its raw text (STORE_NOTFOUND if unknown, STORE_NOOP if already revoked). */
int store_token_revoke(store *st, const char *token, char *err, size_t errlen);
int store_users_list(store *st, store_user **users, size_t *n, char *err, size_t errlen);

/* ------------------------------------------------------------------ models */

typedef struct {
    int64_t id;
    char *name;
    char *path;
    char *dataset;     /* may be NULL */
    int64_t params;    /* -1 when unknown */
    double accuracy;   /* NAN when unknown */
    char *info_json;   /* may be NULL */
    char *owner;
    int64_t created_ms;
} store_model;
void store_model_free(store_model *m);
void store_models_free(store_model *m, size_t n);

/* Insert m (id and created_ms are ignored; *id_out may be NULL). STORE_EXISTS if the name is
 * taken, STORE_INVALID for a bad name. */
int store_model_insert(store *st, const store_model *m, int64_t *id_out, char *err, size_t errlen);
int store_model_get(store *st, const char *name, store_model *m, char *err, size_t errlen);
int store_models_list(store *st, store_model **models, size_t *n, char *err, size_t errlen);
/* STORE_NOTFOUND, or STORE_CONFLICT while a queued or running job names the model. */
int store_model_delete(store *st, const char *name, char *err, size_t errlen);
/* A model's recorded component table (JSON text, malloc'd into *doc) when it was made from the
 * file whose identity is file_key; STORE_NOTFOUND when there is none for that key (or no such
 * model). _put records doc for the model (replacing an older table); STORE_NOTFOUND for an
 * unknown model. */
int store_model_components_get(store *st, const char *name, const char *file_key, char **doc, char *err,
                               size_t errlen);
int store_model_components_put(store *st, const char *name, const char *file_key, const char *doc, char *err,
                               size_t errlen);

/* ------------------------------------------------------------------ jobs */

typedef struct {
    int64_t id;
    char *owner;
    store_job_type type;
    char *spec_json;
    char *model;           /* may be NULL */
    int priority;          /* higher runs first within an owner's jobs */
    store_state state;
    char *idem_key;        /* may be NULL */
    int n_cells;
    int counts[STORE_STATE_COUNT]; /* cells per state */
    double progress;       /* (finished cells + sum of running cells' progress) / n_cells */
    char *baseline_json;   /* may be NULL */
    int64_t created_ms, started_ms, finished_ms;
    char *error;           /* summary when failed, else NULL */
} store_job;
void store_job_free(store_job *j);
void store_jobs_free(store_job *j, size_t n);

typedef struct {
    const char *owner;           /* required */
    store_job_type type;
    const char *spec_json;       /* the job's whole spec (canonical text: compared on replay) */
    const char *model;           /* may be NULL; must exist when the job is stored */
    const char *out_model;       /* the model a train job registers; may be NULL */
    int priority;
    const char *idem_key;        /* may be NULL */
    int max_attempts;            /* per cell; <= 0 means 3 */
    const char *baseline_json;   /* may be NULL */
    const char *const *cell_specs; /* n_cells JSON objects, cell idx = position */
    size_t n_cells;              /* >= 1 */
} store_job_new;

/* Create a job and its cells in one transaction. STORE_OK with *job_id; STORE_EXISTS when
 * (owner, idem_key) already names a job with the same spec_json (*job_id is that job, nothing
 * is written); STORE_CONFLICT when the key names a job with a different spec (*job_id set);
 * STORE_INVALID for no cells, a bad type or JSON that is not valid; STORE_NOTFOUND when model
 * names no model (it may have been deleted since the caller looked); STORE_TAKEN when out_model
 * is a model's name or a queued / running job's out_model. These checks and the insert are one
 * transaction, so a delete or a second submission cannot slip in between. */
int store_job_create(store *st, const store_job_new *nj, int64_t *job_id, char *err, size_t errlen);
int store_job_get(store *st, int64_t id, store_job *j, char *err, size_t errlen);

typedef enum { STORE_ORDER_NEWEST, STORE_ORDER_OLDEST } store_order;
#define STORE_PAGE_TOKEN_LEN 32
#define STORE_PAGE_MAX 1000

typedef struct {
    const char *owner;     /* NULL = any */
    int type;              /* store_job_type, or -1 = any */
    int state;             /* store_state, or -1 = any */
    store_order order;
    int limit;             /* 1..STORE_PAGE_MAX; <= 0 means 50 */
    const char *page_token; /* NULL or "" = first page; else a next_token from the same order */
    int without_spec;      /* 1: spec_json is left NULL (for listings that do not show it) */
} store_job_filter;

/* One page of jobs. next_token receives the token of the following page, or "" after the last.
 * Keyset pagination on the id: jobs created or deleted between pages never make a page skip or
 * repeat a job. STORE_INVALID for a malformed token or a token of the other order. */
int store_jobs_list(store *st, const store_job_filter *f, store_job **jobs, size_t *n,
                    char next_token[STORE_PAGE_TOKEN_LEN], char *err, size_t errlen);

/* Record the job's baseline (JSON object). */
int store_job_baseline_set(store *st, int64_t id, const char *baseline_json, char *err, size_t errlen);

typedef struct {
    int64_t cell_id;
    pid_t pid;             /* 0 when the executor has not reported one */
    char *lease_owner;     /* executor instance holding the lease */
} store_running;
void store_running_free(store_running *r, size_t n);

/* Cancel: queued cells -> cancelled, job -> cancelled. Running cells keep running until the
 * executor reports them (a result is still stored); they are returned in *running (caller frees
 * with store_running_free) so the caller can signal them. STORE_NOTFOUND; STORE_NOOP for a job
 * already done or failed (nothing returned). Cancelling a cancelled job again returns the cells
 * still running. */
int store_job_cancel(store *st, int64_t id, store_running **running, size_t *n_running,
                     char *err, size_t errlen);
/* Failed cells -> queued with attempts reset, errors cleared; the job state is recomputed (a
 * cancelled job with failed cells runs them again; its cancelled cells stay cancelled).
 * *n_requeued may be NULL. STORE_NOOP when no cell had failed. */
int store_job_retry_failed(store *st, int64_t id, int *n_requeued, char *err, size_t errlen);
/* Delete a job with its cells. STORE_CONFLICT while any of its cells runs (cancel first). */
int store_job_delete(store *st, int64_t id, char *err, size_t errlen);

/* ------------------------------------------------------------------ cells */

typedef struct {
    int64_t id, job_id;
    int idx;
    char *owner;           /* the job's owner */
    store_job_type job_type;
    char *spec_json;
    store_state state;
    int attempts, max_attempts; /* attempts = claims so far; the current attempt's number */
    char *lease_owner;     /* NULL unless running */
    int64_t lease_expires_ms;
    pid_t pid;
    double progress;       /* [0, 1] */
    char *phase;
    char *result_json;     /* NULL until done */
    char *error_code, *error_message, *stderr_tail;
    int64_t created_ms, started_ms, finished_ms;
} store_cell;
void store_cell_free(store_cell *c);
void store_cells_free(store_cell *c, size_t n);

/* A job's cells ordered by idx, optionally only those in state (-1 = all). */
int store_cells_list(store *st, int64_t job_id, int state, store_cell **cells, size_t *n,
                     char *err, size_t errlen);
int store_cell_get(store *st, int64_t cell_id, store_cell *c, char *err, size_t errlen);

typedef struct {
    int state;              /* store_state, or -1 = all */
    int limit;              /* 1..STORE_PAGE_MAX; <= 0 means 50 */
    const char *page_token; /* NULL or "" = first page; else a next_token of a cell page */
    int with_sparsity;      /* 0: a result's "sparsity" report (an object) keeps only its "overall"
                               and "weights" members; 1: the whole result */
} store_cell_filter;

/* One page of a job's cells in idx order (an unknown job gives an empty page). next_token
 * receives the token of the following page, or "" after the last. Keyset pagination on idx,
 * each page its own read: cells that change state between pages never make a page skip or
 * repeat a cell (with a state filter a cell may leave or enter the pages not yet read).
 * STORE_INVALID for a malformed token or an unknown state. */
int store_cells_page(store *st, int64_t job_id, const store_cell_filter *f, store_cell **cells, size_t *n,
                     char next_token[STORE_PAGE_TOKEN_LEN], char *err, size_t errlen);
/* The cell at idx of job job_id, whole. STORE_NOTFOUND when the job has no such cell. */
int store_cell_get_idx(store *st, int64_t job_id, int idx, store_cell *c, char *err, size_t errlen);

/* Claim the next cell atomically: the owner who least recently had a cell started goes first
 * (owners never served first, oldest job first among them), skipping owners with
 * per_owner_cap (> 0) cells running; within the owner the job with the highest priority, then
 * the oldest job; within the job the lowest idx. The cell becomes running with attempts + 1, a
 * lease for lease_owner until now + lease_ms, progress 0. STORE_OK with *c filled (free it),
 * STORE_NOTFOUND when nothing is claimable. A (cell id, attempts) pair names one attempt; the
 * calls below take it so a stale worker cannot touch a later attempt. */
int store_cell_claim(store *st, const char *lease_owner, int per_owner_cap, int64_t lease_ms,
                     store_cell *c, char *err, size_t errlen);
/* How many owners have claimable (queued) cells, for the fair per-owner cap. */
int store_owners_queued(store *st, int *n, char *err, size_t errlen);
/* Record the process of the attempt. STORE_NOTFOUND when that attempt is no longer running. */
int store_cell_set_pid(store *st, int64_t cell_id, int attempt, pid_t pid, char *err, size_t errlen);
/* Progress / heartbeat: progress in [0, 1] (clamped), phase (may be NULL = unchanged), and the
 * lease extended to now + lease_ms. STORE_NOTFOUND when the attempt no longer runs (the lease
 * was lost: the worker should stop). */
int store_cell_progress(store *st, int64_t cell_id, int attempt, double progress,
                        const char *phase, int64_t lease_ms, char *err, size_t errlen);
/* Store the result (JSON object) and mark the cell done, from any state but done: a finished
 * result is never thrown away, even a late one from a lost lease. STORE_NOOP when the cell is
 * already done (the first result stays), STORE_NOTFOUND for no such cell. */
int store_cell_finish(store *st, int64_t cell_id, const char *result_json, char *err, size_t errlen);
/* store_cell_finish that may also register the model a train cell made: model (NULL = none) is
 * inserted in the same durable transaction, so a result and its model land together or not at
 * all. STORE_EXISTS (err names the model) when model's name is taken: nothing is written.
 * STORE_NOOP when the cell is already done (model is not inserted). STORE_ERR when SQLite could
 * not write (a full disk among others: SQLITE_FULL); nothing is written and the same call may be
 * repeated later. */
int store_cell_commit(store *st, int64_t cell_id, const char *result_json, const store_model *model, char *err,
                      size_t errlen);
/* Cap the database at max_pages pages (PRAGMA max_page_count on the writer; <= 0 lifts the cap).
 * A write that would grow the file past it fails with STORE_ERR ("database or disk is full"), as
 * on a full disk; SQLite never lowers the cap below the current size. *pages (may be NULL) gets
 * the current page count. Used by tests to make commits fail for real. */
int store_page_limit_set(store *st, int64_t max_pages, int64_t *pages, char *err, size_t errlen);

typedef enum { STORE_FAIL_REQUEUED, STORE_FAIL_FAILED, STORE_FAIL_CANCELLED } store_fail_outcome;
/* The attempt failed: record code, message and stderr tail (any may be NULL). The cell goes
 * back to queued when retry is set and attempts < max_attempts, to cancelled when its job was
 * cancelled, else to failed. *outcome may be NULL. STORE_NOOP when that attempt is no longer
 * running (already finished, requeued or reclaimed). */
int store_cell_fail(store *st, int64_t cell_id, int attempt, const char *code, const char *message,
                    const char *stderr_tail, int retry, store_fail_outcome *outcome,
                    char *err, size_t errlen);
/* Give a running attempt back without counting it (graceful shutdown): queued, attempts - 1.
 * STORE_NOOP when that attempt is no longer running. */
int store_cell_release(store *st, int64_t cell_id, int attempt, char *err, size_t errlen);

/* Running cells whose lease expired before now go back to queued (error "lease_expired"), or to
 * failed once attempts reached max_attempts, or to cancelled in a cancelled job. Counts may be
 * NULL. */
int store_cells_requeue_expired(store *st, int *n_requeued, int *n_failed, char *err, size_t errlen);
/* Boot recovery: the previous daemon is gone, so every running cell is treated like an expired
 * lease (error "interrupted"). Cells of an older daemon that lack their own "model", "out" (train)
 * or "dataset" key get it from their job first. Call once after store_open, before the scheduler
 * starts. */
int store_recover(store *st, int *n_requeued, int *n_failed, char *err, size_t errlen);

/* ------------------------------------------------------------------ registered datasets */

/* A token or text dataset an admin registered by its path (sql/004_datasets.sql). */
typedef struct {
    int64_t id;
    char *name;  /* a dataset name: "tokens:X" or "text:X" */
    char *path;  /* absolute path of the directory (tokens) or file (text) */
    char *kind;  /* "tokens" or "text" */
    char *owner;
    int64_t created_ms;
} store_dataset;
void store_dataset_free(store_dataset *d);              /* NULL-safe */
void store_datasets_free(store_dataset *d, size_t n);   /* NULL-safe */
/* Insert d (id and created_ms are ignored). STORE_EXISTS if the name is taken, STORE_INVALID
 * when name is not a dataset name or path, kind or owner is missing. */
int store_dataset_insert(store *st, const store_dataset *d, char *err, size_t errlen);
/* STORE_NOTFOUND when no dataset of that name is registered. */
int store_dataset_get(store *st, const char *name, store_dataset *d, char *err, size_t errlen);
/* Every registered dataset, by name; *out (caller frees with store_datasets_free). */
int store_datasets_list(store *st, store_dataset **out, size_t *n, char *err, size_t errlen);

/* ------------------------------------------------------------------ metrics */

typedef struct {
    int64_t cells[STORE_STATE_COUNT]; /* cells per state over all jobs (queued = queue depth) */
    int64_t jobs[STORE_STATE_COUNT];  /* jobs per state */
    int64_t users, models;
} store_metrics;
int store_metrics_get(store *st, store_metrics *m, char *err, size_t errlen);

#endif
