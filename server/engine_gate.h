/* engine_gate.h — the one bounded runner of engine processes on request paths (an upload's
 * `prunelab inspect`, a model's first `prunelab components`): at most `limit` run at once over all
 * request threads (the daemon's `workers`), each `nice_steps` below the daemon like cells, and
 * one run per key at a time (a second request for the same key waits for the first, then reads
 * what it recorded). A request that finds no slot within wait_s is refused as busy, so a burst of
 * requests costs waiting threads, never processes. */
#ifndef PL_SERVER_ENGINE_GATE_H
#define PL_SERVER_ENGINE_GATE_H

#include <stddef.h>

#include "proc.h"

enum {
    GATE_RUN = 0,     /* the caller holds a slot and the key: run, then engine_gate_leave */
    GATE_WAITED = 1,  /* another run of the key ended meanwhile: read its result, enter again if none */
    GATE_BUSY = -1    /* no slot within wait_s */
};

/* Enter the gate for key (NULL = no key, only a slot). */
int engine_gate_enter(const char *key, int limit, double wait_s);
void engine_gate_leave(const char *key);

/* proc_run of argv behind `nice -n nice_steps` (none when 0). The caller holds a slot. */
int engine_gate_run(char *const argv[], int nice_steps, double timeout_s, size_t max_out, proc_result *r, char *err,
                    size_t errlen);

/* Runs in progress now (for tests and /metrics). */
int engine_gate_running(void);

#endif
