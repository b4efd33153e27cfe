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
 * Shutdown (scheduler_stop): stop claiming, keep polling until no cell runs or the grace period
 * ends, then executor_kill_all; cells it terminated are released back to queued with
 * store_cell_release (their attempt is not counted), cells that completed meanwhile are stored.
 *
 * Assumptions: the store outlives the scheduler; cfg stays valid until scheduler_stop; nothing
 * else in the process calls wait() (executor.h). */
#define _GNU_SOURCE /* vasprintf */
#include "scheduler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "executor.h"

#define POLL_MS 500
#define CLAIM_EVERY_S 2.0 /* claim attempts without a wake-up (safety net; claims write) */
#define REQUEUE_EVERY_S 5.0
#define PROGRESS_EVERY_S 1.0 /* progress writes per cell at most this often, phase changes always */
#define CANCEL_GRACE_S 3.0 /* SIGTERM -> SIGKILL for a cancelled cell */
#define SHUTDOWN_KILL_GRACE_S 3.0
#define ERRLEN 512
#define MAX_PENDING_CANCELS 256

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
        json_t *b = json_loads(job->baseline_json, 0, &je);
        if (json_is_object(b) && json_object_get(b, "accuracy"))
            json_object_set(spec, "baseline", b);
        json_decref(b);
    }
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
static void baseline_record(scheduler *s, struct run *r, const json_t *metrics) {
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
        char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
        if (text && store_job_baseline_set(s->st, r->job_id, text, err, sizeof err) != STORE_OK)
            log_msg("job %lld baseline: %s", (long long)r->job_id, err);
        free(text);
        json_decref(b);
    }
    store_job_free(&job);
}

/* Put a trained model into place and register it. Returns 0, or -1 with code/err set (the
 * cell then fails). */
static int model_register(scheduler *s, struct run *r, const json_t *metrics, char *info_text,
                          const char **code, char *err, size_t errlen) {
    if (link(r->part_path, r->final_path) != 0) {
        *code = errno == EEXIST ? "model_exists" : "runtime";
        snprintf(err, errlen, "cannot place the model at %s: %s", r->final_path, strerror(errno));
        return -1;
    }
    store_model m;
    memset(&m, 0, sizeof m);
    m.name = r->model_name;
    m.path = r->final_path;
    m.dataset = r->dataset;
    json_t *params = json_object_get(metrics, "params");
    m.params = json_is_integer(params) ? (int64_t)json_integer_value(params) : -1;
    json_t *acc = json_object_get(metrics, "accuracy");
    m.accuracy = json_is_number(acc) ? json_number_value(acc) : NAN;
    m.info_json = info_text;
    m.owner = r->owner;
    char serr[ERRLEN];
    int rc = store_model_insert(s->st, &m, NULL, serr, sizeof serr);
    if (rc != STORE_OK) {
        unlink(r->final_path);
        *code = rc == STORE_EXISTS ? "model_exists" : "runtime";
        snprintf(err, errlen, "cannot register model %s: %.300s", r->model_name,
                 rc == STORE_EXISTS ? "the name is taken" : serr);
        return -1;
    }
    unlink(r->part_path);
    return 0;
}

static void on_exit_cb(void *user, const executor_outcome *o) {
    scheduler *s = user;
    struct run *r = run_find(s, o->cell_id);
    if (!r) return;
    char err[ERRLEN];
    if (o->status == EXECUTOR_DONE && o->metrics) {
        char *text = json_dumps(o->metrics, JSON_COMPACT);
        const char *code = NULL;
        char msg[ERRLEN] = "";
        if (!text) {
            code = "runtime";
            snprintf(msg, sizeof msg, "out of memory storing the result");
        } else if (r->is_train && model_register(s, r, o->metrics, text, &code, msg, sizeof msg) != 0) {
            /* code and msg set */
        }
        if (!code) {
            int rc = store_cell_finish(s->st, o->cell_id, text, err, sizeof err);
            if (rc == STORE_OK || rc == STORE_NOOP) {
                baseline_record(s, r, o->metrics);
                stats_add(s, &s->stats.done, 1);
                if (r->is_train) stats_add(s, &s->stats.models, 1);
            } else {
                log_msg("cell %lld result: %s", (long long)o->cell_id, err);
            }
        } else {
            store_cell_fail(s->st, o->cell_id, r->attempt, code, msg, o->stderr_tail, 0, NULL,
                            err, sizeof err);
            stats_add(s, &s->stats.failed, 1);
        }
        free(text);
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
static int claim_one(scheduler *s) {
    char err[ERRLEN];
    store_cell c;
    memset(&c, 0, sizeof c);
    int rc = store_cell_claim(s->st, s->lease_owner, s->cfg->owner_running_cap,
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
    snprintf(s->lease_owner, sizeof s->lease_owner, "local:%ld", (long)getpid());
    s->stats.workers = cfg->workers;
    if (!s->engine_bin || !s->models_dir) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
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
