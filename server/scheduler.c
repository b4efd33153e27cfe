/* scheduler.c — the loop that turns queued cells into engine processes and their outcomes
 * into store rows.
 *
 * One thread (sched_main) owns the executor and every `struct run` (one per running cell):
 * nothing in them is touched by another thread. Other threads talk to it through a small
 * mutex-protected mailbox (wake flag, job ids to cancel, stop request) and executor_wake, which
 * interrupts executor_poll. Each loop iteration: handle the mailbox, requeue expired leases
 * (every REQUEUE_EVERY_S), claim cells while fewer than cfg->workers run — when woken by
 * scheduler_wake, after a cell ended, or every CLAIM_EVERY_S (a claim is a write transaction,
 * so an idle daemon does not attempt one per tick) — renew the leases of quiet cells, then
 * executor_poll for up to POLL_MS; executor callbacks run inside that poll and write to the
 * store (progress + lease, result, failure with retry).
 *
 * A cell's stdin spec is its stored spec plus runtime fields (see scheduler.h). Train cells
 * write models_dir/NAME.safetensors.part-<cell id>; on success the file is hard-linked to
 * models_dir/NAME.safetensors (never replacing an existing file), registered with
 * store_model_insert, and the part file removed; on any other outcome the part file is removed.
 *
 * Results. A result is committed with store_cell_commit (a train cell's model in the same
 * transaction). When that fails (STORE_ERR: a full disk gives SQLITE_FULL) the result is kept in a
 * `struct pending`, written to cfg->data_dir/spool/cell-<id>.json (temp file, fsync, rename) and
 * retried with a backoff of COMMIT_RETRY_S doubling up to COMMIT_RETRY_MAX_S; meanwhile the cell
 * stays running in the store with phase "committing" and its lease renewed, and its worker slot is
 * free. The attempt is not spent again. scheduler_start commits every spool file before recovery
 * (a daemon that stopped or was killed with results waiting loses none of those spooled); a
 * result whose spool write failed too is held in memory only and is lost at a stop (its cell then
 * runs again after recovery).
 *
 * Shutdown (scheduler_stop): stop claiming, keep polling until no cell runs or the grace period
 * ends, then executor_kill_all; cells it terminated are released back to queued with
 * store_cell_release (their attempt is not counted), cells that completed meanwhile are stored.
 *
 * Assumptions: the store outlives the scheduler; cfg stays valid until scheduler_stop; nothing
 * else in the process calls wait() (executor.h). */
#define _GNU_SOURCE /* vasprintf */
#include "scheduler.h"

#include "datasets.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cell_memory.h"
#include "executor.h"

#define POLL_MS 500
#define CLAIM_EVERY_S 2.0 /* claim attempts without a wake-up (safety net; claims write) */
#define REQUEUE_EVERY_S 5.0
#define PROGRESS_EVERY_S 1.0 /* progress writes per cell at most this often, phase changes always */
#define CANCEL_GRACE_S 3.0 /* SIGTERM -> SIGKILL for a cancelled cell */
#define SHUTDOWN_KILL_GRACE_S 3.0
#define ERRLEN 512
#define MAX_PENDING_CANCELS 256
#define COMMIT_RETRY_S 1.0      /* first retry of a result commit that failed; doubles ... */
#define COMMIT_RETRY_MAX_S 10.0 /* ... up to this */

struct run {
    int64_t cell_id, job_id;
    int attempt;
    int is_train;
    int have_baseline;       /* the job had a baseline when the cell was claimed */
    char *owner;
    char *model_name;        /* train: the model to register (job spec "name") */
    char *dataset;           /* train: the cell spec's dataset */
    char *part_path;         /* train: models_dir/NAME.safetensors.part-<cell id> */
    char *final_path;        /* train: models_dir/NAME.safetensors */
    double progress;         /* last reported overall progress */
    double last_renew;       /* executor_clock() of the last progress write / lease extension */
    char phase[32];          /* last phase written */
    struct run *next;
};

/* A finished cell whose result could not be committed yet (store_cell_commit returned STORE_ERR,
 * e.g. a full disk). The cell stays running in the store, phase "committing", its lease renewed,
 * while the commit is retried; the attempt is not spent again. */
struct pending {
    int64_t cell_id, job_id;
    int attempt;
    int is_train;
    int have_baseline;
    char *result;            /* the metrics, compact JSON */
    char *model_name;        /* train: the model to register with the result, else NULL */
    char *model_path;        /* train: models_dir/NAME.safetensors (already linked into place) */
    char *dataset;
    char *owner;
    char *spool_path;        /* spool_dir/cell-<id>.json, NULL while held in memory only */
    double next_try;         /* executor_clock() of the next commit attempt */
    double last_renew;       /* executor_clock() of the last lease extension */
    int tries;
    struct pending *next;
};

