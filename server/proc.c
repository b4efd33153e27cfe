/* proc.c — spawning, signalling and reaping child processes (see proc.h). posix_spawn only: no
 * code runs in a forked copy of the daemon. Every wait names one pid or one process group (never
 * waitpid(-1)), and nothing here installs a signal handler. */
#define _GNU_SOURCE /* pipe2, posix_spawn_file_actions_addclosefrom_np */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int proc_spawn(pid_t *pid, char *const argv[], int search, char *const envp[], int fd0, int fd1, int fd2, char *err,
               size_t errlen)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    const int fds[3] = {fd0, fd1, fd2};
    if (posix_spawn_file_actions_init(&fa) != 0) return snprintf(err, errlen, "out of memory"), -1;
    if (posix_spawnattr_init(&at) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return snprintf(err, errlen, "out of memory"), -1;
    }
    int bad = 0;
    for (int i = 0; i < 3; i++)
        bad |= fds[i] < 0 ? posix_spawn_file_actions_addopen(&fa, i, "/dev/null", i ? O_WRONLY : O_RDONLY, 0)
                          : posix_spawn_file_actions_adddup2(&fa, fds[i], i);
    bad |= posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    bad |= posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) ||
           posix_spawnattr_setpgroup(&at, 0) || posix_spawnattr_setsigmask(&at, &none) ||
           posix_spawnattr_setsigdefault(&at, &all);
    int e = bad ? ENOMEM
                : search ? posix_spawnp(pid, argv[0], &fa, &at, argv, envp ? envp : environ)
                         : posix_spawn(pid, argv[0], &fa, &at, argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (e != 0) return snprintf(err, errlen, "cannot run %s: %s", argv[0], strerror(e)), -1;
    return 0;
}

int proc_kill(pid_t pid, int sig)
{
    if (pid <= 0) return -1;
    int rc = kill(-pid, sig);
    return rc == 0 ? 0 : kill(pid, sig);
}

int proc_reap(pid_t pid, int nohang, int *status)
{
    int ws = 0;
    pid_t r;
    while ((r = waitpid(pid, &ws, nohang ? WNOHANG : 0)) < 0 && errno == EINTR) {}
    if (r < 0) return -1;
    if (r == 0) return 0;
    *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    return 1;
}

int proc_exited(pid_t pid, proc_exit *how)
{
    siginfo_t si;
    int r;
    do {
        memset(&si, 0, sizeof si); /* si_pid stays 0 when nothing has exited */
        r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    if (si.si_pid == 0) return 0;
    memset(how, 0, sizeof *how);
    if (si.si_code == CLD_EXITED) {
        how->code = si.si_status;
    } else {
        how->signaled = 1;
        how->sig = si.si_status;
        how->core_dumped = si.si_code == CLD_DUMPED;
    }
    return 1;
}

int proc_reap_group(pid_t pgid, int *leader)
{
    int n = 0;
    if (pgid <= 1) return 0; /* waitpid(0 or -1) would reap children that are not the group's */
    for (;;) {
        int ws;
        pid_t r = waitpid(-pgid, &ws, WNOHANG);
        if (r > 0) {
            n++;
            if (r == pgid) *leader = 1;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        return n; /* 0: members still alive; ECHILD: none of our children left in the group */
    }
}

int proc_group_gone(pid_t pgid)
{
    return pgid > 1 && kill(-pgid, 0) < 0 && errno == ESRCH;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct {
    char *data;
    size_t len, cap, max;
} capture;

/* Append p[0..n) up to max - 1 bytes in all; the rest is dropped. */
static void capture_add(capture *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->max) n = b->max > b->len + 1 ? b->max - b->len - 1 : 0;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *d = realloc(b->data, cap);
        if (!d) return;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

/* Read fds[0] (stdout) and fds[1] (stderr) into c[0], c[1] until both close or deadline. Returns
 * 1 when the deadline passed, else 0; closes the fds it finished. */
static int capture_until(int fds[2], capture c[2], double deadline)
{
    while (fds[0] >= 0 || fds[1] >= 0) {
        struct pollfd p[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
        double left = deadline - mono_s();
        if (left <= 0) return 1;
        int r = poll(p, 2, (int)(left * 1000) + 1);
        if (r < 0 && errno != EINTR) return 0;
        for (int i = 0; i < 2 && r > 0; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char tmp[16384];
            ssize_t n = read(p[i].fd, tmp, sizeof tmp);
            if (n > 0) {
                capture_add(&c[i], tmp, (size_t)n);
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(p[i].fd);
                fds[i] = -1;
            }
        }
    }
    return 0;
}

int proc_run(char *const argv[], double timeout_s, size_t max_out, proc_result *r, char *err, size_t errlen)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1}, rc = -1;
    capture c[2] = {{NULL, 0, 0, max_out}, {NULL, 0, 0, max_out}};
    pid_t pid;
    memset(r, 0, sizeof *r);
    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto cleanup;
    }
    if (proc_spawn(&pid, argv, 1, NULL, -1, po[1], pe[1], err, errlen) != 0) goto cleanup;
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    int fds[2] = {po[0], pe[0]};
    po[0] = pe[0] = -1;
    int timed_out = capture_until(fds, c, mono_s() + timeout_s);
    if (timed_out) proc_kill(pid, SIGKILL);
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0) close(fds[i]);
    int status = 0;
    proc_reap(pid, 0, &status);
    r->status = timed_out ? -2 : status;
    r->out = c[0].data ? c[0].data : strdup("");
    r->err = c[1].data ? c[1].data : strdup("");
    c[0].data = c[1].data = NULL;
    rc = 0;
cleanup:
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0) close(po[i]);
        if (pe[i] >= 0) close(pe[i]);
    }
    free(c[0].data);
    free(c[1].data);
    return rc;
}

void proc_result_free(proc_result *r)
{
    if (!r) return;
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}
