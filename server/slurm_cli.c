/* slurm_cli.c — running sbatch, squeue, scontrol and scancel for the Slurm executor
 * (slurm_cli.h).
 *
 * Design: every command is one proc_run (argv, no shell, its own process group, killed at the
 * time limit, stdout and stderr capped at SLURM_CLI_MAX_OUT); SLURM_CONF, when configured, is
 * passed through env(1) so the daemon's own environment is never changed. argv strings live in
 * caller-sized buffers; nothing here keeps state between calls. */
#include "slurm_cli.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"
#include "proc.h"

#define SLURM_CLI_MAX_OUT ((size_t)4 << 20) /* stdout of one squeue over 256 arrays fits easily */
/* arguments of one command: a batched scancel's ids and a few flags, or an sbatch line */
#define SLURM_CLI_MAX_ARGS (SLURM_CLI_IDS_PER_CALL + 16)
#define SLURM_CLI_ARGBUF 8192

/* Flags the executor sets itself: extra_args may not change them. */
static const char *const OWN_FLAGS[] = {"--array", "-a", "--parsable", "--output", "-o", "--error", "-e",
                                        "--open-mode", "--job-name", "-J", "--chdir", "-D", "--wrap"};

/* Appends s to buf at *used, NUL-terminated; returns its copy or NULL when it does not fit. */
static const char *put(char *buf, size_t len, size_t *used, const char *s)
{
    size_t n = strlen(s) + 1;
    if (*used + n > len) return NULL;
    memcpy(buf + *used, s, n);
    const char *p = buf + *used;
    *used += n;
    return p;
}

static int add(const char **argv, int *argc, int max, char *buf, size_t len, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static int add(const char **argv, int *argc, int max, char *buf, size_t len, size_t *used, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp || *argc + 1 >= max) return -1;
    const char *p = put(buf, len, used, tmp);
    if (!p) return -1;
    argv[(*argc)++] = p;
    argv[*argc] = NULL;
    return 0;
}

static int set(const char *s) { return s && *s; }

int slurm_submit_argv(const slurm_submit *s, const char **argv, int max, char *buf, size_t len, char *err,
                      size_t errlen)
{
    if (!s || !argv || max < 2 || !buf) return errbuf_set(err, errlen, "no submission");
    if (!set(s->script)) return errbuf_set(err, errlen, "no batch script");
    if (s->n_tasks < 1 || s->n_tasks > 4000001) return errbuf_set(err, errlen, "array of %d tasks", s->n_tasks);
    if (s->cpus_per_task < 1 || s->cpus_per_task > 4096) return errbuf_set(err, errlen, "bad cpus_per_task");
    if (s->mem_mb < 1 || s->mem_mb > (1L << 30)) return errbuf_set(err, errlen, "bad mem_mb");
    if (s->time_min < 1 || s->time_min > 1000000) return errbuf_set(err, errlen, "bad time limit");
    if (s->signal_lead_s < 0 || s->signal_lead_s > 65535) return errbuf_set(err, errlen, "bad signal lead");
    size_t used = 0;
    int argc = 0;
    argv[0] = NULL;
#define ADD(...)                                                                                                  \
    do {                                                                                                          \
        if (add(argv, &argc, max, buf, len, &used, __VA_ARGS__) != 0)                                             \
            return errbuf_set(err, errlen, "sbatch command line too long");                                       \
    } while (0)
    ADD("sbatch");
    ADD("--parsable");
    ADD("--array=0-%d", s->n_tasks - 1);
    ADD("--job-name=%s", set(s->job_name) ? s->job_name : "prunelab");
    ADD("--cpus-per-task=%d", s->cpus_per_task);
    ADD("--mem=%ldM", s->mem_mb);
    ADD("--time=%d", s->time_min);
    ADD("--requeue");
    ADD("--open-mode=append");
    if (s->signal_lead_s > 0) ADD("--signal=B:USR2@%d", s->signal_lead_s);
    if (set(s->log_pattern)) {
        ADD("--output=%s", s->log_pattern);
        ADD("--error=%s", s->log_pattern);
    }
    if (set(s->workdir)) ADD("--chdir=%s", s->workdir);
    if (set(s->partition)) ADD("--partition=%s", s->partition);
    if (set(s->account)) ADD("--account=%s", s->account);
    if (set(s->qos)) ADD("--qos=%s", s->qos);
    if (set(s->extra_args)) {
        const char *p = s->extra_args;
        while (*p) {
            while (*p == ' ' || *p == '\t') p++;
            if (!*p) break;
            const char *e = p;
            while (*e && *e != ' ' && *e != '\t') e++;
            char word[512];
            if ((size_t)(e - p) >= sizeof word) return errbuf_set(err, errlen, "slurm_args: an argument is too long");
            memcpy(word, p, (size_t)(e - p));
            word[e - p] = '\0';
            size_t k = strcspn(word, "=");
            for (size_t i = 0; i < sizeof OWN_FLAGS / sizeof OWN_FLAGS[0]; i++)
                if (strlen(OWN_FLAGS[i]) == k && strncmp(word, OWN_FLAGS[i], k) == 0)
                    return errbuf_set(err, errlen, "slurm_args may not set %s (the executor sets it)", OWN_FLAGS[i]);
            if (word[0] != '-') return errbuf_set(err, errlen, "slurm_args: \"%s\" is not a flag", word);
            ADD("%s", word);
            p = e;
        }
    }
    ADD("%s", s->script);
#undef ADD
    return argc;
}

