/* slurm_parse.h — what Slurm's commands print, parsed for the Slurm executor: `sbatch --parsable`,
 * `squeue --noheader --format=%i|%T`, `scontrol --oneliner show job` and `scontrol show config`.
 * Pure functions over the text a command printed: no processes, no I/O, no allocation beyond the
 * caller's buffers. Input is treated as untrusted (a wrapper script may print anything): every
 * number is range-checked, every field bounded, array ranges expand to at most a caller-given
 * count. Job identity never comes from here alone (the executor maps array index -> cell through
 * its own manifest); these parsers only say which (job, task) pairs Slurm reports and in what state.
 *
 * Array task ids in squeue's %i: "123" (not an array), "123_4" (one task), "123_[5-9,11,20-30:2]"
 * (pending tasks not yet split out, with an optional step), and an optional throttle "%4" inside
 * the brackets, which is ignored. Slurm's job and task ids are below 2^32 and 4e6. */
#ifndef PL_SLURM_PARSE_H
#define PL_SLURM_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define SLURM_STATE_LEN 24

/* Where a Slurm job state leaves a cell. */
typedef enum {
    SLURM_PENDING,   /* PENDING, CONFIGURING, REQUEUED, REQUEUE_HOLD, REQUEUE_FED, RESV_DEL_HOLD,
                      * SUSPENDED, STOPPED, RESIZING, SIGNALING, STAGE_OUT */
    SLURM_RUNNING,   /* RUNNING, COMPLETING */
    SLURM_COMPLETED, /* COMPLETED: the result file says whether the cell is done */
    SLURM_FAILED,    /* FAILED, NODE_FAIL, TIMEOUT, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE, PREEMPTED,
                      * SPECIAL_EXIT, REVOKED */
    SLURM_CANCELLED, /* CANCELLED (a trailing " by UID" is accepted) */
    SLURM_UNKNOWN    /* anything else: never a reason to fail a cell */
} slurm_state;

/* The state of a state name, case-sensitive as Slurm prints it; SLURM_UNKNOWN otherwise. */
slurm_state slurm_state_of(const char *name);
/* "pending", "running", "completed", "failed", "cancelled", "unknown". */
const char *slurm_state_name(slurm_state s);

/* `sbatch --parsable` printed "JOBID" or "JOBID;CLUSTER" and a newline (surrounding blank lines
 * and spaces accepted). 0 with *job_id set, or -1. */
int slurm_parse_sbatch(const char *out, int64_t *job_id);

/* One task as squeue lists it: task -1 when the job is not an array. */
typedef struct {
    int64_t job_id;
    int task;
    slurm_state state;
    char state_name[SLURM_STATE_LEN];
} slurm_task;

/* Every task of `squeue --noheader --format=%i|%T` output, ranges expanded: fn is called once per
 * task, in the order printed (fn returning non-zero stops the walk there). At most max_tasks
 * tasks in total (a range beyond that is an error, not a silent cut). Returns the number of tasks
 * given to fn (>= 0), or -1 with err set for a malformed line (the walk stops at it: a query that
 * cannot be read makes its cells "unknown", never failed). */
int slurm_parse_squeue(const char *out, long max_tasks, int (*fn)(void *user, const slurm_task *t), void *user,
                       char *err, size_t errlen);

/* One record of `scontrol --oneliner show job` (one line, space-separated Key=Value fields). */
typedef struct {
    int64_t job_id;       /* JobId */
    int64_t array_job_id; /* ArrayJobId, 0 when not an array */
    int task_lo, task_hi; /* ArrayTaskId as a range (a single task: lo == hi), -1 when absent */
    slurm_state state;    /* JobState */
    char state_name[SLURM_STATE_LEN];
    char reason[64];      /* Reason, "" when absent or None */
    int exit_code;        /* ExitCode a:b -> a; -1 when absent */
    int exit_signal;      /* ... -> b; -1 when absent */
} slurm_job_info;

/* 0 with *info filled (JobId and JobState are required), or -1 with err set. */
int slurm_parse_scontrol_job(const char *line, slurm_job_info *info, char *err, size_t errlen);

/* The value of KEY in `scontrol show config` output ("Key  = value" lines), trimmed, into val.
 * 0 when found (truncated values are an error: -1), 1 when the key is absent. */
int slurm_config_value(const char *out, const char *key, char *val, size_t vlen);

#endif