struct scheduler {
    store *st;
    const pl_config *cfg;
    char *engine_bin;
    char *models_dir;
    char lease_owner[96];
    executor *ex;
    pthread_t thread;
    int thread_started;
    struct run *runs;        /* scheduler thread only */
    int n_running;           /* scheduler thread only (mirrored in stats) */
    int releasing;           /* scheduler thread only: executor_kill_all of shutdown under way */
    int slot_freed;          /* scheduler thread only: a cell ended, claim again at once */
    struct pending *pending; /* scheduler thread only: results waiting for their commit */
    int n_pending;           /* scheduler thread only (mirrored in stats.committing) */
    char *spool_dir;         /* cfg->data_dir/spool: results whose commit failed, replayed at start */

    pthread_mutex_t mu;      /* guards everything below */
    int stop;
    int woken;               /* scheduler_wake since the last claim round */
    double stop_grace_s;
    int64_t cancels[MAX_PENDING_CANCELS];
    int n_cancels;
    scheduler_stats_t stats;
};

static char *str_dup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static char *str_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = NULL;
    if (vasprintf(&p, fmt, ap) < 0) p = NULL;
    va_end(ap);
    return p;
}

static void run_free(struct run *r) {
    if (!r) return;
    free(r->owner);
    free(r->model_name);
    free(r->dataset);
    free(r->part_path);
    free(r->final_path);
    free(r);
}

static struct run *run_find(scheduler *s, int64_t cell_id) {
    for (struct run *r = s->runs; r; r = r->next)
        if (r->cell_id == cell_id) return r;
    return NULL;
}

static void run_remove(scheduler *s, struct run *r) {
    for (struct run **p = &s->runs; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            s->n_running--;
            break;
        }
    run_free(r);
}

static void stats_add(scheduler *s, int64_t *field, int64_t d) {
    pthread_mutex_lock(&s->mu);
    *field += d;
    s->stats.running = s->n_running;
    s->stats.committing = s->n_pending;
    pthread_mutex_unlock(&s->mu);
}

