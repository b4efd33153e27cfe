/* jobs.c — the job service (see jobs.h): the business rules of submitting, cancelling,
 * retrying and deleting jobs, between the HTTP handlers (api_jobs.c) and the store (all SQL).
 *
 * Submission order (each step can refuse): Idempotency-Key syntax, the model named by the spec
 * (looked up so that validation knows its dataset, layers and dims), validation and expansion
 * into cells (jobspec.c), name clash of a train job's output model, then the store write. */
#include "jobs.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "jobspec.h"
#include "scheduler.h"

int jobs_error_set(jobs_error *e, int status, const char *code, const char *field, const char *fmt, ...)
{
    e->status = status;
    snprintf(e->code, sizeof e->code, "%s", code);
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

int jobs_error_store(jobs_error *e, int rc, const char *what, const char *err)
{
    const char *detail = err && *err ? err : NULL;
    switch (rc) {
    case STORE_NOTFOUND: return jobs_error_set(e, 404, "not_found", NULL, "%s not found", what);
    case STORE_CONFLICT: return jobs_error_set(e, 409, "conflict", NULL, "%s: %s", what, detail ? detail : "conflict");
    case STORE_INVALID: return jobs_error_set(e, 400, "invalid", NULL, "%s: %s", what, detail ? detail : "invalid");
    default: return jobs_error_set(e, 500, "internal", NULL, "%s: %s", what, detail ? detail : "store error");
    }
}

static int idem_key_valid(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 200) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e) return 0;
    return 1;
}

/* The model the spec names, if any and well-formed: 1 with *m filled (free it), 0 when the spec
 * names none (validation then reports it), -1 with *e. */
static int submit_model(const jobs_env *env, json_t *body, store_model *m, jobs_error *e)
{
    char err[256] = "";
    const char *mname = jobspec_model_name(body);
    if (!mname || !store_name_valid(mname)) return 0;
    int src = store_model_get(env->st, mname, m, err, sizeof err);
    if (src == STORE_NOTFOUND)
        return jobs_error_set(e, 404, "unknown_model", "model", "model: no model named '%s'", mname);
    if (src != STORE_OK) return jobs_error_store(e, src, "model", err);
    return 1;
}

/* Expand body against the model's limits; refuse a train job whose output name is taken. */
static int submit_expand(const jobs_env *env, json_t *body, const store_model *m, jobspec *js, jobs_error *e)
{
    jobspec_limits lim = {m ? m->dataset : NULL, m ? jobspec_info_layers(m->info_json) : 0,
                          env->cfg ? env->cfg->max_cells_per_job : 0, m ? m->info_json : NULL,
                          env->cfg ? env->cfg->max_cell_memory : 0, env->cfg ? env->cfg->threads_per_cell : 1};
    jobspec_error je;
    if (jobspec_expand(body, &lim, js, &je) != 0)
        return jobs_error_set(e, strcmp(je.code, "internal") == 0 ? 500 : 400, je.code, je.field, "%s", je.message);
    if (js->out) {
        store_model other;
        char err[256] = "";
        if (store_model_get(env->st, js->out, &other, err, sizeof err) == STORE_OK) {
            store_model_free(&other);
            return jobs_error_set(e, 409, "model_exists", "name", "name: a model named '%s' already exists", js->out);
        }
    }
    return 0;
}

/* Store the expanded job; STORE_EXISTS (same Idempotency-Key, same body) is a replay. */
static int submit_store(const jobs_env *env, const store_user *u, const jobspec *js, const char *idem,
                        jobs_submitted *out, jobs_error *e)
{
    char err[256] = "";
    store_job_new nj = {
        .owner = u->name,
        .type = js->type,
        .spec_json = js->spec_json,
        .model = js->model,
        .out_model = js->out,
        .priority = js->priority,
        .idem_key = idem,
        .max_attempts = env->cfg ? env->cfg->max_attempts : 0,
        .baseline_json = NULL,
        .cell_specs = (const char *const *)js->cells,
        .n_cells = js->n_cells,
    };
    int src = store_job_create(env->st, &nj, &out->id, err, sizeof err);
    if (src == STORE_CONFLICT)
        return jobs_error_set(e, 409, "idempotency_conflict", "Idempotency-Key",
                              "Idempotency-Key '%s' already names job %" PRId64 " with a different body", idem,
                              out->id);
    if (src == STORE_NOTFOUND) /* deleted since submit_model looked */
        return jobs_error_set(e, 404, "unknown_model", "model", "%s", err);
    if (src == STORE_TAKEN) return jobs_error_set(e, 409, "model_exists", "name", "%s", err);
    if (src != STORE_OK && src != STORE_EXISTS) return jobs_error_store(e, src, "job", err);
    out->replayed = src == STORE_EXISTS;
    out->state = STORE_STATE_QUEUED;
    store_job j;
    if (out->replayed && store_job_get(env->st, out->id, &j, err, sizeof err) == STORE_OK) {
        out->state = j.state;
        store_job_free(&j);
    }
    if (src == STORE_OK && env->sched) scheduler_wake(env->sched);
    return 0;
}

