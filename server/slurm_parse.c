/* slurm_parse.c — parsers for what sbatch, squeue and scontrol print (slurm_parse.h).
 *
 * Design: every parser walks the caller's text once with explicit bounds (no strtok, no
 * sscanf into unbounded buffers); numbers go through one range-checked reader; a line is
 * delimited by '\n' and may end in '\r'. Nothing here allocates. */
#include "slurm_parse.h"

#include <string.h>

#include "errbuf.h"

/* Largest job id and task id accepted (Slurm's are 32-bit; MaxArraySize is at most 4,000,001). */
#define SLURM_MAX_JOB_ID 4294967295LL
#define SLURM_MAX_TASK_ID 4000000

static const struct {
    const char *name;
    slurm_state state;
} STATES[] = {
    {"PENDING", SLURM_PENDING},        {"CONFIGURING", SLURM_PENDING},   {"REQUEUED", SLURM_PENDING},
    {"REQUEUE_HOLD", SLURM_PENDING},   {"REQUEUE_FED", SLURM_PENDING},   {"RESV_DEL_HOLD", SLURM_PENDING},
    {"SUSPENDED", SLURM_PENDING},      {"STOPPED", SLURM_PENDING},       {"RESIZING", SLURM_PENDING},
    {"SIGNALING", SLURM_PENDING},      {"STAGE_OUT", SLURM_PENDING},     {"RUNNING", SLURM_RUNNING},
    {"COMPLETING", SLURM_RUNNING},     {"COMPLETED", SLURM_COMPLETED},   {"FAILED", SLURM_FAILED},
    {"NODE_FAIL", SLURM_FAILED},       {"TIMEOUT", SLURM_FAILED},        {"OUT_OF_MEMORY", SLURM_FAILED},
    {"BOOT_FAIL", SLURM_FAILED},       {"DEADLINE", SLURM_FAILED},       {"PREEMPTED", SLURM_FAILED},
    {"SPECIAL_EXIT", SLURM_FAILED},    {"REVOKED", SLURM_FAILED},        {"CANCELLED", SLURM_CANCELLED},
};

slurm_state slurm_state_of(const char *name)
{
    if (!name) return SLURM_UNKNOWN;
    size_t n = strcspn(name, " "); /* "CANCELLED by 0" */
    for (size_t i = 0; i < sizeof STATES / sizeof STATES[0]; i++)
        if (strlen(STATES[i].name) == n && strncmp(STATES[i].name, name, n) == 0) return STATES[i].state;
    return SLURM_UNKNOWN;
}

const char *slurm_state_name(slurm_state s)
{
    static const char *const names[] = {"pending", "running", "completed", "failed", "cancelled", "unknown"};
    return (s >= SLURM_PENDING && s <= SLURM_UNKNOWN) ? names[s] : "unknown";
}