static void log_msg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("prunelabd: scheduler: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ------------------------------------------------------------------ spec building */

/* A model reference -> a checkpoint path: a bare NAME becomes models_dir/NAME.safetensors,
 * anything with a '/' is kept. Returns malloc'd text or NULL. */
static char *model_path(const scheduler *s, const char *ref) {
    if (strchr(ref, '/')) return str_dup(ref);
    return str_printf("%s/%s.safetensors", s->models_dir, ref);
}

/* Build the stdin spec of claimed cell c and fill r's train fields. The cell carries its own
 * "model" (a name), a train cell its "out" (the name to register) and "dataset", as jobspec.c
 * writes them (older rows got them at boot, store_recover); job gives only the baseline. Returns
 * malloc'd JSON text, or NULL with err (the cell is then failed without retry: the spec itself
 * is wrong). */
static char *spec_build(scheduler *s, const store_cell *c, const store_job *job, struct run *r,
                        char *err, size_t errlen) {
    char *text = NULL;
    json_error_t je;
    json_t *spec = json_loads(c->spec_json, JSON_REJECT_DUPLICATES, &je);
    if (!spec || !json_is_object(spec)) {
        snprintf(err, errlen, "cell spec is not a JSON object: %s", spec ? "" : je.text);
        goto cleanup;
    }
    const char *ref = json_string_value(json_object_get(spec, "model"));
    if (ref && *ref) {
        char *p = model_path(s, ref);
        if (!p || json_object_set_new(spec, "model", json_string(p)) != 0) {
            free(p);
            snprintf(err, errlen, "out of memory");
            goto cleanup;
        }
        free(p);
    }
    if (r->is_train) {
        const char *name = json_string_value(json_object_get(spec, "out"));
        if (!name || !store_name_valid(name)) {
            snprintf(err, errlen, "name: a train job needs a valid model name");
            goto cleanup;
        }
        r->model_name = str_dup(name); /* before the key holding name is replaced */
        r->final_path = r->model_name ? str_printf("%s/%s.safetensors", s->models_dir, r->model_name) : NULL;
        r->part_path = r->model_name ? str_printf("%s/%s.safetensors.part-%lld", s->models_dir, r->model_name,
                                                  (long long)c->id)
                                     : NULL;
        r->dataset = str_dup(json_string_value(json_object_get(spec, "dataset")));
        json_object_del(spec, "name"); /* not a cell key */
        if (!r->model_name || !r->final_path || !r->part_path ||
            json_object_set_new(spec, "out", json_string(r->part_path)) != 0) {
            snprintf(err, errlen, "out of memory");
            goto cleanup;
        }
    } else if (job && job->baseline_json && !json_object_get(spec, "baseline")) {
        /* the cell takes accuracy and loss (an LM derives its baseline perplexity from the loss);
         * the job's other members (perplexity) are for the API */
        json_t *b = json_loads(job->baseline_json, 0, &je);
        json_t *acc = json_object_get(b, "accuracy"), *loss = json_object_get(b, "loss");
        if (json_is_number(acc)) {
            json_t *given = json_pack("{s:O}", "accuracy", acc);
            if (given && json_is_number(loss)) json_object_set(given, "loss", loss);
            if (given) json_object_set_new(spec, "baseline", given);
        }
        json_decref(b);
    }
    /* a registered or found token dataset: the cell gets its path (datasets.h); after the train
     * fields above, so a trained model records the name, not the path */
    char *ds_path = datasets_resolve(s->st, s->cfg->data_dir, json_string_value(json_object_get(spec, "dataset")));
    if (ds_path) json_object_set_new(spec, "dataset", json_string(ds_path));
    free(ds_path);
    if (s->cfg->threads_per_cell > 0)
        json_object_set_new(spec, "threads", json_integer(s->cfg->threads_per_cell));
    text = json_dumps(spec, JSON_COMPACT);
    if (!text) snprintf(err, errlen, "out of memory");
cleanup:
    json_decref(spec);
    return text;
}

/* ------------------------------------------------------------------ executor callbacks */

static void on_progress(void *user, int64_t cell_id, const char *phase, double fraction,
                        double overall, const json_t *line) {
    (void)line;
    scheduler *s = user;
    struct run *r = run_find(s, cell_id);
    if (!r) return;
    double p = !isnan(overall) ? overall : r->progress;
    (void)fraction;
    r->progress = p;
    double now = executor_clock();
    int new_phase = phase && strncmp(phase, r->phase, sizeof r->phase - 1) != 0;
    if (!new_phase && now - r->last_renew < PROGRESS_EVERY_S) return; /* throttle the writes */
    if (new_phase) snprintf(r->phase, sizeof r->phase, "%s", phase);
    r->last_renew = now;
    char err[ERRLEN];
    int rc = store_cell_progress(s->st, cell_id, r->attempt, p, phase,
                                 (int64_t)s->cfg->lease_s * 1000, err, sizeof err);
    if (rc == STORE_NOTFOUND) {
        log_msg("cell %lld lost its lease; terminating it", (long long)cell_id);
        executor_cancel(s->ex, cell_id);
    } else if (rc != STORE_OK) {
        log_msg("cell %lld progress: %s", (long long)cell_id, err);
    }
}

/* The job's baseline from a result, when the job has none yet. */
static void baseline_record(scheduler *s, const struct pending *r, const json_t *metrics) {
    if (r->have_baseline || r->is_train) return;
    json_t *acc = json_object_get(metrics, "baseline_accuracy");
    if (!json_is_number(acc)) return;
    char err[ERRLEN];
    store_job job;
    memset(&job, 0, sizeof job);
    if (store_job_get(s->st, r->job_id, &job, err, sizeof err) != STORE_OK) return;
    if (!job.baseline_json) {
        json_t *b = json_pack("{s:O}", "accuracy", acc);
        json_t *loss = json_object_get(metrics, "baseline_loss");
        if (b && json_is_number(loss)) json_object_set(b, "loss", loss);
        json_t *ppl = json_object_get(metrics, "baseline_perplexity"); /* causal LM cells */
        if (b && json_is_number(ppl)) json_object_set(b, "perplexity", ppl);
        char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
        if (text && store_job_baseline_set(s->st, r->job_id, text, err, sizeof err) != STORE_OK)
            log_msg("job %lld baseline: %s", (long long)r->job_id, err);
        free(text);
        json_decref(b);
    }
    store_job_free(&job);
}

/* ------------------------------------------------------------------ result commits and the spool */

static void pending_free(struct pending *p) {
    if (!p) return;
    free(p->result);
    free(p->model_name);
    free(p->model_path);
    free(p->dataset);
    free(p->owner);
    free(p->spool_path);
    free(p);
}

/* Commit p's result (and, for a train cell, its model) in one transaction. On success the job's
 * baseline and the stats follow; a taken model name fails the cell (model_exists) and removes the
 * file linked for it. Returns store_cell_commit's rc: STORE_ERR means try again later. */
static int pending_commit(scheduler *s, struct pending *p) {
    char err[ERRLEN];
    json_t *metrics = json_loads(p->result, 0, NULL);
    store_model m;
    memset(&m, 0, sizeof m);
    m.name = p->model_name;
    m.path = p->model_path;
    m.dataset = p->dataset;
    m.owner = p->owner;
    json_t *params = json_object_get(metrics, "params");
    m.params = json_is_integer(params) ? (int64_t)json_integer_value(params) : -1;
    json_t *acc = json_object_get(metrics, "accuracy");
    m.accuracy = json_is_number(acc) ? json_number_value(acc) : NAN;
    m.info_json = p->result;
    int rc = store_cell_commit(s->st, p->cell_id, p->result, p->model_name ? &m : NULL, err, sizeof err);
    if (rc == STORE_OK || rc == STORE_NOOP) {
        if (metrics) baseline_record(s, p, metrics);
        stats_add(s, &s->stats.done, 1);
        if (p->model_name && rc == STORE_OK) stats_add(s, &s->stats.models, 1);
    } else if (rc == STORE_EXISTS) {
        unlink(p->model_path);
        char msg[ERRLEN];
        snprintf(msg, sizeof msg, "cannot register model %s: the name is taken", p->model_name);
        store_cell_fail(s->st, p->cell_id, p->attempt, "model_exists", msg, NULL, 0, NULL, err, sizeof err);
        stats_add(s, &s->stats.failed, 1);
    } else if (rc != STORE_ERR) {
        log_msg("cell %lld result: %s", (long long)p->cell_id, err);
    } else if (p->tries == 0) {
        log_msg("cell %lld result not committed (%s); keeping it and retrying", (long long)p->cell_id, err);
    }
    json_decref(metrics);
    return rc;
}

/* Write p to spool_dir/cell-<id>.json (temp file, fsync, rename, fsync of the directory), so a
 * daemon that stops before the commit lands replays it at start. Returns 0 (p->spool_path set)
 * or -1 with err (p stays in memory only). */
static int spool_write(scheduler *s, struct pending *p, char *err, size_t errlen) {
    int rc = -1, fd = -1;
    char *path = str_printf("%s/cell-%lld.json", s->spool_dir, (long long)p->cell_id);
    char *tmp = str_printf("%s/cell-%lld.json.tmp", s->spool_dir, (long long)p->cell_id);
    json_t *doc = json_pack("{s:I,s:I,s:i,s:i,s:i,s:o?}", "cell_id", (json_int_t)p->cell_id, "job_id",
                            (json_int_t)p->job_id, "attempt", p->attempt, "is_train", p->is_train, "have_baseline",
                            p->have_baseline, "result", json_loads(p->result, 0, NULL));
    if (doc && p->model_name)
        json_object_set_new(doc, "model", json_pack("{s:s,s:s,s:s?,s:s?}", "name", p->model_name, "path",
                                                    p->model_path, "dataset", p->dataset, "owner", p->owner));
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (!path || !tmp || !text || !json_object_get(doc, "result")) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    if (mkdir(s->spool_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "mkdir %s: %s", s->spool_dir, strerror(errno));
        goto cleanup;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            snprintf(err, errlen, "%s: %s", tmp, n < 0 ? strerror(errno) : "short write");
            goto cleanup;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "rename %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    int dfd = open(s->spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(p->spool_path);
    p->spool_path = path;
    path = NULL;
    rc = 0;
cleanup:
    if (fd >= 0) close(fd);
    if (rc != 0 && tmp) unlink(tmp);
    free(text);
    json_decref(doc);
    free(path);
    free(tmp);
    return rc;
}

/* Extend the lease of a pending commit's cell (phase "committing") when a third of it passed. */
static void pending_renew(scheduler *s, struct pending *p, double now) {
    if (now - p->last_renew < s->cfg->lease_s / 3.0) return;
    p->last_renew = now;
    char err[ERRLEN];
    store_cell_progress(s->st, p->cell_id, p->attempt, 1.0, "committing", (int64_t)s->cfg->lease_s * 1000, err,
                        sizeof err); /* a lost lease does not matter: the commit works from any state */
}

/* Keep p (whose first commit failed) for retries: spool it, list it, mark the cell committing. */
static void pending_keep(scheduler *s, struct pending *p) {
    char err[ERRLEN];
    if (spool_write(s, p, err, sizeof err) != 0)
        log_msg("cell %lld: cannot spool the result (%s); it is held in memory only", (long long)p->cell_id, err);
    p->tries = 1;
    double now = executor_clock();
    p->next_try = now + COMMIT_RETRY_S;
    p->last_renew = now - s->cfg->lease_s; /* renew at once */
    pending_renew(s, p, now);
    p->next = s->pending;
    s->pending = p;
    s->n_pending++;
    stats_add(s, &s->stats.done, 0); /* refresh stats.committing */
}

/* Retry the pending commits that are due (all of them when force). */
static void pending_retry(scheduler *s, int force) {
    double now = executor_clock();
    for (struct pending **pp = &s->pending; *pp;) {
        struct pending *p = *pp;
        if (!force && now < p->next_try) {
            pending_renew(s, p, now);
            pp = &p->next;
            continue;
        }
        if (pending_commit(s, p) == STORE_ERR) {
            double wait = COMMIT_RETRY_S * (double)(1u << (p->tries < 8 ? p->tries : 8));
            p->next_try = now + (wait < COMMIT_RETRY_MAX_S ? wait : COMMIT_RETRY_MAX_S);
            p->tries++;
            pending_renew(s, p, now);
            char err[ERRLEN];
            if (!p->spool_path && spool_write(s, p, err, sizeof err) == 0)
                log_msg("cell %lld: result spooled to %s", (long long)p->cell_id, p->spool_path);
            pp = &p->next;
            continue;
        }
        if (p->tries > 0) log_msg("cell %lld: result committed after %d attempt(s)", (long long)p->cell_id, p->tries + 1);
        if (p->spool_path) unlink(p->spool_path);
        *pp = p->next;
        s->n_pending--;
        pending_free(p);
        stats_add(s, &s->stats.done, 0);
    }
}

/* A spool file -> a pending commit; NULL when the file is not one of ours (or out of memory). */
static struct pending *spool_read(const char *path) {
    json_error_t je;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    struct pending *p = calloc(1, sizeof *p);
    json_t *res = json_object_get(doc, "result"), *m = json_object_get(doc, "model");
    if (!p || !json_is_integer(json_object_get(doc, "cell_id")) || !json_is_object(res)) goto fail;
    p->cell_id = (int64_t)json_integer_value(json_object_get(doc, "cell_id"));
    p->job_id = (int64_t)json_integer_value(json_object_get(doc, "job_id"));
    p->attempt = (int)json_integer_value(json_object_get(doc, "attempt"));
    p->is_train = json_integer_value(json_object_get(doc, "is_train")) != 0;
    p->have_baseline = (int)json_integer_value(json_object_get(doc, "have_baseline"));
    p->result = json_dumps(res, JSON_COMPACT);
    p->spool_path = str_dup(path);
    if (!p->result || !p->spool_path) goto fail;
    if (json_is_object(m)) {
        const char *name = json_string_value(json_object_get(m, "name"));
        const char *mpath = json_string_value(json_object_get(m, "path"));
        if (!name || !mpath) goto fail;
        p->model_name = str_dup(name);
        p->model_path = str_dup(mpath);
        p->dataset = str_dup(json_string_value(json_object_get(m, "dataset")));
        p->owner = str_dup(json_string_value(json_object_get(m, "owner")));
        if (!p->model_name || !p->model_path || !p->owner) goto fail;
    }
    json_decref(doc);
    return p;
fail:
    json_decref(doc);
    pending_free(p);
    return NULL;
}

/* At start, before recovery: commit every spooled result. Those that still fail stay pending
 * (retried by the loop); files that are not spooled results are left alone. */
static void spool_replay(scheduler *s) {
    DIR *d = opendir(s->spool_dir);
    if (!d) return;
    struct dirent *e;
    int n = 0, kept = 0;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "cell-", 5) != 0) continue;
        char *path = str_printf("%s/%s", s->spool_dir, e->d_name);
        if (!path) continue;
        if (len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0) { /* an unfinished write */
            unlink(path);
            free(path);
            continue;
        }
        if (len < 5 || strcmp(e->d_name + len - 5, ".json") != 0) {
            free(path);
            continue;
        }
        struct pending *p = spool_read(path);
        if (!p) {
            log_msg("spool: %s is not a spooled result; left alone", path);
            free(path);
            continue;
        }
        free(path);
        n++;
        if (pending_commit(s, p) == STORE_ERR) {
            kept++;
            p->tries = 1;
            p->next_try = executor_clock() + COMMIT_RETRY_S;
            p->next = s->pending;
            s->pending = p;
            s->n_pending++;
            continue;
        }
        unlink(p->spool_path);
        pending_free(p);
    }
    closedir(d);
    if (n) log_msg("spool: %d result(s) replayed, %d still waiting for their commit", n - kept, kept);
    stats_add(s, &s->stats.done, 0);
}