/* Run cmd (argv[0] a command name) with the cli's directory and SLURM_CONF. 0 with *r when it
 * ran and exited 0; -1 with err naming the command and its stderr otherwise (r freed). */
static int run(const slurm_cli *cli, const char *const *argv, proc_result *r, char *err, size_t errlen)
{
    const char *full[SLURM_CLI_MAX_ARGS + 4];
    char path[1024], conf[1100];
    int k = 0;
    if (set(cli->slurm_conf)) {
        if (snprintf(conf, sizeof conf, "SLURM_CONF=%s", cli->slurm_conf) >= (int)sizeof conf)
            return errbuf_set(err, errlen, "slurm_conf path too long");
        full[k++] = "env";
        full[k++] = conf;
    }
    if (set(cli->bin_dir)) {
        if (snprintf(path, sizeof path, "%s/%s", cli->bin_dir, argv[0]) >= (int)sizeof path)
            return errbuf_set(err, errlen, "Slurm command path too long");
        full[k++] = path;
    } else {
        full[k++] = argv[0];
    }
    for (int i = 1; argv[i]; i++) {
        if (k >= SLURM_CLI_MAX_ARGS + 2) return errbuf_set(err, errlen, "%s: too many arguments", argv[0]);
        full[k++] = argv[i];
    }
    full[k] = NULL;
    memset(r, 0, sizeof *r);
    char perr[256];
    if (proc_run((char *const *)full, cli->timeout_s > 0 ? cli->timeout_s : 30.0, SLURM_CLI_MAX_OUT, r, perr,
                 sizeof perr) != 0)
        return errbuf_set(err, errlen, "%s: %s", argv[0], perr);
    if (r->status == 0) return 0;
    const char *e = r->err ? r->err : "";
    size_t n = strlen(e);
    while (n > 0 && (e[n - 1] == '\n' || e[n - 1] == ' ')) n--;
    if (r->status == -2)
        errbuf_set(err, errlen, "%s did not answer within %.0f s", argv[0], cli->timeout_s > 0 ? cli->timeout_s : 30.0);
    else
        errbuf_set(err, errlen, "%s exited with status %d: %.*s", argv[0], r->status, (int)(n > 300 ? 300 : n), e);
    proc_result_free(r);
    return -1;
}

int slurm_cli_submit(const slurm_cli *cli, const slurm_submit *s, int64_t *job_id, char *err, size_t errlen)
{
    const char *argv[SLURM_CLI_MAX_ARGS];
    char buf[SLURM_CLI_ARGBUF];
    if (slurm_submit_argv(s, argv, SLURM_CLI_MAX_ARGS, buf, sizeof buf, err, errlen) < 0) return -1;
    proc_result r;
    if (run(cli, argv, &r, err, errlen) != 0) return -1;
    int rc = slurm_parse_sbatch(r.out, job_id);
    if (rc != 0) errbuf_set(err, errlen, "sbatch printed no job id: \"%.80s\"", r.out ? r.out : "");
    proc_result_free(&r);
    return rc;
}

/* "--jobs=A,B,..." (or "A_t,B_t" for tasks) for ids [i0, i1) into buf. */
static int id_list(char *buf, size_t len, const char *prefix, const int64_t *ids, const int *tasks, int i0, int i1)
{
    size_t used = (size_t)snprintf(buf, len, "%s", prefix);
    for (int i = i0; i < i1 && used < len; i++) {
        int n = tasks && tasks[i] >= 0
                    ? snprintf(buf + used, len - used, "%s%" PRId64 "_%d", i > i0 ? "," : "", ids[i], tasks[i])
                    : snprintf(buf + used, len - used, "%s%" PRId64, i > i0 ? "," : "", ids[i]);
        if (n < 0 || (size_t)n >= len - used) return -1;
        used += (size_t)n;
    }
    return used < len ? 0 : -1;
}

