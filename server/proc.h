/* proc.h — the one way prunelabd starts, signals and reaps a child process: the local
 * executor's cells (executor_local.c, asynchronous: proc_spawn, proc_kill, proc_exited,
 * proc_reap_group) and the engine runs that validate an uploaded model (api_models.c,
 * synchronous, proc_run).
 *
 * Every child gets exactly fds 0, 1 and 2 (the given ones, /dev/null for -1), leads its own
 * process group (so proc_kill reaches whatever it starts), and starts with every signal at its
 * default disposition and an empty signal mask. Nothing here touches SIGCHLD or waits for any
 * process but the one it names. */
#ifndef PL_SERVER_PROC_H
#define PL_SERVER_PROC_H

#include <stddef.h>
#include <sys/types.h>

/* Spawn argv (argv[0] is a path; with search, a name found on PATH) with environment envp (NULL:
 * the daemon's) and fd0/fd1/fd2 as the child's 0/1/2 (-1: /dev/null). Returns 0 with *pid, or -1
 * with err ("cannot run BIN: REASON"). The caller closes its copies of the fds. */
int proc_spawn(pid_t *pid, char *const argv[], int search, char *const envp[], int fd0, int fd1, int fd2, char *err,
               size_t errlen);

/* Send sig to pid's process group (pid itself if the group is gone). Returns kill's result. */
int proc_kill(pid_t pid, int sig);

/* Reap pid (blocking unless nohang). Returns 1 with *status (exit status, or 128 + signal), 0 when
 * nohang and it still runs, -1 on error (errno set; ECHILD: not our child, or reaped already). */
int proc_reap(pid_t pid, int nohang, int *status);

/* How a child ended (proc_exited). */
typedef struct {
    int signaled;    /* 1: killed by a signal, 0: exited */
    int code;        /* the exit status when it exited, else 0 */
    int sig;         /* the signal that killed it, else 0 */
    int core_dumped; /* 1 when that signal dumped core */
} proc_exit;

/* Has pid, our child, exited? Looks without reaping it (waitid WNOWAIT, never blocks): the zombie
 * keeps its pid and its process group id reserved, so proc_kill still reaches only what is left
 * of its group. Returns 1 with *how, 0 while it runs, -1 when it is not (or no longer) our child
 * (ECHILD: reaped elsewhere). */
int proc_exited(pid_t pid, proc_exit *how);

/* Reap, without blocking, every exited child of ours in process group pgid (> 1): its leader and,
 * when this process is a child subreaper, the orphans of the group reparented to it. Returns how
 * many were reaped; sets *leader to 1 when pgid itself was one of them (else leaves it). */
int proc_reap_group(pid_t pgid, int *leader);

/* 1 when no process, zombies included, is left in process group pgid (> 1), else 0. */
int proc_group_gone(pid_t pgid);

typedef struct {
    char *out, *err;  /* stdout and stderr, NUL-terminated (never NULL after success); caller frees */
    int status;       /* exit status, 128 + signal, or -2 when it was killed for the timeout */
} proc_result;

/* Run argv (stdin /dev/null) to its end or timeout_s (then its group is killed), keeping at most
 * max_out - 1 bytes of stdout and of stderr each. Returns 0 with *r (free with
 * proc_result_free), or -1 with err when it cannot be started. */
int proc_run(char *const argv[], double timeout_s, size_t max_out, proc_result *r, char *err, size_t errlen);
void proc_result_free(proc_result *r); /* frees the contents; NULL-safe */

#endif