/* A cell ended with a result: commit it (train: link the part file into place first, and
 * register the model with the result). A commit that fails for want of space or any other
 * SQLite error is kept and retried (pending_keep); the cell is not run again. */
static void result_handle(scheduler *s, struct run *r, const executor_outcome *o) {
    char err[ERRLEN], msg[ERRLEN];
    const char *code = NULL;
    struct pending *p = calloc(1, sizeof *p);
    if (p) {
        p->cell_id = r->cell_id;
        p->job_id = r->job_id;
        p->attempt = r->attempt;
        p->is_train = r->is_train;
        p->have_baseline = r->have_baseline;
        p->result = json_dumps(o->metrics, JSON_COMPACT);
    }
    if (!p || !p->result) {
        code = "runtime";
        snprintf(msg, sizeof msg, "out of memory storing the result");
    } else if (r->is_train) {
        p->model_name = str_dup(r->model_name);
        p->model_path = str_dup(r->final_path);
        p->dataset = str_dup(r->dataset);
        p->owner = str_dup(r->owner);
        if (!p->model_name || !p->model_path || !p->owner) {
            code = "runtime";
            snprintf(msg, sizeof msg, "out of memory storing the result");
        } else if (link(r->part_path, r->final_path) != 0) {
            code = errno == EEXIST ? "model_exists" : "runtime";
            snprintf(msg, sizeof msg, "cannot place the model at %s: %s", r->final_path, strerror(errno));
        }
    }
    if (code) {
        store_cell_fail(s->st, r->cell_id, r->attempt, code, msg, o->stderr_tail, 0, NULL, err, sizeof err);
        stats_add(s, &s->stats.failed, 1);
        pending_free(p);
        return;
    }
    if (pending_commit(s, p) == STORE_ERR) {
        pending_keep(s, p);
        return;
    }
    pending_free(p);
}