/* fn, remembering whether it asked to stop (so later batches are not queried). */
struct stop_watch {
    int (*fn)(void *user, const slurm_task *t);
    void *user;
    int stopped;
};

static int watch(void *user, const slurm_task *t)
{
    struct stop_watch *w = user;
    return (w->stopped = w->fn(w->user, t) != 0);
}

int slurm_cli_squeue(const slurm_cli *cli, const int64_t *job_ids, int n, long max_tasks,
                     int (*fn)(void *user, const slurm_task *t), void *user, char *err, size_t errlen)
{
    long total = 0;
    for (int i0 = 0; i0 < n; i0 += SLURM_CLI_IDS_PER_CALL) {
        int i1 = n - i0 < SLURM_CLI_IDS_PER_CALL ? n : i0 + SLURM_CLI_IDS_PER_CALL;
        char ids[SLURM_CLI_IDS_PER_CALL * 24 + 16];
        if (id_list(ids, sizeof ids, "--jobs=", job_ids, NULL, i0, i1) != 0)
            return errbuf_set(err, errlen, "squeue id list too long");
        /* --array: one line per task; without it pending tasks come as one ranged line (parsed too) */
        const char *argv[] = {"squeue", "--noheader", "--array", "--states=all", "--format=%i|%T", ids, NULL};
        proc_result r;
        if (run(cli, argv, &r, err, errlen) != 0) {
            /* squeue refuses the whole list when every id is gone ("Invalid job id specified"):
             * that is an empty answer, not a failed query */
            if (strstr(err, "Invalid job id")) continue;
            return -1;
        }
        struct stop_watch w = {fn, user, 0};
        int rc = slurm_parse_squeue(r.out, max_tasks - total, watch, &w, err, errlen);
        proc_result_free(&r);
        if (rc < 0) return -1;
        total += rc;
        if (w.stopped) break;
    }
    return (int)total;
}

int slurm_cli_show_job(const slurm_cli *cli, int64_t job_id, int task, slurm_job_info *info, char *err,
                       size_t errlen)
{
    char id[48];
    if (task >= 0) snprintf(id, sizeof id, "%" PRId64 "_%d", job_id, task);
    else snprintf(id, sizeof id, "%" PRId64, job_id);
    const char *argv[] = {"scontrol", "--oneliner", "show", "job", id, NULL};
    proc_result r;
    if (run(cli, argv, &r, err, errlen) != 0) return strstr(err, "Invalid job id") ? 1 : -1;
    int rc = slurm_parse_scontrol_job(r.out, info, err, errlen);
    proc_result_free(&r);
    return rc == 0 ? 0 : -1;
}

int slurm_cli_cancel(const slurm_cli *cli, const int64_t *job_ids, const int *tasks, int n, char *err,
                     size_t errlen)
{
    for (int i0 = 0; i0 < n; i0 += SLURM_CLI_IDS_PER_CALL) {
        int i1 = n - i0 < SLURM_CLI_IDS_PER_CALL ? n : i0 + SLURM_CLI_IDS_PER_CALL;
        const char *argv[SLURM_CLI_IDS_PER_CALL + 4];
        char store[SLURM_CLI_IDS_PER_CALL][32];
        int k = 0;
        argv[k++] = "scancel";
        for (int i = i0; i < i1; i++) {
            if (tasks && tasks[i] >= 0) snprintf(store[i - i0], sizeof store[0], "%" PRId64 "_%d", job_ids[i], tasks[i]);
            else snprintf(store[i - i0], sizeof store[0], "%" PRId64, job_ids[i]);
            argv[k++] = store[i - i0];
        }
        argv[k] = NULL;
        proc_result r;
        if (run(cli, argv, &r, err, errlen) != 0) return -1;
        proc_result_free(&r);
    }
    return 0;
}

int slurm_cli_limits(const slurm_cli *cli, long *max_array_size, long *max_job_count, char *err, size_t errlen)
{
    const char *argv[] = {"scontrol", "show", "config", NULL};
    proc_result r;
    if (run(cli, argv, &r, err, errlen) != 0) return -1;
    char v[64];
    int rc = 0;
    const char *keys[] = {"MaxArraySize", "MaxJobCount"};
    long *out[] = {max_array_size, max_job_count};
    for (int i = 0; i < 2; i++) {
        int f = slurm_config_value(r.out, keys[i], v, sizeof v);
        if (f == 1 || !out[i]) continue;
        char *end;
        long x = f == 0 ? strtol(v, &end, 10) : -1;
        if (f != 0 || end == v || *end || x < 1) {
            rc = errbuf_set(err, errlen, "scontrol show config: bad %s", keys[i]);
            break;
        }
        *out[i] = x;
    }
    proc_result_free(&r);
    return rc;
}
