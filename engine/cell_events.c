/* cell_events.c — the cell's event writer (cell_internal.h): progress lines with the overall
 * estimate from the phase plan, the heartbeat thread that repeats the last line while the work is
 * silent, the one final result / error event, and the SIGTERM (SIGINT, SIGUSR2) guard of the
 * output model.
 * The writer's state lives in one cell_ctx, guarded by its mutex; the heartbeat thread only
 * writes under that mutex. The guard's paths are static (a signal handler reads them). */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cell_internal.h"
#include "util.h"

/* ================================================================== events */


static void write_line(cell_ctx *c, json_t *ev)
{
    char *text = json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (text) {
        fputs(text, c->out);
        fputc('\n', c->out);
        fflush(c->out);
        free(text);
    }
    c->last_emit = pl_now();
}

static void *ticker_main(void *arg)
{
    cell_ctx *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        double now = pl_now();
        if (c->last && now - c->last_emit >= CELL_HEARTBEAT_S) {
            json_object_set_new(c->last, "elapsed_s", json_real(round((now - c->t0) * 1000.0) / 1000.0));
            json_object_set_new(c->last, "heartbeat", json_true());
            write_line(c, c->last);
            json_object_del(c->last, "heartbeat");
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

void cell_ctx_init(cell_ctx *c, FILE *out)
{
    memset(c, 0, sizeof *c);
    c->out = out;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->t0 = c->last_emit = pl_now();
    c->ticker_on = pthread_create(&c->ticker, NULL, ticker_main, c) == 0;
}

static void ctx_stop(cell_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->ticker_on) pthread_join(c->ticker, NULL);
    c->ticker_on = 0;
}

void cell_ctx_free(cell_ctx *c)
{
    ctx_stop(c);
    json_decref(c->last);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

void cell_plan_add(cell_ctx *c, const char *name, double weight)
{
    if (c->n_plan < CELL_MAX_PHASES) {
        c->plan[c->n_plan].name = name;
        c->plan[c->n_plan].weight = weight;
        c->n_plan++;
    }
}

/* Estimated progress of the whole cell at fraction f of phase `phase` (monotone). */
static double plan_overall(cell_ctx *c, const char *phase, double f)
{
    double total = 0.0, before = 0.0, w = 0.0;
    int found = 0;
    for (int i = 0; i < c->n_plan; i++) {
        total += c->plan[i].weight;
        if (!found && strcmp(c->plan[i].name, phase) == 0) {
            found = 1;
            w = c->plan[i].weight;
        } else if (!found) {
            before += c->plan[i].weight;
        }
    }
    double o = found && total > 0 ? (before + w * f) / total : c->overall;
    if (o < c->overall) o = c->overall;
    if (o > 1.0) o = 1.0;
    c->overall = o;
    return o;
}

/* A progress event for phase at fraction f; extra (stolen, may be NULL) adds fields. Written at
 * a phase change, when force is set, or when the last line is CELL_PROGRESS_MIN_S old;
 * otherwise kept as the heartbeat's next line. */
void cell_progress_ex(cell_ctx *c, const char *phase, double f, const char *plan_phase, double plan_f,
                        json_t *extra, int force)
{
    if (!(f >= 0.0)) f = 0.0;
    if (f > 1.0) f = 1.0;
    pthread_mutex_lock(&c->mu);
    if (c->final_sent) {
        pthread_mutex_unlock(&c->mu);
        json_decref(extra);
        return;
    }
    double now = pl_now();
    json_t *ev = json_object();
    json_object_set_new(ev, "event", json_string("progress"));
    json_object_set_new(ev, "phase", json_string(phase));
    json_object_set_new(ev, "fraction", json_real(round(f * 1e4) / 1e4));
    if (!(plan_f >= 0.0)) plan_f = 0.0;
    if (plan_f > 1.0) plan_f = 1.0;
    json_object_set_new(ev, "overall", json_real(round(plan_overall(c, plan_phase, plan_f) * 1e4) / 1e4));
    json_object_set_new(ev, "elapsed_s", json_real(round((now - c->t0) * 1000.0) / 1000.0));
    if (extra) {
        json_object_update(ev, extra);
        json_decref(extra);
    }
    int changed = strcmp(c->phase, phase) != 0;
    if (force || changed || now - c->last_emit >= CELL_PROGRESS_MIN_S) write_line(c, ev);
    snprintf(c->phase, sizeof c->phase, "%s", phase);
    json_decref(c->last);
    c->last = ev;
    pthread_mutex_unlock(&c->mu);
}

void cell_progress(cell_ctx *c, const char *phase, double f, json_t *extra, int force)
{
    cell_progress_ex(c, phase, f, phase, f, extra, force);
}

/* The one final event (result or error); stops the heartbeat first. */
void cell_emit_final(cell_ctx *c, json_t *ev)
{
    ctx_stop(c);
    pthread_mutex_lock(&c->mu);
    if (!c->final_sent) write_line(c, ev);
    c->final_sent = 1;
    pthread_mutex_unlock(&c->mu);
}

json_t *cell_error_event(cell_error code, const char *message)
{
    json_t *ev = json_object();
    json_object_set_new(ev, "event", json_string("error"));
    json_object_set_new(ev, "code", json_string(cell_error_code(code)));
    json_object_set_new(ev, "message", json_string(message ? message : ""));
    return ev;
}

int cell_emit_error(FILE *out, cell_error code, const char *message)
{
    if (code == CELL_OK) code = CELL_ERR_RUNTIME;
    json_t *ev = cell_error_event(code, message);
    char *text = json_dumps(ev, JSON_COMPACT);
    if (text) fprintf(out, "%s\n", text);
    fflush(out);
    free(text);
    json_decref(ev);
    return cell_error_exit(code);
}

/* ================================================================== SIGTERM guard */

static char g_tmp_path[4200];
static char g_out_path[4096];
static volatile sig_atomic_t g_guard_on, g_out_written;

static void on_term(int sig)
{
    if (g_guard_on) {
        unlink(g_tmp_path);
        if (g_out_written) unlink(g_out_path);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void cell_guard_output(const char *out)
{
    g_guard_on = 0;
    g_out_written = 0;
    if (out && strlen(out) < sizeof g_out_path) {
        snprintf(g_out_path, sizeof g_out_path, "%s", out);
        snprintf(g_tmp_path, sizeof g_tmp_path, "%s.tmp.%ld", out, (long)getpid());
        g_guard_on = 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* SIGUSR2: what a Slurm batch script forwards ahead of preemption or the time limit
     * (sbatch --signal=B:USR2@N); handled here even when the parent left it ignored */
    sigaction(SIGUSR2, &sa, NULL);
}

void cell_guard_release(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);
    g_guard_on = 0;
    g_out_written = 0;
}


void cell_guard_out_written(void) { g_out_written = 1; }

void cell_measure_progress(void *user, const char *phase, double fraction, long done, long total)
{
    json_t *extra = NULL;
    if (total > 0)
        extra = done < 0 ? json_pack("{s:I}", "samples", (json_int_t)total)
                         : json_pack("{s:I,s:I}", "samples", (json_int_t)total, "done", (json_int_t)done);
    cell_progress(user, phase, fraction, extra, done < 0);
}