static void on_exit_cb(void *user, const executor_outcome *o) {
    scheduler *s = user;
    struct run *r = run_find(s, o->cell_id);
    if (!r) return;
    char err[ERRLEN];
    if (o->status == EXECUTOR_DONE && o->metrics) {
        result_handle(s, r, o);
    } else if (s->releasing && o->status == EXECUTOR_CANCELLED &&
               strcmp(o->code, "shutdown") == 0) {
        int rc = store_cell_release(s->st, o->cell_id, r->attempt, err, sizeof err);
        if (rc == STORE_ERR) log_msg("cell %lld release: %s", (long long)o->cell_id, err);
        else if (rc == STORE_OK) stats_add(s, &s->stats.released, 1);
    } else {
        int rc = store_cell_fail(s->st, o->cell_id, r->attempt, o->code, o->message,
                                 o->stderr_tail, o->retriable, NULL, err, sizeof err);
        if (rc == STORE_ERR) log_msg("cell %lld failure: %s", (long long)o->cell_id, err);
        stats_add(s, &s->stats.failed, 1);
    }
    if (r->part_path) unlink(r->part_path);
    run_remove(s, r);
    s->slot_freed = 1;
    stats_add(s, &s->stats.done, 0); /* refresh stats.running */
}

/* ------------------------------------------------------------------ the loop */