/* Digits at *p (at least one, no sign) up to max; advances *p. 0, or -1 when none or too big. */
static int read_num(const char **p, const char *end, long long max, long long *v)
{
    const char *s = *p;
    long long x = 0;
    if (s >= end || *s < '0' || *s > '9') return -1;
    while (s < end && *s >= '0' && *s <= '9') {
        x = x * 10 + (*s - '0');
        if (x > max) return -1;
        s++;
    }
    *p = s, *v = x;
    return 0;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int slurm_parse_sbatch(const char *out, int64_t *job_id)
{
    if (!out || !job_id) return -1;
    const char *p = out, *end = out + strlen(out);
    while (p < end && is_space(*p)) p++;
    long long v;
    if (read_num(&p, end, SLURM_MAX_JOB_ID, &v) != 0 || v == 0) return -1;
    if (p < end && *p == ';') { /* ;CLUSTER: a name without spaces */
        p++;
        if (p >= end || is_space(*p)) return -1;
        while (p < end && !is_space(*p)) p++;
    }
    while (p < end && is_space(*p)) p++;
    if (p != end) return -1; /* anything else (a warning on stdout, a second id) is not ours to guess */
    *job_id = (int64_t)v;
    return 0;
}

/* The state field of a squeue line into t (state text up to the end of the line). */
static int take_state(slurm_task *t, const char *s, const char *e)
{
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    while (e > s && is_space(e[-1])) e--;
    size_t n = (size_t)(e - s);
    if (n == 0 || n >= SLURM_STATE_LEN) return -1;
    memcpy(t->state_name, s, n);
    t->state_name[n] = '\0';
    t->state = slurm_state_of(t->state_name);
    return 0;
}

/* One squeue line [s, e). Returns the tasks it produced (>= 0), fn's non-zero value via *stop,
 * or -1 (malformed). *budget counts down the tasks still allowed. */
static long squeue_line(const char *s, const char *e, long *budget, int (*fn)(void *, const slurm_task *),
                        void *user, int *stop, char *err, size_t errlen)
{
    const char *bar = memchr(s, '|', (size_t)(e - s));
    if (!bar) return errbuf_set(err, errlen, "squeue line without '|': \"%.*s\"", (int)(e - s > 80 ? 80 : e - s), s);
    slurm_task t;
    memset(&t, 0, sizeof t);
    if (take_state(&t, bar + 1, e) != 0) return errbuf_set(err, errlen, "squeue line with a bad state field");
    const char *p = s;
    while (p < bar && (*p == ' ' || *p == '\t')) p++;
    long long v;
    if (read_num(&p, bar, SLURM_MAX_JOB_ID, &v) != 0 || v == 0) return errbuf_set(err, errlen, "squeue line with a bad job id");
    t.job_id = (int64_t)v;
    const char *q = bar;
    while (q > p && (q[-1] == ' ' || q[-1] == '\t')) q--;
    if (p == q) { /* not an array */
        if (*budget <= 0) return errbuf_set(err, errlen, "squeue lists more tasks than expected");
        (*budget)--;
        t.task = -1;
        *stop = fn(user, &t);
        return 1;
    }
    if (*p++ != '_') return errbuf_set(err, errlen, "squeue job id %lld followed by junk", v);
    if (p < q && *p != '[') { /* one task */
        if (read_num(&p, q, SLURM_MAX_TASK_ID, &v) != 0 || p != q)
            return errbuf_set(err, errlen, "squeue line with a bad array task id");
        if (*budget <= 0) return errbuf_set(err, errlen, "squeue lists more tasks than expected");
        (*budget)--;
        t.task = (int)v;
        *stop = fn(user, &t);
        return 1;
    }
    /* [a-b:s,c,...%t] */
    if (p >= q || *p != '[' || q[-1] != ']') return errbuf_set(err, errlen, "squeue line with a bad task range");
    p++;
    const char *close = q - 1, *pct = memchr(p, '%', (size_t)(close - p));
    const char *stop_at = pct ? pct : close;
    if (pct) { /* throttle: digits only */
        const char *r = pct + 1;
        if (read_num(&r, close, SLURM_MAX_TASK_ID, &v) != 0 || r != close)
            return errbuf_set(err, errlen, "squeue line with a bad array throttle");
    }
    long n = 0;
    for (;;) {
        long long lo, hi, step = 1;
        if (read_num(&p, stop_at, SLURM_MAX_TASK_ID, &lo) != 0) return errbuf_set(err, errlen, "squeue: bad task range");
        hi = lo;
        if (p < stop_at && *p == '-') {
            p++;
            if (read_num(&p, stop_at, SLURM_MAX_TASK_ID, &hi) != 0 || hi < lo)
                return errbuf_set(err, errlen, "squeue: bad task range");
            if (p < stop_at && *p == ':') {
                p++;
                if (read_num(&p, stop_at, SLURM_MAX_TASK_ID, &step) != 0 || step < 1)
                    return errbuf_set(err, errlen, "squeue: bad task range step");
            }
        }
        if ((hi - lo) / step + 1 > *budget) return errbuf_set(err, errlen, "squeue lists more tasks than expected");
        for (long long k = lo; k <= hi; k += step) {
            (*budget)--;
            t.task = (int)k;
            n++;
            if ((*stop = fn(user, &t)) != 0) return n;
        }
        if (p == stop_at) break;
        if (*p++ != ',') return errbuf_set(err, errlen, "squeue: bad task list");
    }
    return n;
}

int slurm_parse_squeue(const char *out, long max_tasks, int (*fn)(void *user, const slurm_task *t), void *user,
                       char *err, size_t errlen)
{
    if (!out || !fn) return errbuf_set(err, errlen, "no squeue output");
    long budget = max_tasks, total = 0;
    const char *p = out, *end = out + strlen(out);
    while (p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e) e = end;
        const char *s = p;
        while (s < e && is_space(*s)) s++;
        if (s < e) {
            int stop = 0;
            long n = squeue_line(p, e, &budget, fn, user, &stop, err, errlen);
            if (n < 0) return -1;
            total += n;
            if (stop) break;
        }
        p = e < end ? e + 1 : end;
    }
    return (int)(total > 0x7fffffff ? 0x7fffffff : total);
}