int jobs_submit(const jobs_env *env, const store_user *u, json_t *body, const char *idem, int dry,
                jobs_submitted *out, jobs_error *e)
{
    store_model m;
    memset(&m, 0, sizeof m);
    jobspec js;
    memset(&js, 0, sizeof js);
    memset(out, 0, sizeof *out);
    if (idem && !idem_key_valid(idem))
        return jobs_error_set(e, 400, "invalid_value", "Idempotency-Key",
                              "Idempotency-Key must be 1 to 200 printable ASCII characters");
    int have_model = submit_model(env, body, &m, e);
    if (have_model < 0) return -1;
    int rc = submit_expand(env, body, have_model ? &m : NULL, &js, e);
    if (rc == 0) {
        out->n_cells = (int64_t)js.n_cells;
        out->type = js.type;
        if (!dry) rc = submit_store(env, u, &js, idem, out, e);
    }
    jobspec_free(&js);
    if (have_model) store_model_free(&m);
    return rc;
}

/* Load job id for a change by u (its owner or an admin). Returns 0 with *j (free it) or -1. */
static int job_for_change(const jobs_env *env, const store_user *u, int64_t id, store_job *j, char *what,
                          size_t whatlen, jobs_error *e)
{
    char err[256] = "";
    memset(j, 0, sizeof *j);
    snprintf(what, whatlen, "job %" PRId64, id);
    int rc = store_job_get(env->st, id, j, err, sizeof err);
    if (rc != STORE_OK) return jobs_error_store(e, rc, what, err);
    if (!auth_may_change(u, j->owner)) {
        jobs_error_set(e, 403, "forbidden", NULL, "only the owner of %s (%s) or an admin may do this", what,
                       j->owner ? j->owner : "?");
        store_job_free(j);
        return -1;
    }
    return 0;
}

int jobs_cancel(const jobs_env *env, const store_user *u, int64_t id, int *n_signalled, jobs_error *e)
{
    store_job j;
    store_running *running = NULL;
    size_t n_running = 0;
    char err[256] = "", what[64];
    if (job_for_change(env, u, id, &j, what, sizeof what, e) < 0) return -1;
    int rc = 0, src = store_job_cancel(env->st, id, &running, &n_running, err, sizeof err);
    if (src == STORE_NOOP)
        rc = jobs_error_set(e, 409, "not_cancellable", NULL, "%s is already %s", what, store_state_name(j.state));
    else if (src != STORE_OK)
        rc = jobs_error_store(e, src, what, err);
    else if (env->sched)
        scheduler_cancel_job(env->sched, id);
    *n_signalled = (int)n_running;
    store_running_free(running, n_running);
    store_job_free(&j);
    return rc;
}

int jobs_retry(const jobs_env *env, const store_user *u, int64_t id, int *n_requeued, jobs_error *e)
{
    store_job j;
    char err[256] = "", what[64];
    *n_requeued = 0;
    if (job_for_change(env, u, id, &j, what, sizeof what, e) < 0) return -1;
    store_job_free(&j);
    int src = store_job_retry_failed(env->st, id, n_requeued, err, sizeof err);
    if (src == STORE_NOOP) return jobs_error_set(e, 409, "nothing_to_retry", NULL, "%s has no failed cells", what);
    if (src != STORE_OK) return jobs_error_store(e, src, what, err);
    if (env->sched) scheduler_wake(env->sched);
    return 0;
}

int jobs_delete(const jobs_env *env, const store_user *u, int64_t id, jobs_error *e)
{
    store_job j;
    char err[256] = "", what[64];
    if (job_for_change(env, u, id, &j, what, sizeof what, e) < 0) return -1;
    store_job_free(&j);
    int src = store_job_delete(env->st, id, err, sizeof err);
    if (src == STORE_CONFLICT)
        return jobs_error_set(e, 409, "job_running", NULL, "%s has running cells; cancel it first", what);
    if (src != STORE_OK) return jobs_error_store(e, src, what, err);
    return 0;
}