/* Claim and start one cell. Returns 1 when a cell started (or was failed at once), 0 when
 * nothing is claimable, -1 on a store error. */
/* The per-owner running cap of the next claim: cfg->owner_running_cap when set, else a fair
 * share: ceil(workers / owners with queued cells) while there are several, no cap for one. */
static int owner_cap(scheduler *s) {
    if (s->cfg->owner_running_cap > 0) return s->cfg->owner_running_cap;
    int n = 0;
    char err[ERRLEN];
    if (store_owners_queued(s->st, &n, err, sizeof err) != STORE_OK || n <= 1) return 0;
    return (s->cfg->workers + n - 1) / n;
}

static int claim_one(scheduler *s) {
    char err[ERRLEN];
    store_cell c;
    memset(&c, 0, sizeof c);
    int rc = store_cell_claim(s->st, s->lease_owner, owner_cap(s),
                              (int64_t)s->cfg->lease_s * 1000, &c, err, sizeof err);
    if (rc == STORE_NOTFOUND) return 0;
    if (rc != STORE_OK) {
        log_msg("claim: %s", err);
        return -1;
    }
    store_job job;
    memset(&job, 0, sizeof job);
    int have_job = store_job_get(s->st, c.job_id, &job, err, sizeof err) == STORE_OK;
    struct run *r = calloc(1, sizeof *r);
    char *spec = NULL;
    int ret = 1;
    if (!r) {
        store_cell_release(s->st, c.id, c.attempts, err, sizeof err);
        ret = -1;
        goto cleanup;
    }
    r->cell_id = c.id;
    r->job_id = c.job_id;
    r->attempt = c.attempts;
    r->is_train = c.job_type == STORE_JOB_TRAIN;
    r->have_baseline = have_job && job.baseline_json != NULL;
    r->owner = str_dup(c.owner);
    r->last_renew = executor_clock();
    char msg[ERRLEN];
    spec = spec_build(s, &c, have_job ? &job : NULL, r, msg, sizeof msg);
    if (!spec) {
        store_cell_fail(s->st, c.id, c.attempts, "bad_spec", msg, NULL, 0, NULL, err, sizeof err);
        stats_add(s, &s->stats.failed, 1);
        goto cleanup;
    }
    executor_request req = {.cell_id = c.id, .spec = spec, .threads = s->cfg->threads_per_cell};
    if (executor_start(s->ex, &req, msg, sizeof msg) != 0) {
        log_msg("cell %lld: %s", (long long)c.id, msg);
        store_cell_fail(s->st, c.id, c.attempts, "spawn", msg, NULL, 1, NULL, err, sizeof err);
        stats_add(s, &s->stats.failed, 1);
        goto cleanup;
    }
    executor_cell_info info;
    if (executor_info(s->ex, c.id, &info) == 0 && info.pid > 0)
        store_cell_set_pid(s->st, c.id, c.attempts, info.pid, err, sizeof err);
    r->next = s->runs;
    s->runs = r;
    s->n_running++;
    r = NULL;
    stats_add(s, &s->stats.started, 1);
cleanup:
    run_free(r);
    free(spec);
    store_job_free(&job);
    store_cell_free(&c);
    return ret;
}

