/* engine_gate.c — the bounded runner of engine processes on request paths (engine_gate.h).
 *
 * One mutex and one condition variable guard a slot count and the keys being run (at most
 * GATE_MAX_KEYS: one per slot). A caller waits on the condition, with a deadline, while every
 * slot is taken or its key is being run; a key's run ending wakes every waiter, and those of the
 * same key return GATE_WAITED to read the cache first. Niceness comes from `nice -n`, so the
 * request thread's own priority is never touched. */
#include "engine_gate.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define GATE_MAX_KEYS 64
#define GATE_KEY_LEN 256

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_running;
static char g_keys[GATE_MAX_KEYS][GATE_KEY_LEN]; /* "" = free */

static int key_index(const char *key)
{
    for (int i = 0; i < GATE_MAX_KEYS; i++)
        if (g_keys[i][0] && strcmp(g_keys[i], key) == 0) return i;
    return -1;
}

static void key_take(const char *key)
{
    for (int i = 0; i < GATE_MAX_KEYS; i++)
        if (!g_keys[i][0]) {
            snprintf(g_keys[i], GATE_KEY_LEN, "%s", key);
            return;
        }
}

int engine_gate_enter(const char *key, int limit, double wait_s)
{
    if (limit < 1) limit = 1;
    if (limit > GATE_MAX_KEYS) limit = GATE_MAX_KEYS;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)wait_s;
    until.tv_nsec += (long)((wait_s - (double)(time_t)wait_s) * 1e9);
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    int rc = GATE_RUN, waited_on_key = 0;
    pthread_mutex_lock(&g_mu);
    for (;;) {
        int busy_key = key && key_index(key) >= 0;
        if (!busy_key && waited_on_key) {
            rc = GATE_WAITED;
            break;
        }
        if (!busy_key && g_running < limit) {
            g_running++;
            if (key) key_take(key);
            break;
        }
        waited_on_key |= busy_key;
        if (pthread_cond_timedwait(&g_cv, &g_mu, &until) == ETIMEDOUT) {
            rc = GATE_BUSY;
            break;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void engine_gate_leave(const char *key)
{
    pthread_mutex_lock(&g_mu);
    if (g_running > 0) g_running--;
    int i = key ? key_index(key) : -1;
    if (i >= 0) g_keys[i][0] = '\0';
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

int engine_gate_running(void)
{
    pthread_mutex_lock(&g_mu);
    int n = g_running;
    pthread_mutex_unlock(&g_mu);
    return n;
}

int engine_gate_run(char *const argv[], int nice_steps, double timeout_s, size_t max_out, proc_result *r, char *err,
                    size_t errlen)
{
    if (nice_steps <= 0) return proc_run(argv, timeout_s, max_out, r, err, errlen);
    char steps[16];
    snprintf(steps, sizeof steps, "%d", nice_steps > 19 ? 19 : nice_steps);
    char *nargv[64] = {"nice", "-n", steps};
    int n = 3;
    for (int i = 0; argv[i] && n < 63; i++) nargv[n++] = argv[i];
    nargv[n] = NULL;
    return proc_run(nargv, timeout_s, max_out, r, err, errlen);
}