/* The value of Key=... in a oneliner record: [*v, *vend) up to the next space. 0 found, 1 not. */
static int field(const char *line, const char *key, const char **v, const char **vend)
{
    size_t k = strlen(key);
    for (const char *p = line; *p;) {
        while (*p == ' ' || *p == '\t') p++;
        const char *e = p;
        while (*e && *e != ' ' && *e != '\t' && *e != '\n' && *e != '\r') e++;
        if ((size_t)(e - p) > k && strncmp(p, key, k) == 0 && p[k] == '=') {
            *v = p + k + 1, *vend = e;
            return 0;
        }
        if (*e == '\n' || *e == '\r' || !*e) break;
        p = e;
    }
    return 1;
}

int slurm_parse_scontrol_job(const char *line, slurm_job_info *info, char *err, size_t errlen)
{
    if (!line || !info) return errbuf_set(err, errlen, "no scontrol record");
    memset(info, 0, sizeof *info);
    info->task_lo = info->task_hi = -1;
    info->exit_code = info->exit_signal = -1;
    const char *v, *e;
    long long x;
    if (field(line, "JobId", &v, &e) != 0) return errbuf_set(err, errlen, "scontrol record without JobId");
    if (read_num(&v, e, SLURM_MAX_JOB_ID, &x) != 0 || v != e || x == 0)
        return errbuf_set(err, errlen, "scontrol record with a bad JobId");
    info->job_id = (int64_t)x;
    if (field(line, "ArrayJobId", &v, &e) == 0) {
        if (read_num(&v, e, SLURM_MAX_JOB_ID, &x) != 0 || v != e) return errbuf_set(err, errlen, "bad ArrayJobId");
        info->array_job_id = (int64_t)x;
    }
    if (field(line, "ArrayTaskId", &v, &e) == 0) {
        long long lo, hi;
        if (read_num(&v, e, SLURM_MAX_TASK_ID, &lo) != 0) return errbuf_set(err, errlen, "bad ArrayTaskId");
        hi = lo;
        if (v < e && *v == '-') {
            v++;
            if (read_num(&v, e, SLURM_MAX_TASK_ID, &hi) != 0 || hi < lo)
                return errbuf_set(err, errlen, "bad ArrayTaskId range");
        }
        if (v != e && *v != '%' && *v != ',') return errbuf_set(err, errlen, "bad ArrayTaskId");
        info->task_lo = (int)lo, info->task_hi = (int)hi;
    }
    if (field(line, "JobState", &v, &e) != 0 || e == v || (size_t)(e - v) >= SLURM_STATE_LEN)
        return errbuf_set(err, errlen, "scontrol record without a JobState");
    memcpy(info->state_name, v, (size_t)(e - v));
    info->state_name[e - v] = '\0';
    info->state = slurm_state_of(info->state_name);
    if (field(line, "Reason", &v, &e) == 0 && !(e - v == 4 && strncmp(v, "None", 4) == 0)) {
        size_t n = (size_t)(e - v) < sizeof info->reason - 1 ? (size_t)(e - v) : sizeof info->reason - 1;
        memcpy(info->reason, v, n);
        info->reason[n] = '\0';
    }
    if (field(line, "ExitCode", &v, &e) == 0) {
        long long a, b;
        if (read_num(&v, e, 255, &a) != 0 || v >= e || *v++ != ':' || read_num(&v, e, 255, &b) != 0 || v != e)
            return errbuf_set(err, errlen, "bad ExitCode");
        info->exit_code = (int)a, info->exit_signal = (int)b;
    }
    return 0;
}

int slurm_config_value(const char *out, const char *key, char *val, size_t vlen)
{
    if (!out || !key || !val || vlen == 0) return -1;
    size_t k = strlen(key);
    for (const char *p = out; *p;) {
        const char *e = strchr(p, '\n');
        if (!e) e = p + strlen(p);
        const char *s = p;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        if ((size_t)(e - s) > k && strncmp(s, key, k) == 0 && (s[k] == ' ' || s[k] == '\t' || s[k] == '=')) {
            const char *q = s + k;
            while (q < e && (*q == ' ' || *q == '\t')) q++;
            if (q < e && *q == '=') {
                q++;
                while (q < e && (*q == ' ' || *q == '\t')) q++;
                const char *r = e;
                while (r > q && is_space(r[-1])) r--;
                if ((size_t)(r - q) >= vlen) return -1;
                memcpy(val, q, (size_t)(r - q));
                val[r - q] = '\0';
                return 0;
            }
        }
        p = *e ? e + 1 : e;
    }
    return 1;
}