/* Extend the lease of cells that have been quiet for a third of it. */
static void leases_renew(scheduler *s) {
    double now = executor_clock();
    double every = s->cfg->lease_s / 3.0;
    char err[ERRLEN];
    for (struct run *r = s->runs; r; r = r->next) {
        if (now - r->last_renew < every) continue;
        r->last_renew = now;
        int rc = store_cell_progress(s->st, r->cell_id, r->attempt, r->progress, NULL,
                                     (int64_t)s->cfg->lease_s * 1000, err, sizeof err);
        if (rc == STORE_NOTFOUND) executor_cancel(s->ex, r->cell_id);
    }
}

/* Signal the running cells of the jobs in the mailbox. */
static void cancels_handle(scheduler *s) {
    int64_t ids[MAX_PENDING_CANCELS];
    pthread_mutex_lock(&s->mu);
    int n = s->n_cancels;
    memcpy(ids, s->cancels, (size_t)n * sizeof ids[0]);
    s->n_cancels = 0;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++)
        for (struct run *r = s->runs; r; r = r->next)
            if (r->job_id == ids[i]) executor_cancel(s->ex, r->cell_id);
}

static void *sched_main(void *arg) {
    scheduler *s = arg;
    char err[ERRLEN];
    double last_requeue = -REQUEUE_EVERY_S, last_claim = -CLAIM_EVERY_S;
    double grace = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int stop = s->stop, woken = s->woken;
        s->woken = 0;
        grace = s->stop_grace_s;
        pthread_mutex_unlock(&s->mu);
        cancels_handle(s);
        if (stop) break;
        double now = executor_clock();
        if (now - last_requeue >= REQUEUE_EVERY_S) {
            last_requeue = now;
            int nq = 0;
            if (store_cells_requeue_expired(s->st, &nq, NULL, err, sizeof err) == STORE_ERR)
                log_msg("requeue: %s", err);
            woken |= nq > 0;
        }
        /* claim when told to, when a slot freed up, and now and then regardless */
        if (woken || s->slot_freed || now - last_claim >= CLAIM_EVERY_S) {
            last_claim = now;
            s->slot_freed = 0;
            while (s->n_running < s->cfg->workers && claim_one(s) == 1) {
            }
        }
        leases_renew(s);
        pending_retry(s, 0);
        if (executor_poll(s->ex, POLL_MS) < 0 && errno != EINTR) log_msg("poll: %s", strerror(errno));
    }
    /* shutdown: no more claims; let running cells finish within the grace period */
    double deadline = executor_clock() + (grace > 0 ? grace : 0);
    while (s->n_running > 0 && executor_clock() < deadline) {
        cancels_handle(s);
        leases_renew(s);
        double left_ms = (deadline - executor_clock()) * 1000.0;
        executor_poll(s->ex, left_ms < POLL_MS ? (int)left_ms + 1 : POLL_MS);
    }
    if (s->n_running > 0) {
        log_msg("releasing %d running cell(s) back to the queue", s->n_running);
        s->releasing = 1;
        executor_kill_all(s->ex, SHUTDOWN_KILL_GRACE_S);
    }
    /* a last try for the results still waiting; those spooled are replayed at the next start */
    pending_retry(s, 1);
    int in_memory = 0;
    for (struct pending *p = s->pending; p; p = p->next) in_memory += p->spool_path == NULL;
    if (s->n_pending > 0)
        log_msg("%d result(s) not committed: %d spooled in %s (committed at the next start), %d lost (those "
                "cells run again)",
                s->n_pending, s->n_pending - in_memory, s->spool_dir, in_memory);
    return NULL;
}

