/* slurm_cli.h — the Slurm commands the Slurm executor runs, each through proc_run (no shell,
 * bounded in time and output): sbatch of one job array, one batched squeue for many jobs,
 * scontrol show job for jobs that left squeue, batched scancel, and the site's limits from
 * scontrol show config. Output is parsed by slurm_parse.c. A command that fails, times out or
 * prints what cannot be read returns -1 with a message naming the command: to the executor that
 * means "unknown", never a failed cell.
 *
 * Commands are looked up on PATH, or in cli->bin_dir when set (tests point it at fakes). */
#ifndef PL_SLURM_CLI_H
#define PL_SLURM_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "slurm_parse.h"

typedef struct {
    const char *bin_dir;   /* directory of sbatch, squeue, scontrol, scancel; NULL or "" = PATH */
    double timeout_s;      /* per command (default 30 when 0) */
    const char *slurm_conf; /* SLURM_CONF for the commands, NULL = inherited */
} slurm_cli;

/* Longest id list in one squeue or scancel call (the rest go in further calls). */
#define SLURM_CLI_IDS_PER_CALL 256

/* One array submission: tasks 0..n_tasks-1 of script, each task with the same resources. */
typedef struct {
    const char *script;      /* the batch script (its #SBATCH lines are the caller's business) */
    int n_tasks;             /* >= 1, <= the site's MaxArraySize */
    const char *job_name;
    int cpus_per_task;       /* >= 1 */
    long mem_mb;             /* --mem per task, >= 1 */
    int time_min;            /* --time, >= 1 */
    const char *partition;   /* NULL or "": the cluster default */
    const char *account;
    const char *qos;
    const char *log_pattern; /* -o and -e, e.g. DIR/%A_%a.log (appended: --open-mode=append) */
    const char *workdir;     /* --chdir */
    int signal_lead_s;       /* --signal=B:USR2@N so a preempted or timed-out task ends cleanly; 0 = none */
    const char *extra_args;  /* the site's own sbatch flags, split at spaces (no quoting) */
} slurm_submit;

/* The sbatch argv for s (argv[0] "sbatch", NULL-terminated) into argv (capacity max), with string
 * storage in buf (len). Returns the argument count, or -1 with err (a field out of range, a flag
 * of extra_args that the executor sets itself, too many arguments). */
int slurm_submit_argv(const slurm_submit *s, const char **argv, int max, char *buf, size_t len, char *err,
                      size_t errlen);

/* Submit; 0 with *job_id (the array's job id), or -1 with err (sbatch's stderr in it). */
int slurm_cli_submit(const slurm_cli *cli, const slurm_submit *s, int64_t *job_id, char *err, size_t errlen);

/* Every task squeue lists for job_ids (n of them; batched SLURM_CLI_IDS_PER_CALL at a time),
 * through fn as slurm_parse_squeue does (non-zero from fn stops), at most max_tasks in all.
 * Returns the task count, or -1 with err. An id Slurm no longer knows is simply not listed. */
int slurm_cli_squeue(const slurm_cli *cli, const int64_t *job_ids, int n, long max_tasks,
                     int (*fn)(void *user, const slurm_task *t), void *user, char *err, size_t errlen);

/* scontrol show job of one job or array task ("123" or "123_4"): 0 with *info, 1 when Slurm no
 * longer knows it (MinJobAge passed), -1 with err. */
int slurm_cli_show_job(const slurm_cli *cli, int64_t job_id, int task, slurm_job_info *info, char *err,
                       size_t errlen);

/* scancel of every id (batched; array tasks as JOB_TASK when task >= 0, tasks may be NULL).
 * 0, or -1 with err. */
int slurm_cli_cancel(const slurm_cli *cli, const int64_t *job_ids, const int *tasks, int n, char *err,
                     size_t errlen);

/* The site's MaxArraySize (the largest task index + 1) and MaxJobCount from scontrol show config;
 * a key it does not print is left as given. 0, or -1 with err. */
int slurm_cli_limits(const slurm_cli *cli, long *max_array_size, long *max_job_count, char *err, size_t errlen);

#endif
