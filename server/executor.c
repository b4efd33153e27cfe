/* executor.c — what every executor shares: the outcome names, the clock, the default
 * configuration, the registry that picks an implementation by its configured name ("local";
 * a new executor is one row in EXECUTORS) and the dispatch through its ops table. */
#include "executor.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

typedef executor *(*executor_init_fn)(const executor_config *cfg, const executor_callbacks *cb, char *err,
                                      size_t errlen);

static const struct {
    const char *name;
    executor_init_fn init;
} EXECUTORS[] = {
    {"local", executor_local_init},
};
#define N_EXECUTORS (sizeof EXECUTORS / sizeof EXECUTORS[0])

int executor_known(const char *name)
{
    for (size_t i = 0; i < N_EXECUTORS; i++)
        if (name && strcmp(name, EXECUTORS[i].name) == 0) return 1;
    return 0;
}

void executor_names(char *buf, size_t len)
{
    size_t used = 0;
    if (len) buf[0] = '\0';
    for (size_t i = 0; i < N_EXECUTORS && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", EXECUTORS[i].name);
}

executor *executor_new(const char *name, const executor_config *cfg, const executor_callbacks *cb, char *err,
                       size_t errlen)
{
    for (size_t i = 0; i < N_EXECUTORS; i++)
        if (name && strcmp(name, EXECUTORS[i].name) == 0) return EXECUTORS[i].init(cfg, cb, err, errlen);
    char names[128];
    executor_names(names, sizeof names);
    if (err && errlen) snprintf(err, errlen, "unknown executor '%s' (available: %s)", name ? name : "", names);
    return NULL;
}

static const char *const status_names[] = {"done", "failed", "died", "cancelled"};
_Static_assert(sizeof status_names / sizeof status_names[0] == EXECUTOR_STATUS_COUNT,
               "status_names must match executor_status");

const char *executor_status_name(executor_status s)
{
    return (unsigned)s < EXECUTOR_STATUS_COUNT ? status_names[s] : "?";
}

double executor_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void executor_config_default(executor_config *c)
{
    memset(c, 0, sizeof *c);
    c->grace_s = 5.0;
    c->hang_s = 120.0;
    c->max_line = (size_t)1 << 20;
    c->stderr_tail = 8192;
    c->subreaper = 1;
}

/* ------------------------------------------------------------------ public dispatch */

int executor_start(executor *ex, const executor_request *req, char *err, size_t errlen)
{
    return ex->ops->start(ex, req, err, errlen);
}

int executor_poll(executor *ex, int timeout_ms)
{
    return ex->ops->poll(ex, timeout_ms);
}

int executor_cancel(executor *ex, int64_t cell_id)
{
    return ex->ops->cancel(ex, cell_id);
}

int executor_kill_all(executor *ex, double grace_s)
{
    return ex->ops->kill_all(ex, grace_s);
}

int executor_info(executor *ex, int64_t cell_id, executor_cell_info *out)
{
    return ex->ops->info(ex, cell_id, out);
}

int executor_list(executor *ex, executor_cell_info *out, int max)
{
    return ex->ops->list(ex, out, max);
}

int executor_running(executor *ex)
{
    return ex->ops->list(ex, NULL, 0);
}

void executor_wake(executor *ex)
{
    ex->ops->wake(ex);
}

void executor_free(executor *ex)
{
    if (ex) ex->ops->free(ex);
}