/* ------------------------------------------------------------------ public */

scheduler *scheduler_start(store *st, const pl_config *cfg, const char *engine_bin,
                           const char *models_dir, char *err, size_t errlen) {
    scheduler *s = calloc(1, sizeof *s);
    if (!s) return snprintf(err, errlen, "out of memory"), NULL;
    pthread_mutex_init(&s->mu, NULL);
    s->st = st;
    s->cfg = cfg;
    s->engine_bin = str_dup(engine_bin ? engine_bin : cfg->engine_bin);
    s->models_dir = str_dup(models_dir);
    s->spool_dir = str_printf("%s/spool", cfg->data_dir ? cfg->data_dir : ".");
    snprintf(s->lease_owner, sizeof s->lease_owner, "local:%ld", (long)getpid());
    s->stats.workers = cfg->workers;
    if (!s->engine_bin || !s->models_dir || !s->spool_dir) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    spool_replay(s); /* before recovery, so that a spooled cell is done instead of requeued */
    int nq = 0, nf = 0;
    char serr[ERRLEN];
    if (store_recover(st, &nq, &nf, serr, sizeof serr) != STORE_OK) {
        snprintf(err, errlen, "recovery: %s", serr);
        goto fail;
    }
    if (nq || nf)
        log_msg("recovered %d interrupted cell(s): %d requeued, %d failed", nq + nf, nq, nf);
    executor_config ec;
    executor_config_default(&ec);
    ec.bin = s->engine_bin;
    ec.coretype = getenv("OPENBLAS_CORETYPE");
    ec.threads = cfg->threads_per_cell;
    ec.grace_s = CANCEL_GRACE_S;
    ec.nice = cfg->cell_nice;
    ec.mem_limit = cfg->max_cell_memory ? cell_memory_rlimit(cfg->max_cell_memory) : 0;
    executor_callbacks cb = {.user = s, .on_progress = on_progress, .on_exit = on_exit_cb};
    char xerr[EXECUTOR_ERRLEN];
    s->ex = executor_new(cfg->executor ? cfg->executor : "local", &ec, &cb, xerr, sizeof xerr);
    if (!s->ex) {
        snprintf(err, errlen, "executor: %s", xerr);
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        snprintf(err, errlen, "cannot start the scheduler thread");
        goto fail;
    }
    s->thread_started = 1;
    return s;
fail:
    executor_free(s->ex);
    while (s->pending) {
        struct pending *p = s->pending;
        s->pending = p->next;
        pending_free(p);
    }
    free(s->spool_dir);
    free(s->engine_bin);
    free(s->models_dir);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return NULL;
}

void scheduler_wake(scheduler *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->woken = 1;
    pthread_mutex_unlock(&s->mu);
    executor_wake(s->ex);
}

void scheduler_cancel_job(scheduler *s, int64_t job_id) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    int dup = 0;
    for (int i = 0; i < s->n_cancels; i++) dup |= s->cancels[i] == job_id;
    if (!dup && s->n_cancels < MAX_PENDING_CANCELS) s->cancels[s->n_cancels++] = job_id;
    pthread_mutex_unlock(&s->mu);
    executor_wake(s->ex);
}

void scheduler_stop(scheduler *s, double grace_s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    s->stop_grace_s = grace_s;
    pthread_mutex_unlock(&s->mu);
    executor_wake(s->ex);
    if (s->thread_started) pthread_join(s->thread, NULL);
    executor_free(s->ex);
    while (s->runs) run_remove(s, s->runs);
    while (s->pending) {
        struct pending *p = s->pending;
        s->pending = p->next;
        pending_free(p);
    }
    free(s->spool_dir);
    free(s->engine_bin);
    free(s->models_dir);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int scheduler_stats(scheduler *s, scheduler_stats_t *out) {
    if (!s || !out) return -1;
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
    return 0;
}
